package e2e

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/privateconnect/pc/internal/testenv"
	"github.com/privateconnect/pc/internal/tunnel"
	"github.com/privateconnect/pc/sdk/agent"
	"github.com/privateconnect/pc/sdk/client"
)

// eventLog records an agent's connection events.
type eventLog struct {
	mu     sync.Mutex
	events []agent.Event
}

func (l *eventLog) record(e agent.Event) {
	l.mu.Lock()
	l.events = append(l.events, e)
	l.mu.Unlock()
}

func (l *eventLog) count(kind string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, e := range l.events {
		if e.Kind == kind {
			n++
		}
	}
	return n
}

func (l *eventLog) find(kind string) (agent.Event, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, e := range l.events {
		if e.Kind == kind {
			return e, true
		}
	}
	return agent.Event{}, false
}

// servedOrigin is a service answering "served".
func servedOrigin(t *testing.T) *httptest.Server {
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "served") }))
	t.Cleanup(origin.Close)
	return origin
}

// requireServed checks that the share link reaches servedOrigin.
func requireServed(t *testing.T, shareURL string) {
	t.Helper()
	resp, err := http.Get(shareURL + "/")
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Equal(t, 200, resp.StatusCode)
	require.Equal(t, "served", string(body))
}

// Two processes running one agent identity (a copied state file, a second
// `connect up` on another machine): the edge keeps the newest session and
// tells the older one why it ends; that agent stops with ErrReplaced instead
// of reconnecting, so the two do not displace each other back and forth, and
// the newer one keeps serving.
func TestSecondProcessOfAnAgentIdentity(t *testing.T) {
	if testing.Short() {
		t.Skip("whole system")
	}
	env := testenv.New(t, testenv.Options{})
	ed := env.Edges[0]
	origin := servedOrigin(t)

	id, token, edges := env.ProvisionAgent("copied")
	var firstLog, secondLog eventLog
	first := env.RunAgentWith(id, token, edges, func(c *agent.Config) { c.OnEvent = firstLog.record })
	svc := env.Expose(first, "web", origin.Listener.Addr().String())
	share := env.Share(svc.ID, client.CreateShareRequest{Name: "dup"})

	second := env.RunAgentWith(id, token, edges, func(c *agent.Config) { c.OnEvent = secondLog.record })
	select {
	case <-first.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the replaced agent did not stop")
	}
	require.ErrorIs(t, first.Err(), agent.ErrReplaced)
	ev, ok := firstLog.find(agent.EventReplaced)
	require.True(t, ok, "the replaced agent reports why it stopped")
	require.Contains(t, ev.Message, "another process runs the same agent identity")
	require.Contains(t, ev.Message, "127.0.0.1", "the reason names where the newer session came from")

	// The newer session stays: no swap back over several reconnect periods
	// (the test agents retry within 500 ms).
	require.Eventually(t, func() bool { return slices.Contains(ed.ConnectedAgents(), id) }, 3*time.Second, 10*time.Millisecond)
	time.Sleep(1500 * time.Millisecond)
	require.Equal(t, 1, secondLog.count(agent.EventConnected), "the newer session was not displaced")
	require.Zero(t, secondLog.count(agent.EventDisconnected))
	require.Equal(t, 1, firstLog.count(agent.EventConnected), "the replaced agent did not reconnect")
	select {
	case <-second.Done():
		t.Fatalf("the newer agent stopped: %v", second.Err())
	default:
	}

	// And it serves the share.
	requireServed(t, share.ShareURL)
}

// One edge cannot stop an agent: a (compromised) edge that says "replaced"
// only loses its own tunnel; the agent stays on its other edges and serves.
func TestOneEdgeCannotStopAnAgent(t *testing.T) {
	if testing.Short() {
		t.Skip("whole system")
	}
	env := testenv.New(t, testenv.Options{})
	ed := env.Edges[0]
	origin := servedOrigin(t)

	// The lying edge accepts any agent, opens the control stream, says the
	// session was replaced and keeps the connection open.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { ln.Close() })
	var accepted atomic.Int32
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			go func() {
				defer c.Close()
				sess, ctl, err := acceptAsEdge(c, "liar")
				if err != nil {
					return
				}
				defer sess.Close()
				_ = tunnel.WriteControl(ctl, &tunnel.Control{Type: tunnel.CtlReplaced, Reason: "a lie"})
				<-sess.CloseChan()
			}()
		}
	}()

	id, token, edges := env.ProvisionAgent("lied-to")
	var log eventLog
	// Given by hand (StaticEdges): the real edge does not list it, and an
	// unlisted edge from Edges would be dropped before it could lie.
	ag := env.RunAgentWith(id, token, edges, func(c *agent.Config) {
		c.StaticEdges = []string{ln.Addr().String()}
		c.OnEvent = log.record
	})
	svc := env.Expose(ag, "web", origin.Listener.Addr().String())
	share := env.Share(svc.ID, client.CreateShareRequest{Name: "kept"})
	require.Eventually(t, func() bool { _, ok := log.find(agent.EventReplaced); return ok }, 5*time.Second, 10*time.Millisecond)
	ev, _ := log.find(agent.EventReplaced)
	require.Equal(t, ln.Addr().String(), ev.Edge)

	time.Sleep(1500 * time.Millisecond) // several reconnect periods of the test agents
	select {
	case <-ag.Done():
		t.Fatalf("one edge stopped the agent: %v", ag.Err())
	default:
	}
	require.EqualValues(t, 1, accepted.Load(), "the agent does not reconnect to the edge that replaced it")
	require.True(t, slices.Contains(ed.ConnectedAgents(), id), "the agent keeps its tunnel to the real edge")
	requireServed(t, share.ShareURL)
}

// A replaced agent whose other edges are down stops too: retrying them, it
// would sit there with no tunnel while the other process serves.
func TestReplacedAgentWithItsOtherEdgeDown(t *testing.T) {
	if testing.Short() {
		t.Skip("whole system")
	}
	env := testenv.New(t, testenv.Options{})
	down, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	downAddr := down.Addr().String()
	down.Close()

	id, token, edges := env.ProvisionAgent("half-down")
	// Given by hand (StaticEdges): kept though no edge lists it.
	first := env.RunAgentWith(id, token, edges, func(c *agent.Config) { c.StaticEdges = []string{downAddr} })
	env.WaitAgentOnEdges(id, 5*time.Second)
	env.RunAgent(id, token, edges)
	select {
	case <-first.Done():
	case <-time.After(10 * time.Second):
		t.Fatalf("the replaced agent kept retrying its unreachable edge with no tunnel (connected: %v)", first.Connected())
	}
	require.ErrorIs(t, first.Err(), agent.ErrReplaced)
}
