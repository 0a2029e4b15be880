// Package policy runs share policy chains on the edge: the built-in plugins
// derived from a share's fields (allowedIps, rateLimitPerMin, allowedPaths,
// allowedMethods, password), then the share's extra plugins, in the Wasm host
// of package plugins. It keeps the host's modules in step with the routing
// table, fetching uploaded modules from the control plane by SHA-256 and
// caching them on disk: it loads the uploaded plugins that shares attach
// (routes.Table.AttachedPlugins), not every upload, and unloads a plugin
// when it is deleted or, after a grace, when no share attaches it any more.
package policy

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/privateconnect/pc/edge/proxy"
	"github.com/privateconnect/pc/edge/routes"
	"github.com/privateconnect/pc/internal/config"
	"github.com/privateconnect/pc/plugins"
	"github.com/privateconnect/pc/plugins/builtin"
	"github.com/valyala/fasthttp"
)

// Config configures an Engine.
type Config struct {
	// CacheDir holds the compilation cache and fetched modules.
	CacheDir string
	// Fetch downloads a module by SHA-256 (from the control plane).
	Fetch  func(ctx context.Context, sha256 string) ([]byte, error)
	Logger *slog.Logger
	// PoolSize is the number of pre-warmed instances per module (default:
	// the host's default).
	PoolSize int
	// OnFailure is told of every failed plugin call (plugin.failed); it
	// must not block.
	OnFailure func(pluginID, shareID string, err error)
	// UnloadGrace is how long a plugin that no share attaches any more
	// stays loaded, in case one attaches it again (default 30 s; negative:
	// none). A plugin deleted from the table is unloaded at once.
	UnloadGrace time.Duration
	// LoadWait bounds how long a request waits for the load under way of a
	// plugin its chain names that the host has not loaded yet (default
	// 5 s); the plugin then fails closed.
	LoadWait time.Duration
	// BreakerThreshold and BreakerBackoff set the plugins' circuit breaker:
	// the failures within a minute that trip a plugin, and how long its
	// shares answer 503 before a trial call (plugins.Config; defaults 20
	// and 30 s).
	BreakerThreshold int
	BreakerBackoff   time.Duration
	// RateLimitMaxKeys bounds the rate_limit counters of every plugin
	// (plugins.Config; default 262144).
	RateLimitMaxKeys int
}

// Engine evaluates share policies.
type Engine struct {
	cfg  Config
	log  *slog.Logger
	host *plugins.Host

	builtinsErr error
	lastWarn    atomic.Int64 // unix nanos of the last refusal logged (one a second at most)
	quietWarns  atomic.Int64 // refusals not logged since

	grace, loadWait time.Duration

	mu       sync.Mutex
	table    *routes.Table            // the last table synced
	wanted   map[string]config.Plugin // its attached plugins
	loaded   map[string]string        // plugin id → sha256 loaded
	failed   map[string]string        // plugin id → sha256 whose last load failed
	detached map[string]time.Time     // loaded but no longer wanted, since
	// pending holds, for each wanted plugin not loaded, a channel closed
	// when its load ends (loaded or failed) or it is no longer wanted;
	// npending is its size, read by every request.
	pending  map[string]chan struct{}
	npending atomic.Int32
	closed   bool // the loader stopped: no more pending loads
	kick     chan struct{}
	cancel   context.CancelFunc
	done     chan struct{}
}

// New starts the Wasm host and loads the built-in plugins. A missing
// built-in (not built) is not fatal: shares that need it fail closed.
func New(ctx context.Context, cfg Config) (*Engine, error) {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	e := &Engine{cfg: cfg, log: log, grace: cfg.UnloadGrace, loadWait: cfg.LoadWait,
		loaded: map[string]string{}, failed: map[string]string{}, wanted: map[string]config.Plugin{}, detached: map[string]time.Time{},
		pending: map[string]chan struct{}{}, kick: make(chan struct{}, 1), done: make(chan struct{})}
	hcfg := plugins.Config{Logger: log.With("component", "plugins"), PoolSize: cfg.PoolSize,
		BreakerThreshold: cfg.BreakerThreshold, BreakerBackoff: cfg.BreakerBackoff, RateLimitMaxKeys: cfg.RateLimitMaxKeys,
		FailOpenUnloaded: e.failOpen}
	if cfg.CacheDir != "" {
		hcfg.CacheDir = filepath.Join(cfg.CacheDir, "compiled")
	}
	host, err := plugins.NewHost(ctx, hcfg)
	if err != nil {
		return nil, fmt.Errorf("policy: %w", err)
	}
	e.host = host
	if e.grace == 0 {
		e.grace = 30 * time.Second
	}
	if e.loadWait <= 0 {
		e.loadWait = 5 * time.Second
	}
	if err := builtin.LoadBundle(ctx, host); err != nil {
		e.builtinsErr = err
		log.Error("built-in plugins unavailable: shares with policy fields will answer 503", "err", err)
	}
	rctx, cancel := context.WithCancel(context.Background())
	e.cancel = cancel
	go e.loader(rctx)
	return e, nil
}

