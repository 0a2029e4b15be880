package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/privateconnect/pc/internal/syncbuf"
	"github.com/privateconnect/pc/internal/testnet"
	"github.com/privateconnect/pc/internal/tunnel"
	"github.com/privateconnect/pc/sdk/agent"
	"github.com/privateconnect/pc/sdk/client"
)

// provisionRoutes makes the fake answer the identity routes.
func provisionRoutes(h *harness) {
	h.ok("POST /v1/agents/provision", 201, `{"agentId":"`+agentID+`","token":"`+strings.Repeat("a", 64)+`","expiresAt":"`+
		time.Now().Add(30*24*time.Hour).UTC().Format(time.RFC3339)+`","workspaceId":"w1","workspaceName":"default","edges":[{"id":"e1","tunnelAddr":"127.0.0.1:7070"}]}`)
	h.ok("POST /v1/agents/register", 201, `{"id":"`+agentID+`","name":"laptop","label":"default","workspaceId":"w1"}`)
	h.fail("GET /v1/edges", 403, `{"error":"Forbidden","message":"admin scope required","statusCode":403}`)
}

// exposeHarness answers what `connect expose` asks for: the identity
// routes and a service registration.
func exposeHarness(t *testing.T) *harness {
	h := newHarness(t)
	provisionRoutes(h)
	h.ok("POST /v1/services/register", 201, webService)
	return h
}

// skipWithoutLock skips a test of the identity lock where this build has none.
func skipWithoutLock(t *testing.T) {
	if !lockEnforced {
		t.Skip("no flock(2) in this build")
	}
}

func readState(t *testing.T, path string) agentState {
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	var st agentState
	require.NoError(t, json.Unmarshal(b, &st))
	return st
}

func TestExposeProvisionsRegistersAndRuns(t *testing.T) {
	h := exposeHarness(t)

	out, errOut, code := h.run("expose", "localhost:3000", "--name", "web", "--protocol", "http", "--agent-name", "laptop")
	require.Equal(t, 0, code, errOut)
	assert.Contains(t, errOut, "Provisioned agent "+agentID)
	assert.Contains(t, out, "Exposing web → localhost:3000")
	assert.Contains(t, out, "port 23001 on every edge (e.g. 127.0.0.1:23001)")
	assert.Contains(t, out, "connect link web")
	assert.Contains(t, out, "connected to edge 127.0.0.1:7070")

	assert.Equal(t, map[string]any{"clientType": "cli", "name": "laptop"}, body(t, h.one("POST", "/v1/agents/provision")))
	reg := body(t, h.one("POST", "/v1/agents/register"))
	assert.Equal(t, agentID, reg["agentId"])
	assert.Equal(t, strings.Repeat("a", 64), reg["token"])
	assert.JSONEq(t, `{"agentId":"`+agentID+`","name":"web","targetHost":"localhost","targetPort":3000,"protocol":"http"}`,
		string(h.one("POST", "/v1/services/register").Body))

	require.Len(t, h.agents, 1)
	cfg := h.agents[0]
	assert.Equal(t, agentID, cfg.AgentID)
	assert.Equal(t, strings.Repeat("a", 64), cfg.Token)
	assert.Equal(t, []string{"127.0.0.1:7070"}, cfg.Edges)
	assert.NotNil(t, cfg.Logger)

	// The identity is stored privately.
	fi, err := os.Stat(h.state)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), fi.Mode().Perm())
	di, err := os.Stat(filepath.Dir(h.state))
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o700), di.Mode().Perm())
	st := readState(t, h.state)
	assert.Equal(t, agentID, st.AgentID)
	assert.Equal(t, "w1", st.WorkspaceID)
	assert.Equal(t, h.srv.URL, st.ControlURL)

	// A second run reuses the identity.
	_, errOut, code = h.run("expose", "3000", "--detach")
	require.Equal(t, 0, code, errOut)
	assert.Len(t, h.requests("POST", "/v1/agents/provision"), 1)
	assert.Len(t, h.requests("POST", "/v1/agents/register"), 2)
	assert.Len(t, h.agents, 1, "--detach does not run the agent")
}

