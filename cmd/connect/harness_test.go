package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/privateconnect/pc/sdk/agent"
)

const testKey = "pc_0123456789abcdef0123456789abcdef0123456789abcdef"

// seen is one request received by the fake control plane.
type seen struct {
	Method, Path, Query, APIKey string
	Body                        []byte
}

// harness is a fake control plane plus a way to run the CLI against it.
type harness struct {
	t      *testing.T
	srv    *httptest.Server
	mux    *http.ServeMux
	env    map[string]string
	state  string
	mu     sync.Mutex
	reqs   []seen
	agents []agent.Config
	// agentRun, when set, replaces the default agent stub.
	agentRun func(ctx context.Context, cfg agent.Config) error
	// down makes the fake answer every request 503 with no body, as a
	// proxy in front of a control plane that is down does.
	down atomic.Bool
	// upAfter, when set while down, is a "METHOD /path" whose first
	// request is refused, and the fake is up again after it.
	upAfter atomic.Pointer[string]
}

// downUntil makes the control plane down until it has refused one request
// of route ("POST /v1/agents/register"): it comes back on the agent's own
// next attempt, whatever the timing.
func (h *harness) downUntil(route string) {
	h.upAfter.Store(&route)
	h.down.Store(true)
}

func newHarness(t *testing.T) *harness {
	h := &harness{t: t, mux: http.NewServeMux()}
	h.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		h.mu.Lock()
		h.reqs = append(h.reqs, seen{r.Method, r.URL.Path, r.URL.RawQuery, r.Header.Get("x-api-key"), body})
		h.mu.Unlock()
		r.Body = io.NopCloser(bytes.NewReader(body))
		if h.down.Load() {
			if route := h.upAfter.Load(); route != nil && *route == r.Method+" "+r.URL.Path {
				h.upAfter.Store(nil)
				h.down.Store(false)
			}
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		h.mux.ServeHTTP(w, r)
	}))
	t.Cleanup(h.srv.Close)
	// What tells a control plane from another server (app.notControl).
	h.mux.HandleFunc("GET /openapi.json", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, `{"openapi":"3.1.0"}`)
	})
	h.state = filepath.Join(t.TempDir(), "cfg", "privateconnect", "agent.json")
	h.env = map[string]string{"PC_API_KEY": testKey, "PC_CONTROL_URL": h.srv.URL, "PC_STATE": h.state}
	return h
}

// handle registers a handler answering data in the success envelope.
func (h *harness) ok(pattern string, status int, data string) {
	h.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		io.WriteString(w, `{"success":true,"data":`+data+`}`)
	})
}

// fail registers a handler answering an error envelope.
func (h *harness) fail(pattern string, status int, body string) {
	h.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		io.WriteString(w, body)
	})
}

// requests returns the requests seen for method and path.
func (h *harness) requests(method, path string) []seen {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []seen
	for _, r := range h.reqs {
		if r.Method == method && r.Path == path {
			out = append(out, r)
		}
	}
	return out
}

// one returns the only request for method and path.
func (h *harness) one(method, path string) seen {
	rs := h.requests(method, path)
	require.Len(h.t, rs, 1, "%s %s", method, path)
	return rs[0]
}

func (h *harness) app(stdout, stderr io.Writer) *app {
	a := newApp(stdout, stderr, func(k string) (string, bool) { v, ok := h.env[k]; return v, ok })
	a.pollInterval = 10 * time.Millisecond
	a.runAgent = func(ctx context.Context, cfg agent.Config) error {
		h.mu.Lock()
		h.agents = append(h.agents, cfg)
		h.mu.Unlock()
		if h.agentRun != nil {
			return h.agentRun(ctx, cfg)
		}
		if cfg.OnEvent != nil {
			cfg.OnEvent(agent.Event{Kind: agent.EventConnected, Edge: cfg.Edges[0]})
		}
		return nil
	}
	return a
}

// run executes the CLI and returns its stdout, stderr and exit code.
func (h *harness) run(args ...string) (string, string, int) {
	return h.runCtx(context.Background(), args...)
}

func (h *harness) runCtx(ctx context.Context, args ...string) (string, string, int) {
	var stdout, stderr bytes.Buffer
	code := h.app(&stdout, &stderr).execute(ctx, args)
	return stdout.String(), stderr.String(), code
}

// body decodes a request body into a map.
func body(t *testing.T, s seen) map[string]any {
	var m map[string]any
	require.NoError(t, json.Unmarshal(s.Body, &m), string(s.Body))
	return m
}
