package e2e

import (
	"context"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/privateconnect/pc/internal/testenv"
	"github.com/stretchr/testify/require"
)

// need finds a program; under CI a missing one fails (.ci/run installs it),
// elsewhere the test is skipped.
func need(t *testing.T, names ...string) string {
	t.Helper()
	for _, n := range names {
		if p, err := exec.LookPath(n); err == nil {
			return p
		}
		if strings.HasPrefix(n, "/") {
			if m, _ := filepath.Glob(n); len(m) > 0 {
				return m[len(m)-1]
			}
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("%s not installed (.ci/run installs it)", names[0])
	}
	t.Skipf("%s not installed", names[0])
	return ""
}

func freeTCPPort(t *testing.T) int {
	port, _ := freePortRange(t, 1)
	return port
}

func waitPort(t *testing.T, port int, within time.Duration) {
	t.Helper()
	require.Eventually(t, func() bool {
		c, err := net.Dial("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err == nil {
			c.Close()
		}
		return err == nil
	}, within, 50*time.Millisecond, "port %d", port)
}

func startRedis(t *testing.T) int {
	bin := need(t, "redis-server")
	port := freeTCPPort(t)
	cmd := exec.Command(bin, "--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", t.TempDir())
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	waitPort(t, port, 10*time.Second)
	return port
}

// startPostgres runs a throwaway cluster; as root it runs as the postgres
// user (initdb refuses root).
func startPostgres(t *testing.T) int {
	initdb := need(t, "initdb", "/usr/lib/postgresql/*/bin/initdb")
	pgbin := filepath.Dir(initdb)
	if p, err := filepath.EvalSymlinks(initdb); err == nil {
		pgbin = filepath.Dir(p)
	}
	dir, err := os.MkdirTemp("", "pc-pg-")
	require.NoError(t, err)
	t.Cleanup(func() { os.RemoveAll(dir) })
	port := freeTCPPort(t)
	wrap := func(args ...string) *exec.Cmd { return exec.Command(args[0], args[1:]...) }
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			t.Skip("running as root without a postgres user")
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		require.NoError(t, os.Chown(dir, uid, gid))
		require.NoError(t, os.Chmod(dir, 0o700))
		wrap = func(args ...string) *exec.Cmd {
			c := exec.Command(args[0], args[1:]...)
			c.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}}
			c.Dir = dir
			return c
		}
	}
	data := filepath.Join(dir, "data")
	out, err := wrap(filepath.Join(pgbin, "initdb"), "-D", data, "-U", "app", "--auth=trust", "-E", "UTF8").CombinedOutput()
	require.NoError(t, err, "initdb: %s", out)
	cmd := wrap(filepath.Join(pgbin, "postgres"), "-D", data, "-p", strconv.Itoa(port), "-c", "listen_addresses=127.0.0.1",
		"-c", "unix_socket_directories="+dir, "-c", "fsync=off")
	require.NoError(t, cmd.Start())
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGQUIT) // immediate shutdown
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
		}
	})
	waitPort(t, port, 20*time.Second)
	return port
}

func runOut(t *testing.T, env []string, name string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s %v: %s", name, args, out)
	return strings.TrimSpace(string(out))
}

// TestRealRedisAndPostgres reaches a real Redis with redis-cli and a real
// PostgreSQL with psql, through the edge's TCP tunnel port and through
// `connect reach` (agent → edge → agent).
func TestRealRedisAndPostgres(t *testing.T) {
	if testing.Short() {
		t.Skip("starts database servers")
	}
	redisCLI := need(t, "redis-cli")
	psql := need(t, "psql")
	redisPort := startRedis(t)
	pgPort := startPostgres(t)

	env := testenv.New(t, testenv.Options{})
	id, token, edges := env.ProvisionAgent("db-host")
	ag := env.RunAgent(id, token, edges)
	redisSvc := env.ExposeProtocol(ag, "redis", "127.0.0.1", redisPort, "tcp")
	pgSvc := env.ExposeProtocol(ag, "postgres", "127.0.0.1", pgPort, "tcp")
	env.WaitSynced(5 * time.Second)
	waitPort(t, redisSvc.TunnelPort, 5*time.Second)
	waitPort(t, pgSvc.TunnelPort, 5*time.Second)

	// Through the edge's tunnel ports.
	rp := strconv.Itoa(redisSvc.TunnelPort)
	require.Equal(t, "OK", runOut(t, nil, redisCLI, "-h", "127.0.0.1", "-p", rp, "SET", "greeting", "hello through the tunnel"))
	require.Equal(t, "hello through the tunnel", runOut(t, nil, redisCLI, "-h", "127.0.0.1", "-p", rp, "GET", "greeting"))
	pp := strconv.Itoa(pgSvc.TunnelPort)
	require.Equal(t, "42", runOut(t, nil, psql, "-h", "127.0.0.1", "-p", pp, "-U", "app", "-d", "postgres", "-tAc", "select 6*7"))
	runOut(t, nil, psql, "-h", "127.0.0.1", "-p", pp, "-U", "app", "-d", "postgres", "-c", "create table t(x int); insert into t select generate_series(1,10000)")
	require.Equal(t, "50005000", runOut(t, nil, psql, "-h", "127.0.0.1", "-p", pp, "-U", "app", "-d", "postgres", "-tAc", "select sum(x) from t"))

	// Through `connect reach` (the real binary; its own agent identity).
	bin := binaries(t)
	cenv := []string{"PC_API_KEY=" + env.AdminKey, "PC_CONTROL_URL=" + env.ControlURL(), "PC_STATE=" + filepath.Join(t.TempDir(), "agent.json")}
	for _, c := range []struct {
		svc  string
		port int
		run  func(port string)
	}{
		{"redis", freeTCPPort(t), func(port string) {
			require.Equal(t, "hello through the tunnel", runOut(t, nil, redisCLI, "-h", "127.0.0.1", "-p", port, "GET", "greeting"))
		}},
		{"postgres", freeTCPPort(t), func(port string) {
			require.Equal(t, "10000", runOut(t, nil, psql, "-h", "127.0.0.1", "-p", port, "-U", "app", "-d", "postgres", "-tAc", "select count(*) from t"))
		}},
	} {
		reach := start(t, cenv, bin+"/connect", "reach", c.svc, "--port", strconv.Itoa(c.port))
		require.Eventually(t, func() bool { return strings.Contains(reach.output(), "Reaching") }, 20*time.Second, 50*time.Millisecond, "reach output: %s", reach.output())
		c.run(strconv.Itoa(c.port))
		_ = reach.cmd.Process.Signal(os.Interrupt)
	}
}
