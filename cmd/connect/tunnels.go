package main

import (
	"context"
	"fmt"
	"net"
	"strconv"

	"github.com/google/uuid"
	"github.com/spf13/cobra"

	"github.com/privateconnect/pc/sdk/client"
)

var tunnelCols = []col[client.Tunnel]{
	{"ID", func(x client.Tunnel) string { return x.ID }},
	{"NAME", func(x client.Tunnel) string { return x.Name }},
	{"STATUS", func(x client.Tunnel) string { return x.Status }},
	{"TARGET", func(x client.Tunnel) string { return net.JoinHostPort(x.TargetHost, strconv.Itoa(x.TargetPort)) }},
	{"PROTOCOL", func(x client.Tunnel) string { return x.Protocol }},
	{"TCP PORT", func(x client.Tunnel) string { return portOrDash(x.TunnelPort) }},
	{"AGENT ONLINE", func(x client.Tunnel) string { return yesNo(x.AgentOnline) }},
	{"CONNS", func(x client.Tunnel) string { return itoa(x.ActiveConnections) }},
	{"IN", func(x client.Tunnel) string { return humanBytes(x.BytesIn) }},
	{"OUT", func(x client.Tunnel) string { return humanBytes(x.BytesOut) }},
}

func (a *app) tunnelsCmd() *cobra.Command {
	ls := listCmd(a, "ls", "List tunnels", "  connect tunnels ls", 0,
		func(ctx context.Context, c *client.Client, _ []string, lo client.ListOptions) ([]client.Tunnel, string, error) {
			return c.ListTunnels(ctx, lo)
		}, tunnelCols)
	get := getCmd(a, "get TUNNEL", "Show a tunnel (by id or service name)", "  connect tunnels get web", 1,
		func(ctx context.Context, c *client.Client, args []string) (*client.Tunnel, error) {
			id, err := tunnelID(ctx, c, args[0])
			if err != nil {
				return nil, err
			}
			return c.GetTunnel(ctx, id)
		})

	var req client.CreateTunnelRequest
	var public bool
	create := getCmd(a, "create HOST:PORT", "Create a tunnel (a service) on an agent",
		"  connect tunnels create localhost:5432 --agent 6f1c…   # named postgres", 1,
		func(ctx context.Context, c *client.Client, args []string) (*client.Tunnel, error) {
			host, port, err := parseTarget(args[0])
			if err != nil {
				return nil, err
			}
			r := req
			r.Target = net.JoinHostPort(host, strconv.Itoa(port))
			if r.AgentID == "" {
				if r.AgentID, err = a.localAgentID(); err != nil {
					return nil, err
				}
			}
			if public {
				r.IsPublic = &public
			}
			return c.CreateTunnel(ctx, r)
		})
	create.Flags().StringVar(&req.AgentID, "agent", "", "agent id (default: the agent of the state file)")
	create.Flags().StringVar(&req.Name, "name", "", "name (default derived from the port)")
	create.Flags().StringVar(&req.Protocol, "protocol", "", "auto, tcp, http or https")
	create.Flags().BoolVar(&public, "public", false, "make it public")

	pause := actionCmd(a, "pause TUNNEL", "Pause a tunnel (by id or service name): the edges refuse its traffic without disconnecting the agent", "  connect tunnels pause web", 1,
		func(ctx context.Context, c *client.Client, args []string) (string, error) {
			id, err := tunnelID(ctx, c, args[0])
			if err != nil {
				return "", err
			}
			t, err := c.PauseTunnel(ctx, id)
			if err != nil {
				return "", err
			}
			return fmt.Sprintf("Tunnel %s is %s.", t.Name, t.Status), nil
		})
	resume := actionCmd(a, "resume TUNNEL", "Resume a paused tunnel (by id or service name)", "  connect tunnels resume web", 1,
		func(ctx context.Context, c *client.Client, args []string) (string, error) {
			id, err := tunnelID(ctx, c, args[0])
			if err != nil {
				return "", err
			}
			t, err := c.ResumeTunnel(ctx, id)
			if err != nil {
				return "", err
			}
			return fmt.Sprintf("Tunnel %s is %s.", t.Name, t.Status), nil
		})
	rm := actionCmd(a, "rm TUNNEL", "Delete a tunnel (by id or service name)", "  connect tunnels rm web", 1,
		func(ctx context.Context, c *client.Client, args []string) (string, error) {
			id, err := tunnelID(ctx, c, args[0])
			if err != nil {
				return "", err
			}
			if err := c.DeleteTunnel(ctx, id); err != nil {
				return "", err
			}
			return fmt.Sprintf("Deleted tunnel %s.", args[0]), nil
		})
	conns := listCmd(a, "connections TUNNEL", "List the live connections through a tunnel (by id or service name)", "  connect tunnels connections web", 1,
		func(ctx context.Context, c *client.Client, args []string, lo client.ListOptions) ([]client.Connection, string, error) {
			id, err := tunnelID(ctx, c, args[0])
			if err != nil {
				return nil, "", err
			}
			return c.ListTunnelConnections(ctx, id, lo)
		}, []col[client.Connection]{
			{"ID", func(x client.Connection) string { return x.ID }},
			{"KIND", func(x client.Connection) string { return x.Kind }},
			{"CLIENT", func(x client.Connection) string { return x.ClientIP }},
			{"EDGE", func(x client.Connection) string { return x.EdgeID }},
			{"STARTED", func(x client.Connection) string { return fmtTime(x.StartedAt) }},
			{"IN", func(x client.Connection) string { return humanBytes(x.BytesIn) }},
			{"OUT", func(x client.Connection) string { return humanBytes(x.BytesOut) }},
		})
	return group("tunnels", "Manage tunnels (live exposures of services)", ls, get, create, pause, resume, rm, conns)
}

// localAgentID returns the agent id of the state file.
func (a *app) localAgentID() (string, error) {
	path, err := a.stateFile()
	if err != nil {
		return "", err
	}
	st, err := loadState(path)
	if err != nil {
		return "", err
	}
	if st == nil {
		return "", usageErrorf("--agent is required (no agent identity in %s)", path)
	}
	return st.AgentID, nil
}

// tunnelID resolves a tunnel by its id or its service's name (a tunnel is
// a service's live exposure and has the service's id).
func tunnelID(ctx context.Context, c *client.Client, ref string) (string, error) {
	if _, err := uuid.Parse(ref); err == nil {
		return ref, nil // an id goes as it is: the tunnel call answers for it
	}
	svc, err := resolveService(ctx, c, ref)
	if err != nil {
		return "", err
	}
	return svc.ID, nil
}
