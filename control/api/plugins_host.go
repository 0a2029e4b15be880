package api

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"regexp"
	"runtime/debug"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/privateconnect/pc/control/store"
	"github.com/privateconnect/pc/internal/config"
	"github.com/privateconnect/pc/plugins"
	"github.com/privateconnect/pc/plugins/abi"
	"github.com/privateconnect/pc/plugins/builtin"
)

// maxLoadedPlugins bounds the modules the control plane's host keeps
// loaded (one pooled instance each, a few MiB for a Go guest); the least
// recently used are unloaded beyond it and loaded again on demand.
const maxLoadedPlugins = 16

// pluginHost is the control plane's own Wasm host: it validates uploads,
// runs validate_config for share attachments, and runs dry-runs. It is
// created at first use; its zero value is ready.
type pluginHost struct {
	once    sync.Once
	h       *plugins.Host
	err     error
	created atomic.Bool // h is set (for readers that do not create it)

	mu   sync.Mutex       // serializes loads; guards used and tick
	used map[string]int64 // loaded plugin id → tick of last use
	tick int64

	// validating is the one slot for validating uploads: compiling a module
	// may take seconds of a core (package plugins/internal/harden bounds it
	// near what the largest Go guest costs), and uploads at once would take
	// every core from the API.
	validating chan struct{}
}

// validateWait is how long an upload waits for the validation slot.
var validateWait = 30 * time.Second

// validate runs h.Validate in the validation slot.
func (ph *pluginHost) validate(ctx context.Context, h *plugins.Host, wasm []byte) (plugins.Info, error) {
	t := time.NewTimer(validateWait)
	defer t.Stop()
	select {
	case ph.validating <- struct{}{}:
	case <-ctx.Done():
		return plugins.Info{}, unavailable("the request ended while waiting to validate the module")
	case <-t.C:
		return plugins.Info{}, unavailable("other plugin uploads are being validated; try again in a few seconds")
	}
	defer func() { <-ph.validating }()
	return h.Validate(ctx, wasm)
}

// pluginHost returns the host, creating it at the first call.
func (a *API) pluginHost() (*plugins.Host, error) {
	p := &a.plugins
	p.once.Do(func() {
		p.validating = make(chan struct{}, 1)
		p.h, p.err = plugins.NewHost(context.Background(), plugins.Config{
			CacheDir: a.opts.PluginCacheDir, Logger: a.log.With("component", "plugins"),
			PoolSize: 1,
			// Not the request path: wait for the one instance rather than fail,
			// and never trip a plugin that an admin is debugging.
			AcquireTimeout:   2 * time.Second,
			BreakerThreshold: math.MaxInt32,
		})
		if p.err != nil {
			a.log.Error("plugin host unavailable", "err", p.err)
			p.err = unavailable("the plugin host is not available")
			return
		}
		p.created.Store(true)
	})
	return p.h, p.err
}

// closePlugins closes the host (if it was created) and keeps it from being
// created later.
func (a *API) closePlugins() {
	p := &a.plugins
	p.once.Do(func() { p.err = unavailable("the plugin host is closed") })
	if p.h != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = p.h.Close(ctx)
	}
}

// loadPlugin loads an uploaded plugin's module with its options (a no-op
// when that module is loaded already).
func (a *API) loadPlugin(ctx context.Context, p *store.Plugin, wasm []byte) error {
	h, err := a.pluginHost()
	if err != nil {
		return err
	}
	opts := plugins.ModuleOptions{FailOpen: p.FailOpen, Timeout: time.Duration(p.TimeoutMs) * time.Millisecond,
		MemoryLimitBytes: p.MemoryLimitBytes}
	return a.plugins.load(ctx, h, p.ID, wasm, opts)
}

