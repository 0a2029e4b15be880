package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/privateconnect/pc/internal/testnet"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/privateconnect/pc/sdk/agent"
	"github.com/privateconnect/pc/sdk/client"
)

// Defects found by a CLI walk-through: each is refused, or reported, before
// the control plane is changed.

// TestExposeChecksFlagsBeforeAnyAPICall: a bad --metrics, --ca-file or
// --name is a usage error met before anything is provisioned or registered.
func TestExposeChecksFlagsBeforeAnyAPICall(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"metrics", []string{"--metrics", "notanaddr"}, "--metrics"},
		{"ca-file", []string{"--ca-file", filepath.Join(t.TempDir(), "nonexistent.pem")}, "--ca-file"},
		{"name", []string{"--name", "bad name!"}, "must be 1-100 characters"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := exposeHarness(t)
			out, errOut, code := h.run(append([]string{"expose", "127.0.0.1:3000", "--protocol", "tcp"}, tc.args...)...)
			assert.Equal(t, 2, code, errOut)
			assert.Empty(t, out)
			assert.Contains(t, errOut, tc.want)
			assert.Contains(t, errOut, "--help' for usage")
			h.mu.Lock()
			defer h.mu.Unlock()
			assert.Empty(t, h.reqs, "no API call before the flags are checked")
			assert.Empty(t, h.agents)
		})
	}
}

// TestEmptyStateIsAUsageError: --state "" would provision an agent, then
// fail to save it in the current directory (leaving ./.lock there).
func TestEmptyStateIsAUsageError(t *testing.T) {
	for _, args := range [][]string{
		{"expose", "127.0.0.1:3000", "--name", "web", "--state", ""},
		{"up", "--state", ""},
		{"agents", "rotate-token", "--state", " "},
	} {
		h := exposeHarness(t)
		dir := t.TempDir()
		t.Chdir(dir)
		out, errOut, code := h.run(args...)
		assert.Equal(t, 2, code, "%v: %s", args, errOut)
		assert.Empty(t, out, "%v", args)
		assert.Contains(t, errOut, "--state must not be empty", "%v", args)
		h.mu.Lock()
		assert.Empty(t, h.reqs, "%v: no API call", args)
		h.mu.Unlock()
		entries, err := os.ReadDir(dir)
		require.NoError(t, err)
		assert.Empty(t, entries, "%v: nothing written in the current directory", args)
	}
}

// TestSharesUpdateRefusesClearingWhatItSets: the clear used to win silently.
func TestSharesUpdateRefusesClearingWhatItSets(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--clear", "allow-ip", "--allow-ip", "10.1.0.0/16"}, "--clear allow-ip and --allow-ip"},
		{[]string{"--rate-limit", "60", "--clear", "max-uses,rate-limit"}, "--clear rate-limit and --rate-limit"},
		{[]string{"--clear", "methods", "--methods", "GET"}, "--clear methods and --methods"},
		{[]string{"--clear", "paths", "--paths", "/api/*"}, "--clear paths and --paths"},
		{[]string{"--clear", "max-uses", "--max-uses", "5"}, "--clear max-uses and --max-uses"},
		{[]string{"--clear", "password", "--password", "pw"}, "--clear password and --password"},
		{[]string{"--clear", "plugins", "--plugin", "p1"}, "--clear plugins and --plugin"},
	} {
		h := newHarness(t)
		h.ok("PATCH /v1/shares/{id}", 200, `{"id":"s1","name":"demo"}`)
		out, errOut, code := h.run(append([]string{"shares", "update", "s1"}, tc.args...)...)
		assert.Equal(t, 2, code, "%v: %s", tc.args, errOut)
		assert.Empty(t, out)
		assert.Contains(t, errOut, tc.want, "%v", tc.args)
		assert.Empty(t, h.requests("PATCH", "/v1/shares/s1"), "%v: nothing changed", tc.args)
	}
}

