// Package proxy is the edge's share handler: it resolves a request to a share
// (path `/shared/<token>/...`, host `<token>.<share domain>`) or a public
// service (host `<subdomain>.<public domain>`), runs the checks in the order
// of the data-plane spec, and forwards the request through the agent's tunnel
// with bodies streamed both ways and WebSocket upgrades relayed end to end.
package proxy

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/google/uuid"
	"github.com/privateconnect/pc/edge/routes"
	"github.com/privateconnect/pc/edge/tunnels"
	"github.com/privateconnect/pc/internal/config"
	"github.com/privateconnect/pc/internal/pathguard"
	"github.com/privateconnect/pc/internal/tunnel"
	"github.com/valyala/fasthttp"
)

// Policy evaluates a share's access-control chain. It returns a non-nil
// *Verdict only when the request must not be forwarded as is.
type Policy interface {
	Check(ctx *fasthttp.RequestCtx, share *routes.Share, path []byte, clientIP string, out *Edits) *Verdict
}

// Verdict is a response decided by the policy chain instead of forwarding.
type Verdict struct {
	Status   int
	Body     []byte
	Headers  [][2]string
	DeniedBy string
}

// Edits are header changes the policy chain asked for on an allowed request.
type Edits struct {
	SetRequest    [][2]string
	RemoveRequest []string
	SetResponse   [][2]string

	rate        rateInfo    // set by the per-share limit
	head        headInfo    // the visitor's head as the hop-by-hop scan reads it (Hidden)
	scratch     []byte      // reused by prepareRequest
	body        visitorBody // wraps a streamed request body (prepareRequest)
	cookieNames []string    // reused by stripSessionCookies
}

// visitorBody reads the visitor's streamed request body and remembers a
// failure to read it (a malformed chunk, a visitor gone mid-body, a body
// stalled past the edge's body timeout), so that the failed forward is
// answered as the visitor's fault (400, 408), not 502.
type visitorBody struct {
	r   io.Reader
	err error
	// limit is Config.MaxBodyBytes (0: no limit): past it, reads fail with
	// fasthttp.ErrBodyTooLarge and the forward is answered 413.
	limit, read int64
}

func (b *visitorBody) Read(p []byte) (int, error) {
	if b.limit > 0 && int64(len(p)) > b.limit-b.read+1 {
		p = p[:b.limit-b.read+1] // one byte past the limit tells a longer body from one that ends there
	}
	n, err := b.r.Read(p)
	if b.read += int64(n); b.limit > 0 && b.read > b.limit {
		n, err = max(n-int(b.read-b.limit), 0), fasthttp.ErrBodyTooLarge
	}
	if err != nil && err != io.EOF {
		b.err = err
	}
	return n, err
}

// Reset empties e for reuse.
func (e *Edits) Reset() {
	e.SetRequest, e.RemoveRequest, e.SetResponse = e.SetRequest[:0], e.RemoveRequest[:0], e.SetResponse[:0]
	e.rate = rateInfo{}
	e.body = visitorBody{}
	e.head = headInfo{}
}

// headInfo is what Handler learns of the visitor's head in admit's pass over
// its names (tokenNames), for the policy chain's view of it (Hidden) and the
// hop-by-hop strip of the forwarded request (stripHop), which then need no
// pass of their own to find the Connection tokens.
type headInfo struct {
	conn    connTokens
	read    bool // conn and upgrade are set
	upgrade bool // a WebSocket upgrade: Connection and Upgrade go on
}

// read fills i from h, when Handler did not (Hidden outside Handler).
func (i *headInfo) readFrom(h *fasthttp.RequestHeader) {
	if i.read {
		return
	}
	for k, v := range h.All() {
		i.conn.conn(k, v)
	}
	i.upgrade, i.read = isWebSocketHead(h), true
}

// Hidden reports whether the service never gets the visitor's lines of
// header name (h is the visitor's head), so that the policy chain must not
// judge them: get_header answers such a header absent (plugin-abi-v1.md:
// plugins judge the request the service gets). Hidden are the hop-by-hop
// headers (hopHeaders in any case, every Proxy-*, those the Connection
// header names, Connection itself: the edge sets its own on a WebSocket
// upgrade; Upgrade but on a WebSocket upgrade, where the visitor's lines
// start with "websocket" and the service gets "websocket" alone), every name of
// edgeHeaders, the edge's own included: X-Forwarded-For, X-Forwarded-Host,
// X-Forwarded-Proto, X-Forwarded-Prefix and X-Share-Id reach the service with
// the edge's value, which a plugin has from get_client_ip, get_host and
// get_share_id, and a visitor's value under those names must never be read
// as the edge's; and a name with '_' that dropUnderscoreAliases removes
// whatever the chain edits (an alias of those, of a method override, or of
// another header of h). Free of allocations; a pass over h only for a name
// with '_' (or when Handler did not read the head).
func (e *Edits) Hidden(h *fasthttp.RequestHeader, name string) bool {
	e.head.readFrom(h)
	k := unsafe.Slice(unsafe.StringData(name), len(name)) // read only
	if bytes.EqualFold(k, strConnection) {
		return true
	}
	if isHop(k, e.head.upgrade, e.head.conn.toks[:e.head.conn.nt], edgeHeaders) {
		return true
	}
	return strings.IndexByte(name, '_') >= 0 && underscoreAlias(h, name)
}

// underscoreAlias reports whether a header name with '_' names, read with
// '-' for '_', one of edgeHeaders, a method override, or another header of
// h (one without '_'): CGI-style servers read them as the same header
// (dropUnderscoreAliases).
func underscoreAlias(h *fasthttp.RequestHeader, name string) bool {
	for _, n := range edgeHeaders {
		if dashFold(name, n) {
			return true
		}
	}
	for _, n := range methodOverrides {
		if dashFold(name, n) {
			return true
		}
	}
	for hk := range h.All() {
		if bytes.IndexByte(hk, '_') < 0 && dashFold(name, hk) {
			return true
		}
	}
	return false
}

// rateInfo is the per-share limit's state for the X-RateLimit headers.
type rateInfo struct {
	limit, remaining int
	reset            int64 // Unix seconds; 0: no limit applies
}

// applyResponse sets the response edits (and the rate-limit headers) on the
// response head the visitor gets, after the service's own headers.
//
// Header names are kept as written from here on: X-RateLimit-* as api-v1.md
// spells them (fasthttp would send "X-Ratelimit-Limit" on the edge's own
// answers), a plugin's as the plugin wrote them, and a plugin's
// X-RateLimit-Limit replaces the edge's. (Forwarded answers keep the
// service's spelling already: the edge's client does not normalize.)
func (e *Edits) applyResponse(h *fasthttp.ResponseHeader) {
	h.DisableNormalizing()
	if e.rate.reset != 0 {
		var b [20]byte
		h.SetBytesV("X-RateLimit-Limit", strconv.AppendInt(b[:0], int64(e.rate.limit), 10))
		h.SetBytesV("X-RateLimit-Remaining", strconv.AppendInt(b[:0], int64(e.rate.remaining), 10))
		h.SetBytesV("X-RateLimit-Reset", strconv.AppendInt(b[:0], e.rate.reset, 10))
	}
	for _, kv := range e.SetResponse {
		h.Set(kv[0], kv[1])
	}
}

// editsPool recycles the per-request Edits (the policy interface makes them
// escape).
var editsPool = sync.Pool{New: func() any { return new(Edits) }}