func (ph *pluginHost) load(ctx context.Context, h *plugins.Host, id string, wasm []byte, opts plugins.ModuleOptions) error {
	ph.mu.Lock()
	defer ph.mu.Unlock()
	if err := h.Load(ctx, id, wasm, opts); err != nil {
		return err
	}
	ph.touchLocked(id)
	for len(ph.used) > maxLoadedPlugins {
		oldest, at := "", int64(math.MaxInt64)
		for k, t := range ph.used {
			if t < at {
				oldest, at = k, t
			}
		}
		delete(ph.used, oldest)
		h.Unload(oldest)
	}
	return nil
}

func (ph *pluginHost) touchLocked(id string) {
	if ph.used == nil {
		ph.used = map[string]int64{}
	}
	ph.tick++
	ph.used[id] = ph.tick
}

// unloadPlugin unloads a deleted (or refused) plugin, if the host exists.
func (a *API) unloadPlugin(id string) {
	ph := &a.plugins
	if !ph.created.Load() {
		return
	}
	ph.mu.Lock()
	defer ph.mu.Unlock()
	delete(ph.used, id)
	ph.h.Unload(id)
}

// ensurePlugin makes the workspace's plugin (or a built-in) loaded in the
// host and returns the host. A plugin of another workspace is not found.
func (a *API) ensurePlugin(ctx context.Context, ws, id string) (*plugins.Host, error) {
	h, err := a.pluginHost()
	if err != nil {
		return nil, err
	}
	if name, ok := builtinName(id); ok {
		if !slices.Contains(builtin.Names(), name) {
			return nil, &store.NotFoundError{Kind: "plugin"}
		}
		if _, ok := h.Loaded(id); ok {
			a.plugins.touch(id)
			return h, nil
		}
		wasm, err := builtin.Module(name)
		if err != nil {
			return nil, builtinError(err)
		}
		if err := a.plugins.load(ctx, h, id, wasm, builtin.Options(name)); err != nil {
			return nil, fmt.Errorf("load built-in %s: %w", name, err)
		}
		return h, nil
	}
	var p *store.Plugin
	err = a.kv.View(ctx, func(tx store.Tx) error {
		var err error
		p, err = store.GetPlugin(tx, ws, id)
		return err
	})
	if err != nil {
		return nil, err
	}
	if sum, ok := h.Loaded(id); ok && sum == p.SHA256 {
		a.plugins.touch(id)
		return h, nil
	}
	var wasm []byte
	err = a.kv.View(ctx, func(tx store.Tx) error {
		var err error
		wasm, err = store.GetPluginModule(tx, p.SHA256)
		return err
	})
	if err != nil {
		return nil, err
	}
	if err := a.loadPlugin(ctx, p, wasm); err != nil {
		return nil, fmt.Errorf("load plugin %s: %w", id, err)
	}
	return h, nil
}

func (ph *pluginHost) touch(id string) {
	ph.mu.Lock()
	ph.touchLocked(id)
	ph.mu.Unlock()
}

// Share attachments.

// checkPluginAttachments checks the plugins a share request attaches: each
// must be a plugin of the workspace or a built-in, and its config must pass
// the plugin's validate_config (400 with the plugin's reason in details).
// Malformed entries (empty id, config not an object) are left to
// shareRequest.apply, which reports them.
func (a *API) checkPluginAttachments(c *call, refs []pluginRefRequest) error {
	var v validator
	for i, r := range refs {
		f := fmt.Sprintf("plugins[%d]", i)
		if r.PluginID == "" || len(r.PluginID) > 100 {
			continue
		}
		cfg := attachmentConfig(r.Config)
		if cfg == nil {
			continue
		}
		h, err := a.ensurePlugin(c.ctx, c.ws, r.PluginID)
		if err != nil {
			if isNotFoundErr(err) {
				v.add(f+".pluginId", "is not a plugin of this workspace nor a built-in (builtin:<name>)")
				continue
			}
			return pluginHostError(err)
		}
		if reason, err := validateConfig(c.ctx, h, r.PluginID, cfg); err != nil {
			return err
		} else if reason != "" {
			v.add(f+".config", "%s", reason)
		}
	}
	return v.err()
}

