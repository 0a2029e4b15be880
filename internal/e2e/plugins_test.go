package e2e

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/privateconnect/pc/control"
	"github.com/privateconnect/pc/edge"
	"github.com/privateconnect/pc/internal/testenv"
	"github.com/privateconnect/pc/sdk/client"
)

// Hostile test guests (their WAT beside; control/api/plugins_test.go checks
// the same bytes against wat2wasm).
var (
	// (module
	//   (memory (export "memory") 1)
	//   (func (export "policy_abi_version") (result i32) (i32.const 1))
	//   (func (export "handle_request") (result i32) (loop $l (br $l)) (i32.const 0)))
	spinWasm = "0061736d010000000105016000017f03030200000503010001073003066d656d6f7279020012706f6c6963795f6162695f76657273696f6e00000e68616e646c655f7265717565737400010a1002040041010b090003400c000b41000b"
	// (module
	//   (import "wasi_snapshot_preview1" "path_open"
	//     (func (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
	//   (memory (export "memory") 1)
	//   (func (export "policy_abi_version") (result i32) (i32.const 1))
	//   (func (export "handle_request") (result i32) (i32.const 0)))
	forbiddenWasm = "0061736d0100000001120260097f7f7f7f7f7e7e7f7f017f6000017f02240116776173695f736e617073686f745f707265766965773109706174685f6f70656e000003030201010503010001073003066d656d6f7279020012706f6c6963795f6162695f76657273696f6e00010e68616e646c655f7265717565737400020a0b02040041010b040041000b"
)

func jsonRaw(v any) (json.RawMessage, error) {
	b, err := json.Marshal(v)
	return json.RawMessage(b), err
}

func mustHex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	require.NoError(t, err)
	return b
}

// buildGuest builds a Go plugin with the SDK, as a plugin author does:
// GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared.
func buildGuest(t *testing.T, pkg string) []byte {
	t.Helper()
	out := filepath.Join(t.TempDir(), "plugin.wasm")
	cmd := exec.Command("go", "build", "-buildmode=c-shared", "-trimpath", "-ldflags=-s", "-o", out, pkg)
	cmd.Dir = filepath.Join("..", "..")
	cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm", "CGO_ENABLED=0")
	b, err := cmd.CombinedOutput()
	require.NoError(t, err, "build %s: %s", pkg, b)
	wasm, err := os.ReadFile(out)
	require.NoError(t, err)
	return wasm
}