func TestExposeStopsCleanlyOnCancel(t *testing.T) {
	h := newHarness(t)
	provisionRoutes(h)
	h.ok("POST /v1/services/register", 200, webService)
	ctx, cancel := context.WithCancel(context.Background())
	h.agentRun = func(actx context.Context, cfg agent.Config) error {
		cfg.OnEvent(agent.Event{Kind: agent.EventConnected, Edge: cfg.Edges[0]})
		cancel() // Ctrl-C
		<-actx.Done()
		return nil
	}
	out, errOut, code := h.runCtx(ctx, "expose", "localhost:3000", "--json")
	assert.Equal(t, 0, code, errOut)
	dec := json.NewDecoder(strings.NewReader(out))
	var svc map[string]any
	require.NoError(t, dec.Decode(&svc))
	assert.Equal(t, "web", svc["name"])
	var ev map[string]any
	require.NoError(t, dec.Decode(&ev))
	assert.Equal(t, "connected", ev["event"])
	// The default name derives from the port.
	assert.Equal(t, "web", body(t, h.one("POST", "/v1/services/register"))["name"])
}

func TestExposeRotatesTokenNearExpiry(t *testing.T) {
	h := newHarness(t)
	provisionRoutes(h)
	h.ok("POST /v1/services/register", 200, webService)
	h.ok("POST /v1/agents/rotate-token", 200, `{"token":"`+strings.Repeat("b", 64)+`","expiresAt":"2099-01-01T00:00:00Z"}`)
	require.NoError(t, saveState(h.state, &agentState{
		AgentID: agentID, Token: strings.Repeat("a", 64), ExpiresAt: time.Now().Add(time.Hour),
		ControlURL: h.srv.URL, Edges: []client.AgentEdge{{ID: "e1", TunnelAddr: "127.0.0.1:7070"}},
	}))
	_, errOut, code := h.run("expose", "localhost:3000")
	require.Equal(t, 0, code, errOut)
	assert.Empty(t, h.requests("POST", "/v1/agents/provision"))
	assert.Equal(t, map[string]any{"agentId": agentID, "currentToken": strings.Repeat("a", 64)}, body(t, h.one("POST", "/v1/agents/rotate-token")))
	assert.Equal(t, strings.Repeat("b", 64), h.agents[0].Token)
	assert.Equal(t, strings.Repeat("b", 64), readState(t, h.state).Token)
	assert.Equal(t, strings.Repeat("b", 64), body(t, h.one("POST", "/v1/agents/register"))["token"])
}

func TestExposeRefusesStateOfAnotherControlPlane(t *testing.T) {
	h := newHarness(t)
	require.NoError(t, saveState(h.state, &agentState{AgentID: agentID, Token: "t", ExpiresAt: time.Now().Add(1000 * time.Hour), ControlURL: "http://elsewhere:3001"}))
	_, errOut, code := h.run("expose", "localhost:3000")
	assert.Equal(t, 1, code)
	assert.Contains(t, errOut, "holds an agent of http://elsewhere:3001")
}

func TestExposeRefreshesEdgesWithAdminKey(t *testing.T) {
	h := newHarness(t)
	h.ok("POST /v1/agents/provision", 201, `{"agentId":"`+agentID+`","token":"t","expiresAt":"2099-01-01T00:00:00Z","edges":[]}`)
	h.ok("POST /v1/agents/register", 201, `{"id":"`+agentID+`"}`)
	h.ok("GET /v1/edges", 200, `[{"id":"e1","tunnelAddr":"127.0.0.1:7070"},{"id":"e2","tunnelAddr":"tls://edge2:7443"}]`)
	h.ok("POST /v1/services/register", 201, webService)
	_, errOut, code := h.run("expose", "localhost:3000")
	require.Equal(t, 0, code, errOut)
	assert.Equal(t, []string{"127.0.0.1:7070", "tls://edge2:7443"}, h.agents[0].Edges)
}

