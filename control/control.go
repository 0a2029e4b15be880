// Package control is the control plane: the /v1 REST API on Badger storage
// and the config push to edge nodes. It wires its subpackages: store (domain
// and storage), api (HTTP handlers), push (config versions, edge streams and
// reports), webhooks (the durable webhook outbox and its delivery worker).
//
//	srv, err := control.New(control.Config{Listen: "127.0.0.1:3001", DataDir: "./data"})
//	key, created := srv.BootstrapAdminKey()
//	err = srv.Run(ctx) // until ctx is done, then drains
package control

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/valyala/fasthttp"

	"github.com/privateconnect/pc/control/api"
	"github.com/privateconnect/pc/control/push"
	"github.com/privateconnect/pc/control/store"
	"github.com/privateconnect/pc/control/store/badgerstore"
	"github.com/privateconnect/pc/control/webhooks"
	"github.com/privateconnect/pc/internal/config"
	"github.com/privateconnect/pc/internal/tlsplain"
	"github.com/privateconnect/pc/internal/tunnel"
)

// RateLimits are the API's per-minute request limits (see api.RateLimits).
type RateLimits = api.RateLimits

// WorkspaceLimits are the limits of a workspace (zero fields: no limit).
type WorkspaceLimits = api.WorkspaceLimits

// WebhookOptions configure webhook delivery (see webhooks.Options).
type WebhookOptions = webhooks.Options

// WebhookKeyFile is the file in DataDir holding the key that seals webhook
// secrets (see package webhooks).
const WebhookKeyFile = "webhook.key"

// Hooks let other subsystems (webhooks, share logs and stats, live
// delivery) observe the control plane; see api.Hooks.
type Hooks = api.Hooks

// Config configures a control plane. Zero fields take the defaults of
// [Config.withDefaults].
type Config struct {
	// Listen is the API address (default 127.0.0.1:3001; port 0 picks one).
	Listen string
	// TLS, when set, serves the API over TLS (its Certificates). Without it
	// the API is plain HTTP: API keys and edge tokens cross the network in
	// clear, and Run logs a warning when Listen is not a loopback address.
	TLS *tls.Config
	// DataDir holds the Badger database (<data>/control.db) and the
	// bootstrap admin key (<data>/admin.key). Default ./data, unless Store
	// is set (then empty means: write no admin.key file).
	DataDir string
	// Logger receives structured logs (nil: discard).
	Logger *slog.Logger
	// Version is the software version reported by /health.
	Version string
	// PublicShareBaseURL overrides the edge publicUrl as the base of share
	// links (shareUrl = <base>/shared/<token>).
	PublicShareBaseURL string
	// ShareDomain, when set, is pushed to edges: <token>.<domain> reaches a share.
	ShareDomain string
	// PublicDomain is the domain of public services (<subdomain>.<domain>).
	PublicDomain string
	// TCPPortMin and TCPPortMax bound tunnel port allocation (default 23000-23999).
	TCPPortMin, TCPPortMax int
	// RateLimits of the API (zero fields: 100/min public, 1000/min per key,
	// 5000/min per share).
	RateLimits RateLimits
	// WorkspaceLimits are the default limits of workspaces created with
	// POST /v1/workspaces (zero fields: no limit). Workspace default has none.
	WorkspaceLimits WorkspaceLimits
	// Store replaces the Badger store (tests pass a memstore). The caller
	// keeps ownership: Close does not close it.
	Store store.KV
	// ShutdownTimeout bounds draining in Run (default 10 s).
	ShutdownTimeout time.Duration
	// Hooks are optional callbacks (events, access logs, agent inbox).
	Hooks Hooks
	// Webhooks configures webhook delivery: AllowInsecure (accept http://
	// URLs), AllowPrivate (let webhooks reach loopback, private and
	// link-local addresses), Retries (default 1m, 5m, 25m, 2h, 10h), Timeout (10 s),
	// concurrency, the share.accessed window (1 min). Without SecretKey the
	// key sealing webhook secrets is <DataDir>/webhook.key (created 0600).
	Webhooks WebhookOptions
	// WebhookKeyFile holds the key that seals webhook secrets when
	// Webhooks.SecretKey is nil (default <DataDir>/webhook.key; created when
	// missing).
	WebhookKeyFile string
	// AccessLogRetention is how long share access logs are kept (default
	// 7 days; Badger TTL).
	AccessLogRetention time.Duration
	// PluginCacheDir holds the compilation cache of the control plane's Wasm
	// host (plugin validation and dry-runs). Default <DataDir>/plugins; none
	// without a DataDir.
	PluginCacheDir string
}

