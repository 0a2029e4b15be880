// Package edge is an edge node: it accepts agent tunnels, serves share links
// through them, keeps its routing table in step with the control plane and
// reports what it sees. It never reads the control plane's storage and never
// calls the control plane on the request path.
package edge

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/netip"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pires/go-proxyproto"
	"github.com/privateconnect/pc/edge/configsync"
	"github.com/privateconnect/pc/edge/policy"
	"github.com/privateconnect/pc/edge/proxy"
	"github.com/privateconnect/pc/edge/routes"
	"github.com/privateconnect/pc/edge/tunnels"
	"github.com/privateconnect/pc/internal/config"
	"github.com/privateconnect/pc/internal/tlsplain"
	"github.com/privateconnect/pc/internal/tunnel"
	"github.com/privateconnect/pc/plugins"
	"github.com/valyala/fasthttp"
)

// Version is the edge software version reported to the control plane.
var Version = "dev"

// Config configures an edge node. Zero values take the defaults of
// product.md.
type Config struct {
	// ControlURL is the control plane's API, http:// or https://
	// (default http://127.0.0.1:3001).
	ControlURL string
	// ControlTLS verifies the control plane over https (a private CA in
	// RootCAs); nil means the system roots.
	ControlTLS *tls.Config
	Token      string // edge token from POST /v1/edges
	HTTPAddr   string // share listener, default 127.0.0.1:8080
	TunnelAddr string // agent tunnel listener, default 127.0.0.1:7070
	AdminAddr  string // /health and /metrics, default 127.0.0.1:9090; "-" disables
	DataDir    string // default ./data

	// HTTPTLS and TunnelTLS, when set, make the listeners serve TLS.
	// Without TunnelTLS the tunnel listener must be on a loopback address
	// unless InsecureTunnel is set (plain TCP is for dev and tests, or
	// behind a load balancer that terminates TLS).
	HTTPTLS        *tls.Config
	TunnelTLS      *tls.Config
	InsecureTunnel bool

	// ProxyProtocol accepts PROXY protocol v1/v2 headers on the share
	// listener from TrustedProxies (the client IP is then the header's
	// source); other peers' headers are not parsed.
	ProxyProtocol bool

	ShareDomain    string   // host-based share routing: <token>.<ShareDomain>
	PublicDomain   string   // public services: <subdomain>.<PublicDomain>
	TrustedProxies []string // CIDRs allowed to set X-Forwarded-For

	// TCPPortMin..TCPPortMax is the range of service tunnel ports this edge
	// opens (0 disables TCP tunnels); TCPHost is the address they bind
	// (default: the host of HTTPAddr).
	TCPPortMin, TCPPortMax int
	TCPHost                string

	MaxStreamsPerAgent int // default 1024
	// AccessLogRate is how many access logs a second the edge sends to the
	// control plane (default 1000): above it they are a uniform sample of
	// about that many a second, while the share statistics, accessCount
	// and the metrics count every request. Negative sends none.
	AccessLogRate  int
	ReportInterval time.Duration // default 1 s
	DrainTimeout   time.Duration // default 15 s
	// UpstreamTimeout bounds the wait for the head of a service's response
	// (default 100 s): past it the visitor gets 504.
	UpstreamTimeout time.Duration
	// HeaderTimeout is how long a visitor has to send a request's head, the
	// request line and headers (default 30 s): counted from the connection's
	// opening (TLS handshake included) for its first request, from the first
	// byte of the request for the next ones. Past it the connection is
	// closed (after a 408).
	HeaderTimeout time.Duration
	// BodyTimeout is how long a request body may go without a byte arriving
	// (default 30 s): past it the request ends, answered 408 unless its
	// answer has started, its stream to the service dropped half-sent, and
	// the connection is closed. A body has no time limit as a whole: an
	// upload streams as long as it takes while it makes progress.
	// (WebSockets and TCP tunnels, once open, are not timed by it; see
	// VisitorWriteTimeout.)
	BodyTimeout time.Duration
	// VisitorWriteTimeout ends a visitor's connection (share links, their
	// WebSockets, TCP tunnel ports) when a write to it makes no progress
	// for this long (default 60 s). A visitor that stops reading leaves its
	// stream's bytes in the agent session's shared receive buffer; a few
	// such visitors fill it, and smux then stops reading the session: every
	// stream of that agent stalls until they go.
	VisitorWriteTimeout time.Duration
	// IdleTimeout closes a keep-alive connection that has been waiting this
	// long for its next request (default 90 s).
	IdleTimeout time.Duration
	// MaxBodyBytes is the largest request body the edge forwards (0: no
	// limit). A request whose Content-Length is larger gets 413 before
	// anything else (and instead of 100 Continue); a chunked body that
	// grows past it is cut, the request to the service aborted, and the
	// visitor gets 413.
	MaxBodyBytes int64
	Logger       *slog.Logger

	// Policy runs share policy chains; nil means the built-in Wasm engine
	// of package edge/policy (unless DisablePlugins).
	Policy proxy.Policy
	// DisablePlugins turns the Wasm policy engine off: shares are then
	// served without their policy chains (benchmarks of the bare path only).
	DisablePlugins bool
	// PluginPoolSize is the number of pre-warmed instances per plugin.
	PluginPoolSize int
	// PluginBreakerThreshold is how many failures within a minute trip a
	// plugin's circuit breaker (default 20); PluginBreakerBackoff how long
	// its shares then answer 503 before a trial call (default 30 s,
	// doubling on each failed trial up to 10 minutes).
	PluginBreakerThreshold int
	PluginBreakerBackoff   time.Duration
	// PluginUnloadGrace is how long a plugin no share attaches any more
	// stays loaded (default 30 s, negative none; see policy.Config).
	PluginUnloadGrace time.Duration
	// PluginCacheDir holds compiled plugins and fetched modules (default
	// <DataDir>/plugins). Edges on one machine may share it.
	PluginCacheDir string
}

