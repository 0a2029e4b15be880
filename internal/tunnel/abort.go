package tunnel

import (
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Aborts tell apart the two ends a TCP connection carried by a stream can
// have. smux has one: a FIN, which a half-close sends too. A connection torn
// down (a reset, a client killed, a tunnel paused) must not look like a
// clean end: the side that still talks to its peer would half-close it and
// go on writing into a stream nobody reads (a database backend held until
// a timeout), and its client would take a truncated transfer for a whole
// one. So the side that sees the teardown says so on the session's control
// stream (CtlAbort with the stream's id) and the other side resets its own
// connection (a TCP RST): both ends learn at once, as with a plain TCP
// connection. Peers that do not know CtlAbort ignore it.

// Aborter is a connection Pipe can reset rather than close.
type Aborter interface{ Abort() }

// Reset ends c as a torn-down connection: an Aborter is aborted, a TCP
// connection is reset (RST: its peer gets an error, not an end of file), any
// other connection is closed.
func Reset(c net.Conn) {
	switch c := c.(type) {
	case Aborter:
		c.Abort()
	case *net.TCPConn:
		_ = c.SetLinger(0)
		_ = c.Close()
	default:
		_ = c.Close()
	}
}

// ErrAborted is what reads of an AbortConn return once the peer said the
// connection was torn down.
var ErrAborted = errors.New("tunnel: the connection was torn down at the other end")

// AbortConn is a stream whose teardown is told to the peer (CtlAbort) and
// whose peer's teardown resets it (Aborts.Abort).
type AbortConn struct {
	net.Conn
	id      uint32
	reg     *Aborts
	once    sync.Once    // the teardown was told, or heard
	heard   atomic.Bool  // the peer told it (peerAborted)
	waiting atomic.Bool  // told: the peer closes the stream (Abort)
	reads   atomic.Int32 // Reads in progress (drain waits for them)
	closed  sync.Once

	partnerMu sync.Mutex
	partner   net.Conn // the connection Pipe copies to and from (SetPartner)
}

// SetPartner names the connection p that c is piped to (Pipe does it): the
// peer's teardown resets p at once. Resetting it only when a copy next
// read c would never happen while the copy is blocked writing to p (a
// visitor or target that stopped reading): p, and the copies, would be
// held for ever. p is reset at once if the peer's teardown came first.
func (c *AbortConn) SetPartner(p net.Conn) {
	c.partnerMu.Lock()
	c.partner = p
	c.partnerMu.Unlock()
	if c.heard.Load() {
		Reset(p)
	}
}

// abortConnOf returns the AbortConn c is, or wraps (a wrapper names what
// it wraps with NetConn, as *tls.Conn does), or nil.
func abortConnOf(c net.Conn) *AbortConn {
	for i := 0; i < 8 && c != nil; i++ {
		switch x := c.(type) {
		case *AbortConn:
			return x
		case interface{ NetConn() net.Conn }:
			c = x.NetConn()
		default:
			return nil
		}
	}
	return nil
}

// abortGrace bounds how long an aborted stream waits for the peer to close
// it (a variable for tests).
var abortGrace = 10 * time.Second

// Abort tells the peer the connection was torn down, once. The stream is
// not closed at once: a FIN sent now could reach the peer before the abort
// (they travel on different streams) and read as a clean end. Local reads
// and writes fail from now on; what still arrives is read and dropped
// (freeing the session's shared receive window) until the peer, having
// read the abort, closes the stream, about a round trip later; then (or
// after abortGrace at the latest) the stream is closed and its slot freed.
func (c *AbortConn) Abort() {
	c.once.Do(func() {
		c.waiting.Store(true)
		_ = c.Conn.SetDeadline(time.Unix(1, 0)) // wakes the copies blocked on it
		go func() {
			// Off the caller's path: a busy control stream must not hold
			// up the copy that found the teardown.
			if c.reg.tell(&Control{Type: CtlAbort, Stream: c.id}) != nil {
				_ = c.closeNow()
				return
			}
			c.drain()
		}()
	})
	_ = c.Close()
}

// onlyReader hides a stream's WriteTo, so that a drain reads it through
// io.Discard's buffer.
type onlyReader struct{ io.Reader }

// drain reads and drops what the stream still carries until the peer
// closes it (or abortGrace passes), then closes it.
func (c *AbortConn) drain() {
	defer c.closeNow()
	// The copies woken by the past deadline leave first: a new deadline
	// set while one is still inside Read would put it back to sleep.
	for i := 0; c.reads.Load() > 0 && i < 1000; i++ {
		time.Sleep(time.Millisecond)
	}
	_ = c.Conn.SetReadDeadline(time.Now().Add(abortGrace))
	_, _ = io.Copy(io.Discard, onlyReader{c.Conn})
}

// Read reads the stream; after the peer's abort, or once the session's
// connection is lost, it fails with ErrAborted rather than an end of file.
func (c *AbortConn) Read(p []byte) (int, error) {
	if c.waiting.Load() {
		return 0, ErrAborted // Abort drains the stream
	}
	c.reads.Add(1)
	n, err := c.Conn.Read(p)
	c.reads.Add(-1)
	if err != nil && (c.heard.Load() || err == io.EOF && c.reg.lost != nil && c.reg.lost()) {
		return n, ErrAborted
	}
	return n, err
}

// Write writes to the stream; after Abort it fails.
func (c *AbortConn) Write(p []byte) (int, error) {
	if c.waiting.Load() {
		return 0, ErrAborted
	}
	return c.Conn.Write(p)
}

// Close closes the stream and forgets it (after an Abort, once the peer
// had time to read it).
func (c *AbortConn) Close() error {
	if c.waiting.Load() {
		return nil
	}
	return c.closeNow()
}

func (c *AbortConn) closeNow() error {
	var err error
	c.closed.Do(func() {
		c.reg.remove(c.id, c)
		err = c.Conn.Close()
	})
	return err
}

// CloseWrite half-closes the stream.
func (c *AbortConn) CloseWrite() error {
	if cw, ok := c.Conn.(closeWriter); ok {
		return cw.CloseWrite()
	}
	return c.Close()
}

// peerAborted is the peer's CtlAbort (or the session's loss): nothing is
// told back, and the partner connection (SetPartner) is reset at once, not
// when a copy next reads the stream, which a copy blocked writing to the
// partner never does.
func (c *AbortConn) peerAborted() {
	c.once.Do(func() { c.heard.Store(true) })
	_ = c.closeNow()
	if !c.heard.Load() {
		return // torn down here first: Pipe resets the partner
	}
	c.partnerMu.Lock()
	p := c.partner
	c.partnerMu.Unlock()
	if p != nil {
		Reset(p)
	}
}

// Aborts are the abortable streams of one session, by stream id.
type Aborts struct {
	tell func(*Control) error // writes a control frame to the peer
	lost func() bool          // the session's connection failed (ReadFailed); may be nil
	mu   sync.Mutex
	m    map[uint32]*AbortConn
}

// Init gives the session's means to its streams, before the first Wrap:
// tell writes a control frame to the peer; lost reports whether the
// session's connection failed.
func (a *Aborts) Init(tell func(*Control) error, lost func() bool) {
	a.tell, a.lost = tell, lost
}

// Wrap makes st (stream id) abortable.
func (a *Aborts) Wrap(st net.Conn, id uint32) *AbortConn {
	c := &AbortConn{Conn: st, id: id, reg: a}
	a.mu.Lock()
	if a.m == nil {
		a.m = map[uint32]*AbortConn{}
	}
	a.m[id] = c
	a.mu.Unlock()
	return c
}

// Abort applies the peer's CtlAbort for stream id.
func (a *Aborts) Abort(id uint32) {
	a.mu.Lock()
	c := a.m[id]
	a.mu.Unlock()
	if c != nil {
		c.peerAborted()
	}
}

// AbortAll resets every stream of a session that ended: its connections
// were lost, not ended.
func (a *Aborts) AbortAll() {
	a.mu.Lock()
	list := make([]*AbortConn, 0, len(a.m))
	for _, c := range a.m {
		list = append(list, c)
	}
	a.mu.Unlock()
	for _, c := range list {
		c.peerAborted()
	}
}

func (a *Aborts) remove(id uint32, c *AbortConn) {
	a.mu.Lock()
	if a.m[id] == c {
		delete(a.m, id)
	}
	a.mu.Unlock()
}
