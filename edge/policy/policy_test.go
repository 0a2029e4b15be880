package policy

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/privateconnect/pc/edge/proxy"
	"github.com/privateconnect/pc/edge/routes"
	"github.com/privateconnect/pc/internal/config"
	"github.com/privateconnect/pc/internal/sharepass"
)

// allowWasm is a guest that allows every request:
//
//	(module
//	  (memory (export "memory") 1)
//	  (func (export "policy_abi_version") (result i32) (i32.const 1))
//	  (func (export "handle_request") (result i32) (i32.const 0)))
//
// followed by a custom section holding tag, so that each test's modules have
// their own SHA-256 (the module cache on disk would otherwise skip fetches).
func allowWasm(t *testing.T, tag string) []byte {
	t.Helper()
	b, err := hex.DecodeString("0061736d010000000105016000017f03030200000503010001073003066d656d6f72790200" +
		"12706f6c6963795f6162695f76657273696f6e00000e68616e646c655f7265717565737400010a0b02040041010b040041000b")
	if err != nil {
		t.Fatal(err)
	}
	return append(b, tagSection(t, tag)...)
}

// tagSection is a custom section holding tag, the test's name and the time.
func tagSection(t *testing.T, tag string) []byte {
	t.Helper()
	tag = t.Name() + "/" + tag + "/" + time.Now().String()
	payload := append([]byte{1, 't'}, tag...)
	if len(payload) > 127 {
		t.Fatal("tag too long for a one-byte LEB128 size")
	}
	return append([]byte{0, byte(len(payload))}, payload...)
}

// trapWasm is allowWasm whose handle_request traps (unreachable).
func trapWasm(t *testing.T, tag string) []byte {
	t.Helper()
	b := allowWasm(t, tag)
	allowCode, trapCode := "0a0b02040041010b040041000b", "0a0a02040041010b0300000b"
	code, _ := hex.DecodeString(allowCode)
	trap, _ := hex.DecodeString(trapCode)
	i := bytes.Index(b, code)
	if i < 0 {
		t.Fatal("allowWasm's code section not found")
	}
	return append(append(append([]byte(nil), b[:i]...), trap...), b[i+len(code):]...)
}

func shaOf(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// modules is a control plane's module store: Fetch serves it, each fetch
// waiting for gate (when set) and failing for the modules in fail.
type modules struct {
	mu      sync.Mutex
	byHash  map[string][]byte
	fail    map[string]bool
	gate    chan struct{}
	fetches atomic.Int32
}

func (m *modules) add(b []byte) string {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.byHash == nil {
		m.byHash, m.fail = map[string][]byte{}, map[string]bool{}
	}
	m.byHash[shaOf(b)] = b
	return shaOf(b)
}

func (m *modules) fetch(ctx context.Context, sum string) ([]byte, error) {
	m.fetches.Add(1)
	m.mu.Lock()
	gate, b, fail := m.gate, m.byHash[sum], m.fail[sum]
	m.mu.Unlock()
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	if fail || b == nil {
		return nil, errors.New("no such module")
	}
	return b, nil
}

func newEngine(t *testing.T, m *modules, tweak func(*Config)) *Engine {
	t.Helper()
	cfg := Config{
		// The built-in bundle compiles once for every test on the machine;
		// the test modules are unique (allowWasm), so fetches still happen.
		CacheDir: filepath.Join(os.TempDir(), "pc-test-plugin-cache"),
		Fetch:    m.fetch,
	}
	if tweak != nil {
		tweak(&cfg)
	}
	e, err := New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := e.Close(ctx); err != nil {
			t.Error(err)
		}
	})
	return e
}

// snapshot is a table's content: plugins by id (sha256), and shares by id
// with the plugin ids they attach.
type snapshot struct {
	plugins  map[string]string
	shares   map[string][]string
	failOpen map[string]bool // plugin ids marked failOpen
}

func (s snapshot) table(t *testing.T) *routes.Table {
	t.Helper()
	snap := &config.Snapshot{}
	for id, sum := range s.plugins {
		snap.Plugins = append(snap.Plugins, config.Plugin{ID: id, Name: id, SHA256: sum, FailOpen: s.failOpen[id]})
	}
	for id, ps := range s.shares {
		tok := sha256.Sum256([]byte(id))
		sh := config.Share{ID: id, ServiceID: "v", TokenHash: hex.EncodeToString(tok[:])}
		for _, p := range ps {
			sh.Plugins = append(sh.Plugins, config.PluginAttachment{PluginID: p})
		}
		snap.Shares = append(snap.Shares, sh)
	}
	tb, err := routes.Build(snap)
	if err != nil {
		t.Fatal(err)
	}
	return tb
}

