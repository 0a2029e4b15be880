package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/privateconnect/pc/sdk/client"
)

var agentCols = []col[client.Agent]{
	{"ID", func(x client.Agent) string { return x.ID }},
	{"NAME", func(x client.Agent) string { return x.Name }},
	{"LABEL", func(x client.Agent) string { return x.Label }},
	{"TYPE", func(x client.Agent) string { return x.ClientType }},
	{"ONLINE", func(x client.Agent) string { return yesNo(x.IsOnline) }},
	{"SERVICES", func(x client.Agent) string { return itoa(x.ServiceCount) }},
	{"LAST SEEN", func(x client.Agent) string { return fmtTimePtr(x.LastSeenAt) }},
	{"TOKEN EXPIRES", func(x client.Agent) string { return fmtTimePtr(x.TokenExpiresAt) }},
}

func (a *app) agentsCmd() *cobra.Command {
	var (
		f      client.AgentFilter
		online string
	)
	ls := listCmd(a, "ls", "List agents", "  connect agents ls --online true --label prod", 0,
		func(ctx context.Context, c *client.Client, _ []string, lo client.ListOptions) ([]client.Agent, string, error) {
			if online != "" {
				b, err := strconv.ParseBool(online)
				if err != nil {
					return nil, "", usageErrorf("--online must be true or false")
				}
				f.Online = &b
			}
			return c.ListAgents(ctx, lo, f)
		}, agentCols)
	ls.Flags().StringVar(&online, "online", "", "only online (true) or offline (false) agents")
	ls.Flags().StringVar(&f.Label, "label", "", "only agents with this label")
	ls.Flags().StringVar(&f.Capability, "capability", "", "only agents with this capability")

	get := getCmd(a, "get AGENT_ID", "Show an agent and its services", "  connect agents get 6f1c…", 1,
		func(ctx context.Context, c *client.Client, args []string) (*client.Agent, error) {
			return c.GetAgent(ctx, args[0])
		})

	rm := actionCmd(a, "rm AGENT_ID", "Delete an agent, its services and their shares", "  connect agents rm 6f1c…", 1,
		func(ctx context.Context, c *client.Client, args []string) (string, error) {
			d, err := c.DeleteAgent(ctx, args[0])
			if err != nil {
				return "", err
			}
			return fmt.Sprintf("Deleted agent %s (%d services, %d shares).", args[0], d.Deleted.Services, d.Deleted.Shares), nil
		})

	rotate := leaf("rotate-token", "Rotate the local agent's token (from the state file)",
		"  connect agents rotate-token --state ~/.config/privateconnect/agent.json", 0, 0,
		func(cmd *cobra.Command, _ []string) error {
			path, err := a.stateFile()
			if err != nil {
				return err
			}
			// The running agent keeps the token it started with: rotated under
			// it, it would lose its tunnels at once and could not reconnect.
			// The lock comes first, so the state read is the one rotated.
			running, err := a.lockOrRunning(a.ctx(cmd))
			if err != nil {
				return err
			}
			defer a.releaseAgentLock()
			if running != nil {
				return fmt.Errorf("the agent of this identity is running (%s): it rotates its token itself before expiry; to rotate now, stop it first", running.who())
			}
			st, err := loadState(path)
			if err != nil {
				return err
			}
			if st == nil {
				return fmt.Errorf("no agent identity in %s: run 'connect expose' or 'connect up' first", path)
			}
			c := a.newClient(a.apiKey) // agent-token route: no API key required
			if err := a.rotate(a.ctx(cmd), c, st); err != nil {
				return err
			}
			if err := saveState(path, st); err != nil {
				return err
			}
			return a.done(fmt.Sprintf("Rotated the token of agent %s; it is valid until %s.", st.AgentID, fmtTime(st.ExpiresAt)))
		})

	audit := listCmd(a, "audit AGENT_ID", "Show an agent's audit trail", "  connect agents audit 6f1c…", 1,
		func(ctx context.Context, c *client.Client, args []string, lo client.ListOptions) ([]client.AgentAuditLog, string, error) {
			return c.ListAgentAuditLogs(ctx, args[0], lo)
		}, []col[client.AgentAuditLog]{
			{"TIME", func(x client.AgentAuditLog) string { return fmtTime(x.CreatedAt) }},
			{"EVENT", func(x client.AgentAuditLog) string { return x.Event }},
			{"IP", func(x client.AgentAuditLog) string { return orDash(x.IPAddress) }},
			{"EDGE", func(x client.AgentAuditLog) string { return orDash(x.EdgeID) }},
			{"DETAILS", func(x client.AgentAuditLog) string { return compactJSON(x.Details) }},
		})

	var mf client.MessageFilter
	messages := listCmd(a, "messages AGENT_ID", "List the messages received by an agent",
		"  connect agents messages 6f1c… --channel jobs --unread", 1,
		func(ctx context.Context, c *client.Client, args []string, lo client.ListOptions) ([]client.Message, string, error) {
			return c.ListMessages(ctx, args[0], lo, mf)
		}, []col[client.Message]{
			{"ID", func(x client.Message) string { return x.ID }},
			{"FROM", func(x client.Message) string { return orDash(x.From.Name) }},
			{"CHANNEL", func(x client.Message) string { return x.Channel }},
			{"TYPE", func(x client.Message) string { return x.Type }},
			{"SENT", func(x client.Message) string { return fmtTime(x.CreatedAt) }},
			{"READ", func(x client.Message) string { return fmtTimePtr(x.ReadAt) }},
			{"PAYLOAD", func(x client.Message) string { return compactJSON(x.Payload) }},
		})
	messages.Flags().StringVar(&mf.Channel, "channel", "", "only this channel")
	messages.Flags().BoolVar(&mf.UnreadOnly, "unread", false, "only unread messages")

	read := actionCmd(a, "read AGENT_ID MESSAGE_ID...", "Mark messages as read", "  connect agents read 6f1c… 9a0b…", -2,
		func(ctx context.Context, c *client.Client, args []string) (string, error) {
			if err := c.MarkMessagesRead(ctx, args[0], args[1:]); err != nil {
				return "", err
			}
			return fmt.Sprintf("Marked %d message(s) read.", len(args)-1), nil
		})
	return group("agents", "Manage agents (connectors)", ls, get, rm, rotate, audit, messages, read, a.sendCmd(), a.commandCmd(), a.capabilitiesCmd(), a.orchestrationCmd())
}

