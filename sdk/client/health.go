package client

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"time"
)

// Health is the answer of GET /health.
type Health struct {
	Status        string    `json:"status"` // "ok" or "degraded"
	Version       string    `json:"version"`
	UptimeSeconds float64   `json:"uptimeSeconds"`
	Database      string    `json:"database"` // "ok" or "error"
	Timestamp     time.Time `json:"timestamp"`
}

// Health calls GET /health (no authentication). When the server answers 503
// (degraded) with a health payload, it returns both the payload and the
// *APIError.
func (c *Client) Health(ctx context.Context) (*Health, error) {
	var h Health
	_, err := c.do(ctx, request{method: http.MethodGet, path: "/health"}, &h)
	if err == nil {
		return &h, nil
	}
	var ae *APIError
	if errors.As(err, &ae) && ae.StatusCode == http.StatusServiceUnavailable {
		h.Status = "degraded"
		return &h, err
	}
	return nil, err
}

// Status is the answer of GET /v1/status: workspace counts.
type Status struct {
	Agents        int   `json:"agents"`
	OnlineAgents  int   `json:"onlineAgents"`
	Services      int   `json:"services"`
	ActiveShares  int   `json:"activeShares"`
	Edges         int   `json:"edges"`
	OnlineEdges   int   `json:"onlineEdges"`
	ConfigVersion int64 `json:"configVersion"`
}

// Status calls GET /v1/status (read).
func (c *Client) Status(ctx context.Context) (*Status, error) {
	var s Status
	if err := c.get(ctx, p("status"), nil, &s); err != nil {
		return nil, err
	}
	return &s, nil
}

// OpenAPI returns the server's OpenAPI 3.1 document (GET /openapi.json).
func (c *Client) OpenAPI(ctx context.Context) (json.RawMessage, error) {
	_, body, err := c.send(ctx, request{method: http.MethodGet, path: "/openapi.json"})
	if err != nil {
		return nil, err
	}
	return json.RawMessage(body), nil
}
