package agent

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/xtaci/smux"

	"github.com/privateconnect/pc/internal/testnet"
	"github.com/privateconnect/pc/internal/tunnel"
)

// TestDialedStreamWritesSettle: a write to a stream from Dial (which
// `connect reach` copies into from pooled buffers) that failed because the
// session died returns only once the session's connection is closed
// (tunnel.WriteSettled, security.md findings 29/30; found by a TCP fault
// review: Dial wrapped the raw smux stream).
func TestDialedStreamWritesSettle(t *testing.T) {
	a, b := testnet.Pair(t)
	bc := tunnel.Buffered(a)
	defer bc.Close()
	sess, err := smux.Client(testnet.KeepOpen{Conn: bc}, tunnel.SmuxConfig())
	if err != nil {
		t.Fatal(err)
	}
	edge, err := smux.Server(b, tunnel.SmuxConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer edge.Close()
	go func() { // the edge: accepts the reach, then reads nothing
		st, err := edge.AcceptStream()
		if err != nil {
			return
		}
		if _, err := tunnel.ReadStreamHeader(st); err != nil {
			return
		}
		_ = tunnel.WriteResult(st, tunnel.Result{Status: tunnel.ReplyOK})
	}()
	ec := &edgeConn{addr: "edge", sess: sess, conn: bc}
	ec.aborts.Init(func(*tunnel.Control) error { return nil }, nil)
	ag := &Agent{sessions: map[string]*edgeConn{"edge": ec}}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := ag.Dial(ctx, uuid.NewString())
	if err != nil {
		t.Fatal(err)
	}
	sess.Close() // dead; its connection not closed yet
	done := make(chan error, 1)
	go func() { _, err := c.Write(make([]byte, 1024)); done <- err }()
	select {
	case err := <-done:
		t.Fatalf("the write returned (%v) while the session's connection was open", err)
	case <-time.After(100 * time.Millisecond):
	}
	bc.Close()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("a write to a dead session succeeded")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the write still waits after the connection closed")
	}
}
