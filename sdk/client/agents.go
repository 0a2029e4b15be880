package client

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"time"
)

// Agent client types.
const (
	ClientTypeCLI    = "cli"
	ClientTypeSDK    = "sdk"
	ClientTypeCI     = "ci"
	ClientTypeCustom = "custom"
)

// ProvisionRequest is the body of POST /v1/agents/provision.
type ProvisionRequest struct {
	// ClientType is cli|sdk|ci|custom (server default cli).
	ClientType string `json:"clientType,omitempty"`
	Name       string `json:"name,omitempty"`
	// Label defaults to "default" on the server.
	Label string `json:"label,omitempty"`
	// TTLSeconds is the token lifetime, 300-2592000 (server default 2592000).
	TTLSeconds int `json:"ttlSeconds,omitempty"`
}

// ProvisionedAgent is a new agent identity. Token is shown only this once.
type ProvisionedAgent struct {
	AgentID       string      `json:"agentId"`
	Token         string      `json:"token"`
	ExpiresAt     time.Time   `json:"expiresAt"`
	WorkspaceID   string      `json:"workspaceId"`
	WorkspaceName string      `json:"workspaceName"`
	Edges         []AgentEdge `json:"edges"`
}

// AgentEdge is an edge an agent dials.
type AgentEdge struct {
	ID         string `json:"id"`
	TunnelAddr string `json:"tunnelAddr"`
}

// RegisterAgentRequest is the body of POST /v1/agents/register.
type RegisterAgentRequest struct {
	AgentID string `json:"agentId"`
	Token   string `json:"token"`
	Name    string `json:"name,omitempty"`
	Label   string `json:"label,omitempty"`
}

// RegisteredAgent is the answer of POST /v1/agents/register.
type RegisteredAgent struct {
	ID          string    `json:"id"`
	Name        string    `json:"name"`
	Label       string    `json:"label"`
	WorkspaceID string    `json:"workspaceId"`
	CreatedAt   time.Time `json:"createdAt"`
}

// Capability is a named capability an agent advertises.
type Capability struct {
	Name     string          `json:"name"`
	Metadata json.RawMessage `json:"metadata,omitempty"`
}

// Agent is a connector as listed by GET /v1/agents. Services is set only by GetAgent.
type Agent struct {
	ID             string       `json:"id"`
	Name           string       `json:"name"`
	Label          string       `json:"label"`
	ClientType     string       `json:"clientType"`
	IsOnline       bool         `json:"isOnline"`
	LastSeenAt     *time.Time   `json:"lastSeenAt,omitempty"`
	LastSeenIP     string       `json:"lastSeenIp,omitempty"`
	ConnectedEdges []string     `json:"connectedEdges"`
	TokenExpiresAt *time.Time   `json:"tokenExpiresAt,omitempty"`
	CreatedAt      time.Time    `json:"createdAt"`
	Capabilities   []Capability `json:"capabilities"`
	ServiceCount   int          `json:"serviceCount"`
	Services       []Service    `json:"services,omitempty"`
}

// AgentFilter narrows ListAgents.
type AgentFilter struct {
	Online     *bool
	Label      string
	Capability string
}

// AgentDeletion is the answer of DELETE /v1/agents/:id.
type AgentDeletion struct {
	Deleted struct {
		Services int `json:"services"`
		Shares   int `json:"shares"`
	} `json:"deleted"`
}

// AgentAuditLog is one entry of an agent's audit trail.
type AgentAuditLog struct {
	ID        string          `json:"id"`
	Event     string          `json:"event"` // PROVISIONED|REGISTERED|CONNECTED|DISCONNECTED|ROTATED|REJECTED|IP_CHANGED|EXPIRED
	IPAddress string          `json:"ipAddress,omitempty"`
	EdgeID    string          `json:"edgeId,omitempty"`
	Details   json.RawMessage `json:"details,omitempty"`
	CreatedAt time.Time       `json:"createdAt"`
}

// Heartbeat is the answer of POST /v1/agents/heartbeat.
type Heartbeat struct {
	LastSeenAt time.Time `json:"lastSeenAt"`
}

// RotatedToken is the answer of POST /v1/agents/rotate-token.
type RotatedToken struct {
	Token     string    `json:"token"`
	ExpiresAt time.Time `json:"expiresAt"`
}

// OrchestrationAgent is one entry of GET /v1/agents/orchestration.
type OrchestrationAgent struct {
	ID           string         `json:"id"`
	Name         string         `json:"name"`
	Label        string         `json:"label"`
	IsOnline     bool           `json:"isOnline"`
	Capabilities []Capability   `json:"capabilities"`
	Services     []ServiceBrief `json:"services"`
}

