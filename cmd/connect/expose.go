package main

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/privateconnect/pc/internal/servicename"
	"github.com/privateconnect/pc/sdk/client"
)

func (a *app) exposeCmd() *cobra.Command {
	var (
		name, protocol string
		public, detach bool
		af             agentFlags
	)
	cmd := leaf("expose HOST:PORT", "Expose a local service through the edges and run the agent",
		`  connect expose localhost:3000 --name web
  connect expose db.internal:5432 --name postgres --protocol tcp
  connect expose 8080 --name api --public --detach   # register only; serve with 'connect up'`,
		1, 1, func(cmd *cobra.Command, args []string) error {
			host, port, err := parseTarget(args[0])
			if err != nil {
				return err
			}
			switch protocol {
			case "auto", "tcp", "http", "https":
			default:
				return usageErrorf("--protocol must be auto, tcp, http or https, not %q", protocol)
			}
			if name == "" {
				name = defaultServiceName(port)
			} else if !servicename.Valid(name) {
				// Checked here, as the control plane does, so that nothing is
				// provisioned for a name it refuses.
				return usageErrorf("--name %q: a service name %s", name, servicename.Rule)
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			ctx := a.ctx(cmd)
			// The agent of this identity may run already (an earlier expose or
			// up): then the service is added to it rather than a second process
			// running the same identity (lock.go).
			running, err := a.lockOrRunning(ctx)
			if err != nil {
				return err
			}
			defer a.releaseAgentLock()
			var st *agentState
			var offline error // the control plane could not be reached
			if running != nil {
				if err := a.checkSameAgentSettings(cmd, running, &af); err != nil {
					return err
				}
				st, err = a.runningState(running)
			} else {
				st, offline, err = a.identity(ctx, c, af.name, "")
			}
			if err != nil {
				return err
			}
			var svc *client.Service
			created := false
			prev, hadPrev := st.savedService(name)
			if offline == nil {
				// --protocol not given: a new service is auto, an existing one
				// keeps the protocol it has (one detected as http, say).
				sendProto := protocol
				if !cmd.Flags().Changed("protocol") {
					sendProto = ""
				}
				sctx, cancel := context.WithTimeout(ctx, a.timeout) // as identity's calls
				svc, created, err = c.RegisterService(sctx, client.RegisterServiceRequest{
					AgentID: st.AgentID, Name: name, TargetHost: host, TargetPort: port, Protocol: sendProto, IsPublic: public,
				})
				cancel()
				if err != nil && !client.IsUnreachable(err) {
					return fmt.Errorf("register service: %w", err)
				}
				if err != nil {
					offline = err
				} else if running == nil {
					// Saved for a start without the control plane.
					st.putService(*svc)
					if err := a.saveStateOf(st); err != nil {
						return err
					}
				} else if err := mergeService(running.path, st.AgentID, *svc); err != nil {
					// The running agent serves it all the same.
					a.log.Warn("saving the service in the state file", "err", err)
				}
			}
			if offline != nil && detach {
				return fmt.Errorf("register service %s: cannot reach the control plane at %s (%s)", name, a.control, shortErr(offline))
			}
			if offline != nil {
				// The control plane is away: only a service it already
				// registered for this agent, with this target, can be served
				// (the edges know it); a new one, or a change, needs it.
				saved, ok := st.savedService(name)
				if !ok || saved.TargetHost != host || saved.TargetPort != port ||
					(protocol != "auto" && protocol != saved.Protocol) || (public && !saved.IsPublic) {
					what := "a service that is not in it"
					if ok {
						what = fmt.Sprintf("a change to the saved one (%s → %s, protocol %s)", saved.Name,
							net.JoinHostPort(saved.TargetHost, strconv.Itoa(saved.TargetPort)), saved.Protocol)
					}
					return fmt.Errorf("register service %s: cannot reach the control plane at %s (%s): without it, only a service saved in the state file "+
						"with the same target can be served, and %s needs the control plane", name, a.control, shortErr(offline), what)
				}
				s := saved.service(st.AgentID)
				svc = &s
			}
			if a.jsonOut {
				if err := a.printJSONLine(svc); err != nil {
					return err
				}
			} else {
				a.printExposed(svc, created, offline != nil, st, running == nil && !detach)
				if offline == nil && !created {
					a.printRetarget(svc, prev, hadPrev)
				}
			}
			if running != nil {
				if !a.jsonOut {
					fmt.Fprintf(a.stdout, "The agent %s already runs (%s): it serves %s too.\n", st.AgentID, running.who(), svc.Name)
				}
				return nil
			}
			if detach {
				return nil
			}
			// Dial only what this agent registered (a compromised edge cannot
			// point it anywhere else).
			target := net.JoinHostPort(host, strconv.Itoa(port))
			if offline != nil {
				af.pinTargets(c, st.AgentID, append([]string{target}, st.savedTargets()...))
			} else {
				af.pinTargets(c, st.AgentID, a.registeredTargets(ctx, c, st, target))
			}
			return a.runForeground(cmd.Context(), c, st, &af, offline)
		})
	cmd.Flags().StringVar(&name, "name", "", "service name, unique in the workspace (default: derived from the port, e.g. web for 3000)")
	cmd.Flags().StringVar(&protocol, "protocol", "auto", "auto, tcp, http or https")
	cmd.Flags().BoolVar(&public, "public", false, "make the service public on its own subdomain")
	cmd.Flags().BoolVar(&detach, "detach", false, "register the service and exit (a running 'connect up' serves it)")
	addAgentFlags(cmd, &af, true)
	return cmd
}

// pinTargets makes the agent dial only targets of its own services: those
// listed now, and one named later (a service registered since) only when
// the API confirms it is this agent's service with that target. Whatever
// else an edge asks for is refused.
func (af *agentFlags) pinTargets(c *client.Client, agentID string, targets []string) {
	af.allowed = targets
	af.verify = func(ctx context.Context, serviceID, addr string) bool {
		svc, err := c.GetService(ctx, serviceID)
		return err == nil && svc.AgentID == agentID && net.JoinHostPort(svc.TargetHost, strconv.Itoa(svc.TargetPort)) == addr
	}
}

// registeredTargets lists the host:port targets of the agent's services,
// with target first, and saves the services in the state file (for a start
// without the control plane).
func (a *app) registeredTargets(ctx context.Context, c *client.Client, st *agentState, target string) []string {
	ctx, cancel := context.WithTimeout(ctx, a.timeout) // as identity's calls
	defer cancel()
	svcs, err := agentServices(ctx, c, st.AgentID)
	if err != nil {
		return []string{target}
	}
	st.setServices(svcs)
	if err := a.saveStateOf(st); err != nil {
		a.log.Warn("saving the services in the state file", "err", err)
	}
	return append([]string{target}, targetsOf(svcs)...)
}

// agentServices lists every service of an agent.
func agentServices(ctx context.Context, c *client.Client, agentID string) ([]client.Service, error) {
	return client.All(ctx, func(ctx context.Context, lo client.ListOptions) ([]client.Service, string, error) {
		return c.ListServices(ctx, lo, client.ServiceFilter{AgentID: agentID})
	})
}

// targetsOf is the host:port target of each service.
func targetsOf(svcs []client.Service) []string {
	out := make([]string, 0, len(svcs))
	for _, s := range svcs {
		out = append(out, net.JoinHostPort(s.TargetHost, strconv.Itoa(s.TargetPort)))
	}
	return out
}

// printRetarget says what an expose of an existing service changed: its
// share links follow the service to its new target.
func (a *app) printRetarget(svc *client.Service, prev savedService, hadPrev bool) {
	now := net.JoinHostPort(svc.TargetHost, strconv.Itoa(svc.TargetPort))
	switch {
	case !hadPrev:
		fmt.Fprintf(a.stdout, "  Note:       the service %s existed already (not in this agent's state): it now points to %s, and its share links with it\n", svc.Name, now)
	case prev.TargetHost != svc.TargetHost || prev.TargetPort != svc.TargetPort:
		fmt.Fprintf(a.stdout, "  Changed:    target %s → %s: its share links now reach the new target\n",
			net.JoinHostPort(prev.TargetHost, strconv.Itoa(prev.TargetPort)), now)
	}
}

// printExposed tells the user where a service is reachable. starting: this
// process is about to run the agent, so the service's "offline" (its agent
// not connected yet) says nothing and is left out.
func (a *app) printExposed(svc *client.Service, created, saved bool, st *agentState, starting bool) {
	verb := "Exposing"
	switch {
	case saved:
		verb = "Exposing (as saved)"
	case !created:
		verb = "Exposing (updated)"
	}
	status := ", status " + orDash(svc.Status)
	if (starting && svc.Status == "offline") || svc.Status == "" {
		status = ""
	}
	fmt.Fprintf(a.stdout, "%s %s → %s (protocol %s%s)\n", verb, svc.Name,
		net.JoinHostPort(svc.TargetHost, strconv.Itoa(svc.TargetPort)), svc.Protocol, status)
	if svc.TunnelPort > 0 {
		where := ""
		if h := edgeHost(st.Edges); h != "" {
			where = fmt.Sprintf(" (e.g. %s)", net.JoinHostPort(h, strconv.Itoa(svc.TunnelPort)))
		}
		fmt.Fprintf(a.stdout, "  TCP:        port %d on every edge%s\n", svc.TunnelPort, where)
	}
	if svc.PublicURL != "" {
		fmt.Fprintf(a.stdout, "  Public URL: %s\n", svc.PublicURL)
	} else if svc.IsPublic {
		fmt.Fprintf(a.stdout, "  Public URL: none yet: the control plane has no public domain (pcd control --public-domain, with a wildcard DNS record to the edges)\n")
	}
	if svc.Protocol == "tcp" {
		// A share link speaks HTTP: a TCP service is reached with its own
		// client through reach (or the edge's port above).
		fmt.Fprintf(a.stdout, "  Reach it:   connect reach %s\n", svc.Name)
		return
	}
	fmt.Fprintf(a.stdout, "  Share link: connect link %s\n", svc.Name)
}

// parseTarget parses HOST:PORT, :PORT or PORT (host localhost).
func parseTarget(s string) (string, int, error) {
	host, portStr := "localhost", s
	if strings.Contains(s, ":") {
		h, ps, err := net.SplitHostPort(s)
		if err != nil {
			return "", 0, usageErrorf("target %q: want HOST:PORT", s)
		}
		if h != "" {
			host = h
		}
		portStr = ps
	}
	port, err := strconv.Atoi(portStr)
	if err != nil || port < 1 || port > 65535 {
		return "", 0, usageErrorf("target %q: port must be 1-65535", s)
	}
	return host, port, nil
}

// defaultServiceName derives a name from well-known ports.
func defaultServiceName(port int) string { return servicename.ForPort(port) }

// edgeHost returns the host of the first edge's tunnel address.
func edgeHost(edges []client.AgentEdge) string {
	for _, e := range edges {
		addr := e.TunnelAddr
		if i := strings.Index(addr, "://"); i >= 0 {
			addr = addr[i+3:]
		}
		if h, _, err := net.SplitHostPort(addr); err == nil && h != "" {
			return h
		}
	}
	return ""
}
