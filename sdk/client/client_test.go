package client_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/privateconnect/pc/sdk/client"
)

const testKey = "pc_0123456789abcdef0123456789abcdef0123456789abcdef"

// recorded is one request seen by the fake server.
type recorded struct {
	Method, Path, RawQuery, ContentType, APIKey string
	Body                                        []byte
}

// fake is an httptest server that speaks the /v1 envelope.
type fake struct {
	t    *testing.T
	srv  *httptest.Server
	mux  *http.ServeMux
	mu   sync.Mutex
	reqs []recorded
}

func newFake(t *testing.T) *fake {
	f := &fake{t: t, mux: http.NewServeMux()}
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		f.mu.Lock()
		f.reqs = append(f.reqs, recorded{r.Method, r.URL.Path, r.URL.RawQuery, r.Header.Get("Content-Type"), r.Header.Get("x-api-key"), body})
		f.mu.Unlock()
		r.Body = io.NopCloser(bytes.NewReader(body))
		f.mux.ServeHTTP(w, r)
	}))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fake) client() *client.Client { return client.New(f.srv.URL+"/", testKey) }

func (f *fake) last() recorded {
	f.mu.Lock()
	defer f.mu.Unlock()
	require.NotEmpty(f.t, f.reqs)
	return f.reqs[len(f.reqs)-1]
}

func ok(w http.ResponseWriter, status int, data string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	io.WriteString(w, `{"success":true,"data":`+data+`}`)
}

func fail(w http.ResponseWriter, status int, body string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	io.WriteString(w, body)
}

func TestEnvelopeUnwrapAndRequestHeaders(t *testing.T) {
	f := newFake(t)
	f.mux.HandleFunc("POST /v1/services/{id}/shares", func(w http.ResponseWriter, r *http.Request) {
		ok(w, 201, `{"id":"s1","token":"tok","name":"demo","shareUrl":"http://edge/shared/tok","expiresAt":"2026-03-02T10:00:00Z","allowedMethods":["GET"],"rateLimitPerMin":60}`)
	})
	sh, err := f.client().CreateShare(context.Background(), "svc-1", client.CreateShareRequest{
		Name: "demo", ExpiresIn: client.Expires1h, AllowedMethods: []string{"GET"}, RateLimitPerMin: 60,
	})
	require.NoError(t, err)
	assert.Equal(t, "http://edge/shared/tok", sh.ShareURL)
	assert.Equal(t, "tok", sh.Token)
	require.NotNil(t, sh.RateLimitPerMin)
	assert.Equal(t, 60, *sh.RateLimitPerMin)
	assert.Equal(t, time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC), sh.ExpiresAt.UTC())

	req := f.last()
	assert.Equal(t, "/v1/services/svc-1/shares", req.Path)
	assert.Equal(t, testKey, req.APIKey)
	assert.Equal(t, "application/json", req.ContentType)
	// Optional fields left empty are absent, not zero.
	assert.JSONEq(t, `{"name":"demo","expiresIn":"1h","allowedMethods":["GET"],"rateLimitPerMin":60}`, string(req.Body))
}

func TestGetSendsNoBodyNorContentType(t *testing.T) {
	f := newFake(t)
	f.mux.HandleFunc("GET /v1/status", func(w http.ResponseWriter, r *http.Request) {
		ok(w, 200, `{"agents":3,"onlineAgents":1,"services":2,"activeShares":4,"edges":1,"onlineEdges":1,"configVersion":42}`)
	})
	st, err := f.client().Status(context.Background())
	require.NoError(t, err)
	assert.Equal(t, client.Status{Agents: 3, OnlineAgents: 1, Services: 2, ActiveShares: 4, Edges: 1, OnlineEdges: 1, ConfigVersion: 42}, *st)
	req := f.last()
	assert.Empty(t, req.ContentType)
	assert.Empty(t, req.Body)
}

func TestValidationErrorWithDetails(t *testing.T) {
	f := newFake(t)
	f.mux.HandleFunc("POST /v1/api-keys", func(w http.ResponseWriter, r *http.Request) {
		fail(w, 400, `{"error":"Bad Request","message":"Validation failed","statusCode":400,"details":[{"field":"name","message":"must be 1-50 characters"}]}`)
	})
	_, err := f.client().CreateAPIKey(context.Background(), client.CreateAPIKeyRequest{Name: ""})
	var ae *client.APIError
	require.ErrorAs(t, err, &ae)
	assert.Equal(t, "Validation failed", err.Error())
	assert.Equal(t, 400, ae.StatusCode)
	assert.Equal(t, "Bad Request", ae.Type)
	assert.Equal(t, []client.FieldError{{Field: "name", Message: "must be 1-50 characters"}}, ae.Details)
	assert.True(t, client.IsStatus(err, 400))
	assert.False(t, client.IsNotFound(err))
}

