package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/privateconnect/pc/control"
	"github.com/privateconnect/pc/edge"
	"github.com/privateconnect/pc/internal/cliconf"
	"github.com/privateconnect/pc/internal/devcert"
	"github.com/spf13/cobra"
)

type controlFlags struct {
	listen, data, publicURL, shareDomain, publicDomain, tcpPorts string
	tlsCert, tlsKey                                              string // pcd control only
	shareRate, keyRate, publicRate                               int
	wsMaxServices, wsMaxShares                                   int
	hooksInsecure, hooksPrivate                                  bool
	hooksRetries, hooksKeyFile                                   string
	hooksTimeout                                                 time.Duration
	logRetention                                                 time.Duration
}

func (f *controlFlags) register(cmd *cobra.Command, withListen bool) {
	fs := cmd.Flags()
	if withListen {
		fs.StringVar(&f.listen, "listen", "127.0.0.1:3001", "control API address")
	}
	fs.StringVar(&f.data, "data", "./data", "data directory (Badger database, admin.key, edge snapshots)")
	fs.StringVar(&f.publicURL, "public-url", "", "base URL of share links (default: the public URL of the oldest edge online)")
	fs.StringVar(&f.shareDomain, "share-domain", "", "domain for host-based share links: <token>.<domain>")
	fs.StringVar(&f.publicDomain, "public-domain", "", "domain of public services: <subdomain>.<domain>")
	fs.StringVar(&f.tcpPorts, "tcp-ports", "23000-23999", "edge TCP tunnel port range")
	fs.IntVar(&f.shareRate, "share-rate-limit", 0, "requests per minute per share link on the edges (0: default 5000, -1: no limit)")
	fs.IntVar(&f.keyRate, "api-rate-limit", 0, "API requests per minute per API key (0: default 1000, -1: no limit)")
	fs.IntVar(&f.publicRate, "public-rate-limit", 0, "public API requests per minute per client IP (0: default 100, -1: no limit)")
	fs.BoolVar(&f.hooksInsecure, "webhooks-allow-insecure", false, "accept http:// webhook URLs (default: https only)")
	fs.BoolVar(&f.hooksPrivate, "webhooks-allow-private", false, "let webhooks reach loopback, private, link-local and other special-use addresses")
	fs.StringVar(&f.hooksRetries, "webhooks-retries", "1m,5m,25m,2h,10h", "delays before each retry of a failed webhook delivery, comma-separated (a delivery fails after one attempt more than the delays)")
	fs.DurationVar(&f.hooksTimeout, "webhooks-timeout", 10*time.Second, "time a webhook receiver has to answer one delivery")
	fs.StringVar(&f.hooksKeyFile, "webhooks-key-file", "", "file of the key that seals webhook secrets, created when missing (default <data>/webhook.key; keep it out of database backups)")
	fs.DurationVar(&f.logRetention, "access-log-retention", 0, "how long share access logs are kept (default 7 days)")
	fs.IntVar(&f.wsMaxServices, "workspace-max-services", 0, "default service limit of workspaces created through the API (0: no limit)")
	fs.IntVar(&f.wsMaxShares, "workspace-max-shares", 0, "default active-share limit of workspaces created through the API (0: no limit)")
}

// registerTLS adds pcd control's certificate flags (pcd dev's --tls-cert
// and --tls-key are its edge's).
func (f *controlFlags) registerTLS(cmd *cobra.Command) {
	fs := cmd.Flags()
	fs.StringVar(&f.tlsCert, "tls-cert", "", "PEM certificate (with its chain) to serve the control API over TLS (edges: --control https://...; without it the API is plain HTTP, for loopback or behind a proxy that terminates TLS)")
	fs.StringVar(&f.tlsKey, "tls-key", "", "PEM private key for --tls-cert")
}

