// Package tunnels holds the edge's live agent sessions: it accepts agent
// connections on the tunnel listener, runs the handshake of package
// internal/tunnel against the agent keys of the current routing table, and
// opens streams to agents for the proxy.
package tunnels

import (
	"bufio"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/privateconnect/pc/edge/routes"
	"github.com/privateconnect/pc/internal/config"
	"github.com/privateconnect/pc/internal/tunnel"
	"github.com/xtaci/smux"
)

// Errors returned by OpenStream.
var (
	ErrOffline    = errors.New("tunnels: agent offline")
	ErrOverloaded = errors.New("tunnels: too many streams for this agent")
	ErrRefused    = errors.New("tunnels: agent refused the stream")
)

// Config configures a Registry.
type Config struct {
	// EdgeID returns this edge's id (bound into the handshake MAC).
	EdgeID func() string
	// Table returns the current routing table (for agent keys).
	Table func() *routes.Table
	// MaxStreams caps the concurrent streams per agent (default 1024).
	MaxStreams int
	// MaxHandshakesPerIP caps the connections from one address still in
	// the handshake (default 64): beyond it a new connection is closed at
	// once, so one host holding slow handshakes (each is cut after
	// tunnel.HandshakeTimeout) cannot take every slot. Honest agents finish
	// a handshake in a round trip and retry with backoff.
	MaxHandshakesPerIP int
	// TrustedProxies are exempt from MaxHandshakesPerIP: behind a load
	// balancer every agent comes from its address.
	TrustedProxies []netip.Prefix
	// OnEvent receives agent connection events (for reports and audit).
	OnEvent func(config.AgentEvent)
	// OnControl receives the control frames an agent sends (command results).
	OnControl func(s *Session, c *tunnel.Control)
	// TrackConn, when set, registers the reaching side of a reach
	// connection to a service: the connection is piped through the conn it
	// returns, and done is called when it ends (the edge counts its bytes
	// and ends it when the tunnel is paused).
	TrackConn func(serviceID, ip string, c net.Conn) (tracked net.Conn, done func())
	Logger    *slog.Logger
}

// Registry is the set of live agent sessions of one edge.
type Registry struct {
	cfg Config
	log *slog.Logger

	mu       sync.RWMutex
	sessions map[string]*Session
	retiring map[*Session]struct{} // replaced by a newer session, closing (retire)
	conns    map[net.Conn]struct{} // in handshake
	perIP    map[string]int        // connections in handshake by remote address
	closed   bool
	wg       sync.WaitGroup

	handshakesRefused atomic.Uint64 // connections closed by MaxHandshakesPerIP
	streamsRefused    atomic.Uint64 // streams refused by MaxStreams
	draining          atomic.Bool   // Drain: no new reach streams
}

