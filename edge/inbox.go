package edge

import (
	"context"
	"encoding/json"
	"time"

	"github.com/privateconnect/pc/edge/tunnels"
	"github.com/privateconnect/pc/internal/config"
	"github.com/privateconnect/pc/internal/tunnel"
)

// deliverInbox fetches the pending commands and messages of the listed
// agents that hold a session here, and hands them over the control stream.
// Agents connected elsewhere are left to their edges.
func (s *Server) deliverInbox(agentIDs []string) {
	for _, id := range agentIDs {
		sess, ok := s.registry.Get(id)
		if !ok {
			continue
		}
		go s.deliverTo(id, sess)
	}
}

func (s *Server) deliverTo(agentID string, sess *tunnels.Session) {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	in, err := s.sync.FetchInbox(ctx, agentID)
	if err != nil {
		s.log.Warn("agent inbox fetch failed", "agent", agentID, "err", err)
		return
	}
	for _, c := range in.Commands {
		params := c.Params
		if len(params) == 0 {
			params = json.RawMessage(`{}`)
		}
		if err := sess.Control(&tunnel.Control{Type: tunnel.CtlCommand, ID: c.ID, Action: c.Action, Payload: params, Timeout: c.TimeoutSeconds}); err != nil {
			// The session died: report the command failed rather than lose it.
			s.reporter.commandDone(config.CommandDone{CommandID: c.ID, AgentID: agentID, Error: "the agent disconnected before the command was delivered"})
		}
	}
	for _, m := range in.Messages {
		b, _ := json.Marshal(m)
		_ = sess.Control(&tunnel.Control{Type: tunnel.CtlMessage, ID: m.ID, Payload: b})
	}
}

// onAgentControl relays what agents send on their control stream.
func (s *Server) onAgentControl(sess *tunnels.Session, c *tunnel.Control) {
	if c.Type != tunnel.CtlCommandResult || c.ID == "" {
		return
	}
	res := c.Payload
	if len(res) > 1<<20 {
		res = nil
	}
	s.reporter.commandDone(config.CommandDone{CommandID: c.ID, AgentID: sess.AgentID, OK: c.OK, Result: res, Error: c.Error})
}