// Config configures a Proxy.
type Config struct {
	EdgeID string
	// Table returns the current routing table.
	Table func() *routes.Table
	// Sessions finds live agent sessions.
	Sessions *tunnels.Registry
	// Policy runs share policies (nil: none).
	Policy Policy
	// ShareDomain and PublicDomain enable host-based routing; when empty the
	// table's settings are used.
	ShareDomain, PublicDomain string
	// TrustedProxies may set X-Forwarded-For (the client IP is then the
	// rightmost address not in these ranges).
	TrustedProxies []netip.Prefix
	// OnAccess receives one record per request (must not block).
	OnAccess func(config.AccessLog)
	Logger   *slog.Logger
	// UpstreamTimeout bounds the wait for the head of the service's
	// response (default 100 s, as Cloudflare's origin timeout); past it the
	// visitor gets 504 and the tunnel stream is closed. A response that
	// has started is never cut (server-sent events stream for hours).
	UpstreamTimeout time.Duration
	// MaxBodyBytes is the most of a request body forwarded (0: no limit):
	// a streamed body that goes past it is cut and answered 413.
	MaxBodyBytes int64
}

// Proxy serves share links.
type Proxy struct {
	cfg       Config
	log       *slog.Logger
	limiter   *limiter
	useCounts sync.Map // share id → *atomic.Int64 (shares with maxUses)
	active    atomic.Int64
	live      liveStreams
}

// New returns a Proxy.
func New(cfg Config) *Proxy {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if cfg.UpstreamTimeout <= 0 {
		cfg.UpstreamTimeout = 100 * time.Second
	}
	return &Proxy{cfg: cfg, log: log, limiter: newLimiter()}
}

// Active returns the number of requests in flight: those being handled and
// those whose answer is still streaming to the visitor (a download, an event
// stream), as the edge's drain waits for both. Upgraded connections
// (WebSockets) are not requests any more once switched.
func (p *Proxy) Active() int64 { return p.active.Load() }

// smallBody is the largest body of known length the edge copies at once
// instead of streaming.
const smallBody = 64 << 10

var (
	sharedPrefix = []byte("/shared/")
	strWebsocket = []byte("websocket")
	strHTTP11    = []byte("HTTP/1.1")
)

// target is what a request resolved to.
type target struct {
	share *routes.Share // nil for public services
	svc   *config.Service
	path  []byte // the request's path after the token, normalized: what policies see
	// raw is that path as the visitor sent it (percent-encodings kept),
	// when it is the same path as path (see rawPath); nil otherwise. The
	// service gets raw when there is one.
	raw []byte
	// prefix is /shared/<token> on a path link (empty on a share domain
	// or a public service): the service's redirects and cookie paths go
	// under it (rewriteHead).
	prefix []byte
}

// admit runs the checks of a request that need only its head, the table
// and the agent sessions, in the order of dataplane.md: the share (or
// public service) exists and is in force, the method may go to a service,
// the agent is online (before the rate limit and the policy chain). When
// one fails it writes the answer, records the access, and returns false.
// Handler and Expect (a 100-continue decided before the body) share it.
func (p *Proxy) admit(ctx *fasthttp.RequestCtx, t *routes.Table, start time.Time, clientIP string, head *headInfo) (target, *tunnels.Session, bool) {
	if !tokenNames(&ctx.Request.Header, head) {
		// The edge would forward the name as sent: Python's http.server
		// ends the head at such a line, dropping the edge's headers after
		// it (X-Forwarded-For, X-Share-Id, a plugin's). Refused, as a
		// malformed request, the way Go's net/http refuses it.
		ctx.SetConnectionClose()
		WriteError(ctx, fasthttp.StatusBadRequest, "Malformed request")
		return target{}, nil, false
	}
	tg, status, msg := p.resolve(ctx, t)
	if status != 0 {
		if status == fasthttp.StatusPermanentRedirect {
			ctx.Redirect(msg, status)
			return tg, nil, false
		}
		WriteError(ctx, status, msg)
		p.logAccess(ctx, tg.share, start, clientIP, "denied", "", 0)
		return tg, nil, false
	}
	if pathguard.Exploit(ctx.Path()) {
		// A NUL or a dot segment with path parameters ("/a/..;/b", also
		// sent as %2e%2e%3b: the path is decoded here) exists only to
		// make the service resolve another path than the one the policy
		// chain judged (Tomcat, Jetty and Spring read "..;" as ".."). No
		// client sends one: refused for every share, before any plugin.
		WriteError(ctx, fasthttp.StatusBadRequest, "Malformed request")
		p.logAccess(ctx, tg.share, start, clientIP, "denied", "path", 0)
		return tg, nil, false
	}
	if m := ctx.Method(); string(m) == fasthttp.MethodConnect || string(m) == fasthttp.MethodTrace {
		// Not for a share's service: CONNECT would make it a proxy, TRACE
		// echoes the request (cross-site tracing). As nginx does.
		ctx.Response.Header.Set("Allow", "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS")
		WriteError(ctx, fasthttp.StatusMethodNotAllowed, "Method not allowed through a share link")
		p.logAccess(ctx, tg.share, start, clientIP, "denied", "method", 0)
		return tg, nil, false
	}
	sess, ok := p.cfg.Sessions.Get(tg.svc.AgentID)
	if !ok {
		WriteError(ctx, fasthttp.StatusServiceUnavailable, "The service is offline: its agent is not connected")
		p.logAccess(ctx, tg.share, start, clientIP, "allowed", "", 0)
		return tg, nil, false
	}
	return tg, sess, true
}

// Handler is the fasthttp handler of the share listener.
func (p *Proxy) Handler(ctx *fasthttp.RequestCtx) {
	p.active.Add(1)
	streaming := false // the answer's body (streamBody) ends the request
	defer func() {
		if !streaming {
			p.active.Add(-1)
		}
	}()
	start := time.Now()
	t := p.cfg.Table()
	clientIP := p.clientIP(ctx)

	edits := editsPool.Get().(*Edits)
	defer func() { edits.Reset(); editsPool.Put(edits) }()
	tg, sess, ok := p.admit(ctx, t, start, clientIP, &edits.head)
	if !ok {
		return
	}
	share := tg.share
	var uses *atomic.Int64 // the share's use counter, when it has maxUses
	if share != nil {
		if !p.allowRate(ctx, t, share, edits) {
			p.logAccess(ctx, share, start, clientIP, "denied", "rate-limit", 0)
			return
		}
		var spent bool
		if uses, spent = p.spent(share); spent {
			p.usedUp(ctx, share, start, clientIP)
			return
		}
	}
	if share != nil && p.cfg.Policy != nil {
		if v := p.cfg.Policy.Check(ctx, share, tg.path, clientIP, edits); v != nil {
			ctx.Response.Reset()
			edits.applyResponse(&ctx.Response.Header)
			for _, h := range v.Headers {
				ctx.Response.Header.Set(h[0], h[1])
			}
			setSecurityHeaders(ctx)
			if config.PolicyNeedsEnvelope(v.Status, v.Body) {
				WriteError(ctx, v.Status, config.PolicyErrorMessage)
			} else {
				ctx.SetStatusCode(v.Status)
				ctx.SetBody(v.Body)
			}
			p.logAccess(ctx, share, start, clientIP, "denied", v.DeniedBy, 0)
			return
		}
	}
	// A use is a request the share's checks let through: a visitor
	// without the password or outside allowedPaths does not use one up.
	if uses != nil && !takeUse(uses, share.MaxUses) {
		p.usedUp(ctx, share, start, clientIP)
		return
	}
	if edits.head.upgrade {
		p.websocket(ctx, sess, tg, clientIP, edits, start)
		return
	}
	streaming = p.forward(ctx, sess, tg, clientIP, edits, start)
}

// tokenNames reports whether every header name of h is an RFC 9110 token
// (fasthttp's parser lets a space inside a name through). In the same pass
// it reads the Connection tokens into head, when not nil (Handler's Edits).
func tokenNames(h *fasthttp.RequestHeader, head *headInfo) bool {
	for k, v := range h.All() {
		for _, c := range k {
			if !isTokenChar[c] {
				return false
			}
		}
		if head != nil {
			head.conn.conn(k, v)
		}
	}
	if head != nil {
		head.upgrade, head.read = isWebSocketHead(h), true
	}
	return true
}

