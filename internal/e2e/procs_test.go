package e2e

// A deployment of real processes for the fault, graceful-operation and soak
// tests: `pcd control`, one `pcd edge` per edge and `connect expose` per
// agent, each its own OS process built by binaries(t), talking over
// 127.0.0.1 with kernel-chosen ports. Processes can be killed with SIGKILL
// or stopped with SIGTERM and started again on the same addresses and data
// directories.

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/privateconnect/pc/sdk/client"
)

type cluster struct {
	t       *testing.T
	bin     string
	dir     string
	api     string // control listen address
	ctlData string
	ports   string // edge TCP port range "lo-hi"
	key     string
	cl      *client.Client
	ctl     *proc
	edges   []*edgeProc
}

type edgeProc struct {
	name, id, token           string
	http, tunnel, admin, data string
	p                         *proc
}

type agentProc struct {
	name, target, protocol, state string
	id                            string
	p                             *proc
}

type clusterOptions struct {
	// ControlData is the control plane's data directory (default: a temp dir).
	ControlData string
}

// newCluster starts `pcd control` and returns the cluster.
func newCluster(t *testing.T, opts clusterOptions) *cluster {
	t.Helper()
	c := &cluster{t: t, bin: binaries(t), dir: t.TempDir(), api: freePort(t), ctlData: opts.ControlData}
	if c.ctlData == "" {
		c.ctlData = filepath.Join(c.dir, "control")
	}
	lo, hi := freePortRange(t, 8)
	c.ports = fmt.Sprintf("%d-%d", lo, hi)
	c.startControl()
	return c
}

func (c *cluster) controlURL() string { return "http://" + c.api }

// startControl starts `pcd control` on the cluster's address and data
// directory and waits for /health.
func (c *cluster) startControl() {
	c.t.Helper()
	c.ctl = start(c.t, nil, c.bin+"/pcd", "control", "--listen", c.api, "--data", c.ctlData,
		"--tcp-ports", c.ports, "--log-format", "json")
	p := c.ctl
	waitFor(c.t, 20*time.Second, "control /health", func() bool {
		require.False(c.t, exited(p), "pcd control exited:\n%s", p.output())
		code, _ := httpGet(c.controlURL() + "/health")
		return code == 200
	})
	if c.key == "" {
		b, err := os.ReadFile(filepath.Join(c.ctlData, "admin.key"))
		require.NoError(c.t, err)
		c.key = strings.TrimSpace(string(b))
		c.cl = client.New(c.controlURL(), c.key)
	}
}

// cliEnv is the environment of `connect` commands.
func (c *cluster) cliEnv(extra ...string) []string {
	return append([]string{"PC_API_KEY=" + c.key, "PC_CONTROL_URL=" + c.controlURL()}, extra...)
}

// connectCLI runs a `connect` command to completion and returns its stdout.
func (c *cluster) connectCLI(args ...string) string {
	c.t.Helper()
	return c.connectCLIEnv(nil, args...)
}