func (f *controlFlags) config(c *common) (control.Config, error) {
	lo, hi, err := parsePorts(f.tcpPorts)
	if err != nil {
		return control.Config{}, err
	}
	tc, err := loadTLS(f.tlsCert, f.tlsKey)
	if err != nil {
		return control.Config{}, err
	}
	retries, err := parseRetries(f.hooksRetries)
	if err != nil {
		return control.Config{}, err
	}
	if f.hooksTimeout <= 0 {
		return control.Config{}, fmt.Errorf("--webhooks-timeout %v: want a positive duration", f.hooksTimeout)
	}
	return control.Config{Listen: f.listen, TLS: tc, DataDir: f.data, Version: version, PublicShareBaseURL: f.publicURL,
		ShareDomain: f.shareDomain, PublicDomain: f.publicDomain, TCPPortMin: lo, TCPPortMax: hi,
		RateLimits: control.RateLimits{SharePerMin: f.shareRate, AuthenticatedPerMin: f.keyRate, PublicPerMin: f.publicRate},
		Webhooks: control.WebhookOptions{AllowInsecure: f.hooksInsecure, AllowPrivate: f.hooksPrivate,
			Retries: retries, Timeout: f.hooksTimeout},
		WebhookKeyFile:     f.hooksKeyFile,
		AccessLogRetention: f.logRetention,
		WorkspaceLimits:    control.WorkspaceLimits{MaxServices: f.wsMaxServices, MaxShares: f.wsMaxShares}}, nil
}

func controlCmd(c *common) *cobra.Command {
	var f controlFlags
	cmd := &cobra.Command{
		Use:     "control",
		Short:   "Run the control plane (the /v1 REST API and the config push to edges)",
		Example: "  pcd control --listen 127.0.0.1:3001 --data ./data",
		Args:    cobra.NoArgs,
		RunE: c.runE(func(cmd *cobra.Command, log *slog.Logger) error {
			cfg, err := f.config(c)
			if err != nil {
				return err
			}
			cfg.Logger = log
			srv, err := control.New(cfg)
			if err != nil {
				return err
			}
			if key, created := srv.BootstrapAdminKey(); created {
				fmt.Fprintf(c.stdout, "Admin API key (saved to %s, shown once):\n  %s\n", filepath.Join(f.data, control.AdminKeyFile), key)
			}
			fmt.Fprintf(c.stdout, "Control API: %s\n", srv.URL())
			if f.tlsCert != "" {
				if pin, err := devcert.PinOfFile(f.tlsCert); err == nil {
					log.Info("TLS certificate", "file", f.tlsCert, "pinSha256", pin)
				}
			}
			return srv.Run(cmd.Context())
		}),
	}
	f.register(cmd, true)
	f.registerTLS(cmd)
	cliconf.Document(cmd.Flags())
	return cmd
}

type edgeFlags struct {
	control, controlCA, token, http, tunnel, tcpPorts string
	admin, data                                       string
	tlsCert, tlsKey, shareDomain, publicDomain        string
	trusted                                           []string
	proxyProtocol, insecureTunnel                     bool
	devTLS                                            bool
	upstreamTimeout, headerTimeout, bodyTimeout       time.Duration
	writeTimeout                                      time.Duration
	maxBodyBytes                                      int64
	accessLogRate                                     int
	breakerThreshold                                  int
	breakerBackoff                                    time.Duration
}