func (c *Config) setDefaults() {
	if c.ControlURL == "" {
		c.ControlURL = "http://127.0.0.1:3001"
	}
	if c.HTTPAddr == "" {
		c.HTTPAddr = "127.0.0.1:8080"
	}
	if c.TunnelAddr == "" {
		c.TunnelAddr = "127.0.0.1:7070"
	}
	if c.AdminAddr == "" {
		c.AdminAddr = "127.0.0.1:9090"
	}
	if c.DataDir == "" {
		c.DataDir = "./data"
	}
	if c.ReportInterval <= 0 {
		c.ReportInterval = time.Second
	}
	if c.AccessLogRate == 0 {
		c.AccessLogRate = 1000
	}
	if c.DrainTimeout <= 0 {
		c.DrainTimeout = 15 * time.Second
	}
	if c.HeaderTimeout <= 0 {
		c.HeaderTimeout = 30 * time.Second
	}
	if c.BodyTimeout <= 0 {
		c.BodyTimeout = 30 * time.Second
	}
	if c.IdleTimeout <= 0 {
		c.IdleTimeout = 90 * time.Second
	}
	if c.VisitorWriteTimeout <= 0 {
		c.VisitorWriteTimeout = 60 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

// validate checks cfg (after setDefaults) and parses its trusted proxies.
func (c *Config) validate() ([]netip.Prefix, error) {
	if c.Token == "" {
		return nil, errors.New("edge: an edge token is required (POST /v1/edges or `connect edges add`)")
	}
	u, ok := config.ControlURL(c.ControlURL)
	if !ok {
		return nil, fmt.Errorf("edge: control URL %q: want the control plane's http:// or https:// address, e.g. http://127.0.0.1:3001", c.ControlURL)
	}
	if c.ControlTLS != nil && u.Scheme != "https" {
		return nil, fmt.Errorf("edge: a CA for the control plane is set but the control URL %q is not https://", c.ControlURL)
	}
	if c.TunnelTLS == nil && !c.InsecureTunnel && !tunnel.IsLoopbackAddr(c.TunnelAddr) {
		return nil, fmt.Errorf("edge: the tunnel listener %s would carry agent traffic in plain TCP off loopback: "+
			"give it a certificate (--tls-cert/--tls-key), or --insecure-tunnel when a load balancer in front terminates TLS", c.TunnelAddr)
	}
	if c.MaxBodyBytes < 0 {
		return nil, fmt.Errorf("edge: the request body limit %d is negative (0: no limit)", c.MaxBodyBytes)
	}
	if c.ProxyProtocol && len(c.TrustedProxies) == 0 {
		return nil, errors.New("edge: PROXY protocol needs TrustedProxies (the load balancers allowed to send it)")
	}
	var trusted []netip.Prefix
	for _, p := range c.TrustedProxies {
		pfx, err := netip.ParsePrefix(strings.TrimSpace(p))
		if err != nil {
			return nil, fmt.Errorf("edge: trusted proxy %q: %w", p, err)
		}
		trusted = append(trusted, pfx.Masked())
	}
	return trusted, nil
}

// Server is an edge node.
type Server struct {
	cfg      Config
	log      *slog.Logger
	sync     *configsync.Syncer
	registry *tunnels.Registry
	proxy    *proxy.Proxy
	reporter *reporter
	tcp      *tcpPorts
	conns    *connTracker
	policy   *policy.Engine
	metrics  *metrics
	trusted  []netip.Prefix
	// bodyStalls counts request bodies ended by BodyTimeout.
	bodyStalls atomic.Int64

	httpSrv  *fasthttp.Server
	adminSrv *fasthttp.Server
	httpLn   net.Listener
	bodyLn   *bodyListener // under httpLn's PROXY protocol and TLS: every visitor connection
	tunLn    net.Listener
	adminLn  net.Listener

	cancel context.CancelFunc
	wg     sync.WaitGroup
	start  time.Time
	// replaced is closed when another process took this edge's stream
	// (configsync.Config.OnReplaced): Run drains and returns ErrReplaced.
	replaced     chan struct{}
	replacedOnce sync.Once
	// failed is closed, with failErr set, when the control plane cannot
	// give this edge a configuration and it has none to serve
	// (configsync.Config.OnFatal): Run drains and returns failErr.
	failed   chan struct{}
	failOnce sync.Once
	failErr  error
	// draining is set when Shutdown starts: /health answers 503.
	draining atomic.Bool
}

// ErrReplaced ends Run when another process connected to the control plane
// with this edge's token: one token is one edge, served by one process.
var ErrReplaced = errors.New("another process now serves this edge (it connected to the control plane with the same edge token): this one stopped; give each edge process its own token (POST /v1/edges)")

// New validates cfg and builds an edge node; Start binds its listeners.
func New(cfg Config) (*Server, error) {
	cfg.setDefaults()
	trusted, err := cfg.validate()
	if err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, log: cfg.Logger, trusted: trusted, replaced: make(chan struct{}), failed: make(chan struct{})}
	s.reporter = newReporter(s)
	if cfg.TCPPortMax > 0 {
		host := cfg.TCPHost
		if host == "" {
			host, _, _ = net.SplitHostPort(cfg.HTTPAddr)
		}
		s.tcp = newTCPPorts(s, host, cfg.TCPPortMin, cfg.TCPPortMax)
	}
	s.sync = configsync.New(configsync.Config{ControlURL: cfg.ControlURL, Token: cfg.Token, DataDir: cfg.DataDir, TLS: cfg.ControlTLS,
		Logger: cfg.Logger.With("component", "configsync"), BeforeSwap: s.beforeSwap, OnSwap: s.onSwap, OnInbox: s.deliverInbox,
		OnReplaced: func(string) { s.replacedOnce.Do(func() { close(s.replaced) }) },
		OnFatal: func(err error) {
			s.failOnce.Do(func() {
				s.failErr = fmt.Errorf("edge: %w", err)
				close(s.failed)
			})
		}})
	s.conns = newConnTracker()
	s.registry = tunnels.New(tunnels.Config{EdgeID: s.sync.EdgeID, Table: s.sync.Table,
		MaxStreams: cfg.MaxStreamsPerAgent, TrustedProxies: trusted, OnEvent: s.reporter.event, OnControl: s.onAgentControl,
		TrackConn: s.conns.track,
		Logger:    cfg.Logger.With("component", "tunnels")})
	if cfg.Policy == nil && !cfg.DisablePlugins {
		cacheDir := cfg.PluginCacheDir
		if cacheDir == "" {
			cacheDir = filepath.Join(cfg.DataDir, "plugins")
		}
		eng, err := policy.New(context.Background(), policy.Config{CacheDir: cacheDir,
			Fetch: s.sync.FetchPlugin, Logger: cfg.Logger.With("component", "policy"), PoolSize: cfg.PluginPoolSize,
			OnFailure: s.reporter.pluginFailed, UnloadGrace: cfg.PluginUnloadGrace,
			BreakerThreshold: cfg.PluginBreakerThreshold, BreakerBackoff: cfg.PluginBreakerBackoff})
		if err != nil {
			return nil, err
		}
		s.policy = eng
		cfg.Policy = eng
	}
	s.proxy = proxy.New(proxy.Config{Table: s.sync.Table, Sessions: s.registry, Policy: cfg.Policy,
		ShareDomain: cfg.ShareDomain, PublicDomain: cfg.PublicDomain, TrustedProxies: trusted,
		OnAccess: s.onAccess, Logger: cfg.Logger.With("component", "proxy"), UpstreamTimeout: cfg.UpstreamTimeout,
		MaxBodyBytes: cfg.MaxBodyBytes})
	s.metrics = newMetrics(s)
	return s, nil
}

// onAccess counts a share request and queues its access log.
func (s *Server) onAccess(a config.AccessLog) {
	s.metrics.observe(&a)
	s.reporter.access(a)
}

func (s *Server) onSwap(t *routes.Table) {
	if s.metrics != nil {
		s.metrics.pruneShares(t)
	}
	if s.registry != nil {
		s.registry.Refresh(t)
	}
	s.tcp.reconcile(t)
	if n := s.conns.cutInactive(t); n > 0 {
		s.log.Info("ended the TCP connections of tunnels paused or gone", "connections", n)
	}
	if s.proxy != nil {
		s.proxy.ForgetShares(t)
		if n := s.proxy.CutInactive(t); n > 0 {
			s.log.Info("ended the open streams of shares no longer in force", "streams", n)
		}
	}
}

// beforeSwap readies what a new table needs before requests see it: the
// plugins its shares attach start loading, and a request naming one still
// loading waits for it (policy.Engine.Sync).
func (s *Server) beforeSwap(t *routes.Table) {
	if s.policy != nil {
		s.policy.Sync(t)
	}
}

// Start loads the saved snapshot, binds the listeners and starts serving.
func (s *Server) Start(ctx context.Context) error {
	s.start = time.Now()
	if ok, err := s.sync.LoadSaved(); err != nil {
		s.log.Warn("saved snapshot unusable", "err", err)
	} else if !ok {
		s.log.Info("no saved snapshot; waiting for the control plane")
	}
	var err error
	if s.httpLn, err = listen(s.cfg.HTTPAddr, nil); err != nil {
		return fmt.Errorf("edge: share listener: %w", err)
	}
	s.bodyLn = &bodyListener{Listener: s.httpLn, stall: s.cfg.BodyTimeout, stalled: s.bodyStalled, write: s.cfg.VisitorWriteTimeout}
	s.httpLn = s.bodyLn
	if s.cfg.ProxyProtocol {
		s.httpLn = &proxyproto.Listener{Listener: s.httpLn, ReadHeaderTimeout: 10 * time.Second, ConnPolicy: s.proxyPolicy}
	}
	if s.cfg.HTTPTLS != nil {
		s.httpLn = tls.NewListener(s.httpLn, s.cfg.HTTPTLS)
	}
	if s.tunLn, err = listen(s.cfg.TunnelAddr, s.cfg.TunnelTLS); err != nil {
		s.httpLn.Close()
		return fmt.Errorf("edge: tunnel listener: %w", err)
	}
	if s.cfg.AdminAddr != "-" {
		if s.adminLn, err = listen(s.cfg.AdminAddr, nil); err != nil {
			s.httpLn.Close()
			s.tunLn.Close()
			return fmt.Errorf("edge: admin listener: %w", err)
		}
	}
	ctx, s.cancel = context.WithCancel(ctx)
	// ReadTimeout bounds the request head only: once the head is in,
	// HeaderReceived (readBody) has bodyConn time the body by its progress
	// (BodyTimeout). A keep-alive connection waits IdleTimeout for a
	// request's first byte, then ReadTimeout again.
	s.httpSrv = &fasthttp.Server{
		Handler:                      s.shareHandler(),
		Name:                         "private-connect-edge",
		StreamRequestBody:            true,
		MaxRequestBodySize:           4 << 20, // larger bodies stream
		ReadBufferSize:               16 << 10,
		WriteBufferSize:              16 << 10,
		ReadTimeout:                  s.cfg.HeaderTimeout,
		HeaderReceived:               readBody,
		IdleTimeout:                  s.cfg.IdleTimeout,
		NoDefaultServerHeader:        true,
		CloseOnShutdown:              true,
		DisablePreParseMultipartForm: true,
		ReduceMemoryUsage:            false,
		ErrorHandler:                 s.requestError,
		ExpectHandler:                s.expect,
		Logger:                       fasthttpLogger{s.log},
	}
	s.goServe(func() error { return s.httpSrv.Serve(s.httpLn) })
	s.goServe(func() error { return s.registry.Serve(s.tunLn) })
	if s.adminLn != nil {
		s.adminSrv = &fasthttp.Server{Handler: s.adminHandler, Name: "private-connect-edge", NoDefaultServerHeader: true,
			ReadTimeout: s.cfg.HeaderTimeout, IdleTimeout: s.cfg.IdleTimeout}
		s.goServe(func() error { return s.adminSrv.Serve(s.adminLn) })
	}
	s.wg.Add(2)
	go func() { defer s.wg.Done(); s.sync.Run(ctx) }()
	go func() { defer s.wg.Done(); s.reporter.run(ctx) }()
	s.log.Info("edge started", "http", s.HTTPAddr(), "tunnel", s.TunnelAddr(), "admin", s.AdminAddr(), "control", s.cfg.ControlURL)
	if u, err := url.Parse(s.cfg.ControlURL); err == nil && u.Scheme == "http" && !tunnel.IsLoopbackAddr(hostPort(u)) {
		s.log.Warn("the control plane is reached over plain HTTP off loopback: the edge token and the configuration (agent token hashes, share settings) cross the network in clear; serve the control API over TLS (pcd control --tls-cert/--tls-key) and give the edge an https:// control URL",
			"control", s.cfg.ControlURL)
	}
	return nil
}

// shareHandler is the share listener's handler: the share handler, behind
// the body limit when there is one.
func (s *Server) shareHandler() fasthttp.RequestHandler {
	if s.cfg.MaxBodyBytes <= 0 {
		return s.proxy.Handler
	}
	return func(ctx *fasthttp.RequestCtx) {
		if s.bodyTooLarge(ctx) {
			return
		}
		s.proxy.Handler(ctx)
	}
}

// expect decides a request asking `Expect: 100-continue` from its head: a
// body over the limit, or a request the share checks refuse, gets its
// answer instead of 100 Continue (proxy.Expect).
func (s *Server) expect(ctx *fasthttp.RequestCtx) int {
	if s.bodyTooLarge(ctx) {
		return fasthttp.StatusRequestEntityTooLarge
	}
	return s.proxy.Expect(ctx)
}

// bodyTooLarge answers 413 to a request whose Content-Length is over
// MaxBodyBytes, before the share is looked up: nothing of it is forwarded
// (a chunked body is limited as it streams, by the share handler).
func (s *Server) bodyTooLarge(ctx *fasthttp.RequestCtx) bool {
	if s.cfg.MaxBodyBytes <= 0 || int64(ctx.Request.Header.ContentLength()) <= s.cfg.MaxBodyBytes {
		return false
	}
	proxy.WriteError(ctx, fasthttp.StatusRequestEntityTooLarge, proxy.BodyTooLarge)
	return true
}

// noDeadline is as far as a deadline goes (292 years).
const noDeadline = time.Duration(math.MaxInt64)

// readBody replaces the share listener's read deadline, the HeaderTimeout
// that fasthttp sets as ReadTimeout, once a request's head is in: fasthttp
// would otherwise keep it for the body, which it reads (its first 8 KiB
// before the handler runs, the rest as the handler streams it) under the
// same deadline, and cut every upload that takes longer than the head may.
// A RequestConfig can only set a deadline fixed from now: this one never
// comes, and is the mark (past bodyMark) on which bodyConn, under fasthttp,
// times the body by its progress instead (BodyTimeout without a byte).
func readBody(*fasthttp.RequestHeader) fasthttp.RequestConfig {
	return fasthttp.RequestConfig{ReadTimeout: noDeadline}
}

// bodyStalled counts and logs a request body that went BodyTimeout
// without a byte (bodyConn): its connection is closing.
func (s *Server) bodyStalled(peer net.Addr) {
	s.bodyStalls.Add(1)
	s.log.Debug("request body stalled: no byte within the body timeout", "peer", peer.String(), "timeout", s.cfg.BodyTimeout)
}

func (s *Server) goServe(f func() error) {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		if err := f(); err != nil && !errors.Is(err, net.ErrClosed) {
			// Accept errors are retried (tunnel.AcceptBackoff): a listener
			// that stops otherwise leaves its port unserved.
			s.log.Warn("listener stopped", "err", err)
		}
	}()
}

