package tunnel

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/privateconnect/pc/internal/testnet"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/valyala/fasthttp"
	"github.com/xtaci/smux"
)

// readerConn is a net.Conn that reads from r (no WriterTo: a tunnel
// stream is not a TCP connection a splice could read).
type readerConn struct {
	net.Conn
	r io.Reader
}

func (c readerConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// Copying into a TCP connection uses the pooled buffer: the connection's
// ReadFrom, which cannot splice from a stream, allocated 32 KiB per copy.
func TestCopyHalfAllocations(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts differ under -race")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err == nil {
			_, _ = io.Copy(io.Discard, c)
			c.Close()
		}
	}()
	dst, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer dst.Close()
	payload := make([]byte, 4096)
	src := readerConn{r: bytes.NewReader(payload)}
	copyAll(dst, src) // the pool's buffer exists
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	const n = 50
	for range n {
		src.r.(*bytes.Reader).Reset(payload)
		copyAll(dst, src)
	}
	runtime.ReadMemStats(&after)
	if per := (after.TotalAlloc - before.TotalAlloc) / n; per > 1<<10 {
		t.Fatalf("%d bytes allocated per copy into a TCP connection (its ReadFrom's 32 KiB buffer?)", per)
	}
}

// gateConn is a connection whose writes wait while it is shut: a tunnel
// connection the kernel stopped taking bytes for.
type gateConn struct {
	net.Conn
	mu      sync.Mutex
	shut    chan struct{}
	waiting atomic.Int32 // writes held at the closed gate
}

func (c *gateConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	shut := c.shut
	c.mu.Unlock()
	if shut != nil {
		c.waiting.Add(1)
		<-shut
		c.waiting.Add(-1)
	}
	return c.Conn.Write(p)
}

func (c *gateConn) close() { c.mu.Lock(); c.shut = make(chan struct{}); c.mu.Unlock() }

func (c *gateConn) open() { c.mu.Lock(); close(c.shut); c.shut = nil; c.mu.Unlock() }

// A stream write woken by its deadline returns while smux still holds the
// frame it queued, which points into the copy's buffer and leaves later.
// TestTimedOutCopyKeepsItsBuffer: that buffer must not serve another copy
// meanwhile, or the frame carries the other connection's bytes.
func TestTimedOutCopyKeepsItsBuffer(t *testing.T) {
	c, accepted := testnet.Pair(t)
	gate := &gateConn{Conn: c}
	buffered := Buffered(gate).(*bufConn)
	client, err := smux.Client(buffered, SmuxConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	server, err := smux.Server(Buffered(accepted), SmuxConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer server.Close()
	open := func() (*smux.Stream, *smux.Stream) {
		st, err := client.OpenStream()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := st.Write([]byte{'x'}); err != nil {
			t.Fatal(err)
		}
		peer, err := server.AcceptStream()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(peer, make([]byte, 1)); err != nil {
			t.Fatal(err)
		}
		return st, peer
	}
	bulk, bulkPeer := open()
	// Several victims: under -race sync.Pool drops a quarter of what it is
	// given, so one could miss a reuse.
	victims := make([]*smux.Stream, 4)
	peers := make([]*smux.Stream, len(victims))
	for i := range victims {
		victims[i], peers[i] = open()
	}

	// The connection jams: smux's send loop blocks behind a bulk write
	// larger than what the buffered connection holds.
	gate.close()
	go func() { _, _ = bulk.Write(make([]byte, 512<<10)) }()
	// Jammed: a write is held at the gate (one that began before it closed
	// would free room in the buffer when it ends, and let a victim's frame
	// through: seen once under load) and the buffer is full behind it.
	jammed := func() bool {
		buffered.mu.Lock()
		defer buffered.mu.Unlock()
		return gate.waiting.Load() > 0 && buffered.pending != nil && len(*buffered.pending) >= maxPending
	}
	for deadline := time.Now().Add(10 * time.Second); !jammed(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the send loop never filled the buffered connection")
		}
	}
	for _, v := range victims {
		_, err = CopyPooled(StallTimeout(v, 50*time.Millisecond), bytes.NewReader(bytes.Repeat([]byte{'A'}, 1000)))
		if !IsTimeout(err) {
			t.Fatalf("copy into a jammed stream: %v, want its deadline", err)
		}
		// Other connections copy meanwhile, through the pool.
		for range 4 {
			if _, err := CopyPooled(io.Discard, bytes.NewReader(bytes.Repeat([]byte{'B'}, 32<<10))); err != nil {
				t.Fatal(err)
			}
		}
	}
	gate.open()
	go func() { _, _ = io.Copy(io.Discard, bulkPeer) }()
	for _, p := range peers {
		// The frame still leaves (nothing resets the stream here).
		_ = p.SetReadDeadline(time.Now().Add(5 * time.Second))
		got := make([]byte, 1000)
		if _, err := io.ReadFull(p, got); err != nil {
			t.Fatal(err)
		}
		if i := bytes.IndexByte(got, 'B'); i >= 0 {
			t.Fatalf("the timed-out frame left with another copy's bytes: %q…", got[i:min(len(got), i+16)])
		}
		if n := bytes.Count(got, []byte{'A'}); n != len(got) {
			t.Fatalf("the stream carried %q, not the copy's bytes", got)
		}
	}
}

func TestIsTimeout(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{os.ErrDeadlineExceeded, true},
		{fmt.Errorf("read: %w", os.ErrDeadlineExceeded), true},
		{context.DeadlineExceeded, true},
		{fasthttp.ErrTimeout, true}, // no net.Error: it has Timeout() only
		{io.EOF, false},
		{context.Canceled, false},
		{&net.OpError{Op: "dial", Err: errors.New("connection refused")}, false},
	} {
		assert.Equal(t, tc.want, IsTimeout(tc.err), "%v", tc.err)
	}
}

// scriptReader returns its chunks one per Read (cut to the caller's
// buffer), recording the size of each buffer it is given.
type scriptReader struct {
	chunks []int
	bufs   []int
}

func (r *scriptReader) Read(p []byte) (int, error) {
	r.bufs = append(r.bufs, len(p))
	if len(r.chunks) == 0 {
		return 0, io.EOF
	}
	n := min(r.chunks[0], len(p))
	r.chunks = r.chunks[1:]
	return n, nil
}

// TestCopySizesItsBuffer: a raw TCP tunnel's copy (Pipe) reads through a
// small buffer until a read fills it, then through one a smux frame long,
// and back to a small one when a read fits a small one again, so that an
// idle connection's copies hold 8 KiB each; an HTTP stream's (CopyPooled)
// keeps 32 KiB.
func TestCopySizesItsBuffer(t *testing.T) {
	chunks := []int{100, smallCopy, bulkCopy, 30000, 5000, smallCopy, 1}
	total := 0
	for _, c := range chunks {
		total += c
	}
	r := &scriptReader{chunks: chunks}
	n, err := copySized(io.Discard, r, smallCopy, bulkCopy)
	require.NoError(t, err)
	assert.EqualValues(t, total, n)
	assert.Equal(t, []int{smallCopy, smallCopy, bulkCopy, bulkCopy, bulkCopy, smallCopy, bulkCopy, smallCopy}, r.bufs)
	assert.Equal(t, bulkCopy, SmuxConfig().MaxFrameSize, "a raw TCP copy's read is one frame")

	r = &scriptReader{chunks: chunks}
	_, err = CopyPooled(io.Discard, r)
	require.NoError(t, err)
	for _, b := range r.bufs {
		require.Equal(t, httpCopy, b, "%v", r.bufs)
	}
}
