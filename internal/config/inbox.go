package config

import (
	"encoding/json"
	"time"
)

// # Agent inbox
//
// Commands and messages for agents are stored by the control plane. When one
// is stored for an agent, the control plane sends an "inbox" message on every
// edge's config stream naming the agent (and does so again when an agent
// connects with items pending). An edge holding a session of that agent
// fetches the items with
//
//	GET /v1/edges/agent-inbox?agentId=<id>
//	Authorization: Bearer <edge token>
//
// which answers {"success":true,"data":<AgentInbox>} and marks the returned
// commands "delivered" (and the messages as handed over, so they are not
// returned twice). The edge passes them to the agent over its control stream
// and relays command results in Report.CommandResult.

// AgentInbox is what an edge fetches for one connected agent.
type AgentInbox struct {
	AgentID  string         `json:"agentId"`
	Commands []AgentCommand `json:"commands"`
	Messages []AgentMessage `json:"messages"`
}

// AgentCommand is a command for an agent to execute (action: status, expose,
// unexpose, reach, diagnose, restart, stop).
type AgentCommand struct {
	ID             string          `json:"id"`
	Action         string          `json:"action"`
	Params         json.RawMessage `json:"params,omitempty"`
	TimeoutSeconds int             `json:"timeoutSeconds"`
	CreatedAt      time.Time       `json:"createdAt"`
}

// AgentMessage is a durable message from another agent of the workspace.
type AgentMessage struct {
	ID            string          `json:"id"`
	FromAgentID   string          `json:"fromAgentId"`
	Channel       string          `json:"channel"`
	Type          string          `json:"type"` // request|response|event
	Payload       json.RawMessage `json:"payload"`
	CorrelationID string          `json:"correlationId,omitempty"`
	CreatedAt     time.Time       `json:"createdAt"`
	ExpiresAt     time.Time       `json:"expiresAt"`
}

// Connection is one live connection through a tunnel, as an edge reports it.
type Connection struct {
	ID        string    `json:"id"`
	ServiceID string    `json:"serviceId"`
	Kind      string    `json:"kind"` // http|tcp|websocket
	ClientIP  string    `json:"clientIp"`
	StartedAt time.Time `json:"startedAt"`
	BytesIn   int64     `json:"bytesIn"`
	BytesOut  int64     `json:"bytesOut"`
}
