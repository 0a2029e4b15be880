package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"strconv"

	"github.com/spf13/cobra"

	"github.com/privateconnect/pc/sdk/client"
)

func (a *app) upCmd() *cobra.Command {
	var af agentFlags
	cmd := leaf("up", "Run the agent as a daemon serving every service registered for it",
		`  connect up --name build-box --label ci
  PC_API_KEY=pc_… PC_STATE=/var/lib/pc/agent.json connect up --log-format json`,
		0, 0, func(cmd *cobra.Command, _ []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			ctx := a.ctx(cmd)
			if err := a.holdAgentLock(ctx); err != nil {
				return err
			}
			defer a.releaseAgentLock()
			st, offline, err := a.identity(ctx, c, af.name, af.label)
			if err != nil {
				return err
			}
			var svcs []client.Service
			if offline == nil {
				sctx, cancel := context.WithTimeout(ctx, a.timeout) // as identity's calls
				svcs, err = agentServices(sctx, c, st.AgentID)
				cancel()
				switch {
				case err == nil:
					st.setServices(svcs) // for a start without the control plane
					if err := a.saveStateOf(st); err != nil {
						return err
					}
				case client.IsUnreachable(err):
					offline = err
				default:
					return err
				}
			}
			if offline != nil {
				// The services the control plane listed last (the edges
				// list them to the agent from their own configuration).
				for _, sv := range st.Services {
					svcs = append(svcs, sv.service(st.AgentID))
				}
				if len(svcs) == 0 {
					a.note(slog.LevelWarn, "warning: the state file lists no service of this agent (a state file of an older connect, or none yet): "+
						"until the control plane is back, the agent serves none", "no saved services: serving none until the control plane is back")
				}
			}
			if !a.jsonOut {
				if len(svcs) == 0 {
					fmt.Fprintln(a.stdout, "No services yet: add one with 'connect expose HOST:PORT --name NAME --detach'.")
				} else {
					_ = printList(a, svcs, "", []col[client.Service]{
						{"SERVICE", func(s client.Service) string { return s.Name }},
						{"TARGET", func(s client.Service) string { return net.JoinHostPort(s.TargetHost, strconv.Itoa(s.TargetPort)) }},
						{"PROTOCOL", func(s client.Service) string { return s.Protocol }},
						{"TCP PORT", func(s client.Service) string { return portOrDash(s.TunnelPort) }},
					})
				}
			}
			af.pinTargets(c, st.AgentID, targetsOf(svcs))
			return a.runForeground(cmd.Context(), c, st, &af, offline)
		})
	cmd.Flags().StringVar(&af.name, "name", "", "agent name (default: the host name)")
	cmd.Flags().StringVar(&af.label, "label", "", "agent label (default \"default\")")
	addAgentFlags(cmd, &af, false)
	return cmd
}

func portOrDash(p int) string {
	if p == 0 {
		return "-"
	}
	return strconv.Itoa(p)
}
