package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/privateconnect/pc/sdk/client"
	"github.com/stretchr/testify/require"
)

var (
	buildOnce sync.Once
	binDir    string
	buildErr  error
)

// binaryVersion is the version the test binaries are built with.
const binaryVersion = "e2e-build"

// binaries builds pcd and connect once per test run.
func binaries(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds binaries")
	}
	buildOnce.Do(func() {
		binDir, buildErr = os.MkdirTemp("", "pc-bin-")
		if buildErr != nil {
			return
		}
		cmd := exec.Command("go", "build", "-ldflags", "-X main.version="+binaryVersion, "-o", binDir+"/", "../../cmd/pcd", "../../cmd/connect")
		out, err := cmd.CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	require.NoError(t, buildErr)
	return binDir
}

// freePort returns a free 127.0.0.1 address for a process the test will
// start, and possibly restart on the same address. It comes from below the
// kernel's ephemeral range: a port from that range, free while its process
// is down, can be taken meanwhile by any outgoing connection's local end,
// and the restart then fails with "address already in use".
func freePort(t *testing.T) string {
	base, _ := freePortRange(t, 1)
	return "127.0.0.1:" + strconv.Itoa(base)
}

// proc is a running binary with its output captured.
type proc struct {
	cmd *exec.Cmd
	mu  sync.Mutex
	out strings.Builder
}

func (p *proc) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.Write(b)
}

func (p *proc) output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.String()
}

func start(t *testing.T, env []string, name string, args ...string) *proc {
	t.Helper()
	p := &proc{cmd: exec.Command(name, args...)}
	p.cmd.Env = append(os.Environ(), env...)
	p.cmd.Stdout, p.cmd.Stderr = p, p
	require.NoError(t, p.cmd.Start())
	t.Cleanup(func() {
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = p.cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = p.cmd.Process.Kill()
		}
		if t.Failed() {
			t.Logf("%s output:\n%s", filepath.Base(name), p.output())
		}
	})
	return p
}