// proxyPolicy parses PROXY headers only from trusted load balancers.
func (s *Server) proxyPolicy(o proxyproto.ConnPolicyOptions) (proxyproto.Policy, error) {
	if ta, ok := o.Upstream.(*net.TCPAddr); ok {
		if a, ok := netip.AddrFromSlice(ta.IP); ok {
			a = a.Unmap()
			for _, p := range s.trusted {
				if p.Contains(a) {
					return proxyproto.USE, nil
				}
			}
		}
	}
	return proxyproto.IGNORE, nil
}

func listen(addr string, tc *tls.Config) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	if tc != nil {
		return tls.NewListener(ln, tc), nil
	}
	return ln, nil
}

// hostPort is u's host with its port (the scheme's default when it has none).
func hostPort(u *url.URL) string {
	if u.Port() != "" {
		return u.Host
	}
	port := "80"
	if u.Scheme == "https" {
		port = "443"
	}
	return net.JoinHostPort(u.Hostname(), port)
}

// Run starts the edge and serves until ctx ends, then drains. It also
// drains, and returns ErrReplaced, when another process took this edge, and
// returns the error of Failed when the control plane cannot give it a
// configuration while it has none to serve.
func (s *Server) Run(ctx context.Context) error {
	if err := s.Start(ctx); err != nil {
		return err
	}
	select {
	case <-ctx.Done():
		return s.Shutdown()
	case <-s.replaced:
		if err := s.Shutdown(); err != nil {
			s.log.Warn("drain after replacement", "err", err)
		}
		return s.ReplacedError()
	case <-s.failed:
		_ = s.Shutdown()
		return s.failErr
	}
}

