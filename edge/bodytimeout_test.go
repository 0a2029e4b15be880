package edge

import (
	"errors"
	"io"
	"net"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/privateconnect/pc/internal/tunnel"
)

// bodyPair is a bodyConn on an accepted loopback connection, the visitor's
// end of it, and the count of stalls reported.
func bodyPair(t *testing.T, stall time.Duration) (*bodyConn, net.Conn, *atomic.Int32) {
	t.Helper()
	return bodyPairWrites(t, stall, 0)
}

// bodyPairWrites is bodyPair with writes timed by progress (write).
func bodyPairWrites(t *testing.T, stall, write time.Duration) (*bodyConn, net.Conn, *atomic.Int32) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	var stalls atomic.Int32
	bl := &bodyListener{Listener: ln, stall: stall, stalled: func(net.Addr) { stalls.Add(1) }, write: write}
	visitor, err := net.Dial("tcp", ln.Addr().String())
	require.NoError(t, err)
	t.Cleanup(func() { visitor.Close() })
	c, err := bl.Accept()
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	return c.(*bodyConn), visitor, &stalls
}

// startBody is what fasthttp does once a head is in: the deadline of
// readBody's RequestConfig.
func startBody(t *testing.T, c net.Conn) {
	t.Helper()
	require.NoError(t, c.SetReadDeadline(time.Now().Add(readBody(nil).ReadTimeout)))
}

// TestBodyConnTimesBodiesByProgress: once readBody's mark is set, a read
// fails after the stall timeout without a byte (reported once), but a body
// that keeps coming is never cut, however long it takes; any other deadline
// (the idle wait, a hijack's clearing) ends the body's timing.
func TestBodyConnTimesBodiesByProgress(t *testing.T) {
	const stall = 150 * time.Millisecond
	read := func(c net.Conn) (time.Duration, error) {
		start := time.Now()
		_, err := c.Read(make([]byte, 64))
		return time.Since(start), err
	}
	readN := func(c net.Conn, n int) error {
		b := make([]byte, 64)
		for got := 0; got < n; {
			k, err := c.Read(b)
			if err != nil {
				return err
			}
			got += k
		}
		return nil
	}

	t.Run("progress goes on, a stall ends it", func(t *testing.T) {
		c, visitor, stalls := bodyPair(t, stall)
		startBody(t, c)
		go func() {
			for range 8 { // two stall timeouts in all
				time.Sleep(stall / 4)
				if _, err := visitor.Write([]byte("x")); err != nil {
					return
				}
			}
		}()
		require.NoError(t, readN(c, 8))
		took, err := read(c)
		require.ErrorIs(t, err, os.ErrDeadlineExceeded)
		var ne net.Error
		require.True(t, errors.As(err, &ne) && ne.Timeout(), "a timeout for fasthttp's 408")
		require.GreaterOrEqual(t, took, stall-20*time.Millisecond)
		require.Less(t, took, stall+time.Second)
		require.EqualValues(t, 1, stalls.Load())
		_, err = read(c)
		require.Error(t, err)
		require.EqualValues(t, 1, stalls.Load(), "one stall, reported once")
	})

	t.Run("the idle wait is not a body", func(t *testing.T) {
		c, visitor, stalls := bodyPair(t, stall)
		startBody(t, c)
		require.NoError(t, c.SetReadDeadline(time.Now().Add(3*stall))) // fasthttp's idle timeout
		go func() {
			time.Sleep(2 * stall)
			_, _ = visitor.Write([]byte("GET"))
		}()
		took, err := read(c)
		require.NoError(t, err)
		require.Greater(t, took, stall)
		require.Zero(t, stalls.Load())
	})

	t.Run("a hijacked connection is not a body", func(t *testing.T) {
		c, visitor, stalls := bodyPair(t, stall)
		startBody(t, c)
		require.NoError(t, c.SetDeadline(time.Time{})) // fasthttp before a hijack
		go func() {
			time.Sleep(3 * stall)
			_, _ = visitor.Write([]byte("frame"))
		}()
		took, err := read(c)
		require.NoError(t, err)
		require.Greater(t, took, 2*stall)
		require.Zero(t, stalls.Load())
	})

	t.Run("the TCP connection is found under it", func(t *testing.T) {
		c, _, _ := bodyPair(t, stall)
		_, ok := c.NetConn().(*net.TCPConn)
		require.True(t, ok)
	})
}

func TestBodyTimeoutDefault(t *testing.T) {
	for _, d := range []time.Duration{0, -time.Second} {
		cfg := Config{BodyTimeout: d}
		cfg.setDefaults()
		require.Equal(t, 30*time.Second, cfg.BodyTimeout, "0 or less is the default, as for the other timeouts")
	}
	cfg := Config{BodyTimeout: time.Minute}
	cfg.setDefaults()
	require.Equal(t, time.Minute, cfg.BodyTimeout)
}

