package client

import (
	"context"
	"net/http"
	"time"
)

// API key scopes. admin implies write implies read.
const (
	ScopeRead  = "read"
	ScopeWrite = "write"
	ScopeAdmin = "admin"
)

// APIKey is an API key. Key is set only in the answer of CreateAPIKey.
type APIKey struct {
	ID              string     `json:"id"`
	Name            string     `json:"name"`
	Key             string     `json:"key,omitempty"`
	KeyPrefix       string     `json:"keyPrefix"`
	Scopes          []string   `json:"scopes"`
	AllowedIPRanges []string   `json:"allowedIpRanges"`
	CreatedAt       time.Time  `json:"createdAt"`
	LastUsedAt      *time.Time `json:"lastUsedAt,omitempty"`
	LastUsedIP      string     `json:"lastUsedIp,omitempty"`
	ExpiresAt       *time.Time `json:"expiresAt,omitempty"`
}

// CreateAPIKeyRequest is the body of POST /v1/api-keys.
type CreateAPIKeyRequest struct {
	// Name is 1-50 characters, unique in the workspace.
	Name string `json:"name"`
	// Scopes defaults to ["write"] on the server.
	Scopes          []string   `json:"scopes,omitempty"`
	AllowedIPRanges []string   `json:"allowedIpRanges,omitempty"`
	ExpiresAt       *time.Time `json:"expiresAt,omitempty"`
}

// CreateAPIKey calls POST /v1/api-keys (admin). The returned key's Key is
// shown only this once.
func (c *Client) CreateAPIKey(ctx context.Context, req CreateAPIKeyRequest) (*APIKey, error) {
	var k APIKey
	if err := c.call(ctx, http.MethodPost, p("api-keys"), req, &k); err != nil {
		return nil, err
	}
	return &k, nil
}

// ListAPIKeys calls GET /v1/api-keys (admin): the active keys, never their secret.
func (c *Client) ListAPIKeys(ctx context.Context, lo ListOptions) ([]APIKey, string, error) {
	return list[APIKey](ctx, c, p("api-keys"), lo, nil)
}

// GetAPIKey calls GET /v1/api-keys/:id (admin).
func (c *Client) GetAPIKey(ctx context.Context, id string) (*APIKey, error) {
	var k APIKey
	if err := c.get(ctx, p("api-keys", id), nil, &k); err != nil {
		return nil, err
	}
	return &k, nil
}

// SetAPIKeyIPRestrictions calls PUT /v1/api-keys/:id/ip-restrictions (admin).
// An empty list removes every restriction.
func (c *Client) SetAPIKeyIPRestrictions(ctx context.Context, id string, allowedIPRanges []string) (*APIKey, error) {
	if allowedIPRanges == nil {
		allowedIPRanges = []string{}
	}
	body := struct {
		AllowedIPRanges []string `json:"allowedIpRanges"`
	}{allowedIPRanges}
	var k APIKey
	if err := c.call(ctx, http.MethodPut, p("api-keys", id, "ip-restrictions"), body, &k); err != nil {
		return nil, err
	}
	return &k, nil
}

// DeleteAPIKey calls DELETE /v1/api-keys/:id (admin): the key is revoked at once.
func (c *Client) DeleteAPIKey(ctx context.Context, id string) error {
	return c.call(ctx, http.MethodDelete, p("api-keys", id), nil, nil)
}
