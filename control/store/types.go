package store

import (
	"encoding/json"
	"time"
)

// Scopes of API keys; each implies the ones below it.
const (
	ScopeRead  = "read"
	ScopeWrite = "write"
	ScopeAdmin = "admin"
)

// Workspace is one isolated tenant.
type Workspace struct {
	ID          string    `json:"id"`
	Name        string    `json:"name"`
	CreatedAt   time.Time `json:"createdAt"`
	MaxServices int       `json:"maxServices,omitempty"`
	MaxShares   int       `json:"maxShares,omitempty"`
}

// APIKey is a workspace credential; only the SHA-256 of the key is kept.
type APIKey struct {
	ID              string     `json:"id"`
	WorkspaceID     string     `json:"workspaceId"`
	Name            string     `json:"name"`
	KeyHash         string     `json:"keyHash"`
	KeyPrefix       string     `json:"keyPrefix"`
	Scopes          []string   `json:"scopes"`
	AllowedIPRanges []string   `json:"allowedIpRanges"`
	CreatedAt       time.Time  `json:"createdAt"`
	ExpiresAt       *time.Time `json:"expiresAt,omitempty"`
	RevokedAt       *time.Time `json:"revokedAt,omitempty"`
	LastUsedAt      *time.Time `json:"lastUsedAt,omitempty"`
	LastUsedIP      string     `json:"lastUsedIp,omitempty"`
}

// Active reports whether the key authenticates at t: not revoked, not
// expired.
func (k *APIKey) Active(t time.Time) bool {
	return k.RevokedAt == nil && (k.ExpiresAt == nil || t.Before(*k.ExpiresAt))
}

// Capability is something an agent says it can do.
type Capability struct {
	Name     string          `json:"name"`
	Metadata json.RawMessage `json:"metadata,omitempty"`
}

// Agent is one running connector.
type Agent struct {
	ID             string    `json:"id"`
	WorkspaceID    string    `json:"workspaceId"`
	Name           string    `json:"name"`
	Label          string    `json:"label"`
	ClientType     string    `json:"clientType"`
	TokenHash      string    `json:"tokenHash"`
	PublicKey      string    `json:"publicKey,omitempty"` // hex Ed25519 handshake key (tunnel v2)
	TokenExpiresAt time.Time `json:"tokenExpiresAt"`
	// TokenTTLSeconds is the lifetime the token was provisioned with, which
	// a rotation keeps (0: the default, 30 days; records before it).
	TokenTTLSeconds int          `json:"tokenTtlSeconds,omitempty"`
	Registered      bool         `json:"registered,omitempty"`
	CreatedAt       time.Time    `json:"createdAt"`
	LastSeenAt      *time.Time   `json:"lastSeenAt,omitempty"`
	LastSeenIP      string       `json:"lastSeenIp,omitempty"`
	Capabilities    []Capability `json:"capabilities,omitempty"`
}

// HealthConfig is a service's health-monitoring setting.
type HealthConfig struct {
	Enabled         bool `json:"enabled"`
	IntervalSeconds int  `json:"intervalSeconds"`
}

// Service is one target exposed by one agent.
type Service struct {
	ID          string       `json:"id"`
	WorkspaceID string       `json:"workspaceId"`
	AgentID     string       `json:"agentId"`
	Name        string       `json:"name"`
	TargetHost  string       `json:"targetHost"`
	TargetPort  int          `json:"targetPort"`
	Protocol    string       `json:"protocol"`
	Status      string       `json:"status"`
	TunnelPort  int          `json:"tunnelPort"`
	IsPublic    bool         `json:"isPublic"`
	Subdomain   string       `json:"subdomain,omitempty"`
	Paused      bool         `json:"paused,omitempty"`
	Health      HealthConfig `json:"health"`
	CreatedAt   time.Time    `json:"createdAt"`
	UpdatedAt   time.Time    `json:"updatedAt"`
}

// PluginRef is one extra plugin of a share's policy chain.
type PluginRef struct {
	PluginID string          `json:"pluginId"`
	Config   json.RawMessage `json:"config,omitempty"`
}

