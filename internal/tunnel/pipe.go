package tunnel

import (
	"errors"
	"io"
	"math"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// closeWriter is implemented by *net.TCPConn, *tls.Conn and *smux.Stream.
type closeWriter interface{ CloseWrite() error }

// The copies' buffers. A raw TCP tunnel's copy (Pipe) starts with a small
// one and takes a big one, 64 KiB, one smux frame (SmuxConfig's
// MaxFrameSize), when a read fills it; it goes back to a small one when a
// read fits it again. A copy holds its buffer while it waits for its
// source, so an idle TCP connection keeps 2 × 8 KiB instead of 2 × 32 KiB,
// and a bulk one moves 64 KiB per read and write. The HTTP streams' copies
// (PipeClose, CopyPooled) keep 32 KiB throughout: sized by the reads, a
// 1 MiB body through the edge's HTTP client went 20% slower, its reads
// falling back to 8 KiB whenever the service's writes were short
// (docs/benchmarks.md).
const (
	smallCopy = 8 << 10
	httpCopy  = 32 << 10
	bulkCopy  = 64<<10 - 1
)

var copyPools = map[int]*sync.Pool{smallCopy: newCopyPool(smallCopy), httpCopy: newCopyPool(httpCopy), bulkCopy: newCopyPool(bulkCopy)}

func newCopyPool(size int) *sync.Pool {
	return &sync.Pool{New: func() any { b := make([]byte, size); return &b }}
}

// Pipe copies a→b and b→a until both directions finish, propagating
// half-close: when one side stops sending, the other side's write half is
// closed and the reverse direction keeps flowing. It closes both
// connections when done and returns the bytes copied each way.
//
// A side that is, or wraps, an AbortConn learns the other as its partner
// (SetPartner): the peer's teardown of the stream resets the other side at
// once, even while a copy is blocked writing to it.
func Pipe(a, b net.Conn) (aToB, bToA int64) {
	if ac := abortConnOf(a); ac != nil {
		ac.SetPartner(b)
	}
	if ac := abortConnOf(b); ac != nil {
		ac.SetPartner(a)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		bToA = copyHalf(a, b)
	}()
	aToB = copyHalf(b, a)
	wg.Wait()
	a.Close()
	b.Close()
	return aToB, bToA
}

// copyHalf copies src to dst, then half-closes dst (or closes both on error).
func copyHalf(dst, src net.Conn) int64 {
	n, err := copySized(dst, src, smallCopy, bulkCopy)
	if err != nil {
		// A broken side (a reset, a lost session, an abort): reset both, so
		// the other direction ends too and neither end takes it for a
		// clean end (abort.go).
		Reset(dst)
		Reset(src)
		return n
	}
	if cw, ok := dst.(closeWriter); ok {
		if cw.CloseWrite() == nil {
			return n
		}
	}
	dst.Close()
	return n
}

// PipeClose copies a→b and b→a until either side ends, then closes both:
// the end of one direction ends the exchange. It suits protocols without
// half-close, such as an HTTP/1.1 connection carried by a tunnel stream:
// when the edge drops the stream (the visitor left), the connection to the
// service is closed at once instead of streaming into the void.
func PipeClose(a, b net.Conn) (aToB, bToA int64) {
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		bToA = copyAll(a, b)
		a.Close()
		b.Close()
	}()
	aToB = copyAll(b, a)
	a.Close()
	b.Close()
	wg.Wait()
	return aToB, bToA
}

func copyAll(dst, src net.Conn) int64 {
	n, _ := CopyPooled(dst, src)
	return n
}

// CopyPooled copies src to dst through a pooled 32 KiB buffer. It calls
// only src.Read and dst.Write: a *net.TCPConn's ReadFrom cannot splice from
// a tunnel stream and falls back to io.Copy, which allocates its own buffer
// for every copy (TestCopyHalfAllocations).
//
// A copy that ends on a timeout does not give its buffer back: a tunnel
// stream's Write woken by its deadline (an abort, a stalled peer) returns
// while smux still holds the frame it queued, which points into the buffer
// and is sent later. Reused, the buffer would put another connection's
// bytes (another workspace's, on an edge) into that frame. The garbage
// collector frees it once smux lets go.
func CopyPooled(dst io.Writer, src io.Reader) (int64, error) {
	return copySized(dst, src, httpCopy, httpCopy)
}

