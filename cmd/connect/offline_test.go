package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/privateconnect/pc/internal/devcert"
	"github.com/privateconnect/pc/internal/syncbuf"
	"github.com/privateconnect/pc/sdk/agent"
	"github.com/privateconnect/pc/sdk/client"
)

// runUntilConnected runs the CLI with an agent stub that stops it (Ctrl-C)
// as soon as the agent runs, and returns what the agent was given.
func runUntilConnected(t *testing.T, h *harness, args ...string) (string, string, int, agent.Config) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var got agent.Config
	h.agentRun = func(actx context.Context, cfg agent.Config) error {
		got = cfg
		cancel()
		<-actx.Done()
		return nil
	}
	out, errOut, code := h.runCtx(ctx, args...)
	return out, errOut, code, got
}

// runUpRecordingTokens runs `connect up` with an agent stub that records
// the token of each run: first is called as the first run starts, and the
// second run (after a rotation) stops the CLI. tune adjusts the app.
func runUpRecordingTokens(h *harness, first func(), tune func(*app)) ([]string, string, int) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var tokens []string
	h.agentRun = func(actx context.Context, cfg agent.Config) error {
		h.mu.Lock()
		tokens = append(tokens, cfg.Token)
		n := len(tokens)
		h.mu.Unlock()
		if n == 1 {
			first()
		} else {
			cancel()
		}
		<-actx.Done()
		return nil
	}
	var stdout, stderr syncbuf.Buffer
	a := h.app(&stdout, &stderr)
	tune(a)
	code := a.execute(ctx, []string{"up"})
	h.mu.Lock()
	defer h.mu.Unlock()
	return tokens, stderr.String(), code
}

// With the control plane down (edges serve from their snapshots), an agent
// starts from its saved state: `up`, and `expose` of a service already saved
// with the same target. A new service, or a changed one, still needs the
// control plane.
func TestAgentStartsFromSavedStateWithoutControl(t *testing.T) {
	h := exposeHarness(t)
	h.ok("GET /v1/services", 200, `[`+webService+`]`)
	_, errOut, code := h.run("expose", "localhost:3000", "--name", "web")
	require.Equal(t, 0, code, errOut)
	st := readState(t, h.state)
	require.Len(t, st.Services, 1, "the service is saved for a start without the control plane")
	assert.Equal(t, savedService{ID: serviceID, Name: "web", TargetHost: "localhost", TargetPort: 3000, Protocol: "http", TunnelPort: 23001}, st.Services[0])

	h.srv.Close() // connection refused from now on
	registers := len(h.requests("POST", "/v1/agents/register"))

	out, errOut, code, cfg := runUntilConnected(t, h, "up")
	require.Equal(t, 0, code, errOut)
	assert.Contains(t, errOut, "warning: cannot reach the control plane at "+h.srv.URL+" (dial tcp")
	assert.Contains(t, errOut, "running agent "+agentID+" from its saved state ("+h.state+")")
	assert.Contains(t, errOut, "once the control plane is back")
	assert.Regexp(t, `(?m)^web\s+localhost:3000\s+http\s+23001$`, out)
	assert.Equal(t, st.Token, cfg.Token)
	assert.Equal(t, []string{"127.0.0.1:7070"}, cfg.Edges)
	assert.Equal(t, []string{"localhost:3000"}, cfg.AllowedTargets)
	assert.Len(t, h.requests("POST", "/v1/agents/register"), registers, "nothing reached the control plane")

	out, errOut, code, cfg = runUntilConnected(t, h, "expose", "localhost:3000", "--name", "web")
	require.Equal(t, 0, code, errOut)
	assert.Contains(t, errOut, "from its saved state")
	assert.Contains(t, out, "Exposing (as saved) web → localhost:3000 (protocol http)")
	assert.Equal(t, st.Token, cfg.Token)
	assert.Contains(t, cfg.AllowedTargets, "localhost:3000")

	for _, args := range [][]string{
		{"expose", "localhost:4000", "--name", "ws"},
		{"expose", "localhost:3001", "--name", "web"},
		{"expose", "localhost:3000", "--name", "web", "--protocol", "tcp"},
	} {
		out, errOut, code, _ := runUntilConnected(t, h, args...)
		assert.Equal(t, 1, code, "%v: %s", args, errOut)
		assert.Empty(t, out, "%v", args)
		assert.Contains(t, errOut, "cannot reach the control plane at "+h.srv.URL, "%v", args)
		assert.Contains(t, errOut, "only a service saved in the state file with the same target can be served", "%v", args)
	}
}

