package tunnels

import (
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/xtaci/smux"

	"github.com/privateconnect/pc/edge/routes"
	"github.com/privateconnect/pc/internal/config"
	"github.com/privateconnect/pc/internal/testnet"
	"github.com/privateconnect/pc/internal/tunnel"
)

// TestReachStreamWritesSettle: serveReach copies the service's bytes into
// the reaching agent's stream from pooled buffers (tunnel.Pipe); a write
// that failed because that agent's session died returns only once the
// session's connection is closed (tunnel.WriteSettled, security.md
// findings 29/30; found by a TCP fault review: the reach stream was the
// raw smux stream), so serveReach cannot end, and its buffer go back to
// the pool, before.
func TestReachStreamWritesSettle(t *testing.T) {
	svcID, toID := uuid.New(), uuid.New()
	table, err := routes.Build(&config.Snapshot{Services: []config.Service{{ID: svcID.String(), WorkspaceID: "w", AgentID: toID.String(),
		Name: "db", Protocol: "tcp", TargetHost: "127.0.0.1", TargetPort: 5432}}})
	if err != nil {
		t.Fatal(err)
	}
	r := New(Config{EdgeID: func() string { return "edge-1" }, Table: func() *routes.Table { return table }})
	noTell := func(*tunnel.Control) error { return nil }

	// The service's agent: answers the stream and floods it.
	e1, a1 := testnet.Pair(t)
	toSess, err := smux.Server(tunnel.Buffered(e1), tunnel.SmuxConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer toSess.Close()
	to := &Session{AgentID: toID.String(), WorkspaceID: "w", sess: toSess, sem: make(chan struct{}, 4), reg: r}
	to.aborts.Init(noTell, nil)
	r.sessions[to.AgentID] = to
	agentSess, err := smux.Client(a1, tunnel.SmuxConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer agentSess.Close()
	go func() {
		st, err := agentSess.AcceptStream()
		if err != nil {
			return
		}
		if _, err := tunnel.ReadStreamHeader(st); err != nil {
			return
		}
		_ = tunnel.WriteResult(st, tunnel.Result{Status: tunnel.ReplyOK})
		buf := make([]byte, 32<<10)
		for {
			if _, err := st.Write(buf); err != nil {
				return
			}
		}
	}()

	// The reaching agent: reaches the service, then reads nothing.
	e2, a2 := testnet.Pair(t)
	bc := tunnel.Buffered(e2)
	defer bc.Close()
	fromSess, err := smux.Server(testnet.KeepOpen{Conn: bc}, tunnel.SmuxConfig())
	if err != nil {
		t.Fatal(err)
	}
	from := &Session{AgentID: uuid.NewString(), WorkspaceID: "w", RemoteIP: "127.0.0.1", sess: fromSess, conn: bc, sem: make(chan struct{}, 4), reg: r}
	from.aborts.Init(noTell, nil)
	reacher, err := smux.Client(a2, tunnel.SmuxConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer reacher.Close()
	rst, err := reacher.OpenStream()
	if err != nil {
		t.Fatal(err)
	}
	hdr, _ := tunnel.AppendStreamHeader(nil, &tunnel.StreamHeader{Kind: tunnel.KindReach, ServiceID: svcID})
	if _, err := rst.Write(hdr); err != nil {
		t.Fatal(err)
	}
	st, err := fromSess.AcceptStream()
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { r.serveReach(from, st); close(done) }()
	_ = rst.SetReadDeadline(time.Now().Add(5 * time.Second))
	if res, err := tunnel.ReadResult(rst); err != nil || res.Status != tunnel.ReplyOK {
		t.Fatalf("reach: %+v, %v", res, err)
	}
	time.Sleep(300 * time.Millisecond) // the copy into the reach stream blocks: nobody reads it

	fromSess.Close() // dead; its connection not closed yet
	select {
	case <-done:
		t.Fatal("serveReach ended while the dead session's connection was open")
	case <-time.After(200 * time.Millisecond):
	}
	bc.Close()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("serveReach still running after the connection closed")
	}
}