// Share is a share link; only the SHA-256 of the token is kept.
type Share struct {
	ID              string      `json:"id"`
	WorkspaceID     string      `json:"workspaceId"`
	ServiceID       string      `json:"serviceId"`
	Name            string      `json:"name"`
	Description     string      `json:"description"`
	TokenHash       string      `json:"tokenHash"`
	TokenPreview    string      `json:"tokenPreview"`
	ExpiresAt       *time.Time  `json:"expiresAt,omitempty"`
	RevokedAt       *time.Time  `json:"revokedAt,omitempty"`
	AllowedPaths    []string    `json:"allowedPaths"`
	AllowedMethods  []string    `json:"allowedMethods"`
	AllowedIPs      []string    `json:"allowedIps"`
	RateLimitPerMin int         `json:"rateLimitPerMin,omitempty"`
	PasswordHash    string      `json:"passwordHash,omitempty"`
	MaxUses         int64       `json:"maxUses,omitempty"`
	Plugins         []PluginRef `json:"plugins"`
	AccessCount     int64       `json:"accessCount"`
	LastAccessedAt  *time.Time  `json:"lastAccessedAt,omitempty"`
	CreatedAt       time.Time   `json:"createdAt"`
	CreatedBy       string      `json:"createdBy"`
}

// Active reports whether the share can be used at t.
func (s *Share) Active(t time.Time) bool {
	if s.RevokedAt != nil {
		return false
	}
	if s.ExpiresAt != nil && !t.Before(*s.ExpiresAt) {
		return false
	}
	if s.MaxUses > 0 && s.AccessCount >= s.MaxUses {
		return false
	}
	return true
}

// Edge is an edge node. Edges are platform-level, not per workspace.
type Edge struct {
	ID         string    `json:"id"`
	Name       string    `json:"name"`
	Region     string    `json:"region"`
	PublicURL  string    `json:"publicUrl"`
	TunnelAddr string    `json:"tunnelAddr"`
	TokenHash  string    `json:"tokenHash"`
	CreatedAt  time.Time `json:"createdAt"`
}

// AuditEvent records a mutation through the API or a connection event.
type AuditEvent struct {
	ID          string    `json:"id"`
	WorkspaceID string    `json:"workspaceId"`
	Type        string    `json:"type"` // e.g. "share.create", "agent.CONNECTED"
	Event       string    `json:"event,omitempty"`
	KeyID       string    `json:"keyId,omitempty"`
	Method      string    `json:"method,omitempty"`
	Route       string    `json:"route,omitempty"`
	ResourceID  string    `json:"resourceId,omitempty"`
	AgentID     string    `json:"agentId,omitempty"`
	EdgeID      string    `json:"edgeId,omitempty"`
	IP          string    `json:"ipAddress,omitempty"`
	Result      string    `json:"result,omitempty"`
	Details     string    `json:"details,omitempty"`
	CreatedAt   time.Time `json:"createdAt"`
}

// Message is a durable message between agents of one workspace.
type Message struct {
	ID            string          `json:"id"`
	WorkspaceID   string          `json:"workspaceId"`
	FromAgentID   string          `json:"fromAgentId"`
	ToAgentID     string          `json:"toAgentId"`
	Channel       string          `json:"channel"`
	Type          string          `json:"type"`
	Payload       json.RawMessage `json:"payload"`
	CorrelationID string          `json:"correlationId,omitempty"`
	CreatedAt     time.Time       `json:"createdAt"`
	ExpiresAt     time.Time       `json:"expiresAt"`
	ReadAt        *time.Time      `json:"readAt,omitempty"`
	DeliveredAt   *time.Time      `json:"deliveredAt,omitempty"` // handed to an edge
	Key           string          `json:"key,omitempty"`         // storage order key, set on first write
}

// Command statuses.
const (
	CommandQueued    = "queued"
	CommandDelivered = "delivered"
	CommandSucceeded = "succeeded"
	CommandFailed    = "failed"
	CommandExpired   = "expired"
)

// Command is an instruction for an agent, stored until it is done or expires.
type Command struct {
	ID             string          `json:"id"`
	WorkspaceID    string          `json:"workspaceId"`
	AgentID        string          `json:"agentId"`
	Action         string          `json:"action"`
	Params         json.RawMessage `json:"params,omitempty"`
	TimeoutSeconds int             `json:"timeoutSeconds"`
	Status         string          `json:"status"`
	Result         json.RawMessage `json:"result,omitempty"`
	Error          string          `json:"error,omitempty"`
	CreatedAt      time.Time       `json:"createdAt"`
	ExpiresAt      time.Time       `json:"expiresAt"`
	DeliveredAt    *time.Time      `json:"deliveredAt,omitempty"`
	CompletedAt    *time.Time      `json:"completedAt,omitempty"`
}

// Diagnostic is the result of one check of a service.
type Diagnostic struct {
	ID          string          `json:"id"`
	WorkspaceID string          `json:"workspaceId"`
	ServiceID   string          `json:"serviceId"`
	Perspective string          `json:"perspective"`
	Status      string          `json:"status"`
	Message     string          `json:"message"`
	Result      json.RawMessage `json:"result,omitempty"` // dns/tcp/tls/http parts as sent by the agent
	CreatedAt   time.Time       `json:"createdAt"`
}