var isTokenChar = func() (t [256]bool) {
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c], t[c-'a'+'A'] = true, true
	}
	for _, c := range "!#$%&'*+-.^_`|~" {
		t[c] = true
	}
	return t
}()

// resolve finds the share or public service of a request and runs the
// existence, revocation, expiry and availability checks. A non-zero status
// is the answer to send.
func (p *Proxy) resolve(ctx *fasthttp.RequestCtx, t *routes.Table) (target, int, string) {
	var tg target
	host := hostWithoutPort(ctx.Host())
	shareDomain, publicDomain := p.cfg.ShareDomain, p.cfg.PublicDomain
	if shareDomain == "" {
		shareDomain = t.Settings.ShareDomain
	}
	if publicDomain == "" {
		publicDomain = t.Settings.PublicDomain
	}
	if publicDomain == "" {
		// No public domain configured: <subdomain>.localhost, as the
		// control plane's publicUrl says for an edge on an IP address.
		publicDomain = DefaultPublicDomain
	}
	var token []byte
	path := ctx.Path()
	switch {
	case publicDomain != "" && hasSubdomain(host, publicDomain):
		sub := host[:len(host)-len(publicDomain)-1]
		svc, ok := t.PublicService(string(sub))
		if !ok || !svc.IsPublic {
			return tg, fasthttp.StatusNotFound, "No public service at this address"
		}
		tg.svc, tg.path = svc, path
		tg.raw = rawPath(ctx.Request.URI().PathOriginal(), nil)
		if svc.Paused {
			return tg, fasthttp.StatusServiceUnavailable, "The tunnel is paused"
		}
		return tg, 0, ""
	case shareDomain != "" && hasSubdomain(host, shareDomain):
		// Host names are case-insensitive (browsers lowercase them); share
		// tokens use the lowercase base32 alphabet so they survive that.
		token = bytes.ToLower(host[:len(host)-len(shareDomain)-1])
		tg.path = path
		tg.raw = rawPath(ctx.Request.URI().PathOriginal(), nil)
	case bytes.HasPrefix(path, sharedPrefix):
		rest := path[len(sharedPrefix):]
		i := bytes.IndexByte(rest, '/')
		if i < 0 {
			// /shared/<token> → /shared/<token>/ so relative links resolve.
			u := append(append([]byte{}, path...), '/')
			if q := ctx.URI().QueryString(); len(q) > 0 {
				u = append(append(u, '?'), q...)
			}
			tg.share, _ = t.ShareByToken(rest)
			if tg.share == nil {
				return tg, fasthttp.StatusNotFound, "Share link not found"
			}
			return tg, fasthttp.StatusPermanentRedirect, string(u)
		}
		token, tg.path = rest[:i], rest[i:]
		tg.prefix = path[:len(sharedPrefix)+i]
		tg.raw = rawPath(ctx.Request.URI().PathOriginal(), tg.prefix)
	default:
		return tg, fasthttp.StatusNotFound, "Not found"
	}
	share, ok := t.ShareByToken(token)
	if !ok {
		return tg, fasthttp.StatusNotFound, "Share link not found"
	}
	tg.share = share
	var status int
	var msg string
	tg.svc, status, msg = shareStatus(t, share)
	return tg, status, msg
}

// shareStatus is whether a share is in force in t: 0 with its service, or
// the answer to give. Requests meet it, and so do the live streams a share
// has open (CutInactive).
func shareStatus(t *routes.Table, share *routes.Share) (*config.Service, int, string) {
	if share.Revoked {
		return nil, fasthttp.StatusGone, "This share link has been revoked"
	}
	if share.ExpiresAt != nil && time.Now().After(*share.ExpiresAt) {
		return nil, fasthttp.StatusGone, "This share link has expired"
	}
	svc, ok := t.Service(share.ServiceID)
	if !ok {
		return nil, fasthttp.StatusGone, "The shared service no longer exists"
	}
	if svc.Paused {
		return svc, fasthttp.StatusServiceUnavailable, "The tunnel is paused"
	}
	return svc, 0, ""
}

func hostWithoutPort(h []byte) []byte {
	if len(h) > 0 && h[0] == '[' {
		if i := bytes.IndexByte(h, ']'); i > 0 {
			return h[1:i]
		}
	}
	if i := bytes.LastIndexByte(h, ':'); i >= 0 && bytes.IndexByte(h[:i], ':') < 0 {
		return h[:i]
	}
	return h
}

// DefaultPublicDomain is where public services are served when no public
// domain is configured (development set-ups: browsers resolve *.localhost
// to loopback).
const DefaultPublicDomain = "localhost"

func hasSubdomain(host []byte, domain string) bool {
	return len(host) > len(domain)+1 && host[len(host)-len(domain)-1] == '.' &&
		bytes.EqualFold(host[len(host)-len(domain):], []byte(domain)) &&
		bytes.IndexByte(host[:len(host)-len(domain)-1], '.') < 0
}

// allowRate applies the per-share request limit pushed by the control plane
// (0: none), with the X-RateLimit headers of the API spec.
func (p *Proxy) allowRate(ctx *fasthttp.RequestCtx, t *routes.Table, share *routes.Share, edits *Edits) bool {
	limit := t.Settings.ShareRateLimitPerMin
	if limit <= 0 {
		return true
	}
	ok, remaining, reset := p.limiter.allow(share.ID, limit, time.Minute)
	// The headers go on whatever response the visitor gets: now for a 429,
	// else with the response edits, after the service's headers.
	edits.rate = rateInfo{limit: limit, remaining: remaining, reset: reset.Unix()}
	if !ok {
		h := &ctx.Response.Header
		edits.applyResponse(h)
		retry := int(time.Until(reset).Seconds() + 0.999)
		if retry < 1 {
			retry = 1
		}
		h.Set("Retry-After", strconv.Itoa(retry))
		ctx.SetStatusCode(fasthttp.StatusTooManyRequests)
		ctx.SetContentType("application/json")
		ctx.SetBodyString(`{"error":"Too Many Requests","message":"Please wait before trying again","statusCode":429,"retryAfter":` + strconv.Itoa(retry) + `}`)
		return false
	}
	return true
}

// spent reports whether a share with maxUses has none left, with its use
// counter (nil without maxUses): Handler takes a use from it once the
// request is through, Expect only looks.
func (p *Proxy) spent(share *routes.Share) (*atomic.Int64, bool) {
	if share.MaxUses <= 0 {
		return nil, false
	}
	uses := p.uses(share)
	return uses, uses.Load() >= share.MaxUses
}

// uses is a share's use counter on this edge: its uses here, counted from
// the accessCount the control plane last sent (share.Uses) whenever that is
// higher (after a restart, or uses on other edges).
func (p *Proxy) uses(share *routes.Share) *atomic.Int64 {
	v, ok := p.useCounts.Load(share.ID)
	if !ok {
		v, _ = p.useCounts.LoadOrStore(share.ID, new(atomic.Int64))
	}
	c := v.(*atomic.Int64)
	for {
		cur := c.Load()
		if cur >= share.Uses || c.CompareAndSwap(cur, share.Uses) {
			return c
		}
	}
}

// ForgetShares drops the use counters of shares t no longer holds (deleted
// shares; revoked and expired ones stay in tables for a while).
func (p *Proxy) ForgetShares(t *routes.Table) {
	p.useCounts.Range(func(k, _ any) bool {
		if !t.HasShare(k.(string)) {
			p.useCounts.Delete(k)
		}
		return true
	})
}

// takeUse counts one use on a share's counter (p.uses); false when none of
// max is left (a refused request counts nothing).
func takeUse(c *atomic.Int64, max int64) bool {
	for {
		cur := c.Load()
		if cur >= max {
			return false
		}
		if c.CompareAndSwap(cur, cur+1) {
			return true
		}
	}
}

