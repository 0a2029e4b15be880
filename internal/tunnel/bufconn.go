package tunnel

import (
	"net"
	"os"
	"sync"
	"sync/atomic"

	"github.com/xtaci/smux"
)

// Buffered wraps the connection under an smux session so that frames cost
// fewer system calls: reads go through a buffer (smux reads every frame's
// 8-byte header and its payload separately, two system calls a frame
// without it), and writes are coalesced: a write is copied into a pending
// buffer and flushed by a short-lived goroutine, and the frames queued while
// one flush is in the kernel leave together in the next. An idle session
// holds almost nothing: write buffers are pooled and dropped when a flush
// empties them, and the read buffer is a small inline one until reads come
// back full (see readBuf).
func Buffered(c net.Conn) net.Conn {
	if os.Getenv("PC_TUNNEL_UNBUFFERED") == "1" {
		return &failConn{Conn: c}
	}
	b := &bufConn{Conn: c}
	b.cond = sync.NewCond(&b.mu)
	return b
}

const (
	readBufSize   = 8 << 10
	smallReadSize = 256       // the inline read buffer of a quiet session
	maxPending    = 256 << 10 // a writer waits beyond this
)

var (
	writeBufPool = sync.Pool{New: func() any { b := make([]byte, 0, 64<<10); return &b }}
	readBufPool  = sync.Pool{New: func() any { b := make([]byte, readBufSize); return &b }}
)

type bufConn struct {
	net.Conn
	readBuf

	mu       sync.Mutex
	cond     *sync.Cond
	pending  *[]byte
	flushing bool
	err      error
	failed   atomic.Bool // a read failed: the session is lost (ReadFailed)
}

func (c *bufConn) Read(p []byte) (int, error) {
	n, err := c.readBuf.read(c.Conn, p)
	if err != nil {
		c.failed.Store(true)
	}
	return n, err
}

// failConn records read failures of an unbuffered session connection.
type failConn struct {
	net.Conn
	failed atomic.Bool
}

func (c *failConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if err != nil {
		c.failed.Store(true)
	}
	return n, err
}

// ReadFailed reports whether a read of c, a connection from Buffered, has
// failed: smux then ends every stream of the session with that error, an
// end of file when the peer went away, which a stream's reader must not
// take for the stream's own end (AbortConn).
func ReadFailed(c net.Conn) bool {
	switch c := c.(type) {
	case *bufConn:
		return c.failed.Load()
	case *failConn:
		return c.failed.Load()
	}
	return false
}

// readBuf buffers the reads of one goroutine (smux's recvLoop). A session
// spends most of its life blocked in a read: with a fixed 8 KiB buffer every
// idle agent would pin 8 KiB on the edge. So a read that finds the buffer
// empty uses the small inline array when the last read from the connection
// came back short (traffic is light, the socket was drained) and a pooled
// 8 KiB buffer when it came back full (more is waiting); the pooled buffer
// goes back once emptied. Reads as big as the pooled buffer go straight
// to the connection.
type readBuf struct {
	small [smallReadSize]byte
	big   *[]byte
	buf   []byte // the unread bytes, in small or *big
	busy  bool   // the last read from the connection filled its buffer
}

func (b *readBuf) read(c net.Conn, p []byte) (int, error) {
	if len(b.buf) == 0 {
		if len(p) >= readBufSize {
			n, err := c.Read(p)
			b.busy = n == len(p)
			return n, err
		}
		dst := b.small[:]
		if b.busy {
			if b.big == nil {
				b.big = readBufPool.Get().(*[]byte)
			}
			dst = *b.big
		}
		n, err := c.Read(dst)
		b.busy = n == len(dst)
		b.buf = dst[:n]
		if n == 0 {
			b.release()
			return 0, err
		}
	}
	n := copy(p, b.buf)
	b.buf = b.buf[n:]
	if len(b.buf) == 0 {
		b.release()
	}
	return n, nil
}

// release gives the pooled buffer back once it holds nothing unread.
func (b *readBuf) release() {
	b.buf = nil
	if b.big != nil {
		readBufPool.Put(b.big)
		b.big = nil
	}
}

func (c *bufConn) Write(p []byte) (int, error) {
	return c.write(p, nil)
}

// WriteBuffers lets smux hand a frame header and payload in one call (it
// would otherwise allocate a 64 KiB staging buffer per session).
func (c *bufConn) WriteBuffers(v [][]byte) (int, error) {
	if len(v) == 2 {
		return c.write(v[0], v[1])
	}
	n := 0
	for _, b := range v {
		m, err := c.write(b, nil)
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

func (c *bufConn) write(a, b []byte) (int, error) {
	c.mu.Lock()
	for c.err == nil && c.pending != nil && len(*c.pending) >= maxPending {
		c.cond.Wait()
	}
	if c.err != nil {
		err := c.err
		c.mu.Unlock()
		return 0, err
	}
	if c.pending == nil {
		c.pending = writeBufPool.Get().(*[]byte)
	}
	*c.pending = append(append(*c.pending, a...), b...)
	if !c.flushing {
		c.flushing = true
		go c.flush()
	}
	c.mu.Unlock()
	return len(a) + len(b), nil
}

// flush writes pending data until none is left, then exits.
func (c *bufConn) flush() {
	c.mu.Lock()
	for c.pending != nil && len(*c.pending) > 0 && c.err == nil {
		buf := c.pending
		c.pending = nil
		c.mu.Unlock()
		_, err := c.Conn.Write(*buf)
		*buf = (*buf)[:0]
		if cap(*buf) <= 1<<20 {
			writeBufPool.Put(buf)
		}
		c.mu.Lock()
		if err != nil {
			c.err = err
		}
		c.cond.Broadcast()
	}
	c.flushing = false
	c.cond.Broadcast()
	c.mu.Unlock()
}

// WriteSettled is for a stream writer whose smux Write failed: when the
// session is closed it waits until conn, the session's connection (from
// Buffered), is closed too. smux's Write returns as soon as the session
// dies, while its send loop may still be copying the caller's bytes into
// conn's buffer; a caller that then reused them (a pooled buffer: another
// request's headers, another connection's data) would have them sent on a
// stream that failed. bufConn copies only under its lock and never once
// closed, and smux closes it right after marking the session dead.
func WriteSettled(err error, sess interface{ IsClosed() bool }, conn net.Conn) {
	c, ok := conn.(*bufConn)
	if err == nil || !ok || !sess.IsClosed() {
		return
	}
	c.mu.Lock()
	for c.err == nil {
		c.cond.Wait()
	}
	c.mu.Unlock()
}

// SettledStream is a smux stream written from pooled buffers: a Write that
// failed because the session died returns only once the session no longer
// reads p (WriteSettled), so the caller may reuse p at once. Sess and Conn
// are the stream's session and the connection under it.
type SettledStream struct {
	*smux.Stream
	Sess *smux.Session
	Conn net.Conn
}

func (s *SettledStream) Write(p []byte) (int, error) {
	n, err := s.Stream.Write(p)
	WriteSettled(err, s.Sess, s.Conn)
	return n, err
}

// Close closes the connection; pending writes are dropped, as a TCP close
// with unsent data would.
func (c *bufConn) Close() error {
	c.mu.Lock()
	if c.err == nil {
		c.err = net.ErrClosed
	}
	c.cond.Broadcast()
	c.mu.Unlock()
	return c.Conn.Close()
}