// attachmentConfig is the config of an attachment as validate_config sees
// it ({} when absent), or nil when it is not an object.
func attachmentConfig(raw json.RawMessage) []byte {
	cfg := []byte(strings.TrimSpace(string(raw)))
	if len(cfg) == 0 || string(cfg) == "null" {
		return []byte("{}")
	}
	if cfg[0] != '{' {
		return nil
	}
	return cfg
}

// validateConfig runs validate_config: reason is the plugin's reason when
// it refuses the config (or fails: a timeout, a trap), err a failure of the
// host itself.
func validateConfig(ctx context.Context, h *plugins.Host, id string, cfg []byte) (reason string, err error) {
	err = h.ValidateConfig(ctx, id, cfg)
	var pe *plugins.PluginError
	switch {
	case err == nil:
		return "", nil
	case errors.Is(err, plugins.ErrConfigTooLarge):
		// The host's limit (plugin-abi-v1.md), not the plugin's refusal.
		return fmt.Sprintf("larger than %d bytes, the most a plugin config may be", abi.MaxConfigLen), nil
	case errors.Is(err, plugins.ErrInvalidConfig):
		return "refused by the plugin: " + strings.TrimPrefix(err.Error(), plugins.ErrInvalidConfig.Error()+": "), nil
	case errors.Is(err, plugins.ErrNoInstance), errors.Is(err, plugins.ErrClosed), errors.Is(err, plugins.ErrNotLoaded):
		return "", pluginHostError(err)
	case errors.As(err, &pe):
		r := "validate_config failed: " + pe.Kind.Error()
		if pe.Detail != "" {
			r += ": " + pe.Detail
		}
		return r, nil
	default:
		return "", err
	}
}

// pluginHostError maps a failure to get a plugin running on the control
// plane: API errors, not found and storage errors pass; the rest is 503.
func pluginHostError(err error) error {
	var e *Error
	if errors.As(err, &e) || errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrUnavailable) ||
		errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	return &Error{Status: fasthttp.StatusServiceUnavailable, Message: "the plugin cannot be run on the control plane right now; try again later", cause: err}
}

// usePlugins checks, inside a share's transaction, that its uploaded
// plugins still exist (and makes a concurrent delete of one conflict).
func usePlugins(tx store.Tx, ws string, refs []store.PluginRef) error {
	for i, r := range refs {
		if _, ok := builtinName(r.PluginID); ok {
			continue
		}
		if _, err := store.UsePlugin(tx, ws, r.PluginID); err != nil {
			if isNotFoundErr(err) {
				return invalidField(fmt.Sprintf("plugins[%d].pluginId", i), "is not a plugin of this workspace nor a built-in (builtin:<name>)")
			}
			return err
		}
	}
	return nil
}

// Dry-run.

type testPluginRequest struct {
	Config  json.RawMessage  `json:"config"`
	Request *testHTTPRequest `json:"request"`
}

// testHTTPRequest is the simulated visitor request (defaults: GET /, from
// 127.0.0.1, no headers).
type testHTTPRequest struct {
	Method   *string           `json:"method"`
	Path     *string           `json:"path"` // may carry ?query
	Headers  map[string]string `json:"headers"`
	ClientIP *string           `json:"clientIp"`
}

// testPluginResult is the plugin's decision, as the edge would apply it.
type testPluginResult struct {
	Decision string `json:"decision"` // allow | respond | error
	// Status is the status the visitor gets: null for allow (the service
	// answers), the plugin's for respond, 500 or 503 for error.
	Status *int `json:"status"`
	// Headers are set on the visitor's response (allow and respond).
	Headers map[string]string `json:"headers"`
	// RequestHeaders are set, RemovedRequestHeaders removed, on the request
	// forwarded to the service (allow).
	RequestHeaders        map[string]string `json:"requestHeaders"`
	RemovedRequestHeaders []string          `json:"removedRequestHeaders"`
	Body                  string            `json:"body"`
	// Error says why the plugin failed (decision error): for the admin
	// testing it; visitors never see it.
	Error          string `json:"error,omitempty"`
	DurationMicros int64  `json:"durationMicros"`
}

