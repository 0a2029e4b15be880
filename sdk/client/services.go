package client

import (
	"context"
	"net/http"
	"net/url"
	"time"
)

// Service protocols.
const (
	ProtocolAuto  = "auto"
	ProtocolTCP   = "tcp"
	ProtocolHTTP  = "http"
	ProtocolHTTPS = "https"
)

// Service is one target (host:port) exposed by one agent.
type Service struct {
	ID         string `json:"id"`
	Name       string `json:"name"`
	AgentID    string `json:"agentId"`
	TargetHost string `json:"targetHost"`
	TargetPort int    `json:"targetPort"`
	Protocol   string `json:"protocol"`
	// Status is unknown|ok|degraded|down|offline.
	Status string `json:"status"`
	// TunnelPort is the edge TCP port for raw TCP access (0: none).
	TunnelPort int       `json:"tunnelPort"`
	IsPublic   bool      `json:"isPublic"`
	PublicURL  string    `json:"publicUrl,omitempty"`
	CreatedAt  time.Time `json:"createdAt"`
	// Agent and LastDiagnostic are set by GetService.
	Agent          *ServiceAgent `json:"agent,omitempty"`
	LastDiagnostic *Diagnostic   `json:"lastDiagnostic,omitempty"`
}

// ServiceAgent is the agent of a service as embedded in GetService.
type ServiceAgent struct {
	ID       string `json:"id"`
	Name     string `json:"name"`
	IsOnline bool   `json:"isOnline"`
}

// RegisterServiceRequest is the body of POST /v1/services/register.
type RegisterServiceRequest struct {
	AgentID    string `json:"agentId"`
	Name       string `json:"name"`
	TargetHost string `json:"targetHost"`
	TargetPort int    `json:"targetPort"`
	// Protocol is auto|tcp|http|https (server default auto).
	Protocol string `json:"protocol,omitempty"`
	IsPublic bool   `json:"isPublic,omitempty"`
}

// UpdateServiceRequest is the body of PATCH /v1/services/:id; nil fields are unchanged.
type UpdateServiceRequest struct {
	Name       *string `json:"name,omitempty"`
	TargetHost *string `json:"targetHost,omitempty"`
	TargetPort *int    `json:"targetPort,omitempty"`
	Protocol   *string `json:"protocol,omitempty"`
}

// ServiceFilter narrows ListServices.
type ServiceFilter struct {
	AgentID  string
	Status   string
	Protocol string
}

// Diagnostic is the result of a check run by an agent.
type Diagnostic struct {
	ID          string     `json:"id"`
	ServiceID   string     `json:"serviceId"`
	Perspective string     `json:"perspective"`
	DNS         *DNSCheck  `json:"dns,omitempty"`
	TCP         *TCPCheck  `json:"tcp,omitempty"`
	TLS         *TLSCheck  `json:"tls,omitempty"`
	HTTP        *HTTPCheck `json:"http,omitempty"`
	Status      string     `json:"status"`
	Message     string     `json:"message"`
	CreatedAt   time.Time  `json:"createdAt"`
}

// DNSCheck is the DNS part of a Diagnostic.
type DNSCheck struct {
	Status    string   `json:"status"`
	Addresses []string `json:"addresses"`
}

// TCPCheck is the TCP part of a Diagnostic.
type TCPCheck struct {
	Status    string  `json:"status"`
	LatencyMs float64 `json:"latencyMs"`
}

// TLSCheck is the TLS part of a Diagnostic.
type TLSCheck struct {
	Status          string     `json:"status"`
	Issuer          string     `json:"issuer,omitempty"`
	Subject         string     `json:"subject,omitempty"`
	NotAfter        *time.Time `json:"notAfter,omitempty"`
	DaysUntilExpiry int        `json:"daysUntilExpiry"`
	Error           string     `json:"error,omitempty"`
}

// HTTPCheck is the HTTP part of a Diagnostic.
type HTTPCheck struct {
	Status     string  `json:"status"`
	StatusCode int     `json:"statusCode"`
	LatencyMs  float64 `json:"latencyMs"`
	Error      string  `json:"error,omitempty"`
}

// ReachRequest is the body of POST /v1/services/:id/reach.
type ReachRequest struct {
	SourceAgentID string `json:"sourceAgentId"`
	// Mode is tcp|tls|http.
	Mode string `json:"mode,omitempty"`
	// TimeoutMs is 1000-30000.
	TimeoutMs int `json:"timeoutMs,omitempty"`
}