// TestBodyConnTimesWritesByProgress: a write to a visitor that reads
// nothing fails after VisitorWriteTimeout, through Write and through the
// ReadFrom of streamed answers alike; a connection quiet for longer than the
// timeout (an event stream between events) still writes, and a deadline
// set from above (a hijack's clearing) is followed by a fresh one.
func TestBodyConnTimesWritesByProgress(t *testing.T) {
	const timeout = 200 * time.Millisecond
	c, visitor, _ := bodyPairWrites(t, time.Minute, timeout)
	_, err := c.Write([]byte("event 1"))
	require.NoError(t, err)
	time.Sleep(2 * timeout) // quiet, longer than the timeout
	_, err = c.Write([]byte("event 2"))
	require.NoError(t, err, "a quiet connection's next write")
	require.NoError(t, c.SetDeadline(time.Time{})) // a hijack clears deadlines
	_, err = c.Write([]byte("event 3"))
	require.NoError(t, err)
	_ = visitor.(*net.TCPConn).SetReadBuffer(4096)

	// The visitor reads nothing more: a big write stalls, then fails.
	start := time.Now()
	_, err = c.ReadFrom(io.LimitReader(zeros{}, 64<<20))
	require.ErrorIs(t, err, os.ErrDeadlineExceeded)
	require.Less(t, time.Since(start), 5*time.Second)
	start = time.Now()
	_, err = c.Write(make([]byte, 8<<20))
	require.ErrorIs(t, err, os.ErrDeadlineExceeded)
	require.Less(t, time.Since(start), 5*time.Second)
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) { clear(p); return len(p), nil }

// slowConn takes 1 KiB a write every 10 ms, and fails a write with
// os.ErrDeadlineExceeded, returning what it moved, once its write deadline
// has passed: a slow reader, as seen from the writer.
type slowConn struct {
	net.Conn // nil: only Write and the deadlines are used
	deadline time.Time
	wrote    int
}

func (c *slowConn) Write(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		if !c.deadline.IsZero() && time.Now().After(c.deadline) {
			return n, os.ErrDeadlineExceeded
		}
		time.Sleep(10 * time.Millisecond)
		n += min(1024, len(p)-n)
	}
	c.wrote += n
	return n, nil
}

func (c *slowConn) SetWriteDeadline(t time.Time) error { c.deadline = t; return nil }
func (c *slowConn) SetDeadline(t time.Time) error      { c.deadline = t; return nil }

// TestWritesTimedByProgress: a reader that reads slowly, but reads, is not
// cut however long one write takes (a write that times out having moved
// bytes goes on under a new deadline), through bodyConn and
// tunnel.StallTimeout alike; a deadline set from above on bodyConn stands
// until it is cleared.
func TestWritesTimedByProgress(t *testing.T) {
	const timeout = 50 * time.Millisecond
	big := make([]byte, 16<<10) // 160 ms at 1 KiB / 10 ms: three timeouts
	slow := &slowConn{}
	c := newBodyConn(slow, &bodyListener{write: timeout})
	n, err := c.Write(big)
	require.NoError(t, err)
	require.Equal(t, len(big), n)
	slow2 := &slowConn{}
	n, err = tunnel.StallTimeout(slow2, timeout).Write(big)
	require.NoError(t, err)
	require.Equal(t, len(big), n)

	// A caller's deadline stands: writes do not move it.
	require.NoError(t, c.SetWriteDeadline(time.Now().Add(-time.Second)))
	_, err = c.Write([]byte("x"))
	require.ErrorIs(t, err, os.ErrDeadlineExceeded)
	require.NoError(t, c.SetWriteDeadline(time.Time{}))
	_, err = c.Write([]byte("x"))
	require.NoError(t, err)
}

// TestBodyListenerHoldsOpenConnections: the share listener forgets a
// connection once it is closed, whichever side closes it first, and
// CloseAll ends those still open (the end of a drain).
func TestBodyListenerHoldsOpenConnections(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	bl := &bodyListener{Listener: ln, stall: time.Second}
	var visitors []net.Conn
	var served []net.Conn
	for i := 0; i < 3; i++ {
		v, err := net.Dial("tcp", ln.Addr().String())
		require.NoError(t, err)
		defer v.Close()
		c, err := bl.Accept()
		require.NoError(t, err)
		visitors, served = append(visitors, v), append(served, c)
	}
	require.Equal(t, 3, bl.conns.Len())
	require.NoError(t, served[0].Close())
	require.NoError(t, visitors[1].Close()) // the visitor first: the server closes on EOF
	_, err = served[1].Read(make([]byte, 1))
	require.ErrorIs(t, err, io.EOF)
	require.NoError(t, served[1].Close())
	_ = served[1].Close() // twice: no harm
	require.Equal(t, 1, bl.conns.Len())
	require.Equal(t, 1, bl.conns.CloseAll())
	require.Zero(t, bl.conns.Len())
	require.NoError(t, visitors[2].SetReadDeadline(time.Now().Add(5*time.Second)))
	_, err = visitors[2].Read(make([]byte, 1))
	require.ErrorIs(t, err, io.EOF, "CloseAll ended the open connection")
}