// Replaced is closed when another process took this edge (see Run).
func (s *Server) Replaced() <-chan struct{} { return s.replaced }

// Failed is closed when the control plane cannot give this edge a
// configuration and it has none to serve: its token refused, the edge
// deleted, the control URL not a control plane or its certificate not
// trusted (configsync.Config.OnFatal). FailedError says which. Retrying
// cannot cure these: Run stops.
func (s *Server) Failed() <-chan struct{} { return s.failed }

// FailedError is the reason Failed was closed (nil before).
func (s *Server) FailedError() error {
	select {
	case <-s.failed:
		return s.failErr
	default:
		return nil
	}
}

// ReplacedError is ErrReplaced, naming the edge and where the other
// process connected from.
func (s *Server) ReplacedError() error {
	return fmt.Errorf("edge %s: %w (the other process connected from %s)", s.ID(), ErrReplaced, s.sync.ReplacedBy())
}

// Shutdown stops accepting, lets in-flight requests and open TCP
// connections finish (up to DrainTimeout), then closes the tunnels. From its
// start /health answers 503 "draining", and it logs what is in flight.
func (s *Server) Shutdown() error {
	start := time.Now()
	s.draining.Store(true)
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.DrainTimeout)
	defer cancel()
	s.log.Info("draining: refusing new requests and connections; those in flight may finish",
		"activeRequests", s.proxy.Active(), "tcpConnections", s.conns.count(),
		"agents", len(s.registry.Connected()), "timeout", s.cfg.DrainTimeout)
	var err error
	if s.tcp != nil {
		s.tcp.close() // no new TCP connections; the open ones drain below
	}
	s.registry.Drain() // nor new reaches
	if s.httpSrv != nil {
		err = s.httpSrv.ShutdownWithContext(ctx)
		// Shutdown closes the listeners Serve registered: one whose Serve
		// had not started yet (a stop right after Start) is closed here.
		s.httpLn.Close()
	}
	if s.tunLn != nil {
		s.tunLn.Close()
	}
	// Open TCP connections (tunnel ports, reach) get the rest of the drain
	// to finish, as requests do; those left are reset with the tunnels.
	for s.conns.count() > 0 && ctx.Err() == nil {
		select {
		case <-ctx.Done():
		case <-time.After(50 * time.Millisecond):
		}
	}
	timedOut := ctx.Err() != nil
	leftRequests, leftConns := s.proxy.Active(), s.conns.count()
	if s.bodyLn != nil {
		// fasthttp leaves the connections it could not drain serving
		// (their next requests too): they end here.
		s.bodyLn.conns.CloseAll()
	}
	// /health answered "draining" until here.
	if s.adminSrv != nil {
		_ = s.adminSrv.Shutdown()
		s.adminLn.Close()
	}
	s.registry.Close()
	if s.cancel != nil {
		s.cancel()
	}
	s.wg.Wait() // the reporter's goroutine too: no report goes after the last
	// The last report says the edge stops: it is offline on the control
	// plane at once (not after its 30 s window for lost streams). A backlog
	// goes out before it.
	s.reporter.last()
	if s.policy != nil {
		_ = s.policy.Close(context.Background())
	}
	if s.sync.EdgeID() != "" {
		_ = s.sync.Save()
	}
	if timedOut && (leftRequests > 0 || leftConns > 0) {
		s.log.Warn("stopped: the drain timed out and cut what was still in flight",
			"activeRequests", leftRequests, "tcpConnections", leftConns, "drain", time.Since(start))
	} else {
		s.log.Info("stopped", "drain", time.Since(start))
	}
	return err
}

