package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/privateconnect/pc/sdk/client"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/valyala/fasthttp"
)

// Env is the world a run loads: the origin, the system under test and the
// agent, each a separate process so its CPU and memory can be reported.
type Env struct {
	opts *Options
	dir  string
	prog *progress

	mu    sync.Mutex
	procs []*Proc

	originProc *Proc
	Origin     OriginAddrs
	relays     map[string][2]*Proc // bare relay chains by the address they front (relay.go)

	// The system (nil processes with --target).
	control, edge, agent *Proc
	ControlURL           string
	EdgeHTTP             string // host:port of share links
	EdgeAdmin            string // host:port of edge /health
	EdgeTunnel           string
	tcpLo, tcpHi         int
	AdminKey             string
	keys                 *keyPool
	AgentID              string
	HTTPService          *client.Service

	svcMu    sync.Mutex
	services map[string]*client.Service // by name, created on demand

	// shareLimit is the per-share request limit per minute the edge applies
	// (from X-RateLimit-Limit; 0 when none).
	shareLimit       int
	shareLimitProbed bool
	// limitsLifted: pcd was started with limits no run reaches.
	limitsLifted bool
}

// pcdHasFlag reports whether `pcd control --help` lists flag.
func pcdHasFlag(pcd, flag string) bool {
	out, err := exec.Command(pcd, "control", "--help").CombinedOutput()
	return err == nil && strings.Contains(string(out), flag+" ")
}

// newEnv creates the work directory; start* methods bring up the parts.
func newEnv(opts *Options, prog *progress) (*Env, error) {
	dir, err := os.MkdirTemp(opts.WorkDir, "pcbench-")
	if err != nil {
		return nil, err
	}
	return &Env{opts: opts, dir: dir, prog: prog, services: map[string]*client.Service{}}, nil
}

// Close stops every process (agents first) and removes the work directory.
func (e *Env) Close() {
	e.mu.Lock()
	procs := append([]*Proc(nil), e.procs...)
	e.mu.Unlock()
	for i := len(procs) - 1; i >= 0; i-- {
		procs[i].Stop(5 * time.Second)
	}
	if !e.opts.KeepWorkDir {
		_ = os.RemoveAll(e.dir)
	}
}

func (e *Env) track(p *Proc) {
	e.mu.Lock()
	e.procs = append(e.procs, p)
	e.mu.Unlock()
}

// procPIDs names the processes to account for in a phase.
func (e *Env) procPIDs(system bool) map[string]int {
	m := map[string]int{"pcbench": os.Getpid()}
	if e.originProc != nil && !e.originProc.Exited() {
		m["origin"] = e.originProc.PID()
	}
	if system {
		for _, p := range []*Proc{e.control, e.edge, e.agent} {
			if p != nil && !p.Exited() {
				m[p.Name] = p.PID()
			}
		}
	}
	return m
}

func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// startOrigin re-executes pcbench as `pcbench origin`.
func (e *Env) startOrigin(ctx context.Context) error {
	p, err := startProc("origin", nil, e.opts.Self, "origin")
	if err != nil {
		return err
	}
	e.track(p)
	e.originProc = p
	err = p.waitFor(ctx, 10*time.Second, "origin", func() bool {
		out := p.Output()
		i := strings.Index(out, originLine)
		if i < 0 {
			return false
		}
		line, _, ok := strings.Cut(out[i+len(originLine):], "\n")
		return ok && json.Unmarshal([]byte(line), &e.Origin) == nil
	})
	return err
}

func (e *Env) binary(name string) (string, error) {
	p := filepath.Join(e.opts.BinDir, name)
	if st, err := os.Stat(p); err != nil || st.IsDir() {
		abs, _ := filepath.Abs(p)
		return "", fmt.Errorf("%s not found at %s: build it with `make build` or pass --bin DIR", name, abs)
	}
	return p, nil
}