// eventually polls until the share answers want (for a state that takes
// a while to reach the edge; a request waits up to 5 s for its plugin's
// load, then answers 503).
func eventually(t *testing.T, url string, hdr map[string]string, want int) (*http.Response, string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, body := do(t, "GET", url, hdr)
		if resp.StatusCode == want || time.Now().After(deadline) {
			require.Equal(t, want, resp.StatusCode, body)
			return resp, body
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func apiError(t *testing.T, err error, status int) *client.APIError {
	t.Helper()
	var ae *client.APIError
	require.True(t, errors.As(err, &ae), "want an API error, got %v", err)
	require.Equal(t, status, ae.StatusCode, "%s %v", ae.Message, ae.Details)
	return ae
}

// TestCustomPlugins: a policy written in Go with the SDK is uploaded through
// the API, attached to shares and enforced on the edge; its config is
// validated at attachment (400 with the plugin's reason); it cannot be
// deleted while used (409); a hostile module attached to a share makes that
// share answer 500 while the others keep serving; a module importing a
// forbidden function is refused at upload (400).
func TestCustomPlugins(t *testing.T) {
	// Compiled modules are shared with the other tests' edges and control planes.
	cache := filepath.Join(os.TempDir(), "pc-test-plugin-cache", "compiled")
	env := testenv.New(t, testenv.Options{Control: func(c *control.Config) { c.PluginCacheDir = cache }})
	org := origin(t)
	id, token, edges := env.ProvisionAgent("a")
	ag := env.RunAgent(id, token, edges)
	svc := env.Expose(ag, "web", org.URL)
	ctx := context.Background()
	c := env.Client
	edge := env.Edges[0]

	wasm := buildGuest(t, "./sdk/examples/maintenance")
	require.Greater(t, len(wasm), 1<<20, "a Go guest is larger than the API's JSON body limit")
	maint, err := c.UploadPlugin(ctx, "maintenance", "1.0.0", bytes.NewReader(wasm))
	require.NoError(t, err)
	assert.Equal(t, int64(len(wasm)), maint.SizeBytes)
	assert.Contains(t, maint.Exports, "validate_config")

	now := time.Now().UTC()
	window := func(from, to time.Time) map[string]any {
		return map[string]any{"windows": []any{map[string]any{"start": from.Format(time.RFC3339), "end": to.Format(time.RFC3339)}},
			"message": "Back at noon.", "bypassHeader": "X-Maintenance-Bypass", "bypassToken": "let-me-in"}
	}
	attach := func(id string, cfg any) []client.SharePlugin {
		b, err := jsonRaw(cfg)
		require.NoError(t, err)
		return []client.SharePlugin{{PluginID: id, Config: b}}
	}

	t.Run("forbidden import refused at upload", func(t *testing.T) {
		_, err := c.UploadPlugin(ctx, "sneaky", "1", bytes.NewReader(mustHex(t, forbiddenWasm)))
		ae := apiError(t, err, 400)
		assert.Contains(t, ae.Message, "path_open")
		all, err := client.All(ctx, c.ListPlugins)
		require.NoError(t, err)
		for _, p := range all {
			assert.NotEqual(t, "sneaky", p.Name)
		}
	})

	t.Run("dry-run on the control plane", func(t *testing.T) {
		cfg, err := jsonRaw(window(now.Add(-time.Hour), now.Add(time.Hour)))
		require.NoError(t, err)
		res, err := c.TestPlugin(ctx, maint.ID, client.PluginTestRequest{Config: cfg, Request: client.PluginTestHTTPReq{Method: "GET", Path: "/"}})
		require.NoError(t, err)
		assert.Equal(t, "respond", res.Decision)
		assert.Equal(t, 503, res.Status)
		assert.Contains(t, res.Body, "Back at noon.")
	})

	t.Run("invalid config refused with the plugin's reason", func(t *testing.T) {
		_, err := c.CreateShare(ctx, svc.ID, client.CreateShareRequest{Name: "bad", Plugins: attach(maint.ID, window(now, now.Add(-time.Hour)))})
		ae := apiError(t, err, 400)
		require.Len(t, ae.Details, 1)
		assert.Equal(t, "plugins[0].config", ae.Details[0].Field)
		assert.Contains(t, ae.Details[0].Message, "each window must end after it starts")
	})

	closed := env.Share(svc.ID, client.CreateShareRequest{Name: "closed", Plugins: attach(maint.ID, window(now.Add(-time.Hour), now.Add(time.Hour)))})
	open := env.Share(svc.ID, client.CreateShareRequest{Name: "open", Plugins: attach(maint.ID, window(now.Add(-2*time.Hour), now.Add(-time.Hour)))})

	t.Run("enforced on the edge", func(t *testing.T) {
		// Outside its window the plugin allows (503 until the edge has loaded it).
		_, body := eventually(t, open.ShareURL+"/x", nil, 200)
		assert.True(t, strings.HasPrefix(body, "hello from origin: GET /x"), body)
		// Inside, it answers 503 with its page, unless the bypass header is sent.
		resp, body := do(t, "GET", closed.ShareURL+"/", nil)
		assert.Equal(t, 503, resp.StatusCode)
		assert.Contains(t, body, "Back at noon.")
		assert.NotEmpty(t, resp.Header.Get("Retry-After"))
		resp, body = do(t, "GET", closed.ShareURL+"/admin", map[string]string{"X-Maintenance-Bypass": "let-me-in"})
		assert.Equal(t, 200, resp.StatusCode)
		assert.True(t, strings.HasPrefix(body, "hello from origin: GET /admin"), body)
		// The edge fetched the module by sha256 from the control plane.
		req, _ := http.NewRequest("GET", env.ControlURL()+"/v1/edges/plugins/"+maint.SHA256, nil)
		req.Header.Set("Authorization", "Bearer "+edge.Token)
		r, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		r.Body.Close()
		assert.Equal(t, 200, r.StatusCode)
	})

	t.Run("no delete while used", func(t *testing.T) {
		ae := apiError(t, c.DeletePlugin(ctx, maint.ID), 409)
		assert.Contains(t, ae.Message, closed.ID)
	})

	t.Run("hostile module fails its share only", func(t *testing.T) {
		spin, err := c.UploadPlugin(ctx, "spin", "1", bytes.NewReader(mustHex(t, spinWasm)))
		require.NoError(t, err, "an infinite loop in handle_request is not visible at upload")
		hostile := env.Share(svc.ID, client.CreateShareRequest{Name: "hostile", Plugins: attach(spin.ID, map[string]any{})})
		eventually(t, hostile.ShareURL+"/", nil, 500)
		// Each call is stopped within its budget, and the next request to
		// another share is served.
		var slowest time.Duration
		for i := 0; i < 5; i++ {
			t0 := time.Now()
			resp, body := do(t, "GET", hostile.ShareURL+"/", nil)
			slowest = max(slowest, time.Since(t0))
			assert.Equal(t, 500, resp.StatusCode)
			assert.NotContains(t, body, "budget", "internal causes are not shown to visitors")
			resp, body = do(t, "GET", open.ShareURL+"/", nil)
			assert.Equal(t, 200, resp.StatusCode, body)
		}
		t.Logf("hostile share: 500 within %v (slowest of 5)", slowest)
		// Hammered by two clients at once, the spinning guest competes for the
		// host's guest-call slots (GOMAXPROCS-1); count what it costs others.
		var wg sync.WaitGroup
		var refused atomic.Int32
		for i := 0; i < 2; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for j := 0; j < 3; j++ {
					// 500 when the call ran out of its budget; 503 when the
					// other client's spinning call held the host's one guest
					// slot (2 cores) past AcquireTimeout. Both fail closed.
					resp, body := do(t, "GET", hostile.ShareURL+"/", nil)
					assert.Contains(t, []int{500, 503}, resp.StatusCode, body)
				}
			}()
		}
		for i := 0; i < 5; i++ {
			if resp, _ := do(t, "GET", open.ShareURL+"/", nil); resp.StatusCode != 200 {
				refused.Add(1)
			}
		}
		wg.Wait()
		t.Logf("while the hostile share was hammered, %d of 5 requests to another share were refused", refused.Load())
		resp, _ := do(t, "GET", open.ShareURL+"/after", nil)
		assert.Equal(t, 200, resp.StatusCode, "the edge keeps serving")
		require.NoError(t, c.RevokeShare(ctx, hostile.ID))
		require.NoError(t, c.DeletePlugin(ctx, spin.ID))
	})

	t.Run("deleted once its shares are gone", func(t *testing.T) {
		for _, sh := range []*client.Share{closed, open} {
			require.NoError(t, c.RevokeShare(ctx, sh.ID))
		}
		require.NoError(t, c.DeletePlugin(ctx, maint.ID))
		_, err := c.GetPlugin(ctx, maint.ID)
		apiError(t, err, 404)
		env.WaitSynced(5 * time.Second)
		_, ok := edge.Table().Plugin(maint.ID)
		assert.False(t, ok, "the edge dropped the plugin")
		req, _ := http.NewRequest("GET", env.ControlURL()+"/v1/edges/plugins/"+maint.SHA256, nil)
		req.Header.Set("Authorization", "Bearer "+edge.Token)
		r, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		r.Body.Close()
		assert.Equal(t, 404, r.StatusCode, "the module went with its last plugin")
	})
}

