package api_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime/multipart"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/privateconnect/pc/control"
	"github.com/privateconnect/pc/control/api"
	"github.com/privateconnect/pc/control/store"
	"github.com/privateconnect/pc/internal/sharepass"
	"github.com/privateconnect/pc/plugins"
	"github.com/privateconnect/pc/plugins/builtin"
	"github.com/privateconnect/pc/sdk/client"
)

// Test guests, as wat2wasm builds them from the WAT beside each
// (TestPluginGuestsMatchWAT checks that when wat2wasm is installed).
var testGuests = map[string]struct{ wat, hex string }{
	// Allows everything.
	"minimal": {`(module
  (memory (export "memory") 1)
  (func (export "policy_abi_version") (result i32) (i32.const 1))
  (func (export "handle_request") (result i32) (i32.const 0)))`,
		"0061736d010000000105016000017f03030200000503010001073003066d656d6f7279020012706f6c6963795f6162695f76657273696f6e00000e68616e646c655f7265717565737400010a0b02040041010b040041000b"},
	// Answers 403 "denied" with X-Gate: closed; refuses the config {}.
	"gate": {`(module
  (import "policy" "get_config" (func $get_config (param i32 i32) (result i32)))
  (import "policy" "respond" (func $respond (param i32 i32 i32)))
  (import "policy" "set_response_header" (func $set_response_header (param i32 i32 i32 i32)))
  (import "policy" "set_error" (func $set_error (param i32 i32)))
  (memory (export "memory") 1)
  (data (i32.const 0) "denied")
  (data (i32.const 16) "X-Gate")
  (data (i32.const 32) "closed")
  (data (i32.const 48) "config must not be empty")
  (func (export "policy_abi_version") (result i32) (i32.const 1))
  (func (export "handle_request") (result i32)
    (call $set_response_header (i32.const 16) (i32.const 6) (i32.const 32) (i32.const 6))
    (call $respond (i32.const 403) (i32.const 0) (i32.const 6))
    (i32.const 1))
  (func (export "validate_config") (result i32)
    (if (i32.le_s (call $get_config (i32.const 1024) (i32.const 0)) (i32.const 2))
      (then
        (call $set_error (i32.const 48) (i32.const 24))
        (return (i32.const 1))))
    (i32.const 0)))`,
		"0061736d01000000011d0560027f7f017f60037f7f7f0060047f7f7f7f0060027f7f006000017f02560406706f6c6963790a6765745f636f6e666967000006706f6c69637907726573706f6e64000106706f6c696379137365745f726573706f6e73655f686561646572000206706f6c696379097365745f6572726f7200030304030404040503010001074204066d656d6f7279020012706f6c6963795f6162695f76657273696f6e00040e68616e646c655f7265717565737400050f76616c69646174655f636f6e66696700060a3903040041010b17004110410641204106100241930341004106100141010b1a004180084100100041024c044041304118100341010f0b41000b0b3f040041000b0664656e6965640041100b06582d476174650041200b06636c6f7365640041300b18636f6e666967206d757374206e6f7420626520656d707479"},
	// Answers 503 without a body (the edge then sends its error envelope).
	"busy": {`(module
  (import "policy" "respond" (func $respond (param i32 i32 i32)))
  (memory (export "memory") 1)
  (func (export "policy_abi_version") (result i32) (i32.const 1))
  (func (export "handle_request") (result i32)
    (call $respond (i32.const 503) (i32.const 0) (i32.const 0))
    (i32.const 1)))`,
		"0061736d01000000010b0260037f7f7f006000017f02120106706f6c69637907726573706f6e64000003030201010503010001073003066d656d6f7279020012706f6c6963795f6162695f76657273696f6e00010e68616e646c655f7265717565737400020a1402040041010b0d0041f70341004100100041010b"},
	// Never returns from handle_request.
	"spin": {`(module
  (memory (export "memory") 1)
  (func (export "policy_abi_version") (result i32) (i32.const 1))
  (func (export "handle_request") (result i32) (loop $l (br $l)) (i32.const 0)))`,
		"0061736d010000000105016000017f03030200000503010001073003066d656d6f7279020012706f6c6963795f6162695f76657273696f6e00000e68616e646c655f7265717565737400010a1002040041010b090003400c000b41000b"},
	// Imports a file-system function: refused at upload.
	"forbidden": {`(module
  (import "wasi_snapshot_preview1" "path_open"
    (func (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "policy_abi_version") (result i32) (i32.const 1))
  (func (export "handle_request") (result i32) (i32.const 0)))`,
		"0061736d0100000001120260097f7f7f7f7f7e7e7f7f017f6000017f02240116776173695f736e617073686f745f707265766965773109706174685f6f70656e000003030201010503010001073003066d656d6f7279020012706f6c6963795f6162695f76657273696f6e00010e68616e646c655f7265717565737400020a0b02040041010b040041000b"},
}