// connectCLIEnv is connectCLI with extra environment (PC_STATE=...).
func (c *cluster) connectCLIEnv(env []string, args ...string) string {
	c.t.Helper()
	cmd := exec.Command(c.bin+"/connect", args...)
	cmd.Env = append(os.Environ(), c.cliEnv(env...)...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	require.NoError(c.t, err, "connect %v: %s", args, stderr.String())
	return string(out)
}

// addEdge registers an edge with `connect edges add` and starts `pcd edge`.
func (c *cluster) addEdge(name string) *edgeProc {
	c.t.Helper()
	e := &edgeProc{name: name, http: freePort(c.t), tunnel: freePort(c.t), admin: freePort(c.t),
		data: filepath.Join(c.dir, name)}
	var reg client.Edge
	out := c.connectCLI("edges", "add", name, "--public-url", "http://"+e.http, "--tunnel-addr", e.tunnel, "--json")
	require.NoError(c.t, json.Unmarshal([]byte(out), &reg), out)
	require.NotEmpty(c.t, reg.Token)
	e.id, e.token = reg.ID, reg.Token
	c.startEdge(e)
	c.edges = append(c.edges, e)
	return e
}

// startEdge starts `pcd edge` for e and waits until it serves a config.
func (c *cluster) startEdge(e *edgeProc) {
	c.t.Helper()
	e.p = start(c.t, nil, c.bin+"/pcd", "edge", "--control", c.controlURL(), "--token", e.token,
		"--http", e.http, "--tunnel", e.tunnel, "--admin", e.admin, "--data", e.data,
		"--tcp-ports", c.ports, "--log-format", "json")
	waitFor(c.t, 20*time.Second, e.name+" /health", func() bool {
		require.False(c.t, exited(e.p), "pcd edge exited:\n%s", e.p.output())
		code, _ := httpGet("http://" + e.admin + "/health")
		return code == 200
	})
}

// edgeHealth returns the data of an edge's /health.
func (e *edgeProc) health() (map[string]any, error) {
	code, body := httpGet("http://" + e.admin + "/health")
	if code != 200 {
		return nil, fmt.Errorf("health %d: %s", code, body)
	}
	var env struct {
		Data map[string]any `json:"data"`
	}
	if err := json.Unmarshal([]byte(body), &env); err != nil {
		return nil, err
	}
	return env.Data, nil
}

func (e *edgeProc) connectedAgents() int {
	h, err := e.health()
	if err != nil {
		return -1
	}
	n, _ := h["connectedAgents"].(float64)
	return int(n)
}

func (e *edgeProc) shareURL(token string) string { return "http://" + e.http + "/shared/" + token }

// expose runs `connect expose` for a target and waits until every edge
// holds wantAgents agent sessions.
func (c *cluster) expose(name, target, protocol string, wantAgents int) *agentProc {
	c.t.Helper()
	a := &agentProc{name: name, target: target, protocol: protocol, state: filepath.Join(c.dir, "agent-"+name+".json")}
	c.startAgent(a, wantAgents)
	b, err := os.ReadFile(a.state)
	require.NoError(c.t, err)
	var st struct {
		AgentID string `json:"agentId"`
	}
	require.NoError(c.t, json.Unmarshal(b, &st))
	a.id = st.AgentID
	return a
}

func (c *cluster) startAgent(a *agentProc, wantAgents int) {
	c.t.Helper()
	a.p = start(c.t, c.cliEnv("PC_STATE="+a.state), c.bin+"/connect", "expose", a.target,
		"--name", a.name, "--protocol", a.protocol)
	c.waitAgents(wantAgents, 20*time.Second)
}

// waitAgents waits until every edge holds at least n agent sessions.
func (c *cluster) waitAgents(n int, within time.Duration) {
	c.t.Helper()
	waitFor(c.t, within, fmt.Sprintf("%d agent(s) on every edge", n), func() bool {
		for _, e := range c.edges {
			if e.connectedAgents() < n {
				return false
			}
		}
		return true
	})
}

// waitAgentsBelow waits until every edge holds fewer than n agent sessions.
func (c *cluster) waitAgentsBelow(n int, within time.Duration) {
	c.t.Helper()
	waitFor(c.t, within, fmt.Sprintf("fewer than %d agent(s) on every edge", n), func() bool {
		for _, e := range c.edges {
			if e.connectedAgents() >= n {
				return false
			}
		}
		return true
	})
}

// serviceID finds a service by name.
func (c *cluster) serviceID(name string) string {
	c.t.Helper()
	svcs, _, err := c.cl.ListServices(context.Background(), client.ListOptions{Limit: 500}, client.ServiceFilter{})
	require.NoError(c.t, err)
	for _, s := range svcs {
		if s.Name == name {
			return s.ID
		}
	}
	c.t.Fatalf("no service %q", name)
	return ""
}

// share creates a share of a service and waits until every edge serves it
// (any answer but 404).
func (c *cluster) share(serviceName string, req client.CreateShareRequest) *client.Share {
	c.t.Helper()
	if req.Name == "" {
		req.Name = "fault"
	}
	sh, err := c.cl.CreateShare(context.Background(), c.serviceID(serviceName), req)
	require.NoError(c.t, err)
	for _, e := range c.edges {
		u := e.shareURL(sh.Token) + "/"
		waitFor(c.t, 10*time.Second, "share on "+e.name, func() bool {
			code, _ := httpGet(u)
			return code == 200
		})
	}
	return sh
}

// exited reports whether a started process has ended (a zombie not reaped
// yet counts).
func exited(p *proc) bool {
	if p.cmd.ProcessState != nil {
		return true
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.cmd.Process.Pid))
	if err != nil {
		return os.IsNotExist(err)
	}
	if i := strings.LastIndexByte(string(b), ')'); i > 0 && i+2 < len(b) {
		return b[i+2] == 'Z' || b[i+2] == 'X'
	}
	return false
}

// kill9 sends SIGKILL and waits for the process to be gone.
func kill9(t *testing.T, p *proc) {
	t.Helper()
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGKILL))
	_, _ = waitExit(p, 10*time.Second)
}

// terminate sends SIGTERM and waits for the exit; it returns the exit error.
func terminate(t *testing.T, p *proc, within time.Duration) error {
	t.Helper()
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGTERM))
	err, ok := waitExit(p, within)
	require.True(t, ok, "the process did not exit within %v after SIGTERM", within)
	return err
}

// waitExit waits for a process; ok is false on timeout (it is then killed).
func waitExit(p *proc, within time.Duration) (error, bool) {
	done := make(chan error, 1)
	go func() { done <- p.cmd.Wait() }()
	select {
	case err := <-done:
		return err, true
	case <-time.After(within):
		_ = p.cmd.Process.Kill()
		return <-done, false
	}
}

func waitFor(t *testing.T, within time.Duration, what string, f func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		if f() {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", within, what)
		}
		time.Sleep(25 * time.Millisecond)
	}
}

var quickClient = &http.Client{Timeout: 5 * time.Second}

// httpGet returns the status and body of a GET (0 and the error on failure).
func httpGet(url string) (int, string) {
	resp, err := quickClient.Get(url)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// handedOut holds the ports freePortRange gave out in this test binary, so
// that two tests (or two calls in one) never get the same one.
var handedOut struct {
	sync.Mutex
	ports map[int]bool
}

// freePortRange finds n consecutive free ports on 127.0.0.1, below the
// kernel's ephemeral range (whose ports outgoing connections take).
func freePortRange(t *testing.T, n int) (int, int) {
	t.Helper()
	handedOut.Lock()
	defer handedOut.Unlock()
	if handedOut.ports == nil {
		handedOut.ports = map[int]bool{}
	}
	for try := 0; try < 500; try++ {
		base := 20000 + rand.IntN(12000)
		ok := true
		var held []net.Listener
		for p := base; p < base+n && ok; p++ {
			if handedOut.ports[p] {
				ok = false
				break
			}
			l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
			if err != nil {
				ok = false
				break
			}
			held = append(held, l)
		}
		for _, l := range held {
			l.Close()
		}
		if ok {
			for p := base; p < base+n; p++ {
				handedOut.ports[p] = true
			}
			return base, base + n - 1
		}
	}
	t.Fatal("no free port range")
	return 0, 0
}
