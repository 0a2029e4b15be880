package e2e

// What an operator meets running `pcd control`, `pcd edge` and `pcd dev`
// by hand: a drain that shows on /health and in the log, an edge that
// stops at once on settings that cannot work, an admin key that a failed
// start does not swallow, a control API over TLS that edges can trust.

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/privateconnect/pc/internal/devcert"
	"github.com/privateconnect/pc/sdk/client"
)

// logLines are the JSON log lines of a process's output with message msg.
func logLines(out, msg string) []map[string]any {
	var got []map[string]any
	for _, line := range strings.Split(out, "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(line), &m) == nil && m["msg"] == msg {
			got = append(got, m)
		}
	}
	return got
}

// healthOf returns the status code and data of a /health.
func healthOf(t *testing.T, url string) (int, map[string]any) {
	t.Helper()
	code, body := httpGet(url)
	var env struct {
		Data map[string]any `json:"data"`
	}
	if code != 0 {
		require.NoError(t, json.Unmarshal([]byte(body), &env), body)
	}
	return code, env.Data
}

// TestEdgeDrainIsVisible: a download is streaming through pcd edge when it
// gets SIGTERM. /health counted the download among activeRequests (its
// handler had returned: the count left streamed answers out), answers 503
// "draining" from the signal on (it said 200 "ok" all through the drain),
// the download completes, and the log says "draining" (with what is in
// flight) and "stopped" at info level.
func TestEdgeDrainIsVisible(t *testing.T) {
	c := newCluster(t, clusterOptions{})
	e := c.addEdge("edge-1")
	const chunk, chunks = 32 << 10, 20 // 640 KiB over 2 s: streamed, not copied
	org := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", fmt.Sprint(chunk*chunks))
		for i := 0; i < chunks; i++ {
			if _, err := w.Write([]byte(strings.Repeat("d", chunk))); err != nil {
				return
			}
			w.(http.Flusher).Flush()
			time.Sleep(100 * time.Millisecond)
		}
	}))
	t.Cleanup(org.Close)
	c.expose("files", strings.TrimPrefix(org.URL, "http://"), "http", 1)
	sh := c.share("files", client.CreateShareRequest{})
	health := "http://" + e.admin + "/health"

	type result struct {
		n   int64
		err error
	}
	started, done := make(chan struct{}), make(chan result, 1)
	go func() {
		resp, err := (&http.Client{Timeout: 30 * time.Second}).Get(e.shareURL(sh.Token) + "/download")
		if err != nil {
			close(started)
			done <- result{err: err}
			return
		}
		defer resp.Body.Close()
		first := make([]byte, 1024)
		n, err := io.ReadFull(resp.Body, first)
		close(started)
		if err != nil {
			done <- result{err: err}
			return
		}
		rest, err := io.Copy(io.Discard, resp.Body)
		done <- result{n: int64(n) + rest, err: err}
	}()
	<-started
	waitFor(t, 2*time.Second, "the streaming download counted in activeRequests", func() bool {
		code, h := healthOf(t, health)
		return code == 200 && h["activeRequests"] == 1.0
	})

	require.NoError(t, e.p.cmd.Process.Signal(syscall.SIGTERM))
	waitFor(t, time.Second, "/health 503 draining", func() bool {
		code, h := healthOf(t, health)
		return code == 503 && h["status"] == "draining" && h["activeRequests"] == 1.0
	})
	r := <-done
	require.NoError(t, r.err, "the download in flight completes")
	require.Equal(t, int64(chunk*chunks), r.n)
	err, ok := waitExit(e.p, 15*time.Second)
	require.True(t, ok, "pcd edge did not exit")
	require.NoError(t, err, "pcd edge exits 0 after draining")

	out := e.p.output()
	draining := logLines(out, "draining: refusing new requests and connections; those in flight may finish")
	require.Len(t, draining, 1, out)
	require.Equal(t, "INFO", draining[0]["level"])
	require.Equal(t, 1.0, draining[0]["activeRequests"], "the log says what is in flight")
	require.Equal(t, "15s", draining[0]["timeout"], "durations are logged as text")
	stopped := logLines(out, "stopped")
	require.Len(t, stopped, 1, out)
	require.Equal(t, "INFO", stopped[0]["level"])
}