// Close stops the edge at once (in-flight requests fail).
func (s *Server) Close() error {
	s.cfg.DrainTimeout = time.Millisecond
	if err := s.Shutdown(); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	return nil
}

// HTTPAddr is the share listener's address.
func (s *Server) HTTPAddr() string { return addrOf(s.httpLn) }

// TunnelAddr is the tunnel listener's address.
func (s *Server) TunnelAddr() string { return addrOf(s.tunLn) }

// AdminAddr is the admin listener's address ("" when disabled).
func (s *Server) AdminAddr() string { return addrOf(s.adminLn) }

// ID is the edge id ("" until the control plane or the saved snapshot told it).
func (s *Server) ID() string { return s.sync.EdgeID() }

// Table returns the routing table in force.
func (s *Server) Table() *routes.Table { return s.sync.Table() }

// PluginHost is the edge's Wasm host (what it has loaded, for stats and
// tests), or nil when the edge runs no Wasm policy engine.
func (s *Server) PluginHost() *plugins.Host {
	if s.policy == nil {
		return nil
	}
	return s.policy.Host()
}

// TCPPorts lists the open TCP tunnel ports.
func (s *Server) TCPPorts() []int {
	if s.tcp == nil {
		return nil
	}
	return s.tcp.Ports()
}

// ConnectedAgents lists agents with a live tunnel.
func (s *Server) ConnectedAgents() []string { return s.registry.Connected() }

