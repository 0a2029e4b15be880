package agent

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/privateconnect/pc/internal/tunnel"
	"github.com/xtaci/smux"
)

// edgeConn is one live session with an edge.
type edgeConn struct {
	addr     string
	edgeID   string
	sess     *smux.Session
	once     sync.Once
	replaced atomic.Pointer[string] // the edge's reason, when it said a newer session replaced this one

	// aborts are the session's TCP streams, whose teardown each side tells
	// the other (tunnel.CtlAbort) on the control stream (ctl, once it is
	// up); the failure of the connection under smux ends them as torn down.
	aborts tunnel.Aborts
	ctl    atomic.Pointer[func(*tunnel.Control) error]
	conn   net.Conn // under sess (tunnel.Buffered)
}

// settled is st as the agent copies a service's bytes into it from pooled
// buffers: a Write that failed because the session died returns only once
// the session no longer reads them (tunnel.SettledStream).
func (ec *edgeConn) settled(st *smux.Stream) *tunnel.SettledStream {
	return &tunnel.SettledStream{Stream: st, Sess: ec.sess, Conn: ec.conn}
}

// tell writes a control frame to the edge.
func (e *edgeConn) tell(c *tunnel.Control) error {
	if w := e.ctl.Load(); w != nil {
		return (*w)(c)
	}
	return errNoControl
}

var errNoControl = errors.New("agent: no control stream yet")

func (e *edgeConn) close() { e.once.Do(func() { e.sess.Close() }) }

// session dials addr, authenticates, and serves streams until the session
// ends.
func (a *Agent) session(ctx context.Context, addr string) error {
	conn, err := a.dial(ctx, addr)
	if err != nil {
		return fmt.Errorf("dial %s: %w", addr, err)
	}
	edgeID, br, err := a.handshake(conn, addr)
	if err != nil {
		conn.Close()
		return err
	}
	defer a.releaseEdge(edgeID, addr)
	// The edge may start smux right behind its result: keep what the
	// handshake reader already buffered.
	var sc net.Conn = conn
	if br.Buffered() > 0 {
		sc = &bufferedConn{Conn: conn, r: br}
	}
	bc := tunnel.Buffered(sc)
	sess, err := smux.Server(bc, tunnel.SmuxConfig())
	if err != nil {
		conn.Close()
		return fmt.Errorf("smux: %w", err)
	}
	ec := &edgeConn{addr: addr, edgeID: edgeID, sess: sess, conn: bc}
	ec.aborts.Init(ec.tell, func() bool { return tunnel.ReadFailed(bc) })
	a.mu.Lock()
	if old := a.sessions[addr]; old != nil {
		old.close()
	}
	a.sessions[addr] = ec
	a.held[addr] = true
	delete(a.definitive, addr)
	delete(a.badCreds, addr)
	a.reconcileUnlock() // a listed edge it now holds a session with joins the edge list
	a.log.Info("connected to edge", "edge", addr, "edgeId", edgeID)
	a.emit(Event{Kind: EventConnected, Edge: addr, EdgeID: edgeID})

	stop := context.AfterFunc(ctx, ec.close)
	defer stop()
	for {
		st, err := sess.AcceptStream()
		if err != nil {
			break
		}
		go a.serveStream(ec, st)
	}
	ec.close()
	ec.aborts.AbortAll() // their connections were lost, not ended
	a.sessionEnded(ec)
	a.log.Info("disconnected from edge", "edge", addr)
	a.emit(Event{Kind: EventDisconnected, Edge: addr, EdgeID: edgeID})
	if reason := ec.replaced.Load(); reason != nil {
		return &ReplacedError{Edge: addr, Reason: *reason}
	}
	return nil
}

// errAlias: the edge behind an address is already connected through
// another address (an alias and its registered tunnelAddr, say). A second
// session would replace the first on the edge, which would replace it
// back, failing requests at each swap.
var errAlias = errors.New("agent: edge already connected through another address")

