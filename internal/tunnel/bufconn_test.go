package tunnel

import (
	"bytes"
	"crypto/rand"
	"io"
	"net"
	"testing"
	"time"

	"github.com/privateconnect/pc/internal/testnet"
	"github.com/stretchr/testify/require"
)

// TestBufferedKeepsOrderAndBytes: coalesced writes arrive complete and in
// order, through Write and WriteBuffers, beyond the pending bound.
func TestBufferedKeepsOrderAndBytes(t *testing.T) {
	a, b := testnet.Pair(t)
	w := Buffered(a)
	want := make([]byte, 3<<20)
	_, _ = rand.Read(want)
	done := make(chan []byte, 1)
	go func() {
		got, _ := io.ReadAll(Buffered(b))
		done <- got
	}()
	for off := 0; off < len(want); {
		n := min(7777, len(want)-off)
		if off%2 == 0 {
			_, err := w.Write(want[off : off+n])
			require.NoError(t, err)
		} else {
			h := min(8, n)
			_, err := w.(interface{ WriteBuffers([][]byte) (int, error) }).WriteBuffers([][]byte{want[off : off+h], want[off+h : off+n]})
			require.NoError(t, err)
		}
		off += n
	}
	// Close only once everything pending is out.
	for {
		bc := w.(*bufConn)
		bc.mu.Lock()
		idle := !bc.flushing
		bc.mu.Unlock()
		if idle {
			break
		}
	}
	require.NoError(t, a.(*net.TCPConn).CloseWrite())
	require.True(t, bytes.Equal(want, <-done))
}

// TestBufferedWriteAfterCloseFails: writes after Close fail instead of
// queueing forever.
func TestBufferedWriteAfterCloseFails(t *testing.T) {
	a, _ := testnet.Pair(t)
	w := Buffered(a)
	require.NoError(t, w.Close())
	_, err := w.Write([]byte("x"))
	require.ErrorIs(t, err, net.ErrClosed)
}

// TestBufferedReadsAnySizes: whatever the sizes of the writes and of the
// reads (small ones that go through the inline buffer, ones that switch to
// the pooled buffer, ones bigger than it), the bytes come out whole and in
// order; a quiet connection ends with no pooled buffer held.
func TestBufferedReadsAnySizes(t *testing.T) {
	a, b := testnet.Pair(t)
	want := make([]byte, 2<<20)
	_, _ = rand.Read(want)
	go func() {
		for off, i := 0, 0; off < len(want); i++ {
			n := min([]int{1, 8, 300, 5000, 40000}[i%5], len(want)-off)
			if _, err := a.Write(want[off : off+n]); err != nil {
				return
			}
			off += n
		}
	}()
	r := Buffered(b)
	got := make([]byte, 0, len(want))
	sizes := []int{8, 1, 256, 7, 32768, 100, 8192, 3}
	for i := 0; len(got) < len(want); i++ {
		p := make([]byte, sizes[i%len(sizes)])
		n, err := r.Read(p)
		require.NoError(t, err)
		got = append(got, p[:n]...)
	}
	require.True(t, bytes.Equal(want, got))
	bc := r.(*bufConn)
	require.Nil(t, bc.big, "nothing unread: the pooled buffer went back")

	// A quiet exchange (smux keep-alives) never takes the pooled buffer.
	for range 3 {
		_, err := a.Write([]byte("12345678"))
		require.NoError(t, err)
		p := make([]byte, 8)
		_, err = io.ReadFull(r, p)
		require.NoError(t, err)
		require.Equal(t, "12345678", string(p))
		require.Nil(t, bc.big)
	}
	require.NoError(t, a.Close())
	_, err := r.Read(make([]byte, 8))
	require.ErrorIs(t, err, io.EOF)
}

type closedFlag bool

func (c closedFlag) IsClosed() bool { return bool(c) }

// TestWriteSettledWaitsForTheConnection: after a failed stream write of a
// dead session, WriteSettled returns only once the session's connection is
// closed (nothing copies the caller's bytes after that); a failed write of
// a live session, and a write that did not fail, do not wait.
func TestWriteSettledWaitsForTheConnection(t *testing.T) {
	a, _ := testnet.Pair(t)
	w := Buffered(a)
	failed := io.ErrClosedPipe
	WriteSettled(nil, closedFlag(true), w)
	WriteSettled(failed, closedFlag(false), w)
	WriteSettled(failed, closedFlag(true), a) // not a Buffered connection

	done := make(chan struct{})
	go func() { WriteSettled(failed, closedFlag(true), w); close(done) }()
	select {
	case <-done:
		t.Fatal("returned while the connection was open")
	case <-time.After(50 * time.Millisecond):
	}
	require.NoError(t, w.Close())
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("still waiting after the connection closed")
	}
}