func (c Config) withDefaults() Config {
	if c.Listen == "" {
		c.Listen = "127.0.0.1:3001"
	}
	if c.DataDir == "" && c.Store == nil {
		c.DataDir = "./data"
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Version == "" {
		c.Version = "dev"
	}
	if c.TCPPortMin == 0 && c.TCPPortMax == 0 {
		c.TCPPortMin, c.TCPPortMax = 23000, 23999
	}
	if c.PluginCacheDir == "" && c.DataDir != "" {
		c.PluginCacheDir = filepath.Join(c.DataDir, "plugins")
	}
	if c.ShutdownTimeout <= 0 {
		c.ShutdownTimeout = 10 * time.Second
	}
	return c
}

func (c Config) validate() error {
	if c.WorkspaceLimits.MaxServices < 0 || c.WorkspaceLimits.MaxShares < 0 {
		return fmt.Errorf("workspace limits %d services, %d shares: want >= 0 (0: no limit)", c.WorkspaceLimits.MaxServices, c.WorkspaceLimits.MaxShares)
	}
	if c.TCPPortMin < 1 || c.TCPPortMax > 65535 || c.TCPPortMin > c.TCPPortMax {
		return fmt.Errorf("tcp port range %d-%d: want 1 <= min <= max <= 65535", c.TCPPortMin, c.TCPPortMax)
	}
	if c.PublicShareBaseURL != "" {
		u, err := url.Parse(c.PublicShareBaseURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("public share base URL %q: want an http(s) URL", c.PublicShareBaseURL)
		}
	}
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		return fmt.Errorf("listen address %q: %w", c.Listen, err)
	}
	return nil
}

// Server is a running control plane.
type Server struct {
	cfg       Config
	log       *slog.Logger
	kv        store.KV
	ownsKV    bool
	hub       *push.Hub
	api       *api.API
	ln        net.Listener
	srv       *fasthttp.Server
	defaultWS string

	adminKey     string
	adminCreated bool

	closeOnce sync.Once
	closeErr  error
	fatal     chan error // the owned store failed for good (Run shuts down)

	drainer // lets requests in flight finish on shutdown (drain.go)
}

// AdminKeyFile is the bootstrap admin key's file name inside DataDir.
const AdminKeyFile = "admin.key"

// New listens on cfg.Listen, opens the store and bootstraps workspace
// "default" (and, on first start, its admin key). It listens first: a start
// that cannot bind its address creates nothing, so the admin key is created
// by a start that goes on to show it.
func New(cfg Config) (*Server, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("control: config: %w", err)
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("control: listen: %w", err)
	}
	s := &Server{cfg: cfg, log: cfg.Logger, kv: cfg.Store, fatal: make(chan error, 1)}
	if cfg.TLS != nil {
		ln = tls.NewListener(ln, cfg.TLS)
	}
	s.ln = &onceCloseListener{Listener: ln}
	ok := false
	defer func() {
		if !ok {
			s.Close()
		}
	}()
	if s.kv == nil {
		if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
			return nil, fmt.Errorf("control: data dir: %w", err)
		}
		kv, err := badgerstore.Open(badgerstore.Options{Dir: filepath.Join(cfg.DataDir, "control.db"), Logger: cfg.Logger,
			OnFatal: func(err error) {
				select {
				case s.fatal <- err:
				default:
				}
			}})
		if err != nil {
			return nil, fmt.Errorf("control: %w", err)
		}
		s.kv, s.ownsKV = kv, true
	}
	s.kv = store.WithCommitHooks(s.kv) // the webhook outbox wakes its worker on commit
	ctx := context.Background()
	if err := s.bootstrap(ctx); err != nil {
		return nil, fmt.Errorf("control: bootstrap: %w", err)
	}
	hub, err := push.New(ctx, s.kv, push.Options{Logger: cfg.Logger, Settings: config.Settings{
		ShareRateLimitPerMin: cfg.RateLimits.SharePerMinOrDefault(), ShareDomain: cfg.ShareDomain, PublicDomain: cfg.PublicDomain}})
	if err != nil {
		return nil, fmt.Errorf("control: %w", err)
	}
	s.hub = hub
	wo := cfg.Webhooks
	if wo.SecretKey == nil && (cfg.DataDir != "" || cfg.WebhookKeyFile != "") {
		file := cfg.WebhookKeyFile
		if file == "" {
			if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
				return nil, fmt.Errorf("control: data dir: %w", err)
			}
			file = filepath.Join(cfg.DataDir, WebhookKeyFile)
		}
		if wo.SecretKey, err = webhooks.KeyFile(file); err != nil {
			return nil, fmt.Errorf("control: %w", err)
		}
	}
	s.api, err = api.New(api.Options{
		KV: s.kv, Hub: hub, Logger: cfg.Logger, Version: cfg.Version, DefaultWorkspaceID: s.defaultWS,
		PublicShareBaseURL: cfg.PublicShareBaseURL, PublicDomain: cfg.PublicDomain,
		TCPPortMin: cfg.TCPPortMin, TCPPortMax: cfg.TCPPortMax, RateLimits: cfg.RateLimits, Hooks: cfg.Hooks,
		WorkspaceLimits: cfg.WorkspaceLimits,
		Monitoring:      api.MonitoringOptions{Webhooks: wo, AccessLogRetention: cfg.AccessLogRetention},
		PluginCacheDir:  cfg.PluginCacheDir,
	})
	if err != nil {
		return nil, fmt.Errorf("control: %w", err)
	}
	s.srv = &fasthttp.Server{
		Handler:                       s.track(s.api.Handler),
		ErrorHandler:                  tlsplain.ErrorHandler(s.api.ErrorHandler),
		HeaderReceived:                s.api.HeaderReceived,
		MaxRequestBodySize:            api.ServerMaxBodySize,
		ReadTimeout:                   30 * time.Second,
		IdleTimeout:                   120 * time.Second,
		NoDefaultServerHeader:         true,
		DisableHeaderNamesNormalizing: false,
		CloseOnShutdown:               true,
		Logger:                        fasthttpLogger{cfg.Logger},
	}
	ok = true
	return s, nil
}