// claimEdge makes addr the one address holding a session to edgeID; false
// when another address holds it.
func (a *Agent) claimEdge(edgeID, addr string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if owner, ok := a.edgeOwner[edgeID]; ok && owner != addr {
		return false
	}
	a.edgeOwner[edgeID] = addr
	return true
}

func (a *Agent) releaseEdge(edgeID, addr string) {
	a.mu.Lock()
	if a.edgeOwner[edgeID] == addr {
		delete(a.edgeOwner, edgeID)
	}
	a.mu.Unlock()
}

// handshake runs the client side of the tunnel handshake. It stops before
// authenticating when the edge is already held through another address.
func (a *Agent) handshake(conn net.Conn, addr string) (string, *bufio.Reader, error) {
	_ = conn.SetDeadline(time.Now().Add(tunnel.HandshakeTimeout))
	defer conn.SetDeadline(time.Time{})
	br := bufio.NewReaderSize(conn, 256)
	sh, err := tunnel.ReadServerHello(br)
	if err != nil {
		var ne net.Error
		if !strings.HasPrefix(addr, "tls://") && errors.As(err, &ne) && ne.Timeout() {
			// A TLS listener waits for a ClientHello as this side waits
			// for the edge's hello.
			return "", nil, fmt.Errorf("handshake: no answer from the edge in %v: if it serves TLS, use tls://%s (with --ca-file or --pin-sha256): %w",
				tunnel.HandshakeTimeout, strings.TrimPrefix(addr, "tcp://"), err)
		}
		return "", nil, fmt.Errorf("handshake: %w", err)
	}
	if !a.claimEdge(sh.EdgeID, addr) {
		return "", nil, errAlias
	}
	ok := false
	defer func() {
		if !ok {
			a.releaseEdge(sh.EdgeID, addr)
		}
	}()
	v := byte(tunnel.Version)
	if sh.Version < v {
		v = sh.Version
	}
	ch := tunnel.NewClientHello(v, a.id, a.cfg.Token, sh, a.cfg.Software)
	if err := tunnel.WriteClientHello(conn, ch); err != nil {
		return "", nil, fmt.Errorf("handshake: %w", err)
	}
	res, err := tunnel.ReadResult(br)
	if err != nil {
		return "", nil, fmt.Errorf("handshake: %w", err)
	}
	if res.Status != tunnel.ResultOK {
		return "", nil, &RejectedError{Status: res.Status, Message: res.Message}
	}
	ok = true
	return sh.EdgeID, br, nil
}

// serveStream handles one stream opened by the edge.
func (a *Agent) serveStream(ec *edgeConn, st *smux.Stream) {
	_ = st.SetReadDeadline(time.Now().Add(tunnel.HandshakeTimeout))
	br := bufio.NewReaderSize(st, 128)
	h, err := tunnel.ReadStreamHeader(br)
	_ = st.SetReadDeadline(time.Time{})
	if err != nil {
		a.log.Debug("bad stream header", "err", err)
		st.Close()
		return
	}
	switch h.Kind {
	case tunnel.KindControl:
		a.serveControl(ec, st, br)
	case tunnel.KindHTTP, tunnel.KindTCP:
		a.serveProxy(ec, st, br, h)
	default:
		_ = tunnel.WriteResult(st, tunnel.Result{Status: tunnel.ReplyRefused, Message: "stream kind not served by agents"})
		st.Close()
	}
}

