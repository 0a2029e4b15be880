package api

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"log/slog"
	"net/netip"
	"runtime/debug"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fasthttp/router"
	"github.com/valyala/fasthttp"

	"github.com/privateconnect/pc/control/push"
	"github.com/privateconnect/pc/control/store"
	"github.com/privateconnect/pc/internal/config"
)

// Options configure the API.
type Options struct {
	KV     store.KV
	Hub    *push.Hub
	Logger *slog.Logger
	// Version is the software version reported by /health.
	Version string
	// DefaultWorkspaceID is the id of workspace "default", whose admin keys
	// manage platform-level resources (edges, workspaces).
	DefaultWorkspaceID string
	// PublicShareBaseURL, when set, is the base of share links instead of the
	// first edge's publicUrl.
	PublicShareBaseURL string
	// PublicDomain is the domain of public services (<subdomain>.<domain>);
	// empty derives it from the first edge's publicUrl.
	PublicDomain string
	// TCPPortMin and TCPPortMax bound tunnel port allocation.
	TCPPortMin, TCPPortMax int
	RateLimits             RateLimits
	// WorkspaceLimits are the limits of a workspace created with
	// POST /v1/workspaces when its request names none (zero: no limit).
	WorkspaceLimits WorkspaceLimits
	// HealthTick is how often health monitoring looks for due checks
	// (default 5 s; negative disables the monitor).
	HealthTick time.Duration
	// Hooks let other subsystems observe the API (all optional).
	Hooks Hooks
	// Monitoring configures webhooks and share monitoring (webhooks.go).
	Monitoring MonitoringOptions
	// PluginCacheDir holds the compilation cache of the control plane's
	// Wasm host (plugin validation and dry-runs); empty: no cache.
	PluginCacheDir string
}

// Hooks are optional callbacks for subsystems outside this package.
type Hooks struct {
	// Event is called after a committed mutation or connection event with
	// a webhook-style event name (e.g. "share.created") and its data.
	Event func(workspaceID, event string, data any)
	// AccessLogs receives the access logs of edge reports (a sample above
	// each edge's access log rate; the statistics count every request).
	AccessLogs func(edgeID string, logs []config.AccessLog)
	// AgentInbox is called when a command or message for an agent is stored,
	// so that a live tunnel can deliver it at once (see package doc).
	AgentInbox func(workspaceID, agentID string)
}

// API serves /v1, /health and the edge-facing routes.
type API struct {
	opts   Options
	kv     store.KV
	hub    *push.Hub
	log    *slog.Logger
	router *router.Router
	fixed  map[string]fixedRoute // paths without parameters

	probedMu sync.Mutex
	probed   map[string]time.Time // auto services' targets probed (detectProtocols)
	routes   []*route
	limiter  *limiter
	keys     *keyCache
	usage    *usageTracker
	audit    *auditWriter
	started  time.Time

	cmdWait notifier
	monitor healthMonitor

	draining atomic.Bool // SetDraining: /health answers 503 "draining"

	baseCtx context.Context // cancelled by StopStreams
	stop    context.CancelFunc
	streams sync.WaitGroup
	// streamsMu orders streams.Add against StopStreams' Wait.
	streamsMu      sync.Mutex
	streamsStopped bool

	openapiDoc []byte
	metrics    *metrics
	webhooks   *dispatcher // the webhook outbox and its worker (webhooks.go)
	plugins    pluginHost  // created at first use (plugins_host.go)

	edgeMu    sync.Mutex // guards the cached base URL
	edgeBase  string
	edgeBaseT time.Time
}