// silentControl is a control plane that accepts connections but never
// answers; it is closed, with its connections, at the end of the test.
func silentControl(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	return "http://" + ln.Addr().String()
}

// TestAdminCommandTimeout: a control plane that never answers is reported
// after --timeout (PC_TIMEOUT), 20 s by default, in a plain sentence, for
// an admin command as for an agent's start.
func TestAdminCommandTimeout(t *testing.T) {
	assert.Equal(t, 20*time.Second, newApp(io.Discard, io.Discard, func(string) (string, bool) { return "", false }).httpClient.Timeout)
	url := silentControl(t)
	for _, tc := range []struct {
		env  map[string]string
		args []string
		want string
	}{
		{nil, []string{"--timeout", "300ms"}, "within 300ms"},
		{map[string]string{"PC_TIMEOUT": "250ms"}, nil, "within 250ms"},
	} {
		h := newHarness(t)
		h.env["PC_CONTROL_URL"] = url
		for k, v := range tc.env {
			h.env[k] = v
		}
		start := time.Now()
		_, errOut, code := h.run(append([]string{"services", "ls"}, tc.args...)...)
		assert.Equal(t, 1, code, errOut)
		assert.Less(t, time.Since(start), 10*time.Second)
		assert.Equal(t, "error: the control plane at "+url+" did not answer "+tc.want+" (set --timeout or PC_TIMEOUT to wait longer)\n", errOut)
	}
	// An agent's calls at its start take --timeout too.
	h := newHarness(t)
	h.env["PC_CONTROL_URL"] = url
	start := time.Now()
	_, errOut, code := h.run("expose", "localhost:3000", "--timeout", "300ms")
	assert.Equal(t, 1, code, errOut)
	assert.Less(t, time.Since(start), 10*time.Second)
	assert.Contains(t, errOut, "did not answer within 300ms")
	h = newHarness(t)
	_, errOut, code = h.run("services", "ls", "--timeout", "0s")
	assert.Equal(t, 2, code, errOut)
	assert.Contains(t, errOut, "--timeout must be more than 0")
}

// rawServer answers every request with greeting, as a server of another
// protocol does, and closes it.
func rawServer(t *testing.T, greeting string) string {
	ln := testnet.Serve(t, func(c net.Conn) {
		defer c.Close()
		// The request first, as an edge's tunnel listener reads the
		// agent's hello before it answers.
		r := bufio.NewReader(c)
		for {
			line, err := r.ReadString('\n')
			if err != nil || line == "\r\n" {
				break
			}
		}
		_, _ = c.Write([]byte(greeting))
	})
	return "http://" + ln.Addr().String()
}

// TestControlURLThatIsNotHTTP: --control at an edge's tunnel listener gets
// the hint of the share and admin listeners, never the raw bytes Go quotes
// ("malformed HTTP response \"PCT1\x02…\"", with the edge's id).
func TestControlURLThatIsNotHTTP(t *testing.T) {
	for _, greeting := range []string{
		"PCT1\x02\x00\x24edge-0123-secret-id\x00\x01\r\n\r\n",
		"\x00\x01\x02\x03binary\xff\xfe\r\n\r\n",
	} {
		url := rawServer(t, greeting)
		for _, args := range [][]string{{"services", "ls"}, {"expose", "127.0.0.1:3000", "--name", "web", "--detach"}} {
			h := newHarness(t)
			h.env["PC_CONTROL_URL"] = url
			_, errOut, code := h.run(args...)
			assert.Equal(t, 1, code, "%v: %s", args, errOut)
			assert.Contains(t, errOut, "error: "+url+" does not look like a control plane's API", "%v", args)
			assert.Contains(t, errOut, "an edge's share or tunnel address is not it", "%v", args)
			assert.NotContains(t, errOut, "PCT1")
			assert.NotContains(t, errOut, "secret-id")
			assert.NotContains(t, errOut, "binary")
			assert.NotContains(t, errOut, "\\x")
		}
	}
}