func (r *Registry) trustedProxy(ip string) bool {
	a, err := netip.ParseAddr(ip)
	if err != nil {
		return false
	}
	a = a.Unmap()
	for _, p := range r.cfg.TrustedProxies {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// HandshakesRefused counts the connections closed at once because their
// address already held MaxHandshakesPerIP handshakes.
func (r *Registry) HandshakesRefused() uint64 { return r.handshakesRefused.Load() }

// StreamsRefused counts the streams refused because their agent had
// MaxStreams open.
func (r *Registry) StreamsRefused() uint64 { return r.streamsRefused.Load() }

// New returns a Registry.
func New(cfg Config) *Registry {
	if cfg.MaxStreams <= 0 {
		cfg.MaxStreams = 1024
	}
	if cfg.MaxHandshakesPerIP <= 0 {
		cfg.MaxHandshakesPerIP = 64
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Registry{cfg: cfg, log: log, sessions: map[string]*Session{}, retiring: map[*Session]struct{}{}, conns: map[net.Conn]struct{}{}, perIP: map[string]int{}}
}

// Serve accepts agent connections on ln until ln is closed.
func (r *Registry) Serve(ln net.Listener) error {
	// Only a closed listener ends the loop: descriptors exhausted, a client
	// gone before its accept and the like pass (tunnel.AcceptBackoff).
	b := tunnel.AcceptBackoff{Log: r.log, What: "agent tunnel listener " + ln.Addr().String()}
	for {
		c, err := ln.Accept()
		if err != nil {
			r.mu.Lock()
			closed := r.closed
			r.mu.Unlock()
			if !closed && b.Retry(err) {
				continue
			}
			return err
		}
		b.Accepted()
		ip := hostOf(c.RemoteAddr())
		r.mu.Lock()
		if r.closed {
			r.mu.Unlock()
			c.Close()
			return net.ErrClosed
		}
		if r.perIP[ip] >= r.cfg.MaxHandshakesPerIP && !r.trustedProxy(ip) {
			r.mu.Unlock()
			r.handshakesRefused.Add(1)
			c.Close()
			continue
		}
		r.perIP[ip]++
		r.conns[c] = struct{}{}
		r.wg.Add(1)
		r.mu.Unlock()
		go r.handle(c, ip)
	}
}

// Session is one authenticated agent tunnel.
type Session struct {
	AgentID     string
	WorkspaceID string
	RemoteIP    string
	Since       time.Time
	key, pub    [32]byte // the credentials it was accepted with
	sess        *smux.Session
	conn        net.Conn // under sess (tunnel.Buffered)
	sem         chan struct{}
	reg         *Registry

	ctlMu sync.Mutex
	ctl   *smux.Stream

	// aborts are the session's TCP streams, whose teardown each side tells
	// the other (tunnel.CtlAbort); the failure of the connection under smux
	// ends them as torn down.
	aborts tunnel.Aborts

	// Clients caches per-service HTTP clients of the proxy (service id →
	// value), so they live and die with the session.
	Clients sync.Map

	closeMu sync.Once

	pushMu       sync.Mutex
	lastServices []tunnel.Service // what the agent was last sent
	lastEdges    []string
	pushQueued   atomic.Bool // a push is scheduled (Refresh): one at a time
	capWarned    atomic.Bool // the stream cap was logged for this session
}

// handle runs the handshake on c and serves the session.
func (r *Registry) handle(c net.Conn, remoteIP string) {
	defer r.wg.Done()
	s, err := r.handshake(c, remoteIP)
	r.mu.Lock()
	delete(r.conns, c)
	if r.perIP[remoteIP]--; r.perIP[remoteIP] <= 0 {
		delete(r.perIP, remoteIP)
	}
	r.mu.Unlock()
	if err != nil {
		c.Close()
		return
	}
	r.serve(s)
}

func hostOf(a net.Addr) string {
	if ta, ok := a.(*net.TCPAddr); ok {
		return ta.IP.String()
	}
	h, _, _ := net.SplitHostPort(a.String())
	return h
}

func (r *Registry) reject(c net.Conn, status byte, msg, agentID, ip string) error {
	_ = tunnel.WriteResult(c, tunnel.Result{Status: status, Message: msg})
	if agentID != "" && r.cfg.OnEvent != nil {
		r.cfg.OnEvent(config.AgentEvent{AgentID: agentID, Event: config.EventRejected, IP: ip, Details: msg, At: time.Now().UTC()})
	}
	r.log.Info("agent rejected", "agent", agentID, "ip", ip, "reason", msg)
	return errors.New(msg)
}

// handshake authenticates an agent connection.
func (r *Registry) handshake(c net.Conn, ip string) (*Session, error) {
	_ = c.SetDeadline(time.Now().Add(tunnel.HandshakeTimeout))
	sh := &tunnel.ServerHello{Version: tunnel.Version, EdgeID: r.cfg.EdgeID()}
	if _, err := rand.Read(sh.Nonce[:]); err != nil {
		return nil, err
	}
	if err := tunnel.WriteServerHello(c, sh); err != nil {
		return nil, err
	}
	br := bufio.NewReaderSize(c, 128)
	ch, err := tunnel.ReadClientHello(br)
	if errors.Is(err, tunnel.ErrVersion) {
		return nil, r.reject(c, tunnel.ResultUnsupportedVersion,
			fmt.Sprintf("protocol version %d not supported (edge speaks %d-%d)", ch.Version, tunnel.MinVersion, tunnel.Version), "", ip)
	}
	if err != nil {
		return nil, err // not a speaking agent: drop silently
	}
	agentID := ch.AgentID.String()
	ag, ok := r.cfg.Table().Agent(agentID)
	if !ok || ag.Revoked {
		// Unknown and revoked agents get the same answer.
		return nil, r.reject(c, tunnel.ResultBadCredentials, "invalid agent credentials", agentID, ip)
	}
	var zero [32]byte
	switch {
	case ch.Version >= 2:
		if ag.Pub == zero || !tunnel.VerifySig(ag.Pub, sh, ch) {
			return nil, r.reject(c, tunnel.ResultBadCredentials, "invalid agent credentials", agentID, ip)
		}
	case ag.Key == zero:
		// Version 1 needs the token hash, which edges get only for tokens
		// issued before version 2.
		return nil, r.reject(c, tunnel.ResultUnsupportedVersion,
			"protocol version 1 is not accepted for this agent's token: upgrade the agent", agentID, ip)
	case !tunnel.VerifyMAC(ag.Key, sh, ch):
		return nil, r.reject(c, tunnel.ResultBadCredentials, "invalid agent credentials", agentID, ip)
	}
	if !ag.ExpiresAt.IsZero() && time.Now().After(ag.ExpiresAt) {
		return nil, r.reject(c, tunnel.ResultExpired, "agent token expired: provision or rotate it", agentID, ip)
	}
	if br.Buffered() > 0 {
		return nil, errors.New("tunnels: data before handshake result")
	}
	if err := tunnel.WriteResult(c, tunnel.Result{Status: tunnel.ResultOK, Message: "welcome"}); err != nil {
		return nil, err
	}
	_ = c.SetDeadline(time.Time{})
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetNoDelay(true)
	}
	bc := tunnel.Buffered(c)
	sess, err := smux.Client(bc, tunnel.SmuxConfig())
	if err != nil {
		return nil, err
	}
	s := &Session{AgentID: agentID, WorkspaceID: ag.WorkspaceID, RemoteIP: ip, Since: time.Now().UTC(),
		key: ag.Key, pub: ag.Pub, sess: sess, conn: bc, sem: make(chan struct{}, r.cfg.MaxStreams), reg: r}
	s.aborts.Init(s.Control, func() bool { return tunnel.ReadFailed(bc) })
	return s, nil
}

// serve registers s (replacing an older session of the same agent), opens
// the control stream and waits for the session to end.
func (r *Registry) serve(s *Session) {
	ctl, err := s.sess.OpenStream()
	if err == nil {
		hdr, _ := tunnel.AppendStreamHeader(nil, &tunnel.StreamHeader{Kind: tunnel.KindControl})
		_, err = ctl.Write(hdr)
	}
	if err != nil {
		s.sess.Close()
		return
	}
	s.ctl = ctl
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		s.sess.Close()
		return
	}
	old := r.sessions[s.AgentID]
	r.sessions[s.AgentID] = s
	r.mu.Unlock()
	if old != nil {
		r.retire(old, s.RemoteIP) // a newer session from the same agent replaces the old one
	}
	r.log.Info("agent connected", "agent", s.AgentID, "ip", s.RemoteIP)
	if r.cfg.OnEvent != nil {
		r.cfg.OnEvent(config.AgentEvent{AgentID: s.AgentID, Event: config.EventConnected, IP: s.RemoteIP, At: s.Since})
	}
	s.PushConfig()
	go r.acceptAgentStreams(s)

	// Read the agent's control frames until the session ends.
	br := bufio.NewReaderSize(ctl, 256) // frames are rare and small; ReadControl reads big ones past the buffer
	for {
		c, err := tunnel.ReadControl(br)
		if err != nil {
			break
		}
		if c.Type == tunnel.CtlAbort {
			go s.aborts.Abort(c.Stream) // a close can wait on a busy session: not on this reader
			continue
		}
		if r.cfg.OnControl != nil && c.Type != tunnel.CtlPong {
			r.cfg.OnControl(s, c)
		}
	}
	s.Close()
	s.aborts.AbortAll() // their connections were lost, not ended
	<-s.sess.CloseChan()
	r.mu.Lock()
	current := r.sessions[s.AgentID] == s
	if current {
		delete(r.sessions, s.AgentID)
	}
	r.mu.Unlock()
	r.log.Info("agent disconnected", "agent", s.AgentID)
	if current && r.cfg.OnEvent != nil {
		r.cfg.OnEvent(config.AgentEvent{AgentID: s.AgentID, Event: config.EventDisconnected, IP: s.RemoteIP, At: time.Now().UTC()})
	}
}

// acceptAgentStreams serves streams the agent opens: reach requests to
// another agent's service of the same workspace. They count against the
// agent's stream cap like the streams the edge opens: over it, a stream is
// closed at once, so an agent cannot make the edge hold unbounded streams
// and goroutines.
func (r *Registry) acceptAgentStreams(s *Session) {
	for {
		st, err := s.sess.AcceptStream()
		if err != nil {
			return
		}
		if !s.acquire() {
			st.Close()
			continue
		}
		go func() {
			defer s.release()
			r.serveReach(s, st)
		}()
	}
}

// serveReach connects a reaching agent's stream to the service's agent.
func (r *Registry) serveReach(from *Session, st *smux.Stream) {
	refuse := func(code byte, msg string) {
		_ = tunnel.WriteResult(st, tunnel.Result{Status: code, Message: msg})
		st.Close()
	}
	_ = st.SetReadDeadline(time.Now().Add(tunnel.HandshakeTimeout))
	h, err := tunnel.ReadStreamHeader(st)
	_ = st.SetReadDeadline(time.Time{})
	if err != nil || h.Kind != tunnel.KindReach {
		refuse(tunnel.ReplyRefused, "only reach streams may be opened by agents")
		return
	}
	svc, ok := r.cfg.Table().Service(h.ServiceID.String())
	if !ok || svc.WorkspaceID != from.WorkspaceID {
		// Another workspace's service is indistinguishable from none.
		refuse(tunnel.ReplyUnknownService, "no such service")
		return
	}
	if svc.Paused {
		refuse(tunnel.ReplyRefused, "the tunnel is paused")
		return
	}
	if r.draining.Load() {
		refuse(tunnel.ReplyRefused, "the edge is shutting down")
		return
	}
	to, ok := r.Get(svc.AgentID)
	if !ok {
		refuse(tunnel.ReplyDialFailed, "the service's agent is offline")
		return
	}
	// The reacher's stream is registered for aborts, and tracked (so that a
	// pause cuts it), before anything can abort or pause it.
	// Pipe copies the service's bytes into it from pooled buffers: its
	// failed writes settle (tunnel.SettledStream), as every stream's do.
	var reacher net.Conn = from.aborts.Wrap(&tunnel.SettledStream{Stream: st, Sess: from.sess, Conn: from.conn}, st.ID())
	if r.cfg.TrackConn != nil {
		var done func()
		reacher, done = r.cfg.TrackConn(svc.ID, from.RemoteIP, reacher)
		defer done()
	}
	conn, err := to.OpenStream(tunnel.KindTCP, h.ServiceID, from.RemoteIP)
	if err != nil {
		_ = tunnel.WriteResult(st, tunnel.Result{Status: tunnel.ReplyDialFailed, Message: "the service could not be reached"})
		reacher.Close()
		return
	}
	if err := tunnel.WriteResult(st, tunnel.Result{Status: tunnel.ReplyOK}); err != nil {
		conn.Close()
		reacher.Close()
		return
	}
	// Either agent's teardown reaches the other (tunnel.Pipe resets both).
	tunnel.Pipe(reacher, conn)
}

// PushConfig sends the agent its services and the edges to connect to from
// the current table, unless they are what it was last sent. It reads the
// table under the push lock, so pushes racing each other always end with
// the latest state.
func (s *Session) PushConfig() {
	s.pushMu.Lock()
	defer s.pushMu.Unlock()
	t := s.reg.cfg.Table()
	svcs := t.AgentServices(s.AgentID)
	list := make([]tunnel.Service, 0, len(svcs))
	for _, sv := range svcs {
		list = append(list, tunnel.Service{ID: sv.ID, Name: sv.Name, Protocol: sv.Protocol, TargetHost: sv.TargetHost, TargetPort: sv.TargetPort})
	}
	sort.Slice(list, func(i, j int) bool { return list[i].ID < list[j].ID })
	var edges []string
	for _, e := range t.Edges() {
		if e.TunnelAddr != "" {
			edges = append(edges, e.TunnelAddr)
		}
	}
	sort.Strings(edges)
	if s.lastServices != nil && slices.Equal(list, s.lastServices) && slices.Equal(edges, s.lastEdges) {
		return
	}
	if s.Control(&tunnel.Control{Type: tunnel.CtlServices, Services: list}) != nil {
		return
	}
	if len(edges) > 0 && s.Control(&tunnel.Control{Type: tunnel.CtlEdges, Edges: edges}) != nil {
		return
	}
	s.lastServices, s.lastEdges = list, edges
}

// Control writes one control frame to the agent.
func (s *Session) Control(c *tunnel.Control) error {
	s.ctlMu.Lock()
	defer s.ctlMu.Unlock()
	if s.ctl == nil {
		return ErrOffline
	}
	_ = s.ctl.SetWriteDeadline(time.Now().Add(5 * time.Second))
	err := tunnel.WriteControl(s.ctl, c)
	if err != nil {
		s.Close()
	}
	return err
}

// replacedGrace is how long a replaced session stays open for its agent to
// read why (an agent that reads it closes the session at once; one that does
// not, an older release, is closed after the grace).
const replacedGrace = time.Second

// retire ends old, which a newer session of its agent from ip replaced. The
// agent is told first (tunnel.CtlReplaced): if it still reads this session, it
// is a second process running the same identity, and it stops rather than
// reconnecting to displace the newer session in turn. Usually the old session
// is already dead on the agent's side (the agent reconnected because it lost
// it), so this runs in the background: the write can wait for its deadline.
// Registry.Close closes retiring sessions at once.
func (r *Registry) retire(old *Session, ip string) {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		old.Close()
		return
	}
	r.retiring[old] = struct{}{}
	r.mu.Unlock()
	go func() {
		reason := "a newer session of this agent connected from " + ip + ": another process runs the same agent identity"
		if old.Control(&tunnel.Control{Type: tunnel.CtlReplaced, Reason: reason}) == nil {
			select {
			case <-old.Done():
			case <-time.After(replacedGrace):
			}
		}
		old.Close()
		r.mu.Lock()
		delete(r.retiring, old)
		r.mu.Unlock()
	}()
}