func (p *Proxy) usedUp(ctx *fasthttp.RequestCtx, share *routes.Share, start time.Time, clientIP string) {
	WriteError(ctx, fasthttp.StatusGone, "This share link has reached its maximum number of uses")
	p.logAccess(ctx, share, start, clientIP, "denied", "max-uses", 0)
}

// clientIP is the TCP peer, or the forwarded address when the peer is a
// trusted proxy.
func (p *Proxy) clientIP(ctx *fasthttp.RequestCtx) string {
	peer, trusted := p.peer(ctx)
	if !trusted {
		return peer.String()
	}
	// Right to left through every X-Forwarded-For line, as one list (RFC
	// 9110: lines of a list header are one comma-separated value, in order;
	// some load balancers add a line of their own rather than append to the
	// visitor's, and reading only the first let a visitor pick its address).
	lines := ctx.Request.Header.PeekAll("X-Forwarded-For")
	for l := len(lines) - 1; l >= 0; l-- {
		xff := lines[l]
		for {
			i := bytes.LastIndexByte(xff, ',')
			part := bytes.TrimSpace(xff[i+1:])
			xff = xff[:max(i, 0)]
			a, err := netip.ParseAddr(string(part))
			if err != nil {
				return peer.String() // a malformed entry: trust nothing left of it
			}
			a = a.Unmap()
			if !p.trusted(a) {
				return a.String()
			}
			if i < 0 {
				break
			}
		}
	}
	return peer.String()
}

// peer is the TCP peer's address and whether it is a trusted proxy.
func (p *Proxy) peer(ctx *fasthttp.RequestCtx) (netip.Addr, bool) {
	a, _ := netip.AddrFromSlice(ctx.RemoteIP())
	a = a.Unmap()
	return a, len(p.cfg.TrustedProxies) > 0 && p.trusted(a)
}

func (p *Proxy) trusted(a netip.Addr) bool {
	for _, pr := range p.cfg.TrustedProxies {
		if pr.Contains(a) {
			return true
		}
	}
	return false
}

// upgradeOnly sets the upgrade the policy let through, alone, on a prepared
// WebSocket request: isWebSocketHead read the first Upgrade line, and a
// service may read another (Hypercorn takes the last: "Upgrade: websocket"
// then "Upgrade: h2c" switched it to HTTP/2, whose requests then went past
// the policy).
func upgradeOnly(h *fasthttp.RequestHeader) {
	h.Del(fasthttp.HeaderUpgrade)
	h.Set(fasthttp.HeaderUpgrade, "websocket")
	h.Del(fasthttp.HeaderConnection)
	h.Set(fasthttp.HeaderConnection, "Upgrade")
}

// isWebSocketHead reports whether h asks for a WebSocket upgrade.
func isWebSocketHead(h *fasthttp.RequestHeader) bool {
	return bytes.EqualFold(h.Peek(fasthttp.HeaderUpgrade), strWebsocket) && h.ConnectionUpgrade()
}

// hopHeaders are removed from forwarded requests and responses.
var hopHeaders = []string{"Connection", "Keep-Alive", "Proxy-Connection", "Proxy-Authenticate",
	"Proxy-Authorization", "TE", "Trailer", "Transfer-Encoding", "Upgrade"}

// hopScan finds the hop-by-hop headers of a head beyond what a fixed-case
// Del of hopHeaders removes: hopHeaders in any case (the edge's client keeps
// the service's spelling), every Proxy-* header, and those a Connection
// header names (but Upgrade on a WebSocket upgrade). Linear in the head:
// the Connection tokens are read once (the first maxHopTokens; a header
// named beyond them goes on, as any header of its sender would), the names
// in one pass, copied (the head changes as they are deleted).
type hopScan struct {
	connTokens
	names [2048]byte
	ends  [64]int
	n     int
	full  bool     // more names than fit: delete these, then scan again
	also  []string // more names to remove in the same pass (any case)
}

const maxHopTokens = 32

// connTokens are the tokens of a head's Connection lines, the first
// maxHopTokens of them.
type connTokens struct {
	toks [maxHopTokens][]byte
	nt   int
}

// conn reads the tokens of a Connection header.
func (s *connTokens) conn(k, v []byte) {
	if len(k) != len(strConnection) || !bytes.EqualFold(k, strConnection) {
		return
	}
	for len(v) > 0 && s.nt < maxHopTokens {
		tok := v
		if i := bytes.IndexByte(v, ','); i >= 0 {
			tok, v = v[:i], v[i+1:]
		} else {
			v = nil
		}
		if tok = bytes.TrimSpace(tok); len(tok) > 0 {
			s.toks[s.nt] = tok
			s.nt++
		}
	}
}

// name records k when it is hop-by-hop.
func (s *hopScan) name(k []byte, keepUpgrade bool) {
	if s.full || !isHop(k, keepUpgrade, s.toks[:s.nt], s.also) {
		return
	}
	from := 0
	if s.n > 0 {
		from = s.ends[s.n-1]
	}
	if s.n == len(s.ends) || from+len(k) > len(s.names) {
		s.full = true
		return
	}
	s.ends[s.n] = from + copy(s.names[from:], k)
	s.n++
}

// isHop reports whether header k is hop-by-hop, given the Connection tokens
// toks, or one of also.
func isHop(k []byte, keepUpgrade bool, toks [][]byte, also []string) bool {
	if bytes.EqualFold(k, strConnection) || (keepUpgrade && bytes.EqualFold(k, strUpgrade)) {
		return false // the callers remove Connection (or keep it) themselves
	}
	if len(k) >= 6 && bytes.EqualFold(k[:6], strProxyDash) {
		return true
	}
	for _, h := range hopHeaders {
		if len(h) == len(k) && bytes.EqualFold(k, []byte(h)) && (!keepUpgrade || h != "Upgrade") {
			return true
		}
	}
	for _, t := range toks {
		if bytes.EqualFold(t, k) {
			return true
		}
	}
	for _, h := range also {
		if len(h) == len(k) && bytes.EqualFold(k, []byte(h)) {
			return true
		}
	}
	return false
}

// at is the i-th name recorded.
func (s *hopScan) at(i int) []byte {
	from := 0
	if i > 0 {
		from = s.ends[i-1]
	}
	return s.names[from:s.ends[i]]
}

// stripHop removes the hop-by-hop headers of a forwarded request (hopScan)
// but Connection, and every line of edgeHeaders (those the edge sets or
// refuses from a visitor). known, when not nil, holds h's Connection tokens
// already (read in admit's pass over the visitor's head, of which h is a
// copy). It and stripHopResponse are the same few lines for two types:
// through an interface or a type parameter the iterators' closures escape
// (17-20 more allocations per request in TestSharePathAllocations).
func stripHop(h *fasthttp.RequestHeader, keepUpgrade bool, known *connTokens) {
	for range 4 {
		s := hopScan{also: edgeHeaders}
		if known != nil {
			s.connTokens = *known
		} else {
			for k, v := range h.All() {
				s.conn(k, v)
			}
		}
		for k := range h.All() {
			s.name(k, keepUpgrade)
		}
		for i := range s.n {
			h.DelBytes(s.at(i))
		}
		if !s.full {
			return
		}
	}
}

// stripHopResponse is stripHop for a response.
func stripHopResponse(h *fasthttp.ResponseHeader) {
	for range 4 {
		var s hopScan
		for k, v := range h.All() {
			s.conn(k, v)
		}
		for k := range h.All() {
			s.name(k, false)
		}
		for i := range s.n {
			h.DelBytes(s.at(i))
		}
		if !s.full {
			return
		}
	}
}