// TestControlURLAndAPIKeyAreChecked: a malformed --control is a usage error
// (not "cannot reach ...: first path segment in URL cannot contain colon"),
// a key's surrounding whitespace is trimmed, and a control character inside
// it is refused (not "net/http: invalid header field value").
func TestControlURLAndAPIKeyAreChecked(t *testing.T) {
	for _, tc := range []struct {
		control, key string
		want         string
	}{
		{"127.0.0.1:3001", testKey, `--control "127.0.0.1:3001": want the control plane's http:// or https:// address`},
		{"ftp://x", testKey, `--control "ftp://x": want`},
		{"http://", testKey, `--control "http://": want`},
		{"http://127.0.0.1:", testKey, `--control "http://127.0.0.1:": want`},
		{"", testKey, `--control "": want`},
		{"", "pc_abc\ndef", "the API key (--api-key / PC_API_KEY) contains a control character"},
		{"", "pc_abc\x7fdef", "contains a control character"},
	} {
		h := newHarness(t)
		h.ok("GET /v1/services", 200, `[]`)
		args := []string{"services", "ls", "--api-key", tc.key}
		if tc.control != "" || tc.key == testKey {
			args = append(args, "--control", tc.control)
		}
		out, errOut, code := h.run(args...)
		assert.Equal(t, 2, code, "%q: %s", tc.control, errOut)
		assert.Empty(t, out)
		assert.Contains(t, errOut, tc.want, "%q %q", tc.control, tc.key)
		assert.NotContains(t, errOut, "cannot reach")
		h.mu.Lock()
		assert.Empty(t, h.reqs)
		h.mu.Unlock()
	}

	// Whitespace around the key (a file's trailing newline) is trimmed.
	h := newHarness(t)
	h.ok("GET /v1/services", 200, `[]`)
	h.env["PC_API_KEY"] = "  " + testKey + "\r\n"
	_, errOut, code := h.run("services", "ls")
	require.Equal(t, 0, code, errOut)
	assert.Equal(t, testKey, h.one("GET", "/v1/services").APIKey)
}

// TestRejectionPrintedOnce: an edge's rejection is one clean line, not
// "...rejected the agent: invalid agent credentials: agent: edge rejected
// the agent: invalid agent credentials", and the agent's own record of it
// (at debug level when OnEvent is set: TestEventRecordsAreDebugWithOnEvent)
// is not printed as well.
func TestRejectionPrintedOnce(t *testing.T) {
	h := exposeHarness(t)
	h.agentRun = func(ctx context.Context, cfg agent.Config) error {
		// What sdk/agent does on a rejection.
		rej := &agent.RejectedError{Message: "invalid agent credentials"}
		cfg.OnEvent(agent.Event{Kind: agent.EventRejected, Edge: cfg.Edges[0], Message: rej.Message, Err: rej})
		cfg.Logger.With("agentId", cfg.AgentID).Debug("edge rejected the agent", "edge", cfg.Edges[0], "reason", rej.Message)
		cfg.Logger.Warn("another warning")
		return nil
	}
	out, errOut, code := h.run("expose", "127.0.0.1:3000", "--name", "web")
	require.Equal(t, 0, code, errOut)
	assert.Equal(t, 1, strings.Count(out+errOut, "invalid agent credentials"), "stdout: %s\nstderr: %s", out, errOut)
	assert.Regexp(t, `(?m)^\d\d:\d\d:\d\d edge 127\.0\.0\.1:7070 rejected the agent: invalid agent credentials$`, out)
	assert.Contains(t, errOut, "another warning", "other records are kept")
}