// Close ends the session.
func (s *Session) Close() { s.closeMu.Do(func() { s.sess.Close() }) }

// Done is closed when the session ends.
func (s *Session) Done() <-chan struct{} { return s.sess.CloseChan() }

// Streams returns the number of open streams (the slots taken).
func (s *Session) Streams() int64 { return int64(len(s.sem)) }

// acquire takes a stream slot (MaxStreams per session) if one is free.
func (s *Session) acquire() bool {
	select {
	case s.sem <- struct{}{}:
		return true
	default:
		s.reg.streamsRefused.Add(1)
		if !s.capWarned.Swap(true) {
			s.reg.log.Warn("agent at its stream cap: further streams are refused until some end",
				"agent", s.AgentID, "cap", cap(s.sem))
		}
		return false
	}
}

func (s *Session) release() { <-s.sem }

// OpenStream opens a stream of kind to serviceID and waits for the agent's
// reply. The returned conn releases the stream slot when closed.
func (s *Session) OpenStream(kind byte, serviceID uuid.UUID, clientIP string) (net.Conn, error) {
	if !s.acquire() {
		return nil, ErrOverloaded
	}
	st, err := s.sess.OpenStream()
	if err != nil {
		s.release()
		return nil, ErrOffline
	}
	var c net.Conn = &Stream{SettledStream: tunnel.SettledStream{Stream: st, Sess: s.sess, Conn: s.conn}, s: s}
	if kind == tunnel.KindTCP {
		// Registered before the agent can answer: its abort may follow
		// its reply at once.
		c = s.aborts.Wrap(c, st.ID())
	}
	var buf [64]byte
	hdr, err := tunnel.AppendStreamHeader(buf[:0], &tunnel.StreamHeader{Kind: kind, ServiceID: serviceID, ClientIP: clientIP})
	if err == nil {
		_, err = st.Write(hdr)
	}
	if err != nil {
		c.Close()
		return nil, ErrOffline
	}
	_ = st.SetReadDeadline(time.Now().Add(15 * time.Second))
	res, err := tunnel.ReadResult(st)
	_ = st.SetReadDeadline(time.Time{})
	if err != nil {
		c.Close()
		return nil, ErrOffline
	}
	if res.Status != tunnel.ReplyOK {
		c.Close()
		return nil, fmt.Errorf("%w: %s", ErrRefused, res.Message)
	}
	return c, nil
}