// copySized is CopyPooled through buffers of size small, and of size big
// while the reads fill them (smallCopy). A buffer is swapped only after a
// write that succeeded, which smux no longer holds.
func copySized(dst io.Writer, src io.Reader, small, big int) (written int64, err error) {
	bp := copyPools[small].Get().(*[]byte)
	defer func() {
		if err == nil || !IsTimeout(err) {
			copyPools[len(*bp)].Put(bp)
		}
	}()
	for {
		nr, rerr := src.Read(*bp)
		if nr > 0 {
			nw, werr := dst.Write((*bp)[:nr])
			if nw < 0 || nw > nr {
				nw, werr = 0, errInvalidWrite
			}
			written += int64(nw)
			if werr == nil && nw != nr {
				werr = io.ErrShortWrite
			}
			if werr != nil {
				return written, werr
			}
		}
		if rerr != nil {
			if rerr == io.EOF {
				return written, nil
			}
			return written, rerr
		}
		switch size := len(*bp); {
		case size == big:
			if size != small && nr <= small {
				copyPools[size].Put(bp)
				bp = copyPools[small].Get().(*[]byte)
			}
		case nr == size:
			copyPools[size].Put(bp)
			bp = copyPools[big].Get().(*[]byte)
		}
	}
}

var errInvalidWrite = errors.New("tunnel: invalid write result")

// IsTimeout reports a timeout: an error that says so with Timeout(), as
// os.ErrDeadlineExceeded, smux's ErrTimeout, context.DeadlineExceeded and
// fasthttp's ErrTimeout (which is no net.Error) do.
func IsTimeout(err error) bool {
	var te interface{ Timeout() bool }
	return errors.As(err, &te) && te.Timeout()
}

// StallTimeout wraps c so that a write making no progress for d fails: a
// peer that stopped reading (or is gone without a word) cannot pin the
// copy forever. Progress is any byte: a write that times out having moved
// some goes on with the rest under a new deadline, so a slow reader is
// not taken for a stalled one. The deadline moves at most every d/8 (a
// write costs a clock read, not a timer reset): a stall fails after 7/8 d
// to d.
func StallTimeout(c net.Conn, d time.Duration) net.Conn {
	return &stallConn{Conn: c, t: WriteTimer{D: d, Every: d / 8}}
}

type stallConn struct {
	net.Conn
	t WriteTimer
}

func (c *stallConn) Write(p []byte) (int, error) { return WriteWithProgress(c.Conn, p, c.arm) }

func (c *stallConn) arm(again bool) { c.t.Arm(c.Conn, again) }

// WriteTimer moves a connection's write deadline for WriteWithProgress: to
// D from now when the one set last is Every old, or again after progress
// (a whole D for the rest), never over a deadline a caller set (Set). Safe
// for concurrent writers (a WebSocket's frames).
type WriteTimer struct {
	D, Every time.Duration
	// armed is when (unix ns) a write next moves the deadline, or
	// callerSet.
	armed atomic.Int64
}

// callerSet in WriteTimer.armed: a deadline set from above stands until it
// is cleared; writes do not move it.
const callerSet = math.MaxInt64

// Arm sets c's write deadline before a write, when due.
func (w *WriteTimer) Arm(c net.Conn, again bool) {
	a := w.armed.Load()
	now := time.Now()
	if a == callerSet || (!again && now.UnixNano() < a) {
		return
	}
	if c.SetWriteDeadline(now.Add(w.D)) == nil {
		w.armed.Store(now.Add(w.Every).UnixNano())
	}
}

// Set records a deadline a caller set on the connection: a zero t hands
// the deadline back to the writes' progress, any other stands until it is
// cleared.
func (w *WriteTimer) Set(t time.Time) {
	if t.IsZero() {
		w.armed.Store(0)
	} else {
		w.armed.Store(callerSet)
	}
}

// WriteWithProgress writes p to c, calling arm before each write to set its
// deadline: a write that times out after moving some bytes (a slow reader,
// not a stalled one) goes on with the rest, arm(true) giving it a whole
// timeout again.
func WriteWithProgress(c net.Conn, p []byte, arm func(again bool)) (int, error) {
	written := 0
	for {
		arm(written > 0)
		n, err := c.Write(p[written:])
		written += n
		if err == nil || n == 0 || written == len(p) || !errors.Is(err, os.ErrDeadlineExceeded) {
			return written, err
		}
	}
}

// CloseWrite forwards half-close.
func (c *stallConn) CloseWrite() error { return CloseWrite(c.Conn) }

// Abort resets the connection (Reset): a stalled TCP connection's end is
// a reset, not a clean close.
func (c *stallConn) Abort() { Reset(c.Conn) }

// CloseWrite half-closes c when it can (a TCP or TLS connection, a tunnel
// stream), else closes it: the CloseWrite of a connection that wraps
// another.
func CloseWrite(c net.Conn) error {
	if cw, ok := c.(closeWriter); ok {
		return cw.CloseWrite()
	}
	return c.Close()
}
