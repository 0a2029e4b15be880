package client

import (
	"context"
	"net/http"
	"time"
)

// Tunnel statuses.
const (
	TunnelActive     = "active"
	TunnelPaused     = "paused"
	TunnelConnecting = "connecting"
	TunnelOffline    = "offline"
)

// Tunnel is the live exposure of a service through the edges; its ID is the service's.
type Tunnel struct {
	ID                string    `json:"id"`
	Name              string    `json:"name"`
	Status            string    `json:"status"`
	Protocol          string    `json:"protocol"`
	TargetHost        string    `json:"targetHost"`
	TargetPort        int       `json:"targetPort"`
	TunnelPort        int       `json:"tunnelPort"`
	IsPublic          bool      `json:"isPublic"`
	PublicURL         string    `json:"publicUrl,omitempty"`
	AgentID           string    `json:"agentId"`
	AgentOnline       bool      `json:"agentOnline"`
	Edges             []string  `json:"edges"`
	ActiveConnections int       `json:"activeConnections"`
	BytesIn           int64     `json:"bytesIn"`
	BytesOut          int64     `json:"bytesOut"`
	CreatedAt         time.Time `json:"createdAt"`
}

// CreateTunnelRequest is the body of POST /v1/tunnels.
type CreateTunnelRequest struct {
	// Target is "host:port".
	Target  string `json:"target"`
	AgentID string `json:"agentId"`
	// Name is derived from the port when empty (5432 postgres, 3000 web, …).
	Name     string `json:"name,omitempty"`
	Protocol string `json:"protocol,omitempty"`
	IsPublic *bool  `json:"isPublic,omitempty"`
}

// UpdateTunnelRequest is the body of PATCH /v1/tunnels/:id.
type UpdateTunnelRequest struct {
	Name *string `json:"name,omitempty"`
	// Status is active|paused.
	Status *string `json:"status,omitempty"`
}

// Connection is a live connection through a tunnel.
type Connection struct {
	ID        string    `json:"id"`
	Kind      string    `json:"kind"` // http|tcp|websocket
	ClientIP  string    `json:"clientIp"`
	EdgeID    string    `json:"edgeId"`
	StartedAt time.Time `json:"startedAt"`
	BytesIn   int64     `json:"bytesIn"`
	BytesOut  int64     `json:"bytesOut"`
}

// ListTunnels calls GET /v1/tunnels (read).
func (c *Client) ListTunnels(ctx context.Context, lo ListOptions) ([]Tunnel, string, error) {
	return list[Tunnel](ctx, c, p("tunnels"), lo, nil)
}

// GetTunnel calls GET /v1/tunnels/:id (read).
func (c *Client) GetTunnel(ctx context.Context, id string) (*Tunnel, error) {
	var t Tunnel
	if err := c.get(ctx, p("tunnels", id), nil, &t); err != nil {
		return nil, err
	}
	return &t, nil
}

// CreateTunnel calls POST /v1/tunnels (write).
func (c *Client) CreateTunnel(ctx context.Context, req CreateTunnelRequest) (*Tunnel, error) {
	var t Tunnel
	if err := c.call(ctx, http.MethodPost, p("tunnels"), req, &t); err != nil {
		return nil, err
	}
	return &t, nil
}

// UpdateTunnel calls PATCH /v1/tunnels/:id (write).
func (c *Client) UpdateTunnel(ctx context.Context, id string, req UpdateTunnelRequest) (*Tunnel, error) {
	var t Tunnel
	if err := c.call(ctx, http.MethodPatch, p("tunnels", id), req, &t); err != nil {
		return nil, err
	}
	return &t, nil
}

// PauseTunnel sets a tunnel's status to paused: the edges refuse its traffic
// (503) without disconnecting the agent.
func (c *Client) PauseTunnel(ctx context.Context, id string) (*Tunnel, error) {
	s := TunnelPaused
	return c.UpdateTunnel(ctx, id, UpdateTunnelRequest{Status: &s})
}

// ResumeTunnel sets a paused tunnel's status back to active.
func (c *Client) ResumeTunnel(ctx context.Context, id string) (*Tunnel, error) {
	s := TunnelActive
	return c.UpdateTunnel(ctx, id, UpdateTunnelRequest{Status: &s})
}

// DeleteTunnel calls DELETE /v1/tunnels/:id (write).
func (c *Client) DeleteTunnel(ctx context.Context, id string) error {
	return c.call(ctx, http.MethodDelete, p("tunnels", id), nil, nil)
}

// ShareTunnel calls POST /v1/tunnels/:id/share: the same as CreateShare.
func (c *Client) ShareTunnel(ctx context.Context, id string, req CreateShareRequest) (*Share, error) {
	var s Share
	if err := c.call(ctx, http.MethodPost, p("tunnels", id, "share"), req, &s); err != nil {
		return nil, err
	}
	return &s, nil
}

// ListTunnelConnections calls GET /v1/tunnels/:id/connections (read).
func (c *Client) ListTunnelConnections(ctx context.Context, id string, lo ListOptions) ([]Connection, string, error) {
	return list[Connection](ctx, c, p("tunnels", id, "connections"), lo, nil)
}