// check runs share id's chain on a GET, as the proxy does: nil means allowed.
func check(t *testing.T, e *Engine, tb *routes.Table, id string) *proxy.Verdict {
	t.Helper()
	sh, ok := tb.ShareByID(id)
	if !ok {
		t.Fatalf("no share %s", id)
	}
	var rc fasthttp.RequestCtx
	rc.Request.SetRequestURI("/x")
	return e.Check(&rc, sh, []byte("/x"), "127.0.0.1", &proxy.Edits{})
}

func loaded(e *Engine, id string) bool {
	_, ok := e.Host().Loaded(id)
	return ok
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 10 s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestLoadsOnlyAttachedPlugins: of two uploaded plugins, the edge loads the
// one a share attaches; a share created with the other answers its first
// request once that plugin is loaded (it waits for the load, here held
// 300 ms by a slow fetch) instead of 503; the plugin is unloaded when its
// share goes, and the first when it is deleted.
func TestLoadsOnlyAttachedPlugins(t *testing.T) {
	m := &modules{}
	a, b := m.add(allowWasm(t, "a")), m.add(allowWasm(t, "b"))
	e := newEngine(t, m, func(c *Config) { c.UnloadGrace = -1 })
	s := snapshot{plugins: map[string]string{"a": a, "b": b}, shares: map[string][]string{"s1": {"a"}}}
	t1 := s.table(t)
	e.Sync(t1)
	waitFor(t, "a loaded", func() bool { return loaded(e, "a") })
	if v := check(t, e, t1, "s1"); v != nil {
		t.Fatalf("s1 refused: %+v", v)
	}
	if loaded(e, "b") {
		t.Fatal("b is loaded, yet no share attaches it")
	}

	// A share attaching b, and its first request at once.
	gate := make(chan struct{})
	m.mu.Lock()
	m.gate = gate
	m.mu.Unlock()
	s.shares["s2"] = []string{"b"}
	t2 := s.table(t)
	e.Sync(t2)
	time.AfterFunc(300*time.Millisecond, func() { close(gate) })
	t0 := time.Now()
	if v := check(t, e, t2, "s2"); v != nil {
		t.Fatalf("the first request of a new share got %d (%s) instead of waiting for its plugin's load", v.Status, v.DeniedBy)
	}
	if took := time.Since(t0); took < 250*time.Millisecond {
		t.Fatalf("the first request took %v: it did not wait for the load", took)
	}
	if !loaded(e, "a") || !loaded(e, "b") {
		t.Fatal("a and b should both be loaded")
	}

	// s2 goes: b is unloaded (no grace here); a is deleted while s1 still
	// names it (an edge's table may hold that): unloaded too.
	delete(s.shares, "s2")
	e.Sync(s.table(t))
	waitFor(t, "b unloaded", func() bool { return !loaded(e, "b") })
	delete(s.plugins, "a")
	t3 := s.table(t)
	e.Sync(t3)
	waitFor(t, "a unloaded", func() bool { return !loaded(e, "a") })
	if v := check(t, e, t3, "s1"); v == nil || v.Status != 503 {
		t.Fatalf("a share naming a deleted plugin must fail closed (503), got %+v", v)
	}
}

// TestWaitForLoadIsBounded: a request waits for a pending load at most
// LoadWait, and no longer than the load takes to fail; either way its
// plugin fails closed (503). A plugin that is not loading is not waited for.
func TestWaitForLoadIsBounded(t *testing.T) {
	m := &modules{}
	slow, broken := m.add(allowWasm(t, "slow")), m.add(allowWasm(t, "broken"))
	m.fail[broken] = true
	gate := make(chan struct{})
	defer close(gate)
	e := newEngine(t, m, func(c *Config) { c.LoadWait = time.Second })

	// The fetch of "broken" fails: the waiting request is released then.
	s := snapshot{plugins: map[string]string{"broken": broken}, shares: map[string][]string{"s": {"broken"}}}
	tb := s.table(t)
	m.gate = make(chan struct{})
	e.Sync(tb)
	time.AfterFunc(50*time.Millisecond, func() { close(m.gate) })
	t0 := time.Now()
	if v := check(t, e, tb, "s"); v == nil || v.Status != 503 {
		t.Fatalf("a plugin that failed to load must fail closed (503), got %+v", v)
	}
	if took := time.Since(t0); took < 40*time.Millisecond || took > 700*time.Millisecond {
		t.Fatalf("released after %v: want when the fetch failed (50 ms), before LoadWait (1 s)", took)
	}

	// The fetch of "slow" never ends: the request gives up after LoadWait.
	m.mu.Lock()
	m.gate = gate
	m.mu.Unlock()
	s = snapshot{plugins: map[string]string{"slow": slow}, shares: map[string][]string{"s": {"slow"}, "none": {"not-uploaded"}}}
	tb = s.table(t)
	e.Sync(tb)
	t0 = time.Now()
	if v := check(t, e, tb, "s"); v == nil || v.Status != 503 {
		t.Fatalf("a plugin still loading after LoadWait must fail closed (503), got %+v", v)
	}
	if took := time.Since(t0); took < 950*time.Millisecond || took > 4*time.Second {
		t.Fatalf("gave up after %v, want LoadWait (1 s)", took)
	}
	// A plugin the table does not hold is not loading: 503 at once.
	t0 = time.Now()
	if v := check(t, e, tb, "none"); v == nil || v.Status != 503 {
		t.Fatalf("a plugin not uploaded must fail closed (503), got %+v", v)
	}
	if took := time.Since(t0); took > 200*time.Millisecond {
		t.Fatalf("a plugin that is not loading was waited for (%v)", took)
	}
}

// TestUnloadGrace: a plugin detached and attached again within the grace
// is neither unloaded nor loaded again (the same instances go on serving);
// once the grace has passed without a share it is unloaded; a plugin
// deleted is unloaded at once, grace or not.
func TestUnloadGrace(t *testing.T) {
	m := &modules{}
	a, b := m.add(allowWasm(t, "a")), m.add(allowWasm(t, "b"))
	grace := time.Second
	e := newEngine(t, m, func(c *Config) { c.UnloadGrace = grace })
	attached := snapshot{plugins: map[string]string{"a": a, "b": b}, shares: map[string][]string{"s": {"a", "b"}}}
	detached := snapshot{plugins: attached.plugins, shares: map[string][]string{}}
	t1 := attached.table(t)
	e.Sync(t1)
	waitFor(t, "a and b loaded", func() bool { return loaded(e, "a") && loaded(e, "b") })
	if v := check(t, e, t1, "s"); v != nil {
		t.Fatalf("refused: %+v", v)
	}
	calls := func() uint64 {
		for _, p := range e.Host().Stats().Plugins {
			if p.PluginID == "a" {
				return p.Calls
			}
		}
		return 0
	}
	fetches := m.fetches.Load()

	e.Sync(detached.table(t))
	waitFor(t, "a's grace started", func() bool {
		e.mu.Lock()
		defer e.mu.Unlock()
		_, ok := e.detached["a"]
		return ok || !loaded(e, "a")
	})
	if !loaded(e, "a") {
		t.Fatal("a was unloaded before its grace ended")
	}
	t2 := attached.table(t)
	e.Sync(t2)
	if v := check(t, e, t2, "s"); v != nil {
		t.Fatalf("refused once attached again: %+v", v)
	}
	if calls() != 2 || m.fetches.Load() != fetches {
		t.Fatalf("a was loaded again (%d calls on its instances, %d fetches more)", calls(), m.fetches.Load()-fetches)
	}

	// Detached for good: unloaded after the grace, not before.
	t0 := time.Now()
	e.Sync(detached.table(t))
	waitFor(t, "a unloaded", func() bool { return !loaded(e, "a") })
	if took := time.Since(t0); took < grace-50*time.Millisecond {
		t.Fatalf("unloaded after %v, before the %v grace", took, grace)
	}

	// A deleted plugin goes at once, though a share still names it: b (which
	// went with a) attached again, then deleted.
	e.Sync(snapshot{plugins: attached.plugins, shares: map[string][]string{"s": {"b"}}}.table(t))
	waitFor(t, "b loaded", func() bool { return loaded(e, "b") })
	t0 = time.Now()
	e.Sync(snapshot{plugins: map[string]string{"a": a}, shares: map[string][]string{"s": {"b"}}}.table(t))
	waitFor(t, "b unloaded", func() bool { return !loaded(e, "b") })
	if took := time.Since(t0); took >= grace {
		t.Fatalf("a deleted plugin was unloaded after %v, as after a grace", took)
	}
}

// TestCachedModulesLoadFirst: a plugin whose module is on disk loads while
// the fetches of others hang (a slow or unreachable control plane): its
// share's requests do not wait out LoadWait behind them.
func TestCachedModulesLoadFirst(t *testing.T) {
	m := &modules{}
	gate := make(chan struct{})
	defer close(gate)
	m.gate = gate
	s := snapshot{plugins: map[string]string{}, shares: map[string][]string{}}
	for _, id := range []string{"u1", "u2", "u3", "cached"} {
		s.plugins[id] = m.add(allowWasm(t, id))
		s.shares["s-"+id] = []string{id}
	}
	e := newEngine(t, m, nil)
	mod := m.byHash[s.plugins["cached"]]
	dir := filepath.Join(e.cfg.CacheDir, "modules")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, s.plugins["cached"]+".wasm"), mod, 0o600); err != nil {
		t.Fatal(err)
	}
	e.Sync(s.table(t))
	waitFor(t, "the cached plugin loaded while the fetches hang", func() bool { return loaded(e, "cached") })
	if loaded(e, "u1") || loaded(e, "u2") || loaded(e, "u3") {
		t.Fatal("a module was fetched through the closed gate")
	}
}

