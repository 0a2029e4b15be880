// Package agent is the Private Connect agent as a library: it holds a tunnel
// to every edge it is given and serves the services registered for it. The
// `connect expose` and `connect up` commands are thin wrappers around it, and
// a Go program can embed an agent the same way.
//
// The agent never dials a target it was not told about: every stream names a
// service id, and the agent dials only the targets of the services its edges
// listed for it on the control stream.
package agent

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math/rand/v2"
	"net"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/privateconnect/pc/internal/tunnel"
	"github.com/prometheus/client_golang/prometheus"
)

// Config configures an Agent.
type Config struct {
	// AgentID and Token are the agent's identity (from provisioning).
	AgentID string
	Token   string
	// Edges are the tunnel addresses to dial: "host:port" (plain TCP, for
	// loopback and tests) or "tls://host:port" (from provisioning, or an
	// agent's saved list: the tunnelAddr of each edge). The edges also tell
	// the agent the current list: edges added later are dialed too, while
	// an edge that holds a session of the agent lists them. An address of
	// Edges is dropped only when it refuses the agent's credentials and no
	// edge holding a session lists it any more (an edge deleted with
	// DELETE /v1/edges/:id): one edge's list alone, a stale or compromised
	// edge's, never drops it.
	Edges []string
	// StaticEdges are addresses the agent always holds a tunnel to,
	// whatever the edges say (an edge's address the registered tunnelAddr
	// does not reach from here, a lab edge). Edges or StaticEdges must name
	// at least one edge.
	StaticEdges []string
	// OnEdges, when set, is called with the agent's edge list each time it
	// changes (to keep a saved list current), in order: what remains of
	// Edges, plus the edges the live sessions list that the agent has held
	// a session with (edges added since). An edge of Edges leaves it only
	// as reconcileLocked says; when the last one goes, the edges the agent
	// is connected to and those they list take their place.
	OnEdges func(edges []string)
	// CAFile, when set, is the PEM bundle used to verify edges over TLS.
	CAFile string
	// PinSHA256, when set, is the hex SHA-256 of the edge certificate's
	// SubjectPublicKeyInfo; it replaces CA verification.
	PinSHA256 string
	// InsecureSkipVerify disables verification of the edge certificate (dev only).
	InsecureSkipVerify bool
	// AllowPlaintext lets the agent dial a plain-TCP edge that is not on
	// loopback (an edge behind a load balancer that terminates TLS, or a
	// lab). Without it such an edge is refused: the tunnel would carry the
	// service's traffic in the clear.
	AllowPlaintext bool
	// AllowedTargets, when set, are the only "host:port" targets the agent
	// dials, whatever its edges list: a compromised edge cannot point it at
	// anything else. `connect expose` sets it to the exposed target.
	AllowedTargets []string
	// VerifyTarget, when set, is asked about a target that is not in
	// AllowedTargets (a service registered after the agent started): true
	// allows it, and the answer is remembered; a refusal is remembered for
	// RefusalTTL, so streams to a refused target do not each cost a call.
	// `connect expose` checks the service with the control plane's API.
	VerifyTarget func(ctx context.Context, serviceID, addr string) bool
	// UpstreamTLSVerify makes the agent verify the certificates of https
	// services it dials (off by default, as with ngrok: private services
	// often use internal certificates).
	UpstreamTLSVerify bool
	// DialTimeout bounds connecting to an edge or a target (default 10 s).
	DialTimeout time.Duration
	// TargetWriteTimeout resets a service's connection (TCP or HTTP) when a
	// write to it makes no progress for this long (default 60 s): a service that
	// stops reading leaves its stream's bytes in the edge session's shared
	// receive buffer, and a few such would stall every stream of the
	// session.
	TargetWriteTimeout time.Duration
	// Logger receives structured logs; nil discards them.
	Logger *slog.Logger
	// OnEvent, when set, receives the connection events (EventConnected,
	// EventDisconnected, EventRejected, EventError, EventReplaced) in order,
	// from one goroutine of its own: a slow callback delays later events,
	// never the tunnels. Run returns once every event was delivered. The
	// Logger's records of those events are then at debug level: the caller
	// reports them (without OnEvent, a rejection is a warning, say).
	OnEvent func(Event)
	// OnCommand, when set, is offered every command first; it returns
	// handled=false to let the agent run its built-in handling (status,
	// diagnose, reach, restart, stop).
	OnCommand func(ctx context.Context, c Command) (result any, handled bool, err error)
	// OnMessage receives messages from other agents.
	OnMessage func(Message)
	// Registerer, when set, receives the agent's Prometheus metrics
	// (pc_agent_*).
	Registerer prometheus.Registerer
	// Software is reported in the handshake (default "pc-agent").
	Software string

	// Backoff bounds for reconnects (defaults 250 ms and 30 s).
	MinBackoff, MaxBackoff time.Duration
}