// Without a saved identity, or with an expired token, the control plane is
// needed, and the error says so.
func TestAgentWithoutControlNeedsAValidSavedIdentity(t *testing.T) {
	h := exposeHarness(t)
	h.down.Store(true)
	_, errOut, code, _ := runUntilConnected(t, h, "up")
	assert.Equal(t, 1, code)
	assert.Contains(t, errOut, "provision agent: Service Unavailable")
	assert.NoFileExists(t, h.state)

	require.NoError(t, saveState(h.state, &agentState{AgentID: agentID, Token: "old", ExpiresAt: time.Now().Add(-time.Minute),
		ControlURL: h.srv.URL, Edges: []client.AgentEdge{{TunnelAddr: "127.0.0.1:7070"}}}))
	_, errOut, code, _ = runUntilConnected(t, h, "up")
	assert.Equal(t, 1, code)
	assert.Contains(t, errOut, "the agent token in "+h.state+" expired on ")
	assert.Contains(t, errOut, "and the control plane at "+h.srv.URL+" cannot be reached to rotate it")
}

// An agent started without the control plane registers once it is back,
// and rotates a token that came near expiry meanwhile, then runs on with
// the new one; until then it runs with the saved token.
func TestOfflineAgentCatchesUpWhenControlIsBack(t *testing.T) {
	h := newHarness(t)
	h.ok("POST /v1/agents/register", 201, `{"id":"`+agentID+`"}`)
	h.ok("GET /v1/services", 200, `[`+webService+`]`)
	h.ok("GET /v1/edges", 200, `[{"id":"e1","tunnelAddr":"127.0.0.1:7070"},{"id":"e2","tunnelAddr":"tls://edge2:7443"}]`)
	h.ok("POST /v1/agents/rotate-token", 200, `{"token":"fresh","expiresAt":"2099-01-01T00:00:00Z"}`)
	require.NoError(t, saveState(h.state, &agentState{
		AgentID: agentID, Token: "old", ExpiresAt: time.Now().Add(time.Hour), // within the rotation window
		ControlURL: h.srv.URL, Edges: []client.AgentEdge{{TunnelAddr: "127.0.0.1:7070"}},
		Services: []savedService{{ID: serviceID, Name: "web", TargetHost: "localhost", TargetPort: 3000, Protocol: "http"}},
	}))
	h.down.Store(true)
	tokens, stderr, code := runUpRecordingTokens(h, func() {
		h.downUntil("POST /v1/agents/register") // back on the agent's next attempt
	}, func(a *app) { a.controlRetry = 20 * time.Millisecond })
	require.Equal(t, 0, code, stderr)
	assert.Equal(t, []string{"old", "fresh"}, tokens, "the saved token first, the rotated one once the control plane is back")
	assert.Contains(t, stderr, "from its saved state")
	assert.Contains(t, stderr, "The control plane at "+h.srv.URL+" answers again: agent registered")
	assert.Contains(t, stderr, "Rotated the agent token")
	reg := h.requests("POST", "/v1/agents/register")
	require.NotEmpty(t, reg)
	assert.Equal(t, "old", body(t, reg[len(reg)-1])["token"])
	st := readState(t, h.state)
	assert.Equal(t, "fresh", st.Token)
	assert.Equal(t, []client.AgentEdge{{ID: "e1", TunnelAddr: "127.0.0.1:7070"}, {ID: "e2", TunnelAddr: "tls://edge2:7443"}}, st.Edges, "edges refreshed")
}

// A rotation that finds the control plane away does not stop the agent:
// it goes on with its token and tries again.
func TestRotationWaitsForTheControlPlane(t *testing.T) {
	h := exposeHarness(t)
	h.ok("GET /v1/services", 200, `[`+webService+`]`)
	h.ok("POST /v1/agents/rotate-token", 200, `{"token":"fresh","expiresAt":"2099-01-01T00:00:00Z"}`)
	require.NoError(t, saveState(h.state, &agentState{
		AgentID: agentID, Token: "old", ExpiresAt: time.Now().Add(rotateBefore + 200*time.Millisecond),
		ControlURL: h.srv.URL, Edges: []client.AgentEdge{{TunnelAddr: "127.0.0.1:7070"}},
	}))
	tokens, stderr, code := runUpRecordingTokens(h, func() {
		h.downUntil("POST /v1/agents/rotate-token") // away when the rotation is due
	}, func(a *app) { a.controlRetry, a.minRenewWait = 20*time.Millisecond, 10*time.Millisecond })
	require.Equal(t, 0, code, stderr)
	assert.Equal(t, []string{"old", "fresh"}, tokens)
	assert.Contains(t, stderr, "warning: cannot reach the control plane at "+h.srv.URL+" to rotate the agent token")
	assert.Equal(t, 1, strings.Count(stderr, "to rotate the agent token"), "said once")
}