// TestFailedLoadDoesNotMakeRequestsWait: once a plugin's load failed, its
// shares' requests fail closed at once on later table swaps, while the load
// is retried (here a fetch that hangs), instead of waiting LoadWait each
// time.
func TestFailedLoadDoesNotMakeRequestsWait(t *testing.T) {
	m := &modules{}
	bad := m.add(allowWasm(t, "bad"))
	m.fail[bad] = true
	e := newEngine(t, m, func(c *Config) { c.LoadWait = 3 * time.Second })
	s := snapshot{plugins: map[string]string{"bad": bad}, shares: map[string][]string{"s1": {"bad"}}}
	e.Sync(s.table(t))
	waitFor(t, "the failed load", func() bool { return e.npending.Load() == 0 && m.fetches.Load() > 0 })

	gate := make(chan struct{})
	defer close(gate)
	m.mu.Lock()
	m.gate = gate // the retry's fetch hangs
	m.mu.Unlock()
	s.shares["s2"] = nil
	t2 := s.table(t)
	e.Sync(t2)
	t0 := time.Now()
	v := check(t, e, t2, "s1")
	if v == nil || v.Status != 503 {
		t.Fatalf("verdict %+v, want 503", v)
	}
	if took := time.Since(t0); took > time.Second {
		t.Fatalf("the request waited %v for a load that had failed", took)
	}
}

