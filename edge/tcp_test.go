package edge

import (
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/privateconnect/pc/internal/testnet"
)

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
	ln := &testnet.FailingListener{Listener: inner, N: 5}
	p := newTCPPorts(&Server{log: slog.New(slog.DiscardHandler)}, "127.0.0.1", 0, 0)
	done := make(chan struct{})
	go func() { p.serve(&portListener{ln: ln, serviceID: "svc"}); close(done) }()
	deadline := time.Now().Add(5 * time.Second)
	for ln.Calls.Load() <= ln.N { // every failure retried, then one more Accept
		select {
		case <-done:
			t.Fatalf("serve returned after %d accept errors", ln.Calls.Load())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("only %d accepts in 5 s", ln.Calls.Load())
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
