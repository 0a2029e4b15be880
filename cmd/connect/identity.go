package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/cobra"

	"github.com/privateconnect/pc/sdk/agent"
	"github.com/privateconnect/pc/sdk/client"
)

// rotateBefore is how long before its expiry the agent token is rotated
// (a third of its lifetime for shorter-lived tokens, see rotateWindow).
const rotateBefore = 72 * time.Hour

// rotateWindow is how long before its expiry st's token is rotated: 72 h,
// or the last third of a shorter lifetime (a rotation keeps the lifetime the
// token was provisioned with; rotating a 5-minute token 72 h before its
// expiry would rotate, and restart the agent, every minute).
func rotateWindow(st *agentState) time.Duration {
	if st.IssuedAt.IsZero() || !st.ExpiresAt.After(st.IssuedAt) {
		return rotateBefore
	}
	return min(rotateBefore, st.ExpiresAt.Sub(st.IssuedAt)/3)
}

// agentFlags are the flags of the commands that run the agent.
type agentFlags struct {
	allowed            []string // targets the agent may dial (empty: any its edges list)
	verify             func(ctx context.Context, serviceID, addr string) bool
	metrics            string
	registry           *prometheus.Registry
	name, label        string
	caFile, pin        string
	insecureSkipVerify bool
	allowPlaintext     bool
}

func addAgentFlags(cmd *cobra.Command, af *agentFlags, withName bool) {
	if withName {
		cmd.Flags().StringVar(&af.name, "agent-name", "", "agent name when provisioning (default: the host name)")
	}
	cmd.Flags().StringVar(&af.caFile, "ca-file", "", "PEM bundle to verify edges over TLS")
	cmd.Flags().StringVar(&af.pin, "pin-sha256", "", "hex SHA-256 of the edge certificate's public key (replaces CA verification)")
	cmd.Flags().BoolVar(&af.insecureSkipVerify, "insecure-skip-verify", false, "do not verify edge certificates (dev only)")
	cmd.Flags().BoolVar(&af.allowPlaintext, "allow-plaintext", false, "dial plain-TCP edges that are not on loopback (an edge behind a TLS-terminating load balancer)")
	cmd.Flags().StringVar(&af.metrics, "metrics", "", "serve the agent's Prometheus metrics on this address (e.g. 127.0.0.1:9091)")
	// A bad pin is refused before anything is provisioned or registered.
	addPreRun(cmd, func(*cobra.Command) error {
		if af.pin != "" {
			if _, err := agent.ParsePin(af.pin); err != nil {
				return usageErrorf("--pin-sha256: %v", err)
			}
		}
		return nil
	})
}