// Addr is the address the API listens on (the real port when Listen had port 0).
func (s *Server) Addr() string { return s.ln.Addr().String() }

// URL is the API's base URL: https://<Addr> with Config.TLS, else http://.
func (s *Server) URL() string {
	if s.cfg.TLS != nil {
		return "https://" + s.Addr()
	}
	return "http://" + s.Addr()
}

// Run serves until ctx is done, then ends the edge streams, drains open
// requests (up to ShutdownTimeout) and closes the server. A store that
// fails for good (Badger lost its memtable: an unwritable data directory, no
// file descriptor left) shuts it down the same way, with that error, so
// that a supervisor restarts it: the database reopens once the cause is
// fixed, and the edges serve from their snapshots meanwhile.
func (s *Server) Run(ctx context.Context) error {
	errc := make(chan error, 1)
	s.hub.Presence.Serving()
	go func() { errc <- s.srv.Serve(s.ln) }()
	s.log.Info("control plane listening", "addr", s.Addr(), "tls", s.cfg.TLS != nil)
	if inClear(s.cfg, s.Addr()) {
		s.log.Warn("the control API listens in plain HTTP off loopback: API keys and edge tokens cross the network in clear; give it a certificate (--tls-cert/--tls-key) or keep it behind a proxy that terminates TLS",
			"addr", s.Addr())
	}
	var err error
	var stop bool
	select {
	case err = <-errc:
		if err != nil {
			err = fmt.Errorf("control: serve: %w", err)
		}
	case err = <-s.fatal:
		s.log.Error("the store failed and cannot recover in this process: shutting down (restart once the cause is fixed)", "err", err)
		err = fmt.Errorf("control: %w", err)
		stop = true
	case <-ctx.Done():
		stop = true
	}
	start := time.Now()
	if stop {
		// /health answers 503 "draining" from here (on connections
		// already open: the listener closes now).
		s.api.SetDraining()
		s.log.Info("draining: refusing new connections; requests in flight may finish",
			"activeRequests", s.inflight.Load(), "edgeStreams", s.hub.Subscribers(), "timeout", s.cfg.ShutdownTimeout)
		s.api.StopStreams()
		sctx, cancel := context.WithTimeout(context.Background(), s.cfg.ShutdownTimeout)
		s.drain(sctx, s.ln)
		if sctx.Err() != nil {
			s.log.Warn("the drain timed out: cutting the requests still in flight", "activeRequests", s.inflight.Load())
		}
		if e := s.srv.ShutdownWithContext(sctx); e != nil && !errors.Is(e, context.DeadlineExceeded) {
			s.log.Warn("shutdown", "err", e)
		}
		cancel()
		<-errc
	}
	if e := s.Close(); err == nil {
		err = e
	}
	if stop {
		s.log.Info("stopped", "drain", time.Since(start))
	}
	return err
}

// inClear reports whether the API at addr serves plain HTTP off loopback:
// API keys and edge tokens then cross the network in clear (Run warns).
func inClear(cfg Config, addr string) bool {
	return cfg.TLS == nil && !tunnel.IsLoopbackAddr(addr)
}

// Close releases everything (listener, background writers, owned store).
// It is safe to call more than once and after Run.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		if s.api != nil {
			s.api.Close()
		}
		if s.ln != nil {
			_ = s.ln.Close()
		}
		if s.ownsKV && s.kv != nil {
			s.closeErr = s.kv.Close()
		}
	})
	return s.closeErr
}

