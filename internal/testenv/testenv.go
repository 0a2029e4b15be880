// Package testenv is the in-process harness of whole-system tests and
// benchmarks: it boots a real control plane (Badger on disk), real edges,
// real agents and origin services on 127.0.0.1 with kernel-chosen ports,
// wired through their real network protocols.
package testenv

import (
	"context"
	"crypto/tls"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/privateconnect/pc/control"
	"github.com/privateconnect/pc/edge"
	"github.com/privateconnect/pc/internal/devcert"
	"github.com/privateconnect/pc/sdk/agent"
	"github.com/privateconnect/pc/sdk/client"
)

// T is the part of testing.TB the harness needs, so benchmarks and the
// pcbench tool can use it too.
type T interface {
	Helper()
	Cleanup(func())
	Fatalf(format string, args ...any)
	TempDir() string
}

// Options configure an Env.
type Options struct {
	// DataDir for the control plane (default: a temp dir).
	DataDir string
	// Logger for every component (default: discard, or text to stderr when
	// PC_TEST_LOG=1).
	Logger *slog.Logger
	// Control tweaks the control plane's config before it starts.
	Control func(*control.Config)
	// Edge tweaks each edge's config before it starts.
	Edge func(*edge.Config)
	// TLS makes every edge serve TLS on its share and tunnel listeners with
	// a self-signed certificate (Env.CAFile); agents verify it.
	TLS bool
}

// Env is one running system.
type Env struct {
	t        T
	opts     Options
	Control  *control.Server
	ctrlStop context.CancelFunc
	ctrlDone chan error
	AdminKey string
	Client   *client.Client
	log      *slog.Logger

	mu    sync.Mutex
	Edges []*Edge

	// TCPPortMin..TCPPortMax is the tunnel port range of this env (free
	// ports found at start).
	TCPPortMin, TCPPortMax int

	// CAFile and Pin verify the edges' certificate (Options.TLS).
	CAFile, Pin string
	tlsConf     *tls.Config
}

// Edge is a running edge with its registration.
type Edge struct {
	*edge.Server
	ID, Token, Name, DataDir string
}

