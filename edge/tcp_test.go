package edge

import (
	"log/slog"
	"net"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// flakyListener fails its first n Accepts with EMFILE (a process out of
// descriptors), then waits for its listener to close.
type flakyListener struct {
	net.Listener
	n     int32
	calls atomic.Int32
}

func (l *flakyListener) Accept() (net.Conn, error) {
	if l.calls.Add(1) <= l.n {
		return nil, &net.OpError{Op: "accept", Net: "tcp", Err: syscall.EMFILE}
	}
	return l.Listener.Accept()
}

// TestTunnelPortOutlivesAcceptErrors: a TCP tunnel port keeps accepting
// after accept errors that are not timeouts (found by a TCP fault review:
// one EMFILE ended serve while the port stayed listed, never reopened);
// closing its listener ends it.
func TestTunnelPortOutlivesAcceptErrors(t *testing.T) {
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer inner.Close()
	ln := &flakyListener{Listener: inner, n: 5}
	p := newTCPPorts(&Server{log: slog.New(slog.DiscardHandler)}, "127.0.0.1", 0, 0)
	done := make(chan struct{})
	go func() { p.serve(&portListener{ln: ln, serviceID: "svc"}); close(done) }()
	deadline := time.Now().Add(5 * time.Second)
	for ln.calls.Load() <= ln.n { // every failure retried, then one more Accept
		select {
		case <-done:
			t.Fatalf("serve returned after %d accept errors", ln.calls.Load())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("only %d accepts in 5 s", ln.calls.Load())
		}
		time.Sleep(5 * time.Millisecond)
	}
	inner.Close()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("serve still running after its listener closed")
	}
}
