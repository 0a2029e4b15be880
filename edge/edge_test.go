package edge_test

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/google/uuid"
	"github.com/privateconnect/pc/edge"
	"github.com/privateconnect/pc/internal/config"
	"github.com/privateconnect/pc/sdk/agent"
	"github.com/stretchr/testify/require"
)

// fakeControl serves the edge config stream from a snapshot and pushes
// changes on demand; it stands in for the control plane's two edge routes
// so the edge can be tested on its own (the whole system is tested with
// the real control plane in internal/e2e).
type fakeControl struct {
	mu      sync.Mutex
	snap    config.Snapshot
	subs    []chan config.Message
	reports []config.Report
	srv     *httptest.Server
}

func newFakeControl(t *testing.T, snap config.Snapshot) *fakeControl {
	fc := &fakeControl{snap: snap}
	fc.srv = httptest.NewServer(http.HandlerFunc(fc.serve))
	t.Cleanup(fc.srv.Close)
	return fc
}

func (fc *fakeControl) serve(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("Authorization") != "Bearer edge-token" {
		w.WriteHeader(401)
		return
	}
	switch r.URL.Path {
	case "/v1/edges/report":
		var rep config.Report
		_ = json.NewDecoder(r.Body).Decode(&rep)
		fc.mu.Lock()
		fc.reports = append(fc.reports, rep)
		fc.mu.Unlock()
		w.WriteHeader(200)
	case "/v1/edges/config":
		ch := make(chan config.Message, 16)
		fc.mu.Lock()
		snap := fc.snap
		fc.subs = append(fc.subs, ch)
		fc.mu.Unlock()
		w.Header().Set("Content-Type", "application/x-ndjson")
		enc := json.NewEncoder(w)
		_ = enc.Encode(config.Message{Type: config.MsgSnapshot, EdgeID: "edge-a", Epoch: snap.Epoch, Version: snap.Version, Snapshot: &snap})
		w.(http.Flusher).Flush()
		for {
			select {
			case <-r.Context().Done():
				return
			case m := <-ch:
				_ = enc.Encode(m)
				w.(http.Flusher).Flush()
			}
		}
	default:
		w.WriteHeader(404)
	}
}

// push applies changes to the snapshot and streams them.
func (fc *fakeControl) push(changes ...config.Change) {
	fc.mu.Lock()
	defer fc.mu.Unlock()
	for i := range changes {
		fc.snap.Version++
		changes[i].Version = fc.snap.Version
		if changes[i].Kind == config.KindShare && changes[i].Share != nil {
			for j := range fc.snap.Shares {
				if fc.snap.Shares[j].ID == changes[i].ID {
					fc.snap.Shares[j] = *changes[i].Share
				}
			}
		}
	}
	for _, ch := range fc.subs {
		ch <- config.Message{Type: config.MsgChanges, Epoch: fc.snap.Epoch, Version: fc.snap.Version, Changes: changes}
	}
}