// Event kinds.
const (
	EventConnected    = "connected"
	EventDisconnected = "disconnected"
	EventRejected     = "rejected"
	EventError        = "error"
	// EventReplaced: an edge took a newer session of this agent identity, so
	// another process runs it too; the agent does not reconnect to that edge,
	// and stops (Run returns a *ReplacedError) once no edge is left.
	EventReplaced = "replaced"
)

// Event is a connection event of the agent.
type Event struct {
	Kind    string // EventConnected, EventDisconnected, EventRejected, EventError, EventReplaced
	Edge    string // tunnel address
	EdgeID  string
	Message string
	Err     error
}

// Agent is a running connector.
type Agent struct {
	cfg     Config
	id      uuid.UUID
	log     *slog.Logger
	tlsConf *tls.Config

	mu         sync.Mutex
	services   map[uuid.UUID]target
	svcCond    *sync.Cond
	edges      map[string]context.CancelFunc // tunnel addr → stop
	sessions   map[string]*edgeConn          // tunnel addr → live session
	edgeOwner  map[string]string             // edge id → the tunnel addr holding (or opening) its session
	listed     map[string][]string           // tunnel addr of a live session → the edges it listed last
	floor      map[string]bool               // Config.Edges still held (reconcileLocked)
	badCreds   map[string]bool               // tunnel addr → refused the agent's credentials, until a session is up
	floorSeq   uint64                        // changes of the reported list (deliverEdges)
	held       map[string]bool               // tunnel addrs that held a session in this run (their edge took the agent)
	reported   []string                      // the edge list OnEdges was given last (Config.Edges at first)
	onEdgesMu  sync.Mutex                    // orders OnEdges calls
	onEdgesSeq uint64                        // the floor change OnEdges was last given
	runCtx     context.Context
	stop       context.CancelFunc
	runErr     error          // why Run stopped by itself (a *ReplacedError)
	replaced   error          // the first *ReplacedError an edge gave
	trying     map[string]int // tunnel addr → attempts under way (a loop removed and re-added overlaps)
	wg         sync.WaitGroup
	verified   sync.Map // "serviceID addr" → true
	refusedMu  sync.Mutex
	refused    map[string]time.Time // "serviceID addr" → when the refusal expires
	counters   counters
	collectors []prometheus.Collector
	ran        bool                      // Run was called (it runs once)
	definitive map[string]*RejectedError // tunnel addr → its refusal for good, until a session is up
	finished   map[string]bool           // tunnel addr → its loop ended for good (replaced there, plain TCP refused)

	evMu   sync.Mutex
	evQ    []Event
	evWake chan struct{}
}

type target struct {
	name     string
	protocol string
	addr     string
	host     string
}

