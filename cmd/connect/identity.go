package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/cobra"

	"github.com/privateconnect/pc/internal/devcert"
	"github.com/privateconnect/pc/internal/tunnel"
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
	// A bad pin, metrics address or CA file is refused before anything is
	// provisioned or registered.
	addPreRun(cmd, func(*cobra.Command) error {
		if af.pin != "" {
			if _, err := agent.ParsePin(af.pin); err != nil {
				return usageErrorf("--pin-sha256: %v", err)
			}
		}
		if af.metrics != "" {
			if _, _, err := net.SplitHostPort(af.metrics); err != nil {
				return usageErrorf("--metrics %q: want HOST:PORT (e.g. 127.0.0.1:9091): %v", af.metrics, err)
			}
		}
		if af.caFile != "" {
			if _, err := devcert.CertPool(af.caFile); err != nil {
				return usageErrorf("--ca-file: %v", err)
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
//
// When the control plane cannot be reached (client.IsUnreachable) and the
// state file holds an identity whose token has not expired, the agent starts
// from that saved state, as the edges know it from their own configuration:
// offline is then the error that said so, a warning is printed, and what
// needed the control plane (registering the agent, refreshing its edges and
// services, rotating a token near expiry) is done once it is back
// (keepIdentity), or at the next start. Provisioning a new identity always
// needs it.
func (a *app) identity(ctx context.Context, c *client.Client, name, label string) (st *agentState, offline, err error) {
	path, err := a.stateFile()
	if err != nil {
		return nil, nil, err
	}
	st, err = loadState(path)
	if err != nil {
		return nil, nil, err
	}
	if err := a.checkStateControl(path, st); err != nil {
		return nil, nil, err
	}
	if name != "" {
		if st != nil {
			st.Name = name
		}
	} else if st == nil {
		name, _ = os.Hostname()
	}
	// A control plane that does not answer (a host that drops packets)
	// must not hold the start for the HTTP client's two minutes per call.
	cctx, cancel := context.WithTimeout(ctx, a.timeout)
	defer cancel()
	switch {
	case st == nil:
		if st, err = a.provision(cctx, c, name, label); err != nil {
			return nil, nil, err
		}
	case a.now().Add(rotateWindow(st)).After(st.ExpiresAt):
		if err := a.rotate(cctx, c, st); err != nil {
			switch {
			case client.IsUnreachable(err) && a.now().Before(st.ExpiresAt):
				offline = err // still valid: rotated once the control plane is back
			case client.IsUnreachable(err):
				return nil, nil, fmt.Errorf("the agent token in %s expired on %s, and the control plane at %s cannot be reached to rotate it: %w",
					path, fmtTime(st.ExpiresAt), a.control, err)
			case !client.IsStatus(err, http.StatusUnauthorized) || a.now().Before(st.ExpiresAt):
				return nil, nil, fmt.Errorf("rotate agent token: %w", err)
			default:
				a.note(slog.LevelWarn, fmt.Sprintf("agent token expired on %s: provisioning a new agent identity", fmtTime(st.ExpiresAt)),
					"agent token expired: provisioning a new agent identity", "expiredAt", st.ExpiresAt)
				if st, err = a.provision(cctx, c, st.Name, st.Label); err != nil {
					return nil, nil, err
				}
			}
		}
	}
	if label != "" {
		st.Label = label
	}
	if offline == nil {
		if _, err := c.RegisterAgent(cctx, client.RegisterAgentRequest{AgentID: st.AgentID, Token: st.Token, Name: st.Name, Label: st.Label}); err != nil {
			if !client.IsUnreachable(err) {
				return nil, nil, fmt.Errorf("register agent: %w", err)
			}
			offline = err
		}
	}
	if offline == nil {
		// Edges added after provisioning: the edge list is admin-only, so
		// keep the stored list when the key may not read it.
		a.refreshEdges(cctx, c, st)
	}
	if err := saveState(path, st); err != nil {
		return nil, nil, err
	}
	return st, offline, nil
}

// refreshEdges replaces st's edges by the control plane's list, when the
// key may read it (admin) and it is not empty.
func (a *app) refreshEdges(ctx context.Context, c *client.Client, st *agentState) {
	if edges, _, err := c.ListEdges(ctx, client.ListOptions{Limit: 500}); err == nil && len(edges) > 0 {
		st.Edges = make([]client.AgentEdge, 0, len(edges)) // not in place: copies of st share the old one
		for _, e := range edges {
			st.Edges = append(st.Edges, client.AgentEdge{ID: e.ID, TunnelAddr: e.TunnelAddr})
		}
	}
}

// shortErr is the cause of a call that could not reach the control plane
// ("dial tcp 127.0.0.1:3001: connect: connection refused"), without the
// method and URL.
func shortErr(err error) string {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err.Error()
	}
	return err.Error()
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

// liveState is the state of the agent this process runs, which the agent's
// callbacks and keepIdentity update while it runs; every change is saved.
type liveState struct {
	mu   sync.Mutex
	st   *agentState
	path string
}

// get returns a copy of the state (its lists copied too: update changes
// them under the lock).
func (l *liveState) get() agentState {
	l.mu.Lock()
	defer l.mu.Unlock()
	st := *l.st
	st.Edges, st.Services = slices.Clone(st.Edges), slices.Clone(st.Services)
	return st
}

// update changes the state and saves it, under the lock of the state
// file's writes. Every write of the file takes that lock and this one
// writes the whole state, so the file's services are the current ones: a
// second expose's added or re-targeted service (mergeService) is kept, not
// written back over with this process's older copy.
func (l *liveState) update(f func(st *agentState)) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	unlock, err := lockStateWrite(l.path)
	if err != nil {
		return err
	}
	defer unlock()
	if disk, err := loadState(l.path); err == nil && disk != nil && disk.AgentID == l.st.AgentID {
		l.st.Services = disk.Services
	}
	f(l.st)
	return saveState(l.path, l.st)
}

// runForeground runs the agent until ctx is done, printing its connection
// events. keepIdentity runs beside it: it registers the agent once the
// control plane is back when the agent started without it (offline, from
// identity), and rotates the token before it expires, restarting the agent
// with the new one.
func (a *app) runForeground(ctx context.Context, c *client.Client, st *agentState, af *agentFlags, offline error) error {
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
	a.markRunning(af)
	if offline != nil {
		a.note(slog.LevelWarn, fmt.Sprintf("warning: cannot reach the control plane at %s (%s): running agent %s from its saved state (%s); "+
			"it registers again, refreshes its edges and services and rotates its token once the control plane is back",
			a.control, shortErr(offline), st.AgentID, path),
			"control plane unreachable: running from the saved state; refreshing once it is back",
			"control", a.control, "err", offline.Error(), "agentId", st.AgentID, "state", path)
	}
	ls := &liveState{st: st, path: path}
	var mu sync.Mutex
	badCreds := make(chan struct{}, 1) // an edge refused the agent's credentials
	onEvent := func(e agent.Event) {
		mu.Lock()
		defer mu.Unlock()
		var rej *agent.RejectedError
		if e.Kind == agent.EventRejected && errors.As(e.Err, &rej) && rej.Status == tunnel.ResultBadCredentials {
			select {
			case badCreds <- struct{}{}:
			default:
			}
		}
		a.printEvent(e)
	}
	// The agent's edge list is saved each time it changes, for the next
	// start (without the control plane, say): an edge that was deleted
	// leaves it, an edge added since joins it. An edge the agent reported
	// leaves the saved list only when the agent drops it; edges the saved
	// list gained otherwise (a refresh from the control plane) stay.
	onEdges := func(started []string) func([]string) {
		known := slices.Clone(started) // the agent's list as last reported (calls are in order)
		return func(kept []string) {
			if err := ls.update(func(st *agentState) { st.dropEdges(known, kept) }); err != nil {
				a.log.Warn("saving the edge list", "err", err)
			}
			known = slices.Clone(kept)
		}
	}
	if !a.jsonOut {
		fmt.Fprintf(a.stdout, "Agent %s connecting to %d edge(s); press Ctrl-C to stop.\n", st.AgentID, len(edges))
	}
	if err := a.serveMetrics(ctx, af); err != nil {
		return err
	}
	pending := offline != nil
	for {
		runCtx, cancel := context.WithCancel(ctx)
		var renewed atomic.Bool
		var failed atomic.Pointer[error]
		kept := make(chan struct{})
		fail := func(err error) { failed.Store(&err); cancel() }
		go func() {
			defer close(kept)
			a.keepIdentity(runCtx, c, ls, &pending,
				func() { renewed.Store(true); cancel() }, fail)
		}()
		go a.watchDeleted(runCtx, c, ls, badCreds, fail)
		cur := ls.get()
		err := a.runAgent(runCtx, agent.Config{
			AgentID: cur.AgentID, Token: cur.Token, Edges: cur.edgeAddrs(), OnEdges: onEdges(cur.edgeAddrs()),
			CAFile: af.caFile, PinSHA256: af.pin, InsecureSkipVerify: af.insecureSkipVerify, AllowPlaintext: af.allowPlaintext,
			Logger: a.log, OnEvent: onEvent, Software: "connect/" + version,
			Registerer: registererOf(af), AllowedTargets: af.allowed, VerifyTarget: af.verify,
			OnCommand: agentCommands(c, cur.AgentID),
		})
		cancel()
		<-kept
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
		case failed.Load() != nil:
			return *failed.Load()
		case err != nil:
			return err
		case !renewed.Load():
			return nil
		}
		// The token was rotated: run again with the new one.
	}
}

// errAgentGone stops an agent the control plane no longer knows.
var errAgentGone = errors.New("the control plane no longer knows this agent (deleted with `connect agents rm`, or its token revoked): stopping. " +
	"Run `connect expose` or `connect up` again to register it anew, or remove the state file (--state) for a new identity")

// deletedCheckEvery bounds how often watchDeleted asks the control plane.
var deletedCheckEvery = 30 * time.Second

// watchDeleted asks the control plane, when an edge refuses the agent's
// credentials (at most every deletedCheckEvery), whether it still knows
// the agent: an agent deleted from it is refused by every edge for ever, and
// went on retrying, printing each refusal. A 401 to the agent's own
// heartbeat stops it with errAgentGone; a control plane that cannot be
// reached or that knows the agent changes nothing (an edge behind on its
// configuration refuses a new agent for a moment).
func (a *app) watchDeleted(ctx context.Context, c *client.Client, ls *liveState, badCreds <-chan struct{}, fail func(error)) {
	var last time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-badCreds:
		}
		if !last.IsZero() && a.now().Sub(last) < deletedCheckEvery {
			continue
		}
		last = a.now()
		st := ls.get()
		cctx, cancel := context.WithTimeout(ctx, a.timeout)
		_, err := c.AgentHeartbeat(cctx, st.AgentID, st.Token)
		cancel()
		if client.IsStatus(err, http.StatusUnauthorized) {
			fail(errAgentGone)
			return
		}
	}
}