// The running agent's saved edge list loses an edge the agent dropped (a
// deleted one) and keeps what it still holds, edges the list gained since
// the agent started included.
func TestRunningAgentSavesTheEdgesItDrops(t *testing.T) {
	h := exposeHarness(t)
	h.agentRun = func(actx context.Context, cfg agent.Config) error {
		require.Equal(t, []string{"127.0.0.1:7070"}, cfg.Edges)
		cfg.OnEdges([]string{"tls://new:7443"}) // 127.0.0.1:7070 deleted, and the last one
		return nil
	}
	_, errOut, code := h.run("expose", "localhost:3000", "--name", "web")
	require.Equal(t, 0, code, errOut)
	assert.Equal(t, []client.AgentEdge{{TunnelAddr: "tls://new:7443"}}, readState(t, h.state).Edges)

	st := &agentState{Edges: []client.AgentEdge{{ID: "e1", TunnelAddr: "a:1"}, {ID: "e2", TunnelAddr: "b:1"}, {ID: "e3", TunnelAddr: "c:1"}}}
	st.dropEdges([]string{"a:1", "b:1"}, []string{"b:1"})
	assert.Equal(t, []client.AgentEdge{{ID: "e2", TunnelAddr: "b:1"}, {ID: "e3", TunnelAddr: "c:1"}}, st.Edges, "c:1 came after the start")
}

// A second `expose` while the agent runs with other TLS settings (the
// README's switch to `pcd dev --tls`) is refused instead of adding the
// service to an agent that would ignore --ca-file; the same settings, or
// none given, add it as before.
func TestSecondExposeWithOtherSettingsIsRefused(t *testing.T) {
	skipWithoutLock(t)
	h := exposeHarness(t)
	_, errOut, code := h.run("expose", "localhost:3000", "--name", "web", "--detach")
	require.Equal(t, 0, code, errOut)

	// The running agent was started with no TLS flags.
	held, err := lockAgent(h.state)
	require.NoError(t, err)
	settings, _ := json.Marshal(runSettings{Control: h.srv.URL})
	held.mark(true, settings)
	defer held.release()
	pid := strconv.Itoa(os.Getpid())
	// --ca-file is read before anything else: it must hold a certificate.
	certPEM, _, err := devcert.SelfSigned([]string{"127.0.0.1"}, time.Hour)
	require.NoError(t, err)
	caFile := filepath.Join(t.TempDir(), "cert.pem")
	require.NoError(t, os.WriteFile(caFile, certPEM, 0o600))

	out, errOut, code := h.run("expose", "localhost:9000", "--name", "web", "--ca-file", caFile)
	assert.Equal(t, 1, code, errOut)
	assert.Empty(t, out)
	assert.Contains(t, errOut, "the agent of this identity already runs (process "+pid)
	assert.Contains(t, errOut, "--ca-file "+caFile+" (it runs without)")
	assert.Contains(t, errOut, "Stop it first (Ctrl-C where it runs, or kill "+pid+")")
	assert.Len(t, h.requests("POST", "/v1/services/register"), 1, "nothing registered")

	_, errOut, code = h.run("expose", "localhost:9000", "--name", "web", "--pin-sha256", strings.Repeat("ab", 32))
	assert.Equal(t, 1, code, errOut)
	assert.Contains(t, errOut, "--pin-sha256 "+strings.Repeat("ab", 32)+" (it runs without)")

	// Another control plane for the same state file.
	h.env["PC_CONTROL_URL"] = "http://127.0.0.1:1"
	_, errOut, code = h.run("expose", "localhost:9000", "--name", "web")
	assert.Equal(t, 1, code, errOut)
	assert.Contains(t, errOut, "control plane http://127.0.0.1:1 (it runs against "+h.srv.URL+")")
	h.env["PC_CONTROL_URL"] = h.srv.URL

	// No TLS flag, or the same ones: the service goes to the running agent.
	out, errOut, code = h.run("expose", "localhost:9000", "--name", "web", "--allow-plaintext=false")
	require.Equal(t, 0, code, errOut)
	assert.Contains(t, out, "already runs")
	assert.Len(t, h.requests("POST", "/v1/services/register"), 2)
	// --metrics cannot reach the running agent: said, not silently dropped.
	_, errOut, code = h.run("expose", "localhost:9000", "--name", "web", "--metrics", "127.0.0.1:0")
	require.Equal(t, 0, code, errOut)
	assert.Contains(t, errOut, "--metrics is not applied to it")

	// What an agent writes in its lock file when it runs.
	held.release()
	ran := false
	h.agentRun = func(actx context.Context, cfg agent.Config) error {
		ran = true
		b, err := os.ReadFile(h.state + ".lock")
		require.NoError(t, err)
		first, rest, _ := strings.Cut(string(b), "\n")
		assert.Equal(t, pid+" run", first)
		var rs runSettings
		require.NoError(t, json.Unmarshal([]byte(rest), &rs))
		assert.Equal(t, runSettings{Control: h.srv.URL, CAFile: caFile, AllowPlaintext: true}, rs)
		return nil
	}
	_, errOut, code = h.run("expose", "localhost:3000", "--name", "web", "--ca-file", caFile, "--allow-plaintext")
	require.Equal(t, 0, code, errOut)
	require.True(t, ran, "the agent ran, and its lock file was read")
}