// TestQuickStartWithBinaries walks the README's quick start with the real
// binaries as separate processes: pcd dev, a private service, connect
// expose, connect link, curl.
func TestQuickStartWithBinaries(t *testing.T) {
	bin := binaries(t)
	dir := t.TempDir()
	api, httpAddr, tun, admin := freePort(t), freePort(t), freePort(t), freePort(t)
	pcd := start(t, nil, bin+"/pcd", "dev", "--data", dir+"/data", "--listen", api, "--http", httpAddr, "--tunnel", tun, "--admin", admin, "--log-format", "json")

	var key string
	require.Eventually(t, func() bool {
		b, err := os.ReadFile(dir + "/data/admin.key")
		key = strings.TrimSpace(string(b))
		return err == nil && strings.HasPrefix(key, "pc_") && strings.Contains(pcd.output(), key)
	}, 20*time.Second, 50*time.Millisecond, "pcd dev prints the admin key")
	// The edge reports the version pcd was built with.
	var health struct {
		Data struct {
			Version string `json:"version"`
		} `json:"data"`
	}
	resp, err := http.Get("http://" + admin + "/health")
	require.NoError(t, err)
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&health))
	resp.Body.Close()
	require.Equal(t, binaryVersion, health.Data.Version)
	info, err := os.Stat(dir + "/data/admin.key")
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), info.Mode().Perm())

	originSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "private service page")
	}))
	defer originSrv.Close()
	target := strings.TrimPrefix(originSrv.URL, "http://")

	env := []string{"PC_API_KEY=" + key, "PC_CONTROL_URL=http://" + api, "PC_STATE=" + dir + "/agent.json"}
	metricsAddr := freePort(t)
	expose := start(t, env, bin+"/connect", "expose", target, "--name", "web", "--metrics", metricsAddr)
	require.Eventually(t, func() bool { return strings.Contains(expose.output(), "connected") }, 10*time.Second, 50*time.Millisecond)
	agentMetrics := scrapeMetrics(t, "http://"+metricsAddr+"/metrics")
	require.Equal(t, 1.0, metricValue(agentMetrics, "pc_agent_edge_sessions", nil), "the agent's --metrics")
	require.Positive(t, metricValue(agentMetrics, "go_goroutines", nil), "the agent exports the Go runtime collector")
	require.Positive(t, metricValue(agentMetrics, "process_resident_memory_bytes", nil), "and the process collector")
	st, err := os.Stat(dir + "/agent.json")
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), st.Mode().Perm(), "the agent state file holds a secret")

	link := exec.Command(bin+"/connect", "link", "web")
	link.Env = append(os.Environ(), env...)
	out, err := link.Output()
	require.NoError(t, err)
	url := strings.TrimSpace(string(out))
	require.Regexp(t, regexp.MustCompile(`^http://`+regexp.QuoteMeta(httpAddr)+`/shared/[A-Za-z0-9_-]{22,}$`), url)

	var body string
	require.Eventually(t, func() bool {
		resp, err := http.Get(url + "/")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		body = string(b)
		return resp.StatusCode == 200
	}, 5*time.Second, 50*time.Millisecond)
	require.Equal(t, "private service page", body)

	// Agent commands that need the API run in the CLI agent: expose a
	// second service through POST /v1/agents/:id/command, then unexpose it.
	second := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "second") }))
	defer second.Close()
	api2 := client.New("http://"+api, key)
	agents, _, err := api2.ListAgents(context.Background(), client.ListOptions{}, client.AgentFilter{})
	require.NoError(t, err)
	require.Len(t, agents, 1)
	sh, sp, _ := net.SplitHostPort(strings.TrimPrefix(second.URL, "http://"))
	spn, _ := strconv.Atoi(sp)
	runCommand := func(action string, params string) *client.Command {
		rc, err := api2.SendCommand(context.Background(), agents[0].ID, client.CommandRequest{Action: action, Params: json.RawMessage(params)})
		require.NoError(t, err)
		var cmd *client.Command
		require.Eventually(t, func() bool {
			cmd, err = api2.GetCommand(context.Background(), agents[0].ID, rc.CommandID)
			return err == nil && (cmd.Status == "succeeded" || cmd.Status == "failed")
		}, 10*time.Second, 50*time.Millisecond)
		require.Equal(t, "succeeded", cmd.Status, cmd.Error)
		return cmd
	}
	runCommand("expose", fmt.Sprintf(`{"name":"second","targetHost":%q,"targetPort":%d,"protocol":"http"}`, sh, spn))
	svc2, _, err := api2.ListServices(context.Background(), client.ListOptions{}, client.ServiceFilter{})
	require.NoError(t, err)
	var secondID string
	for _, s := range svc2 {
		if s.Name == "second" {
			secondID = s.ID
		}
	}
	require.NotEmpty(t, secondID, "the expose command registered the service")
	share2, err := api2.CreateShare(context.Background(), secondID, client.CreateShareRequest{Name: "s2"})
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		resp, err := http.Get(share2.ShareURL + "/")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode == 200 && string(b) == "second"
	}, 5*time.Second, 50*time.Millisecond, "a service exposed by command is served by the running agent")
	runCommand("unexpose", `{"name":"second"}`)
	_, err = api2.GetService(context.Background(), secondID)
	require.True(t, client.IsNotFound(err), "unexpose deleted the service: %v", err)

	// A second `connect expose` on the same machine (the README's database
	// example, run while the first one serves) adds its service to the
	// running agent and returns: a second process of the same identity would
	// displace the first's tunnel on the edge, back and forth.
	third := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "third") }))
	defer third.Close()
	againCtx, stopAgain := context.WithTimeout(context.Background(), 20*time.Second)
	defer stopAgain()
	again := exec.CommandContext(againCtx, bin+"/connect", "expose", strings.TrimPrefix(third.URL, "http://"), "--name", "third")
	again.Env = append(os.Environ(), env...)
	againOut, err := again.CombinedOutput()
	require.NoError(t, err, string(againOut))
	require.Contains(t, string(againOut), "already runs (process "+strconv.Itoa(expose.cmd.Process.Pid))
	up := exec.CommandContext(againCtx, bin+"/connect", "up")
	up.Env = append(os.Environ(), env...)
	upOut, err := up.CombinedOutput()
	require.Error(t, err, "connect up refuses to run a second process of the identity")
	require.Contains(t, string(upOut), "already runs")
	thirdLink := exec.Command(bin+"/connect", "link", "third")
	thirdLink.Env = append(os.Environ(), env...)
	out, err = thirdLink.Output()
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		resp, err := http.Get(strings.TrimSpace(string(out)) + "/")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode == 200 && string(b) == "third"
	}, 5*time.Second, 50*time.Millisecond, "the running agent serves the service the second expose added")
	require.NotContains(t, expose.output(), "disconnected", "the running agent kept its tunnel")

	// Ctrl-C stops the agent cleanly with exit code 0.
	require.NoError(t, expose.cmd.Process.Signal(os.Interrupt))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	errc := make(chan error, 1)
	go func() { errc <- expose.cmd.Wait() }()
	select {
	case err := <-errc:
		require.NoError(t, err, "connect expose exits 0 on Ctrl-C")
	case <-ctx.Done():
		t.Fatal("connect expose did not stop on Ctrl-C")
	}

	// The edge answers 503 once the agent is gone.
	require.Eventually(t, func() bool {
		resp, err := http.Get(url + "/")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 503
	}, 5*time.Second, 50*time.Millisecond)

	// SIGTERM drains pcd with exit code 0.
	require.NoError(t, pcd.cmd.Process.Signal(syscall.SIGTERM))
	errc2 := make(chan error, 1)
	go func() { errc2 <- pcd.cmd.Wait() }()
	select {
	case err := <-errc2:
		require.NoError(t, err)
	case <-time.After(15 * time.Second):
		t.Fatal("pcd did not stop on SIGTERM")
	}
	sc := bufio.NewScanner(strings.NewReader(pcd.output()))
	for sc.Scan() {
		require.NotContains(t, sc.Text(), `"level":"ERROR"`, "no error logged during the quick start")
		// One component per line ("control", "edge.configsync"), never the key twice.
		require.LessOrEqual(t, strings.Count(sc.Text(), `"component":`), 1, sc.Text())
	}
	require.Contains(t, pcd.output(), `"component":"edge.configsync"`)

	// A second start names the key's file and never shows the key again
	// (product.md).
	restarted := start(t, nil, bin+"/pcd", "dev", "--data", dir+"/data", "--listen", api, "--http", httpAddr, "--tunnel", tun, "--admin", admin, "--log-format", "json")
	require.Eventually(t, func() bool { return strings.Contains(restarted.output(), "dev node is up") }, 20*time.Second, 50*time.Millisecond)
	require.Contains(t, restarted.output(), "PC_API_KEY=$(cat "+dir+"/data/admin.key)")
	require.NotContains(t, restarted.output(), key)
}