// serveProxy dials the service's target and pipes bytes both ways.
func (a *Agent) serveProxy(ec *edgeConn, st *smux.Stream, br *bufio.Reader, h tunnel.StreamHeader) {
	// A write to the edge that makes no progress for a while means nobody
	// reads the stream any more: give up rather than hold the target. Two
	// minutes for HTTP; ten for TCP, whose client may pause reading (a
	// pager) and whose teardown comes as an abort from edges that send one
	// (this is for those that do not).
	stall := 2 * time.Minute
	if h.Kind == tunnel.KindTCP {
		stall = 10 * time.Minute
	}
	var src net.Conn = tunnel.StallTimeout(ec.settled(st), stall)
	if br.Buffered() > 0 {
		src = &bufferedConn{Conn: src, r: br}
	}
	if h.Kind == tunnel.KindTCP {
		// Registered before the edge learns the stream is open: its abort
		// may follow the reply at once.
		src = ec.aborts.Wrap(src, st.ID())
	}
	refuse := func(code byte, msg string) {
		_ = tunnel.WriteResult(st, tunnel.Result{Status: code, Message: msg})
		src.Close()
	}
	t, ok := a.lookup(h.ServiceID, 3*time.Second)
	if ok && !a.targetAllowed(h.ServiceID, t.addr) {
		a.log.Warn("refusing a target outside AllowedTargets", "service", t.name, "target", t.addr)
		refuse(tunnel.ReplyRefused, "target not allowed by this agent")
		return
	}
	if !ok {
		refuse(tunnel.ReplyUnknownService, "service not served by this agent")
		return
	}
	conn, err := net.DialTimeout("tcp", t.addr, a.cfg.DialTimeout)
	if err != nil {
		a.counters.dialFails.Add(1)
		a.log.Warn("dial target failed", "service", t.name, "target", t.addr, "err", err)
		refuse(tunnel.ReplyDialFailed, "target unreachable")
		return
	}
	if tc, ok := conn.(*net.TCPConn); ok {
		_ = tc.SetNoDelay(true)
	}
	if t.protocol == "https" && h.Kind == tunnel.KindHTTP {
		tc := tls.Client(conn, &tls.Config{ServerName: t.host, InsecureSkipVerify: !a.cfg.UpstreamTLSVerify}) //nolint:gosec // documented option
		conn = tc
	}
	if err := tunnel.WriteResult(st, tunnel.Result{Status: tunnel.ReplyOK}); err != nil {
		conn.Close()
		src.Close()
		return
	}
	a.counters.streams.Add(1)
	a.counters.served.Add(1)
	var in, out int64
	// A target that stops reading is reset after TargetWriteTimeout (its
	// stream aborted and drained): it would hold its share of the
	// session's receive buffer, and a few would stall the session.
	conn = tunnel.StallTimeout(conn, a.cfg.TargetWriteTimeout)
	if h.Kind == tunnel.KindHTTP {
		// HTTP streams carry no half-close: the edge closing the stream
		// means the visitor is gone, so drop the service connection too
		// (an endless SSE response stops at once).
		in, out = tunnel.PipeClose(src, conn)
	} else {
		in, out = tunnel.Pipe(src, conn)
	}
	a.counters.streams.Add(-1)
	a.counters.bytesIn.Add(uint64(in))
	a.counters.bytesOut.Add(uint64(out))
}

// targetAllowed applies Config.AllowedTargets and Config.VerifyTarget.
func (a *Agent) targetAllowed(id uuid.UUID, addr string) bool {
	if len(a.cfg.AllowedTargets) == 0 && a.cfg.VerifyTarget == nil {
		return true
	}
	for _, t := range a.cfg.AllowedTargets {
		if t == addr {
			return true
		}
	}
	if a.cfg.VerifyTarget == nil {
		return false
	}
	serviceID := id.String() // only here: most streams are decided above without allocating
	key := serviceID + " " + addr
	if _, ok := a.verified.Load(key); ok {
		return true
	}
	if a.recentlyRefused(key) {
		return false
	}
	ctx, cancel := context.WithTimeout(a.runCtx, 5*time.Second)
	defer cancel()
	if !a.cfg.VerifyTarget(ctx, serviceID, addr) {
		a.rememberRefusal(key)
		return false
	}
	a.verified.Store(key, true)
	return true
}

// RefusalTTL is how long the agent remembers that VerifyTarget refused a
// target.
const RefusalTTL = 10 * time.Second

// maxRefusals bounds the refusals remembered (targets come from the edges).
const maxRefusals = 1024