// startSystem starts the control plane and an edge (`pcd control` +
// `pcd edge`, or `pcd dev`), then the agent (`connect expose`) serving the
// origin.
func (e *Env) startSystem(ctx context.Context) error {
	pcd, err := e.binary("pcd")
	if err != nil {
		return err
	}
	if _, err := e.binary("connect"); err != nil {
		return err
	}
	// A random port range for TCP tunnels, away from the defaults so
	// concurrent runs and tests on the machine do not collide.
	e.tcpLo = 24000 + rand.IntN(80)*100
	e.tcpHi = e.tcpLo + 63
	ports := fmt.Sprintf("%d-%d", e.tcpLo, e.tcpHi)
	ctrlAddr, _ := freeAddr()
	e.EdgeHTTP, _ = freeAddr()
	e.EdgeTunnel, _ = freeAddr()
	e.EdgeAdmin, _ = freeAddr()
	e.ControlURL = "http://" + ctrlAddr
	logArgs := []string{"--log-format", "json", "--log-level", e.opts.ServerLogLevel}
	dataDir := filepath.Join(e.dir, "data")
	// Lift the per-share and per-key limits when pcd has flags for them
	// (the limiters stay on the path, with a limit no run reaches), unless
	// --product-limits keeps the defaults.
	var limitArgs []string
	if !e.opts.ProductLimits && pcdHasFlag(pcd, "--share-rate-limit") {
		limitArgs = []string{"--share-rate-limit", "1000000000", "--api-rate-limit", "1000000000", "--public-rate-limit", "1000000000"}
		e.limitsLifted = true
	}
	switch e.opts.System {
	case "dev":
		args := append([]string{"dev", "--listen", ctrlAddr, "--http", e.EdgeHTTP, "--tunnel", e.EdgeTunnel,
			"--admin", e.EdgeAdmin, "--tcp-ports", ports, "--data", dataDir}, logArgs...)
		args = append(args, limitArgs...)
		p, err := startProc("pcd-dev", nil, pcd, append(args, e.opts.SystemArgs...)...)
		if err != nil {
			return err
		}
		e.track(p)
		e.control, e.edge = p, p
		if err := e.waitAdminKey(ctx, p, dataDir); err != nil {
			return err
		}
	default: // split
		args := append([]string{"control", "--listen", ctrlAddr, "--tcp-ports", ports, "--data", filepath.Join(dataDir, "control")}, logArgs...)
		args = append(args, limitArgs...)
		p, err := startProc("control", nil, pcd, append(args, e.opts.SystemArgs...)...)
		if err != nil {
			return err
		}
		e.track(p)
		e.control = p
		if err := e.waitAdminKey(ctx, p, filepath.Join(dataDir, "control")); err != nil {
			return err
		}
		ed, err := e.startEdge(ctx, "edge", e.EdgeHTTP, e.EdgeTunnel, e.EdgeAdmin, filepath.Join(dataDir, "edge"))
		if err != nil {
			return err
		}
		e.edge = ed
	}
	if err := e.waitEdgeReady(ctx, e.edge, e.EdgeAdmin); err != nil {
		return err
	}
	return e.startAgent(ctx)
}