// New builds the API and its route table.
func New(opts Options) (*API, error) {
	if opts.KV == nil || opts.Hub == nil {
		return nil, fmt.Errorf("api: KV and Hub are required")
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.TCPPortMin == 0 && opts.TCPPortMax == 0 {
		opts.TCPPortMin, opts.TCPPortMax = 23000, 23999
	}
	opts.RateLimits = opts.RateLimits.withDefaults()
	a := &API{
		opts: opts, kv: store.WithCommitHooks(opts.KV), hub: opts.Hub, log: opts.Logger,
		limiter: newLimiter(), keys: newKeyCache(), started: time.Now(), probed: map[string]time.Time{},
	}
	a.baseCtx, a.stop = context.WithCancel(context.Background())
	a.monitor.last = map[string]time.Time{}
	if opts.HealthTick == 0 {
		opts.HealthTick = 5 * time.Second
	}
	if opts.HealthTick > 0 {
		go a.runHealthMonitor(a.baseCtx, opts.HealthTick)
	}
	if err := a.startMonitoring(); err != nil {
		return nil, fmt.Errorf("api: %w", err)
	}
	a.metrics = newMetrics(a)
	a.usage = newUsageTracker(a.kv, a.log)
	a.audit = newAuditWriter(a.kv, a.log)
	a.router = router.New()
	a.router.HandleMethodNotAllowed = true
	a.router.HandleOPTIONS = true // answers with the Allow header it also sends on 405
	a.router.RedirectTrailingSlash = false
	a.router.RedirectFixedPath = false
	a.router.NotFound = func(ctx *fasthttp.RequestCtx) {
		writeError(ctx, newError(fasthttp.StatusNotFound, "no route for %s %s", ctx.Method(), ctx.Path()))
	}
	a.router.MethodNotAllowed = func(ctx *fasthttp.RequestCtx) {
		writeError(ctx, newError(fasthttp.StatusMethodNotAllowed, "method %s is not allowed on %s (allowed: %s)",
			ctx.Method(), ctx.Path(), ctx.Response.Header.Peek("Allow")))
	}
	// OPTIONS: the Allow header, and the methods in the envelope (the
	// router's default was a 200 with an empty body; api-v1.md: every 2xx
	// body is the envelope).
	a.router.GlobalOPTIONS = func(ctx *fasthttp.RequestCtx) {
		writeOptions(ctx, strings.Split(string(ctx.Response.Header.Peek("Allow")), ", "))
	}
	a.router.PanicHandler = func(ctx *fasthttp.RequestCtx, v any) {
		a.log.Error("handler panic", "path", string(ctx.Path()), "panic", v, "stack", string(debug.Stack()))
		writeError(ctx, newError(fasthttp.StatusInternalServerError, "an internal error occurred"))
	}
	a.routes = a.table()
	fixed := map[string][]string{}
	for _, r := range a.routes {
		h := a.wrap(r)
		a.router.Handle(r.Method, r.Path, h)
		methods := []string{r.Method}
		// HEAD on every GET route (health probes use it); fasthttp sends the
		// headers without the body. Not on the edges' routes: the config
		// stream, and the inbox, whose GET hands commands over (marks them
		// delivered), which a HEAD would lose.
		if r.Method == fasthttp.MethodGet && r.Access != accessEdge {
			a.router.Handle(fasthttp.MethodHead, r.Path, h)
			methods = append(methods, fasthttp.MethodHead)
		}
		if !strings.Contains(r.Path, "{") {
			fixed[r.Path] = append(fixed[r.Path], methods...)
		}
	}
	a.fixed = map[string]fixedRoute{}
	for path, methods := range fixed {
		methods = append(methods, fasthttp.MethodOptions)
		slices.Sort(methods)
		a.fixed[path] = fixedRoute{methods: methods, allow: strings.Join(methods, ", ")}
	}
	doc, err := json.Marshal(a.openAPI())
	if err != nil {
		return nil, fmt.Errorf("api: openapi: %w", err)
	}
	a.openapiDoc = doc
	return a, nil
}

// Handler is the fasthttp handler of the whole API.
func (a *API) Handler(ctx *fasthttp.RequestCtx) {
	h := &ctx.Response.Header
	setSecurityHeaders(h)
	// A fixed path beside a pattern (/v1/services/register beside
	// /v1/services/{id}) has its own methods: the router would take GET
	// /v1/services/register for the service "register" (a 404) and list the
	// pattern's methods in Allow.
	if f, ok := a.fixed[string(ctx.Path())]; ok {
		switch m := string(ctx.Method()); {
		case m == fasthttp.MethodOptions:
			h.Set("Allow", f.allow)
			writeOptions(ctx, f.methods)
			return
		case !slices.Contains(f.methods, m):
			h.Set("Allow", f.allow)
			writeError(ctx, newError(fasthttp.StatusMethodNotAllowed, "method %s is not allowed on %s (allowed: %s)",
				m, ctx.Path(), f.allow))
			return
		}
	}
	a.router.Handler(ctx)
}

// setSecurityHeaders sets the security headers of every API answer
// (api-v1.md; /docs relaxes the CSP).
func setSecurityHeaders(h *fasthttp.ResponseHeader) {
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "strict-origin-when-cross-origin")
	h.Set("Content-Security-Policy", "default-src 'none'; frame-ancestors 'none'")
}