func TestRateLimitRetryAfter(t *testing.T) {
	f := newFake(t)
	f.mux.HandleFunc("GET /v1/agents", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Retry-After", "7")
		fail(w, 429, `{"error":"Too Many Requests","message":"Please wait before trying again","statusCode":429,"retryAfter":12}`)
	})
	f.mux.HandleFunc("GET /v1/edges", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Retry-After", "7")
		fail(w, 429, `{"error":"Too Many Requests","message":"Please wait before trying again","statusCode":429}`)
	})
	c := f.client()
	_, _, err := c.ListAgents(context.Background(), client.ListOptions{}, client.AgentFilter{})
	var ae *client.APIError
	require.ErrorAs(t, err, &ae)
	assert.Equal(t, 429, ae.StatusCode)
	assert.Equal(t, 12, ae.RetryAfter, "the body wins")
	assert.Equal(t, "Please wait before trying again", ae.Error())

	_, _, err = c.ListEdges(context.Background(), client.ListOptions{})
	require.ErrorAs(t, err, &ae)
	assert.Equal(t, 7, ae.RetryAfter, "header fallback")
}

func TestNonEnvelopeErrorBody(t *testing.T) {
	f := newFake(t)
	f.mux.HandleFunc("GET /v1/workspace", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		w.WriteHeader(502)
		io.WriteString(w, "<html>bad gateway</html>")
	})
	_, err := f.client().Workspace(context.Background())
	var ae *client.APIError
	require.ErrorAs(t, err, &ae)
	assert.Equal(t, 502, ae.StatusCode)
	assert.Equal(t, "Bad Gateway", ae.Error())
}

func TestListCursorAndFilters(t *testing.T) {
	f := newFake(t)
	f.mux.HandleFunc("GET /v1/services", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("cursor") == "" {
			w.Header().Set("X-Next-Cursor", "c2")
			ok(w, 200, `[{"id":"a","name":"web","targetPort":3000,"tunnelPort":23001}]`)
			return
		}
		ok(w, 200, `[{"id":"b","name":"db","targetPort":5432}]`)
	})
	c := f.client()
	items, next, err := c.ListServices(context.Background(), client.ListOptions{Limit: 10}, client.ServiceFilter{AgentID: "ag", Status: "ok"})
	require.NoError(t, err)
	assert.Equal(t, "c2", next)
	require.Len(t, items, 1)
	assert.Equal(t, 23001, items[0].TunnelPort)
	assert.Equal(t, "agentId=ag&limit=10&status=ok", f.last().RawQuery)

	items, next, err = c.ListServices(context.Background(), client.ListOptions{Cursor: next}, client.ServiceFilter{})
	require.NoError(t, err)
	assert.Empty(t, next)
	assert.Equal(t, "db", items[0].Name)
	assert.Equal(t, "cursor=c2", f.last().RawQuery)

	all, err := client.All(context.Background(), func(ctx context.Context, lo client.ListOptions) ([]client.Service, string, error) {
		return c.ListServices(ctx, lo, client.ServiceFilter{})
	})
	require.NoError(t, err)
	assert.Len(t, all, 2)
}

func TestBoolFilterAndPathEscaping(t *testing.T) {
	f := newFake(t)
	f.mux.HandleFunc("GET /v1/agents", func(w http.ResponseWriter, r *http.Request) { ok(w, 200, `[]`) })
	f.mux.HandleFunc("GET /v1/shares/{id}", func(w http.ResponseWriter, r *http.Request) {
		fail(w, 404, `{"error":"Not Found","message":"Share not found","statusCode":404}`)
	})
	c := f.client()
	online := false
	items, _, err := c.ListAgents(context.Background(), client.ListOptions{}, client.AgentFilter{Online: &online, Label: "prod"})
	require.NoError(t, err)
	assert.Empty(t, items)
	assert.Equal(t, "label=prod&online=false", f.last().RawQuery)

	_, err = c.GetShare(context.Background(), "../x y")
	assert.True(t, client.IsNotFound(err))
	assert.Equal(t, "Share not found", err.Error())
}

