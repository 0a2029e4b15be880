package api

import (
	"context"
	"encoding/json"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/privateconnect/pc/control/store"
	"github.com/privateconnect/pc/internal/config"
)

// Messages between agents and commands for agents. Both are stored first;
// delivery to a connected agent goes through its edge: the hub announces
// the agent on every config stream ("inbox" message) and the edge fetches
// the items from GET /v1/edges/agent-inbox (see internal/config/inbox.go).

const (
	defaultMessageTTL = 86400
	maxMessageTTL     = 604800
	commandQueueTTL   = 24 * time.Hour
)

var commandActions = []string{"status", "expose", "unexpose", "reach", "diagnose", "restart", "stop"}

func isObject(raw json.RawMessage) bool {
	s := strings.TrimSpace(string(raw))
	return len(s) > 0 && s[0] == '{'
}

type sendMessageRequest struct {
	ToAgentID     string          `json:"toAgentId" api:"required"`
	Payload       json.RawMessage `json:"payload" api:"required"`
	Channel       *string         `json:"channel"`
	Type          *string         `json:"type"`
	CorrelationID *string         `json:"correlationId"`
	TTLSeconds    *int            `json:"ttlSeconds"`
}

type sendMessageResponse struct {
	MessageID string    `json:"messageId"`
	ExpiresAt time.Time `json:"expiresAt"`
}

func (v *validator) messageCommon(payload json.RawMessage, channel *string, ttl *int) (string, int) {
	v.check(isObject(payload), "payload", "is required and must be an object")
	ch := "default"
	if channel != nil && v.strLen(*channel, "channel", 1, 100) {
		ch = *channel
	}
	t := defaultMessageTTL
	if ttl != nil && v.intRange(*ttl, "ttlSeconds", 1, maxMessageTTL) {
		t = *ttl
	}
	return ch, t
}

func (a *API) sendMessage(c *call) (any, error) {
	var req sendMessageRequest
	if err := c.decode(&req); err != nil {
		return nil, err
	}
	var v validator
	v.uuid(req.ToAgentID, "toAgentId")
	channel, ttl := v.messageCommon(req.Payload, req.Channel, req.TTLSeconds)
	typ := "event"
	if req.Type != nil && v.oneOf(*req.Type, "type", "request", "response", "event") {
		typ = *req.Type
	}
	if req.CorrelationID != nil {
		v.strLen(*req.CorrelationID, "correlationId", 0, 200)
	}
	if err := v.err(); err != nil {
		return nil, err
	}
	m := store.Message{ID: uuid.NewString(), WorkspaceID: c.ws, FromAgentID: c.param("id"), ToAgentID: req.ToAgentID,
		Channel: channel, Type: typ, Payload: req.Payload, CreatedAt: c.now, ExpiresAt: c.now.Add(time.Duration(ttl) * time.Second)}
	if req.CorrelationID != nil {
		m.CorrelationID = *req.CorrelationID
	}
	err := a.kv.Update(c.ctx, func(tx store.Tx) error {
		if _, err := store.GetAgent(tx, c.ws, m.FromAgentID); err != nil {
			return err
		}
		if _, err := store.GetAgent(tx, c.ws, m.ToAgentID); err != nil {
			return notFound("recipient agent")
		}
		return store.PutMessage(tx, &m, c.now)
	})
	if err != nil {
		return nil, err
	}
	c.resource = m.ID
	a.announce(c.ws, m.ToAgentID)
	return sendMessageResponse{MessageID: m.ID, ExpiresAt: m.ExpiresAt}, nil
}

type broadcastRequest struct {
	Payload    json.RawMessage `json:"payload" api:"required"`
	Channel    *string         `json:"channel"`
	TTLSeconds *int            `json:"ttlSeconds"`
}