// TestUnloadedFailOpenPluginIsSkipped: a plugin marked failOpen whose load
// failed is skipped by its shares' chains, as a loaded one that fails is;
// one that is not marked still fails closed (503).
func TestUnloadedFailOpenPluginIsSkipped(t *testing.T) {
	m := &modules{}
	open, closed := m.add(allowWasm(t, "open")), m.add(allowWasm(t, "closed"))
	m.fail[open], m.fail[closed] = true, true
	e := newEngine(t, m, nil)
	s := snapshot{plugins: map[string]string{"open": open, "closed": closed},
		shares:   map[string][]string{"s-open": {"open"}, "s-closed": {"closed"}, "s-both": {"open", "closed"}},
		failOpen: map[string]bool{"open": true}}
	tb := s.table(t)
	e.Sync(tb)
	waitFor(t, "the failed loads", func() bool { return e.npending.Load() == 0 && m.fetches.Load() >= 2 })
	if v := check(t, e, tb, "s-open"); v != nil {
		t.Fatalf("a failOpen plugin that is not loaded: verdict %+v, want the request let through", v)
	}
	for _, id := range []string{"s-closed", "s-both"} {
		if v := check(t, e, tb, id); v == nil || v.Status != 503 || v.DeniedBy != "closed" {
			t.Fatalf("%s: verdict %+v, want 503 by the plugin that is not failOpen", id, v)
		}
	}
	// The mark follows the table: unmarked, the same plugin fails closed.
	s.failOpen = nil
	tb = s.table(t)
	e.Sync(tb)
	if v := check(t, e, tb, "s-open"); v == nil || v.Status != 503 {
		t.Fatalf("verdict %+v after failOpen was cleared, want 503", v)
	}
}