// Close stops the loader and the Wasm host.
func (e *Engine) Close(ctx context.Context) error {
	e.cancel()
	<-e.done
	return e.host.Close(ctx)
}

// Host exposes the Wasm host (stats, tests).
func (e *Engine) Host() *plugins.Host { return e.host }

// Sync makes the loaded custom plugins match the table's attached ones (in
// the background: fetching and compiling never blocks the config swap).
// Call it before the table is in force: a request of a share that names a
// plugin this edge has not loaded then finds its load pending and waits for
// it (Check) rather than failing at once.
func (e *Engine) Sync(t *routes.Table) {
	want := map[string]config.Plugin{}
	for _, p := range t.AttachedPlugins() {
		want[p.ID] = p
	}
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return
	}
	e.table, e.wanted = t, want
	for id, p := range want {
		// A plugin whose load of this version failed is retried in the
		// background; its requests fail closed at once rather than wait.
		if _, ok := e.loaded[id]; !ok && e.pending[id] == nil && e.failed[id] != p.SHA256 {
			e.pending[id] = make(chan struct{})
		}
	}
	for id, ch := range e.pending {
		if _, ok := want[id]; !ok {
			close(ch)
			delete(e.pending, id)
		}
	}
	e.npending.Store(int32(len(e.pending)))
	e.mu.Unlock()
	select {
	case e.kick <- struct{}{}:
	default:
	}
}

// failOpen tells the host whether a plugin it has not loaded (its load
// failed, or the wait for it ran out) is marked failOpen, so that its
// shares' chains skip it (plugins.Config.FailOpenUnloaded). Only such
// requests ask, never the usual ones.
func (e *Engine) failOpen(id string) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.wanted[id].FailOpen
}

func (e *Engine) loader(ctx context.Context) {
	defer close(e.done)
	defer e.stopPending()
	grace := time.NewTimer(time.Hour)
	grace.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-e.kick:
		case <-grace.C:
		}
		if next := e.reconcile(ctx); next > 0 {
			grace.Reset(next)
		}
	}
}

// stopPending releases the requests waiting for loads when the loader
// stops (Close).
func (e *Engine) stopPending() {
	e.mu.Lock()
	e.closed = true
	for id, ch := range e.pending {
		close(ch)
		delete(e.pending, id)
	}
	e.npending.Store(0)
	e.mu.Unlock()
}

// reconcile loads the wanted plugins the host lacks (or has in another
// version) and unloads the others: at once when the table no longer holds
// them, after the grace when no share attaches them. It returns when to
// run again for a grace that ends (0: no grace pending).
func (e *Engine) reconcile(ctx context.Context) (next time.Duration) {
	var todo []string
	e.mu.Lock()
	want := e.wanted
	for id, p := range want {
		if e.loaded[id] != p.SHA256 {
			todo = append(todo, id)
		}
	}
	e.mu.Unlock()
	// Modules already on disk first: a fetch from a slow or unreachable
	// control plane (up to 30 s) must not hold up, past their requests'
	// LoadWait, plugins that load in milliseconds.
	var cached, toFetch []string
	for _, id := range todo {
		if e.onDisk(want[id].SHA256) {
			cached = append(cached, id)
		} else {
			toFetch = append(toFetch, id)
		}
	}
	for _, id := range append(cached, toFetch...) {
		p := want[id]
		if ctx.Err() != nil {
			return 0
		}
		err := e.load(ctx, id, p)
		e.mu.Lock()
		if err == nil {
			e.loaded[id] = p.SHA256
			delete(e.failed, id)
		} else {
			e.failed[id] = p.SHA256
		}
		if ch := e.pending[id]; ch != nil {
			// Loaded, or failed: the requests waiting go on (and fail closed).
			close(ch)
			delete(e.pending, id)
			e.npending.Store(int32(len(e.pending)))
		}
		e.mu.Unlock()
	}
	now := time.Now()
	type drop struct{ id, why string }
	var gone []drop
	e.mu.Lock()
	// Sync may have run during the loads: unload by the latest table.
	for id := range e.loaded {
		if _, ok := e.wanted[id]; ok {
			delete(e.detached, id)
			continue
		}
		why := "deleted"
		if _, ok := e.table.Plugin(id); ok {
			since, ok := e.detached[id]
			if !ok {
				since, e.detached[id] = now, now
			}
			if left := since.Add(e.grace).Sub(now); left > 0 {
				if next == 0 || left < next {
					next = left
				}
				continue
			}
			why = "no share attaches it"
		}
		gone = append(gone, drop{id, why})
		delete(e.loaded, id)
		delete(e.detached, id)
	}
	e.mu.Unlock()
	for _, d := range gone {
		e.host.Unload(d.id)
		e.log.Info("plugin unloaded", "plugin", d.id, "why", d.why)
	}
	return next
}

