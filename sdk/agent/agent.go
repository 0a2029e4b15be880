// Package agent is the Private Connect agent as a library: it holds a tunnel
// to every edge it is given and serves the services registered for it. The
// `connect expose` and `connect up` commands are thin wrappers around it, and
// a Go program can embed an agent the same way.
package agent

import (
	"context"
	"errors"
	"log/slog"
)

// Config configures an Agent.
type Config struct {
	// AgentID and Token are the agent's identity (from provisioning).
	AgentID string
	Token   string
	// Edges are the tunnel addresses to dial: "host:port" (plain TCP, for
	// loopback and tests) or "tls://host:port".
	Edges []string
	// CAFile, when set, is the PEM bundle used to verify edges over TLS.
	CAFile string
	// PinSHA256, when set, is the hex SHA-256 of the edge certificate's
	// SubjectPublicKeyInfo; it replaces CA verification.
	PinSHA256 string
	// InsecureSkipVerify disables verification of the edge certificate (dev only).
	InsecureSkipVerify bool
	// Logger receives structured logs; nil discards them.
	Logger *slog.Logger
	// OnEvent, when set, is called for connection events (connected,
	// disconnected, rejected) so a CLI can print them.
	OnEvent func(Event)
}

// Event is a connection event of the agent.
type Event struct {
	Kind    string // "connected", "disconnected", "rejected", "edges"
	Edge    string // tunnel address
	Message string
	Err     error
}

// Agent is a running connector.
type Agent struct {
	cfg Config
}

// New validates cfg and returns an Agent.
func New(cfg Config) (*Agent, error) {
	if cfg.AgentID == "" || cfg.Token == "" {
		return nil, errors.New("agent: AgentID and Token are required")
	}
	if len(cfg.Edges) == 0 {
		return nil, errors.New("agent: at least one edge is required")
	}
	return &Agent{cfg: cfg}, nil
}

// Run connects to every edge and serves until ctx is done. It reconnects with
// exponential backoff and jitter; it returns nil when ctx is cancelled, or an
// error when every edge rejects the agent's credentials.
func (a *Agent) Run(ctx context.Context) error {
	return errors.New("agent: not implemented yet")
}