// writeOptions answers OPTIONS: 200, {"success":true,"data":{"allow":[...]}}.
func writeOptions(ctx *fasthttp.RequestCtx, methods []string) {
	writeJSON(ctx, fasthttp.StatusOK, envelope{Success: true, Data: map[string][]string{"allow": methods}})
}

// fixedRoute is the methods of a path without parameters.
type fixedRoute struct {
	methods []string
	allow   string
}

// ErrorHandler answers requests fasthttp could not read (too large, bad
// framing) in the error envelope, with the security headers of every other
// answer; use it as fasthttp.Server.ErrorHandler.
func (a *API) ErrorHandler(ctx *fasthttp.RequestCtx, err error) {
	setSecurityHeaders(&ctx.Response.Header)
	switch {
	case err == fasthttp.ErrBodyTooLarge:
		// The limit of the route the body was sent to, as HeaderReceived
		// read it.
		_, tooLarge := bodyLimit(&ctx.Request.Header)
		writeError(ctx, newError(fasthttp.StatusRequestEntityTooLarge, "%s", tooLarge))
	default:
		if _, ok := err.(*fasthttp.ErrSmallBuffer); ok {
			writeError(ctx, newError(fasthttp.StatusRequestHeaderFieldsTooLarge, "request headers are too large"))
			return
		}
		writeError(ctx, badRequest("the request could not be parsed"))
	}
}

// MaxRequestBodySize is the largest edge report accepted (edge reports may
// be larger than API bodies).
const MaxRequestBodySize = 16 << 20

// ServerMaxBodySize is the largest body the server reads at all; use it for
// fasthttp.Server.MaxRequestBodySize (HeaderReceived lowers it per route).
const ServerMaxBodySize = MaxRequestBodySize + readLimit

// readLimit is how much of a body the server reads before refusing it.
// Bodies between MaxBodyBytes and readLimit are read and answered with a
// clean 413 (the client can read the answer); larger ones are refused
// before they are read (413 too, but the client may see the connection
// closed while it is still sending).
const readLimit = 4 << 20

// HeaderReceived sets the read limit per request: MaxRequestBodySize for
// edge reports, readLimit for everything else; use it as
// fasthttp.Server.HeaderReceived.
func (a *API) HeaderReceived(h *fasthttp.RequestHeader) fasthttp.RequestConfig {
	limit, _ := bodyLimit(h)
	return fasthttp.RequestConfig{MaxRequestBodySize: limit}
}

// bodyLimit is how much of a request's body the server reads, by route (the
// edge report's and plugin uploads' are larger), and the message of the 413
// past it.
func bodyLimit(h *fasthttp.RequestHeader) (read int, tooLarge string) {
	switch {
	case string(h.RequestURI()) == "/v1/edges/report":
		return MaxRequestBodySize + readLimit, reportTooLarge
	case isPluginUpload(h):
		return MaxPluginUploadBytes + readLimit, uploadTooLarge
	default:
		return readLimit, bodyTooLarge
	}
}

var (
	reportTooLarge = fmt.Sprintf("request body is larger than %d bytes", MaxRequestBodySize)
	uploadTooLarge = fmt.Sprintf("request body is larger than %d bytes (plugin modules: at most %d bytes)", MaxPluginUploadBytes, MaxPluginBytes)
	bodyTooLarge   = fmt.Sprintf("request body is larger than %d bytes", MaxBodyBytes)
)

// StopStreams ends every open edge config stream and waits for them; call it
// before shutting the HTTP server down (streams never end on their own).
func (a *API) StopStreams() {
	a.streamsMu.Lock()
	a.streamsStopped = true
	a.streamsMu.Unlock()
	a.stop()
	a.streams.Wait()
}

// Close ends the streams and flushes buffered audit events and key usage.
func (a *API) Close() {
	a.StopStreams()
	a.webhooks.Close()
	a.audit.close()
	a.usage.close()
	a.closePlugins()
}