func hashHex(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

type world struct {
	fc       *fakeControl
	edge     *edge.Server
	origin   *httptest.Server
	agentID  string
	token    string
	shareTok string
	share    config.Share
	cancelAg context.CancelFunc
	agentErr chan error
}

func newWorld(t *testing.T, originHandler http.Handler) *world {
	t.Helper()
	w := &world{origin: httptest.NewServer(originHandler), agentID: uuid.NewString()}
	t.Cleanup(w.origin.Close)
	tok := make([]byte, 32)
	_, _ = rand.Read(tok)
	w.token = hex.EncodeToString(tok)
	st := make([]byte, 24)
	_, _ = rand.Read(st)
	w.shareTok = base64.RawURLEncoding.EncodeToString(st)
	host, port, _ := net.SplitHostPort(strings.TrimPrefix(w.origin.URL, "http://"))
	var p int
	fmt.Sscan(port, &p)
	svcID := uuid.NewString()
	w.share = config.Share{ID: uuid.NewString(), WorkspaceID: "ws", ServiceID: svcID, Name: "s", TokenHash: hashHex(w.shareTok)}
	snap := config.Snapshot{Epoch: "e1", Version: 1,
		Services: []config.Service{{ID: svcID, WorkspaceID: "ws", AgentID: w.agentID, Name: "web", Protocol: "http", TargetHost: host, TargetPort: p}},
		Agents:   []config.Agent{{ID: w.agentID, WorkspaceID: "ws", TokenHash: hashHex(w.token), TokenExpiresAt: time.Now().Add(time.Hour)}},
		Shares:   []config.Share{w.share},
	}
	w.fc = newFakeControl(t, snap)
	w.startEdge(t, t.TempDir())
	w.startAgent(t)
	return w
}

func (w *world) startEdge(t *testing.T, dataDir string) {
	t.Helper()
	e, err := edge.New(edge.Config{ControlURL: w.fc.srv.URL, Token: "edge-token", HTTPAddr: "127.0.0.1:0",
		TunnelAddr: "127.0.0.1:0", AdminAddr: "127.0.0.1:0", DataDir: dataDir, ReportInterval: 50 * time.Millisecond,
		DisablePlugins: true}) // policies are tested with the real engine in internal/e2e
	require.NoError(t, err)
	require.NoError(t, e.Start(context.Background()))
	t.Cleanup(func() { _ = e.Close() })
	w.edge = e
	require.Eventually(t, func() bool { return e.Table().Version >= 1 }, 5*time.Second, 10*time.Millisecond)
}

func (w *world) startAgent(t *testing.T) {
	t.Helper()
	a, err := agent.New(agent.Config{AgentID: w.agentID, Token: w.token, Edges: []string{w.edge.TunnelAddr()},
		MinBackoff: 20 * time.Millisecond, MaxBackoff: 200 * time.Millisecond})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	w.cancelAg, w.agentErr = cancel, done
	go func() { err := a.Run(ctx); done <- err; close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	require.Eventually(t, func() bool { return len(w.edge.ConnectedAgents()) == 1 }, 5*time.Second, 10*time.Millisecond)
}

func (w *world) url(path string) string {
	return "http://" + w.edge.HTTPAddr() + "/shared/" + w.shareTok + path
}

func TestShareProxying(t *testing.T) {
	w := newWorld(t, http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		rw.Header().Set("X-Seen-Path", r.URL.RequestURI())
		rw.Header().Set("X-Seen-XFF", r.Header.Get("X-Forwarded-For"))
		rw.Header().Set("X-Seen-Share", r.Header.Get("X-Share-Id"))
		rw.Header().Set("X-Seen-Conn", r.Header.Get("X-Hop"))
		fmt.Fprintf(rw, "hello %s", r.Method)
	}))
	req, _ := http.NewRequest("GET", w.url("/a/b?x=1"), nil)
	req.Header.Set("Connection", "X-Hop")
	req.Header.Set("X-Hop", "drop-me")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Equal(t, 200, resp.StatusCode)
	require.Equal(t, "hello GET", string(body))
	require.Equal(t, "/a/b?x=1", resp.Header.Get("X-Seen-Path"))
	require.Equal(t, "127.0.0.1", resp.Header.Get("X-Seen-XFF"))
	require.Equal(t, w.share.ID, resp.Header.Get("X-Seen-Share"))
	require.Empty(t, resp.Header.Get("X-Seen-Conn"), "headers named in Connection are hop-by-hop")

	// Unknown token → 404 in the error envelope.
	resp, err = http.Get("http://" + w.edge.HTTPAddr() + "/shared/nope/")
	require.NoError(t, err)
	var e map[string]any
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&e))
	resp.Body.Close()
	require.Equal(t, 404, resp.StatusCode)
	require.Equal(t, "Not Found", e["error"])

	// Revoke: 410 within 1 s.
	revoked := w.share
	revoked.Revoked = true
	w.fc.push(config.Change{Op: config.OpUpsert, Kind: config.KindShare, ID: revoked.ID, Share: &revoked})
	require.Eventually(t, func() bool {
		resp, err := http.Get(w.url("/"))
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 410
	}, time.Second, 10*time.Millisecond)
}

func TestStreamingBodies(t *testing.T) {
	w := newWorld(t, http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/upload":
			n, err := io.Copy(io.Discard, r.Body)
			if err != nil {
				rw.WriteHeader(500)
				return
			}
			fmt.Fprintf(rw, "%d", n)
		case "/sse":
			rw.Header().Set("Content-Type", "text/event-stream")
			for i := 0; ; i++ {
				if _, err := fmt.Fprintf(rw, "data: %d\n\n", i); err != nil {
					return
				}
				rw.(http.Flusher).Flush()
				select {
				case <-r.Context().Done():
					return
				case <-time.After(20 * time.Millisecond):
				}
			}
		}
	}))
	// 100 MiB upload, chunked (unknown length), streamed.
	const size = 100 << 20
	pr, pw := io.Pipe()
	go func() {
		buf := make([]byte, 1<<20)
		for i := 0; i < size/len(buf); i++ {
			if _, err := pw.Write(buf); err != nil {
				return
			}
		}
		pw.Close()
	}()
	resp, err := http.Post(w.url("/upload"), "application/octet-stream", pr)
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Equal(t, 200, resp.StatusCode)
	require.Equal(t, fmt.Sprint(size), string(body))

	// SSE: events arrive one by one, long before the response ends.
	resp, err = http.Get(w.url("/sse"))
	require.NoError(t, err)
	br := bufio.NewReader(resp.Body)
	start := time.Now()
	for i := 0; i < 3; i++ {
		line, err := br.ReadString('\n')
		require.NoError(t, err)
		require.Equal(t, fmt.Sprintf("data: %d\n", i), line)
		_, _ = br.ReadString('\n')
	}
	require.Less(t, time.Since(start), 2*time.Second)
	resp.Body.Close()
}