func guest(t testing.TB, name string) []byte {
	t.Helper()
	b, err := hex.DecodeString(testGuests[name].hex)
	require.NoError(t, err)
	return b
}

// padded returns a module with a custom section of n bytes appended (the
// runtime ignores it), to upload large valid modules.
func padded(t testing.TB, name string, n int) []byte {
	b := append([]byte(nil), guest(t, name)...)
	payload := append([]byte{3, 'p', 'a', 'd'}, make([]byte, n)...)
	size := len(payload)
	b = append(b, 0)
	for {
		c := byte(size & 0x7f)
		size >>= 7
		if size != 0 {
			b = append(b, c|0x80)
			continue
		}
		b = append(b, c)
		break
	}
	return append(b, payload...)
}

func TestPluginGuestsMatchWAT(t *testing.T) {
	w2w, err := exec.LookPath("wat2wasm")
	if err != nil {
		t.Skip("wat2wasm not installed (Debian wabt)")
	}
	dir := t.TempDir()
	for name, g := range testGuests {
		src, out := filepath.Join(dir, name+".wat"), filepath.Join(dir, name+".wasm")
		require.NoError(t, os.WriteFile(src, []byte(g.wat), 0o600))
		b, err := exec.Command(w2w, src, "-o", out).CombinedOutput()
		require.NoError(t, err, "%s: %s", name, b)
		built, err := os.ReadFile(out)
		require.NoError(t, err)
		assert.Equal(t, g.hex, hex.EncodeToString(built), name)
	}
}

// pluginCacheDir is the compilation cache shared by every test on the
// machine (the edges of internal/testenv use it too).
var pluginCacheDir = filepath.Join(os.TempDir(), "pc-test-plugin-cache", "compiled")

var warmOnce sync.Once

// pluginHarness is a control plane with the shared compilation cache. The
// first call compiles the built-in the tests attach into the cache, outside
// any request: a Go guest takes ~1 s to compile (~10 s with -race), ~0.1 s
// from the cache.
func pluginHarness(t *testing.T) *harness {
	t.Helper()
	warmOnce.Do(func() {
		ctx := context.Background()
		h, err := plugins.NewHost(ctx, plugins.Config{CacheDir: pluginCacheDir, PoolSize: 1})
		require.NoError(t, err)
		defer h.Close(ctx)
		wasm, err := builtin.Module(builtin.IPAllow)
		require.NoError(t, err, "run make plugins")
		require.NoError(t, h.Load(ctx, "warm", wasm, plugins.ModuleOptions{}))
	})
	h := newHarness(t, func(c *control.Config) { c.PluginCacheDir = pluginCacheDir })
	// A share with policy fields validates its config with several built-ins;
	// compiled cold inside the request (a new build of the modules, -race, the
	// rest of the suite beside it) they outlasted the default 10 s.
	h.hc.Timeout = time.Minute
	return h
}

// upload sends a raw application/wasm upload.
func (h *harness) upload(key, query string, wasm []byte) resp {
	h.t.Helper()
	return h.req("POST", "/v1/plugins?"+query, key, wasm, "Content-Type", "application/wasm")
}

func (h *harness) mustUpload(name string, wasm []byte) string {
	h.t.Helper()
	r := h.upload(h.admin, "name="+name, wasm)
	require.Equal(h.t, 201, r.Status, "%s", r.Raw)
	return r.str("id")
}

func multipartBody(t *testing.T, fields [][2]string, file []byte) (string, []byte) {
	t.Helper()
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	for _, f := range fields {
		require.NoError(t, mw.WriteField(f[0], f[1]))
	}
	if file != nil {
		fw, err := mw.CreateFormFile("file", "plugin.wasm")
		require.NoError(t, err)
		_, _ = fw.Write(file)
	}
	require.NoError(t, mw.Close())
	return mw.FormDataContentType(), buf.Bytes()
}

