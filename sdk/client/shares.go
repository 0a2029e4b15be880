package client

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"time"
)

// Share expirations accepted by CreateShareRequest.ExpiresIn.
const (
	Expires1h    = "1h"
	Expires24h   = "24h"
	Expires7d    = "7d"
	Expires30d   = "30d"
	ExpiresNever = "never"
)

// SharePlugin is one extra Wasm policy of a share, run after the built-in ones.
type SharePlugin struct {
	PluginID string          `json:"pluginId"`
	Config   json.RawMessage `json:"config,omitempty"`
}

// CreateShareRequest is the body of POST /v1/services/:id/shares.
type CreateShareRequest struct {
	// Name is 1-100 characters.
	Name        string `json:"name"`
	Description string `json:"description,omitempty"`
	// ExpiresIn is 1h|24h|7d|30d|never (server default 24h).
	ExpiresIn string `json:"expiresIn,omitempty"`
	// ExpiresAt is an absolute expiry, instead of ExpiresIn.
	ExpiresAt *time.Time `json:"expiresAt,omitempty"`
	// AllowedPaths are prefixes or globs with * and ** (e.g. "/api/*").
	AllowedPaths []string `json:"allowedPaths,omitempty"`
	// AllowedMethods are upper-case HTTP methods.
	AllowedMethods []string `json:"allowedMethods,omitempty"`
	// RateLimitPerMin is 1-100000.
	RateLimitPerMin int `json:"rateLimitPerMin,omitempty"`
	// Password is 8-128 characters.
	Password   string        `json:"password,omitempty"`
	AllowedIPs []string      `json:"allowedIps,omitempty"`
	MaxUses    int           `json:"maxUses,omitempty"`
	Plugins    []SharePlugin `json:"plugins,omitempty"`
}

// UpdateShareRequest is the body of PATCH /v1/shares/:id; nil fields are
// unchanged, a pointer to an empty list clears it, and the JSON fields named
// in Null are sent as null (e.g. "rateLimitPerMin", "maxUses", "password" to
// remove that limit).
type UpdateShareRequest struct {
	Name            *string        `json:"name,omitempty"`
	Description     *string        `json:"description,omitempty"`
	ExpiresIn       *string        `json:"expiresIn,omitempty"`
	ExpiresAt       *time.Time     `json:"expiresAt,omitempty"`
	AllowedPaths    *[]string      `json:"allowedPaths,omitempty"`
	AllowedMethods  *[]string      `json:"allowedMethods,omitempty"`
	RateLimitPerMin *int           `json:"rateLimitPerMin,omitempty"`
	Password        *string        `json:"password,omitempty"`
	AllowedIPs      *[]string      `json:"allowedIps,omitempty"`
	MaxUses         *int           `json:"maxUses,omitempty"`
	Plugins         *[]SharePlugin `json:"plugins,omitempty"`
	Null            []string       `json:"-"`
}

// MarshalJSON encodes the set fields, and null for each name in Null.
func (r UpdateShareRequest) MarshalJSON() ([]byte, error) {
	type plain UpdateShareRequest
	b, err := json.Marshal(plain(r))
	if err != nil || len(r.Null) == 0 {
		return b, err
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, err
	}
	for _, f := range r.Null {
		m[f] = json.RawMessage("null")
	}
	return json.Marshal(m)
}

// Share is a share link. Token and ShareURL are set only in the answer of a
// creation (the token is shown once); listings carry TokenPreview.
type Share struct {
	ID             string     `json:"id"`
	ServiceID      string     `json:"serviceId,omitempty"`
	Name           string     `json:"name"`
	Description    string     `json:"description,omitempty"`
	Token          string     `json:"token,omitempty"`
	TokenPreview   string     `json:"tokenPreview,omitempty"`
	ShareURL       string     `json:"shareUrl,omitempty"`
	ExpiresAt      *time.Time `json:"expiresAt,omitempty"`
	RevokedAt      *time.Time `json:"revokedAt,omitempty"`
	IsActive       bool       `json:"isActive"`
	AccessCount    int64      `json:"accessCount"`
	LastAccessedAt *time.Time `json:"lastAccessedAt,omitempty"`
	CreatedAt      *time.Time `json:"createdAt,omitempty"`
	CreatedBy      string     `json:"createdBy,omitempty"`

	AllowedPaths     []string      `json:"allowedPaths,omitempty"`
	AllowedMethods   []string      `json:"allowedMethods,omitempty"`
	RateLimitPerMin  *int          `json:"rateLimitPerMin,omitempty"`
	AllowedIPs       []string      `json:"allowedIps,omitempty"`
	MaxUses          *int          `json:"maxUses,omitempty"`
	Plugins          []SharePlugin `json:"plugins,omitempty"`
	RequiresPassword bool          `json:"requiresPassword"`
}