func (f *edgeFlags) register(cmd *cobra.Command, dev bool) {
	fs := cmd.Flags()
	if !dev {
		fs.StringVar(&f.control, "control", "http://127.0.0.1:3001", "control plane URL, http:// or https://")
		fs.StringVar(&f.controlCA, "control-ca", "", "PEM bundle of the CA that signed an https:// control plane's certificate (default: the system roots)")
		fs.StringVar(&f.token, "token", "", "edge token (from POST /v1/edges or connect edges add)")
		fs.StringVar(&f.data, "data", "./data", "data directory (the last good config snapshot)")
		fs.StringVar(&f.tcpPorts, "tcp-ports", "23000-23999", "TCP tunnel port range")
		fs.StringVar(&f.shareDomain, "share-domain", "", "domain for host-based share links: <token>.<domain>")
		fs.StringVar(&f.publicDomain, "public-domain", "", "domain of public services: <subdomain>.<domain>")
	}
	fs.StringVar(&f.http, "http", "127.0.0.1:8080", "share listener address")
	fs.StringVar(&f.tunnel, "tunnel", "127.0.0.1:7070", "agent tunnel listener address")
	fs.StringVar(&f.admin, "admin", "127.0.0.1:9090", "edge /health and /metrics address (\"-\" disables)")
	if dev {
		fs.BoolVar(&f.devTLS, "tls", false, "serve TLS on the share and tunnel listeners with a self-signed certificate kept in <data>/tls (agents: --ca-file <data>/tls/cert.pem)")
	}
	fs.StringVar(&f.tlsCert, "tls-cert", "", "PEM certificate for TLS on the share and tunnel listeners")
	fs.StringVar(&f.tlsKey, "tls-key", "", "PEM private key for --tls-cert")
	fs.DurationVar(&f.upstreamTimeout, "upstream-timeout", 100*time.Second, "how long a service may take to start answering a share request before the visitor gets 504")
	fs.DurationVar(&f.headerTimeout, "header-timeout", 30*time.Second, "how long a visitor may take to send a request's line and headers before the connection is closed")
	fs.DurationVar(&f.writeTimeout, "visitor-write-timeout", 60*time.Second, "how long a write to a visitor (share links, WebSockets, TCP tunnel ports) may go without a byte leaving before the connection is ended; a visitor that stops reading holds its share of the agent's tunnel buffer (0: the default)")
	fs.DurationVar(&f.bodyTimeout, "body-timeout", 30*time.Second, "how long a request body may go without a byte arriving before the request ends (408) and the connection is closed; an upload that keeps making progress has no time limit (0: the default)")
	fs.Int64Var(&f.maxBodyBytes, "max-body-bytes", 0, "largest request body forwarded to a service, in bytes (0: no limit); a larger one gets 413")
	fs.IntVar(&f.accessLogRate, "access-log-rate", 1000, "access logs a second the edge sends to the control plane; above it they are a uniform sample, while share statistics and metrics count every request (0: none)")
	fs.IntVar(&f.breakerThreshold, "plugin-breaker-threshold", 20, "failures of a plugin within a minute that trip its circuit breaker: its shares answer 503 (a failOpen plugin is skipped instead) until a trial call succeeds")
	fs.DurationVar(&f.breakerBackoff, "plugin-breaker-backoff", 30*time.Second, "how long a tripped plugin's shares answer 503 before a trial call (doubles after each failed trial, up to 10m)")
	fs.BoolVar(&f.insecureTunnel, "insecure-tunnel", false, "allow a plain-TCP tunnel listener off loopback (only behind a load balancer that terminates TLS)")
	fs.StringSliceVar(&f.trusted, "trusted-proxies", nil, "CIDRs of load balancers allowed to set X-Forwarded-For (or send PROXY headers)")
	fs.BoolVar(&f.proxyProtocol, "proxy-protocol", false, "accept PROXY protocol v1/v2 on the share listener from --trusted-proxies")
}

func (f *edgeFlags) config() (edge.Config, error) {
	tc, err := loadTLS(f.tlsCert, f.tlsKey)
	if err != nil {
		return edge.Config{}, err
	}
	lo, hi, err := parsePorts(f.tcpPorts)
	if err != nil {
		return edge.Config{}, err
	}
	ctc, err := loadCA(f.controlCA)
	if err != nil {
		return edge.Config{}, fmt.Errorf("--control-ca: %w", err)
	}
	if f.accessLogRate < 0 {
		return edge.Config{}, fmt.Errorf("--access-log-rate: %d: must be 0 (no access logs) or more", f.accessLogRate)
	}
	logRate := f.accessLogRate
	if logRate == 0 {
		logRate = -1 // edge.Config: negative sends none
	}
	if f.breakerThreshold < 1 {
		return edge.Config{}, fmt.Errorf("--plugin-breaker-threshold: %d: must be at least 1", f.breakerThreshold)
	}
	if f.breakerBackoff <= 0 || f.breakerBackoff > 10*time.Minute {
		return edge.Config{}, fmt.Errorf("--plugin-breaker-backoff: %v: must be above 0 and at most 10m", f.breakerBackoff)
	}
	return edge.Config{TCPPortMin: lo, TCPPortMax: hi, ControlURL: f.control, ControlTLS: ctc, Token: f.token, HTTPAddr: f.http, TunnelAddr: f.tunnel, AdminAddr: f.admin,
		DataDir: f.data, HTTPTLS: tc, TunnelTLS: tc, ShareDomain: f.shareDomain, PublicDomain: f.publicDomain,
		TrustedProxies: f.trusted, ProxyProtocol: f.proxyProtocol, InsecureTunnel: f.insecureTunnel,
		UpstreamTimeout: f.upstreamTimeout, HeaderTimeout: f.headerTimeout, BodyTimeout: f.bodyTimeout, VisitorWriteTimeout: f.writeTimeout, MaxBodyBytes: f.maxBodyBytes,
		AccessLogRate: logRate, PluginBreakerThreshold: f.breakerThreshold, PluginBreakerBackoff: f.breakerBackoff}, nil
}