func (a *app) sendCmd() *cobra.Command {
	var (
		to, payload, channel, typ, corr string
		ttl                             int
		broadcast                       bool
	)
	cmd := leaf("send FROM_AGENT_ID", "Send a message from an agent to another (or to all)",
		`  connect agents send 6f1c… --to 9a0b… --payload '{"job":42}' --channel jobs
  connect agents send 6f1c… --broadcast --payload '{"reload":true}'`,
		1, 1, func(cmd *cobra.Command, args []string) error {
			if !json.Valid([]byte(payload)) {
				return usageErrorf("--payload must be a JSON object")
			}
			if (to == "") == !broadcast {
				return usageErrorf("give exactly one of --to AGENT_ID and --broadcast")
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			ctx := a.ctx(cmd)
			if broadcast {
				n, err := c.BroadcastMessage(ctx, args[0], client.BroadcastRequest{Payload: json.RawMessage(payload), Channel: channel, TTLSeconds: ttl})
				if err != nil {
					return err
				}
				return a.done(fmt.Sprintf("Broadcast to %d agent(s).", n))
			}
			m, err := c.SendMessage(ctx, args[0], client.SendMessageRequest{
				ToAgentID: to, Payload: json.RawMessage(payload), Channel: channel, Type: typ, CorrelationID: corr, TTLSeconds: ttl,
			})
			if err != nil {
				return err
			}
			return a.done(fmt.Sprintf("Sent message %s (expires %s).", m.MessageID, fmtTime(m.ExpiresAt)))
		})
	f := cmd.Flags()
	f.StringVar(&to, "to", "", "recipient agent id")
	f.BoolVar(&broadcast, "broadcast", false, "send to every other agent of the workspace")
	f.StringVar(&payload, "payload", "{}", "JSON payload")
	f.StringVar(&channel, "channel", "", "channel (default \"default\")")
	f.StringVar(&typ, "type", "", "request, response or event (default event)")
	f.StringVar(&corr, "correlation-id", "", "correlation id")
	f.IntVar(&ttl, "ttl", 0, "time to live in seconds, 1-604800 (default 86400)")
	checkRange(cmd, "ttl", 1, 604800, "seconds")
	return cmd
}

func (a *app) commandCmd() *cobra.Command {
	var (
		params  string
		timeout int
		wait    bool
		get     string
	)
	cmd := leaf("command AGENT_ID [ACTION]", "Send a command to an agent (status|expose|unexpose|reach|diagnose|restart|stop)",
		`  connect agents command 6f1c… status --wait
  connect agents command 6f1c… expose --params '{"host":"localhost","port":3000,"name":"web"}'
  connect agents command 6f1c… --get 1d2e…   # show a command's outcome`,
		1, 2, func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			ctx := a.ctx(cmd)
			if get != "" {
				res, err := c.GetCommand(ctx, args[0], get)
				if err != nil {
					return err
				}
				return a.show(res)
			}
			if len(args) != 2 {
				return usageErrorf("missing ACTION (status, expose, unexpose, reach, diagnose, restart or stop)")
			}
			req := client.CommandRequest{Action: args[1], TimeoutSeconds: timeout}
			if params != "" {
				if !json.Valid([]byte(params)) {
					return usageErrorf("--params must be a JSON object")
				}
				req.Params = json.RawMessage(params)
			}
			r, err := c.SendCommand(ctx, args[0], req)
			if err != nil {
				return err
			}
			if !wait {
				return a.done(fmt.Sprintf("Command %s %s (agent online: %s).", r.CommandID, r.Status, yesNo(r.AgentOnline)))
			}
			res, err := a.waitCommand(ctx, c, args[0], r.CommandID, time.Duration(max(timeout, 30)+5)*time.Second)
			if err != nil {
				return err
			}
			if err := a.show(res); err != nil {
				return err
			}
			if res.Status != "succeeded" {
				return fmt.Errorf("command %s: %s", res.Status, orDash(res.Error))
			}
			return nil
		})
	f := cmd.Flags()
	f.StringVar(&params, "params", "", "JSON parameters of the action")
	f.IntVar(&timeout, "timeout", 0, "seconds the agent has to complete it (1-300, default 30)")
	f.BoolVar(&wait, "wait", false, "wait for the outcome and print it")
	f.StringVar(&get, "get", "", "show the command with this id instead of sending one")
	checkRange(cmd, "timeout", 1, 300, "seconds")
	return cmd
}