// New boots a control plane and one edge.
func New(t T, opts Options) *Env {
	t.Helper()
	if opts.DataDir == "" {
		opts.DataDir = t.TempDir()
	}
	log := opts.Logger
	if log == nil {
		if os.Getenv("PC_TEST_LOG") == "1" {
			log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
		} else {
			log = slog.New(slog.DiscardHandler)
		}
	}
	e := &Env{t: t, opts: opts, log: log}
	e.TCPPortMin, e.TCPPortMax = freeRange(t, 16)
	if opts.TLS {
		files, err := devcert.Ensure(filepath.Join(t.TempDir(), "tls"), []string{"127.0.0.1", "localhost"})
		if err != nil {
			t.Fatalf("testenv: tls: %v", err)
		}
		cert, err := tls.LoadX509KeyPair(files.CertFile, files.KeyFile)
		if err != nil {
			t.Fatalf("testenv: tls: %v", err)
		}
		e.CAFile, e.Pin = files.CertFile, files.Pin
		e.tlsConf = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	e.StartControl()
	e.AddEdge("edge-1")
	return e
}

// StartControl starts (or restarts) the control plane on its data dir.
// A restart keeps the same address when it is free.
func (e *Env) StartControl() {
	e.t.Helper()
	listen := "127.0.0.1:0"
	if e.Control != nil {
		listen = e.Control.Addr()
	}
	cfg := control.Config{Listen: listen, DataDir: e.opts.DataDir, Logger: e.log.With("component", "control"),
		TCPPortMin: e.TCPPortMin, TCPPortMax: e.TCPPortMax}
	if e.opts.Control != nil {
		e.opts.Control(&cfg)
	}
	var srv *control.Server
	var err error
	for i := 0; i < 50; i++ { // the old listener may linger an instant
		if srv, err = control.New(cfg); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		e.t.Fatalf("testenv: start control: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	e.Control, e.ctrlStop, e.ctrlDone = srv, cancel, done
	if key, created := srv.BootstrapAdminKey(); created {
		e.AdminKey = key
	} else if e.AdminKey == "" {
		b, err := os.ReadFile(filepath.Join(e.opts.DataDir, control.AdminKeyFile))
		if err != nil {
			e.t.Fatalf("testenv: admin key: %v", err)
		}
		e.AdminKey = strings.TrimSpace(string(b))
	}
	e.Client = client.New(e.ControlURL(), e.AdminKey)
	e.t.Cleanup(e.StopControl)
	waitHTTP(e.t, e.ControlURL()+"/health")
}

// StopControl stops the control plane (idempotent).
func (e *Env) StopControl() {
	if e.ctrlStop == nil {
		return
	}
	e.ctrlStop()
	<-e.ctrlDone
	_ = e.Control.Close()
	e.ctrlStop = nil
}

// ControlURL is the control plane's base URL.
func (e *Env) ControlURL() string { return e.Control.URL() }

// ClientTLS is a visitor's TLS configuration trusting the edges'
// certificate (Options.TLS).
func (e *Env) ClientTLS() *tls.Config {
	e.t.Helper()
	tc, err := devcert.ClientTLS(e.CAFile)
	if err != nil {
		e.t.Fatalf("testenv: %v", err)
	}
	return tc
}

// AddEdge registers and starts a new edge. Its ports are picked free and
// then bound; if another process takes one in between, it tries new ones.
func (e *Env) AddEdge(name string) *Edge {
	e.t.Helper()
	var lastErr error
	for attempt := 0; attempt < 5; attempt++ {
		httpLn, tunLn := freeAddr(e.t), freeAddr(e.t)
		scheme, tunScheme := "http://", ""
		if e.tlsConf != nil {
			scheme, tunScheme = "https://", "tls://"
		}
		id, token, err := e.Control.EnsureEdge(context.Background(), name, scheme+httpLn, tunScheme+tunLn)
		if err != nil {
			e.t.Fatalf("testenv: register edge: %v", err)
		}
		ed := &Edge{ID: id, Token: token, Name: name, DataDir: filepath.Join(e.t.TempDir(), name)}
		srv, err := e.startEdge(ed, httpLn, tunLn, 1)
		if err != nil {
			lastErr = err
			continue
		}
		ed.Server = srv
		e.mu.Lock()
		e.Edges = append(e.Edges, ed)
		e.mu.Unlock()
		return ed
	}
	e.t.Fatalf("testenv: start edge: %v", lastErr)
	return nil
}

func (e *Env) startEdge(ed *Edge, httpAddr, tunAddr string, tries int) (*edge.Server, error) {
	e.t.Helper()
	cfg := edge.Config{ControlURL: e.ControlURL(), Token: ed.Token, HTTPAddr: httpAddr, TunnelAddr: tunAddr,
		AdminAddr: "127.0.0.1:0", DataDir: ed.DataDir, ReportInterval: 100 * time.Millisecond,
		DrainTimeout: 2 * time.Second, Logger: e.log.With("component", "edge", "edge", ed.Name),
		TCPPortMin: e.TCPPortMin, TCPPortMax: e.TCPPortMax,
		// Compiled plugins are shared by every test edge on the machine.
		PluginCacheDir: filepath.Join(os.TempDir(), "pc-test-plugin-cache"),
		HTTPTLS:        e.tlsConf, TunnelTLS: e.tlsConf}
	if e.opts.Edge != nil {
		e.opts.Edge(&cfg)
	}
	var s *edge.Server
	var err error
	for i := 0; i < tries; i++ {
		if s, err = edge.New(cfg); err == nil {
			if err = s.Start(context.Background()); err == nil {
				break
			}
			_ = s.Close()
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		return nil, err
	}
	e.t.Cleanup(func() { _ = s.Close() })
	return s, nil
}

// RestartEdge stops an edge and starts it again on the same addresses and
// data dir.
func (e *Env) RestartEdge(ed *Edge) {
	e.t.Helper()
	httpAddr, tunAddr := ed.HTTPAddr(), ed.TunnelAddr()
	_ = ed.Close()
	srv, err := e.startEdge(ed, httpAddr, tunAddr, 50)
	if err != nil {
		e.t.Fatalf("testenv: restart edge: %v", err)
	}
	ed.Server = srv
}

// WaitEdgeVersion waits until every edge applied at least the control
// plane's current config version.
func (e *Env) WaitSynced(timeout time.Duration) {
	e.t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		st, err := e.Client.Status(context.Background())
		if err == nil {
			ok := true
			e.mu.Lock()
			for _, ed := range e.Edges {
				if ed.Table().Version < st.ConfigVersion {
					ok = false
				}
			}
			e.mu.Unlock()
			if ok {
				return
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	e.t.Fatalf("testenv: edges did not sync within %v", timeout)
}

// Agent is a running agent.
type Agent struct {
	*agent.Agent
	ID, Token string
	cancel    context.CancelFunc
	done      chan struct{}
	err       error // Run's result, once done is closed
}

// Done is closed when the agent's Run returns.
func (a *Agent) Done() <-chan struct{} { return a.done }

// Err is what Run returned (call after Done).
func (a *Agent) Err() error { <-a.done; return a.err }

// Stop stops the agent and waits for it.
func (a *Agent) Stop() {
	a.cancel()
	<-a.done
}

// ProvisionAgent creates an agent identity through the API.
func (e *Env) ProvisionAgent(name string) (id, token string, edges []string) {
	e.t.Helper()
	p, err := e.Client.ProvisionAgent(context.Background(), client.ProvisionRequest{Name: name})
	if err != nil {
		e.t.Fatalf("testenv: provision: %v", err)
	}
	if _, err := e.Client.RegisterAgent(context.Background(), client.RegisterAgentRequest{AgentID: p.AgentID, Token: p.Token, Name: name}); err != nil {
		e.t.Fatalf("testenv: register agent: %v", err)
	}
	for _, ed := range p.Edges {
		edges = append(edges, ed.TunnelAddr)
	}
	return p.AgentID, p.Token, edges
}

// RunAgent starts an agent with an identity.
func (e *Env) RunAgent(id, token string, edges []string) *Agent {
	e.t.Helper()
	return e.RunAgentWith(id, token, edges, nil)
}

// RunAgentWith starts an agent, letting the caller adjust its config.
func (e *Env) RunAgentWith(id, token string, edges []string, tweak func(*agent.Config)) *Agent {
	e.t.Helper()
	cfg := agent.Config{AgentID: id, Token: token, Edges: edges, MinBackoff: 50 * time.Millisecond,
		MaxBackoff: 500 * time.Millisecond, Logger: e.log.With("component", "agent"), CAFile: e.CAFile}
	if tweak != nil {
		tweak(&cfg)
	}
	a, err := agent.New(cfg)
	if err != nil {
		e.t.Fatalf("testenv: agent: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ag := &Agent{Agent: a, ID: id, Token: token, cancel: cancel, done: make(chan struct{})}
	go func() { ag.err = a.Run(ctx); close(ag.done) }()
	e.t.Cleanup(ag.Stop)
	return ag
}

// ExposeAgent provisions and runs a new agent and exposes target through
// it as an http service: the set-up most whole-system tests start with.
func (e *Env) ExposeAgent(agentName, service, target string) (*Agent, *client.Service) {
	e.t.Helper()
	id, token, edges := e.ProvisionAgent(agentName)
	ag := e.RunAgent(id, token, edges)
	return ag, e.Expose(ag, service, target)
}

// Expose registers a service for an agent and waits until every edge has
// the agent connected.
func (e *Env) Expose(ag *Agent, name, target string) *client.Service {
	e.t.Helper()
	host, port, err := net.SplitHostPort(strings.TrimPrefix(target, "http://"))
	if err != nil {
		e.t.Fatalf("testenv: target %q: %v", target, err)
	}
	p, _ := strconv.Atoi(port)
	return e.ExposeProtocol(ag, name, host, p, "http")
}

// ExposeProtocol registers a service with an explicit protocol.
func (e *Env) ExposeProtocol(ag *Agent, name, host string, p int, protocol string) *client.Service {
	e.t.Helper()
	svc, _, err := e.Client.RegisterService(context.Background(), client.RegisterServiceRequest{AgentID: ag.ID, Name: name, TargetHost: host, TargetPort: p, Protocol: protocol})
	if err != nil {
		e.t.Fatalf("testenv: register service: %v", err)
	}
	e.WaitAgentOnEdges(ag.ID, 5*time.Second)
	e.WaitSynced(5 * time.Second)
	return svc
}

// WaitAgentOnEdges waits until every edge holds a session of the agent.
func (e *Env) WaitAgentOnEdges(agentID string, timeout time.Duration) {
	e.t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		ok := true
		e.mu.Lock()
		for _, ed := range e.Edges {
			found := false
			for _, id := range ed.ConnectedAgents() {
				found = found || id == agentID
			}
			ok = ok && found
		}
		e.mu.Unlock()
		if ok {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	e.t.Fatalf("testenv: agent %s not connected to every edge within %v", agentID, timeout)
}

// Share creates a share and returns it with its URL on the first edge.
func (e *Env) Share(serviceID string, req client.CreateShareRequest) *client.Share {
	e.t.Helper()
	if req.Name == "" {
		req.Name = "test"
	}
	sh, err := e.Client.CreateShare(context.Background(), serviceID, req)
	if err != nil {
		e.t.Fatalf("testenv: create share: %v", err)
	}
	e.WaitSynced(5 * time.Second)
	return sh
}

// ShareURL is the share's base URL on one edge.
func ShareURL(ed *Edge, token string) string {
	return "http://" + ed.HTTPAddr() + "/shared/" + token
}

// freeRange finds n consecutive free ports on 127.0.0.1.
func freeRange(t T, n int) (int, int) {
	t.Helper()
	for try := 0; try < 200; try++ {
		base := 30000 + rand.IntN(25000)
		ok := true
		for p := base; p < base+n && ok; p++ {
			ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
			if err != nil {
				ok = false
				break
			}
			ln.Close()
		}
		if ok {
			return base, base + n - 1
		}
	}
	t.Fatalf("testenv: no free port range")
	return 0, 0
}

func freeAddr(t T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func waitHTTP(t T, url string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("testenv: %s did not answer", url)
}
