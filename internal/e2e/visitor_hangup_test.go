package e2e

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"runtime"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/privateconnect/pc/edge"
	"github.com/privateconnect/pc/edge/proxy"
	"github.com/privateconnect/pc/internal/testenv"
	"github.com/privateconnect/pc/sdk/client"
)

// TestVisitorHangsUpBeforeTheAnswer: a visitor that hangs up while the
// service is still working on its request (a closed tab, a killed curl)
// frees the service at once: the edge closes the stream, the agent closes
// its connection, and the service's request is cancelled within a couple of
// seconds, not at the upstream timeout (30 s here). A half-close counts as a
// hang-up, as it does for nginx and Go's own server; the half-closed visitor
// reads no answer, only the end of the connection. The same holds for a
// WebSocket upgrade the service has not answered. The requests given up
// are recorded with 499, and the share goes on serving.
func TestVisitorHangsUpBeforeTheAnswer(t *testing.T) {
	env := testenv.New(t, testenv.Options{Edge: func(c *edge.Config) { c.UpstreamTimeout = 30 * time.Second }})
	arrived := make(chan string, 4)
	cancelled := make(chan string, 4)
	org := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/ok":
			_, _ = io.WriteString(w, "ok")
			return
		}
		arrived <- r.URL.Path
		select {
		case <-r.Context().Done():
			cancelled <- r.URL.Path
		case <-time.After(time.Minute):
		}
	}))
	t.Cleanup(org.Close)
	_, svc := env.ExposeAgent("a", "web", org.URL)
	sh := env.Share(svc.ID, client.CreateShareRequest{})
	u, err := url.Parse(sh.ShareURL)
	require.NoError(t, err)

	for _, tc := range []struct {
		path string
		hang func(*net.TCPConn)
	}{
		{"/closed", func(c *net.TCPConn) { _ = c.Close() }},
		{"/reset", func(c *net.TCPConn) { _ = c.SetLinger(0); _ = c.Close() }},
		{"/half-closed", func(c *net.TCPConn) { _ = c.CloseWrite() }},
		{"/websocket", func(c *net.TCPConn) { _ = c.Close() }}, // an upgrade the service does not answer
	} {
		t.Run(tc.path[1:], func(t *testing.T) {
			c, err := net.Dial("tcp", u.Host)
			require.NoError(t, err)
			defer c.Close()
			upgrade := ""
			if tc.path == "/websocket" {
				upgrade = "Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
			}
			_, err = fmt.Fprintf(c, "GET %s%s HTTP/1.1\r\nHost: %s\r\n%s\r\n", u.Path, tc.path, u.Host, upgrade)
			require.NoError(t, err)
			select {
			case p := <-arrived:
				require.Equal(t, tc.path, p)
			case <-time.After(10 * time.Second):
				t.Fatal("the request did not reach the service")
			}
			gone := time.Now()
			tc.hang(c.(*net.TCPConn))
			select {
			case p := <-cancelled:
				require.Equal(t, tc.path, p)
				took := time.Since(gone)
				t.Logf("the service's request was cancelled %v after the hang-up", took.Round(time.Millisecond))
				require.Less(t, took, 5*time.Second)
			case <-time.After(15 * time.Second):
				t.Fatal("the service still works for a visitor who hung up")
			}
			if tc.path == "/half-closed" {
				_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
				b, err := io.ReadAll(c)
				require.NoError(t, err, "the edge closes the connection")
				require.Empty(t, string(b), "no answer for a visitor who hung up")
			}
		})
	}

	code, body := get(t, sh.ShareURL+"/ok")
	require.Equal(t, http.StatusOK, code, body)

	logs := func() map[string]int {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		page, _, err := env.Client.ListShareLogs(ctx, sh.ID, client.ListOptions{Limit: 100}, client.ShareLogFilter{})
		require.NoError(t, err)
		out := map[string]int{}
		for _, l := range page {
			out[l.Path] = l.StatusCode
		}
		return out
	}
	require.Eventually(t, func() bool { return len(logs()) >= 5 }, 10*time.Second, 50*time.Millisecond, "access logs")
	got := logs()
	for _, p := range []string{"/closed", "/reset", "/half-closed", "/websocket"} {
		require.Equal(t, proxy.StatusVisitorGone, got[p], "%s: %v", p, got)
	}
	require.Equal(t, http.StatusOK, got["/ok"])
}

// TestVisitorHangsUpOverTLS: a TLS visitor's close sends close_notify before
// its FIN; the alert is data the edge has not read, and the hang-up is seen
// all the same (Linux: the FIN behind it is polled).
func TestVisitorHangsUpOverTLS(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("elsewhere a peek sees the alert, not the FIN behind it")
	}
	env := testenv.New(t, testenv.Options{TLS: true, Edge: func(c *edge.Config) { c.UpstreamTimeout = 30 * time.Second }})
	arrived := make(chan struct{}, 1)
	cancelled := make(chan struct{}, 1)
	org := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		arrived <- struct{}{}
		select {
		case <-r.Context().Done():
			cancelled <- struct{}{}
		case <-time.After(time.Minute):
		}
	}))
	t.Cleanup(org.Close)
	_, svc := env.ExposeAgent("a", "web", org.URL)
	sh := env.Share(svc.ID, client.CreateShareRequest{})
	u, err := url.Parse(sh.ShareURL)
	require.NoError(t, err)
	c, err := tls.Dial("tcp", env.Edges[0].HTTPAddr(), env.ClientTLS())
	require.NoError(t, err)
	defer c.Close()
	_, err = fmt.Fprintf(c, "GET %s/slow HTTP/1.1\r\nHost: %s\r\n\r\n", u.Path, u.Host)
	require.NoError(t, err)
	select {
	case <-arrived:
	case <-time.After(10 * time.Second):
		t.Fatal("the request did not reach the service")
	}
	gone := time.Now()
	require.NoError(t, c.Close()) // close_notify, then FIN
	select {
	case <-cancelled:
		t.Logf("the service's request was cancelled %v after the hang-up", time.Since(gone).Round(time.Millisecond))
		require.Less(t, time.Since(gone), 5*time.Second)
	case <-time.After(15 * time.Second):
		t.Fatal("the service still works for a TLS visitor who hung up")
	}
}