// TestPluginUpload: the three upload forms, the validation of modules and
// fields, the size limits, and the answers against the OpenAPI document.
func TestPluginUpload(t *testing.T) {
	h := pluginHarness(t)
	dc := newDocChecker(t, h)

	// Raw form, larger than the 1 MiB limit of JSON bodies.
	big := padded(t, "minimal", 3<<20)
	r := h.upload(h.admin, "name=allow-all&version=1.0.0&description=lets+everything+through&timeoutMs=20&failOpen=true", big)
	require.Equal(t, 201, r.Status, "%s", r.Raw)
	dc.check(t, "POST", "/v1/plugins", r)
	d := r.data()
	assert.Equal(t, "allow-all", d["name"])
	assert.Equal(t, "1.0.0", d["version"])
	assert.Equal(t, "lets everything through", d["description"])
	assert.Equal(t, store.ModuleSHA256(big), d["sha256"])
	assert.Equal(t, float64(len(big)), d["sizeBytes"])
	assert.Equal(t, []any{"handle_request", "memory", "policy_abi_version"}, d["exports"])
	assert.Equal(t, false, d["builtin"])
	assert.Equal(t, false, d["hasValidateConfig"])
	assert.Equal(t, true, d["failOpen"])
	assert.Equal(t, float64(20), d["timeoutMs"])
	assert.Equal(t, float64(16<<20), d["memoryLimitBytes"], "the default")
	assert.NotEmpty(t, d["createdAt"])
	assert.NotContains(t, d, "configSchema")

	// JSON form.
	r = h.must(201, "POST", "/v1/plugins", h.admin, map[string]any{"name": "gate", "version": "2",
		"wasmBase64": base64.StdEncoding.EncodeToString(guest(t, "gate")), "memoryLimitBytes": 2 << 20})
	dc.check(t, "POST", "/v1/plugins", r)
	assert.Equal(t, true, r.data()["hasValidateConfig"])
	assert.Equal(t, float64(2<<20), r.data()["memoryLimitBytes"])
	assert.Contains(t, r.data()["exports"], "validate_config")
	// Multipart form; version is optional.
	ct, body := multipartBody(t, [][2]string{{"name", "spin"}, {"timeoutMs", "5"}}, guest(t, "spin"))
	r = h.req("POST", "/v1/plugins", h.admin, body, "Content-Type", ct)
	require.Equal(t, 201, r.Status, "%s", r.Raw)
	assert.Equal(t, "", r.data()["version"])

	// Name and version are unique together; another version is fine.
	r = h.upload(h.admin, "name=gate&version=2", guest(t, "minimal"))
	h.assertError(r, 409)
	dc.check(t, "POST", "/v1/plugins", r)
	h.mustUpload("gate&version=3", guest(t, "minimal"))
	r = h.upload(h.admin, "name=spin", guest(t, "minimal")) // spin exists without a version
	h.assertError(r, 409)
	assert.Contains(t, r.Body["message"], "give this upload a version")

	// Refused modules: 400 with the reason.
	for name, tc := range map[string]struct {
		wasm []byte
		msg  string
	}{
		"forbidden import": {guest(t, "forbidden"), "path_open"},
		"not wasm":         {[]byte("hello, world"), "invalid plugin module"},
		"empty":            {nil, "module"},
		// 40 bytes declaring 2^31 imports: wazero's decoder allocated 26 GB for them and the
		// control plane died; the module is refused before wazero sees it.
		"declared counts": {[]byte("\x00asm\x01\x00\x00\x00\x01\t\x02`\x01\x7f\x00`\x00\x01\x7f\x02o\xf3\xf3\xf3n\x00\x01\x0ehandle_request0"),
			"malformed module: import section"},
	} {
		r := h.upload(h.admin, "name=bad", tc.wasm)
		h.assertError(r, 400)
		assert.Contains(t, r.Body["message"], tc.msg, name)
		dc.check(t, "POST", "/v1/plugins", r)
	}
	r = h.upload(h.admin, "name=bad", guest(t, "forbidden"))
	assert.Equal(t, []any{map[string]any{"field": "body", "message": r.Body["details"].([]any)[0].(map[string]any)["message"]}}, r.Body["details"])
	r = h.must(400, "POST", "/v1/plugins", h.admin, map[string]any{"name": "bad", "wasmBase64": base64.StdEncoding.EncodeToString(guest(t, "forbidden"))})
	assert.Equal(t, "wasmBase64", r.Body["details"].([]any)[0].(map[string]any)["field"])

	// Bad fields.
	for _, q := range []string{"", "name=", "name=a/b", "name=x&version=" + strings.Repeat("v", 51), "name=x&timeoutMs=0", "name=x&timeoutMs=51",
		"name=x&timeoutMs=fast", "name=x&failOpen=maybe", "name=x&memoryLimitBytes=1024", "name=x&description=" + strings.Repeat("d", 501),
		"name=x&colour=blue", "name=x&name=y"} {
		r := h.upload(h.admin, q, guest(t, "minimal"))
		h.assertError(r, 400)
		dc.check(t, "POST", "/v1/plugins", r)
	}
	h.assertError(h.req("POST", "/v1/plugins?name=x", h.admin, map[string]any{"name": "x", "wasmBase64": "AA=="}), 400)
	h.assertError(h.req("POST", "/v1/plugins", h.admin, map[string]any{"name": "x", "wasmBase64": "not base64!"}), 400)
	ct, body = multipartBody(t, [][2]string{{"name", "x"}, {"colour", "blue"}}, guest(t, "minimal"))
	h.assertError(h.req("POST", "/v1/plugins", h.admin, body, "Content-Type", ct), 400)
	ct, body = multipartBody(t, [][2]string{{"name", "x"}}, nil)
	h.assertError(h.req("POST", "/v1/plugins", h.admin, body, "Content-Type", ct), 400)
	h.assertError(h.req("POST", "/v1/plugins", h.admin, guest(t, "minimal"), "Content-Type", "text/plain"), 415)
	h.assertError(h.req("POST", "/v1/plugins", h.admin, guest(t, "minimal"), "Content-Type", "multipart/form-data"), 400)

	// Size limits: a module over 16 MiB is 413 (raw and multipart here; the
	// matrix test sends a JSON body over MaxPluginUploadBytes).
	huge := make([]byte, api.MaxPluginBytes+1)
	r = h.upload(h.admin, "name=huge", huge)
	h.assertError(r, 413)
	dc.check(t, "POST", "/v1/plugins", r)
	ct, body = multipartBody(t, [][2]string{{"name", "huge"}}, huge)
	h.assertError(h.req("POST", "/v1/plugins", h.admin, body, "Content-Type", ct), 413)
	// Beyond what the server reads at all, the 413 still gives the
	// upload's limit (it said 1 MiB, the limit of JSON bodies).
	// (Refused before it is read: only the header is sent.)
	conn, err := net.Dial("tcp", strings.TrimPrefix(h.base, "http://"))
	require.NoError(t, err)
	defer conn.Close()
	fmt.Fprintf(conn, "POST /v1/plugins?name=huge HTTP/1.1\r\nHost: x\r\nX-Api-Key: %s\r\nContent-Type: application/wasm\r\nContent-Length: %d\r\n\r\n",
		h.admin, api.MaxPluginUploadBytes+(8<<20))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	require.NoError(t, err)
	raw, _ := io.ReadAll(resp.Body)
	require.Equal(t, 413, resp.StatusCode, "%s", raw)
	assert.Contains(t, string(raw), fmt.Sprintf("(plugin modules: at most %d bytes)", api.MaxPluginBytes))
	// Only admin keys upload; other routes keep the 1 MiB limit.
	h.assertError(h.upload(h.addKey(h.ws, "writer", []string{"write"}, nil, nil), "name=w", guest(t, "minimal")), 403)
	h.assertError(h.req("POST", "/v1/plugins/x/test", h.admin, append([]byte("{}"), bytes.Repeat([]byte(" "), 1<<20)...)), 413)

	n := h.must(200, "GET", "/v1/workspace", h.admin, nil).data()["usage"].(map[string]any)["plugins"]
	assert.Equal(t, float64(4), n)
}