// load fetches (or reads from the disk cache) and loads one plugin.
func (e *Engine) load(ctx context.Context, id string, p config.Plugin) error {
	wasm, err := e.module(ctx, p.SHA256)
	if err != nil {
		e.log.Error("plugin module unavailable; "+unloadedMeans(p), "plugin", id, "sha256", p.SHA256, "err", err)
		return err
	}
	opts := plugins.ModuleOptions{FailOpen: p.FailOpen, Timeout: time.Duration(p.TimeoutMs) * time.Millisecond, MemoryLimitBytes: p.MemoryLimitBytes}
	t0 := time.Now()
	if err := e.host.Load(ctx, id, wasm, opts); err != nil {
		e.log.Error("plugin failed to load; "+unloadedMeans(p), "plugin", id, "err", err)
		return err
	}
	e.log.Info("plugin loaded", "plugin", id, "name", p.Name, "sha256", p.SHA256, "took", time.Since(t0))
	return nil
}

// unloadedMeans says what a plugin that could not be loaded does to its
// shares' requests.
func unloadedMeans(p config.Plugin) string {
	if p.FailOpen {
		return "its shares skip it (failOpen)"
	}
	return "its shares fail closed"
}

// awaitLoads waits, up to LoadWait in all, for the pending loads of the
// plugins chain names: the first requests of a share created with a plugin
// this edge had not loaded wait for it (tens of milliseconds from the
// compilation cache, about a second without) instead of answering 503. A
// load that fails ends the wait; the chain then fails closed.
func (e *Engine) awaitLoads(chain []plugins.Attachment) {
	var deadline *time.Timer
	for i := range chain {
		e.mu.Lock()
		ch := e.pending[chain[i].PluginID]
		e.mu.Unlock()
		if ch == nil {
			continue
		}
		if deadline == nil {
			deadline = time.NewTimer(e.loadWait)
		}
		select {
		case <-ch:
			continue
		case <-deadline.C:
		}
		break
	}
	if deadline != nil {
		deadline.Stop()
	}
}

// onDisk reports whether a module is in the disk cache (no fetch needed).
func (e *Engine) onDisk(sum string) bool {
	if e.cfg.CacheDir == "" {
		return false
	}
	_, err := os.Stat(filepath.Join(e.cfg.CacheDir, "modules", sum+".wasm"))
	return err == nil
}

// module returns a module's bytes from the disk cache or the control plane,
// verifying the SHA-256.
func (e *Engine) module(ctx context.Context, sum string) ([]byte, error) {
	var path string
	if e.cfg.CacheDir != "" {
		path = filepath.Join(e.cfg.CacheDir, "modules", sum+".wasm")
		if b, err := os.ReadFile(path); err == nil && shaHex(b) == sum {
			return b, nil
		}
	}
	if e.cfg.Fetch == nil {
		return nil, errors.New("no way to fetch plugin modules")
	}
	fctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	b, err := e.cfg.Fetch(fctx, sum)
	if err != nil {
		return nil, err
	}
	if shaHex(b) != sum {
		return nil, errors.New("fetched module does not match its sha256")
	}
	if path != "" {
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err == nil {
			tmp := path + ".tmp"
			if os.WriteFile(tmp, b, 0o600) == nil {
				_ = os.Rename(tmp, path)
			}
		}
	}
	return b, nil
}

func shaHex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// chainOf returns the share's policy chain, computed once per share.
func chainOf(sh *routes.Share) []plugins.Attachment {
	if v := sh.Ext(); v != nil {
		return v.([]plugins.Attachment)
	}
	chain := builtin.Chain(builtin.SharePolicy{AllowedPaths: sh.AllowedPaths, AllowedMethods: sh.AllowedMethods,
		PasswordHash: sh.PasswordHash, AllowedIPs: sh.AllowedIPs, RateLimitPerMin: sh.RateLimitPerMin})
	for _, p := range sh.Plugins {
		cfg := []byte(p.Config)
		if len(cfg) == 0 {
			cfg = []byte("{}")
		}
		chain = append(chain, plugins.Attachment{PluginID: p.PluginID, Config: cfg})
	}
	// Runs of built-ins become one call of the bundle (the only built-in module loaded here).
	chain = builtin.Bundle(chain)
	sh.SetExt(chain)
	return chain
}