// delConnection removes what the hop-by-hop scan leaves to the caller:
// Connection (unless kept for an upgrade), and Transfer-Encoding, which
// fasthttp keeps apart from the headers it lists.
func delConnection(h interface{ Del(string) }, keep bool) {
	if !keep {
		h.Del(fasthttp.HeaderConnection)
	}
	h.Del(fasthttp.HeaderTransferEncoding)
}

var (
	strEventStream = []byte("text/event-stream")
	strConnection  = []byte("Connection")
	strUpgrade     = []byte("Upgrade")
	strProxyDash   = []byte("Proxy-")
)

// prepareRequest fills out from the visitor's request.
func (p *Proxy) prepareRequest(ctx *fasthttp.RequestCtx, out *fasthttp.Request, tg target, clientIP string, edits *Edits, keepUpgrade bool) {
	in := &ctx.Request
	in.Header.CopyTo(&out.Header)
	// hopHeaders, those Connection names, every Proxy-* and every line of
	// edgeHeaders, in one pass (fasthttp's Set replaces the first line of
	// a name only: a visitor's second X-Share-Id or X-Forwarded-Proto went
	// on behind the edge's, and services that read the last or the joined
	// value took it); then Connection itself (kept on a WebSocket upgrade).
	var known *connTokens
	if edits.head.read {
		known = &edits.head.conn
	}
	stripHop(&out.Header, keepUpgrade, known)
	delConnection(&out.Header, keepUpgrade)
	// The header setters copy: one scratch buffer (pooled with edits)
	// serves each value in turn.
	var b []byte
	if tg.raw != nil {
		b = appendPath(edits.scratch[:0], tg.raw, false)
	} else {
		b = appendPath(edits.scratch[:0], tg.path, true)
	}
	if q := ctx.URI().QueryString(); len(q) > 0 {
		b = append(append(b, '?'), q...)
	}
	out.Header.SetRequestURIBytes(b)
	out.Header.SetBytesV("X-Forwarded-Host", ctx.Host())
	b = appendHostPort(b[:0], tg.svc.TargetHost, tg.svc.TargetPort)
	out.Header.SetHostBytes(b)
	// One X-Forwarded-For line: the chain of a trusted proxy (its lines
	// joined) then the peer, or the peer alone; a visitor's own claim is
	// never passed on (it had been whenever any trusted proxy was set).
	if _, trusted := p.peer(ctx); trusted {
		prior := in.Header.PeekAll("X-Forwarded-For")
		b = b[:0]
		for _, line := range prior {
			b = append(append(b, line...), ", "...)
		}
		b = append(b, peerIP(ctx)...)
		out.Header.SetBytesV("X-Forwarded-For", b)
	} else {
		out.Header.Set("X-Forwarded-For", clientIP)
	}
	edits.scratch = b
	if ctx.IsTLS() {
		out.Header.Set("X-Forwarded-Proto", "https")
	} else {
		out.Header.Set("X-Forwarded-Proto", "http")
	}
	if tg.share != nil {
		out.Header.Set("X-Share-Id", tg.share.ID)
	}
	if len(tg.prefix) > 0 {
		// Where the service is mounted, for those that build their links
		// from it (Traefik's StripPrefix sends the same).
		out.Header.SetBytesV("X-Forwarded-Prefix", tg.prefix)
	}
	for _, h := range edits.RemoveRequest {
		out.Header.Del(h)
	}
	for _, h := range edits.SetRequest {
		// A plugin's edit replaces every line the visitor sent (Set alone
		// replaces the first), and the cookies fasthttp parsed (a
		// Set("Cookie") adds to them).
		if strings.EqualFold(h[0], "Cookie") {
			out.Header.DelAllCookies()
		}
		out.Header.Del(h[0])
		out.Header.Set(h[0], h[1])
	}
	stripSessionCookies(&out.Header, edits)
	dropUnderscoreAliases(&out.Header, edits)
	hasBody := false
	if ctx.Request.IsBodyStream() {
		edits.body = visitorBody{r: ctx.RequestBodyStream(), limit: p.cfg.MaxBodyBytes}
		out.SetBodyStream(&edits.body, in.Header.ContentLength())
		hasBody = in.Header.ContentLength() != 0
	} else if body := in.Body(); len(body) > 0 {
		out.SetBodyRaw(body)
		hasBody = true
	}
	if hasBody && ignoredBody(in.Header.Method()) {
		// Servers that read no body they have no use for (Python's
		// http.server in HTTP/1.1 mode) parse the next request from it:
		// the body of a GET, which the policy never read as a request,
		// would run as one on a kept-alive stream. The service closes
		// after this request instead, unread body and all.
		out.Header.SetConnectionClose()
	}
}

// ignoredBody reports whether a request of method m usually has no body,
// so that a service may well not read one.
func ignoredBody(m []byte) bool {
	switch string(m) {
	case fasthttp.MethodPost, fasthttp.MethodPut, fasthttp.MethodPatch:
		return false
	}
	return true
}

// edgeHeaders are removed from a visitor's request, every line of them:
// those the edge sets itself (X-Forwarded-*, X-Share-Id), and other claims
// about the client (its address, the link's mount point), of which the
// edge's X-Forwarded-For is the only one a service gets; claims of another
// scheme (Rack and Werkzeug take X-Forwarded-Ssl: on for https whatever
// X-Forwarded-Proto says) and of another request URL, which services
// behind IIS, older Symfony and Zend read instead of the request line: the
// policy checked the path of the request line.
var edgeHeaders = []string{"X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto", "X-Share-Id",
	"Forwarded", "X-Real-Ip", "True-Client-Ip", "X-Client-Ip", "Cf-Connecting-Ip", "X-Forwarded-Port", "X-Forwarded-Prefix",
	"X-Forwarded-Ssl", "X-Forwarded-Scheme", "X-Url-Scheme", "Front-End-Https",
	"X-Original-Url", "X-Rewrite-Url", "X-Original-Uri", "X-Forwarded-Uri", "X-Forwarded-Path"}

// sessionCookiePrefix names the share-session cookies the password built-in
// sets ("pc_s_<share id>", Path=/): a browser sends them to every share of the
// edge, so no service may see them, or one share's service could replay
// another share's session.
const sessionCookiePrefix = "pc_s_"

// stripSessionCookies removes every share-session cookie from a forwarded
// request.
func stripSessionCookies(h *fasthttp.RequestHeader, edits *Edits) {
	names := edits.cookieNames[:0]
	for k := range h.Cookies() {
		if bytes.HasPrefix(k, []byte(sessionCookiePrefix)) {
			names = append(names, string(k))
		}
	}
	for _, n := range names {
		h.DelCookie(n)
	}
	edits.cookieNames = names[:0]
}

// dropUnderscoreAliases removes the visitor's headers whose names, read
// with '-' for '_', are a header the edge or the policy chain sets or
// removes, or another header of the request: CGI-style servers (Python's
// wsgiref, PHP, Rack, many WSGI servers) name X-Share-Id and X_Share_Id
// alike (HTTP_X_SHARE_ID) and join or pick between them, so X_Forwarded_For
// reached a WSGI service ahead of the edge's X-Forwarded-For, and a header a
// plugin checked could be joined with another value. (nginx drops every
// header with an underscore by default; other underscore headers go on
// here.) Free unless a name has an underscore.
func dropUnderscoreAliases(h *fasthttp.RequestHeader, edits *Edits) {
	var under []string
	for k := range h.All() {
		if bytes.IndexByte(k, '_') >= 0 {
			under = append(under, string(k))
		}
	}
	if len(under) == 0 {
		return
	}
	for _, u := range under { // a name without '_' decides: deleting u changes none of them
		drop := underscoreAlias(h, u)
		for _, e := range edits.SetRequest {
			drop = drop || dashFold(u, e[0])
		}
		for _, n := range edits.RemoveRequest {
			drop = drop || dashFold(u, n)
		}
		if drop {
			h.Del(u)
		}
	}
}