var reMethod = regexp.MustCompile(`^[A-Z]{1,20}$`)

func (a *API) testPlugin(c *call) (any, error) {
	var req testPluginRequest
	if err := c.decode(&req); err != nil {
		return nil, err
	}
	id := c.param("id")
	if _, ok := builtinName(id); !ok {
		// 404 before any validation for other workspaces' plugins.
		if err := a.kv.View(c.ctx, func(tx store.Tx) error { _, err := store.GetPlugin(tx, c.ws, id); return err }); err != nil {
			return nil, err
		}
	}
	preq, err := req.visitorRequest()
	if err != nil {
		return nil, err
	}
	// The control plane's one plugin host serves every workspace: a dry
	// run's rate_limit counters are its workspace's, keyed apart.
	preq.Tenant, preq.ShareID = c.ws, "dry-run:"+c.ws
	cfg := attachmentConfig(req.Config)
	if cfg == nil {
		return nil, invalidField("config", "must be an object")
	}
	h, err := a.ensurePlugin(c.ctx, c.ws, id)
	if err != nil {
		return nil, pluginHostError(err)
	}
	if reason, err := validateConfig(c.ctx, h, id, cfg); err != nil {
		return nil, err
	} else if reason != "" {
		return nil, invalidField("config", reason)
	}
	c.resource = id
	t0 := time.Now()
	d := h.Evaluate(c.ctx, []plugins.Attachment{{PluginID: id, Config: cfg}}, preq)
	out := testPluginResult{Decision: d.Action.String(), DurationMicros: time.Since(t0).Microseconds(),
		Headers: pairs(d.SetResponseHeaders), RequestHeaders: pairs(d.SetRequestHeaders),
		RemovedRequestHeaders: append([]string{}, d.RemoveRequestHeaders...), Body: string(d.Body)}
	if d.Action != plugins.Allow {
		st := d.Status
		out.Status = &st
	}
	if d.Err != nil {
		out.Error = d.Err.Error()
	}
	if d.Action == plugins.Error || (d.Action == plugins.Respond && config.PolicyNeedsEnvelope(d.Status, d.Body)) {
		// What the visitor would get from the edge: its error envelope.
		b, _ := json.Marshal(errorBody{Error: reason(d.Status), Message: config.PolicyErrorMessage, StatusCode: d.Status})
		out.Body = string(b)
	}
	return out, nil
}

func pairs(l [][2]string) map[string]string {
	m := make(map[string]string, len(l))
	for _, p := range l {
		m[p[0]] = p[1]
	}
	return m
}

// visitorRequest validates the simulated request.
func (r *testPluginRequest) visitorRequest() (*plugins.Request, error) {
	var v validator
	out := &plugins.Request{Method: "GET", Path: "/", ClientIP: "127.0.0.1", ShareID: "dry-run"}
	hr := r.Request
	if hr == nil {
		hr = &testHTTPRequest{}
	}
	if hr.Method != nil {
		m := strings.ToUpper(*hr.Method)
		if v.re(m, reMethod, "request.method", "must be an HTTP method, e.g. GET") {
			out.Method = m
		}
	}
	if hr.Path != nil {
		p, q, _ := strings.Cut(*hr.Path, "?")
		if v.check(strings.HasPrefix(p, "/") && len(*hr.Path) <= 8<<10, "request.path", "must start with / (at most 8192 bytes)") {
			out.Path, out.Query = p, q
		}
	}
	if hr.ClientIP != nil {
		ip, err := netip.ParseAddr(*hr.ClientIP)
		if v.check(err == nil, "request.clientIp", "must be an IPv4 or IPv6 address") {
			out.ClientIP = ip.Unmap().String()
		}
	}
	headers := map[string]string{}
	v.check(len(hr.Headers) <= 100, "request.headers", "must have at most 100 entries")
	for k, val := range hr.Headers {
		if v.check(k != "" && len(k) <= abi.MaxHeaderNameLen && !strings.ContainsAny(k, " \t\r\n:"), "request.headers", "names must be HTTP header names") &&
			v.check(len(val) <= abi.MaxHeaderValueLen && !strings.ContainsAny(val, "\r\n\x00"), "request.headers."+k, "must be at most 8192 bytes, without CR, LF or NUL") {
			headers[strings.ToLower(k)] = val
		}
	}
	if err := v.err(); err != nil {
		return nil, err
	}
	out.Host = headers["host"]
	out.Header = func(name string) (string, bool) {
		val, ok := headers[strings.ToLower(name)]
		return val, ok
	}
	return out, nil
}

