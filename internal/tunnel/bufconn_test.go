package tunnel

import (
	"bytes"
	"crypto/rand"
	"io"
	"net"
	"testing"

	"github.com/stretchr/testify/require"
)

func tcpPair(t *testing.T) (net.Conn, net.Conn) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	ch := make(chan net.Conn, 1)
	go func() { c, _ := ln.Accept(); ch <- c }()
	a, err := net.Dial("tcp", ln.Addr().String())
	require.NoError(t, err)
	b := <-ch
	t.Cleanup(func() { a.Close(); b.Close() })
	return a, b
}

// TestBufferedKeepsOrderAndBytes: coalesced writes arrive complete and in
// order, through Write and WriteBuffers, beyond the pending bound.
func TestBufferedKeepsOrderAndBytes(t *testing.T) {
	a, b := tcpPair(t)
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
	a, _ := tcpPair(t)
	w := Buffered(a)
	require.NoError(t, w.Close())
	_, err := w.Write([]byte("x"))
	require.ErrorIs(t, err, net.ErrClosed)
}