// TestPluginsReadAndDelete: list (built-ins first, paginated), get,
// download, the edge route, workspace isolation, and delete (409 while a
// share uses the plugin, 400 for built-ins).
func TestPluginsReadAndDelete(t *testing.T) {
	h := pluginHarness(t)
	dc := newDocChecker(t, h)
	openapi3filter.RegisterBodyDecoder("application/wasm", openapi3filter.FileBodyDecoder)
	_, edgeTok := h.edge("e")
	gate := h.mustUpload("gate", guest(t, "gate"))
	minimal := h.mustUpload("minimal", guest(t, "minimal"))
	_, tenant := h.newWorkspace("tenant")
	theirs := h.upload(tenant["admin"], "name=theirs", guest(t, "spin"))
	require.Equal(t, 201, theirs.Status)
	do := func(status int, method, path string, body any) resp {
		t.Helper()
		r := h.must(status, method, path, h.admin, body)
		dc.check(t, method, path, r)
		return r
	}

	// The list: the built-ins, then this workspace's plugins.
	l := do(200, "GET", "/v1/plugins", nil).list()
	names := builtin.Names()
	require.Len(t, l, len(names)+2)
	for i, n := range names {
		p := l[i].(map[string]any)
		assert.Equal(t, "builtin:"+n, p["id"])
		assert.Equal(t, n, p["name"])
		assert.Equal(t, true, p["builtin"])
		assert.NotEmpty(t, p["createdAt"], "every plugin has a createdAt (api-v1.md)")
		assert.NotEmpty(t, p["description"])
		assert.NotEmpty(t, p["configSchema"])
		assert.Contains(t, p["exports"], "handle_request")
		assert.Contains(t, p["exports"], "validate_config")
		assert.Len(t, p["sha256"], 64)
	}
	ids := []string{l[len(names)].(map[string]any)["id"].(string), l[len(names)+1].(map[string]any)["id"].(string)}
	assert.ElementsMatch(t, []string{gate, minimal}, ids)
	// Pages of 3 walk the same list once.
	var walked []string
	cursor := ""
	for i := 0; i < 10; i++ {
		r := do(200, "GET", "/v1/plugins?limit=3&cursor="+cursor, nil)
		for _, p := range r.list() {
			walked = append(walked, p.(map[string]any)["id"].(string))
		}
		if cursor = r.Header.Get("X-Next-Cursor"); cursor == "" {
			break
		}
	}
	require.Len(t, walked, len(names)+2)
	assert.Equal(t, []string{"builtin:" + names[0], "builtin:" + names[1]}, walked[:2])
	assert.ElementsMatch(t, []string{gate, minimal}, walked[len(names):])
	r := do(200, "GET", "/v1/plugins?limit="+strconv.Itoa(len(names)), nil)
	assert.NotEmpty(t, r.Header.Get("X-Next-Cursor"), "custom plugins follow the built-ins")
	h.assertError(h.req("GET", "/v1/plugins?cursor=eHl6", h.admin, nil), 400)
	assert.Len(t, h.must(200, "GET", "/v1/plugins", tenant["admin"], nil).list(), len(names)+1)

	// Get and download.
	assert.Equal(t, "gate", do(200, "GET", "/v1/plugins/"+gate, nil).str("name"))
	pw := do(200, "GET", "/v1/plugins/builtin:password", nil)
	assert.Equal(t, float64(50), pw.data()["timeoutMs"], "the password check gets the maximum budget")
	h.assertError(h.req("GET", "/v1/plugins/builtin:nope", h.admin, nil), 404)
	h.assertError(h.req("GET", "/v1/plugins/"+gate, tenant["admin"], nil), 404)
	h.assertError(h.req("GET", "/v1/plugins/"+theirs.str("id"), h.admin, nil), 404)
	r = h.req("GET", "/v1/plugins/"+gate+"/wasm", h.admin, nil)
	require.Equal(t, 200, r.Status)
	assert.Equal(t, "application/wasm", r.Header.Get("Content-Type"))
	assert.Equal(t, guest(t, "gate"), r.Raw)
	assert.Equal(t, `"`+store.ModuleSHA256(r.Raw)+`"`, r.Header.Get("ETag"))
	dc.check(t, "GET", "/v1/plugins/"+gate+"/wasm", r)
	r = h.req("GET", "/v1/plugins/builtin:ip-allow/wasm", h.admin, nil)
	require.Equal(t, 200, r.Status)
	want, err := builtin.Module(builtin.IPAllow)
	require.NoError(t, err)
	assert.Equal(t, want, r.Raw)
	h.assertError(h.req("GET", "/v1/plugins/"+gate+"/wasm", tenant["admin"], nil), 404)
	h.assertError(h.req("GET", "/v1/plugins/"+gate+"/wasm", "", nil), 401)

	// Edges fetch modules by sha256.
	sum := store.ModuleSHA256(guest(t, "gate"))
	r = h.req("GET", "/v1/edges/plugins/"+sum, "", nil, "Authorization", "Bearer "+edgeTok)
	require.Equal(t, 200, r.Status)
	assert.Equal(t, guest(t, "gate"), r.Raw)
	dc.check(t, "GET", "/v1/edges/plugins/"+sum, r)
	r = h.req("GET", "/v1/edges/plugins/"+strings.Repeat("0", 64), "", nil, "Authorization", "Bearer "+edgeTok)
	h.assertError(r, 404)
	dc.check(t, "GET", "/v1/edges/plugins/x", r)
	h.assertError(h.req("GET", "/v1/edges/plugins/nothex", "", nil, "Authorization", "Bearer "+edgeTok), 404)
	h.assertError(h.req("GET", "/v1/edges/plugins/"+sum, "", nil, "Authorization", "Bearer wrong"), 401)
	h.assertError(h.req("GET", "/v1/edges/plugins/"+sum, h.admin, nil), 401)

	// Delete: 409 while a share uses the plugin, 400 for built-ins.
	svcID, _ := h.service(h.admin, "web")
	sh := do(201, "POST", "/v1/services/"+svcID+"/shares", map[string]any{"name": "s",
		"plugins": []any{map[string]any{"pluginId": gate, "config": map[string]any{"mode": "strict"}}}})
	r = h.req("DELETE", "/v1/plugins/"+gate, h.admin, nil)
	h.assertError(r, 409)
	assert.Contains(t, r.Body["message"], sh.str("id"))
	dc.check(t, "DELETE", "/v1/plugins/"+gate, r)
	r = h.req("DELETE", "/v1/plugins/builtin:ip-allow", h.admin, nil)
	h.assertError(r, 400)
	assert.Contains(t, r.Body["message"], "built-in")
	h.assertError(h.req("DELETE", "/v1/plugins/"+gate, tenant["admin"], nil), 404)
	// Detaching (or revoking) lets it go; the module goes with its last plugin.
	do(200, "PATCH", "/v1/shares/"+sh.str("id"), map[string]any{"plugins": []any{}})
	del := do(200, "DELETE", "/v1/plugins/"+gate, nil)
	assert.Equal(t, gate, del.str("id"))
	h.assertError(h.req("GET", "/v1/plugins/"+gate, h.admin, nil), 404)
	h.assertError(h.req("DELETE", "/v1/plugins/"+gate, h.admin, nil), 404)
	h.assertError(h.req("GET", "/v1/edges/plugins/"+sum, "", nil, "Authorization", "Bearer "+edgeTok), 404)
	assert.Len(t, h.must(200, "GET", "/v1/plugins", h.admin, nil).list(), len(names)+1)
}