// TestInterruptedDuringSetup: Ctrl-C while expose provisions its agent
// prints "interrupted" and exits 130, not "error: provision agent: Post
// …: interrupt signal received" with exit 1.
func TestInterruptedDuringSetup(t *testing.T) {
	h := newHarness(t)
	ctx, cancel := context.WithCancelCause(context.Background())
	defer cancel(nil)
	h.mux.HandleFunc("POST /v1/agents/provision", func(w http.ResponseWriter, r *http.Request) {
		cancel(errors.New("interrupt signal received")) // as signal.NotifyContext's cause
		<-r.Context().Done()
	})
	out, errOut, code := h.runCtx(ctx, "expose", "127.0.0.1:3000", "--name", "web")
	assert.Equal(t, 130, code, errOut)
	assert.Empty(t, out)
	assert.Equal(t, "interrupted\n", errOut)
}

// TestRunningAgentSavesItsEdgeList: the edge list the agent reports is
// saved each time it changes, growing as well as shrinking (an edge added
// since the start joins the state file, and leaves it when the agent
// drops it).
func TestRunningAgentSavesItsEdgeList(t *testing.T) {
	h := exposeHarness(t)
	var saved [][]client.AgentEdge
	h.agentRun = func(actx context.Context, cfg agent.Config) error {
		require.Equal(t, []string{"127.0.0.1:7070"}, cfg.Edges)
		cfg.OnEdges([]string{"127.0.0.1:7070", "tls://new:7443"}) // an edge added
		saved = append(saved, readState(t, h.state).Edges)
		cfg.OnEdges([]string{"127.0.0.1:7070"}) // and deleted again
		saved = append(saved, readState(t, h.state).Edges)
		return nil
	}
	_, errOut, code := h.run("expose", "localhost:3000", "--name", "web")
	require.Equal(t, 0, code, errOut)
	require.Len(t, saved, 2)
	assert.Equal(t, []client.AgentEdge{{ID: "e1", TunnelAddr: "127.0.0.1:7070"}, {TunnelAddr: "tls://new:7443"}}, saved[0])
	assert.Equal(t, []client.AgentEdge{{ID: "e1", TunnelAddr: "127.0.0.1:7070"}}, saved[1])
}

// TestJoiningExposeSavesItsService: a second expose that adds its service
// to the running agent saves it in the state file too (for a start without
// the control plane), and the running agent's own saves keep it.
func TestJoiningExposeSavesItsService(t *testing.T) {
	skipWithoutLock(t)
	h := newHarness(t)
	provisionRoutes(h)
	h.mux.HandleFunc("POST /v1/services/register", func(w http.ResponseWriter, r *http.Request) {
		var req map[string]any
		require.NoError(t, json.NewDecoder(r.Body).Decode(&req))
		svc := strings.NewReplacer("web", req["name"].(string), "3000", fmt.Sprint(req["targetPort"]), serviceID, "svc-"+req["name"].(string)).Replace(webService)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(201)
		io.WriteString(w, `{"success":true,"data":`+svc+`}`)
	})
	h.ok("GET /v1/services", 200, `[`+webService+`]`)
	var joined string
	h.agentRun = func(actx context.Context, cfg agent.Config) error {
		out, errOut, code := h.run("expose", "localhost:5432", "--name", "db")
		require.Equal(t, 0, code, errOut)
		joined = out
		// web re-targeted by a second expose: the running agent's next
		// save keeps the new target (it wrote its own copy back).
		_, errOut, code = h.run("expose", "localhost:4000", "--name", "web")
		require.Equal(t, 0, code, errOut)
		// The running agent saves the file after that (its edge list).
		cfg.OnEdges([]string{"127.0.0.1:7070", "tls://new:7443"})
		return nil
	}
	_, errOut, code := h.run("expose", "localhost:3000", "--name", "web")
	require.Equal(t, 0, code, errOut)
	assert.Contains(t, joined, "already runs")
	st := readState(t, h.state)
	var names []string
	for _, s := range st.Services {
		names = append(names, s.Name+"="+strconv.Itoa(s.TargetPort))
	}
	assert.ElementsMatch(t, []string{"web=4000", "db=5432"}, names)
	assert.Len(t, st.Edges, 2)
}