// waitCommand polls a command until it reaches a final status.
func (a *app) waitCommand(ctx context.Context, c *client.Client, agentID, id string, limit time.Duration) (*client.Command, error) {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	for {
		res, err := c.GetCommand(ctx, agentID, id)
		if err != nil {
			return nil, err
		}
		if res.Done() {
			return res, nil
		}
		select {
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return nil, fmt.Errorf("command %s still %s after %s", id, res.Status, limit)
			}
			return nil, ctx.Err()
		case <-time.After(a.pollInterval):
		}
	}
}

func (a *app) capabilitiesCmd() *cobra.Command {
	return actionCmd(a, "capabilities AGENT_ID NAME[=METADATA_JSON]...", "Add or update an agent's capabilities",
		`  connect agents capabilities 6f1c… gpu='{"model":"A100"}' postgres`, -2,
		func(ctx context.Context, c *client.Client, args []string) (string, error) {
			var caps []client.Capability
			for _, s := range args[1:] {
				name, meta, ok := strings.Cut(s, "=")
				cp := client.Capability{Name: name}
				if ok {
					if !json.Valid([]byte(meta)) {
						return "", usageErrorf("capability %s: metadata must be JSON", name)
					}
					cp.Metadata = json.RawMessage(meta)
				}
				caps = append(caps, cp)
			}
			all, err := c.SetAgentCapabilities(ctx, args[0], caps)
			if err != nil {
				return "", err
			}
			names := make([]string, len(all))
			for i, cp := range all {
				names[i] = cp.Name
			}
			return "Capabilities: " + strings.Join(names, ", "), nil
		})
}

func (a *app) orchestrationCmd() *cobra.Command {
	return listCmd(a, "orchestration", "List agents with their capabilities and services, online first",
		"  connect agents orchestration --json", 0,
		func(ctx context.Context, c *client.Client, _ []string, lo client.ListOptions) ([]client.OrchestrationAgent, string, error) {
			return c.ListOrchestration(ctx, lo)
		}, []col[client.OrchestrationAgent]{
			{"ID", func(x client.OrchestrationAgent) string { return x.ID }},
			{"NAME", func(x client.OrchestrationAgent) string { return x.Name }},
			{"LABEL", func(x client.OrchestrationAgent) string { return x.Label }},
			{"ONLINE", func(x client.OrchestrationAgent) string { return yesNo(x.IsOnline) }},
			{"CAPABILITIES", func(x client.OrchestrationAgent) string {
				n := make([]string, len(x.Capabilities))
				for i, c := range x.Capabilities {
					n[i] = c.Name
				}
				return orDash(strings.Join(n, ","))
			}},
			{"SERVICES", func(x client.OrchestrationAgent) string {
				n := make([]string, len(x.Services))
				for i, s := range x.Services {
					n[i] = s.Name
				}
				return orDash(strings.Join(n, ","))
			}},
		})
}