// TestHeaderValueJoinsEveryLine: get_header sees every line of a header,
// joined by ", " (Cookie lines by "; "), as the service receives them all.
func TestHeaderValueJoinsEveryLine(t *testing.T) {
	for _, tc := range []struct {
		name, raw, header, want string
		ok                      bool
	}{
		{"absent", "", "X-Multi", "", false},
		{"once", "X-Multi: a\r\n", "x-multi", "a", true},
		{"twice", "X-Multi: a\r\nX-Multi: b\r\n", "X-Multi", "a, b", true},
		{"three times, other headers between", "X-Multi: a\r\nX-Other: z\r\nx-multi: b\r\nX-MULTI: c\r\n", "X-Multi", "a, b, c", true},
		{"empty line kept", "X-Multi: a\r\nX-Multi: \r\n", "X-Multi", "a, ", true},
		{"cookies", "Cookie: a=1\r\nCookie: b=2\r\n", "Cookie", "a=1; b=2", true},
		{"authorization", "Authorization: Basic AAA\r\nAuthorization: Basic BBB\r\n", "authorization", "Basic AAA, Basic BBB", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var h fasthttp.RequestHeader
			if err := h.Read(bufio.NewReader(strings.NewReader("GET / HTTP/1.1\r\nHost: x\r\n" + tc.raw + "\r\n"))); err != nil {
				t.Fatal(err)
			}
			got, ok := headerValue(&h, tc.header)
			if got != tc.want || ok != tc.ok {
				t.Fatalf("headerValue(%q) = %q, %v; want %q, %v", tc.header, got, ok, tc.want, tc.ok)
			}
		})
	}
}

// TestPolicySeesEveryHeaderLine: a password share's Basic check judges
// every Authorization line the service would receive: a valid first line
// does not let a second one through unseen.
func TestPolicySeesEveryHeaderLine(t *testing.T) {
	e := newEngine(t, &modules{}, nil)
	if e.builtinsErr != nil {
		t.Skipf("built-in plugins not built (make plugins): %v", e.builtinsErr)
	}
	hash, err := sharepass.Hash("correct horse")
	if err != nil {
		t.Fatal(err)
	}
	tok := sha256.Sum256([]byte("s"))
	tb, err := routes.Build(&config.Snapshot{Shares: []config.Share{{ID: "s", ServiceID: "v", TokenHash: hex.EncodeToString(tok[:]), PasswordHash: hash}}})
	if err != nil {
		t.Fatal(err)
	}
	e.Sync(tb)
	sh, _ := tb.ShareByID("s")
	basic := "Basic " + base64.StdEncoding.EncodeToString([]byte("x:correct horse"))
	run := func(lines ...string) *proxy.Verdict {
		var rc fasthttp.RequestCtx
		rc.Request.SetRequestURI("/x")
		for _, l := range lines {
			rc.Request.Header.Add("Authorization", l)
		}
		return e.Check(&rc, sh, []byte("/x"), "127.0.0.1", &proxy.Edits{})
	}
	if v := run(basic); v != nil {
		t.Fatalf("one valid Authorization line: verdict %+v, want allowed", v)
	}
	if v := run(basic, "Bearer smuggled"); v == nil || v.Status != 401 {
		t.Fatalf("a valid line then another: verdict %+v, want 401", v)
	}
}

// TestBreakerSettings: the engine's breaker settings reach the plugin host:
// with a threshold of 2, a plugin that traps answers 500 twice, then its
// breaker is open (503) for the backoff.
func TestBreakerSettings(t *testing.T) {
	for _, tc := range []struct {
		threshold int
		third     int
	}{{2, 503}, {0, 500}} { // 0: the default, 20
		t.Run(fmt.Sprint(tc.threshold), func(t *testing.T) {
			m := &modules{}
			sum := m.add(trapWasm(t, fmt.Sprint(tc.threshold)))
			e := newEngine(t, m, func(c *Config) { c.BreakerThreshold, c.BreakerBackoff = tc.threshold, time.Minute })
			s := snapshot{plugins: map[string]string{"trap": sum}, shares: map[string][]string{"s": {"trap"}}}
			tb := s.table(t)
			e.Sync(tb)
			waitFor(t, "the load", func() bool { return loaded(e, "trap") })
			for i, want := range []int{500, 500, tc.third} {
				if v := check(t, e, tb, "s"); v == nil || v.Status != want {
					t.Fatalf("call %d: verdict %+v, want %d", i+1, v, want)
				}
			}
		})
	}
}

