package tunnels

import (
	"net"
	"testing"
	"time"

	"github.com/privateconnect/pc/edge/routes"
	"github.com/privateconnect/pc/internal/config"
	"github.com/privateconnect/pc/internal/tunnel"
)

// TestHandshakesPerIPAreCapped: one address holding MaxHandshakesPerIP
// connections in the handshake gets any further one closed at once, with no
// server hello; a slot freed is usable again at once.
func TestHandshakesPerIPAreCapped(t *testing.T) {
	table, err := routes.Build(&config.Snapshot{})
	if err != nil {
		t.Fatal(err)
	}
	const max = 4
	r := New(Config{EdgeID: func() string { return "edge-1" }, Table: func() *routes.Table { return table }, MaxHandshakesPerIP: max})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = r.Serve(ln) }()
	t.Cleanup(func() { ln.Close(); r.Close() })

	// hello dials and reports whether the edge opened with a server hello.
	hello := func() (net.Conn, bool) {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
		_, err = tunnel.ReadServerHello(c)
		return c, err == nil
	}
	var held []net.Conn
	for i := 0; i < max; i++ { // slow handshakes: hello read, never answered
		c, ok := hello()
		if !ok {
			t.Fatalf("connection %d refused below the cap", i)
		}
		held = append(held, c)
	}
	c, ok := hello()
	if ok {
		t.Fatal("a connection beyond the cap got a server hello")
	}
	c.Close()
	if got := r.HandshakesRefused(); got != 1 {
		t.Fatalf("HandshakesRefused = %d, want 1", got)
	}
	held[0].Close() // the edge sees EOF, the handshake ends, the slot frees
	deadline := time.Now().Add(2 * time.Second)
	for {
		c, ok := hello()
		c.Close()
		if ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the freed slot was never usable again")
		}
		time.Sleep(10 * time.Millisecond)
	}
	for _, c := range held[1:] {
		c.Close()
	}
}