// methodOverrides name the method many frameworks act on for a POST; the
// allow-paths built-in checks them against allowedMethods by these names,
// so their underscore spellings (PHP's HTTP_X_HTTP_METHOD_OVERRIDE) go.
var methodOverrides = []string{"X-HTTP-Method-Override", "X-HTTP-Method", "X-Method-Override"}

// dashFold reports whether header names a and b are the same once case is
// folded and '_' read as '-'.
func dashFold[A, B ~string | ~[]byte](a A, b B) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		if foldDash(a[i]) != foldDash(b[i]) {
			return false
		}
	}
	return true
}

func foldDash(c byte) byte {
	switch {
	case c == '_':
		return '-'
	case 'A' <= c && c <= 'Z':
		return c + 'a' - 'A'
	}
	return c
}

func peerIP(ctx *fasthttp.RequestCtx) string {
	a, _ := netip.AddrFromSlice(ctx.RemoteIP())
	return a.Unmap().String()
}

// appendHostPort appends host:port, bracketing IPv6 literals as
// net.JoinHostPort does.
func appendHostPort(dst []byte, host string, port int) []byte {
	return strconv.AppendInt(append(appendHost(dst, host), ':'), int64(port), 10)
}

// appendHost appends host as a URL authority has it: IPv6 literals
// bracketed.
func appendHost(dst []byte, host string) []byte {
	if strings.IndexByte(host, ':') >= 0 {
		return append(append(append(dst, '['), host...), ']')
	}
	return append(dst, host...)
}

// appendPath appends a path for the request line, escaping what may not
// appear there; decoded (the normalized path) escapes '%' too, a path
// sent by the visitor keeps its percent-encodings.
func appendPath(dst, path []byte, decoded bool) []byte {
	const hex = "0123456789ABCDEF"
	for _, c := range path {
		if c <= ' ' || c >= 0x7f || c == '?' || c == '#' || (decoded && c == '%') {
			dst = append(dst, '%', hex[c>>4], hex[c&15])
			continue
		}
		dst = append(dst, c)
	}
	return dst
}

// rawPath is the path the visitor sent, after prefix (the link's
// /shared/<token>, sent as is), for the service: a%2Fb stays one segment
// instead of becoming a/b. It is nil, and the service gets the normalized
// path that policies checked, when the two could name different resources:
// a dot segment or an empty one, between separators plain or encoded (a
// service that decodes %2F before routing sees a%2F..%2Fb as a/../b), a
// backslash, or a prefix not sent as is. With those out, raw and normalized
// differ only in percent-encodings that a service decodes to the same path,
// or keeps as characters of one segment (%2F): never a segment outside what
// the policy saw (FuzzRawPath).
func rawPath(orig, prefix []byte) []byte {
	if !bytes.HasPrefix(orig, prefix) {
		return nil
	}
	raw := orig[len(prefix):]
	if len(raw) == 0 || raw[0] != '/' || bytes.IndexByte(raw, '%') < 0 {
		return nil // nothing encoded: the normalized path is the same
	}
	rest, from := raw[1:], 0
	for i := 0; ; {
		sep := 0 // the separator's length at i; -1 at the end
		switch {
		case i == len(rest):
			sep = -1
		case rest[i] == '/':
			sep = 1
		case rest[i] == '%' && i+2 < len(rest) && rest[i+1] == '2' && rest[i+2]|0x20 == 'f':
			sep = 3
		case rest[i] == '\\':
			return nil
		}
		if sep == 0 {
			i++
			continue
		}
		piece := rest[from:i]
		if (len(piece) == 0 && sep > 0) || isDotSegment(piece) {
			return nil
		}
		if sep < 0 {
			return raw
		}
		i += sep
		from = i
	}
}

// isDotSegment reports whether a path segment is "." or "..", plainly or
// percent-encoded (%2e), or holds an encoded separator that would make one
// (%5c, a backslash, to some servers).
func isDotSegment(part []byte) bool {
	if bytes.Contains(bytes.ToLower(part), []byte("%5c")) {
		return true
	}
	n := 0
	for len(part) > 0 {
		switch {
		case part[0] == '.':
			part = part[1:]
		case len(part) >= 3 && part[0] == '%' && part[1] == '2' && (part[2] == 'e' || part[2] == 'E'):
			part = part[3:]
		default:
			return false
		}
		n++
	}
	return n == 1 || n == 2
}

// relayHead copies a service's answer head to the visitor's answer, as
// every relayed answer gets it: HTTP/1.1, no made-up Content-Type (a default
// would change how browsers sniff it), hop-by-hop headers out, redirects
// and cookies under a path link, the edge's own edits last.
func relayHead(ctx *fasthttp.RequestCtx, src *fasthttp.ResponseHeader, tg *target, edits *Edits) {
	src.CopyTo(&ctx.Response.Header)
	ctx.Response.Header.SetProtocol(strHTTP11)
	ctx.Response.Header.SetNoDefaultContentType(true)
	stripHopResponse(&ctx.Response.Header)
	delConnection(&ctx.Response.Header, false)
	edits.scratch = rewriteHead(&ctx.Response.Header, tg, edits.scratch)
	edits.applyResponse(&ctx.Response.Header)
}

// forward proxies a plain HTTP request with both bodies streamed. It
// returns true when the answer's body streams after the handler returns:
// the request is then counted active until the body closes.
func (p *Proxy) forward(ctx *fasthttp.RequestCtx, sess *tunnels.Session, tg target, clientIP string, edits *Edits, start time.Time) bool {
	hc, err := p.httpClient(sess, tg.svc)
	if err != nil {
		WriteError(ctx, fasthttp.StatusInternalServerError, "Internal error")
		p.logAccess(ctx, tg.share, start, clientIP, "allowed", "", 0)
		return false
	}
	req := fasthttp.AcquireRequest()
	resp := fasthttp.AcquireResponse()
	p.prepareRequest(ctx, req, tg, clientIP, edits, false)
	visitor := rawConn(ctx.Conn())
	body, err := p.exchange(hc, req, resp, visitor)
	fasthttp.ReleaseRequest(req)
	if err != nil {
		fasthttp.ReleaseResponse(resp)
		if errors.Is(err, errVisitorGone) {
			p.visitorGone(ctx, tg.share, start, clientIP)
			return false
		}
		status, msg := upstreamError(err)
		if edits.body.err != nil {
			// The request body could not be read from the visitor: the
			// stream to the service was dropped half-sent.
			status, msg = fasthttp.StatusBadRequest, "Malformed request body"
			switch {
			case errors.Is(edits.body.err, fasthttp.ErrBodyTooLarge):
				status, msg = fasthttp.StatusRequestEntityTooLarge, BodyTooLarge
			case tunnel.IsTimeout(edits.body.err):
				// No byte of it for the edge's body timeout.
				status, msg = fasthttp.StatusRequestTimeout, RequestTimeout
			}
			ctx.SetConnectionClose()
		}
		p.log.Debug("upstream error", "service", tg.svc.ID, "err", err)
		WriteError(ctx, status, msg)
		p.logAccess(ctx, tg.share, start, clientIP, "allowed", "", 0)
		return false
	}
	if resp.StatusCode() < 200 {
		// A 101 to a request that asked for no upgrade (firstByteConn
		// fails those before the client pools the stream): never relayed,
		// the visitor would wait for a protocol that does not come. (No
		// body: 1xx answers have none.)
		fasthttp.ReleaseResponse(resp)
		WriteError(ctx, fasthttp.StatusBadGateway, msgBadResponse)
		p.logAccess(ctx, tg.share, start, clientIP, "allowed", "", 0)
		return false
	}
	status := resp.StatusCode()
	relayHead(ctx, &resp.Header, &tg, edits)
	ctx.SetStatusCode(status)
	if body == nil {
		// No body: the answer to a HEAD, a 204 or a 304 (every other
		// answer's body streams, if only an empty one).
		ctx.Response.SkipBody = true
		fasthttp.ReleaseResponse(resp)
		p.logAccess(ctx, tg.share, start, clientIP, "allowed", "", 0)
		return false
	}
	if n := resp.Header.ContentLength(); n >= 0 && n <= smallBody {
		// A small body of known length: copy it now and free the stream,
		// cheaper than streaming it through fasthttp's body writer.
		_, err := io.CopyN(ctx.Response.BodyWriter(), body, int64(n))
		body.end()
		fasthttp.ReleaseResponse(resp)
		if err != nil {
			// None of the service's head goes with the error (its
			// Set-Cookie, Content-Encoding, ETag...): only the edge's own.
			ctx.Response.Reset()
			edits.applyResponse(&ctx.Response.Header)
			WriteError(ctx, fasthttp.StatusBadGateway, "The connection to the service was lost")
			n = 0
		}
		p.logAccess(ctx, tg.share, start, clientIP, "allowed", "", int64(n))
		return false
	}
	sb := &streamBody{resp: resp, r: body, p: p, keep: p.keepsAccess(tg.share)}
	if sb.keep {
		// Recorded at the end, for its bytes; its latency is the time
		// to its head, as for every request (an event stream's hours
		// would swamp the latency histogram).
		sb.rec = p.newAccess(tg.share, start, time.Since(start), clientIP, status, "allowed", "", 0, ctx)
	}
	// Cut by closing the visitor's connection: fasthttp's next write
	// fails and it closes the body (closing the body here, while its
	// goroutine reads it, would release the response under it).
	sb.unlive = p.live.add(liveKey(tg.share, tg.svc.ID), visitor)
	n := resp.Header.ContentLength()
	if n < 0 {
		n = -1
	}
	ctx.SetBodyStream(sb, n)
	// The head of a large body (over smallBody) or of an event stream
	// goes out as soon as the service's does, not with the first 16 KiB
	// of body: an event stream's first event may be long coming, and a
	// large body cut short shows as a truncated answer rather than an
	// empty reply. (Not for other chunked answers, often small: one more
	// write each.)
	if n >= 0 || bytes.HasPrefix(resp.Header.ContentType(), strEventStream) {
		ctx.Response.ImmediateHeaderFlush = true
	}
	return true
}