// TestOnlyAttachedPluginsLoad: an edge loads the uploaded plugins that
// shares attach, not every upload (docs/security.md, finding 25). Of two
// Go plugins uploaded, the edge's Wasm host holds neither until a share
// attaches one, then that one only; a share created with the other answers
// its first request, sent as soon as the edge has the share, through the
// plugin (the request waits for the load under way instead of getting 503);
// detaching a plugin from its last share unloads it (no grace here), and so
// does deleting it.
func TestOnlyAttachedPluginsLoad(t *testing.T) {
	cache := filepath.Join(os.TempDir(), "pc-test-plugin-cache", "compiled")
	env := testenv.New(t, testenv.Options{Control: func(c *control.Config) { c.PluginCacheDir = cache },
		Edge: func(c *edge.Config) { c.PluginUnloadGrace = -1 }})
	org := origin(t)
	id, token, edges := env.ProvisionAgent("a")
	ag := env.RunAgent(id, token, edges)
	svc := env.Expose(ag, "web", org.URL)
	ctx := context.Background()
	c := env.Client
	host := env.Edges[0].PluginHost()
	require.NotNil(t, host)

	// What the edge has loaded besides the built-ins.
	uploaded := func() []string {
		var ids []string
		for _, p := range host.Stats().Plugins {
			if !strings.HasPrefix(p.PluginID, "builtin:") {
				ids = append(ids, p.PluginID)
			}
		}
		return ids
	}
	waitUploaded := func(want ...string) {
		t.Helper()
		slices.Sort(want)
		deadline := time.Now().Add(10 * time.Second)
		for !slices.Equal(uploaded(), want) && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		require.Equal(t, want, uploaded())
	}
	attach := func(id string, cfg any) []client.SharePlugin {
		b, err := jsonRaw(cfg)
		require.NoError(t, err)
		return []client.SharePlugin{{PluginID: id, Config: b}}
	}
	// The first request of a share, as soon as the edge has it.
	first := func(sh *client.Share, pluginID string) {
		t.Helper()
		_, wasLoaded := host.Loaded(pluginID)
		t0 := time.Now()
		resp, body := do(t, "GET", sh.ShareURL+"/first", nil)
		require.Equal(t, 200, resp.StatusCode, body)
		assert.True(t, strings.HasPrefix(body, "hello from origin: GET /first"), body)
		t.Logf("first request of share %s: 200 in %v (plugin loaded when it was sent: %v)", sh.Name, time.Since(t0), wasLoaded)
	}

	maint, err := c.UploadPlugin(ctx, "maintenance", "1", bytes.NewReader(buildGuest(t, "./sdk/examples/maintenance")))
	require.NoError(t, err)
	guest, err := c.UploadPlugin(ctx, "guest", "1", bytes.NewReader(buildGuest(t, "./plugins/testdata/guest")))
	require.NoError(t, err)
	env.WaitSynced(5 * time.Second)
	_, ok := env.Edges[0].Table().Plugin(guest.ID)
	require.True(t, ok, "the edge knows both plugins")
	assert.Empty(t, uploaded(), "no share attaches them")

	now := time.Now().UTC()
	past := map[string]any{"windows": []any{map[string]any{"start": now.Add(-2 * time.Hour).Format(time.RFC3339),
		"end": now.Add(-time.Hour).Format(time.RFC3339)}}, "message": "later"}
	one := env.Share(svc.ID, client.CreateShareRequest{Name: "one", Plugins: attach(maint.ID, past)})
	first(one, maint.ID)
	assert.Equal(t, []string{maint.ID}, uploaded(), "only the attached plugin is loaded")

	two := env.Share(svc.ID, client.CreateShareRequest{Name: "two", Plugins: attach(guest.ID, map[string]any{"op": "allow"})})
	first(two, guest.ID)
	waitUploaded(maint.ID, guest.ID)

	// Detached from its only share: unloaded; the share serves without it.
	_, err = c.UpdateShare(ctx, two.ID, client.UpdateShareRequest{Plugins: &[]client.SharePlugin{}})
	require.NoError(t, err)
	env.WaitSynced(5 * time.Second)
	waitUploaded(maint.ID)
	resp, body := do(t, "GET", two.ShareURL+"/", nil)
	assert.Equal(t, 200, resp.StatusCode, body)

	// Deleted (once its share is revoked): unloaded.
	require.NoError(t, c.RevokeShare(ctx, one.ID))
	require.NoError(t, c.DeletePlugin(ctx, maint.ID))
	env.WaitSynced(5 * time.Second)
	waitUploaded()
	require.NoError(t, c.DeletePlugin(ctx, guest.ID))
}