// New validates cfg and returns an Agent.
func New(cfg Config) (*Agent, error) {
	if cfg.AgentID == "" || cfg.Token == "" {
		return nil, errors.New("agent: AgentID and Token are required")
	}
	id, err := uuid.Parse(cfg.AgentID)
	if err != nil {
		return nil, fmt.Errorf("agent: AgentID: %w", err)
	}
	if len(cfg.Edges) == 0 && len(cfg.StaticEdges) == 0 {
		return nil, errors.New("agent: at least one edge is required")
	}
	// An edge of Edges (the control plane's list) this agent cannot use (a
	// malformed address, plain TCP off loopback) is skipped with a warning:
	// one edge registered wrong must not stop every agent of the fleet at
	// its next start. StaticEdges are the user's own: any is an error.
	var usable []string
	var skipped []error
	for _, e := range cfg.Edges {
		if err := cfg.checkEdge(e); err != nil {
			skipped = append(skipped, err)
			continue
		}
		usable = append(usable, e)
	}
	for _, e := range cfg.StaticEdges {
		if err := cfg.checkEdge(e); err != nil {
			return nil, err
		}
	}
	if len(usable) == 0 && len(cfg.StaticEdges) == 0 {
		return nil, skipped[0]
	}
	cfg.Edges = usable
	if cfg.DialTimeout <= 0 {
		cfg.DialTimeout = 10 * time.Second
	}
	if cfg.TargetWriteTimeout <= 0 {
		cfg.TargetWriteTimeout = 60 * time.Second
	}
	if cfg.MinBackoff <= 0 {
		cfg.MinBackoff = 250 * time.Millisecond
	}
	if cfg.MaxBackoff <= 0 {
		cfg.MaxBackoff = 30 * time.Second
	}
	if cfg.Software == "" {
		cfg.Software = "pc-agent"
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	for _, err := range skipped {
		log.Warn("skipping an edge this agent cannot use", "err", err)
	}
	a := &Agent{cfg: cfg, id: id, log: log, services: map[uuid.UUID]target{},
		edges: map[string]context.CancelFunc{}, sessions: map[string]*edgeConn{}, edgeOwner: map[string]string{}, listed: map[string][]string{},
		floor: map[string]bool{}, badCreds: map[string]bool{}, held: map[string]bool{},
		trying: map[string]int{}, definitive: map[string]*RejectedError{}, finished: map[string]bool{}, evWake: make(chan struct{}, 1)}
	a.svcCond = sync.NewCond(&a.mu)
	if cfg.Registerer != nil {
		if err := a.registerMetrics(cfg.Registerer); err != nil {
			return nil, fmt.Errorf("agent: metrics: %w", err)
		}
	}
	tc, err := a.edgeTLSConfig()
	if err != nil {
		return nil, err
	}
	a.tlsConf = tc
	return a, nil
}

// ID returns the agent id.
func (a *Agent) ID() string { return a.cfg.AgentID }

// Run connects to every edge and serves until ctx is done. It reconnects
// with exponential backoff and jitter, and returns nil when ctx is cancelled.
// An Agent runs once: a second call returns ErrRunTwice.
//
// Run also stops by itself:
//   - with a *ReplacedError (errors.Is ErrReplaced) when an edge says a
//     newer session of this agent identity replaced this one (another
//     process runs the same identity): that edge is not reconnected to,
//     since that would only displace the other process in turn, and Run
//     stops once the agent holds no tunnel (the other edges replaced it
//     too, or cannot be reached). One edge cannot end the agent's tunnels
//     to the others.
//   - with a *RejectedError when every edge refuses the agent for good: an
//     expired token, a protocol version the edges do not accept. Invalid
//     credentials are retried (an edge may not know a new agent yet, or
//     its control plane may be away) and reported as EventRejected.
//   - with ErrStopped when the control plane sent the agent a stop command.
func (a *Agent) Run(ctx context.Context) error {
	ctx, stop := context.WithCancel(ctx)
	defer stop()
	a.mu.Lock()
	if a.ran {
		a.mu.Unlock()
		return ErrRunTwice
	}
	a.ran = true
	evStop, evDone := make(chan struct{}), make(chan struct{})
	go a.deliverEvents(evStop, evDone)
	a.runCtx, a.stop = ctx, stop
	for _, e := range a.cfg.Edges {
		a.floor[e] = true
		a.addEdgeLocked(e)
	}
	a.reported = slices.Sorted(maps.Keys(a.floor))
	for _, e := range a.cfg.StaticEdges {
		a.addEdgeLocked(e)
	}
	a.mu.Unlock()
	<-ctx.Done()
	a.mu.Lock()
	for _, s := range a.sessions {
		s.close()
	}
	a.svcCond.Broadcast()
	a.mu.Unlock()
	a.wg.Wait()
	close(evStop)
	<-evDone
	a.unregisterMetrics()
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.runErr
}

// ErrRunTwice is returned by a second call of Run.
var ErrRunTwice = errors.New("agent: Run was already called: an Agent runs once; create a new one to run again")

// ErrStopped is returned by Run when the control plane sent the agent a
// stop command (POST /v1/agents/:id/commands {"action":"stop"}).
var ErrStopped = errors.New("agent: stopped by a command from the control plane")

// stopWith ends Run with err (the first reason wins).
func (a *Agent) stopWith(err error) {
	a.mu.Lock()
	if a.runErr == nil {
		a.runErr = err
	}
	cancel := a.stop
	a.mu.Unlock()
	if cancel != nil {
		cancel()
	}
}

// deliverEvents calls OnEvent with the queued events, in order, until stop
// is closed and the queue is empty.
func (a *Agent) deliverEvents(stop <-chan struct{}, done chan<- struct{}) {
	defer close(done)
	for {
		a.evMu.Lock()
		q := a.evQ
		a.evQ = nil
		a.evMu.Unlock()
		for _, e := range q {
			a.cfg.OnEvent(e)
		}
		if len(q) > 0 {
			continue
		}
		select {
		case <-a.evWake:
		case <-stop:
			a.evMu.Lock()
			q = a.evQ
			a.evQ = nil
			a.evMu.Unlock()
			for _, e := range q {
				a.cfg.OnEvent(e)
			}
			return
		}
	}
}

// setTrying records whether an attempt to connect to addr is under way (a
// session that is up counts as one until it ends).
func (a *Agent) setTrying(addr string, on bool) {
	a.mu.Lock()
	if on {
		a.trying[addr]++
	} else if a.trying[addr]--; a.trying[addr] <= 0 {
		delete(a.trying, addr)
	}
	a.mu.Unlock()
}

// stopIfDone stops Run once the agent neither holds a tunnel nor is trying
// one, and an edge said why it never will:
//   - a newer session of this identity replaced it (*ReplacedError): every
//     edge it had is held by the other process, or the rest failed their
//     last attempt (an agent retrying them would sit there with no tunnel,
//     and the other process would be alone to serve);
//   - an edge refused it for good (*RejectedError), and every other edge
//     did too or will never be tried again (replaced there, a plain-TCP
//     address refused).
//
// An edge that says so while another edge's session is still being opened
// (at start, say) does not stop the agent.
func (a *Agent) stopIfDone() {
	a.mu.Lock()
	err := a.doneLocked()
	if err != nil {
		a.runErr = err
	}
	cancel := a.stop
	a.mu.Unlock()
	if err != nil {
		cancel()
	}
}

// doneLocked is why Run should stop by itself now (stopIfDone), or nil.
func (a *Agent) doneLocked() error {
	if len(a.sessions) > 0 || len(a.trying) > 0 || a.runErr != nil || a.runCtx == nil || a.runCtx.Err() != nil {
		return nil
	}
	if a.replaced != nil {
		return a.replaced
	}
	var first *RejectedError
	for addr := range a.edges {
		if r, ok := a.definitive[addr]; ok {
			if first == nil {
				first = r
			}
		} else if !a.finished[addr] {
			return nil
		}
	}
	if first == nil {
		return nil
	}
	return first
}

// Connected returns the tunnel addresses of the edges the agent holds a live
// session with.
func (a *Agent) Connected() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make([]string, 0, len(a.sessions))
	for addr := range a.sessions {
		out = append(out, addr)
	}
	return out
}