func TestExposeWithoutEdges(t *testing.T) {
	h := newHarness(t)
	h.ok("POST /v1/agents/provision", 201, `{"agentId":"`+agentID+`","token":"t","expiresAt":"2099-01-01T00:00:00Z","edges":[]}`)
	h.ok("POST /v1/agents/register", 201, `{"id":"`+agentID+`"}`)
	h.ok("GET /v1/edges", 200, `[]`)
	h.ok("POST /v1/services/register", 201, webService)
	_, errOut, code := h.run("expose", "localhost:3000")
	assert.Equal(t, 1, code)
	assert.Contains(t, errOut, "no edge to connect to")
}

func TestUpServesRegisteredServices(t *testing.T) {
	h := newHarness(t)
	provisionRoutes(h)
	h.ok("GET /v1/services", 200, `[`+webService+`]`)
	out, errOut, code := h.run("up", "--name", "build-box", "--label", "ci")
	require.Equal(t, 0, code, errOut)
	assert.Equal(t, map[string]any{"clientType": "cli", "name": "build-box", "label": "ci"}, body(t, h.one("POST", "/v1/agents/provision")))
	assert.Equal(t, "agentId="+agentID+"&limit=500", h.one("GET", "/v1/services").Query)
	assert.Regexp(t, `(?m)^web\s+localhost:3000\s+http\s+23001$`, out)
	require.Len(t, h.agents, 1)

	// The agent dials only its services' targets; a service registered
	// later is checked with the API (its own, same target), anything else
	// an edge names is refused.
	cfg := h.agents[0]
	assert.Equal(t, []string{"localhost:3000"}, cfg.AllowedTargets)
	require.NotNil(t, cfg.VerifyTarget)
	const othersID = "00000000-0000-4000-8000-0000000000aa"
	h.ok("GET /v1/services/"+serviceID, 200, webService)
	h.ok("GET /v1/services/"+othersID, 200, strings.NewReplacer(agentID, "00000000-0000-4000-8000-000000000000", serviceID, othersID).Replace(webService))
	ctx := context.Background()
	assert.True(t, cfg.VerifyTarget(ctx, serviceID, "localhost:3000"))
	assert.False(t, cfg.VerifyTarget(ctx, serviceID, "169.254.169.254:80"), "not the service's target")
	assert.False(t, cfg.VerifyTarget(ctx, othersID, "localhost:3000"), "another agent's service")
}

func TestAgentsRotateTokenUsesStateFile(t *testing.T) {
	h := newHarness(t)
	h.ok("POST /v1/agents/rotate-token", 200, `{"token":"new","expiresAt":"2099-01-01T00:00:00Z"}`)
	require.NoError(t, saveState(h.state, &agentState{AgentID: agentID, Token: "old", ControlURL: h.srv.URL}))
	out, _, code := h.run("agents", "rotate-token")
	require.Equal(t, 0, code)
	assert.Contains(t, out, "valid until 2099-01-01T00:00:00Z")
	assert.Equal(t, "new", readState(t, h.state).Token)

	// Not under a running agent, which keeps the token it started with.
	if !lockEnforced {
		return
	}
	held, err := lockAgent(h.state)
	require.NoError(t, err)
	held.mark(true, nil)
	defer held.release()
	_, errOut, code := h.run("agents", "rotate-token")
	assert.Equal(t, 1, code)
	assert.Contains(t, errOut, "is running (process "+strconv.Itoa(os.Getpid()))
	assert.Len(t, h.requests("POST", "/v1/agents/rotate-token"), 1)
	assert.Equal(t, "new", readState(t, h.state).Token)
}