// serveMetrics starts the --metrics listener; the agent registers on it.
func (a *app) serveMetrics(ctx context.Context, af *agentFlags) error {
	if af.metrics == "" {
		return nil
	}
	af.registry = prometheus.NewRegistry()
	af.registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	ln, err := net.Listen("tcp", af.metrics)
	if err != nil {
		return fmt.Errorf("--metrics: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(af.registry, promhttp.HandlerOpts{}))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	context.AfterFunc(ctx, func() { _ = srv.Close() })
	a.note(slog.LevelInfo, fmt.Sprintf("Metrics on http://%s/metrics", ln.Addr()), "serving metrics", "url", "http://"+ln.Addr().String()+"/metrics")
	return nil
}

// identity loads the agent identity from the state file, provisioning one on
// first use and rotating its token when it is near expiry, then registers the
// agent and refreshes its edge list. The state file is updated.
func (a *app) identity(ctx context.Context, c *client.Client, name, label string) (*agentState, error) {
	path, err := a.stateFile()
	if err != nil {
		return nil, err
	}
	st, err := loadState(path)
	if err != nil {
		return nil, err
	}
	if st != nil && st.ControlURL != "" && !sameControl(st.ControlURL, a.control) {
		return nil, fmt.Errorf("state file %s holds an agent of %s, not %s: pass --state to use another file", path, st.ControlURL, a.control)
	}
	if name != "" {
		if st != nil {
			st.Name = name
		}
	} else if st == nil {
		name, _ = os.Hostname()
	}
	switch {
	case st == nil:
		if st, err = a.provision(ctx, c, name, label); err != nil {
			return nil, err
		}
	case a.now().Add(rotateWindow(st)).After(st.ExpiresAt):
		if err := a.rotate(ctx, c, st); err != nil {
			if !client.IsStatus(err, http.StatusUnauthorized) || a.now().Before(st.ExpiresAt) {
				return nil, fmt.Errorf("rotate agent token: %w", err)
			}
			a.note(slog.LevelWarn, fmt.Sprintf("agent token expired on %s: provisioning a new agent identity", fmtTime(st.ExpiresAt)),
				"agent token expired: provisioning a new agent identity", "expiredAt", st.ExpiresAt)
			if st, err = a.provision(ctx, c, st.Name, st.Label); err != nil {
				return nil, err
			}
		}
	}
	if label != "" {
		st.Label = label
	}
	if _, err := c.RegisterAgent(ctx, client.RegisterAgentRequest{AgentID: st.AgentID, Token: st.Token, Name: st.Name, Label: st.Label}); err != nil {
		return nil, fmt.Errorf("register agent: %w", err)
	}
	// Edges added after provisioning: the edge list is admin-only, so keep
	// the stored list when the key may not read it.
	if edges, _, err := c.ListEdges(ctx, client.ListOptions{Limit: 500}); err == nil && len(edges) > 0 {
		st.Edges = st.Edges[:0]
		for _, e := range edges {
			st.Edges = append(st.Edges, client.AgentEdge{ID: e.ID, TunnelAddr: e.TunnelAddr})
		}
	}
	if err := saveState(path, st); err != nil {
		return nil, err
	}
	return st, nil
}

func (a *app) provision(ctx context.Context, c *client.Client, name, label string) (*agentState, error) {
	p, err := c.ProvisionAgent(ctx, client.ProvisionRequest{ClientType: client.ClientTypeCLI, Name: name, Label: label})
	if err != nil {
		return nil, fmt.Errorf("provision agent: %w", err)
	}
	a.note(slog.LevelInfo, fmt.Sprintf("Provisioned agent %s in workspace %s", p.AgentID, orDash(p.WorkspaceName)),
		"provisioned agent", "agentId", p.AgentID, "workspace", p.WorkspaceName)
	return &agentState{
		AgentID: p.AgentID, Token: p.Token, ExpiresAt: p.ExpiresAt, IssuedAt: a.now(), WorkspaceID: p.WorkspaceID,
		ControlURL: a.control, Edges: p.Edges, Name: name, Label: label,
	}, nil
}

// rotate replaces st's token with a fresh one.
func (a *app) rotate(ctx context.Context, c *client.Client, st *agentState) error {
	t, err := c.RotateAgentToken(ctx, st.AgentID, st.Token)
	if err != nil {
		return err
	}
	st.Token, st.ExpiresAt, st.IssuedAt = t.Token, t.ExpiresAt, a.now()
	a.note(slog.LevelInfo, fmt.Sprintf("Rotated the agent token (valid until %s)", fmtTime(t.ExpiresAt)), "rotated the agent token", "expiresAt", t.ExpiresAt)
	return nil
}

// runForeground runs the agent until ctx is done, printing its connection
// events; it rotates the token before it expires and restarts the agent
// with the new one.
func (a *app) runForeground(ctx context.Context, c *client.Client, st *agentState, af *agentFlags) error {
	edges := st.edgeAddrs()
	if len(edges) == 0 {
		return fmt.Errorf("no edge to connect to: register one with `connect edges add` (admin key)")
	}
	path, err := a.stateFile()
	if err != nil {
		return err
	}
	if err := a.holdAgentLock(ctx); err != nil {
		return err
	}
	a.markRunning()
	var mu sync.Mutex
	onEvent := func(e agent.Event) {
		mu.Lock()
		defer mu.Unlock()
		a.printEvent(e)
	}
	if !a.jsonOut {
		fmt.Fprintf(a.stdout, "Agent %s connecting to %d edge(s); press Ctrl-C to stop.\n", st.AgentID, len(edges))
	}
	if err := a.serveMetrics(ctx, af); err != nil {
		return err
	}
	for {
		runCtx, cancel := context.WithCancel(ctx)
		var renew atomic.Bool
		var timer *time.Timer
		if !st.ExpiresAt.IsZero() {
			d := max(st.ExpiresAt.Sub(a.now())-rotateWindow(st), a.minRenewWait)
			timer = time.AfterFunc(d, func() { renew.Store(true); cancel() })
		}
		err := a.runAgent(runCtx, agent.Config{
			AgentID: st.AgentID, Token: st.Token, Edges: edges,
			CAFile: af.caFile, PinSHA256: af.pin, InsecureSkipVerify: af.insecureSkipVerify, AllowPlaintext: af.allowPlaintext,
			Logger: a.log, OnEvent: onEvent, Software: "connect/" + version,
			Registerer: registererOf(af), AllowedTargets: af.allowed, VerifyTarget: af.verify,
			OnCommand: agentCommands(c, st.AgentID),
		})
		if timer != nil {
			timer.Stop()
		}
		cancel()
		switch {
		case ctx.Err() != nil:
			if !a.jsonOut || a.logFormat == "json" {
				a.note(slog.LevelInfo, "Stopped.", "stopped")
			}
			return nil
		case errors.Is(err, agent.ErrStopped):
			if !a.jsonOut || a.logFormat == "json" {
				a.note(slog.LevelInfo, "Stopped by a command from the control plane.", "stopped by a command from the control plane")
			}
			return nil
		case errors.Is(err, agent.ErrReplaced):
			return fmt.Errorf("%w\n(stopped so as not to take the tunnel back: run one process per identity, or give this one its own with --state)", err)
		case err != nil:
			return err
		case !renew.Load():
			return nil
		}
		if err := a.rotate(ctx, c, st); err != nil {
			return fmt.Errorf("rotate agent token: %w", err)
		}
		if err := saveState(path, st); err != nil {
			return err
		}
	}
}

// printEvent prints one agent connection event (a JSON line with --json).
func (a *app) printEvent(e agent.Event) {
	if a.jsonOut {
		line := map[string]any{"time": a.now().UTC().Format(time.RFC3339), "event": e.Kind, "edge": e.Edge}
		if e.EdgeID != "" {
			line["edgeId"] = e.EdgeID
		}
		if e.Message != "" {
			line["message"] = e.Message
		}
		if e.Err != nil {
			line["error"] = e.Err.Error()
		}
		b, _ := json.Marshal(line)
		fmt.Fprintln(a.stdout, string(b))
		return
	}
	ts := a.now().Format("15:04:05")
	var msg string
	switch e.Kind {
	case agent.EventConnected:
		msg = "connected to edge " + e.Edge
	case agent.EventDisconnected:
		msg = "disconnected from edge " + e.Edge
	case agent.EventRejected:
		msg = "edge " + e.Edge + " rejected the agent"
	case agent.EventReplaced:
		msg = "edge " + e.Edge + " took a newer session of this agent"
		e.Err = nil // its text repeats the reason
	default:
		msg = "edge " + e.Edge
	}
	if e.Message != "" {
		msg += ": " + e.Message
	}
	if e.Err != nil && e.Err.Error() != e.Message {
		msg += ": " + e.Err.Error()
	}
	fmt.Fprintf(a.stdout, "%s %s\n", ts, msg)
}

// registererOf returns the --metrics registry, or nil.
func registererOf(af *agentFlags) prometheus.Registerer {
	if af.registry == nil {
		return nil
	}
	return af.registry
}