// headerWasm is a guest that reports one request header: its config is a
// JSON string naming the header; handle_request answers RESPOND 418 with the
// header's value as the body, or ALLOW when get_header finds none:
//
//	(module
//	  (import "policy" "get_config" (func $get_config (param i32 i32) (result i32)))
//	  (import "policy" "get_header" (func $get_header (param i32 i32 i32 i32) (result i32)))
//	  (import "policy" "respond" (func $respond (param i32 i32 i32)))
//	  (memory (export "memory") 1)
//	  (func (export "policy_abi_version") (result i32) (i32.const 1))
//	  (func (export "handle_request") (result i32) (local $n i32)
//	    (local.set $n (call $get_header (i32.const 1) (i32.sub (call $get_config (i32.const 0) (i32.const 1024)) (i32.const 2))
//	      (i32.const 1024) (i32.const 4096)))
//	    (if (i32.lt_s (local.get $n) (i32.const 0)) (then (return (i32.const 0))))
//	    (call $respond (i32.const 418) (i32.const 1024) (local.get $n))
//	    (i32.const 1)))
//
// with allowWasm's custom section of tag.
func headerWasm(t *testing.T, tag string) []byte {
	t.Helper()
	b, err := hex.DecodeString("0061736d0100000001190460027f7f017f60047f7f7f7f017f60037f7f7f006000017f023a0306706f6c6963790a6765745f636f6e6669" +
		"67000006706f6c6963790a6765745f686561646572000106706f6c69637907726573706f6e64000203030203030503010001073003066d656d6f72790200" +
		"12706f6c6963795f6162695f76657273696f6e00030e68616e646c655f7265717565737400040a3802040041010b3101017f41014100418008100041026b" +
		"418008418020100121002000410048044041000f0b41a2034180082000100241010b")
	if err != nil {
		t.Fatal(err)
	}
	return append(b, tagSection(t, tag)...)
}