func TestRawDataCapture(t *testing.T) {
	f := newFake(t)
	f.mux.HandleFunc("GET /v1/edges", func(w http.ResponseWriter, r *http.Request) {
		ok(w, 200, `[{"id":"e1","name":"local","unknownField":true}]`)
	})
	var raw json.RawMessage
	ctx := client.WithRawData(context.Background(), &raw)
	edges, _, err := f.client().ListEdges(ctx, client.ListOptions{})
	require.NoError(t, err)
	assert.Equal(t, "local", edges[0].Name)
	assert.JSONEq(t, `[{"id":"e1","name":"local","unknownField":true}]`, string(raw))
}

func TestRegisterServiceCreatedOrUpdated(t *testing.T) {
	f := newFake(t)
	status := 201
	f.mux.HandleFunc("POST /v1/services/register", func(w http.ResponseWriter, r *http.Request) {
		ok(w, status, `{"id":"s","name":"web","tunnelPort":23000,"status":"unknown"}`)
	})
	c := f.client()
	svc, created, err := c.RegisterService(context.Background(), client.RegisterServiceRequest{AgentID: "a", Name: "web", TargetHost: "localhost", TargetPort: 3000})
	require.NoError(t, err)
	assert.True(t, created)
	assert.Equal(t, 23000, svc.TunnelPort)
	assert.JSONEq(t, `{"agentId":"a","name":"web","targetHost":"localhost","targetPort":3000}`, string(f.last().Body))
	status = 200
	_, created, err = c.RegisterService(context.Background(), client.RegisterServiceRequest{AgentID: "a", Name: "web", TargetHost: "localhost", TargetPort: 3000, IsPublic: true})
	require.NoError(t, err)
	assert.False(t, created)
}

func TestUpdateShareClearsWithEmptyList(t *testing.T) {
	f := newFake(t)
	f.mux.HandleFunc("PATCH /v1/shares/{id}", func(w http.ResponseWriter, r *http.Request) { ok(w, 200, `{"id":"x","name":"n"}`) })
	empty := []string{}
	limit := 10
	_, err := f.client().UpdateShare(context.Background(), "x", client.UpdateShareRequest{AllowedIPs: &empty, RateLimitPerMin: &limit, Null: []string{"maxUses"}})
	require.NoError(t, err)
	assert.JSONEq(t, `{"allowedIps":[],"rateLimitPerMin":10,"maxUses":null}`, string(f.last().Body))
}

func TestPluginUploadAndDownload(t *testing.T) {
	f := newFake(t)
	module := []byte("\x00asm\x01\x00\x00\x00")
	f.mux.HandleFunc("POST /v1/plugins", func(w http.ResponseWriter, r *http.Request) {
		ok(w, 201, `{"id":"p1","name":"geo","version":"1.0.0","sha256":"ab","sizeBytes":8,"exports":["init","on_request"]}`)
	})
	f.mux.HandleFunc("GET /v1/plugins/{id}/wasm", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/wasm")
		w.Write(module)
	})
	c := f.client()
	pl, err := c.UploadPlugin(context.Background(), "geo", "1.0.0", bytes.NewReader(module))
	require.NoError(t, err)
	assert.Equal(t, []string{"init", "on_request"}, pl.Exports)
	req := f.last()
	assert.Equal(t, "application/wasm", req.ContentType)
	assert.Equal(t, "name=geo&version=1.0.0", req.RawQuery)
	assert.Equal(t, module, req.Body)

	got, err := c.DownloadPlugin(context.Background(), "p1")
	require.NoError(t, err)
	assert.Equal(t, module, got)
}

func TestCreateWorkspaceKeyShapes(t *testing.T) {
	f := newFake(t)
	shape := `{"id":"k","name":"admin","key":"pc_abc","scopes":["admin"]}`
	f.mux.HandleFunc("POST /v1/workspaces", func(w http.ResponseWriter, r *http.Request) {
		ok(w, 201, `{"workspace":{"id":"w","name":"acme"},"apiKey":`+shape+`}`)
	})
	c := f.client()
	ws, err := c.CreateWorkspace(context.Background(), "acme")
	require.NoError(t, err)
	assert.Equal(t, "acme", ws.Workspace.Name)
	assert.Equal(t, "pc_abc", ws.APIKey.Key)
	shape = `"pc_def"`
	ws, err = c.CreateWorkspace(context.Background(), "acme")
	require.NoError(t, err)
	assert.Equal(t, "pc_def", ws.APIKey.Key)
}

