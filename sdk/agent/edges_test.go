package agent

import (
	"bufio"
	"context"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/xtaci/smux"

	"github.com/privateconnect/pc/internal/tunnel"
)

// fakeEdge speaks the edge side of the tunnel handshake: it accepts the
// agent (whatever its credentials) or refuses it as an edge that does not
// know it does, and can push an edge list on the control stream.
type fakeEdge struct {
	t       *testing.T
	ln      net.Listener
	id      string
	refuse  atomic.Bool
	dials   atomic.Int32 // handshakes seen
	mu      sync.Mutex
	ctl     *smux.Stream
	sess    *smux.Session
	onStart []string // the edge list pushed as each session starts
}

func newFakeEdge(t *testing.T, id string) *fakeEdge {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e := &fakeEdge{t: t, ln: ln, id: id}
	t.Cleanup(func() { ln.Close(); e.kill() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go e.serve(c)
		}
	}()
	return e
}

func (e *fakeEdge) addr() string { return e.ln.Addr().String() }

func (e *fakeEdge) up() bool { e.mu.Lock(); defer e.mu.Unlock(); return e.ctl != nil }

func (e *fakeEdge) serve(c net.Conn) {
	e.dials.Add(1)
	if tunnel.WriteServerHello(c, &tunnel.ServerHello{Version: tunnel.Version, EdgeID: e.id}) != nil {
		c.Close()
		return
	}
	if _, err := tunnel.ReadClientHello(bufio.NewReader(c)); err != nil {
		c.Close()
		return
	}
	if e.refuse.Load() {
		_ = tunnel.WriteResult(c, tunnel.Result{Status: tunnel.ResultBadCredentials, Message: "invalid agent credentials"})
		c.Close()
		return
	}
	_ = tunnel.WriteResult(c, tunnel.Result{Status: tunnel.ResultOK, Message: "welcome"})
	sess, err := smux.Client(c, tunnel.SmuxConfig())
	if err != nil {
		c.Close()
		return
	}
	ctl, err := sess.OpenStream()
	if err == nil {
		hdr, _ := tunnel.AppendStreamHeader(nil, &tunnel.StreamHeader{Kind: tunnel.KindControl})
		_, err = ctl.Write(hdr)
	}
	if err != nil {
		sess.Close()
		return
	}
	e.mu.Lock()
	e.sess, e.ctl = sess, ctl
	list := e.onStart
	e.mu.Unlock()
	if len(list) > 0 {
		e.push(list...)
	}
}

// push sends the agent an edge list (CtlEdges) on the live session.
func (e *fakeEdge) push(edges ...string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.ctl != nil {
		_ = tunnel.WriteControl(e.ctl, &tunnel.Control{Type: tunnel.CtlEdges, Edges: edges})
	}
}

// kill ends the live session.
func (e *fakeEdge) kill() {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.sess != nil {
		e.sess.Close()
		e.sess, e.ctl = nil, nil
	}
}

type eventLog struct {
	mu     sync.Mutex
	events []Event
	edges  [][]string
}

func (l *eventLog) add(e Event) { l.mu.Lock(); l.events = append(l.events, e); l.mu.Unlock() }
func (l *eventLog) setEdges(e []string) {
	l.mu.Lock()
	l.edges = append(l.edges, e)
	l.mu.Unlock()
}

func (l *eventLog) rejections(addr string) []Event {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []Event
	for _, e := range l.events {
		if e.Edge == addr && e.Kind == EventRejected {
			out = append(out, e)
		}
	}
	return out
}

func (l *eventLog) lastEdges() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.edges) == 0 {
		return nil
	}
	return l.edges[len(l.edges)-1]
}

func runAgent(t *testing.T, cfg Config) (*Agent, *eventLog) {
	t.Helper()
	log := &eventLog{}
	cfg.AgentID, cfg.Token = testAgentID, strings.Repeat("t", 64)
	cfg.MinBackoff, cfg.MaxBackoff = 10*time.Millisecond, 20*time.Millisecond
	cfg.OnEvent, cfg.OnEdges = log.add, log.setEdges
	a, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = a.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return a, log
}

