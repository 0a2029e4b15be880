package store

import (
	"time"
)

// Audit events, messages, commands, diagnostics: records keyed newest first.

// AppendAudit stores an audit event (and, for agent events, in the agent's
// own log).
func AppendAudit(tx Tx, ev *AuditEvent) error {
	id := orderKey(ev.CreatedAt, ev.ID)
	if err := putJSON(tx, key("w", ev.WorkspaceID, "audit", id), ev); err != nil {
		return err
	}
	if ev.AgentID != "" {
		return putJSON(tx, key("w", ev.WorkspaceID, "agentaudit", ev.AgentID, id), ev)
	}
	return nil
}

// ListAudit pages through the workspace's audit log, newest first.
func ListAudit(tx Tx, ws, after string, limit int, keep func(*AuditEvent) bool) ([]AuditEvent, string, error) {
	return List(tx, prefix("w", ws, "audit"), after, limit, keep)
}

// ListAuditSince is ListAudit that ends the scan at the first event older
// than since (the log is ordered newest first).
func ListAuditSince(tx Tx, ws string, since time.Time, after string, limit int, keep func(*AuditEvent) bool) ([]AuditEvent, string, error) {
	return listUntil(tx, prefix("w", ws, "audit"), after, limit, func(e *AuditEvent) (bool, bool) {
		if e.CreatedAt.Before(since) {
			return false, true
		}
		return keep == nil || keep(e), false
	})
}

// ListAgentAudit pages through one agent's audit log, newest first.
func ListAgentAudit(tx Tx, ws, agent, after string, limit int) ([]AuditEvent, string, error) {
	return List[AuditEvent](tx, prefix("w", ws, "agentaudit", agent), after, limit, nil)
}

func messageKey(m *Message) []byte {
	if m.Key == "" {
		m.Key = orderKey(m.CreatedAt, m.ID)
	}
	return key("w", m.WorkspaceID, "msg", m.ToAgentID, m.Key)
}

// PutMessage stores a message until its ExpiresAt (a rewrite keeps its key).
func PutMessage(tx Tx, m *Message, now time.Time) error {
	ttl := m.ExpiresAt.Sub(now)
	if ttl <= 0 {
		return nil
	}
	return putJSONTTL(tx, messageKey(m), m, ttl)
}

// ListMessages pages through the messages to an agent, newest first.
func ListMessages(tx Tx, ws, agent, after string, limit int, keep func(*Message) bool) ([]Message, string, error) {
	return List(tx, prefix("w", ws, "msg", agent), after, limit, keep)
}

// MarkMessagesRead sets readAt on the listed messages of an agent. It
// returns how many it marked.
func MarkMessagesRead(tx Tx, ws, agent string, ids []string, now time.Time) (int, error) {
	want := make(map[string]bool, len(ids))
	for _, id := range ids {
		want[id] = true
	}
	msgs, _, err := ListMessages(tx, ws, agent, "", 0, func(m *Message) bool { return want[m.ID] && m.ReadAt == nil })
	if err != nil {
		return 0, err
	}
	for i := range msgs {
		m := &msgs[i]
		m.ReadAt = &now
		if err := PutMessage(tx, m, now); err != nil {
			return 0, err
		}
	}
	return len(msgs), nil
}

func commandKey(ws, id string) []byte { return key("w", ws, "cmd", id) }

// PutCommand stores a command until its ExpiresAt plus a day of history; a
// queued command is also indexed under its agent's queue.
func PutCommand(tx Tx, c *Command, now time.Time) error {
	ttl := c.ExpiresAt.Sub(now) + 24*time.Hour
	qk := key("w", c.WorkspaceID, "cmdq", c.AgentID, c.ID)
	if c.Status == CommandQueued {
		if err := tx.PutTTL(qk, nil, ttl); err != nil {
			return err
		}
	} else if err := tx.Delete(qk); err != nil {
		return err
	}
	return putJSONTTL(tx, commandKey(c.WorkspaceID, c.ID), c, ttl)
}

// GetCommand returns a command of the workspace.
func GetCommand(tx Tx, ws, id string) (*Command, error) {
	var c Command
	if err := getJSON(tx, commandKey(ws, id), &c); err != nil {
		return nil, notFound("command", err)
	}
	return &c, nil
}

// QueuedCommands returns the agent's queued commands, oldest id first.
func QueuedCommands(tx Tx, ws, agent string) ([]Command, error) {
	pfx := prefix("w", ws, "cmdq", agent)
	var ids []string
	err := tx.Scan(pfx, nil, func(k, v []byte) (bool, error) {
		ids = append(ids, string(k[len(pfx):]))
		return true, nil
	})
	if err != nil {
		return nil, err
	}
	out := make([]Command, 0, len(ids))
	for _, id := range ids {
		c, err := GetCommand(tx, ws, id)
		if isNotFound(err) {
			continue
		}
		if err != nil {
			return nil, err
		}
		out = append(out, *c)
	}
	return out, nil
}

// AppendDiagnostic stores a service check result for 30 days.
func AppendDiagnostic(tx Tx, d *Diagnostic) error {
	return putJSONTTL(tx, key("w", d.WorkspaceID, "diag", d.ServiceID, orderKey(d.CreatedAt, d.ID)), d, 30*24*time.Hour)
}

// ListDiagnostics pages through a service's check history, newest first.
func ListDiagnostics(tx Tx, ws, svc, after string, limit int) ([]Diagnostic, string, error) {
	return List[Diagnostic](tx, prefix("w", ws, "diag", svc), after, limit, nil)
}

// Count returns the number of records of a kind ("agent", "svc", "share",
// ...) in a workspace.
func Count(tx Tx, ws, kind string) (int, error) { return count(tx, prefix("w", ws, kind)) }