// ShareLog is one access to a share.
type ShareLog struct {
	ID         string    `json:"id"`
	AccessedAt time.Time `json:"accessedAt"`
	IPAddress  string    `json:"ipAddress"`
	UserAgent  string    `json:"userAgent"`
	Method     string    `json:"method"`
	Path       string    `json:"path"`
	StatusCode int       `json:"statusCode"`
	LatencyMs  float64   `json:"latencyMs"`
	BytesOut   int64     `json:"bytesOut"`
	EdgeID     string    `json:"edgeId"`
	Decision   string    `json:"decision"` // allowed|denied
	DeniedBy   string    `json:"deniedBy,omitempty"`
}

// ShareStats are a share's counters over the last 24 hours.
type ShareStats struct {
	Requests     int64            `json:"requests"`
	Allowed      int64            `json:"allowed"`
	Denied       int64            `json:"denied"`
	BytesOut     int64            `json:"bytesOut"`
	P50LatencyMs float64          `json:"p50LatencyMs"`
	P99LatencyMs float64          `json:"p99LatencyMs"`
	ByStatus     map[string]int64 `json:"byStatus"`
	// ByMinute is the per-minute series, as the server sends it.
	ByMinute json.RawMessage `json:"byMinute,omitempty"`
}

// SharedInfo is the public description of a share link.
type SharedInfo struct {
	Name             string     `json:"name"`
	Description      string     `json:"description,omitempty"`
	ExpiresAt        *time.Time `json:"expiresAt,omitempty"`
	ServiceName      string     `json:"serviceName"`
	Protocol         string     `json:"protocol"`
	RequiresPassword bool       `json:"requiresPassword"`
}

// CreateShare calls POST /v1/services/:id/shares (write).
func (c *Client) CreateShare(ctx context.Context, serviceID string, req CreateShareRequest) (*Share, error) {
	var s Share
	if err := c.call(ctx, http.MethodPost, p("services", serviceID, "shares"), req, &s); err != nil {
		return nil, err
	}
	return &s, nil
}

// ListShares calls GET /v1/services/:id/shares (read).
func (c *Client) ListShares(ctx context.Context, serviceID string, lo ListOptions) ([]Share, string, error) {
	return list[Share](ctx, c, p("services", serviceID, "shares"), lo, nil)
}

// GetShare calls GET /v1/shares/:id (read).
func (c *Client) GetShare(ctx context.Context, id string) (*Share, error) {
	var s Share
	if err := c.get(ctx, p("shares", id), nil, &s); err != nil {
		return nil, err
	}
	return &s, nil
}

// UpdateShare calls PATCH /v1/shares/:id (write).
func (c *Client) UpdateShare(ctx context.Context, id string, req UpdateShareRequest) (*Share, error) {
	var s Share
	if err := c.call(ctx, http.MethodPatch, p("shares", id), req, &s); err != nil {
		return nil, err
	}
	return &s, nil
}

// RevokeShare calls DELETE /v1/shares/:id (write): the link stops working on every edge.
func (c *Client) RevokeShare(ctx context.Context, id string) error {
	return c.call(ctx, http.MethodDelete, p("shares", id), nil, nil)
}

// ShareLogFilter narrows ListShareLogs.
type ShareLogFilter struct {
	// Since, when set, returns only accesses after it.
	Since time.Time
}

// ListShareLogs calls GET /v1/shares/:id/logs (read).
func (c *Client) ListShareLogs(ctx context.Context, id string, lo ListOptions, f ShareLogFilter) ([]ShareLog, string, error) {
	q := url.Values{}
	if !f.Since.IsZero() {
		q.Set("since", f.Since.UTC().Format(time.RFC3339Nano))
	}
	return list[ShareLog](ctx, c, p("shares", id, "logs"), lo, q)
}

// ShareStats calls GET /v1/shares/:id/stats (read).
func (c *Client) ShareStats(ctx context.Context, id string) (*ShareStats, error) {
	var s ShareStats
	if err := c.get(ctx, p("shares", id, "stats"), nil, &s); err != nil {
		return nil, err
	}
	return &s, nil
}

// SharedInfo calls GET /v1/shared/:token/info (public).
func (c *Client) SharedInfo(ctx context.Context, token string) (*SharedInfo, error) {
	var s SharedInfo
	if err := c.get(ctx, p("shared", token, "info"), nil, &s); err != nil {
		return nil, err
	}
	return &s, nil
}
