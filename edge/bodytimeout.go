package edge

import (
	"errors"
	"io"
	"net"
	"os"
	"time"

	"github.com/privateconnect/pc/internal/connset"
	"github.com/privateconnect/pc/internal/tunnel"
)

// Request bodies are timed by progress: a read of a body that gets no byte
// for BodyTimeout fails (408 when the answer has not started, the connection
// closed either way), however long the whole upload takes.
//
// fasthttp has one read deadline per phase, fixed when the phase starts: its
// ReadTimeout (here the head's), then the one a HeaderReceived hook's
// RequestConfig sets once the head is in, which it keeps for the whole body:
// the first 8 KiB read before the handler runs, the rest as the handler
// streams it, and what the handler left unread (up to 256 KiB) drained after
// the answer. A deadline that moves with each byte has to be set under
// fasthttp, before each read: bodyConn does it on the accepted TCP
// connection, under the PROXY protocol and TLS (whose deadlines reach it).
//
// It learns that a body is being read from fasthttp's own deadline calls:
// readBody asks for a deadline that never comes, past bodyMark, which
// bodyConn takes for "the head is in" rather than for a deadline; from then
// on each Read first sets its deadline to BodyTimeout from now. Any other
// deadline ends that: fasthttp sets the idle timeout before it waits for the
// next request and clears every deadline (SetDeadline) before it hands a
// WebSocket's connection to its hijack handler, so neither the keep-alive
// wait nor an upgraded connection is timed as a body. While the handler
// waits for the service's answer nothing reads the visitor's connection:
// the deadline left armed there times nothing (the service has
// UpstreamTimeout).

// bodyMark is where readBody's mark starts: a deadline past it (146 years
// from the start) is no deadline but the start of a body.
var bodyMark = time.Now().Add(noDeadline / 2)

// bodyListener wraps the share listener's TCP connections in bodyConn,
// and holds them until they close: fasthttp leaves the connections still
// open when a shutdown's drain times out serving requests (it resets its
// stop flag), so the edge closes them itself (conns.CloseAll).
type bodyListener struct {
	net.Listener
	stall   time.Duration       // Config.BodyTimeout
	stalled func(peer net.Addr) // called once per body that stalls
	write   time.Duration       // Config.VisitorWriteTimeout (0: none)
	conns   connset.Set[*bodyConn]
}

func (l *bodyListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	bc := newBodyConn(c, l)
	if !l.conns.Add(bc) { // the drain is over
		c.Close()
		return nil, net.ErrClosed
	}
	return bc, nil
}

func newBodyConn(c net.Conn, l *bodyListener) *bodyConn {
	return &bodyConn{Conn: c, l: l, write: tunnel.WriteTimer{D: l.write, Every: l.write / 2}}
}

// bodyConn is a share listener's TCP connection whose reads of a request
// body fail after BodyTimeout without a byte. fasthttp's connection
// goroutine is its only user until a hijack, which clears the body state
// first (SetDeadline) and starts the hijack handler's goroutine after.
type bodyConn struct {
	net.Conn
	l    *bodyListener
	body bool // a body is being read: each Read sets its deadline first
	// write moves the write deadline: VisitorWriteTimeout from now when the
	// one set last has half of it left, or after progress.
	write tunnel.WriteTimer
}

// Close closes the connection and forgets it.
func (c *bodyConn) Close() error {
	c.l.conns.Remove(c)
	return c.Conn.Close()
}

// Write: writes to the visitor are timed by progress too. A write that
// moves no byte for VisitorWriteTimeout fails, and fasthttp (or the
// WebSocket relay) closes the connection. A visitor that stops reading an
// answer would otherwise hold its stream's window of the agent session's
// shared receive buffer for as long as it liked, and a few such visitors
// stop every stream of that agent (smux stops reading a session whose
// buffer is full). The deadline moves at most every half timeout, so a
// write costs a clock read, and a quiet event stream is not cut when it
// next writes. A write that times out having moved some bytes goes on under
// a fresh deadline (a slow reader is not a stalled one). A deadline set from
// above (SetWriteDeadline, SetDeadline) stands until it is cleared.
func (c *bodyConn) Write(p []byte) (int, error) {
	if c.l.write <= 0 {
		return c.Conn.Write(p)
	}
	return tunnel.WriteWithProgress(c.Conn, p, c.armWrite)
}

func (c *bodyConn) armWrite(again bool) { c.write.Arm(c.Conn, again) }

// SetWriteDeadline sets t. A zero t hands the deadline back to the writes'
// progress; any other stands until it is cleared.
func (c *bodyConn) SetWriteDeadline(t time.Time) error {
	c.write.Set(t)
	return c.Conn.SetWriteDeadline(t)
}

func (c *bodyConn) Read(p []byte) (int, error) {
	if !c.body {
		return c.Conn.Read(p)
	}
	if err := c.Conn.SetReadDeadline(time.Now().Add(c.l.stall)); err != nil {
		return 0, err
	}
	n, err := c.Conn.Read(p)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		// The deadline is in the past: reads fail from now on, without
		// being counted again, until fasthttp closes the connection.
		c.body = false
		c.l.stalled(c.Conn.RemoteAddr())
	}
	return n, err
}

// SetReadDeadline starts timing a body by its progress on readBody's mark,
// and otherwise sets t (ending a body's timing).
func (c *bodyConn) SetReadDeadline(t time.Time) error {
	if t.After(bodyMark) {
		c.body = true
		return nil
	}
	c.body = false
	return c.Conn.SetReadDeadline(t)
}

// SetDeadline ends a body's timing (a hijack clears every deadline).
func (c *bodyConn) SetDeadline(t time.Time) error {
	c.body = false
	c.write.Set(t)
	return c.Conn.SetDeadline(t)
}

// ReadFrom writes r to the TCP connection as it reads it: fasthttp's writer
// hands a streamed answer's body to it when its buffer is empty
// (bufio.Writer.ReadFrom), and it writes what it reads at once instead of
// holding up to 16 KiB in the buffer; an answer the service cuts reaches
// the visitor as far as it came (TestStreamedAnswerCutShort). It copies
// through a pooled buffer: the TCP connection's own ReadFrom cannot splice
// from a response body and would allocate 32 KiB per answer.
func (c *bodyConn) ReadFrom(r io.Reader) (int64, error) {
	return tunnel.CopyPooled(c, r) // which writes through c.Write (not back into ReadFrom)
}

// NetConn is the TCP connection (edge/proxy's tcpConn finds it as under
// TLS).
func (c *bodyConn) NetConn() net.Conn { return c.Conn }