// TestPluginShareAttachments: attached plugins must exist in the workspace
// (or be built-ins) and accept their config (validate_config, 400 with the
// plugin's reason); the share's config reaches the store as given.
func TestPluginShareAttachments(t *testing.T) {
	h := pluginHarness(t)
	gate := h.mustUpload("gate", guest(t, "gate"))
	minimal := h.mustUpload("minimal", guest(t, "minimal"))
	_, tenant := h.newWorkspace("tenant")
	theirs := h.upload(tenant["admin"], "name=theirs", guest(t, "minimal")).str("id")
	svcID, _ := h.service(h.admin, "web")
	create := func(plugins ...any) resp {
		t.Helper()
		return h.req("POST", "/v1/services/"+svcID+"/shares", h.admin, map[string]any{"name": "s", "plugins": plugins})
	}
	att := func(id string, cfg any) map[string]any { return map[string]any{"pluginId": id, "config": cfg} }

	r := create(att(minimal, nil), att(gate, map[string]any{"x": 1}), att("builtin:ip-allow", map[string]any{"allow": []string{"10.0.0.0/8"}}))
	require.Equal(t, 201, r.Status, "%s", r.Raw)
	shareID := r.str("id")
	assert.Equal(t, []any{
		map[string]any{"pluginId": minimal, "config": map[string]any{}},
		map[string]any{"pluginId": gate, "config": map[string]any{"x": float64(1)}},
		map[string]any{"pluginId": "builtin:ip-allow", "config": map[string]any{"allow": []any{"10.0.0.0/8"}}},
	}, r.data()["plugins"])
	require.NoError(t, h.kv.View(context.Background(), func(tx store.Tx) error {
		sh, err := store.GetShare(tx, h.ws, shareID)
		require.NoError(t, err)
		require.Len(t, sh.Plugins, 3)
		assert.JSONEq(t, `{"x":1}`, string(sh.Plugins[1].Config))
		return nil
	}))

	for name, tc := range map[string]struct {
		plugins []any
		field   string
		msg     string
	}{
		"plugin refuses its config": {[]any{att(minimal, nil), att(gate, map[string]any{})}, "plugins[1].config", "config must not be empty"},
		"built-in refuses config":   {[]any{att("builtin:ip-allow", map[string]any{"allow": []string{"not-a-cidr"}})}, "plugins[0].config", ""},
		"unknown plugin":            {[]any{att("6f1c0000-0000-4000-8000-000000000000", nil)}, "plugins[0].pluginId", "not a plugin"},
		"another workspace's":       {[]any{att(theirs, nil)}, "plugins[0].pluginId", "not a plugin"},
		"unknown built-in":          {[]any{att("builtin:nope", nil)}, "plugins[0].pluginId", "not a plugin"},
		"config not an object":      {[]any{att(gate, []int{1})}, "plugins[0].config", "object"},
		"config over the host limit": {[]any{att(gate, map[string]any{"x": strings.Repeat("a", 70000)})}, "plugins[0].config",
			"larger than 65536 bytes, the most a plugin config may be"},
	} {
		r := create(tc.plugins...)
		h.assertError(r, 400)
		details := r.Body["details"].([]any)
		require.Len(t, details, 1, name)
		assert.Equal(t, tc.field, details[0].(map[string]any)["field"], name)
		assert.Contains(t, details[0].(map[string]any)["message"], tc.msg, name)
	}
	// PATCH validates the same way, and only when plugins change.
	r = h.req("PATCH", "/v1/shares/"+shareID, h.admin, map[string]any{"plugins": []any{att(gate, map[string]any{})}})
	h.assertError(r, 400)
	assert.Contains(t, r.Body["message"], "config must not be empty")
	h.must(200, "PATCH", "/v1/shares/"+shareID, h.admin, map[string]any{"description": "d"})
	p := h.must(200, "PATCH", "/v1/shares/"+shareID, h.admin, map[string]any{"plugins": []any{att(gate, map[string]any{"y": 2})}})
	assert.Len(t, p.data()["plugins"], 1)
	// A plugin no longer attached can be deleted; the attached one cannot.
	h.must(200, "DELETE", "/v1/plugins/"+minimal, h.admin, nil)
	h.assertError(h.req("DELETE", "/v1/plugins/"+gate, h.admin, nil), 409)
	h.must(200, "DELETE", "/v1/shares/"+shareID, h.admin, nil)
	h.must(200, "DELETE", "/v1/plugins/"+gate, h.admin, nil)
}