// addEdgeLocked starts maintaining a tunnel to addr unless one exists.
func (a *Agent) addEdgeLocked(addr string) {
	if _, ok := a.edges[addr]; ok || a.runCtx == nil || a.runCtx.Err() != nil {
		return
	}
	ctx, cancel := context.WithCancel(a.runCtx)
	a.edges[addr] = cancel
	delete(a.finished, addr)
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		a.maintain(ctx, addr)
		if ctx.Err() == nil {
			a.mu.Lock()
			a.finished[addr] = true
			a.mu.Unlock()
		}
		a.stopIfDone() // an edge dropped from the list may have been the last one trying
	}()
}

// setEdges reconciles the edges to hold tunnels to with the list the edge
// of session ec sent (nil: a list from no session, for tests). The agent
// holds tunnels to StaticEdges, to the edges of Config.Edges (its saved or
// provisioned list: see reconcileLocked for the one way one leaves it), to
// every edge it holds a session with, and to every edge one of those
// sessions' edges listed last (edges added since); it drops a learned edge
// that no live session lists any more. Taking the union of the lists of
// every live session, not the last list alone, keeps an edge that one edge
// does not list yet (its configuration is behind: the control plane is
// away) while another does.
func (a *Agent) setEdges(ec *edgeConn, list []string) {
	a.mu.Lock()
	var clean []string
	for _, e := range list {
		if e != "" {
			clean = append(clean, e)
		}
	}
	if len(clean) == 0 {
		a.mu.Unlock()
		return // an edge that lists nothing says nothing about the others
	}
	if ec != nil {
		if a.sessions[ec.addr] != ec {
			a.mu.Unlock()
			return // that session has ended
		}
		a.listed[ec.addr] = clean
	}
	floor, seq := a.reconcileLocked(clean)
	a.mu.Unlock()
	a.deliverEdges(floor, seq)
}