// HealthConfigRequest is the body of PATCH /v1/services/:id/health-config.
type HealthConfigRequest struct {
	Enabled *bool `json:"enabled,omitempty"`
	// IntervalSeconds is 10-3600.
	IntervalSeconds *int `json:"intervalSeconds,omitempty"`
}

// HealthConfig is a service's health monitoring configuration.
type HealthConfig struct {
	Enabled         bool `json:"enabled"`
	IntervalSeconds int  `json:"intervalSeconds"`
}

// PublicRequest is the body of PATCH /v1/services/:id/public.
type PublicRequest struct {
	IsPublic bool `json:"isPublic"`
	// Subdomain is 3-32 of [a-z0-9-].
	Subdomain string `json:"subdomain,omitempty"`
}

// PublicAccess is the answer of PATCH /v1/services/:id/public.
type PublicAccess struct {
	IsPublic  bool   `json:"isPublic"`
	Subdomain string `json:"subdomain,omitempty"`
	PublicURL string `json:"publicUrl,omitempty"`
}

// RegisterService calls POST /v1/services/register (write). A service of the
// same name is updated (created reports which).
func (c *Client) RegisterService(ctx context.Context, req RegisterServiceRequest) (svc *Service, created bool, err error) {
	r := request{method: http.MethodPost, path: p("services", "register"), body: req}
	resp, body, err := c.send(ctx, r)
	if err != nil {
		return nil, false, err
	}
	var s Service
	if err := decodeData(ctx, r, body, &s); err != nil {
		return nil, false, err
	}
	return &s, resp.StatusCode == http.StatusCreated, nil
}

// ListServices calls GET /v1/services (read).
func (c *Client) ListServices(ctx context.Context, lo ListOptions, f ServiceFilter) ([]Service, string, error) {
	return list[Service](ctx, c, p("services"), lo, url.Values{
		"agentId": {f.AgentID}, "status": {f.Status}, "protocol": {f.Protocol},
	})
}

// GetService calls GET /v1/services/:id (read).
func (c *Client) GetService(ctx context.Context, id string) (*Service, error) {
	var s Service
	if err := c.get(ctx, p("services", id), nil, &s); err != nil {
		return nil, err
	}
	return &s, nil
}

// UpdateService calls PATCH /v1/services/:id (write).
func (c *Client) UpdateService(ctx context.Context, id string, req UpdateServiceRequest) (*Service, error) {
	var s Service
	if err := c.call(ctx, http.MethodPatch, p("services", id), req, &s); err != nil {
		return nil, err
	}
	return &s, nil
}

// DeleteService calls DELETE /v1/services/:id (write): revokes its shares and frees its port.
func (c *Client) DeleteService(ctx context.Context, id string) error {
	return c.call(ctx, http.MethodDelete, p("services", id), nil, nil)
}

// CheckService calls POST /v1/services/:id/check: a diagnostic run by the
// service's agent (503 when it is offline).
func (c *Client) CheckService(ctx context.Context, id string) (*Diagnostic, error) {
	var d Diagnostic
	if err := c.call(ctx, http.MethodPost, p("services", id, "check"), nil, &d); err != nil {
		return nil, err
	}
	return &d, nil
}

// ListDiagnostics calls GET /v1/services/:id/diagnostics: history, newest first.
func (c *Client) ListDiagnostics(ctx context.Context, id string, lo ListOptions) ([]Diagnostic, string, error) {
	return list[Diagnostic](ctx, c, p("services", id, "diagnostics"), lo, nil)
}

// ReachService calls POST /v1/services/:id/reach: the check run by another
// agent through the edge to this service.
func (c *Client) ReachService(ctx context.Context, id string, req ReachRequest) (*Diagnostic, error) {
	var d Diagnostic
	if err := c.call(ctx, http.MethodPost, p("services", id, "reach"), req, &d); err != nil {
		return nil, err
	}
	return &d, nil
}

// SetServiceHealthConfig calls PATCH /v1/services/:id/health-config (write).
func (c *Client) SetServiceHealthConfig(ctx context.Context, id string, req HealthConfigRequest) (*HealthConfig, error) {
	var h HealthConfig
	if err := c.call(ctx, http.MethodPatch, p("services", id, "health-config"), req, &h); err != nil {
		return nil, err
	}
	return &h, nil
}

// SetServicePublic calls PATCH /v1/services/:id/public (write); a taken subdomain is a 409.
func (c *Client) SetServicePublic(ctx context.Context, id string, req PublicRequest) (*PublicAccess, error) {
	var pa PublicAccess
	if err := c.call(ctx, http.MethodPatch, p("services", id, "public"), req, &pa); err != nil {
		return nil, err
	}
	return &pa, nil
}
