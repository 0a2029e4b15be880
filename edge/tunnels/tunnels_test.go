package tunnels

import (
	"context"
	"encoding/hex"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/privateconnect/pc/edge/routes"
	"github.com/privateconnect/pc/internal/config"
	"github.com/privateconnect/pc/internal/tunnel"
	"github.com/privateconnect/pc/sdk/agent"
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

// TestHandshakeCapExemptsTrustedProxies: behind a load balancer every agent
// comes from its address, so a trusted proxy has no per-address cap.
func TestHandshakeCapExemptsTrustedProxies(t *testing.T) {
	table, err := routes.Build(&config.Snapshot{})
	if err != nil {
		t.Fatal(err)
	}
	r := New(Config{EdgeID: func() string { return "edge-1" }, Table: func() *routes.Table { return table }, MaxHandshakesPerIP: 2,
		TrustedProxies: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = r.Serve(ln) }()
	t.Cleanup(func() { ln.Close(); r.Close() })
	for i := 0; i < 5; i++ {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
		if _, err := tunnel.ReadServerHello(c); err != nil {
			t.Fatalf("connection %d from a trusted proxy refused: %v", i, err)
		}
	}
	if n := r.HandshakesRefused(); n != 0 {
		t.Fatalf("%d refused, want 0", n)
	}
}

// TestHandshakeVersions: a protocol 2 agent proves itself with a signature
// checked against its public key; protocol 1 works only for an agent whose
// record carries a token hash (a token issued before protocol 2), and a
// protocol 2 hello cannot stand in for a legacy agent without a public key.
func TestHandshakeVersions(t *testing.T) {
	v2ID, legacyID := uuid.New(), uuid.New()
	pub := tunnel.AgentPublicKey("v2-token")
	legacyKey := tunnel.TokenKey("legacy-token")
	table, err := routes.Build(&config.Snapshot{Agents: []config.Agent{
		{ID: v2ID.String(), PublicKey: hex.EncodeToString(pub[:])},
		{ID: legacyID.String(), TokenHash: hex.EncodeToString(legacyKey[:])},
	}})
	if err != nil {
		t.Fatal(err)
	}
	r := New(Config{EdgeID: func() string { return "edge-1" }, Table: func() *routes.Table { return table }})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = r.Serve(ln) }()
	t.Cleanup(func() { ln.Close(); r.Close() })
	try := func(v byte, id uuid.UUID, token string) tunnel.Result {
		t.Helper()
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		sh, err := tunnel.ReadServerHello(c)
		if err != nil {
			t.Fatal(err)
		}
		if err := tunnel.WriteClientHello(c, tunnel.NewClientHello(v, id, token, sh, "test")); err != nil {
			t.Fatal(err)
		}
		res, err := tunnel.ReadResult(c)
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	for _, tc := range []struct {
		name  string
		v     byte
		id    uuid.UUID
		token string
		want  byte
	}{
		{"v2 agent, v2 hello", 2, v2ID, "v2-token", tunnel.ResultOK},
		{"v2 agent, wrong token", 2, v2ID, "other", tunnel.ResultBadCredentials},
		{"v2 agent, v1 hello: no token hash on the edge", 1, v2ID, "v2-token", tunnel.ResultUnsupportedVersion},
		{"legacy agent, v1 hello", 1, legacyID, "legacy-token", tunnel.ResultOK},
		{"legacy agent, v1 wrong token", 1, legacyID, "other", tunnel.ResultBadCredentials},
		{"legacy agent, v2 hello: no public key", 2, legacyID, "legacy-token", tunnel.ResultBadCredentials},
	} {
		if got := try(tc.v, tc.id, tc.token); got.Status != tc.want {
			t.Errorf("%s: result %d %q, want %d", tc.name, got.Status, got.Message, tc.want)
		}
	}
}

// TestExpiredTokenEndsTheSession: an agent whose token expires while its
// session is up loses the session at the next tick (before, only at the
// next config change, which a quiet configuration may never bring), and
// the SDK's Run, refused for good on reconnecting, returns the
// *RejectedError of an expired token instead of retrying for ever.
func TestExpiredTokenEndsTheSession(t *testing.T) {
	id := uuid.New()
	pub := tunnel.AgentPublicKey("the-token")
	expires := time.Now().Add(1500 * time.Millisecond) // time enough to connect on a loaded machine
	table, err := routes.Build(&config.Snapshot{Agents: []config.Agent{
		{ID: id.String(), PublicKey: hex.EncodeToString(pub[:]), TokenExpiresAt: expires},
	}})
	require.NoError(t, err)
	r := New(Config{EdgeID: func() string { return "edge-1" }, Table: func() *routes.Table { return table }})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	go func() { _ = r.Serve(ln) }()
	t.Cleanup(func() { ln.Close(); r.Close() })

	var events []string
	var mu sync.Mutex
	a, err := agent.New(agent.Config{AgentID: id.String(), Token: "the-token", Edges: []string{ln.Addr().String()},
		MinBackoff: 20 * time.Millisecond, MaxBackoff: 50 * time.Millisecond,
		OnEvent: func(e agent.Event) { mu.Lock(); events = append(events, e.Kind); mu.Unlock() }})
	require.NoError(t, err)
	done := make(chan error, 1)
	go func() { done <- a.Run(context.Background()) }()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	require.NoError(t, a.WaitConnected(ctx))
	require.Zero(t, r.CloseExpired(table, time.Now()), "not expired yet")
	require.Len(t, r.Connected(), 1)

	time.Sleep(time.Until(expires) + 50*time.Millisecond)
	require.Equal(t, 1, r.CloseExpired(table, time.Now()))
	select {
	case err := <-done:
		var rej *agent.RejectedError
		require.ErrorAs(t, err, &rej)
		require.Equal(t, tunnel.ResultExpired, rej.Status)
	case <-time.After(5 * time.Second):
		t.Fatal("Run kept retrying an expired token")
	}
	require.ErrorAs(t, a.WaitConnected(ctx), new(*agent.RejectedError), "WaitConnected ends with Run")
	require.ErrorIs(t, a.Run(context.Background()), agent.ErrRunTwice)
	mu.Lock()
	defer mu.Unlock()
	require.Equal(t, []string{agent.EventConnected, agent.EventDisconnected, agent.EventRejected}, events, "every event delivered before Run returned")
}