// sessionEnded reconciles the edges once the session of ec ended: a
// learned edge that was kept only because it held a session is dropped if
// no other live edge lists it. With no live session left nothing is
// dropped: the network may be down, which says nothing about the edges.
func (a *Agent) sessionEnded(ec *edgeConn) {
	a.mu.Lock()
	if a.sessions[ec.addr] == ec {
		delete(a.sessions, ec.addr)
		delete(a.listed, ec.addr)
	}
	a.reconcileUnlock()
}

// refusedCredentials records that the edge at addr refused the agent's
// credentials, and reconciles: a saved edge that also left the live
// sessions' lists was deleted.
func (a *Agent) refusedCredentials(addr string) {
	a.mu.Lock()
	a.badCreds[addr] = true
	a.reconcileUnlock()
}

// reconcileUnlock reconciles the edges after a session ended or an edge
// refused the agent, unless no live session lists any edge (the network
// may be down) or Run is over, unlocks a.mu and tells OnEdges of a drop.
func (a *Agent) reconcileUnlock() {
	var floor []string
	var seq uint64
	if len(a.listed) > 0 && a.runCtx != nil && a.runCtx.Err() == nil {
		floor, seq = a.reconcileLocked(nil)
	}
	a.mu.Unlock()
	a.deliverEdges(floor, seq)
}

// reconcileLocked holds tunnels to the edges wanted (setEdges) and drops
// the others, with extra listed too. An edge of Config.Edges (the floor)
// leaves only on two signals at once: it refused the agent's credentials
// itself, and no edge holding a session of the agent lists it (an edge
// deleted from the control plane). One edge's list alone, a stale or a
// compromised edge's, never drops it, nor does an edge that is down. When
// the edge list changes (the floor shrinks, or a listed edge the agent held
// a session with joins it) it returns the list for OnEdges, with its
// sequence number; else nil.
func (a *Agent) reconcileLocked(extra []string) (floor []string, seq uint64) {
	listed := map[string]bool{}
	for _, e := range extra {
		listed[e] = true
	}
	for _, l := range a.listed {
		for _, e := range l {
			listed[e] = true
		}
	}
	want := maps.Clone(listed)
	for _, e := range a.cfg.StaticEdges {
		want[e] = true
	}
	for addr := range a.sessions {
		want[addr] = true
	}
	shrunk := false
	for addr := range a.floor {
		if a.badCreds[addr] && len(listed) > 0 && !listed[addr] && a.sessions[addr] == nil {
			delete(a.floor, addr)
			shrunk = true
			a.log.Info("edge dropped: it refuses the agent's credentials and the connected edges no longer list it (deleted)", "edge", addr)
			continue
		}
		want[addr] = true
	}
	for addr, cancel := range a.edges {
		if !want[addr] {
			cancel()
			delete(a.edges, addr)
			delete(a.definitive, addr)
			delete(a.finished, addr)
			delete(a.badCreds, addr)
			delete(a.held, addr)
			a.log.Info("edge no longer listed by the edges: not dialing it any more", "edge", addr)
		}
	}
	for addr := range want {
		a.addEdgeLocked(addr) // a no-op for an edge already held
	}
	if shrunk && len(a.floor) == 0 {
		// Every edge of the list was deleted: the edges the agent is
		// connected to, and those they list, become the list.
		for addr := range listed {
			a.floor[addr] = true
		}
		for addr := range a.sessions {
			a.floor[addr] = true
		}
	}
	if a.cfg.OnEdges == nil {
		return nil, 0
	}
	// Edges added since the agent started are saved too, once the agent
	// has held a session with them (the edge took its credentials, over a
	// verified TLS connection off loopback), while they stay listed.
	list := maps.Clone(a.floor)
	for addr := range listed {
		if a.held[addr] {
			list[addr] = true
		}
	}
	floor = slices.Sorted(maps.Keys(list))
	if slices.Equal(floor, a.reported) {
		return nil, 0
	}
	a.reported = floor
	a.floorSeq++
	return floor, a.floorSeq
}