// BootstrapAdminKey returns the bootstrap admin key: created is true when
// this start created it (first start with an empty store). On later starts
// the key is read back from <data>/admin.key if that file still holds a
// valid key; otherwise key is "".
func (s *Server) BootstrapAdminKey() (key string, created bool) {
	if s.adminCreated {
		return s.adminKey, true
	}
	b, err := os.ReadFile(filepath.Join(s.cfg.DataDir, AdminKeyFile))
	if err != nil {
		return "", false
	}
	k := strings.TrimSpace(string(b))
	valid := false
	_ = s.kv.View(context.Background(), func(tx store.Tx) error {
		ak, err := store.GetAPIKeyByHash(tx, api.HashSecret(k))
		valid = err == nil && (ak.ExpiresAt == nil || time.Now().Before(*ak.ExpiresAt))
		return nil
	})
	if !valid {
		return "", false
	}
	return k, false
}

// bootstrap ensures workspace "default" exists; on an empty store it also
// creates the admin key and writes it to <data>/admin.key (0600).
func (s *Server) bootstrap(ctx context.Context) error {
	now := time.Now().UTC().Truncate(time.Millisecond)
	var key string
	err := s.kv.Update(ctx, func(tx store.Tx) error {
		w, err := store.GetWorkspaceByName(tx, "default")
		if err == nil {
			s.defaultWS = w.ID
			return nil
		}
		if !errors.Is(err, store.ErrNotFound) {
			return err
		}
		existing, _, err := store.ListWorkspaces(tx, "", 1)
		if err != nil {
			return err
		}
		w = &store.Workspace{ID: uuid.NewString(), Name: "default", CreatedAt: now}
		if err := store.CreateWorkspace(tx, w); err != nil {
			return err
		}
		s.defaultWS = w.ID
		if len(existing) > 0 {
			return nil // not a first start: no new key
		}
		key = "pc_" + push.NewToken(24)
		return store.CreateAPIKey(tx, &store.APIKey{
			ID: uuid.NewString(), WorkspaceID: w.ID, Name: "bootstrap-admin", KeyHash: api.HashSecret(key),
			KeyPrefix: key[:11], Scopes: []string{store.ScopeAdmin}, AllowedIPRanges: []string{}, CreatedAt: now,
		})
	})
	if err != nil {
		return err
	}
	if key == "" {
		return nil
	}
	s.adminKey, s.adminCreated = key, true
	if s.cfg.DataDir != "" {
		if err := os.MkdirAll(s.cfg.DataDir, 0o700); err != nil {
			return fmt.Errorf("data dir: %w", err)
		}
		p := filepath.Join(s.cfg.DataDir, AdminKeyFile)
		if err := os.WriteFile(p, []byte(key+"\n"), 0o600); err != nil {
			return fmt.Errorf("write %s: %w", p, err)
		}
		_ = os.Chmod(p, 0o600)
	}
	s.log.Info("created workspace default and the bootstrap admin key", "file", filepath.Join(s.cfg.DataDir, AdminKeyFile))
	return nil
}

// EnsureEdge registers the edge named name, or updates it (publicURL,
// tunnelAddr) when it exists, and returns its id and a fresh token (only the
// token's hash is stored, so each call rotates it). pcd dev uses it to
// register its own edge.
func (s *Server) EnsureEdge(ctx context.Context, name, publicURL, tunnelAddr string) (id, token string, err error) {
	token = push.NewToken(32)
	now := time.Now().UTC().Truncate(time.Millisecond)
	err = s.kv.Update(ctx, func(tx store.Tx) error {
		e, err := store.GetEdgeByName(tx, name)
		switch {
		case err == nil:
			e.PublicURL, e.TunnelAddr, e.TokenHash = strings.TrimRight(publicURL, "/"), tunnelAddr, api.HashSecret(token)
			id = e.ID
			return store.UpdateEdge(tx, e)
		case errors.Is(err, store.ErrNotFound):
			id = uuid.NewString()
			return store.CreateEdge(tx, &store.Edge{ID: id, Name: name, PublicURL: strings.TrimRight(publicURL, "/"),
				TunnelAddr: tunnelAddr, TokenHash: api.HashSecret(token), CreatedAt: now})
		default:
			return err
		}
	})
	if err != nil {
		return "", "", fmt.Errorf("control: ensure edge %q: %w", name, err)
	}
	s.api.EdgesChanged()
	if err := s.hub.Publish(ctx, push.Edge(id)); err != nil {
		s.log.Warn("publish edge", "err", err)
	}
	return id, token, nil
}

type fasthttpLogger struct{ l *slog.Logger }

func (f fasthttpLogger) Printf(format string, args ...any) {
	f.l.Debug(fmt.Sprintf(format, args...), "component", "fasthttp")
}