// keepIdentity does, while the agent runs, what needs the control plane:
//   - when the agent started without it (*pending), it registers the agent
//     every controlRetry until the control plane answers, then refreshes the
//     saved edges and services;
//   - it rotates the token rotateWindow before expiry (no sooner than
//     minRenewWait), then calls restart to run the agent with the new token.
//     A control plane that cannot be reached then is tried again every
//     controlRetry while the agent goes on with its current token; any
//     other failure calls fail.
//
// It returns when ctx ends, after restart or fail, or when there is nothing
// left to do.
func (a *app) keepIdentity(ctx context.Context, c *client.Client, ls *liveState, pending *bool, restart func(), fail func(error)) {
	retrying := false // a rotation failed for want of the control plane
	for {
		st := ls.get()
		var wait time.Duration
		switch {
		case *pending || retrying:
			wait = a.controlRetry
		case st.ExpiresAt.IsZero():
			return
		default:
			wait = max(st.ExpiresAt.Sub(a.now())-rotateWindow(&st), a.minRenewWait)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		if *pending {
			err := a.reconnectControl(ctx, c, ls)
			switch {
			case ctx.Err() != nil:
				return
			case err == nil:
				*pending = false
				a.note(slog.LevelInfo, fmt.Sprintf("The control plane at %s answers again: agent registered, saved edges and services refreshed.", a.control),
					"control plane back: agent registered", "control", a.control)
			case client.IsUnreachable(err):
				continue
			default:
				// Refused (the agent was deleted meanwhile, say): the
				// edges decide whether it may still connect.
				*pending = false
				a.note(slog.LevelWarn, fmt.Sprintf("warning: the control plane at %s answers again but refused to register the agent: %v", a.control, err),
					"control plane back: register agent refused", "control", a.control, "err", err.Error())
			}
			if st = ls.get(); st.ExpiresAt.IsZero() || !a.now().Add(rotateWindow(&st)).After(st.ExpiresAt) {
				continue // not due yet
			}
		}
		err := a.rotateLive(ctx, c, ls)
		switch {
		case ctx.Err() != nil:
			return
		case err == nil:
			restart()
			return
		case client.IsUnreachable(err) && a.now().Before(st.ExpiresAt):
			if !retrying {
				a.note(slog.LevelWarn, fmt.Sprintf("warning: cannot reach the control plane at %s to rotate the agent token (%s): the agent goes on with the current one (valid until %s) and tries again",
					a.control, shortErr(err), fmtTime(st.ExpiresAt)),
					"cannot rotate the agent token: control plane unreachable; retrying", "control", a.control, "err", err.Error(), "expiresAt", st.ExpiresAt)
			}
			retrying = true
		default:
			fail(fmt.Errorf("rotate agent token: %w", err))
			return
		}
	}
}

// reconnectControl registers the running agent with a control plane that
// was away at its start and refreshes the saved edges and services.
func (a *app) reconnectControl(ctx context.Context, c *client.Client, ls *liveState) error {
	st := ls.get()
	cctx, cancel := context.WithTimeout(ctx, a.timeout)
	defer cancel()
	if _, err := c.RegisterAgent(cctx, client.RegisterAgentRequest{AgentID: st.AgentID, Token: st.Token, Name: st.Name, Label: st.Label}); err != nil {
		return err
	}
	svcs, err := agentServices(cctx, c, st.AgentID)
	// The calls are made before the update: it holds the state's lock,
	// which the agent's OnEdges waits for.
	fresh := st
	a.refreshEdges(cctx, c, &fresh)
	return ls.update(func(st *agentState) {
		st.Edges = fresh.Edges
		if err == nil {
			st.setServices(svcs)
		}
	})
}

// rotateLive rotates the running agent's token and saves it.
func (a *app) rotateLive(ctx context.Context, c *client.Client, ls *liveState) error {
	st := ls.get()
	cctx, cancel := context.WithTimeout(ctx, a.timeout)
	defer cancel()
	if err := a.rotate(cctx, c, &st); err != nil {
		return err
	}
	return ls.update(func(cur *agentState) { cur.Token, cur.ExpiresAt, cur.IssuedAt = st.Token, st.ExpiresAt, st.IssuedAt })
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
		e.Err = nil // "agent: edge rejected the agent: <the message>" again
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