// ConfigConnected reports whether the config stream is up.
func (s *Server) ConfigConnected() bool { return s.sync.Connected() }

func addrOf(ln net.Listener) string {
	if ln == nil {
		return ""
	}
	return ln.Addr().String()
}

// requestError answers a request the share listener could not read, in the
// error envelope of the edge's other answers (fasthttp's own are plain
// text): a request fasthttp refuses to parse (ambiguous framing, a second
// Host) is a 400, a head past the read buffer a 431, a body over the limit
// a 413, a head not in within HeaderTimeout or a body's first bytes (read
// before the handler runs) stalled past BodyTimeout a 408. The cause is
// logged, not shown. Plain HTTP on a TLS listener gets net/http's 400 in
// clear (tlsplain).
func (s *Server) requestError(ctx *fasthttp.RequestCtx, err error) {
	if tlsplain.Answer(err) {
		// Plain HTTP to a TLS share listener: 400 in clear, as net/http.
		s.log.Debug("plain HTTP request on the TLS share listener", "client", ctx.RemoteIP().String())
		return
	}
	status, msg := fasthttp.StatusBadRequest, "Malformed request"
	var small *fasthttp.ErrSmallBuffer
	switch {
	case errors.As(err, &small):
		status, msg = fasthttp.StatusRequestHeaderFieldsTooLarge, "The request headers are too large"
	case errors.Is(err, fasthttp.ErrBodyTooLarge):
		status, msg = fasthttp.StatusRequestEntityTooLarge, proxy.BodyTooLarge
	case tunnel.IsTimeout(err):
		status, msg = fasthttp.StatusRequestTimeout, proxy.RequestTimeout
	}
	s.log.Debug("unreadable request", "status", status, "client", ctx.RemoteIP().String(), "err", err)
	ctx.Response.Reset()
	proxy.WriteError(ctx, status, msg)
}

type fasthttpLogger struct{ l *slog.Logger }

func (f fasthttpLogger) Printf(format string, args ...any) {
	f.l.Debug(fmt.Sprintf(format, args...))
}