// Stream is a proxied stream; Close releases its slot once. Its failed
// writes settle (tunnel.SettledStream): the proxy's pooled buffers are
// reused at once.
type Stream struct {
	tunnel.SettledStream
	s    *Session
	once sync.Once
}

// Close closes the stream and releases its slot.
func (c *Stream) Close() error {
	err := c.Stream.Close()
	c.once.Do(c.s.release)
	return err
}

// Streams returns the open streams over every session.
func (r *Registry) Streams() int64 {
	r.mu.RLock()
	defer r.mu.RUnlock()
	var n int64
	for _, s := range r.sessions {
		n += s.Streams()
	}
	return n
}

// Get returns the live session of an agent.
func (r *Registry) Get(agentID string) (*Session, bool) {
	r.mu.RLock()
	s, ok := r.sessions[agentID]
	r.mu.RUnlock()
	return s, ok
}

// Connected lists the agents with a live session.
func (r *Registry) Connected() []string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	out := make([]string, 0, len(r.sessions))
	for id := range r.sessions {
		out = append(out, id)
	}
	sort.Strings(out)
	return out
}

// Refresh applies a new routing table to live sessions: sessions of agents
// that were deleted, revoked, expired or whose token changed are closed, and
// every agent gets its current service list.
func (r *Registry) Refresh(t *routes.Table) {
	r.mu.RLock()
	list := make([]*Session, 0, len(r.sessions))
	for _, s := range r.sessions {
		list = append(list, s)
	}
	r.mu.RUnlock()
	now := time.Now()
	for _, s := range list {
		ag, ok := t.Agent(s.AgentID)
		if !ok || ag.Revoked || ag.Key != s.key || ag.Pub != s.pub || (!ag.ExpiresAt.IsZero() && now.After(ag.ExpiresAt)) {
			r.log.Info("closing agent session: credentials no longer valid", "agent", s.AgentID)
			s.Close()
			continue
		}
		// A slow agent never holds up the config swap; swaps arriving while a
		// push is queued share it (it reads the table when it runs).
		if s.pushQueued.CompareAndSwap(false, true) {
			go func() {
				s.pushQueued.Store(false)
				s.PushConfig()
			}()
		}
	}
}