func TestReachForwardsToTheEdgeTCPPort(t *testing.T) {
	// A stand-in for the edge's TCP port of the service: an echo server.
	edge, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer edge.Close()
	go func() {
		for {
			c, err := edge.Accept()
			if err != nil {
				return
			}
			go func() { io.Copy(c, c); c.Close() }()
		}
	}()
	port := edge.Addr().(*net.TCPAddr).Port

	h := newHarness(t)
	h.ok("GET /v1/services", 200, `[{"id":"`+serviceID+`","name":"db","targetPort":5432,"tunnelPort":`+strconv.Itoa(port)+`}]`)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var stdout, stderr syncbuf.Buffer
	done := make(chan int, 1)
	go func() {
		done <- h.app(&stdout, &stderr).execute(ctx, []string{"reach", "db", "--port", "0", "--edge", "127.0.0.1"})
	}()

	var addr string
	require.Eventually(t, func() bool { addr = strings.TrimSpace(stdout.String()); return addr != "" }, 5*time.Second, 10*time.Millisecond)
	conn, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	_, err = conn.Write([]byte("ping"))
	require.NoError(t, err)
	buf := make([]byte, 4)
	_, err = io.ReadFull(conn, buf)
	require.NoError(t, err)
	assert.Equal(t, "ping", string(buf))
	conn.Close()

	cancel()
	select {
	case code := <-done:
		assert.Equal(t, 0, code, stderr.String())
	case <-time.After(5 * time.Second):
		t.Fatal("reach did not stop on cancel")
	}

	// A --port that is taken is an error, never another port: a client of
	// that port would reach whatever holds it.
	held, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer held.Close()
	var out2, err2 syncbuf.Buffer
	code := h.app(&out2, &err2).execute(context.Background(), []string{"reach", "db", "--port", strconv.Itoa(held.Addr().(*net.TCPAddr).Port), "--edge", "127.0.0.1"})
	assert.Equal(t, 1, code)
	assert.Contains(t, err2.String(), "cannot listen on 127.0.0.1:"+strconv.Itoa(held.Addr().(*net.TCPAddr).Port))
	assert.Empty(t, out2.String())
}

func TestRunningAgentRenewsItsToken(t *testing.T) {
	h := newHarness(t)
	provisionRoutes(h)
	h.ok("POST /v1/services/register", 200, webService)
	h.ok("POST /v1/agents/rotate-token", 200, `{"token":"fresh","expiresAt":"2099-01-01T00:00:00Z"}`)
	require.NoError(t, saveState(h.state, &agentState{
		AgentID: agentID, Token: "old", ExpiresAt: time.Now().Add(rotateBefore + 100*time.Millisecond),
		ControlURL: h.srv.URL, Edges: []client.AgentEdge{{TunnelAddr: "127.0.0.1:7070"}},
	}))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	runs := 0
	h.agentRun = func(actx context.Context, cfg agent.Config) error {
		runs++
		if runs == 2 {
			cancel() // Ctrl-C after the restart
		}
		<-actx.Done()
		return nil
	}
	var stdout, stderr syncbuf.Buffer
	a := h.app(&stdout, &stderr)
	a.minRenewWait = 10 * time.Millisecond
	code := a.execute(ctx, []string{"expose", "localhost:3000"})
	require.Equal(t, 0, code, stderr.String())
	require.Len(t, h.agents, 2)
	assert.Equal(t, "old", h.agents[0].Token)
	assert.Equal(t, "fresh", h.agents[1].Token)
	assert.Equal(t, "fresh", readState(t, h.state).Token)
}

func TestExposeAllowPlaintextFlag(t *testing.T) {
	h := exposeHarness(t)
	_, errOut, code := h.run("expose", "localhost:3000", "--name", "web", "--agent-name", "laptop")
	require.Equal(t, 0, code, errOut)
	_, errOut, code = h.run("expose", "localhost:3000", "--name", "web", "--allow-plaintext")
	require.Equal(t, 0, code, errOut)
	require.Len(t, h.agents, 2)
	assert.False(t, h.agents[0].AllowPlaintext, "plain TCP off loopback is refused by default")
	assert.True(t, h.agents[1].AllowPlaintext)
}