// call is one request being handled.
type call struct {
	ctx      *fasthttp.RequestCtx
	a        *API
	r        *route
	key      *store.APIKey  // nil on public, agent and edge routes
	keyNets  []netip.Prefix // the key's allowed IP ranges (authKey)
	ws       string         // the key's workspace
	edge     *store.Edge    // on edge routes
	status   int
	next     string // cursor of the next page
	resource string // id of the resource a mutation touched (audit)
	now      time.Time
}

func (c *call) param(name string) string {
	v, _ := c.ctx.UserValue(name).(string)
	return v
}

func (c *call) query(name string) string { return string(c.ctx.QueryArgs().Peek(name)) }

func (c *call) decode(v any) error { return decodeJSON(c.ctx.Request.Body(), v) }

// page parses ?limit= (default 50, 1-500) and ?cursor=.
func (c *call) page() (after string, limit int, err error) {
	limit = 50
	if s := c.query("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > 500 {
			return "", 0, &Error{Status: fasthttp.StatusBadRequest, Message: "invalid request: limit must be an integer between 1 and 500",
				Details: []FieldError{{Field: "limit", Message: "must be an integer between 1 and 500"}}}
		}
		limit = n
	}
	if s := c.query("cursor"); s != "" {
		b, err := base64.RawURLEncoding.DecodeString(s)
		n := len(b) - 4
		if err != nil || n < 1 || binary.BigEndian.Uint32(b[n:]) != crc32.ChecksumIEEE(b[:n]) {
			// A cursor made up or damaged in transit would otherwise read as
			// "nothing after this": an empty last page.
			return "", 0, &Error{Status: fasthttp.StatusBadRequest, Message: "invalid request: cursor is not a cursor this API returned",
				Details: []FieldError{{Field: "cursor", Message: "is not a cursor this API returned"}}}
		}
		after = string(b[:n])
	}
	return after, limit, nil
}

// pageOf is the page of items (sorted by key, ascending; keys unique and
// not empty) that ?limit= and ?cursor= ask for, for lists built in memory.
// The cursor is the key of the page's last item, so an item added or
// removed between two pages moves no other one to the wrong page.
func pageOf[T any](c *call, items []T, key func(*T) string) ([]T, error) {
	after, limit, err := c.page()
	if err != nil {
		return nil, err
	}
	i := 0
	if after != "" {
		i = sort.Search(len(items), func(i int) bool { return key(&items[i]) > after })
	}
	end := min(i+limit, len(items))
	if end < len(items) {
		c.setNext(key(&items[end-1]))
	}
	return items[i:end], nil
}

// setNext sets the X-Next-Cursor of a page: the position after its last
// item, with a checksum that page verifies.
func (c *call) setNext(next string) {
	if next != "" {
		b := binary.BigEndian.AppendUint32([]byte(next), crc32.ChecksumIEEE([]byte(next)))
		c.next = base64.RawURLEncoding.EncodeToString(b)
	}
}

type handler func(c *call) (any, error)

// limitPublic counts a request of a public route against its address's
// public budget. /metrics has a budget of its own, so that an address's
// other public traffic (many visitors behind one NAT or ingress reading
// /docs or share info) cannot turn a scraper's requests into 429s, which
// Prometheus reports as the target down.
func (a *API) limitPublic(c *call) error {
	bucket := "p:"
	if c.r.Path == "/metrics" {
		bucket = "m:"
	}
	return a.limit(c, bucket+c.ctx.RemoteIP().String(), a.opts.RateLimits.PublicPerMin)
}

// limitFailed counts a refused credential (a bad key, a key used from
// outside its allowlist) against the address, at the public rate.
func (a *API) limitFailed(c *call) error {
	return a.limit(c, "f:"+c.ctx.RemoteIP().String(), a.opts.RateLimits.PublicPerMin)
}

