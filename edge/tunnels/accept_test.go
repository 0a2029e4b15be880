package tunnels

import (
	"net"
	"testing"
	"time"

	"github.com/privateconnect/pc/internal/testnet"

	"github.com/privateconnect/pc/edge/routes"
	"github.com/privateconnect/pc/internal/config"
	"github.com/privateconnect/pc/internal/tunnel"
)

// TestServeOutlivesAcceptErrors: accept errors that are not timeouts
// (EMFILE here) do not end Serve (found by a TCP fault review): once they
// pass, agents connect again; closing the listener ends it.
func TestServeOutlivesAcceptErrors(t *testing.T) {
	table, err := routes.Build(&config.Snapshot{})
	if err != nil {
		t.Fatal(err)
	}
	r := New(Config{EdgeID: func() string { return "edge-1" }, Table: func() *routes.Table { return table }})
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln := &testnet.FailingListener{Listener: inner, N: 5}
	served := make(chan error, 1)
	go func() { served <- r.Serve(ln) }()
	t.Cleanup(func() { inner.Close(); r.Close() })

	c, err := net.Dial("tcp", inner.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := tunnel.ReadServerHello(c); err != nil {
		t.Fatalf("no server hello after accept errors (%d accepts): %v", ln.Calls.Load(), err)
	}
	select {
	case err := <-served:
		t.Fatalf("Serve returned: %v", err)
	default:
	}
	inner.Close()
	select {
	case <-served:
	case <-time.After(5 * time.Second):
		t.Fatal("Serve still running after its listener closed")
	}
}