// Built-ins.

// builtinInfo is what the API shows of a built-in, computed once from its
// embedded module.
type builtinInfo struct {
	sha256            string
	size              int
	exports           []string
	hasValidateConfig bool
}

var (
	builtinOnce  sync.Once
	builtinInfos map[string]builtinInfo
)

func builtinInfoOf(name string) builtinInfo {
	builtinOnce.Do(func() {
		builtinInfos = map[string]builtinInfo{}
		for _, n := range builtin.Names() {
			b, err := builtin.Module(n)
			if err != nil {
				builtinInfos[n] = builtinInfo{exports: []string{}}
				continue
			}
			ex, _ := wasmExports(b)
			builtinInfos[n] = builtinInfo{sha256: store.ModuleSHA256(b), size: len(b), exports: ex,
				hasValidateConfig: slices.Contains(ex, abi.ExportValidateConfig)}
		}
	})
	return builtinInfos[name]
}

var builtinDescriptions = map[string]string{
	builtin.AllowPaths: "403 outside the allowed paths (globs with * and **) and methods (a share's allowedPaths and allowedMethods)",
	builtin.IPAllow:    "403 unless the client address is in an allowed and not in a denied network, IPv4 or IPv6 (a share's allowedIps)",
	builtin.Password:   "401 with a Basic challenge, or an HTML login form setting a signed cookie for browsers (a share's password)",
	builtin.RateLimit:  "429 with Retry-After over the limit, per IP, per share or per header value (a share's rateLimitPerMin)",
	builtin.JWT:        "401 unless a valid, unexpired JSON Web Token (HS256, RS256, ES256, EdDSA) with the required claims",
	builtin.SignedLink: "403 unless the URL carries a valid HMAC signature and is not expired",
	builtin.Headers:    "sets and removes request headers, sets response headers",
}

// builtinSchemas document the built-ins' configs (validate_config is what
// enforces them).
var builtinSchemas = map[string]string{
	builtin.AllowPaths: `{"type":"object","properties":{"paths":{"type":"array","items":{"type":"string"}},"methods":{"type":"array","items":{"type":"string"}}}}`,
	builtin.IPAllow:    `{"type":"object","properties":{"allow":{"type":"array","items":{"type":"string"}},"deny":{"type":"array","items":{"type":"string"}}}}`,
	builtin.Password: `{"type":"object","required":["passwordHash"],"properties":{"passwordHash":{"type":"string","description":"pbkdf2-sha256:<iterations>:<salt hex>:<key hex>"},` +
		`"realm":{"type":"string"},"sessionHours":{"type":"integer"},"secureCookie":{"type":"boolean"}}}`,
	builtin.RateLimit: `{"type":"object","required":["limit"],"properties":{"limit":{"type":"integer","minimum":1},"windowSeconds":{"type":"integer","minimum":1},` +
		`"key":{"type":"string","description":"ip, share or header:<name>"}}}`,
	builtin.JWT: `{"type":"object","required":["alg","key"],"properties":{"alg":{"enum":["HS256","RS256","ES256","EdDSA"]},"key":{"type":"string","description":"HMAC secret or PEM public key"},` +
		`"issuer":{"type":"string"},"audience":{"type":"string"},"header":{"type":"string"},"claims":{"type":"object"},"leewaySeconds":{"type":"integer"},"allowNoExp":{"type":"boolean"}}}`,
	builtin.SignedLink: `{"type":"object","required":["secret"],"properties":{"secret":{"type":"string"},"param":{"type":"string","default":"sig"},"expiresParam":{"type":"string","default":"exp"}}}`,
	builtin.Headers: `{"type":"object","properties":{"setRequest":{"type":"object","additionalProperties":{"type":"string"}},` +
		`"removeRequest":{"type":"array","items":{"type":"string"}},"setResponse":{"type":"object","additionalProperties":{"type":"string"}}}}`,
}