func TestWebSocketEcho(t *testing.T) {
	w := newWorld(t, http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(rw, r, nil)
		if err != nil {
			return
		}
		defer c.CloseNow()
		for {
			typ, msg, err := c.Read(r.Context())
			if err != nil {
				return
			}
			if err := c.Write(r.Context(), typ, msg); err != nil {
				return
			}
		}
	}))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, resp, err := websocket.Dial(ctx, "ws://"+w.edge.HTTPAddr()+"/shared/"+w.shareTok+"/ws", nil)
	if err != nil && resp != nil {
		b, _ := io.ReadAll(resp.Body)
		t.Logf("body: %s", b)
	}
	require.NoError(t, err)
	defer c.CloseNow()
	for i := 0; i < 5; i++ {
		msg := fmt.Sprintf("ping %d", i)
		require.NoError(t, c.Write(ctx, websocket.MessageText, []byte(msg)))
		_, got, err := c.Read(ctx)
		require.NoError(t, err)
		require.Equal(t, msg, string(got))
	}
}

func TestAgentDropMidRequest(t *testing.T) {
	entered := make(chan struct{}, 1)
	w := newWorld(t, http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			entered <- struct{}{}
			select {
			case <-r.Context().Done():
			case <-time.After(30 * time.Second):
			}
			return
		}
		fmt.Fprint(rw, "ok")
	}))
	type result struct {
		status int
		err    error
	}
	done := make(chan result, 1)
	go func() {
		resp, err := http.Get(w.url("/slow"))
		if err != nil {
			done <- result{err: err}
			return
		}
		resp.Body.Close()
		done <- result{status: resp.StatusCode}
	}()
	<-entered
	w.cancelAg() // the agent goes away mid-request
	select {
	case r := <-done:
		require.NoError(t, r.err)
		require.Equal(t, 502, r.status)
	case <-time.After(3 * time.Second):
		t.Fatal("the visitor hung after the tunnel dropped")
	}
	<-w.agentErr
	// Offline → 503.
	require.Eventually(t, func() bool {
		resp, err := http.Get(w.url("/"))
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 503
	}, 2*time.Second, 10*time.Millisecond)
	// Reconnect: works again within 2 s.
	w.startAgent(t)
	require.Eventually(t, func() bool {
		resp, err := http.Get(w.url("/"))
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	}, 2*time.Second, 10*time.Millisecond)
}

func TestBadAgentCredentialsRejected(t *testing.T) {
	w := newWorld(t, http.NotFoundHandler())
	events := make(chan agent.Event, 4)
	a, err := agent.New(agent.Config{AgentID: w.agentID, Token: "wrong", Edges: []string{w.edge.TunnelAddr()},
		MinBackoff: time.Second, OnEvent: func(e agent.Event) { events <- e }})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go a.Run(ctx)
	select {
	case e := <-events:
		require.Equal(t, agent.EventRejected, e.Kind)
		require.Contains(t, e.Message, "invalid agent credentials")
	case <-time.After(3 * time.Second):
		t.Fatal("no rejection")
	}
	// The legitimate agent is still connected.
	require.Equal(t, []string{w.agentID}, w.edge.ConnectedAgents())
}

func TestEdgeRestartsFromSavedSnapshot(t *testing.T) {
	w := newWorld(t, http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) { fmt.Fprint(rw, "ok") }))
	dir := t.TempDir()
	e2, err := edge.New(edge.Config{ControlURL: w.fc.srv.URL, Token: "edge-token", HTTPAddr: "127.0.0.1:0",
		TunnelAddr: "127.0.0.1:0", AdminAddr: "-", DataDir: dir, DisablePlugins: true})
	require.NoError(t, err)
	require.NoError(t, e2.Start(context.Background()))
	require.Eventually(t, func() bool { return e2.ID() == "edge-a" && e2.Table().Version >= 1 }, 5*time.Second, 10*time.Millisecond)
	require.NoError(t, e2.Close())

	// Control goes away; a new edge process on the same data dir serves.
	w.fc.srv.CloseClientConnections()
	w.fc.srv.Close()
	e3, err := edge.New(edge.Config{ControlURL: w.fc.srv.URL, Token: "edge-token", HTTPAddr: "127.0.0.1:0",
		TunnelAddr: "127.0.0.1:0", AdminAddr: "-", DataDir: dir, DisablePlugins: true})
	require.NoError(t, err)
	require.NoError(t, e3.Start(context.Background()))
	defer e3.Close()
	require.Equal(t, "edge-a", e3.ID())
	_, services, agents := e3.Table().Counts()
	require.Equal(t, 1, services)
	require.Equal(t, 1, agents)
	a, err := agent.New(agent.Config{AgentID: w.agentID, Token: w.token, Edges: []string{e3.TunnelAddr()}})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go a.Run(ctx)
	require.Eventually(t, func() bool {
		resp, err := http.Get("http://" + e3.HTTPAddr() + "/shared/" + w.shareTok + "/")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	}, 3*time.Second, 20*time.Millisecond)
}