// TestPluginsSeeTheForwardedHeaders: a custom plugin's get_header judges the
// request the service gets. The visitor's lines of a header the edge strips
// (hop-by-hop, those Connection names, Proxy-*) or sets itself
// (X-Forwarded-For, X-Share-Id, ...) are absent, not the visitor's forged
// value: an IP allowlist on X-Forwarded-For let any visitor in, though the
// service gets the edge's X-Forwarded-For. Other headers are seen as sent.
func TestPluginsSeeTheForwardedHeaders(t *testing.T) {
	m := &modules{}
	sum := m.add(headerWasm(t, "h"))
	e := newEngine(t, m, nil)
	headers := map[string]string{ // name asked → the value the plugin must see ("" absent)
		"X-Forwarded-For": "", "x-forwarded-for": "", "X-Real-IP": "", "Forwarded": "", "X-Share-Id": "",
		"X-Forwarded-Proto": "", "X-Forwarded-Host": "", "X-Original-URL": "", "X_Forwarded_For": "",
		"X-Secret": "", "Keep-Alive": "", "Proxy-Authorization": "", "Proxy-Foo": "", "TE": "", "Connection": "",
		"X_User": "", "X-User": "alice", "Authorization": "Bearer t", "X-Other": "1", "X_Custom": "c",
	}
	tok := sha256.Sum256([]byte("s"))
	snap := &config.Snapshot{Plugins: []config.Plugin{{ID: "hdr", Name: "hdr", SHA256: sum}}}
	var names []string
	for name := range headers {
		id := "s-" + name
		tok = sha256.Sum256([]byte(id))
		snap.Shares = append(snap.Shares, config.Share{ID: id, ServiceID: "v", TokenHash: hex.EncodeToString(tok[:]),
			Plugins: []config.PluginAttachment{{PluginID: "hdr", Config: []byte(fmt.Sprintf("%q", name))}}})
		names = append(names, name)
	}
	tb, err := routes.Build(snap)
	if err != nil {
		t.Fatal(err)
	}
	e.Sync(tb)
	waitFor(t, "the plugin loaded", func() bool { return loaded(e, "hdr") })
	raw := "GET /x HTTP/1.1\r\nHost: edge\r\nConnection: X-Secret, keep-alive\r\n" +
		"X-Forwarded-For: 10.0.0.1\r\nX-Forwarded-For: 10.0.0.2\r\nX-Real-IP: 10.0.0.1\r\nForwarded: for=10.0.0.1\r\n" +
		"X-Share-Id: other\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Host: admin.internal\r\nX-Original-URL: /admin\r\n" +
		"X_Forwarded_For: 10.0.0.1\r\nX-Secret: s\r\nKeep-Alive: timeout=5\r\nProxy-Authorization: Basic x\r\n" +
		"Proxy-Foo: 1\r\nTE: trailers\r\nX_User: admin\r\nX-User: alice\r\nAuthorization: Bearer t\r\n" +
		"X-Other: 1\r\nX_Custom: c\r\n\r\n"
	for _, name := range names {
		var rc fasthttp.RequestCtx
		if err := rc.Request.Read(bufio.NewReader(strings.NewReader(raw))); err != nil {
			t.Fatal(err)
		}
		sh, _ := tb.ShareByID("s-" + name)
		v := e.Check(&rc, sh, []byte("/x"), "192.0.2.1", &proxy.Edits{})
		switch want := headers[name]; {
		case want == "" && v != nil:
			t.Errorf("get_header(%q) = %q (status %d), want absent", name, v.Body, v.Status)
		case want != "" && (v == nil || v.Status != 418 || string(v.Body) != want):
			t.Errorf("get_header(%q): verdict %+v, want %q", name, v, want)
		}
	}
}

// TestRateLimitCountersStayWithTheShareWorkspace: the engine names the share's workspace to
// the plugin host (plugins.Request.Tenant), by which a full rate_limit store evicts. Two
// workspaces' shares run the one rate-limit built-in keyed on a header; the second floods
// the store with new keys. The first's counters must survive: without the workspace, both
// are the built-in's entries, and the flood evicts the first's (64 of 64 here).
func TestRateLimitCountersStayWithTheShareWorkspace(t *testing.T) {
	const maxKeys = 64 * 16 // room for the victim's 64 keys in every shard
	e := newEngine(t, &modules{}, func(c *Config) { c.RateLimitMaxKeys = maxKeys })
	rl := []config.PluginAttachment{{PluginID: "builtin:rate-limit", Config: []byte(`{"limit":1,"windowSeconds":600,"key":"header:X-K"}`)}}
	snap := &config.Snapshot{}
	for _, ws := range []string{"victim", "flood"} {
		tok := sha256.Sum256([]byte(ws))
		snap.Shares = append(snap.Shares, config.Share{ID: ws, WorkspaceID: "ws-" + ws, ServiceID: "v",
			TokenHash: hex.EncodeToString(tok[:]), Plugins: rl})
	}
	tb, err := routes.Build(snap)
	if err != nil {
		t.Fatal(err)
	}
	e.Sync(tb)
	status := func(share, key string) int {
		sh, _ := tb.ShareByID(share)
		var rc fasthttp.RequestCtx
		rc.Request.SetRequestURI("/x")
		rc.Request.Header.Set("X-K", key)
		v := e.Check(&rc, sh, []byte("/x"), "192.0.2.1", &proxy.Edits{})
		if v == nil {
			return 200
		}
		return v.Status
	}
	for i := range 64 {
		if s := status("victim", fmt.Sprint("v", i)); s != 200 {
			t.Fatalf("victim's first request %d: %d", i, s)
		}
	}
	for i := range 20 * maxKeys {
		status("flood", fmt.Sprint("f", i))
	}
	reset := 0
	for i := range 64 {
		switch s := status("victim", fmt.Sprint("v", i)); s {
		case 200:
			reset++
		case 429:
		default:
			t.Fatalf("victim's second request %d: %d", i, s)
		}
	}
	if reset > 0 {
		t.Errorf("%d of 64 of the victim workspace's counters reset by another workspace's keys", reset)
	}
}