// TestPluginDryRun: POST /v1/plugins/:id/test runs the plugin on the
// control plane: allow, respond (status, headers, body), error (a guest
// that never returns is stopped within its budget), and built-ins.
func TestPluginDryRun(t *testing.T) {
	h := pluginHarness(t)
	dc := newDocChecker(t, h)
	gate := h.mustUpload("gate", guest(t, "gate"))
	minimal := h.mustUpload("minimal", guest(t, "minimal"))
	spin := h.mustUpload("spin", guest(t, "spin"))
	test := func(id string, body any) map[string]any {
		t.Helper()
		r := h.must(200, "POST", "/v1/plugins/"+id+"/test", h.admin, body)
		dc.check(t, "POST", "/v1/plugins/"+id+"/test", r)
		return r.data()
	}

	d := test(minimal, map[string]any{})
	assert.Equal(t, "allow", d["decision"])
	assert.Nil(t, d["status"])
	assert.GreaterOrEqual(t, d["durationMicros"], float64(0))

	d = test(gate, map[string]any{"config": map[string]any{"k": "v"}, "request": map[string]any{"method": "post", "path": "/x?y=1",
		"headers": map[string]string{"Cookie": "a=b"}, "clientIp": "2001:db8::1"}})
	assert.Equal(t, "respond", d["decision"])
	assert.Equal(t, float64(403), d["status"])
	assert.Equal(t, "denied", d["body"])
	assert.Equal(t, map[string]any{"X-Gate": "closed"}, d["headers"])

	r := h.req("POST", "/v1/plugins/"+gate+"/test", h.admin, map[string]any{"config": map[string]any{}})
	h.assertError(r, 400)
	assert.Contains(t, r.Body["message"], "config must not be empty")
	dc.check(t, "POST", "/v1/plugins/"+gate+"/test", r)

	d = test(spin, map[string]any{})
	assert.Equal(t, "error", d["decision"])
	assert.Equal(t, float64(500), d["status"])
	assert.Contains(t, d["error"], "time budget")
	assert.JSONEq(t, `{"error":"Internal Server Error","message":"The request could not be authorized","statusCode":500}`, d["body"].(string),
		"the body the edge gives visitors")
	// A 5xx answer without a body shows the envelope too, as the edge sends it.
	d = test(h.mustUpload("busy", guest(t, "busy")), map[string]any{})
	assert.Equal(t, "respond", d["decision"])
	assert.Equal(t, float64(503), d["status"])
	assert.JSONEq(t, `{"error":"Service Unavailable","message":"The request could not be authorized","statusCode":503}`, d["body"].(string))
	assert.Less(t, d["durationMicros"], float64(2e6), "stopped within its budget")
	// The host keeps serving after a guest was stopped.
	assert.Equal(t, "allow", test(minimal, map[string]any{})["decision"])

	// Built-ins run too.
	cfg := map[string]any{"allow": []string{"10.0.0.0/8"}}
	assert.Equal(t, "allow", test("builtin:ip-allow", map[string]any{"config": cfg, "request": map[string]any{"clientIp": "10.1.2.3"}})["decision"])
	d = test("builtin:ip-allow", map[string]any{"config": cfg, "request": map[string]any{"clientIp": "192.0.2.1"}})
	assert.Equal(t, "respond", d["decision"])
	assert.Equal(t, float64(403), d["status"])

	for _, bad := range []map[string]any{
		{"request": map[string]any{"clientIp": "nope"}}, {"request": map[string]any{"path": "x"}},
		{"request": map[string]any{"method": "G E T"}}, {"config": []int{1}}, {"request": map[string]any{"headers": map[string]string{"A": "b\r\nc"}}},
		{"request": map[string]any{"body": "x"}},
	} {
		h.assertError(h.req("POST", "/v1/plugins/"+minimal+"/test", h.admin, bad), 400)
	}
	h.assertError(h.req("POST", "/v1/plugins/builtin:nope/test", h.admin, map[string]any{}), 404)
	h.assertError(h.req("POST", "/v1/plugins/6f1c0000-0000-4000-8000-000000000000/test", h.admin, map[string]any{}), 404)
}

