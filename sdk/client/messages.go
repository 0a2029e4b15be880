package client

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// Message types.
const (
	MessageRequest  = "request"
	MessageResponse = "response"
	MessageEvent    = "event"
)

// SendMessageRequest is the body of POST /v1/agents/:id/messages/send.
type SendMessageRequest struct {
	ToAgentID string          `json:"toAgentId"`
	Payload   json.RawMessage `json:"payload"`
	// Channel defaults to "default".
	Channel string `json:"channel,omitempty"`
	// Type is request|response|event (default event).
	Type          string `json:"type,omitempty"`
	CorrelationID string `json:"correlationId,omitempty"`
	// TTLSeconds is 1-604800 (default 86400).
	TTLSeconds int `json:"ttlSeconds,omitempty"`
}

// SentMessage is the answer of a message send.
type SentMessage struct {
	MessageID string    `json:"messageId"`
	ExpiresAt time.Time `json:"expiresAt"`
}

// BroadcastRequest is the body of POST /v1/agents/:id/messages/broadcast.
type BroadcastRequest struct {
	Payload    json.RawMessage `json:"payload"`
	Channel    string          `json:"channel,omitempty"`
	TTLSeconds int             `json:"ttlSeconds,omitempty"`
}

// Message is a message received by an agent.
type Message struct {
	ID            string          `json:"id"`
	From          MessageSender   `json:"from"`
	Channel       string          `json:"channel"`
	Type          string          `json:"type"`
	Payload       json.RawMessage `json:"payload"`
	CorrelationID string          `json:"correlationId,omitempty"`
	CreatedAt     time.Time       `json:"createdAt"`
	ReadAt        *time.Time      `json:"readAt,omitempty"`
}

// MessageSender identifies the sending agent.
type MessageSender struct {
	ID    string `json:"id"`
	Name  string `json:"name"`
	Label string `json:"label"`
}

// MessageFilter narrows ListMessages.
type MessageFilter struct {
	Channel    string
	UnreadOnly bool
}

// SendMessage calls POST /v1/agents/:id/messages/send from agent fromID.
func (c *Client) SendMessage(ctx context.Context, fromID string, req SendMessageRequest) (*SentMessage, error) {
	var m SentMessage
	if err := c.call(ctx, http.MethodPost, p("agents", fromID, "messages", "send"), req, &m); err != nil {
		return nil, err
	}
	return &m, nil
}

// BroadcastMessage calls POST /v1/agents/:id/messages/broadcast and returns
// the number of recipients.
func (c *Client) BroadcastMessage(ctx context.Context, fromID string, req BroadcastRequest) (int, error) {
	var out struct {
		Sent int `json:"sent"`
	}
	if err := c.call(ctx, http.MethodPost, p("agents", fromID, "messages", "broadcast"), req, &out); err != nil {
		return 0, err
	}
	return out.Sent, nil
}

// ListMessages calls GET /v1/agents/:id/messages.
func (c *Client) ListMessages(ctx context.Context, agentID string, lo ListOptions, f MessageFilter) ([]Message, string, error) {
	q := url.Values{"channel": {f.Channel}}
	if f.UnreadOnly {
		q.Set("unreadOnly", strconv.FormatBool(true))
	}
	return list[Message](ctx, c, p("agents", agentID, "messages"), lo, q)
}

// MarkMessagesRead calls POST /v1/agents/:id/messages/read.
func (c *Client) MarkMessagesRead(ctx context.Context, agentID string, messageIDs []string) error {
	if messageIDs == nil {
		messageIDs = []string{}
	}
	body := struct {
		MessageIDs []string `json:"messageIds"`
	}{messageIDs}
	return c.call(ctx, http.MethodPost, p("agents", agentID, "messages", "read"), body, nil)
}

// Agent command actions.
const (
	ActionStatus   = "status"
	ActionExpose   = "expose"
	ActionUnexpose = "unexpose"
	ActionReach    = "reach"
	ActionDiagnose = "diagnose"
	ActionRestart  = "restart"
	ActionStop     = "stop"
)

// CommandRequest is the body of POST /v1/agents/:id/command.
type CommandRequest struct {
	Action string          `json:"action"`
	Params json.RawMessage `json:"params,omitempty"`
	// TimeoutSeconds is 1-300 (default 30).
	TimeoutSeconds int `json:"timeoutSeconds,omitempty"`
}

// CommandReceipt is the answer of POST /v1/agents/:id/command.
type CommandReceipt struct {
	CommandID   string `json:"commandId"`
	Status      string `json:"status"` // delivered|queued
	AgentOnline bool   `json:"agentOnline"`
}

// Command is a command sent to an agent and its outcome.
type Command struct {
	ID          string          `json:"id"`
	Action      string          `json:"action"`
	Params      json.RawMessage `json:"params,omitempty"`
	Status      string          `json:"status"` // queued|delivered|succeeded|failed|expired
	Result      json.RawMessage `json:"result,omitempty"`
	Error       string          `json:"error,omitempty"`
	CreatedAt   time.Time       `json:"createdAt"`
	CompletedAt *time.Time      `json:"completedAt,omitempty"`
}

// Done reports whether the command reached a final status.
func (c *Command) Done() bool {
	switch c.Status {
	case "succeeded", "failed", "expired":
		return true
	}
	return false
}

// SendCommand calls POST /v1/agents/:id/command (write).
func (c *Client) SendCommand(ctx context.Context, agentID string, req CommandRequest) (*CommandReceipt, error) {
	var r CommandReceipt
	if err := c.call(ctx, http.MethodPost, p("agents", agentID, "command"), req, &r); err != nil {
		return nil, err
	}
	return &r, nil
}

// GetCommand calls GET /v1/agents/:id/commands/:commandId.
func (c *Client) GetCommand(ctx context.Context, agentID, commandID string) (*Command, error) {
	var cmd Command
	if err := c.get(ctx, p("agents", agentID, "commands", commandID), nil, &cmd); err != nil {
		return nil, err
	}
	return &cmd, nil
}