func edgeCmd(c *common) *cobra.Command {
	var f edgeFlags
	cmd := &cobra.Command{
		Use:     "edge",
		Short:   "Run an edge node (share links and agent tunnels)",
		Example: "  PC_TOKEN=$EDGE_TOKEN pcd edge --control http://127.0.0.1:3001 --http 127.0.0.1:8080 --tunnel 127.0.0.1:7070",
		Args:    cobra.NoArgs,
		RunE: c.runE(func(cmd *cobra.Command, log *slog.Logger) error {
			cfg, err := f.config()
			if err != nil {
				return err
			}
			cfg.Logger = log
			if f.tlsCert != "" {
				// What agents pin with --pin-sha256 (a self-signed or private-CA certificate).
				if pin, err := devcert.PinOfFile(f.tlsCert); err == nil {
					log.Info("TLS certificate", "file", f.tlsCert, "pinSha256", pin)
				}
			}
			e, err := edge.New(cfg)
			if err != nil {
				return err
			}
			return e.Run(cmd.Context())
		}),
	}
	f.register(cmd, false)
	cliconf.Document(cmd.Flags())
	return cmd
}

func devCmd(c *common) *cobra.Command {
	var cf controlFlags
	var ef edgeFlags
	cmd := &cobra.Command{
		Use:   "dev",
		Short: "Run the control plane and one edge in one process (laptop or demo)",
		Long: "pcd dev runs the control plane and one edge node in one process. They talk through their\n" +
			"real protocols on loopback: the edge registers itself, holds the config stream and reports.",
		Example: "  pcd dev --data ./data",
		Args:    cobra.NoArgs,
		RunE: c.runE(func(cmd *cobra.Command, log *slog.Logger) error {
			return runDev(cmd.Context(), c, &cf, &ef, log)
		}),
	}
	cf.register(cmd, true)
	ef.register(cmd, true)
	cliconf.Document(cmd.Flags())
	return cmd
}

