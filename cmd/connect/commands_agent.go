package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/privateconnect/pc/sdk/agent"
	"github.com/privateconnect/pc/sdk/client"
)

// exposeParams are the params of the "expose" and "unexpose" agent
// commands (POST /v1/agents/:id/command).
type exposeParams struct {
	Name       string `json:"name"`
	TargetHost string `json:"targetHost"`
	TargetPort int    `json:"targetPort"`
	Protocol   string `json:"protocol"`
	ServiceID  string `json:"serviceId"`
}

// agentCommands runs the commands that need the API on the agent's behalf:
// expose registers a service for this agent (served at once), unexpose
// deletes one of its services. The agent runs the others itself.
func agentCommands(c *client.Client, agentID string) func(ctx context.Context, cmd agent.Command) (any, bool, error) {
	return func(ctx context.Context, cmd agent.Command) (any, bool, error) {
		if cmd.Action != "expose" && cmd.Action != "unexpose" {
			return nil, false, nil
		}
		var p exposeParams
		if len(cmd.Params) > 0 {
			if err := json.Unmarshal(cmd.Params, &p); err != nil {
				return nil, true, fmt.Errorf("bad params: %w", err)
			}
		}
		switch cmd.Action {
		case "expose":
			if p.TargetHost == "" || p.TargetPort < 1 || p.TargetPort > 65535 {
				return nil, true, errors.New("expose needs params targetHost and targetPort (1-65535)")
			}
			if p.Name == "" {
				p.Name = defaultServiceName(p.TargetPort)
			}
			svc, _, err := c.RegisterService(ctx, client.RegisterServiceRequest{AgentID: agentID, Name: p.Name,
				TargetHost: p.TargetHost, TargetPort: p.TargetPort, Protocol: p.Protocol})
			if err != nil {
				return nil, true, err
			}
			return svc, true, nil
		default:
			id := p.ServiceID
			if id == "" {
				if p.Name == "" {
					return nil, true, errors.New("unexpose needs params serviceId or name")
				}
				svc, err := resolveService(ctx, c, p.Name)
				if err != nil {
					return nil, true, err
				}
				id = svc.ID
			}
			svc, err := c.GetService(ctx, id)
			if err != nil {
				return nil, true, err
			}
			if svc.AgentID != agentID {
				return nil, true, errors.New("that service belongs to another agent")
			}
			if err := c.DeleteService(ctx, id); err != nil {
				return nil, true, err
			}
			return map[string]any{"deleted": id}, true, nil
		}
	}
}