// deliverEdges calls OnEdges with a changed edge list, in the order the floor
// changed (a later list is never overwritten by an earlier one).
func (a *Agent) deliverEdges(floor []string, seq uint64) {
	if floor == nil {
		return
	}
	a.onEdgesMu.Lock()
	defer a.onEdgesMu.Unlock()
	if seq <= a.onEdgesSeq {
		return
	}
	a.onEdgesSeq = seq
	a.cfg.OnEdges(floor)
}

// maintain keeps one edge connected until ctx ends.
func (a *Agent) maintain(ctx context.Context, addr string) {
	backoff := a.cfg.MinBackoff
	for ctx.Err() == nil {
		start := time.Now()
		a.setTrying(addr, true)
		err := a.session(ctx, addr)
		a.setTrying(addr, false)
		if ctx.Err() != nil {
			return
		}
		if time.Since(start) > 10*time.Second {
			backoff = a.cfg.MinBackoff // it was up for a while: reconnect fast
		}
		if errors.Is(err, errAlias) {
			// Another address of the same edge holds the session: stay
			// in reserve and try again later, quietly.
			a.log.Debug("edge already connected through another address", "edge", addr)
			err = nil
		}
		var rej *RejectedError
		var plain *PlaintextError
		var replaced *ReplacedError
		if errors.As(err, &replaced) {
			a.emit(Event{Kind: EventReplaced, Edge: addr, Message: replaced.Reason, Err: err})
			a.logEvent(slog.LevelWarn, "not reconnecting: the edge holds a newer session of this agent identity", "edge", addr, "reason", replaced.Reason)
			a.mu.Lock()
			if a.replaced == nil {
				a.replaced = err
			}
			a.mu.Unlock()
			a.stopIfDone()
			return
		}
		if errors.As(err, &plain) {
			// An edge added later (config push) with a plain address off
			// loopback: retrying cannot help.
			a.emit(Event{Kind: EventRejected, Edge: addr, Message: plain.Error(), Err: err})
			a.logEvent(slog.LevelError, "not connecting to a plain-TCP edge off loopback", "edge", addr)
			return
		}
		if errors.As(err, &rej) {
			a.counters.rejected.Add(1)
			msg := rej.Message
			if rej.Status == tunnel.ResultBadCredentials {
				a.refusedCredentials(addr)
			}
			if n := a.othersAccepting(addr); n > 0 && rej.Status == tunnel.ResultBadCredentials {
				// The credentials are good: this edge does not know them.
				msg = fmt.Sprintf("%s here, though %d other edge(s) accept them: this edge does not know the agent "+
					"(removed from the control plane, or behind on its configuration)", rej.Message, n)
			}
			a.emit(Event{Kind: EventRejected, Edge: addr, Message: msg, Err: err})
			a.logEvent(slog.LevelWarn, "edge rejected the agent", "edge", addr, "reason", msg)
			if rej.Status == tunnel.ResultExpired || rej.Status == tunnel.ResultUnsupportedVersion {
				a.mu.Lock()
				a.definitive[addr] = rej
				a.mu.Unlock()
			}
		} else if err != nil {
			a.emit(Event{Kind: EventError, Edge: addr, Err: err, Message: err.Error()})
			a.log.Debug("tunnel ended", "edge", addr, "err", err)
		}
		if err != nil {
			// Refused here for good, or replaced elsewhere, and this edge
			// cannot be had either.
			a.stopIfDone()
		}
		// Full jitter in [backoff/2, backoff].
		d := backoff/2 + time.Duration(rand.Int64N(int64(backoff/2)+1))
		select {
		case <-ctx.Done():
			return
		case <-time.After(d):
		}
		backoff *= 2
		if backoff > a.cfg.MaxBackoff {
			backoff = a.cfg.MaxBackoff
		}
	}
}