// evalState is the per-request scratch, pooled.
type evalState struct {
	req   plugins.Request
	dec   plugins.Decision
	ctx   *fasthttp.RequestCtx
	edits *proxy.Edits
}

var statePool = sync.Pool{New: func() any {
	st := &evalState{}
	st.req.Header = func(name string) (string, bool) {
		// The request the service gets: a header the edge strips (hop-by-hop)
		// or sets itself (X-Forwarded-For, X-Share-Id, ...) is absent, never
		// the visitor's value (proxy.Edits.Hidden).
		if st.edits.Hidden(&st.ctx.Request.Header, name) {
			return "", false
		}
		return headerValue(&st.ctx.Request.Header, name)
	}
	return st
}}

// headerValue is get_header's view of a request header: every line of it,
// joined by ", " (plugin-abi-v1.md), so that a policy judges what the
// service receives, not only the first line. Cookie lines are joined by
// "; ", the separator of their own syntax (RFC 9113 §8.2.3 joins them so).
// A header sent once costs no allocation.
func headerValue(h *fasthttp.RequestHeader, name string) (string, bool) {
	vs := h.PeekAll(name)
	switch len(vs) {
	case 0:
		return "", false
	case 1:
		return b2s(vs[0]), true
	}
	sep := ", "
	if strings.EqualFold(name, fasthttp.HeaderCookie) {
		sep = "; "
	}
	n := len(sep) * (len(vs) - 1)
	for _, v := range vs {
		n += len(v)
	}
	var b strings.Builder
	b.Grow(n)
	for i, v := range vs {
		if i > 0 {
			b.WriteString(sep)
		}
		b.Write(v)
	}
	return b.String(), true
}

// b2s views bytes as a string without copying: the plugin host copies every
// value into guest memory and keeps no reference after the call.
func b2s(b []byte) string { return unsafe.String(unsafe.SliceData(b), len(b)) }

// Check runs the share's chain. It returns nil when the request may go on
// (with header edits in out), or the response to send instead.
func (e *Engine) Check(ctx *fasthttp.RequestCtx, sh *routes.Share, path []byte, clientIP string, out *proxy.Edits) *proxy.Verdict {
	chain := chainOf(sh)
	if len(chain) == 0 {
		return nil
	}
	if e.npending.Load() > 0 {
		e.awaitLoads(chain)
	}
	st := statePool.Get().(*evalState)
	st.ctx, st.edits = ctx, out
	st.req.Method = b2s(ctx.Method())
	st.req.Path = b2s(path)
	st.req.Query = b2s(ctx.URI().QueryString())
	st.req.Host = b2s(ctx.Host())
	st.req.ClientIP = clientIP
	st.req.ShareID, st.req.Tenant = sh.ID, sh.WorkspaceID
	e.host.EvaluateInto(context.Background(), chain, &st.req, &st.dec)
	d := &st.dec
	var v *proxy.Verdict
	switch d.Action {
	case plugins.Allow:
		out.SetRequest = append(out.SetRequest, d.SetRequestHeaders...)
		out.RemoveRequest = append(out.RemoveRequest, d.RemoveRequestHeaders...)
		out.SetResponse = append(out.SetResponse, d.SetResponseHeaders...)
	case plugins.Respond:
		v = &proxy.Verdict{Status: d.Status, Body: append([]byte(nil), d.Body...),
			Headers: append([][2]string(nil), d.SetResponseHeaders...), DeniedBy: d.PluginID}
	default:
		// Every refusal is counted (OnFailure, metrics); the log gets one line a
		// second at most, so a failing plugin cannot flood it.
		if now, last := time.Now().UnixNano(), e.lastWarn.Load(); now-last >= int64(time.Second) && e.lastWarn.CompareAndSwap(last, now) {
			e.log.Warn("plugin failed; request refused (fail closed)", "plugin", d.PluginID, "share", sh.ID, "err", d.Err,
				"notLogged", e.quietWarns.Swap(0))
		} else {
			e.quietWarns.Add(1)
		}
		if e.cfg.OnFailure != nil {
			e.cfg.OnFailure(d.PluginID, sh.ID, d.Err)
		}
		status := d.Status
		if status == 0 {
			status = fasthttp.StatusInternalServerError
		}
		// Internal causes stay in the logs: the visitor gets the error envelope.
		v = &proxy.Verdict{Status: status, DeniedBy: d.PluginID}
	}
	st.ctx, st.edits = nil, nil
	st.req = plugins.Request{Header: st.req.Header}
	statePool.Put(st)
	return v
}