// TestPluginsClient runs the typed client behind `connect plugins` against
// the routes: every field it reads must be the one the API writes.
func TestPluginsClient(t *testing.T) {
	h := pluginHarness(t)
	ctx := context.Background()
	c := client.New(h.base, h.admin)
	up, err := c.UploadPlugin(ctx, "gate", "1.2.0", bytes.NewReader(guest(t, "gate")))
	require.NoError(t, err)
	assert.Equal(t, "gate", up.Name)
	assert.Equal(t, "1.2.0", up.Version)
	assert.Equal(t, store.ModuleSHA256(guest(t, "gate")), up.SHA256)
	assert.Equal(t, int64(len(guest(t, "gate"))), up.SizeBytes)
	assert.Contains(t, up.Exports, "validate_config")
	require.NotNil(t, up.CreatedAt)
	assert.False(t, up.Builtin)

	// The optional fields of an upload reach the API and come back.
	opt, err := c.UploadPluginWith(ctx, "gate-open", bytes.NewReader(guest(t, "gate")),
		client.UploadOptions{Version: "2", Description: "lenient", FailOpen: true, TimeoutMs: 20, MemoryLimitBytes: 32 << 20})
	require.NoError(t, err)
	assert.Equal(t, "lenient", opt.Description)
	assert.True(t, opt.FailOpen)
	assert.Equal(t, 20, opt.TimeoutMs)
	assert.EqualValues(t, 32<<20, opt.MemoryLimitBytes)
	require.NoError(t, c.DeletePlugin(ctx, opt.ID))

	cr, err := c.CreatePlugin(ctx, client.CreatePluginRequest{Name: "minimal", WasmBase64: base64.StdEncoding.EncodeToString(guest(t, "minimal")), Description: "allows"})
	require.NoError(t, err)
	assert.Equal(t, "allows", cr.Description)

	_, err = c.UploadPlugin(ctx, "bad", "", bytes.NewReader(guest(t, "forbidden")))
	var ae *client.APIError
	require.True(t, errors.As(err, &ae), "%v", err)
	assert.Equal(t, 400, ae.StatusCode)
	assert.Contains(t, ae.Message, "path_open")

	all, err := client.All(ctx, c.ListPlugins)
	require.NoError(t, err)
	require.Len(t, all, len(builtin.Names())+2)
	assert.True(t, all[0].Builtin)
	assert.Equal(t, "builtin:"+builtin.Names()[0], all[0].ID)

	got, err := c.GetPlugin(ctx, up.ID)
	require.NoError(t, err)
	assert.Equal(t, *up, *got)
	b, err := c.DownloadPlugin(ctx, up.ID)
	require.NoError(t, err)
	assert.Equal(t, guest(t, "gate"), b)
	b, err = c.DownloadPlugin(ctx, "builtin:headers")
	require.NoError(t, err)
	assert.NotEmpty(t, b)

	res, err := c.TestPlugin(ctx, up.ID, client.PluginTestRequest{Config: json.RawMessage(`{"a":1}`),
		Request: client.PluginTestHTTPReq{Method: "GET", Path: "/", Headers: map[string]string{"X-A": "1"}, ClientIP: "203.0.113.7"}})
	require.NoError(t, err)
	assert.Equal(t, "respond", res.Decision)
	assert.Equal(t, 403, res.Status)
	assert.Equal(t, "denied", res.Body)
	assert.Equal(t, map[string]string{"X-Gate": "closed"}, res.Headers)
	_, err = c.TestPlugin(ctx, up.ID, client.PluginTestRequest{})
	require.True(t, errors.As(err, &ae))
	assert.Equal(t, 400, ae.StatusCode, "the gate refuses the empty config")

	require.NoError(t, c.DeletePlugin(ctx, cr.ID))
	err = c.DeletePlugin(ctx, "builtin:headers")
	require.True(t, errors.As(err, &ae))
	assert.Equal(t, 400, ae.StatusCode)
}

// TestSharePasswordHashFormat: the hash the API stores for a share's
// password is the one the password built-in verifies.
func TestSharePasswordHashFormat(t *testing.T) {
	hash, err := sharepass.Hash("correct horse battery")
	require.NoError(t, err)
	assert.True(t, plugins.VerifySharePassword(hash, "correct horse battery"))
	assert.False(t, plugins.VerifySharePassword(hash, "wrong horse battery"))
	assert.True(t, sharepass.Verify(plugins.HashSharePassword("pw-123456"), "pw-123456"))

	h := newHarness(t)
	svcID, _ := h.service(h.admin, "web")
	id := h.must(201, "POST", "/v1/services/"+svcID+"/shares", h.admin, map[string]any{"name": "s", "password": "s3cret-pass"}).str("id")
	require.NoError(t, h.kv.View(context.Background(), func(tx store.Tx) error {
		sh, err := store.GetShare(tx, h.ws, id)
		require.NoError(t, err)
		assert.True(t, plugins.VerifySharePassword(sh.PasswordHash, "s3cret-pass"))
		assert.False(t, plugins.VerifySharePassword(sh.PasswordHash, "s3cret-pasS"))
		return nil
	}))
}
