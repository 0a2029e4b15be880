package client

import (
	"context"
	"net/http"
	"time"
)

// Edge is an edge node. Token is set only in the answer of CreateEdge.
type Edge struct {
	ID              string     `json:"id"`
	Name            string     `json:"name"`
	Region          string     `json:"region,omitempty"`
	PublicURL       string     `json:"publicUrl"`
	TunnelAddr      string     `json:"tunnelAddr"`
	Token           string     `json:"token,omitempty"`
	IsOnline        bool       `json:"isOnline"`
	ConfigVersion   int64      `json:"configVersion"`
	Lag             int64      `json:"lag"`
	ConnectedAgents int        `json:"connectedAgents"`
	LastSeenAt      *time.Time `json:"lastSeenAt,omitempty"`
	Version         string     `json:"version,omitempty"`
	CreatedAt       *time.Time `json:"createdAt,omitempty"`
}

// CreateEdgeRequest is the body of POST /v1/edges.
type CreateEdgeRequest struct {
	Name string `json:"name"`
	// PublicURL is the base of share links served by this edge.
	PublicURL string `json:"publicUrl"`
	// TunnelAddr is the host:port agents dial.
	TunnelAddr string `json:"tunnelAddr"`
	Region     string `json:"region,omitempty"`
}

// CreateEdge calls POST /v1/edges (admin). The edge token is shown once.
func (c *Client) CreateEdge(ctx context.Context, req CreateEdgeRequest) (*Edge, error) {
	var e Edge
	if err := c.call(ctx, http.MethodPost, p("edges"), req, &e); err != nil {
		return nil, err
	}
	return &e, nil
}

// ListEdges calls GET /v1/edges (admin).
func (c *Client) ListEdges(ctx context.Context, lo ListOptions) ([]Edge, string, error) {
	return list[Edge](ctx, c, p("edges"), lo, nil)
}

// DeleteEdge calls DELETE /v1/edges/:id (admin).
func (c *Client) DeleteEdge(ctx context.Context, id string) error {
	return c.call(ctx, http.MethodDelete, p("edges", id), nil, nil)
}
