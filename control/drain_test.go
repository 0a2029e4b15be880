package control

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/valyala/fasthttp"

	"github.com/privateconnect/pc/control/store/memstore"
	"github.com/privateconnect/pc/internal/syncbuf"
)

// TestDrainShowsOnHealthAndInTheLog: once Run is told to stop, /health
// answers 503 "draining" on a connection a load balancer already holds (the
// listener is closed), while a request in flight finishes; the log says
// "draining" with what is in flight, then "stopped", at info level.
func TestDrainShowsOnHealthAndInTheLog(t *testing.T) {
	var logs syncbuf.Buffer
	s, err := New(Config{Listen: "127.0.0.1:0", Store: memstore.New(), DataDir: t.TempDir(), ShutdownTimeout: 5 * time.Second,
		Logger: slog.New(slog.NewJSONHandler(&logs, nil))})
	require.NoError(t, err)
	slow, release := make(chan struct{}), make(chan struct{})
	s.srv.Handler = s.track(func(ctx *fasthttp.RequestCtx) {
		if string(ctx.Path()) == "/slow" {
			close(slow)
			<-release
			ctx.SetStatusCode(204)
			return
		}
		s.api.Handler(ctx)
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()

	// A keep-alive connection, as a load balancer's health checks hold.
	conn, err := net.Dial("tcp", s.Addr())
	require.NoError(t, err)
	defer conn.Close()
	br := bufio.NewReader(conn)
	health := func() (int, map[string]any, bool) {
		_, err := conn.Write([]byte("GET /health HTTP/1.1\r\nHost: control\r\n\r\n"))
		require.NoError(t, err)
		resp, err := http.ReadResponse(br, nil)
		require.NoError(t, err)
		defer resp.Body.Close()
		var env struct {
			Data map[string]any `json:"data"`
		}
		require.NoError(t, json.NewDecoder(resp.Body).Decode(&env))
		return resp.StatusCode, env.Data, resp.Close
	}
	code, h, _ := health()
	require.Equal(t, 200, code)
	require.Equal(t, "ok", h["status"])

	slowDone := make(chan error, 1)
	go func() {
		resp, err := http.Get("http://" + s.Addr() + "/slow")
		if err == nil {
			resp.Body.Close()
		}
		slowDone <- err
	}()
	<-slow
	cancel()
	require.Eventually(t, func() bool { return strings.Contains(logs.String(), `"msg":"draining`) }, 5*time.Second, 5*time.Millisecond)
	code, h, closing := health()
	require.Equal(t, 503, code)
	require.Equal(t, "draining", h["status"])
	require.Equal(t, "ok", h["database"])
	require.True(t, closing, "the connection closes after the answer")
	close(release)
	require.NoError(t, <-slowDone, "the request in flight finished")
	require.NoError(t, <-done)

	var lines []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
		var m map[string]any
		require.NoError(t, json.Unmarshal([]byte(l), &m), l)
		lines = append(lines, m)
	}
	var draining, stopped map[string]any
	for _, m := range lines {
		switch msg := m["msg"].(string); {
		case strings.HasPrefix(msg, "draining"):
			draining = m
		case msg == "stopped":
			stopped = m
		}
	}
	require.NotNil(t, draining, logs.String())
	require.Equal(t, "INFO", draining["level"])
	require.Equal(t, 1.0, draining["activeRequests"], "the log says what is in flight")
	require.NotNil(t, stopped, logs.String())
	require.Equal(t, "INFO", stopped["level"])
}

// TestListenBeforeBootstrap: a control plane that cannot bind its address
// creates nothing: the start that can shows the admin key it creates.
func TestListenBeforeBootstrap(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer busy.Close()
	dir := t.TempDir()
	_, err = New(Config{Listen: busy.Addr().String(), DataDir: dir})
	require.ErrorContains(t, err, "listen")
	_, err = os.Stat(filepath.Join(dir, AdminKeyFile))
	require.True(t, os.IsNotExist(err), "a failed start created the admin key: %v", err)
	_, err = os.Stat(filepath.Join(dir, "control.db"))
	require.True(t, os.IsNotExist(err), "a failed start created the database: %v", err)

	s, err := New(Config{Listen: "127.0.0.1:0", DataDir: dir})
	require.NoError(t, err)
	defer s.Close()
	key, created := s.BootstrapAdminKey()
	require.True(t, created)
	require.NotEmpty(t, key)
}

// The control API in plain HTTP off loopback carries keys and tokens in
// clear: Run warns then.
func TestPlainHTTPOffLoopbackIsFlagged(t *testing.T) {
	withTLS := Config{TLS: &tls.Config{MinVersion: tls.VersionTLS12}}
	for addr, want := range map[string]bool{
		"127.0.0.1:3001": false, "[::1]:3001": false, "0.0.0.0:3001": true, "[::]:3001": true, "10.1.2.3:3001": true,
	} {
		require.Equal(t, want, inClear(Config{}, addr), addr)
		require.False(t, inClear(withTLS, addr), addr)
	}
}

// TestSettlingWindowStartsWhenServing: the window in which presence may
// still miss connected agents runs from the moment Run serves, not from New
// (a store that took long to open must not eat it). Presence.Settling's
// answer must leave at least what a window started at Run would.
func TestSettlingWindowStartsWhenServing(t *testing.T) {
	s, err := New(Config{Listen: "127.0.0.1:0", Store: memstore.New(), DataDir: t.TempDir()})
	require.NoError(t, err)
	unreported := func() ([]string, error) { return []string{"edge-that-has-not-reported"}, nil }
	atNew, err := s.hub.Presence.Settling(unreported)
	require.NoError(t, err)
	require.Positive(t, atNew)

	time.Sleep(100 * time.Millisecond) // a slow start, between New and Run
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	began := time.Now()
	go func() { done <- s.Run(ctx) }()
	defer func() { cancel(); require.NoError(t, <-done) }()
	require.Eventually(t, func() bool {
		c, err := net.Dial("tcp", s.Addr())
		if err == nil {
			c.Close()
		}
		return err == nil
	}, 5*time.Second, 5*time.Millisecond)
	left, err := s.hub.Presence.Settling(unreported)
	require.NoError(t, err)
	// Started at or after began, the window leaves at least atNew less what
	// passed since; started at New, 100 ms less than that.
	require.GreaterOrEqual(t, left, atNew-time.Since(began), "the window still runs from New")
}

// TestWebhookKeyFileSetting: the key that seals webhook secrets is kept
// where Config.WebhookKeyFile says (pcd --webhooks-key-file), created 0600,
// and not in the data directory.
func TestWebhookKeyFileSetting(t *testing.T) {
	data, keys := t.TempDir(), t.TempDir()
	file := filepath.Join(keys, "hooks.key")
	s, err := New(Config{Listen: "127.0.0.1:0", Store: memstore.New(), DataDir: data, WebhookKeyFile: file})
	require.NoError(t, err)
	require.NoError(t, s.Close())
	st, err := os.Stat(file)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), st.Mode().Perm())
	require.NoFileExists(t, filepath.Join(data, WebhookKeyFile))
}