// broadcast sends an event message to every other agent of the workspace.
func (a *API) broadcast(c *call) (any, error) {
	var req broadcastRequest
	if err := c.decode(&req); err != nil {
		return nil, err
	}
	var v validator
	channel, ttl := v.messageCommon(req.Payload, req.Channel, req.TTLSeconds)
	if err := v.err(); err != nil {
		return nil, err
	}
	from := c.param("id")
	var to []string
	err := a.kv.Update(c.ctx, func(tx store.Tx) error {
		if _, err := store.GetAgent(tx, c.ws, from); err != nil {
			return err
		}
		agents, _, err := store.ListAgents(tx, c.ws, "", 0, func(ag *store.Agent) bool { return ag.ID != from })
		if err != nil {
			return err
		}
		to = to[:0]
		for _, ag := range agents {
			m := store.Message{ID: uuid.NewString(), WorkspaceID: c.ws, FromAgentID: from, ToAgentID: ag.ID, Channel: channel,
				Type: "event", Payload: req.Payload, CreatedAt: c.now, ExpiresAt: c.now.Add(time.Duration(ttl) * time.Second)}
			if err := store.PutMessage(tx, &m, c.now); err != nil {
				return err
			}
			to = append(to, ag.ID)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	c.resource = from
	a.announce(c.ws, to...)
	return map[string]int{"sent": len(to)}, nil
}

type messageFrom struct {
	ID    string `json:"id"`
	Name  string `json:"name"`
	Label string `json:"label"`
}

type messageView struct {
	ID            string          `json:"id"`
	From          messageFrom     `json:"from"`
	Channel       string          `json:"channel"`
	Type          string          `json:"type"`
	Payload       json.RawMessage `json:"payload"`
	CorrelationID *string         `json:"correlationId"`
	CreatedAt     time.Time       `json:"createdAt"`
	ReadAt        *time.Time      `json:"readAt"`
}

func (a *API) listMessages(c *call) (any, error) {
	after, limit, err := c.page()
	if err != nil {
		return nil, err
	}
	channel := c.query("channel")
	unread := c.query("unreadOnly")
	if unread != "" && unread != "true" && unread != "false" {
		return nil, invalidField("unreadOnly", "must be true or false")
	}
	var msgs []store.Message
	var next string
	senders := map[string]messageFrom{}
	err = a.kv.View(c.ctx, func(tx store.Tx) error {
		if _, err := store.GetAgent(tx, c.ws, c.param("id")); err != nil {
			return err
		}
		var err error
		msgs, next, err = store.ListMessages(tx, c.ws, c.param("id"), after, limit, func(m *store.Message) bool {
			return (channel == "" || m.Channel == channel) && (unread != "true" || m.ReadAt == nil)
		})
		if err != nil {
			return err
		}
		for _, m := range msgs {
			if _, ok := senders[m.FromAgentID]; ok {
				continue
			}
			f := messageFrom{ID: m.FromAgentID}
			if ag, err := store.GetAgent(tx, c.ws, m.FromAgentID); err == nil {
				f.Name, f.Label = ag.Name, ag.Label
			}
			senders[m.FromAgentID] = f
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	c.setNext(next)
	out := make([]messageView, 0, len(msgs))
	for _, m := range msgs {
		out = append(out, messageView{ID: m.ID, From: senders[m.FromAgentID], Channel: m.Channel, Type: m.Type, Payload: m.Payload,
			CorrelationID: strPtr(m.CorrelationID), CreatedAt: m.CreatedAt, ReadAt: m.ReadAt})
	}
	return out, nil
}

type readMessagesRequest struct {
	MessageIDs []string `json:"messageIds" api:"required"`
}

func (a *API) readMessages(c *call) (any, error) {
	var req readMessagesRequest
	if err := c.decode(&req); err != nil {
		return nil, err
	}
	var v validator
	v.check(len(req.MessageIDs) > 0 && len(req.MessageIDs) <= 1000, "messageIds", "must list 1-1000 message ids")
	for i, id := range req.MessageIDs {
		v.uuid(id, "messageIds["+itoa(i)+"]")
	}
	if err := v.err(); err != nil {
		return nil, err
	}
	var n int
	err := a.kv.Update(c.ctx, func(tx store.Tx) error {
		if _, err := store.GetAgent(tx, c.ws, c.param("id")); err != nil {
			return err
		}
		var err error
		n, err = store.MarkMessagesRead(tx, c.ws, c.param("id"), req.MessageIDs, c.now)
		return err
	})
	if err != nil {
		return nil, err
	}
	c.resource = c.param("id")
	return map[string]int{"marked": n}, nil
}

type commandRequest struct {
	Action         string          `json:"action" api:"required"`
	Params         json.RawMessage `json:"params"`
	TimeoutSeconds *int            `json:"timeoutSeconds"`
}

type commandCreatedView struct {
	CommandID   string `json:"commandId"`
	Status      string `json:"status"`
	AgentOnline bool   `json:"agentOnline"`
}

// createCommand stores a command; for a connected agent it waits up to 2 s
// for an edge to take it ("delivered"), else it stays "queued" until the
// agent connects or the command expires (24 h).
func (a *API) createCommand(c *call) (any, error) {
	var req commandRequest
	if err := c.decode(&req); err != nil {
		return nil, err
	}
	var v validator
	v.oneOf(req.Action, "action", commandActions...)
	if s := strings.TrimSpace(string(req.Params)); s != "" && s != "null" {
		v.check(isObject(req.Params), "params", "must be an object")
	} else {
		req.Params = nil
	}
	timeout := 30
	if req.TimeoutSeconds != nil && v.intRange(*req.TimeoutSeconds, "timeoutSeconds", 1, 300) {
		timeout = *req.TimeoutSeconds
	}
	if err := v.err(); err != nil {
		return nil, err
	}
	cmd, err := a.queueCommand(c, c.param("id"), req.Action, req.Params, timeout)
	if err != nil {
		return nil, err
	}
	online := a.hub.Presence.AgentOnline(cmd.AgentID)
	status := store.CommandQueued
	if online && a.awaitCommand(c, cmd.ID, 2*time.Second, false) != nil {
		status = store.CommandDelivered
	}
	return commandCreatedView{CommandID: cmd.ID, Status: status, AgentOnline: online}, nil
}

// queueCommand stores a command for an agent of the call's workspace and
// announces it to the edges.
func (a *API) queueCommand(c *call, agentID, action string, params json.RawMessage, timeout int) (*store.Command, error) {
	cmd, err := a.storeCommand(c.ctx, c.ws, agentID, action, params, timeout, c.now)
	if err == nil {
		c.resource = cmd.ID
	}
	return cmd, err
}

func (a *API) storeCommand(ctx context.Context, ws, agentID, action string, params json.RawMessage, timeout int, now time.Time) (*store.Command, error) {
	cmd := store.Command{ID: uuid.NewString(), WorkspaceID: ws, AgentID: agentID, Action: action, Params: params,
		TimeoutSeconds: timeout, Status: store.CommandQueued, CreatedAt: now, ExpiresAt: now.Add(commandQueueTTL)}
	err := a.kv.Update(ctx, func(tx store.Tx) error {
		if _, err := store.GetAgent(tx, ws, agentID); err != nil {
			return err
		}
		return store.PutCommand(tx, &cmd, now)
	})
	if err != nil {
		return nil, err
	}
	a.announce(ws, agentID)
	return &cmd, nil
}

// awaitCommand waits until the command is delivered (or, with completed,
// finished) and returns it; nil on timeout.
func (a *API) awaitCommand(c *call, id string, d time.Duration, completed bool) *store.Command {
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	for {
		wake := a.cmdWait.wait(id)
		var cmd *store.Command
		_ = a.kv.View(c.ctx, func(tx store.Tx) error {
			var err error
			cmd, err = store.GetCommand(tx, c.ws, id)
			return err
		})
		if cmd != nil && ((!completed && cmd.DeliveredAt != nil) || cmd.CompletedAt != nil) {
			return cmd
		}
		select {
		case <-wake:
		case <-deadline.C:
			return nil
		case <-c.ctx.Done():
			return nil
		}
	}
}

type commandView struct {
	ID          string          `json:"id"`
	Action      string          `json:"action"`
	Params      json.RawMessage `json:"params"`
	Status      string          `json:"status"`
	Result      json.RawMessage `json:"result"`
	Error       *string         `json:"error"`
	CreatedAt   time.Time       `json:"createdAt"`
	CompletedAt *time.Time      `json:"completedAt"`
}

// commandStatus applies expiry: a queued command expires after 24 h, a
// delivered one when its timeout (plus 30 s of grace) passes without result.
func commandStatus(cmd *store.Command, now time.Time) string {
	switch cmd.Status {
	case store.CommandQueued:
		if now.After(cmd.ExpiresAt) {
			return store.CommandExpired
		}
	case store.CommandDelivered:
		if cmd.DeliveredAt != nil && now.After(cmd.DeliveredAt.Add(time.Duration(cmd.TimeoutSeconds)*time.Second+30*time.Second)) {
			return store.CommandExpired
		}
	}
	return cmd.Status
}

func rawOrNull(r json.RawMessage) json.RawMessage {
	if len(r) == 0 {
		return json.RawMessage("null")
	}
	return r
}

func (a *API) getCommand(c *call) (any, error) {
	var cmd *store.Command
	err := a.kv.View(c.ctx, func(tx store.Tx) error {
		var err error
		cmd, err = store.GetCommand(tx, c.ws, c.param("commandId"))
		if err == nil && cmd.AgentID != c.param("id") {
			return notFound("command")
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	params := cmd.Params
	if len(params) == 0 {
		params = json.RawMessage("{}")
	}
	return commandView{ID: cmd.ID, Action: cmd.Action, Params: params, Status: commandStatus(cmd, c.now),
		Result: rawOrNull(cmd.Result), Error: strPtr(cmd.Error), CreatedAt: cmd.CreatedAt, CompletedAt: cmd.CompletedAt}, nil
}

// announce tells the edges that agents have inbox items.
func (a *API) announce(ws string, agentIDs ...string) {
	a.hub.NotifyInbox(agentIDs...)
	if a.opts.Hooks.AgentInbox != nil {
		for _, id := range agentIDs {
			a.opts.Hooks.AgentInbox(ws, id)
		}
	}
}

// edgeInbox hands an edge the pending commands and undelivered messages of
// one agent, marking them delivered.
func (a *API) edgeInbox(c *call) (any, error) {
	agentID := c.query("agentId")
	var v validator
	v.uuid(agentID, "agentId")
	if err := v.err(); err != nil {
		return nil, err
	}
	out := config.AgentInbox{AgentID: agentID, Commands: []config.AgentCommand{}, Messages: []config.AgentMessage{}}
	var delivered []string
	err := a.kv.Update(c.ctx, func(tx store.Tx) error {
		out.Commands, out.Messages, delivered = out.Commands[:0], out.Messages[:0], delivered[:0]
		ag, err := store.LookupAgent(tx, agentID)
		if err != nil {
			return err
		}
		cmds, err := store.QueuedCommands(tx, ag.WorkspaceID, ag.ID)
		if err != nil {
			return err
		}
		for i := range cmds {
			cmd := &cmds[i]
			if commandStatus(cmd, c.now) != store.CommandQueued {
				continue
			}
			cmd.Status, cmd.DeliveredAt = store.CommandDelivered, &c.now
			if err := store.PutCommand(tx, cmd, c.now); err != nil {
				return err
			}
			delivered = append(delivered, cmd.ID)
			out.Commands = append(out.Commands, config.AgentCommand{ID: cmd.ID, Action: cmd.Action, Params: cmd.Params,
				TimeoutSeconds: cmd.TimeoutSeconds, CreatedAt: cmd.CreatedAt})
		}
		msgs, _, err := store.ListMessages(tx, ag.WorkspaceID, ag.ID, "", 500, func(m *store.Message) bool { return m.DeliveredAt == nil })
		if err != nil {
			return err
		}
		for i := len(msgs) - 1; i >= 0; i-- { // oldest first
			m := &msgs[i]
			m.DeliveredAt = &c.now
			if err := store.PutMessage(tx, m, c.now); err != nil {
				return err
			}
			out.Messages = append(out.Messages, config.AgentMessage{ID: m.ID, FromAgentID: m.FromAgentID, Channel: m.Channel, Type: m.Type,
				Payload: m.Payload, CorrelationID: m.CorrelationID, CreatedAt: m.CreatedAt, ExpiresAt: m.ExpiresAt})
		}
		return nil
	})
	if isNotFoundErr(err) {
		return nil, notFound("agent")
	}
	if err != nil {
		return nil, err
	}
	for _, id := range delivered {
		a.cmdWait.signal(id)
	}
	return out, nil
}

// hasInbox reports whether an agent has queued commands or undelivered messages.
func (a *API) hasInbox(tx store.Tx, ws, agentID string) (bool, error) {
	cmds, err := store.QueuedCommands(tx, ws, agentID)
	if err != nil || len(cmds) > 0 {
		return len(cmds) > 0, err
	}
	msgs, _, err := store.ListMessages(tx, ws, agentID, "", 1, func(m *store.Message) bool { return m.DeliveredAt == nil })
	return len(msgs) > 0, err
}