// One identity runs in one process: a second `expose` while the agent runs
// registers its service for that agent and leaves the serving to it, and
// `up` refuses. Two processes of one identity would displace each other's
// tunnel on every edge for as long as both ran.
func TestOneProcessPerAgentIdentity(t *testing.T) {
	skipWithoutLock(t)
	h := exposeHarness(t)
	_, errOut, code := h.run("expose", "localhost:3000", "--name", "web", "--detach")
	require.Equal(t, 0, code, errOut)
	require.Len(t, h.requests("POST", "/v1/agents/register"), 1)

	// Another process runs the agent (a lock of its own on the state file).
	held, err := lockAgent(h.state)
	require.NoError(t, err)
	held.mark(true, nil)
	lockFile, err := os.ReadFile(h.state + ".lock")
	require.NoError(t, err)
	assert.Equal(t, strconv.Itoa(os.Getpid())+" run", strings.TrimSpace(string(lockFile)), "the lock file names the running process")

	out, errOut, code := h.run("expose", "localhost:3000", "--name", "web")
	require.Equal(t, 0, code, errOut)
	assert.Contains(t, out, "Exposing web → localhost:3000")
	assert.Contains(t, out, "The agent "+agentID+" already runs (process "+strconv.Itoa(os.Getpid())+", state file "+h.state+"): it serves web too.")
	assert.Empty(t, h.agents, "no second agent runs")
	assert.Len(t, h.requests("POST", "/v1/agents/register"), 1, "the running process's identity is left as it is")
	reg := h.requests("POST", "/v1/services/register")
	require.Len(t, reg, 2)
	assert.Equal(t, agentID, body(t, reg[1])["agentId"], "the service goes to the running agent")

	_, errOut, code = h.run("up")
	assert.Equal(t, 1, code)
	assert.Contains(t, errOut, "the agent of this identity already runs (process "+strconv.Itoa(os.Getpid()))
	assert.Contains(t, errOut, "--state")
	assert.Empty(t, h.agents)

	// Once that process is gone, up runs the agent (and holds the lock while
	// it does).
	held.release()
	h.ok("GET /v1/services", 200, `[`+webService+`]`)
	ctx, cancel := context.WithCancel(context.Background())
	h.agentRun = func(actx context.Context, cfg agent.Config) error {
		_, err := lockAgent(h.state)
		_, busy := runningElsewhere(err)
		assert.True(t, busy, "the lock is held while the agent runs: %v", err)
		cancel()
		<-actx.Done()
		return nil
	}
	_, errOut, code = h.runCtx(ctx, "up")
	require.Equal(t, 0, code, errOut)
	again, err := lockAgent(h.state)
	require.NoError(t, err, "released when the command ends")
	again.release()
}

// Reach identities: a second `connect reach` running at once takes the next
// one instead of displacing the first's tunnel.
func TestReachIdentityPerRunningReach(t *testing.T) {
	skipWithoutLock(t)
	dir := t.TempDir()
	state := filepath.Join(dir, "agent.json")
	host, _ := os.Hostname()
	var apps []*app
	for i, want := range []string{"reach-agent.json", "reach-2-agent.json", "reach-3-agent.json"} {
		a := newApp(io.Discard, io.Discard, func(string) (string, bool) { return "", false })
		a.statePath = state
		name, err := a.takeReachIdentity(context.Background())
		require.NoError(t, err)
		a.markRunning(nil) // as the reach agent's start does
		assert.Equal(t, filepath.Join(dir, want), a.statePath)
		if i == 0 {
			assert.Equal(t, "reach-"+host, name)
		} else {
			assert.Equal(t, fmt.Sprintf("reach-%d-%s", i+1, host), name)
		}
		apps = append(apps, a)
	}
	// The first one ends: its identity is free again.
	apps[0].releaseAgentLock()
	a := newApp(io.Discard, io.Discard, func(string) (string, bool) { return "", false })
	a.statePath = state
	_, err := a.takeReachIdentity(context.Background())
	require.NoError(t, err)
	assert.Equal(t, filepath.Join(dir, "reach-agent.json"), a.statePath)
	for _, a := range append(apps[1:], a) {
		a.releaseAgentLock()
	}
}