// TestConnectUpServesServicesAddedLater runs `connect up` (a daemon with no
// service yet), then registers services for the same agent identity with
// `connect expose --detach`: the running agent serves them through its
// edge, after checking each with the API (it dials only its own services'
// targets, so a compromised edge cannot point it elsewhere).
func TestConnectUpServesServicesAddedLater(t *testing.T) {
	c := newCluster(t, clusterOptions{})
	e := c.addEdge("edge-1")
	state := "PC_STATE=" + filepath.Join(c.dir, "box.json")
	up := start(t, c.cliEnv(state), c.bin+"/connect", "up", "--name", "box")
	c.waitAgents(1, 20*time.Second)
	for _, name := range []string{"web", "api"} {
		org := origin(t)
		c.connectCLIEnv([]string{state}, "expose", strings.TrimPrefix(org.URL, "http://"), "--name", name, "--protocol", "http", "--detach")
		link := strings.TrimSpace(c.connectCLI("link", name))
		require.True(t, strings.HasPrefix(link, "http://"+e.http+"/shared/"), link)
		waitFor(t, 10*time.Second, name+" through the share", func() bool {
			code, body := httpGet(link + "/hello")
			return code == 200 && body == "hello from origin: GET /hello"
		})
	}
	require.False(t, exited(up), "connect up exited:\n%s", up.output())
}