// TestEdgeFailsFastOnBadSettings: pcd edge with settings that cannot work
// and nothing to serve meanwhile (no saved snapshot) exits 1 at once with
// what to fix, instead of looping for ever: a control URL without a scheme,
// a token the control plane refuses, a control URL that is not the control
// plane. An edge waiting for a control plane that is down is not wrong:
// SIGTERM stops it with 0.
func TestEdgeFailsFastOnBadSettings(t *testing.T) {
	c := newCluster(t, clusterOptions{})
	other := c.addEdge("edge-1")
	run := func(t *testing.T, args ...string) *proc {
		args = append([]string{"edge", "--http", freePort(t), "--tunnel", freePort(t), "--admin", freePort(t),
			"--data", t.TempDir(), "--tcp-ports", c.ports, "--log-format", "json"}, args...)
		return start(t, nil, c.bin+"/pcd", args...)
	}
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"control URL without a scheme", []string{"--control", c.api, "--token", other.token},
			`control URL "` + c.api + `": want the control plane's http:// or https:// address`},
		{"refused token", []string{"--control", c.controlURL(), "--token", "not-an-edge-token"},
			"refused this edge's token, and the edge has no saved configuration to serve"},
		{"not the control plane", []string{"--control", "http://" + other.http, "--token", other.token},
			"does not look like the control plane (it answered 404 to GET /v1/edges/config)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := run(t, tc.args...)
			err, ok := waitExit(p, 10*time.Second)
			require.True(t, ok, "pcd edge did not stop:\n%s", p.output())
			var ee *exec.ExitError
			require.ErrorAs(t, err, &ee, p.output())
			require.Equal(t, 1, ee.ExitCode())
			require.Contains(t, p.output(), tc.want)
		})
	}
	t.Run("control plane down", func(t *testing.T) {
		p := run(t, "--control", "http://"+freePort(t), "--token", other.token)
		time.Sleep(time.Second)
		require.False(t, exited(p), "an edge waiting for its control plane stopped:\n%s", p.output())
		require.NoError(t, terminate(t, p, 10*time.Second), "SIGTERM stops a waiting edge with 0")
	})
}

// TestAdminKeyShownAfterFailedStart: a start that cannot bind one of its
// addresses exits 1 before it creates the workspace and its admin key, so
// the next start shows the key. It created them first, exited without
// showing the key, and the next start showed only where it was.
func TestAdminKeyShownAfterFailedStart(t *testing.T) {
	bin := binaries(t)
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer busy.Close()
	keyShown := func(t *testing.T, data string, p *proc, what string) {
		t.Helper()
		waitFor(t, 20*time.Second, what, func() bool {
			require.False(t, exited(p), "%s exited:\n%s", what, p.output())
			b, err := os.ReadFile(filepath.Join(data, "admin.key"))
			key := strings.TrimSpace(string(b))
			return err == nil && key != "" && strings.Contains(p.output(), key)
		})
	}
	failed := func(t *testing.T, data string, p *proc) {
		t.Helper()
		err, ok := waitExit(p, 20*time.Second)
		require.True(t, ok)
		require.Error(t, err, "a start on a busy address fails")
		require.Contains(t, p.output(), "address already in use")
		_, err = os.Stat(filepath.Join(data, "admin.key"))
		require.True(t, os.IsNotExist(err), "the failed start created the admin key: %v", err)
	}

	t.Run("pcd control", func(t *testing.T) {
		data := t.TempDir()
		failed(t, data, start(t, nil, bin+"/pcd", "control", "--listen", busy.Addr().String(), "--data", data, "--log-format", "json"))
		keyShown(t, data, start(t, nil, bin+"/pcd", "control", "--listen", freePort(t), "--data", data, "--log-format", "json"), "pcd control shows the key")
	})
	t.Run("pcd dev", func(t *testing.T) {
		data := t.TempDir()
		// The edge's admin listener is the one bound last.
		failed(t, data, start(t, nil, bin+"/pcd", "dev", "--listen", freePort(t), "--http", freePort(t), "--tunnel", freePort(t),
			"--admin", busy.Addr().String(), "--data", data, "--log-format", "json"))
		tunnel := freePort(t)
		p := start(t, nil, bin+"/pcd", "dev", "--listen", freePort(t), "--http", freePort(t), "--tunnel", tunnel,
			"--admin", freePort(t), "--data", data, "--tls", "--log-format", "json")
		keyShown(t, data, p, "pcd dev shows the key")
		// With --tls agents dial the tunnel with tls://, as the banner says.
		require.Contains(t, p.output(), "Agent tunnel  tls://"+tunnel+"\n")
	})
}