// A service registered just before its agent starts is "offline" for a
// moment: expose does not print that status when it is about to run the
// agent, and does with --detach, where it is the truth.
func TestExposeLeavesOutOfflineWhenStarting(t *testing.T) {
	h := newHarness(t)
	provisionRoutes(h)
	h.ok("POST /v1/services/register", 201, strings.Replace(webService, `"status":"ok"`, `"status":"offline"`, 1))
	out, errOut, code := h.run("expose", "localhost:3000", "--name", "web")
	require.Equal(t, 0, code, errOut)
	assert.Contains(t, out, "Exposing web → localhost:3000 (protocol http)\n")
	out, errOut, code = h.run("expose", "localhost:3000", "--name", "web", "--detach")
	require.Equal(t, 0, code, errOut)
	assert.Contains(t, out, "(protocol http, status offline)")
	assert.Contains(t, out, "Share link: connect link web")
}

// A TCP service is pointed to reach, not to a share link (which speaks
// HTTP: following it gave a 502 from Postgres).
func TestExposeTCPPointsToReach(t *testing.T) {
	h := newHarness(t)
	provisionRoutes(h)
	h.ok("POST /v1/services/register", 201, strings.Replace(strings.Replace(webService, `"protocol":"http"`, `"protocol":"tcp"`, 1), `"name":"web"`, `"name":"db"`, 1))
	out, errOut, code := h.run("expose", "localhost:5432", "--name", "db", "--protocol", "tcp", "--detach")
	require.Equal(t, 0, code, errOut)
	assert.Contains(t, out, "Reach it:   connect reach db")
	assert.NotContains(t, out, "Share link")
}

// A malformed --pin-sha256 is a usage error before anything is provisioned.
func TestBadPinRefusedFirst(t *testing.T) {
	h := exposeHarness(t)
	for _, cmd := range [][]string{{"expose", "localhost:3000", "--name", "web"}, {"up"}, {"reach", "web"}} {
		_, errOut, code := h.run(append(cmd, "--pin-sha256", "q83vEjRWeJASNFZ4kBI0VniQEjRWeJASNFZ4kBI0Vng=")...)
		assert.Equal(t, 2, code, "%v: %s", cmd, errOut)
		assert.Contains(t, errOut, "--pin-sha256: a pin is the hex SHA-256 of the edge certificate's public key")
	}
	assert.Empty(t, h.requests("POST", "/v1/agents/provision"))
	assert.Empty(t, h.requests("POST", "/v1/services/register"))
	// Hex with colons is a pin.
	_, errOut, code := h.run("expose", "localhost:3000", "--name", "web", "--detach", "--pin-sha256", strings.Repeat("ab:", 31)+"ab")
	assert.Equal(t, 0, code, errOut)
}

// A command that holds the identity only to set it up (expose --detach,
// rotate-token, the start of up) is waited for, not taken for a running
// agent: the second expose then runs the agent itself.
func TestSetupHolderIsWaitedFor(t *testing.T) {
	skipWithoutLock(t)
	h := exposeHarness(t)
	held, err := lockAgent(h.state) // "<pid> setup"
	require.NoError(t, err)
	time.AfterFunc(300*time.Millisecond, held.release)
	out, errOut, code := h.run("expose", "localhost:3000", "--name", "web")
	require.Equal(t, 0, code, errOut)
	assert.NotContains(t, out, "already runs")
	assert.Len(t, h.agents, 1, "this process runs the agent once the other one is done")

	// One that stays in setup past setupWait is an error naming it.
	old := setupWait
	setupWait = 200 * time.Millisecond
	defer func() { setupWait = old }()
	held, err = lockAgent(h.state)
	require.NoError(t, err)
	defer held.release()
	_, errOut, code = h.run("up")
	assert.Equal(t, 1, code)
	assert.Contains(t, errOut, "is still using this identity after 200ms")

	// Ctrl-C ends the wait at once, not after setupWait.
	setupWait = time.Minute
	a := h.app(io.Discard, io.Discard)
	a.statePath = h.state
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(200*time.Millisecond, cancel)
	start := time.Now()
	err = a.holdAgentLock(ctx)
	require.ErrorIs(t, err, context.Canceled)
	assert.Contains(t, err.Error(), "interrupted while waiting for process")
	assert.Less(t, time.Since(start), 5*time.Second)
}