// othersAccepting is the number of edges other than addr's that hold a
// session of the agent.
func (a *Agent) othersAccepting(addr string) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	n := 0
	for s, ec := range a.sessions {
		if s != addr && ec.edgeID != "" {
			n++
		}
	}
	return n
}

// logEvent logs the record of an event emitted with it: at level, or at
// debug when OnEvent takes the events (the caller reports them; a second
// line for each would say it twice).
func (a *Agent) logEvent(level slog.Level, msg string, args ...any) {
	if a.cfg.OnEvent != nil {
		level = slog.LevelDebug
	}
	a.log.Log(context.Background(), level, msg, args...)
}

// emit queues an event for OnEvent (deliverEvents).
func (a *Agent) emit(e Event) {
	if a.cfg.OnEvent == nil {
		return
	}
	a.evMu.Lock()
	a.evQ = append(a.evQ, e)
	a.evMu.Unlock()
	select {
	case a.evWake <- struct{}{}:
	default:
	}
}

// RejectedError is an edge's refusal of the agent's credentials: the Err
// of an EventRejected, and what Run returns when every edge refuses the
// agent for good (Status tunnel result 2, an expired token, or 3, an
// unsupported protocol version).
type RejectedError struct {
	Status  byte
	Message string
}

func (e *RejectedError) Error() string { return "agent: edge rejected the agent: " + e.Message }

// ErrReplaced: another process runs this agent identity (see ReplacedError).
var ErrReplaced = errors.New("agent: another process runs this agent identity")

// ReplacedError is returned by Run when an edge replaced this agent's
// session with a newer one of the same identity: another process (a copy of
// the state file, a second `connect up`) runs it. Each process needs an
// identity of its own.
type ReplacedError struct {
	Edge   string // tunnel address
	Reason string // the edge's words
}

func (e *ReplacedError) Error() string {
	return "agent: edge " + e.Edge + " replaced this session: " + e.Reason
}

func (e *ReplacedError) Unwrap() error { return ErrReplaced }

// dial connects to an edge, over TLS for tls:// addresses.
func (a *Agent) dial(ctx context.Context, addr string) (net.Conn, error) {
	d := net.Dialer{Timeout: a.cfg.DialTimeout, KeepAlive: 30 * time.Second}
	if rest, ok := strings.CutPrefix(addr, "tls://"); ok {
		td := tls.Dialer{NetDialer: &d, Config: a.tlsConfigFor(rest)}
		return td.DialContext(ctx, "tcp", rest)
	}
	if err := a.cfg.checkPlaintext(addr); err != nil {
		return nil, err
	}
	return d.DialContext(ctx, "tcp", strings.TrimPrefix(addr, "tcp://"))
}

// checkEdge checks an edge address's form, then its transport.
func (c *Config) checkEdge(addr string) error {
	if err := checkEdgeAddr(addr); err != nil {
		return err
	}
	return c.checkPlaintext(addr)
}

// checkEdgeAddr checks the form of an edge's tunnel address.
func checkEdgeAddr(addr string) error {
	hp := strings.TrimPrefix(strings.TrimPrefix(addr, "tls://"), "tcp://")
	host, port, err := net.SplitHostPort(hp)
	if err != nil || host == "" || port == "" || strings.Contains(hp, "/") {
		return fmt.Errorf("agent: edge address %q: want host:port or tls://host:port (an edge's tunnelAddr, not its share URL)", addr)
	}
	return nil
}

// checkPlaintext refuses a plain-TCP edge address off loopback unless
// AllowPlaintext.
func (c *Config) checkPlaintext(addr string) error {
	if strings.HasPrefix(addr, "tls://") || c.AllowPlaintext || tunnel.IsLoopbackAddr(addr) {
		return nil
	}
	return &PlaintextError{Addr: addr}
}

// PlaintextError refuses a plain-TCP edge off loopback (Config.AllowPlaintext).
type PlaintextError struct{ Addr string }

func (e *PlaintextError) Error() string {
	return "agent: refusing plain TCP to edge " + e.Addr + " (not loopback): use a tls:// edge address, or allow plaintext explicitly"
}
