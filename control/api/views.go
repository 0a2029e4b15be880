package api

import (
	"encoding/json"
	"net/netip"
	"net/url"
	"time"

	"github.com/privateconnect/pc/control/store"
)

// Response payloads. Field names are the public contract of api-v1.md.

type capabilityView struct {
	Name     string          `json:"name"`
	Metadata json.RawMessage `json:"metadata"`
}

type agentView struct {
	ID             string           `json:"id"`
	Name           string           `json:"name"`
	Label          string           `json:"label"`
	ClientType     string           `json:"clientType"`
	IsOnline       bool             `json:"isOnline"`
	LastSeenAt     *time.Time       `json:"lastSeenAt"`
	LastSeenIP     *string          `json:"lastSeenIp"`
	ConnectedEdges []string         `json:"connectedEdges"`
	TokenExpiresAt time.Time        `json:"tokenExpiresAt"`
	CreatedAt      time.Time        `json:"createdAt"`
	Capabilities   []capabilityView `json:"capabilities"`
	ServiceCount   int              `json:"serviceCount"`
}

type agentDetailView struct {
	agentView
	Services []serviceView `json:"services"`
}

func strPtr(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

func (a *API) agentView(ag *store.Agent, serviceCount int) agentView {
	edges := a.hub.Presence.AgentEdges(ag.ID)
	if edges == nil {
		edges = []string{}
	}
	v := agentView{
		ID: ag.ID, Name: ag.Name, Label: ag.Label, ClientType: ag.ClientType,
		IsOnline: len(edges) > 0, LastSeenAt: ag.LastSeenAt, LastSeenIP: strPtr(ag.LastSeenIP),
		ConnectedEdges: edges, TokenExpiresAt: ag.TokenExpiresAt, CreatedAt: ag.CreatedAt,
		Capabilities: capViews(ag.Capabilities), ServiceCount: serviceCount,
	}
	return v
}

func capViews(cs []store.Capability) []capabilityView {
	out := make([]capabilityView, 0, len(cs))
	for _, c := range cs {
		md := c.Metadata
		if len(md) == 0 {
			md = json.RawMessage("{}")
		}
		out = append(out, capabilityView{Name: c.Name, Metadata: md})
	}
	return out
}

type serviceView struct {
	ID         string    `json:"id"`
	Name       string    `json:"name"`
	AgentID    string    `json:"agentId"`
	TargetHost string    `json:"targetHost"`
	TargetPort int       `json:"targetPort"`
	Protocol   string    `json:"protocol"`
	Status     string    `json:"status"`
	TunnelPort int       `json:"tunnelPort"`
	IsPublic   bool      `json:"isPublic"`
	PublicURL  *string   `json:"publicUrl"`
	CreatedAt  time.Time `json:"createdAt"`
}

type serviceAgentView struct {
	ID       string `json:"id"`
	Name     string `json:"name"`
	IsOnline bool   `json:"isOnline"`
}

type serviceDetailView struct {
	serviceView
	Agent          *serviceAgentView `json:"agent"`
	LastDiagnostic *diagnosticView   `json:"lastDiagnostic"`
}

// status is the stored health status, or offline when the agent is not
// connected to any edge.
func (a *API) serviceStatus(s *store.Service) string {
	if !a.hub.Presence.AgentOnline(s.AgentID) {
		return "offline"
	}
	if s.Status == "" {
		return "unknown"
	}
	return s.Status
}

func (a *API) serviceView(s *store.Service) serviceView {
	return serviceView{
		ID: s.ID, Name: s.Name, AgentID: s.AgentID, TargetHost: s.TargetHost, TargetPort: s.TargetPort,
		Protocol: s.Protocol, Status: a.serviceStatus(s), TunnelPort: s.TunnelPort, IsPublic: s.IsPublic,
		PublicURL: strPtr(a.publicURL(s)), CreatedAt: s.CreatedAt,
	}
}

// publicURL is where a public service is reached:
// <scheme>://<subdomain>.<public domain>[:port], with the scheme and port of
// the first edge's URL (its share listener serves public services too). Without a configured public
// domain, edges serve public services at <subdomain>.localhost (browsers
// resolve *.localhost to loopback: a development set-up), so the URL is
// that on the first edge's port when the edge is on an IP address or
// localhost, and "" (none) for an edge with a host name, whose subdomains
// the edge would not route.
func (a *API) publicURL(s *store.Service) string {
	if !s.IsPublic || s.Subdomain == "" {
		return ""
	}
	base := a.edgeBaseURL()
	scheme, port, host := "http", "", ""
	if u, err := url.Parse(base); err == nil && u.Host != "" {
		scheme, host, port = u.Scheme, u.Hostname(), u.Port()
	}
	if port != "" {
		port = ":" + port // the share listener's: it serves public services too
	}
	if a.opts.PublicDomain != "" {
		return scheme + "://" + s.Subdomain + "." + a.opts.PublicDomain + port
	}
	if _, err := netip.ParseAddr(host); err != nil && host != "" && host != "localhost" {
		return ""
	}
	return scheme + "://" + s.Subdomain + ".localhost" + port
}

type pluginRefView struct {
	PluginID string          `json:"pluginId"`
	Config   json.RawMessage `json:"config"`
}

// sharePolicy are the policy fields returned with every share.
type sharePolicy struct {
	AllowedPaths     []string        `json:"allowedPaths"`
	AllowedMethods   []string        `json:"allowedMethods"`
	AllowedIPs       []string        `json:"allowedIps"`
	RateLimitPerMin  *int            `json:"rateLimitPerMin"`
	MaxUses          *int64          `json:"maxUses"`
	RequiresPassword bool            `json:"requiresPassword"`
	Plugins          []pluginRefView `json:"plugins"`
}

type shareView struct {
	ID             string     `json:"id"`
	ServiceID      string     `json:"serviceId"`
	Name           string     `json:"name"`
	Description    string     `json:"description"`
	TokenPreview   string     `json:"tokenPreview"`
	ExpiresAt      *time.Time `json:"expiresAt"`
	RevokedAt      *time.Time `json:"revokedAt"`
	IsActive       bool       `json:"isActive"`
	AccessCount    int64      `json:"accessCount"`
	LastAccessedAt *time.Time `json:"lastAccessedAt"`
	CreatedAt      time.Time  `json:"createdAt"`
	CreatedBy      string     `json:"createdBy"`
	sharePolicy
}

type shareCreatedView struct {
	ID          string     `json:"id"`
	ServiceID   string     `json:"serviceId"`
	Token       string     `json:"token"`
	Name        string     `json:"name"`
	Description string     `json:"description"`
	ShareURL    string     `json:"shareUrl"`
	ExpiresAt   *time.Time `json:"expiresAt"`
	CreatedAt   time.Time  `json:"createdAt"`
	sharePolicy
}

func policyView(s *store.Share) sharePolicy {
	p := sharePolicy{
		AllowedPaths: nonNil(s.AllowedPaths), AllowedMethods: nonNil(s.AllowedMethods), AllowedIPs: nonNil(s.AllowedIPs),
		RequiresPassword: s.PasswordHash != "", Plugins: []pluginRefView{},
	}
	if s.RateLimitPerMin > 0 {
		n := s.RateLimitPerMin
		p.RateLimitPerMin = &n
	}
	if s.MaxUses > 0 {
		n := s.MaxUses
		p.MaxUses = &n
	}
	for _, pl := range s.Plugins {
		cfg := pl.Config
		if len(cfg) == 0 {
			cfg = json.RawMessage("{}")
		}
		p.Plugins = append(p.Plugins, pluginRefView{PluginID: pl.PluginID, Config: cfg})
	}
	return p
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func shareViewOf(s *store.Share, now time.Time) shareView {
	return shareView{
		ID: s.ID, ServiceID: s.ServiceID, Name: s.Name, Description: s.Description, TokenPreview: s.TokenPreview,
		ExpiresAt: apiTimePtr(s.ExpiresAt), RevokedAt: s.RevokedAt, IsActive: s.Active(now), AccessCount: s.AccessCount,
		LastAccessedAt: s.LastAccessedAt, CreatedAt: s.CreatedAt, CreatedBy: s.CreatedBy, sharePolicy: policyView(s),
	}
}

type edgeView struct {
	ID              string     `json:"id"`
	Name            string     `json:"name"`
	Region          string     `json:"region"`
	PublicURL       string     `json:"publicUrl"`
	TunnelAddr      string     `json:"tunnelAddr"`
	IsOnline        bool       `json:"isOnline"`
	ConfigVersion   int64      `json:"configVersion"`
	Lag             int64      `json:"lag"`
	ConnectedAgents int        `json:"connectedAgents"`
	LastSeenAt      *time.Time `json:"lastSeenAt"`
	Version         string     `json:"version"`
	CreatedAt       time.Time  `json:"createdAt"`
}

// edgeView is an edge as the API shows it; connectedAgents counts the agents
// in agents, or all of them when agents is nil (the platform's admins).
func (a *API) edgeView(e *store.Edge, agents map[string]bool) edgeView {
	st, online := a.hub.Presence.Edge(e.ID)
	v := edgeView{
		ID: e.ID, Name: e.Name, Region: e.Region, PublicURL: e.PublicURL, TunnelAddr: e.TunnelAddr,
		IsOnline: online, ConnectedAgents: a.hub.Presence.AgentCount(e.ID, agents), Version: st.Version, CreatedAt: e.CreatedAt,
	}
	if !st.LastSeen.IsZero() {
		v.LastSeenAt = apiTimePtr(&st.LastSeen)
	}
	cur := a.hub.Version()
	if st.ConfigEpoch == a.hub.Epoch() {
		v.ConfigVersion = st.ConfigVersion
		v.Lag = max(0, cur-st.ConfigVersion)
	} else {
		v.Lag = cur
	}
	return v
}

type diagnosticView struct {
	ID          string          `json:"id"`
	ServiceID   string          `json:"serviceId"`
	Perspective string          `json:"perspective"`
	DNS         json.RawMessage `json:"dns"`
	TCP         json.RawMessage `json:"tcp"`
	TLS         json.RawMessage `json:"tls"`
	HTTP        json.RawMessage `json:"http"`
	Status      string          `json:"status"`
	Message     string          `json:"message"`
	CreatedAt   time.Time       `json:"createdAt"`
}

func diagnosticViewOf(d *store.Diagnostic) *diagnosticView {
	v := &diagnosticView{ID: d.ID, ServiceID: d.ServiceID, Perspective: d.Perspective, Status: d.Status, Message: d.Message, CreatedAt: d.CreatedAt,
		DNS: json.RawMessage("null"), TCP: json.RawMessage("null"), TLS: json.RawMessage("null"), HTTP: json.RawMessage("null")}
	var parts map[string]json.RawMessage
	if json.Unmarshal(d.Result, &parts) == nil {
		for k, dst := range map[string]*json.RawMessage{"dns": &v.DNS, "tcp": &v.TCP, "tls": &v.TLS, "http": &v.HTTP} {
			if p, ok := parts[k]; ok && len(p) > 0 {
				*dst = p
			}
		}
	}
	return v
}

// apiTime is t as the API gives times: UTC, to the millisecond. Records
// whose key orders them by time (access logs, webhook deliveries) keep
// their nanoseconds, so that records of one millisecond keep their order.
func apiTime(t time.Time) time.Time { return t.UTC().Truncate(time.Millisecond) }

// apiTimePtr is apiTime of an optional time.
func apiTimePtr(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	v := apiTime(*t)
	return &v
}