func runDev(ctx context.Context, c *common, cf *controlFlags, ef *edgeFlags, log interface {
	Info(string, ...any)
},
) (err error) {
	ccfg, err := cf.config(c)
	if err != nil {
		return err
	}
	logger, _ := c.logger()
	ccfg.Logger = logger.With("component", "control")

	// Every listener is bound before the control plane bootstraps its
	// workspace: a start that cannot bind an address creates no admin key
	// it would then never show (control.New binds its own first). The
	// edge's are bound again by the edge; their real addresses (port 0)
	// are registered with the control plane.
	var held []net.Listener
	release := func() {
		for _, ln := range held {
			ln.Close()
		}
		held = nil
	}
	defer release()
	bind := func(what, addr string) (string, error) {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return "", fmt.Errorf("%s: %w", what, err)
		}
		held = append(held, ln)
		return ln.Addr().String(), nil
	}
	httpAddr, err := bind("share listener", ef.http)
	if err != nil {
		return err
	}
	tunAddr, err := bind("tunnel listener", ef.tunnel)
	if err != nil {
		return err
	}
	adminAddr := ef.admin
	if adminAddr != "-" {
		if adminAddr, err = bind("admin listener", ef.admin); err != nil {
			return err
		}
	}
	ctrl, err := control.New(ccfg)
	if err != nil {
		return err
	}
	// The key is shown once, at the start that created it (product.md:
	// "never logged again"); later starts name its file.
	key, created := ctrl.BootstrapAdminKey()
	keyFile := filepath.Join(cf.data, control.AdminKeyFile)
	keyShown := false
	defer func() {
		// A start that created the admin key and failed after shows it
		// all the same: the next start would not.
		if err != nil && created && !keyShown {
			fmt.Fprintf(c.stdout, "Admin API key (saved to %s, shown once):\n  %s\n", keyFile, key)
		}
	}()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ctrlDone := make(chan error, 1)
	go func() { ctrlDone <- ctrl.Run(ctx) }()
	// stopControl ends the control plane on the way out of a failed start.
	stopControl := func(err error) error {
		cancel()
		<-ctrlDone
		return err
	}

	var devPin string
	if ef.devTLS && ef.tlsCert == "" {
		host, _, _ := net.SplitHostPort(httpAddr)
		files, err := devcert.Ensure(filepath.Join(cf.data, "tls"), []string{host, "localhost"})
		if err != nil {
			return stopControl(err)
		}
		ef.tlsCert, ef.tlsKey, devPin = files.CertFile, files.KeyFile, files.Pin
	}
	scheme, tunScheme := "http", ""
	if ef.tlsCert != "" {
		scheme, tunScheme = "https", "tls://"
	}
	publicURL := scheme + "://" + httpAddr
	edgeID, token, err := ctrl.EnsureEdge(ctx, "dev", publicURL, tunScheme+tunAddr)
	if err != nil {
		return stopControl(err)
	}
	ef.tcpPorts = cf.tcpPorts
	ecfg, err := ef.config()
	if err != nil {
		return stopControl(err)
	}
	ecfg.TCPPortMin, ecfg.TCPPortMax = ccfg.TCPPortMin, ccfg.TCPPortMax
	ecfg.ControlURL = ctrl.URL()
	ecfg.Token = token
	ecfg.HTTPAddr, ecfg.TunnelAddr, ecfg.AdminAddr = httpAddr, tunAddr, adminAddr
	ecfg.DataDir = cf.data
	ecfg.Logger = logger.With("component", "edge")
	e, err := edge.New(ecfg)
	if err != nil {
		return stopControl(err)
	}
	release()
	if err := e.Start(ctx); err != nil {
		return stopControl(err)
	}
	keyLine := key + "   (saved to " + keyFile + ", shown once)"
	if !created {
		keyLine = "in " + keyFile
	}
	edgeAdmin := "disabled (--admin -)"
	if e.AdminAddr() != "" {
		edgeAdmin = "http://" + e.AdminAddr() + "/health"
	}
	fmt.Fprintf(c.stdout, `Private Connect dev node is up.

  Control API   %s   (docs: %[1]s/docs)
  Share links   %s/shared/<token>
  Agent tunnel  %s
  Edge admin    %s
  Edge id       %s
  Admin API key %s

Try:
  export PC_API_KEY=$(cat %s) PC_CONTROL_URL=%[1]s
  python3 -m http.server 9000 &
  %[8]s expose 127.0.0.1:9000 --name web &
  curl "$(%[8]s link web)/"

`, ctrl.URL(), publicURL, tunScheme+tunAddr, edgeAdmin, edgeID, keyLine, shellQuote(keyFile), connectCommand())
	keyShown = true
	if devPin != "" {
		fmt.Fprintf(c.stdout, "TLS: self-signed certificate %s\n  agents: %s expose ... --ca-file %s   (or --pin-sha256 %s)\n  curl:   curl --cacert %s ...\n\n",
			ef.tlsCert, connectCommand(), ef.tlsCert, devPin, ef.tlsCert)
	}
	log.Info("dev node running", "control", ctrl.Addr(), "http", httpAddr, "tunnel", tunScheme+tunAddr)
	ctrlStopped := false
	select {
	case <-ctx.Done():
	case <-e.Replaced():
		// Another process took the dev edge's token: stop as a whole.
		_ = e.Shutdown()
		return stopControl(e.ReplacedError())
	case <-e.Failed():
		_ = e.Shutdown()
		return stopControl(e.FailedError())
	case err = <-ctrlDone:
		ctrlStopped = true
		if err != nil {
			_ = e.Shutdown()
			return err
		}
	}
	shutdownStart := time.Now()
	_ = e.Shutdown()
	cancel()
	if !ctrlStopped {
		err = <-ctrlDone
	}
	log.Info("stopped", "drainSeconds", time.Since(shutdownStart).Seconds())
	return err
}

// connectCommand is how to run the connect CLI from here, for the dev node's
// hints: the connect beside this pcd (bin/connect after make build) when it
// is under the working directory, else connect from the PATH.
func connectCommand() string {
	exe, err := os.Executable()
	if err != nil {
		return "connect"
	}
	beside := filepath.Join(filepath.Dir(exe), "connect")
	wd, err := os.Getwd()
	if err != nil {
		return "connect"
	}
	rel, err := filepath.Rel(wd, beside)
	if _, serr := os.Stat(beside); serr != nil || err != nil || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
		return "connect"
	}
	if !strings.ContainsRune(rel, filepath.Separator) {
		rel = "." + string(filepath.Separator) + rel
	}
	return rel
}

// shellQuote quotes s for a POSIX shell when it needs it.
func shellQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./:=@") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