// streamBody relays the upstream body; fasthttp closes it after writing,
// which releases the upstream response and records the access.
type streamBody struct {
	resp   *fasthttp.Response
	r      *upstreamBody
	n      int64
	p      *Proxy
	keep   bool             // the request is recorded (keepsAccess)
	rec    config.AccessLog // its record but for the bytes, made at the head
	once   sync.Once
	unlive func() // leaves the live streams (CutInactive)
}

func (b *streamBody) Read(q []byte) (int, error) {
	n, err := b.r.Read(q)
	b.n += int64(n)
	return n, err
}

func (b *streamBody) Close() error {
	b.once.Do(func() {
		if b.unlive != nil {
			b.unlive()
		}
		b.r.end()
		fasthttp.ReleaseResponse(b.resp)
		if b.keep {
			b.rec.BytesOut = b.n
			b.p.cfg.OnAccess(b.rec)
		}
		b.p.active.Add(-1) // the request the handler left streaming ends
	})
	return nil
}

// websocket relays an upgrade request and, on 101, pipes both ways. Every
// attempt is counted once (access log and metrics), with what the visitor
// got: the edge's error, the service's refusal, or the 101, recorded when
// the WebSocket ends (with the bytes it sent the visitor).
func (p *Proxy) websocket(ctx *fasthttp.RequestCtx, sess *tunnels.Session, tg target, clientIP string, edits *Edits, start time.Time) {
	// fail answers the visitor with the edge's error and counts the attempt.
	fail := func(status int, msg string) {
		WriteError(ctx, status, msg)
		p.logAccess(ctx, tg.share, start, clientIP, "allowed", "", 0)
	}
	if cl := ctx.Request.Header.ContentLength(); cl > 0 || cl == -1 { // -1: chunked (-2: none)
		// A handshake is a GET without a body: its Content-Length would
		// have gone to the service without the body, the service waiting
		// for bytes that were the visitor's first frames.
		ctx.SetConnectionClose()
		fail(fasthttp.StatusBadRequest, "A WebSocket upgrade has no body")
		return
	}
	id, _ := uuid.Parse(tg.svc.ID)
	conn, err := sess.OpenStream(tunnel.KindHTTP, id, clientIP)
	if err != nil {
		p.log.Debug("upstream error", "service", tg.svc.ID, "err", err)
		fail(upstreamError(err))
		return
	}
	req := fasthttp.AcquireRequest()
	p.prepareRequest(ctx, req, tg, clientIP, edits, true)
	upgradeOnly(&req.Header)
	bw := bufio.NewWriter(conn)
	err = req.Header.Write(bw)
	if err == nil {
		err = bw.Flush()
	}
	fasthttp.ReleaseRequest(req)
	if err != nil {
		conn.Close()
		p.log.Debug("upstream error", "service", tg.svc.ID, "err", err)
		fail(fasthttp.StatusBadGateway, "The connection to the service was lost")
		return
	}
	// readFailed answers a failed read of the service's answer: 504 past
	// the upstream timeout, else 502.
	readFailed := func(err error) {
		p.log.Debug("upstream error", "service", tg.svc.ID, "err", err)
		if tunnel.IsTimeout(err) {
			fail(fasthttp.StatusGatewayTimeout, msgUpstreamTimeout)
		} else {
			fail(fasthttp.StatusBadGateway, "The service did not accept the WebSocket upgrade")
		}
	}
	// The service has the upstream timeout to answer the upgrade, as any
	// request (here for the whole head: nothing of it goes out before);
	// a visitor who hangs up meanwhile ends the wait.
	wc := &watchedConn{Conn: conn}
	now := time.Now()
	served := ctx.Conn()
	raw := rawConn(served)
	wc.watch.start(conn, now, now.Add(p.cfg.UpstreamTimeout), raw)
	br := bufio.NewReader(wc)
	var rh fasthttp.ResponseHeader
	for interim := 0; ; interim++ {
		if err := rh.Read(br); err != nil {
			conn.Close()
			if wc.watch.gone {
				p.visitorGone(ctx, tg.share, start, clientIP)
				return
			}
			readFailed(err)
			return
		}
		if st := rh.StatusCode(); st == fasthttp.StatusSwitchingProtocols || st >= 200 {
			break
		}
		// An interim response (100 Continue, 103 Early Hints): skipped, as
		// the HTTP client does; relayed as the answer, it would leave the
		// visitor waiting for a final one that never comes.
		if rh.StatusCode() < 100 || interim == maxInterimHeads {
			conn.Close()
			fail(fasthttp.StatusBadGateway, msgBadResponse)
			return
		}
	}
	wc.watch.visitor = nil // answered
	if rh.StatusCode() != fasthttp.StatusSwitchingProtocols {
		// Not upgraded: relay the answer as a normal response, read whole
		// (1 MiB at most) within another upstream timeout: a service that
		// stalls in it must not hold the visitor and the stream.
		var resp fasthttp.Response
		rh.CopyTo(&resp.Header)
		_ = conn.SetReadDeadline(time.Now().Add(p.cfg.UpstreamTimeout))
		err := resp.ReadBody(br, 1<<20)
		conn.Close()
		if err != nil {
			readFailed(err)
			return
		}
		relayHead(ctx, &resp.Header, &tg, edits)
		ctx.SetStatusCode(rh.StatusCode())
		ctx.SetBody(resp.Body())
		p.logAccess(ctx, tg.share, start, clientIP, "allowed", "", int64(len(resp.Body())))
		return
	}
	if !switchesToWebSocket(&rh) {
		// A switch to another protocol (h2c) would pipe the visitor to a
		// service speaking it, past the policy for every request after.
		conn.Close()
		fail(fasthttp.StatusBadGateway, msgBadResponse)
		return
	}
	_ = conn.SetReadDeadline(time.Time{})
	edits.scratch = rewriteHead(&rh, &tg, edits.scratch)
	edits.applyResponse(&rh)
	head := append([]byte(nil), rh.Header()...)
	share, svcID := tg.share, tg.svc.ID
	// The record is made now: the hijack handler runs once the server has
	// let go of ctx.
	keep := p.keepsAccess(tg.share)
	var rec config.AccessLog
	if keep {
		rec = p.newAccess(tg.share, start, time.Since(start), clientIP, fasthttp.StatusSwitchingProtocols, "allowed", "", 0, ctx)
	}
	// The visitor's own connection (raw) is the one to close for a cut:
	// closing the conn handed to the hijack handler does nothing (fasthttp
	// keeps it until the handler returns).
	ctx.HijackSetNoResponse(true)
	ctx.Hijack(func(c net.Conn) {
		var out int64
		defer func() {
			if keep {
				rec.BytesOut = out // its latency is the 101's
				p.cfg.OnAccess(rec)
			}
		}()
		if _, err := c.Write(head); err != nil {
			conn.Close()
			return
		}
		var up net.Conn = conn
		if br.Buffered() > 0 {
			up = &readerConn{Conn: conn, r: br}
		}
		// Closing the visitor's connection ends the pipe both ways.
		defer p.live.add(liveKey(share, svcID), raw)()
		_, out = tunnel.Pipe(&hijacked{Conn: c, served: served}, up)
	})
}

