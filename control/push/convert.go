package push

import (
	"github.com/privateconnect/pc/control/store"
	"github.com/privateconnect/pc/internal/config"
)

// ShareConfig is what edges know of a share.
func ShareConfig(s *store.Share) *config.Share {
	c := &config.Share{
		ID: s.ID, WorkspaceID: s.WorkspaceID, ServiceID: s.ServiceID, Name: s.Name,
		TokenHash: s.TokenHash, ExpiresAt: s.ExpiresAt, Revoked: s.RevokedAt != nil,
		AllowedPaths: s.AllowedPaths, AllowedMethods: s.AllowedMethods, AllowedIPs: s.AllowedIPs,
		PasswordHash: s.PasswordHash, RateLimitPerMin: s.RateLimitPerMin, MaxUses: s.MaxUses,
	}
	if s.MaxUses > 0 {
		c.Uses = s.AccessCount
	}
	for _, p := range s.Plugins {
		c.Plugins = append(c.Plugins, config.PluginAttachment{PluginID: p.PluginID, Config: p.Config})
	}
	return c
}

// ServiceConfig is what edges know of a service.
func ServiceConfig(s *store.Service) *config.Service {
	return &config.Service{
		ID: s.ID, WorkspaceID: s.WorkspaceID, AgentID: s.AgentID, Name: s.Name,
		Protocol: s.Protocol, TargetHost: s.TargetHost, TargetPort: s.TargetPort,
		TunnelPort: s.TunnelPort, Paused: s.Paused, IsPublic: s.IsPublic, Subdomain: s.Subdomain,
	}
}

// AgentConfig is what edges know of an agent: its public handshake key, or,
// for a token issued before tunnel protocol version 2 (no public key), the
// token hash that version 1 needs.
func AgentConfig(a *store.Agent) *config.Agent {
	c := &config.Agent{ID: a.ID, WorkspaceID: a.WorkspaceID, Name: a.Name, PublicKey: a.PublicKey, TokenExpiresAt: a.TokenExpiresAt}
	if a.PublicKey == "" {
		c.TokenHash = a.TokenHash
	}
	return c
}

// EdgeConfig is what edges know of each other.
func EdgeConfig(e *store.Edge) *config.Edge {
	return &config.Edge{ID: e.ID, Name: e.Name, PublicURL: e.PublicURL, TunnelAddr: e.TunnelAddr}
}