// CloseExpired ends the sessions of agents whose token has expired by now
// (Refresh sees an expiry only when a new table comes; the edge calls this
// on every report tick). The agent, calling again, is refused with
// tunnel.ResultExpired. It returns how many sessions it closed.
func (r *Registry) CloseExpired(t *routes.Table, now time.Time) int {
	r.mu.RLock()
	var list []*Session
	for _, s := range r.sessions {
		if ag, ok := t.Agent(s.AgentID); ok && !ag.ExpiresAt.IsZero() && now.After(ag.ExpiresAt) {
			list = append(list, s)
		}
	}
	r.mu.RUnlock()
	for _, s := range list {
		r.log.Info("closing agent session: its token expired", "agent", s.AgentID)
		s.Close()
	}
	return len(list)
}

// Drain refuses new reach streams (the edge is shutting down; its open
// connections finish first).
func (r *Registry) Drain() { r.draining.Store(true) }

// Close stops accepting sessions and closes every live one.
func (r *Registry) Close() {
	r.mu.Lock()
	r.closed = true
	for c := range r.conns {
		c.Close()
	}
	list := make([]*Session, 0, len(r.sessions)+len(r.retiring))
	for _, s := range r.sessions {
		list = append(list, s)
	}
	for s := range r.retiring {
		list = append(list, s)
	}
	r.mu.Unlock()
	for _, s := range list {
		s.Close()
	}
	r.wg.Wait()
}