// startEdge registers and starts one more `pcd edge` process.
func (e *Env) startEdge(ctx context.Context, name, httpAddr, tunAddr, adminAddr, data string) (*Proc, error) {
	pcd, err := e.binary("pcd")
	if err != nil {
		return nil, err
	}
	var ed *client.Edge
	err = e.keys.call(ctx, func(c *client.Client) (err error) {
		ed, err = c.CreateEdge(ctx, client.CreateEdgeRequest{Name: fmt.Sprintf("pcbench-%s-%d", name, time.Now().UnixNano()%1e6),
			PublicURL: "http://" + httpAddr, TunnelAddr: tunAddr})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("register edge: %w", err)
	}
	args := []string{"edge", "--control", e.ControlURL, "--token", ed.Token, "--http", httpAddr, "--tunnel", tunAddr,
		"--admin", adminAddr, "--tcp-ports", fmt.Sprintf("%d-%d", e.tcpLo, e.tcpHi), "--data", data,
		"--log-format", "json", "--log-level", e.opts.ServerLogLevel}
	p, err := startProc(name, nil, pcd, append(args, e.opts.SystemArgs...)...)
	if err != nil {
		return nil, err
	}
	e.track(p)
	return p, nil
}

func (e *Env) waitAdminKey(ctx context.Context, p *Proc, dataDir string) error {
	keyFile := filepath.Join(dataDir, "admin.key")
	err := p.waitFor(ctx, 30*time.Second, "control plane", func() bool {
		b, err := os.ReadFile(keyFile)
		if err != nil || len(strings.TrimSpace(string(b))) == 0 {
			return false
		}
		e.AdminKey = strings.TrimSpace(string(b))
		return httpOK(e.ControlURL + "/health")
	})
	if err != nil {
		return err
	}
	e.keys, err = newKeyPool(ctx, e.ControlURL, e.AdminKey)
	return err
}

// edgeHealth is the edge's /health data.
type edgeHealth struct {
	Status          string `json:"status"`
	ConfigVersion   int64  `json:"configVersion"`
	ConfigConnected bool   `json:"configConnected"`
	Shares          int    `json:"shares"`
	Agents          int    `json:"agents"`
	ConnectedAgents int    `json:"connectedAgents"`
}

func getEdgeHealth(adminAddr string) (*edgeHealth, error) {
	body, err := adminGet(adminAddr, "/health", 5*time.Second)
	if err != nil {
		return nil, err
	}
	var env struct {
		Data edgeHealth `json:"data"`
	}
	if err := json.Unmarshal(body, &env); err != nil {
		return nil, err
	}
	return &env.Data, nil
}

// adminGet fetches path from an edge's admin address and returns the body.
func adminGet(adminAddr, path string, timeout time.Duration) ([]byte, error) {
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.SetRequestURI("http://" + adminAddr + path)
	if err := healthClient.DoTimeout(req, resp, timeout); err != nil {
		return nil, err
	}
	return append([]byte(nil), resp.Body()...), nil
}

var healthClient = &fasthttp.Client{MaxConnsPerHost: 16}

func (e *Env) waitEdgeReady(ctx context.Context, p *Proc, adminAddr string) error {
	return p.waitFor(ctx, 30*time.Second, "edge", func() bool {
		h, err := getEdgeHealth(adminAddr)
		return err == nil && h.Status == "ok" && h.ConfigConnected
	})
}

// startAgent provisions an agent and runs `connect expose` for the origin's
// HTTP listener.
func (e *Env) startAgent(ctx context.Context) error {
	connect, _ := e.binary("connect")
	k, err := e.keys.take(ctx, 50)
	if err != nil {
		return err
	}
	state := filepath.Join(e.dir, "agent.json")
	env := []string{"PC_API_KEY=" + k.key, "PC_CONTROL_URL=" + e.ControlURL, "PC_STATE=" + state}
	p, err := startProc("agent", env, connect, "expose", e.Origin.HTTP, "--name", "bench-http", "--protocol", "http",
		"--log-format", "json", "--log-level", e.opts.ServerLogLevel)
	if err != nil {
		return err
	}
	e.track(p)
	e.agent = p
	err = p.waitFor(ctx, 30*time.Second, "agent (connect expose)", func() bool {
		b, err := os.ReadFile(state)
		if err != nil {
			return false
		}
		var st struct {
			AgentID string `json:"agentId"`
		}
		if json.Unmarshal(b, &st) != nil || st.AgentID == "" {
			return false
		}
		e.AgentID = st.AgentID
		h, err := getEdgeHealth(e.EdgeAdmin)
		return err == nil && h.ConnectedAgents > 0
	})
	if err != nil {
		return err
	}
	svc, err := e.service(ctx, "bench-http", e.Origin.HTTP, "http")
	if err != nil {
		return err
	}
	e.HTTPService = svc
	return nil
}

// service registers (or finds) a service of the agent for target.
func (e *Env) service(ctx context.Context, name, target, protocol string) (*client.Service, error) {
	e.svcMu.Lock()
	defer e.svcMu.Unlock()
	if s := e.services[name]; s != nil {
		return s, nil
	}
	host, port, _ := net.SplitHostPort(target)
	p, _ := strconv.Atoi(port)
	var svc *client.Service
	err := e.keys.call(ctx, func(c *client.Client) (err error) {
		svc, _, err = c.RegisterService(ctx, client.RegisterServiceRequest{AgentID: e.AgentID, Name: name,
			TargetHost: host, TargetPort: p, Protocol: protocol})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("register service %s: %w", name, err)
	}
	e.services[name] = svc
	return svc, nil
}

// controlVersion is the control plane's config version.
func (e *Env) controlVersion(ctx context.Context) (int64, error) {
	var st *client.Status
	err := e.keys.call(ctx, func(c *client.Client) (err error) {
		st, err = c.Status(ctx)
		return err
	})
	if err != nil {
		return 0, err
	}
	return st.ConfigVersion, nil
}

// waitSynced waits until the edge applied the control plane's version.
func (e *Env) waitSynced(ctx context.Context, adminAddr string, timeout time.Duration) error {
	v, err := e.controlVersion(ctx)
	if err != nil {
		return err
	}
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if h, err := getEdgeHealth(adminAddr); err == nil && h.ConfigVersion >= v {
			return nil
		}
		sleepCtx(ctx, 5*time.Millisecond)
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
	return fmt.Errorf("edge did not reach config version %d within %v", v, timeout)
}

// createShares creates n shares on svc (concurrently) and waits until the
// edge serves them. It returns the share URLs.
func (e *Env) createShares(ctx context.Context, svc *client.Service, n int, req client.CreateShareRequest) ([]*client.Share, error) {
	out := make([]*client.Share, n)
	errs := make(chan error, n)
	sem := make(chan struct{}, 8)
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			r := req
			if r.Name == "" {
				r.Name = "pcbench"
			}
			r.Name = fmt.Sprintf("%s-%d", r.Name, i)
			if r.ExpiresIn == "" && r.ExpiresAt == nil {
				r.ExpiresIn = client.Expires24h
			}
			err := e.keys.call(ctx, func(c *client.Client) (err error) {
				out[i], err = c.CreateShare(ctx, svc.ID, r)
				return err
			})
			if err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return nil, fmt.Errorf("create share: %w", err)
	}
	return out, e.waitSynced(ctx, e.EdgeAdmin, 30*time.Second)
}

// shareURL is the share's base URL on the edge (no trailing slash).
func (e *Env) shareURL(s *client.Share) string {
	return "http://" + e.EdgeHTTP + "/shared/" + s.Token
}

// detectShareLimit finds the edge's per-share request limit from the 429 a
// burst of requests on a throw-away share provokes (early edges dropped the
// X-RateLimit-* headers from forwarded responses, so a 200 is not enough).
// No 429 within the burst means no limit that matters at benchmark rates.
func (e *Env) detectShareLimit(ctx context.Context, url string) error {
	if code, body, err := getStatus(url); err != nil || code != 200 {
		if err == nil {
			err = fmt.Errorf("status %d: %s", code, truncate(body, 100))
		}
		return fmt.Errorf("share probe %s: %w", url, err)
	}
	if h, err := getHeader(url, "X-RateLimit-Limit"); err == nil && h != "" {
		e.shareLimit, _ = strconv.Atoi(h)
		e.shareLimitProbed = true
		return nil
	}
	hc := &fasthttp.HostClient{Addr: e.EdgeHTTP, MaxConns: 16}
	defer hc.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	var found atomic.Int64
	var sent atomic.Int64
	var wg sync.WaitGroup
	for i := 0; i < 16; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
			defer fasthttp.ReleaseRequest(req)
			defer fasthttp.ReleaseResponse(resp)
			req.SetRequestURI(url)
			for ctx.Err() == nil && found.Load() == 0 && sent.Add(1) <= 300000 {
				if err := hc.Do(req, resp); err != nil {
					continue
				}
				if resp.StatusCode() == fasthttp.StatusTooManyRequests {
					n, _ := strconv.Atoi(string(resp.Header.Peek("X-RateLimit-Limit")))
					found.Store(int64(max(n, 1)))
				}
			}
		}()
	}
	wg.Wait()
	e.shareLimit = int(found.Load())
	e.shareLimitProbed = true
	return nil
}