// wrap applies authentication, rate limits, body rules, the envelope and
// audit to a route's handler.
func (a *API) wrap(r *route) fasthttp.RequestHandler {
	if r.raw != nil {
		raw := r.raw
		if r.publicLimited() {
			raw = func(ctx *fasthttp.RequestCtx) {
				if err := a.limitPublic(&call{ctx: ctx, a: a, r: r}); err != nil {
					writeError(ctx, toError(err, a.log, r.Path))
					return
				}
				r.raw(ctx)
			}
		}
		if r.Path == "/v1/edges/config" || r.Path == "/metrics" {
			return raw // streams last for hours; scrapes need no self-count
		}
		return func(ctx *fasthttp.RequestCtx) {
			t0 := time.Now()
			raw(ctx)
			a.metrics.observe(r.Name, r.Method, ctx.Response.StatusCode(), time.Since(t0))
		}
	}
	return func(ctx *fasthttp.RequestCtx) {
		t0 := time.Now()
		defer func() { a.metrics.observe(r.Name, r.Method, ctx.Response.StatusCode(), time.Since(t0)) }()
		c := &call{ctx: ctx, a: a, r: r, now: time.Now().UTC().Truncate(time.Millisecond)}
		data, err := a.serve(c)
		if err != nil {
			e := toError(err, a.log, r.Path)
			if c.key != nil && r.mutation() {
				a.audit.add(c, e.Status)
			}
			writeError(ctx, e)
			return
		}
		status := c.status
		if status == 0 {
			status = fasthttp.StatusOK
			if r.Created {
				status = fasthttp.StatusCreated
			}
		}
		if c.next != "" {
			ctx.Response.Header.Set("X-Next-Cursor", c.next)
		}
		if c.key != nil && r.mutation() {
			a.audit.add(c, status)
		}
		writeJSON(ctx, status, envelope{Success: true, Data: data})
	}
}

func (a *API) serve(c *call) (any, error) {
	switch c.r.Access {
	case accessRead, accessWrite, accessAdmin:
		if err := a.authKey(c); err != nil {
			// Failed attempts count against the address, at the rate of
			// public routes: guessing keys (or hammering with a revoked one)
			// meets a 429 like everything else.
			var e *Error
			if errors.As(err, &e) && e.Status == fasthttp.StatusUnauthorized {
				if lerr := a.limitFailed(c); lerr != nil {
					return nil, lerr
				}
			}
			return nil, err
		}
		// A key used from outside its IP allowlist is refused before its
		// budget is touched, counted against the address like a failed
		// authentication: whoever holds a leaked key elsewhere cannot spend
		// its owner's budget.
		if err := a.keyFromAllowedIP(c); err != nil {
			if lerr := a.limitFailed(c); lerr != nil {
				return nil, lerr
			}
			return nil, err
		}
		// Its other requests count against its own budget, the ones its
		// scope then refuses (403) included: they carry the X-RateLimit-*
		// headers and meet a 429 past the limit like any other.
		if err := a.limit(c, "k:"+c.key.ID, a.opts.RateLimits.AuthenticatedPerMin); err != nil {
			return nil, err
		}
		if err := a.authorizeKey(c); err != nil {
			return nil, err
		}
	case accessEdge:
		if err := a.authEdge(c); err != nil {
			return nil, err
		}
	case accessAgent:
		if err := a.limit(c, "a:"+c.ctx.RemoteIP().String(), a.opts.RateLimits.AuthenticatedPerMin); err != nil {
			return nil, err
		}
	case accessPublic:
		if c.r.publicLimited() {
			if err := a.limitPublic(c); err != nil {
				return nil, err
			}
		}
	}
	if m := string(c.ctx.Method()); m == "POST" || m == "PATCH" || m == "PUT" {
		max := MaxBodyBytes
		if c.r.Access == accessEdge {
			max = MaxRequestBodySize
		}
		e := checkBody(c.ctx, max)
		if cb, ok := c.r.Req.(customBody); ok {
			e = cb.checkBody(c.ctx)
		}
		if e != nil {
			return nil, e
		}
		if c.r.Req == nil && c.r.Access != accessEdge {
			// A route without a request body takes none, {} or null: a
			// field it would ignore is refused like any unknown field.
			if err := decodeJSON(c.ctx.Request.Body(), &struct{}{}); err != nil {
				return nil, err
			}
		}
	}
	return c.r.h(c)
}

type envelope struct {
	Success bool `json:"success"`
	Data    any  `json:"data"`
}

func writeJSON(ctx *fasthttp.RequestCtx, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status = fasthttp.StatusInternalServerError
		b = []byte(`{"error":"Internal Server Error","message":"an internal error occurred","statusCode":500}`)
	}
	ctx.SetStatusCode(status)
	ctx.SetContentType("application/json; charset=utf-8")
	ctx.SetBody(b)
}