// TestControlAPIOverTLS: pcd control serves its API over TLS with
// --tls-cert/--tls-key (a private CA's certificate here); an edge given
// that CA with --control-ca gets its configuration over https, and one
// without it stops at once (a certificate it does not trust, nothing to
// serve). Plain HTTP to the TLS port is answered 400, as net/http does.
func TestControlAPIOverTLS(t *testing.T) {
	bin := binaries(t)
	dir := t.TempDir()
	certPEM, keyPEM, err := devcert.SelfSigned([]string{"127.0.0.1"}, time.Hour)
	require.NoError(t, err)
	certFile, keyFile := filepath.Join(dir, "ca.pem"), filepath.Join(dir, "key.pem")
	require.NoError(t, os.WriteFile(certFile, certPEM, 0o644))
	require.NoError(t, os.WriteFile(keyFile, keyPEM, 0o600))
	tc, err := devcert.ClientTLS(certFile)
	require.NoError(t, err)
	hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: tc}}

	api := freePort(t)
	ctl := start(t, nil, bin+"/pcd", "control", "--listen", api, "--data", filepath.Join(dir, "control"),
		"--tls-cert", certFile, "--tls-key", keyFile, "--log-format", "json")
	waitFor(t, 20*time.Second, "control /health over https", func() bool {
		require.False(t, exited(ctl), "pcd control exited:\n%s", ctl.output())
		resp, err := hc.Get("https://" + api + "/health")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
	require.Contains(t, ctl.output(), "Control API: https://"+api+"\n")
	code, body := httpGet("http://" + api + "/health")
	require.Equal(t, 400, code, body)
	require.Contains(t, body, "Client sent an HTTP request to an HTTPS server")

	b, err := os.ReadFile(filepath.Join(dir, "control", "admin.key"))
	require.NoError(t, err)
	cl := client.New("https://"+api, strings.TrimSpace(string(b)), client.WithHTTPClient(hc))
	reg, err := cl.CreateEdge(t.Context(), client.CreateEdgeRequest{Name: "edge-1", PublicURL: "http://127.0.0.1:1", TunnelAddr: "127.0.0.1:1"})
	require.NoError(t, err)
	lo, hi := freePortRange(t, 2)
	edgeArgs := func(admin string, extra ...string) []string {
		return append([]string{"edge", "--control", "https://" + api, "--token", reg.Token, "--http", freePort(t),
			"--tunnel", freePort(t), "--admin", admin, "--data", t.TempDir(), "--tcp-ports", fmt.Sprintf("%d-%d", lo, hi),
			"--log-format", "json"}, extra...)
	}

	admin := freePort(t)
	e := start(t, nil, bin+"/pcd", edgeArgs(admin, "--control-ca", certFile)...)
	waitFor(t, 20*time.Second, "the edge's config over https", func() bool {
		require.False(t, exited(e), "pcd edge exited:\n%s", e.output())
		code, h := healthOf(t, "http://"+admin+"/health")
		return code == 200 && h["configConnected"] == true && h["edgeId"] == reg.ID
	})
	require.NoError(t, terminate(t, e, 20*time.Second))

	// Without the CA (and a fresh data directory: no snapshot).
	untrusting := start(t, nil, bin+"/pcd", edgeArgs(freePort(t))...)
	err, ok := waitExit(untrusting, 10*time.Second)
	require.True(t, ok, "an edge that does not trust the control plane kept running:\n%s", untrusting.output())
	require.Error(t, err)
	require.Contains(t, untrusting.output(), "presented a certificate this edge does not trust")
}
