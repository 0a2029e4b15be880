package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/privateconnect/pc/control"
	"github.com/privateconnect/pc/control/api"
	"github.com/privateconnect/pc/control/controltest"
	"github.com/privateconnect/pc/control/push"
	"github.com/privateconnect/pc/control/store"
	"github.com/privateconnect/pc/control/store/memstore"
)

// harness runs a real control plane on 127.0.0.1:0 over a memstore.
type harness struct {
	t     *testing.T
	srv   *control.Server
	kv    *memstore.Store
	base  string
	admin string // admin key of workspace default
	ws    string // id of workspace default
	hc    *http.Client
}

func newHarness(t *testing.T, mod ...func(*control.Config)) *harness {
	t.Helper()
	kv := memstore.New()
	cfg := control.Config{Listen: "127.0.0.1:0", Store: kv, DataDir: t.TempDir(),
		RateLimits: control.RateLimits{PublicPerMin: 100000, AuthenticatedPerMin: 100000}}
	for _, m := range mod {
		m(&cfg)
	}
	srv := controltest.Start(t, cfg).Server
	ctx := context.Background()
	key, created := srv.BootstrapAdminKey()
	require.True(t, created)
	h := &harness{t: t, srv: srv, kv: kv, base: "http://" + srv.Addr(), admin: key, hc: &http.Client{Timeout: 10 * time.Second}}
	require.NoError(t, kv.View(ctx, func(tx store.Tx) error {
		w, err := store.GetWorkspaceByName(tx, "default")
		if err == nil {
			h.ws = w.ID
		}
		return err
	}))
	return h
}

// resp is a decoded API answer.
type resp struct {
	Status int
	Header http.Header
	Raw    []byte
	Body   map[string]any // the envelope
}

func (r resp) data() map[string]any {
	d, _ := r.Body["data"].(map[string]any)
	return d
}

func (r resp) list() []any {
	d, _ := r.Body["data"].([]any)
	return d
}

func (r resp) str(path ...string) string {
	var v any = r.Body["data"]
	for _, p := range path {
		m, _ := v.(map[string]any)
		v = m[p]
	}
	s, _ := v.(string)
	return s
}

// req sends a request. body may be nil, a string (sent raw), or a value
// (sent as JSON). Content-Type is application/json when there is a body
// unless hdr overrides it.
func (h *harness) req(method, path, key string, body any, hdr ...string) resp {
	h.t.Helper()
	var rd io.Reader
	var hasBody bool
	switch b := body.(type) {
	case nil:
	case string:
		rd, hasBody = bytes.NewReader([]byte(b)), true
	case []byte:
		rd, hasBody = bytes.NewReader(b), true
	default:
		j, err := json.Marshal(b)
		require.NoError(h.t, err)
		rd, hasBody = bytes.NewReader(j), true
	}
	r, err := http.NewRequest(method, h.base+path, rd)
	require.NoError(h.t, err)
	if key != "" {
		r.Header.Set("x-api-key", key)
	}
	if hasBody {
		r.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		r.Header.Set(hdr[i], hdr[i+1])
	}
	res, err := h.hc.Do(r)
	require.NoError(h.t, err)
	defer res.Body.Close()
	raw, err := io.ReadAll(res.Body)
	require.NoError(h.t, err)
	out := resp{Status: res.StatusCode, Header: res.Header, Raw: raw}
	_ = json.Unmarshal(raw, &out.Body)
	return out
}

// must asserts the status and returns the answer.
func (h *harness) must(status int, method, path, key string, body any) resp {
	h.t.Helper()
	r := h.req(method, path, key, body)
	require.Equal(h.t, status, r.Status, "%s %s: %s", method, path, r.Raw)
	return r
}

// newWorkspace creates a workspace with keys of every scope, directly in the store.
func (h *harness) newWorkspace(name string) (ws string, keys map[string]string) {
	h.t.Helper()
	ws = uuid.NewString()
	keys = map[string]string{}
	require.NoError(h.t, h.kv.Update(context.Background(), func(tx store.Tx) error {
		if err := store.CreateWorkspace(tx, &store.Workspace{ID: ws, Name: name, CreatedAt: time.Now()}); err != nil {
			return err
		}
		for _, sc := range []string{"read", "write", "admin"} {
			if err := h.putKey(tx, ws, sc, []string{sc}, nil, nil, keys); err != nil {
				return err
			}
		}
		return nil
	}))
	return ws, keys
}

// addKey creates a key in a workspace directly in the store.
func (h *harness) addKey(ws, name string, scopes, ipRanges []string, expires *time.Time) string {
	h.t.Helper()
	keys := map[string]string{}
	require.NoError(h.t, h.kv.Update(context.Background(), func(tx store.Tx) error {
		return h.putKey(tx, ws, name, scopes, ipRanges, expires, keys)
	}))
	return keys[name]
}

func (h *harness) putKey(tx store.Tx, ws, name string, scopes, ipRanges []string, expires *time.Time, out map[string]string) error {
	k := "pc_" + push.NewToken(24)
	out[name] = k
	return store.CreateAPIKey(tx, &store.APIKey{ID: uuid.NewString(), WorkspaceID: ws, Name: name, KeyHash: api.HashSecret(k),
		KeyPrefix: k[:11], Scopes: scopes, AllowedIPRanges: ipRanges, ExpiresAt: expires, CreatedAt: time.Now()})
}

// agent provisions an agent and returns its id and token.
func (h *harness) agent(key string) (id, token string) {
	h.t.Helper()
	r := h.must(201, "POST", "/v1/agents/provision", key, map[string]any{"name": "a"})
	return r.str("agentId"), r.str("token")
}

// service registers a service for a new agent and returns its id.
func (h *harness) service(key, name string) (svcID, agentID string) {
	h.t.Helper()
	agentID, _ = h.agent(key)
	r := h.must(201, "POST", "/v1/services/register", key, map[string]any{
		"agentId": agentID, "name": name, "targetHost": "127.0.0.1", "targetPort": 9000})
	return r.str("id"), agentID
}

// edge registers an edge and returns its id and token.
func (h *harness) edge(name string) (id, token string) {
	h.t.Helper()
	r := h.must(201, "POST", "/v1/edges", h.admin, map[string]any{
		"name": name, "publicUrl": "http://127.0.0.1:8080", "tunnelAddr": "127.0.0.1:7070"})
	return r.str("id"), r.str("token")
}

func (h *harness) assertError(r resp, status int) {
	h.t.Helper()
	assertErr(h.t, r, status)
}

// assertErr checks the status and the error envelope.
func assertErr(t *testing.T, r resp, status int) {
	t.Helper()
	require.Equal(t, status, r.Status, "body: %s", r.Raw)
	require.Equal(t, float64(status), r.Body["statusCode"], "body: %s", r.Raw)
	require.NotEmpty(t, r.Body["error"], "body: %s", r.Raw)
	require.NotEmpty(t, r.Body["message"], "body: %s", r.Raw)
	require.NotContains(t, r.Body, "success")
}