func eventually(t *testing.T, what string, f func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !f() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// An edge the agent started with (its saved list, provisioning) that the
// edges no longer list, a deleted one, is dropped instead of being dialed
// for ever; its refusal does not read as if the agent's own credentials
// were bad, since another edge accepts them.
func TestUnlistedEdgeIsDropped(t *testing.T) {
	live, gone := newFakeEdge(t, "e1"), newFakeEdge(t, "e2")
	gone.refuse.Store(true)
	_, log := runAgent(t, Config{Edges: []string{live.addr(), gone.addr()}})
	eventually(t, "the agent to connect", func() bool { return live.up() && len(log.rejections(gone.addr())) >= 2 })

	rej := log.rejections(gone.addr())
	last := rej[len(rej)-1]
	if !strings.Contains(last.Message, "invalid agent credentials here, though 1 other edge(s) accept them: this edge does not know the agent") {
		t.Errorf("rejection message %q", last.Message)
	}

	live.push(live.addr())
	eventually(t, "the new edge list", func() bool { return slices.Equal(log.lastEdges(), []string{live.addr()}) })
	n := gone.dials.Load()
	time.Sleep(200 * time.Millisecond) // ten backoff periods
	if d := gone.dials.Load() - n; d > 1 {
		t.Fatalf("the unlisted edge was dialed %d more times", d)
	}
}

// An edge listed by none of the edges but given by hand (StaticEdges) is
// kept; an edge list adds the edges it names.
func TestStaticEdgeIsKept(t *testing.T) {
	live, static, added := newFakeEdge(t, "e1"), newFakeEdge(t, "e2"), newFakeEdge(t, "e3")
	static.refuse.Store(true)
	a, _ := runAgent(t, Config{Edges: []string{live.addr()}, StaticEdges: []string{static.addr()}})
	eventually(t, "the agent to connect", func() bool { return live.up() })
	live.push(live.addr(), added.addr())
	eventually(t, "the listed edge", func() bool { return len(a.Connected()) == 2 })
	n := static.dials.Load()
	eventually(t, "the static edge to be dialed again", func() bool { return static.dials.Load() >= n+3 })
}

// A deleted edge ends its agents' sessions about when the other edges stop
// listing it, and refuses the agent: it is dropped once all three hold.
// With no session left at all nothing is dropped (the network may be down).
func TestEdgeDroppedWhenItsSessionEndsUnlisted(t *testing.T) {
	live, gone := newFakeEdge(t, "e1"), newFakeEdge(t, "e2")
	a, log := runAgent(t, Config{Edges: []string{live.addr(), gone.addr()}})
	eventually(t, "both sessions", func() bool { return live.up() && gone.up() })
	live.push(live.addr()) // no longer lists gone, which still holds a session
	eventually(t, "the list read", func() bool { return slices.Equal(a.listedBy(live.addr()), []string{live.addr()}) })
	if len(a.Connected()) != 2 {
		t.Fatal("an edge holding a session was dropped")
	}
	gone.refuse.Store(true)
	gone.kill()
	eventually(t, "the unlisted edge dropped", func() bool { return slices.Equal(log.lastEdges(), []string{live.addr()}) })
	n := gone.dials.Load()
	time.Sleep(200 * time.Millisecond)
	if d := gone.dials.Load() - n; d > 1 {
		t.Fatalf("the dropped edge was dialed %d more times", d)
	}

	// The last session ends: the edge is kept and dialed again.
	live.refuse.Store(true)
	live.kill()
	n = live.dials.Load()
	eventually(t, "the last edge dialed again", func() bool { return live.dials.Load() >= n+3 })
}

// An edge added since the agent started (listed by its edges) joins the
// saved list once the agent holds a session with it, and leaves it when the
// edges no longer list it. Found by a CLI walk-through: the list was saved
// only when it shrank.
func TestGainedEdgeIsReported(t *testing.T) {
	live, added, never := newFakeEdge(t, "e1"), newFakeEdge(t, "e2"), newFakeEdge(t, "e3")
	never.refuse.Store(true) // listed, but never takes the agent
	_, log := runAgent(t, Config{Edges: []string{live.addr()}})
	eventually(t, "the agent to connect", func() bool { return live.up() })
	live.push(live.addr(), added.addr(), never.addr())
	want := slices.Sorted(slices.Values([]string{live.addr(), added.addr()}))
	eventually(t, "the gained edge reported", func() bool { return slices.Equal(log.lastEdges(), want) })
	eventually(t, "the refusing edge tried", func() bool { return never.dials.Load() >= 2 })
	if e := log.lastEdges(); !slices.Equal(e, want) {
		t.Fatalf("edge list %v, want %v (an edge that never took the agent is not saved)", e, want)
	}

	live.push(live.addr()) // added is deleted
	eventually(t, "the unlisted edge left the list", func() bool { return slices.Equal(log.lastEdges(), []string{live.addr()}) })
}

// listedBy is the edge list the session at addr sent last.
func (a *Agent) listedBy(addr string) []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.listed[addr]
}

// One edge's list cannot take the others away, even when its session is
// the only one left: an edge of the agent's list that blips (a restart)
// while a stale or compromised edge lists only itself is dialed again, and
// the saved list is not touched.
func TestOneEdgeListCannotDropTheOthers(t *testing.T) {
	good, evil := newFakeEdge(t, "good"), newFakeEdge(t, "evil")
	good.onStart = []string{good.addr(), evil.addr()}
	evil.onStart = []string{evil.addr()}
	a, log := runAgent(t, Config{Edges: []string{good.addr()}})
	eventually(t, "both sessions (evil learned from good's list)", func() bool { return good.up() && evil.up() })
	eventually(t, "evil's list read", func() bool { return slices.Equal(a.listedBy(evil.addr()), []string{evil.addr()}) })
	n := good.dials.Load()
	good.kill() // evil's is now the only live session, and omits good
	eventually(t, "good dialed again", func() bool { return good.dials.Load() > n && good.up() })
	eventually(t, "both connected again", func() bool { return len(a.Connected()) == 2 })
	// The list gained evil (good lists it, and it took the agent) and
	// lost nothing.
	if e := log.lastEdges(); e != nil && !slices.Contains(e, good.addr()) {
		t.Fatalf("the saved edge list lost good: %v", e)
	}
	// Down for a while (connection refused, not a refusal of the
	// credentials): still not dropped.
	good.kill()
	good.ln.Close()
	time.Sleep(100 * time.Millisecond)
	a.mu.Lock()
	_, held := a.edges[good.addr()]
	a.mu.Unlock()
	if !held {
		t.Fatal("an edge that is down was dropped on one edge's list")
	}
}
