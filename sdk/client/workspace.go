package client

import (
	"context"
	"encoding/json"
	"net/http"
	"time"
)

// Workspace is the tenant an API key belongs to.
type Workspace struct {
	ID        string          `json:"id"`
	Name      string          `json:"name"`
	CreatedAt time.Time       `json:"createdAt"`
	Usage     *WorkspaceUsage `json:"usage,omitempty"`
	Limits    *WorkspaceLimit `json:"limits,omitempty"`
}

// WorkspaceUsage counts a workspace's resources.
type WorkspaceUsage struct {
	Agents   int `json:"agents"`
	Services int `json:"services"`
	Shares   int `json:"shares"`
	Webhooks int `json:"webhooks"`
	Plugins  int `json:"plugins"`
}

// WorkspaceLimit is a workspace's quota.
type WorkspaceLimit struct {
	MaxServices int `json:"maxServices"`
	MaxShares   int `json:"maxShares"`
}

// CreatedWorkspace is the answer of POST /v1/workspaces.
type CreatedWorkspace struct {
	Workspace Workspace `json:"workspace"`
	// APIKey is the new workspace's first admin key (its Key is shown once).
	APIKey APIKey `json:"apiKey"`
}

// UnmarshalJSON accepts apiKey as a key object or as the bare key string.
func (w *CreatedWorkspace) UnmarshalJSON(b []byte) error {
	var raw struct {
		Workspace Workspace       `json:"workspace"`
		APIKey    json.RawMessage `json:"apiKey"`
	}
	if err := json.Unmarshal(b, &raw); err != nil {
		return err
	}
	w.Workspace = raw.Workspace
	w.APIKey = APIKey{}
	if len(raw.APIKey) > 0 && raw.APIKey[0] == '"' {
		return json.Unmarshal(raw.APIKey, &w.APIKey.Key)
	}
	if len(raw.APIKey) > 0 && string(raw.APIKey) != "null" {
		return json.Unmarshal(raw.APIKey, &w.APIKey)
	}
	return nil
}

// Workspace calls GET /v1/workspace: the caller's workspace with usage and limits.
func (c *Client) Workspace(ctx context.Context) (*Workspace, error) {
	var w Workspace
	if err := c.get(ctx, p("workspace"), nil, &w); err != nil {
		return nil, err
	}
	return &w, nil
}

// CreateWorkspace calls POST /v1/workspaces (admin key of workspace
// "default" only): a new isolated tenant with its first admin key.
func (c *Client) CreateWorkspace(ctx context.Context, name string) (*CreatedWorkspace, error) {
	return c.CreateWorkspaceWith(ctx, CreateWorkspaceRequest{Name: name})
}

// CreateWorkspaceRequest is the body of POST /v1/workspaces. Nil limits take
// the control plane's defaults; 0 means no limit.
type CreateWorkspaceRequest struct {
	Name        string `json:"name"`
	MaxServices *int   `json:"maxServices,omitempty"`
	MaxShares   *int   `json:"maxShares,omitempty"`
}

// CreateWorkspaceWith is CreateWorkspace with limits.
func (c *Client) CreateWorkspaceWith(ctx context.Context, req CreateWorkspaceRequest) (*CreatedWorkspace, error) {
	var w CreatedWorkspace
	if err := c.call(ctx, http.MethodPost, p("workspaces"), req, &w); err != nil {
		return nil, err
	}
	return &w, nil
}