// A reach whose service is gone (deleted) stops, saying so, instead of
// refusing every connection for ever.
func TestReachStopsWhenTheServiceIsGone(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	var stdout, stderr syncbuf.Buffer
	a := newHarness(t).app(&stdout, &stderr)
	a.log = slog.New(slog.DiscardHandler)
	done := make(chan error, 1)
	go func() {
		done <- a.forward(context.Background(), ln, func(context.Context) (net.Conn, error) {
			return nil, fmt.Errorf("%w: no such service", agent.ErrNoSuchService)
		})
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	require.NoError(t, err)
	defer c.Close()
	select {
	case err := <-done:
		require.ErrorContains(t, err, "the service no longer exists")
	case <-time.After(5 * time.Second):
		t.Fatal("reach went on")
	}
	assert.Contains(t, stderr.String(), "no such service")
}

// One failed accept (EMFILE) does not end a reach: it retries, as the
// edge's tunnel ports do, and the next connection is served.
func TestReachAcceptsAfterEMFILE(t *testing.T) {
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	ln := &testnet.FailingListener{Listener: raw, N: 2}
	a := newHarness(t).app(io.Discard, io.Discard)
	a.log = slog.New(slog.DiscardHandler)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- a.forward(ctx, ln, func(context.Context) (net.Conn, error) {
			svc, peer := testnet.Pair(t)
			go func() { _, _ = peer.Write([]byte("hi")); peer.Close() }()
			return svc, nil
		})
	}()
	c, err := net.Dial("tcp", raw.Addr().String())
	require.NoError(t, err)
	defer c.Close()
	require.NoError(t, c.SetReadDeadline(time.Now().Add(5*time.Second)))
	b, err := io.ReadAll(c)
	require.NoError(t, err)
	assert.Equal(t, "hi", string(b))
	assert.GreaterOrEqual(t, ln.Calls.Load(), int32(3), "the two failures and the accept")
	cancel()
	require.NoError(t, <-done)
}

// A token is rotated 72 h before it expires, or in the last third of a
// shorter lifetime (rotations keep the provisioned lifetime: rotating a
// 5-minute token 72 h early would rotate, and restart the agent, every
// minute).
func TestRotateWindow(t *testing.T) {
	now := time.Date(2026, 11, 28, 0, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		name     string
		issued   time.Time
		lifetime time.Duration
		want     time.Duration
	}{
		{"30 days", now, 30 * 24 * time.Hour, rotateBefore},
		{"5 minutes", now, 5 * time.Minute, 100 * time.Second},
		{"6 days", now, 6 * 24 * time.Hour, 48 * time.Hour},
		{"state file before issuedAt", time.Time{}, 5 * time.Minute, rotateBefore},
	} {
		st := &agentState{IssuedAt: c.issued, ExpiresAt: now.Add(c.lifetime)}
		assert.Equal(t, c.want, rotateWindow(st), c.name)
	}
}

// A --port that cannot be had fails reach before a reach identity is
// provisioned or registered.
func TestReachChecksThePortFirst(t *testing.T) {
	h := newHarness(t)
	provisionRoutes(h)
	h.ok("GET /v1/services", 200, `[{"id":"`+serviceID+`","name":"redis","targetPort":6379,"protocol":"tcp"}]`)
	held, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer held.Close()
	port := strconv.Itoa(held.Addr().(*net.TCPAddr).Port)
	_, errOut, code := h.run("reach", "redis", "--port", port)
	assert.Equal(t, 1, code)
	assert.Contains(t, errOut, "cannot listen on 127.0.0.1:"+port)
	assert.Empty(t, h.requests("POST", "/v1/agents/provision"))
	assert.Empty(t, h.requests("POST", "/v1/agents/register"))
	_, err = os.Stat(filepath.Join(filepath.Dir(h.state), "reach-agent.json"))
	assert.True(t, os.IsNotExist(err), "no reach identity is written: %v", err)
}