func TestHealthDegraded(t *testing.T) {
	f := newFake(t)
	f.mux.HandleFunc("GET /health", func(w http.ResponseWriter, r *http.Request) {
		fail(w, 503, `{"success":false,"data":{"status":"degraded","database":"error"},"error":"Service Unavailable","message":"storage does not answer","statusCode":503}`)
	})
	h, err := f.client().Health(context.Background())
	require.Error(t, err)
	require.NotNil(t, h)
	assert.Equal(t, "degraded", h.Status)
	assert.Equal(t, "storage does not answer", err.Error())
}

func TestNoAPIKeyHeaderWhenEmpty(t *testing.T) {
	f := newFake(t)
	f.mux.HandleFunc("GET /v1/shared/{token}/info", func(w http.ResponseWriter, r *http.Request) {
		ok(w, 200, `{"name":"n","serviceName":"web","protocol":"http","requiresPassword":true}`)
	})
	info, err := client.New(f.srv.URL, "").SharedInfo(context.Background(), "tok")
	require.NoError(t, err)
	assert.True(t, info.RequiresPassword)
	assert.Empty(t, f.last().APIKey)
}

func TestContextCancelled(t *testing.T) {
	f := newFake(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := f.client().Status(ctx)
	require.Error(t, err)
	assert.True(t, errors.Is(err, context.Canceled), err)
	var ae *client.APIError
	assert.False(t, errors.As(err, &ae))
}

func TestDecodeErrorIsNotAPIError(t *testing.T) {
	f := newFake(t)
	f.mux.HandleFunc("GET /v1/status", func(w http.ResponseWriter, r *http.Request) { ok(w, 200, `"oops"`) })
	_, err := f.client().Status(context.Background())
	require.Error(t, err)
	assert.True(t, strings.Contains(err.Error(), "decode data"), err.Error())

	// A body that is not the API's JSON at all (an HTML error page).
	f.mux.HandleFunc("GET /v1/services", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		io.WriteString(w, "<html>bad gateway</html>")
	})
	_, _, err = f.client().ListServices(context.Background(), client.ListOptions{}, client.ServiceFilter{})
	require.ErrorIs(t, err, client.ErrDecode)
	assert.Contains(t, err.Error(), "decode response: invalid character")
}

// An empty id is refused before any request: the API would answer 404
// ("no route"), which a caller checking IsNotFound takes for "already gone".
func TestEmptyIDIsRefusedLocally(t *testing.T) {
	f := newFake(t)
	c := f.client()
	err := c.RevokeShare(context.Background(), "")
	require.ErrorIs(t, err, client.ErrEmptyID)
	require.False(t, client.IsNotFound(err))
	_, err = c.GetService(context.Background(), "")
	require.ErrorIs(t, err, client.ErrEmptyID)
	f.mu.Lock()
	defer f.mu.Unlock()
	require.Empty(t, f.reqs, "nothing was sent")
}

func TestIsUnreachable(t *testing.T) {
	down := httptest.NewServer(http.NotFoundHandler())
	url := down.URL
	down.Close()
	_, err := client.New(url, "k").Status(context.Background())
	require.Error(t, err)
	assert.True(t, client.IsUnreachable(err), "connection refused: %v", err)
	assert.True(t, client.IsUnreachable(errors.Join(errors.New("register agent"), err)), "wrapped")
	assert.True(t, client.IsUnreachable(&client.APIError{StatusCode: 503}))
	assert.True(t, client.IsUnreachable(&client.APIError{StatusCode: 502}))
	assert.False(t, client.IsUnreachable(&client.APIError{StatusCode: 401}))
	assert.False(t, client.IsUnreachable(&client.APIError{StatusCode: 404}))
	assert.False(t, client.IsUnreachable(nil))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err = client.New(url, "k").Status(ctx)
	assert.False(t, client.IsUnreachable(err), "cancelled: %v", err)
	// A setup that retrying cannot mend is not "unreachable": a certificate
	// the client does not trust, an unsupported scheme.
	untrusted := httptest.NewTLSServer(http.NotFoundHandler())
	defer untrusted.Close()
	_, err = client.New(untrusted.URL, "k").Status(context.Background())
	require.Error(t, err)
	assert.False(t, client.IsUnreachable(err), "untrusted certificate: %v", err)
	_, err = client.New("ftp://127.0.0.1:1", "k").Status(context.Background())
	require.Error(t, err)
	assert.False(t, client.IsUnreachable(err), "unsupported scheme: %v", err)
}