func httpOK(url string) bool {
	resp, err := http.Get(url) //nolint:gosec,noctx // loopback readiness probe
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode < 500
}

// buildInfo describes the binaries (for the report).
func buildInfo(bin string) string {
	out, err := exec.Command(bin, "--version").CombinedOutput()
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(out))
}

var errNoSystem = errors.New("needs the system started by pcbench (not available with --target)")

// goMem is what the edge's Go runtime reports of its memory (/metrics).
type goMem struct {
	HeapAlloc, StackInuse, Goroutines float64
	// NextGC is the heap size that triggers the next collection.
	NextGC float64
}

// getGoMem reads the edge's Go runtime figures from its /metrics.
func getGoMem(adminAddr string) (*goMem, error) {
	body, err := adminGet(adminAddr, "/metrics", 10*time.Second)
	if err != nil {
		return nil, err
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	val := func(name string) float64 {
		f := fams[name]
		if f == nil || len(f.GetMetric()) == 0 {
			return 0
		}
		m := f.GetMetric()[0]
		if g := m.GetGauge(); g != nil {
			return g.GetValue()
		}
		return m.GetUntyped().GetValue()
	}
	return &goMem{HeapAlloc: val("go_memstats_heap_alloc_bytes"), StackInuse: val("go_memstats_stack_inuse_bytes"),
		Goroutines: val("go_goroutines"),
		NextGC:     val("go_memstats_next_gc_bytes")}, nil
}