func (a *Agent) recentlyRefused(key string) bool {
	a.refusedMu.Lock()
	defer a.refusedMu.Unlock()
	exp, ok := a.refused[key]
	return ok && time.Now().Before(exp)
}

func (a *Agent) rememberRefusal(key string) {
	now := time.Now()
	a.refusedMu.Lock()
	defer a.refusedMu.Unlock()
	if len(a.refused) >= maxRefusals {
		for k, exp := range a.refused {
			if !now.Before(exp) {
				delete(a.refused, k)
			}
		}
		if len(a.refused) >= maxRefusals {
			clear(a.refused)
		}
	}
	if a.refused == nil {
		a.refused = map[string]time.Time{}
	}
	a.refused[key] = now.Add(RefusalTTL)
}

// lookup finds a service target, waiting up to wait for the edge to list it
// (a stream for a just-registered service can overtake the control message).
func (a *Agent) lookup(id uuid.UUID, wait time.Duration) (target, bool) {
	deadline := time.Now().Add(wait)
	a.mu.Lock()
	defer a.mu.Unlock()
	for {
		if t, ok := a.services[id]; ok {
			return t, true
		}
		if time.Now().After(deadline) || a.runCtx == nil || a.runCtx.Err() != nil {
			return target{}, false
		}
		timer := time.AfterFunc(time.Until(deadline), a.svcCond.Broadcast)
		a.svcCond.Wait()
		timer.Stop()
	}
}

// serveControl reads control frames from the edge.
func (a *Agent) serveControl(ec *edgeConn, st *smux.Stream, br *bufio.Reader) {
	defer st.Close()
	var wmu sync.Mutex
	write := func(c *tunnel.Control) error {
		wmu.Lock()
		defer wmu.Unlock()
		_ = st.SetWriteDeadline(time.Now().Add(10 * time.Second))
		return tunnel.WriteControl(st, c)
	}
	ec.ctl.Store(&write)
	for {
		c, err := tunnel.ReadControl(br)
		if err != nil {
			return
		}
		switch c.Type {
		case tunnel.CtlServices:
			a.setServices(c.Services)
		case tunnel.CtlEdges:
			a.setEdges(ec, c.Edges)
		case tunnel.CtlPing:
			if err := write(&tunnel.Control{Type: tunnel.CtlPong, Seq: c.Seq}); err != nil {
				return
			}
		case tunnel.CtlCommand:
			go a.runCommand(ec, write, c)
		case tunnel.CtlReplaced:
			// This process is not the one the edge now holds (see the
			// tunnel package's doc): end the session and stop.
			reason := c.Reason
			ec.replaced.Store(&reason)
			ec.close()
			return
		case tunnel.CtlAbort:
			go ec.aborts.Abort(c.Stream) // a close can wait on a busy session: not on this reader
		case tunnel.CtlMessage:
			var m Message
			if json.Unmarshal(c.Payload, &m) == nil && a.cfg.OnMessage != nil {
				a.cfg.OnMessage(m)
			}
		default:
			a.log.Debug("ignoring control message", "type", c.Type)
		}
	}
}

// setServices replaces the table of targets this agent may dial.
func (a *Agent) setServices(list []tunnel.Service) {
	m := make(map[uuid.UUID]target, len(list))
	for _, s := range list {
		id, err := uuid.Parse(s.ID)
		if err != nil || s.TargetPort <= 0 || s.TargetPort > 65535 {
			continue
		}
		m[id] = target{name: s.Name, protocol: s.Protocol, host: s.TargetHost,
			addr: net.JoinHostPort(s.TargetHost, strconv.Itoa(s.TargetPort))}
	}
	a.mu.Lock()
	a.services = m
	a.svcCond.Broadcast()
	a.mu.Unlock()
}

// bufferedConn drains bytes already read into a bufio.Reader first.
type bufferedConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *bufferedConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// CloseWrite forwards half-close to the underlying stream.
func (c *bufferedConn) CloseWrite() error { return tunnel.CloseWrite(c.Conn) }