// ServiceBrief is the short form of a service.
type ServiceBrief struct {
	ID       string `json:"id"`
	Name     string `json:"name"`
	Protocol string `json:"protocol"`
	Status   string `json:"status"`
}

// ProvisionAgent calls POST /v1/agents/provision (write): a new agent identity.
func (c *Client) ProvisionAgent(ctx context.Context, req ProvisionRequest) (*ProvisionedAgent, error) {
	var a ProvisionedAgent
	if err := c.call(ctx, http.MethodPost, p("agents", "provision"), req, &a); err != nil {
		return nil, err
	}
	return &a, nil
}

// RegisterAgent calls POST /v1/agents/register (write): upsert by agent id.
func (c *Client) RegisterAgent(ctx context.Context, req RegisterAgentRequest) (*RegisteredAgent, error) {
	var a RegisteredAgent
	if err := c.call(ctx, http.MethodPost, p("agents", "register"), req, &a); err != nil {
		return nil, err
	}
	return &a, nil
}

// AgentHeartbeat calls POST /v1/agents/heartbeat with the agent's own token.
func (c *Client) AgentHeartbeat(ctx context.Context, agentID, token string) (*Heartbeat, error) {
	body := struct {
		AgentID string `json:"agentId"`
		Token   string `json:"token"`
	}{agentID, token}
	var h Heartbeat
	if err := c.call(ctx, http.MethodPost, p("agents", "heartbeat"), body, &h); err != nil {
		return nil, err
	}
	return &h, nil
}

// RotateAgentToken calls POST /v1/agents/rotate-token with the agent's
// current token; the old one stops working on every edge shortly after.
func (c *Client) RotateAgentToken(ctx context.Context, agentID, currentToken string) (*RotatedToken, error) {
	body := struct {
		AgentID      string `json:"agentId"`
		CurrentToken string `json:"currentToken"`
	}{agentID, currentToken}
	var t RotatedToken
	if err := c.call(ctx, http.MethodPost, p("agents", "rotate-token"), body, &t); err != nil {
		return nil, err
	}
	return &t, nil
}

// ListAgents calls GET /v1/agents (read).
func (c *Client) ListAgents(ctx context.Context, lo ListOptions, f AgentFilter) ([]Agent, string, error) {
	return list[Agent](ctx, c, p("agents"), lo, url.Values{
		"online": {boolString(f.Online)}, "label": {f.Label}, "capability": {f.Capability},
	})
}

// GetAgent calls GET /v1/agents/:id (read): the agent with its services.
func (c *Client) GetAgent(ctx context.Context, id string) (*Agent, error) {
	var a Agent
	if err := c.get(ctx, p("agents", id), nil, &a); err != nil {
		return nil, err
	}
	return &a, nil
}

// DeleteAgent calls DELETE /v1/agents/:id (write): disconnects the agent and
// deletes its services and their shares.
func (c *Client) DeleteAgent(ctx context.Context, id string) (*AgentDeletion, error) {
	var d AgentDeletion
	if err := c.call(ctx, http.MethodDelete, p("agents", id), nil, &d); err != nil {
		return nil, err
	}
	return &d, nil
}

// ListAgentAuditLogs calls GET /v1/agents/:id/audit-logs (read).
func (c *Client) ListAgentAuditLogs(ctx context.Context, id string, lo ListOptions) ([]AgentAuditLog, string, error) {
	return list[AgentAuditLog](ctx, c, p("agents", id, "audit-logs"), lo, nil)
}

// SetAgentCapabilities calls POST /v1/agents/:id/capabilities (write): upsert
// by name; returns the agent's full capability list.
func (c *Client) SetAgentCapabilities(ctx context.Context, id string, caps []Capability) ([]Capability, error) {
	if caps == nil {
		caps = []Capability{}
	}
	body := struct {
		Capabilities []Capability `json:"capabilities"`
	}{caps}
	var out []Capability
	if err := c.call(ctx, http.MethodPost, p("agents", id, "capabilities"), body, &out); err != nil {
		return nil, err
	}
	return out, nil
}

// ListOrchestration calls GET /v1/agents/orchestration (read): agents with
// their capabilities and services, online first.
func (c *Client) ListOrchestration(ctx context.Context, lo ListOptions) ([]OrchestrationAgent, string, error) {
	return list[OrchestrationAgent](ctx, c, p("agents", "orchestration"), lo, nil)
}