func (a *API) builtinView(name string) pluginView {
	info := builtinInfoOf(name)
	opts := builtin.Options(name)
	if opts.Timeout == 0 {
		opts.Timeout = abi.DefaultTimeout
	}
	version := a.opts.Version
	if version == "" {
		version = "dev"
	}
	v := pluginView{ID: builtin.ID(name), Name: name, Version: version, Description: builtinDescriptions[name], Builtin: true,
		SHA256: info.sha256, SizeBytes: info.size, Exports: info.exports, HasValidateConfig: info.hasValidateConfig,
		TimeoutMs: int(opts.Timeout / time.Millisecond), MemoryLimitBytes: abi.DefaultMemoryLimitBytes}
	if s := builtinSchemas[name]; s != "" {
		v.ConfigSchema = json.RawMessage(s)
	}
	at := a.builtinsAt()
	v.CreatedAt = &at
	return v
}

// builtinsAt is the createdAt of the built-ins: they come with the binary,
// so the time of the commit it was built from (Go's build information,
// to the second), or else when this control plane started.
func (a *API) builtinsAt() time.Time {
	if t := vcsTime(); !t.IsZero() {
		return t
	}
	return apiTime(a.started)
}

var vcsTime = sync.OnceValue(func() time.Time {
	if info, ok := debug.ReadBuildInfo(); ok {
		for _, s := range info.Settings {
			if s.Key == "vcs.time" {
				if t, err := time.Parse(time.RFC3339, s.Value); err == nil {
					return apiTime(t)
				}
			}
		}
	}
	return time.Time{}
})

// wasmExports lists a module's exported functions and memories, sorted,
// from its export section (enough for display; validation is the host's).
func wasmExports(b []byte) ([]string, error) {
	if len(b) < 8 || string(b[:4]) != "\x00asm" {
		return nil, errors.New("not a wasm module")
	}
	b = b[8:]
	uleb := func() (uint64, bool) {
		v, n := binary.Uvarint(b)
		if n <= 0 {
			return 0, false
		}
		b = b[n:]
		return v, true
	}
	out := []string{}
	for len(b) > 0 {
		id := b[0]
		b = b[1:]
		size, ok := uleb()
		if !ok || size > uint64(len(b)) {
			return nil, errors.New("truncated section")
		}
		sec, rest := b[:size], b[size:]
		if id == 7 { // export section
			b = sec
			n, ok := uleb()
			for i := uint64(0); ok && i < n; i++ {
				var l uint64
				if l, ok = uleb(); !ok || l+2 > uint64(len(b)) {
					return nil, errors.New("truncated export")
				}
				name, kind := string(b[:l]), b[l]
				b = b[l+1:]
				if _, ok = uleb(); ok && (kind == 0 || kind == 2) { // function, memory
					out = append(out, name)
				}
			}
			if !ok {
				return nil, errors.New("truncated export section")
			}
		}
		b = rest
	}
	sort.Strings(out)
	return out, nil
}