// TestExposeKeepsTheProtocolAndSaysWhatChanged: exposing an existing
// service again without --protocol keeps its protocol (a detected http was
// set back to auto), and a new target is said, since its share links
// follow it (it printed only "Exposing (updated)").
func TestExposeKeepsTheProtocolAndSaysWhatChanged(t *testing.T) {
	h := newHarness(t)
	provisionRoutes(h)
	var answer atomic.Pointer[string]
	first := webService
	answer.Store(&first)
	h.mux.HandleFunc("POST /v1/services/register", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		a := *answer.Load()
		status := 200
		if a == webService {
			status = 201
		}
		w.WriteHeader(status)
		io.WriteString(w, `{"success":true,"data":`+a+`}`)
	})
	_, errOut, code := h.run("expose", "localhost:3000", "--name", "web", "--detach")
	require.Equal(t, 0, code, errOut)
	assert.NotContains(t, string(h.requests("POST", "/v1/services/register")[0].Body), "protocol", "--protocol not given")

	moved := strings.Replace(webService, `"targetPort":3000`, `"targetPort":4000`, 1)
	answer.Store(&moved)
	out, errOut, code := h.run("expose", "localhost:4000", "--name", "web", "--detach")
	require.Equal(t, 0, code, errOut)
	assert.Contains(t, out, "Exposing (updated) web → localhost:4000")
	assert.Contains(t, out, "Changed:    target localhost:3000 → localhost:4000: its share links now reach the new target")

	// Given, it is sent.
	_, errOut, code = h.run("expose", "localhost:4000", "--name", "web", "--detach", "--protocol", "tcp")
	require.Equal(t, 0, code, errOut)
	regs := h.requests("POST", "/v1/services/register")
	assert.Equal(t, "tcp", body(t, regs[len(regs)-1])["protocol"])
}

// TestExposeJSONIsNDJSON: the service is one line, then one line per event.
func TestExposeJSONIsNDJSON(t *testing.T) {
	h := exposeHarness(t)
	h.agentRun = func(actx context.Context, cfg agent.Config) error {
		cfg.OnEvent(agent.Event{Kind: agent.EventConnected, Edge: cfg.Edges[0]})
		return nil
	}
	out, errOut, code := h.run("expose", "localhost:3000", "--json")
	require.Equal(t, 0, code, errOut)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	require.GreaterOrEqual(t, len(lines), 2, out)
	for _, l := range lines {
		require.True(t, json.Valid([]byte(l)), "not one JSON value per line: %q", l)
	}
}

// TestDeletedAgentStops: an agent whose credentials an edge refuses asks
// the control plane whether it still knows it; deleted (401 to its own
// heartbeat), it stops with exit 1 and says what to do, where it retried
// for ever. Known, it goes on.
func TestDeletedAgentStops(t *testing.T) {
	for _, known := range []bool{false, true} {
		h := exposeHarness(t)
		if known {
			h.ok("POST /v1/agents/heartbeat", 200, `{"ok":true}`)
		} else {
			h.fail("POST /v1/agents/heartbeat", 401, `{"error":"Unauthorized","message":"invalid agent credentials","statusCode":401}`)
		}
		ctx, cancel := context.WithCancel(context.Background())
		h.agentRun = func(actx context.Context, cfg agent.Config) error {
			cfg.OnEvent(agent.Event{Kind: agent.EventRejected, Edge: cfg.Edges[0], Message: "invalid agent credentials",
				Err: &agent.RejectedError{Status: tunnel.ResultBadCredentials, Message: "invalid agent credentials"}})
			if known {
				go func() { // the check answered: Ctrl-C
					for len(h.requests("POST", "/v1/agents/heartbeat")) == 0 {
						time.Sleep(5 * time.Millisecond)
					}
					cancel()
				}()
			}
			<-actx.Done()
			return nil
		}
		_, errOut, code := h.runCtx(ctx, "expose", "localhost:3000", "--name", "web")
		cancel()
		if known {
			assert.Equal(t, 0, code, errOut)
			continue
		}
		assert.Equal(t, 1, code, errOut)
		assert.Contains(t, errOut, "the control plane no longer knows this agent")
		hb := body(t, h.one("POST", "/v1/agents/heartbeat"))
		assert.Equal(t, agentID, hb["agentId"])
	}
}