// visitorGone ends a request whose visitor hung up before the service
// answered: recorded as nginx does (499, "client closed request"); nothing
// is sent (a half-closed visitor could still read it), the connection is
// closed.
func (p *Proxy) visitorGone(ctx *fasthttp.RequestCtx, share *routes.Share, start time.Time, clientIP string) {
	ctx.SetStatusCode(StatusVisitorGone)
	p.logAccess(ctx, share, start, clientIP, "allowed", "", 0)
	ctx.HijackSetNoResponse(true)
	ctx.Hijack(func(net.Conn) {})
}

// switchesToWebSocket reports whether a 101 names the WebSocket protocol,
// and it alone, in its Upgrade header.
func switchesToWebSocket(h *fasthttp.ResponseHeader) bool {
	ups := h.PeekAll(fasthttp.HeaderUpgrade)
	if len(ups) == 0 {
		return false
	}
	for _, u := range ups {
		if !bytes.EqualFold(bytes.TrimSpace(u), strWebsocket) {
			return false
		}
	}
	return true
}

// hijacked is the visitor's connection of a WebSocket as Pipe needs it.
// fasthttp's hijacked conn reads what the server had buffered, but its Close
// does nothing (the server closes the connection once the hijack handler
// returns, the pipe's end) and it has no CloseWrite: the end of the service's
// side, clean or not, never reached the visitor. Close, CloseWrite and Abort
// act on the connection the server accepted (TLS, PROXY protocol or TCP).
type hijacked struct {
	net.Conn          // fasthttp's hijacked conn: reads and writes
	served   net.Conn // ctx.Conn()
}

func (c *hijacked) Close() error { return c.served.Close() }

// CloseWrite sends the visitor the end of the stream: close_notify on TLS,
// then a FIN.
func (c *hijacked) CloseWrite() error {
	if tc, ok := c.served.(*tls.Conn); ok {
		if err := tc.CloseWrite(); err != nil {
			return err
		}
	}
	if tc := tcpConn(c.served); tc != nil {
		return tc.CloseWrite()
	}
	return errors.New("proxy: no half-close")
}

// Abort resets the visitor's connection (tunnel.Reset): the service's side
// was torn down, not ended.
func (c *hijacked) Abort() {
	if tc := tcpConn(c.served); tc != nil {
		tunnel.Reset(tc)
		return
	}
	_ = c.served.Close()
}

// tcpConn is the TCP connection under c (TLS, PROXY protocol, the edge's
// body timing), or nil.
func tcpConn(c net.Conn) *net.TCPConn {
	for {
		switch x := c.(type) {
		case *net.TCPConn:
			return x
		case interface{ NetConn() net.Conn }: // *tls.Conn, the edge's bodyConn
			c = x.NetConn()
		case interface{ Raw() net.Conn }: // proxyproto.Conn
			c = x.Raw()
		default:
			return nil
		}
	}
}

// readerConn reads through a bufio.Reader that may hold bytes already.
type readerConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *readerConn) Read(b []byte) (int, error) { return c.r.Read(b) }

// CloseWrite forwards half-close.
func (c *readerConn) CloseWrite() error { return tunnel.CloseWrite(c.Conn) }

// WriteError answers ctx with status and the API's error envelope
// ({"error","message","statusCode"}) and the security headers of every
// answer the edge writes itself: the share handler's own errors, and those
// the edge's HTTP server answers before any handler runs (a malformed
// request, headers too large).
func WriteError(ctx *fasthttp.RequestCtx, status int, msg string) {
	ctx.SetStatusCode(status)
	ctx.SetContentType("application/json")
	setSecurityHeaders(ctx)
	b := make([]byte, 0, 96+len(msg))
	b = append(b, `{"error":`...)
	b = strconv.AppendQuote(b, fasthttp.StatusMessage(status))
	b = append(b, `,"message":`...)
	b = strconv.AppendQuote(b, msg)
	b = append(b, `,"statusCode":`...)
	b = strconv.AppendInt(b, int64(status), 10)
	b = append(b, '}')
	ctx.SetBody(b)
}

func setSecurityHeaders(ctx *fasthttp.RequestCtx) {
	ctx.Response.Header.Set("X-Content-Type-Options", "nosniff")
}

// logAccess hands the access record of a request answered now to the
// reporter.
func (p *Proxy) logAccess(ctx *fasthttp.RequestCtx, share *routes.Share, start time.Time, clientIP, decision, deniedBy string, bytesOut int64) {
	if p.keepsAccess(share) {
		p.cfg.OnAccess(p.newAccess(share, start, time.Since(start), clientIP, ctx.Response.StatusCode(), decision, deniedBy, bytesOut, ctx))
	}
}

// methodString returns the common methods without allocating.
func methodString(m []byte) string {
	for _, s := range [...]string{"GET", "POST", "HEAD", "PUT", "DELETE", "PATCH", "OPTIONS"} {
		if string(m) == s {
			return s
		}
	}
	return string(m)
}

// keepsAccess reports whether requests of share are recorded (not those of
// a public service, nor any without a reporter).
func (p *Proxy) keepsAccess(share *routes.Share) bool { return share != nil && p.cfg.OnAccess != nil }

// newAccess makes the access record of a request whose answer's head took
// latency.
func (p *Proxy) newAccess(share *routes.Share, start time.Time, latency time.Duration, clientIP string, status int, decision, deniedBy string, bytesOut int64, ctx *fasthttp.RequestCtx) config.AccessLog {
	rec := config.AccessLog{ShareID: share.ID, At: start.UTC(), IP: clientIP, StatusCode: status,
		LatencyMs: float64(latency.Microseconds()) / 1000, BytesOut: bytesOut, Decision: decision, DeniedBy: deniedBy}
	if ctx != nil {
		rec.Method = methodString(ctx.Method())
		rec.Path = config.Cut(config.LogPath(string(ctx.Path())), config.MaxLogPath)
		ua := ctx.UserAgent()
		rec.UserAgent = string(ua[:min(len(ua), config.MaxLogUserAgent)])
	}
	return rec
}
