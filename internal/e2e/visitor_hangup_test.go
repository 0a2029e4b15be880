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

// slowService is a share of a service that answers /ok at once and sits on
// every other request until it is cancelled, telling arrivals and
// cancellations by path; the edge's upstream timeout is 30 s.
type slowService struct {
	env                *testenv.Env
	share              *client.Share
	u                  *url.URL // the share's URL
	arrived, cancelled chan string
}

func newSlowService(t *testing.T, opts testenv.Options) *slowService {
	opts.Edge = func(c *edge.Config) { c.UpstreamTimeout = 30 * time.Second }
	s := &slowService{env: testenv.New(t, opts), arrived: make(chan string, 4), cancelled: make(chan string, 4)}
	org := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/ok" {
			_, _ = io.WriteString(w, "ok")
			return
		}
		s.arrived <- r.URL.Path
		select {
		case <-r.Context().Done():
			s.cancelled <- r.URL.Path
		case <-time.After(time.Minute):
		}
	}))
	t.Cleanup(org.Close)
	_, svc := s.env.ExposeAgent("a", "web", org.URL)
	s.share = s.env.Share(svc.ID, client.CreateShareRequest{})
	var err error
	s.u, err = url.Parse(s.share.ShareURL)
	require.NoError(t, err)
	return s
}

// hangUp sends a request for path (with head's extra lines) on c, waits for
// it to reach the service, calls hang, and requires the service's request
// cancelled within 5 s (not at the 30 s timeout).
func (s *slowService) hangUp(t *testing.T, c net.Conn, path, head string, hang func()) {
	_, err := fmt.Fprintf(c, "GET %s%s HTTP/1.1\r\nHost: %s\r\n%s\r\n", s.u.Path, path, s.u.Host, head)
	require.NoError(t, err)
	select {
	case p := <-s.arrived:
		require.Equal(t, path, p)
	case <-time.After(10 * time.Second):
		t.Fatal("the request did not reach the service")
	}
	gone := time.Now()
	hang()
	select {
	case p := <-s.cancelled:
		require.Equal(t, path, p)
		took := time.Since(gone)
		t.Logf("the service's request was cancelled %v after the hang-up", took.Round(time.Millisecond))
		require.Less(t, took, 5*time.Second)
	case <-time.After(15 * time.Second):
		t.Fatal("the service still works for a visitor who hung up")
	}
}

// TestVisitorHangsUpBeforeTheAnswer: a visitor that hangs up while the
// service is still working on its request (a closed tab, a killed curl)
// frees the service at once: the edge closes the stream, the agent closes
// its connection, and the service's request is cancelled within a couple of
// seconds, not at the upstream timeout. A half-close counts as a hang-up,
// as it does for nginx and Go's own server; the half-closed visitor reads
// no answer, only the end of the connection. The same holds for a WebSocket
// upgrade the service has not answered. The requests given up are recorded
// with 499 (access log and pc_edge_requests_total), and the share goes on
// serving.
func TestVisitorHangsUpBeforeTheAnswer(t *testing.T) {
	s := newSlowService(t, testenv.Options{})
	const upgrade = "Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
	for _, tc := range []struct {
		path, head string
		hang       func(*net.TCPConn)
	}{
		{"/closed", "", func(c *net.TCPConn) { _ = c.Close() }},
		{"/reset", "", func(c *net.TCPConn) { _ = c.SetLinger(0); _ = c.Close() }},
		{"/half-closed", "", func(c *net.TCPConn) { _ = c.CloseWrite() }},
		{"/websocket", upgrade, func(c *net.TCPConn) { _ = c.Close() }}, // an upgrade the service does not answer
	} {
		t.Run(tc.path[1:], func(t *testing.T) {
			c, err := net.Dial("tcp", s.u.Host)
			require.NoError(t, err)
			defer c.Close()
			s.hangUp(t, c, tc.path, tc.head, func() { tc.hang(c.(*net.TCPConn)) })
			if tc.path == "/half-closed" {
				_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
				b, err := io.ReadAll(c)
				require.NoError(t, err, "the edge closes the connection")
				require.Empty(t, string(b), "no answer for a visitor who hung up")
			}
		})
	}

	code, body := get(t, s.share.ShareURL+"/ok")
	require.Equal(t, http.StatusOK, code, body)

	logs := func() map[string]int {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		page, _, err := s.env.Client.ListShareLogs(ctx, s.share.ID, client.ListOptions{Limit: 100}, client.ShareLogFilter{})
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

	fams := scrapeMetrics(t, "http://"+s.env.Edges[0].AdminAddr()+"/metrics")
	require.Equal(t, 4.0, metricValue(fams, "pc_edge_requests_total", map[string]string{"share": s.share.ID, "status": "499"}))
}

// TestVisitorHangsUpOverTLS: a TLS visitor's close sends close_notify before
// its FIN; the alert is data the edge has not read, and the hang-up is seen
// all the same (Linux: the FIN behind it is polled).
func TestVisitorHangsUpOverTLS(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("elsewhere a peek sees the alert, not the FIN behind it")
	}
	s := newSlowService(t, testenv.Options{TLS: true})
	c, err := tls.Dial("tcp", s.env.Edges[0].HTTPAddr(), s.env.ClientTLS())
	require.NoError(t, err)
	defer c.Close()
	s.hangUp(t, c, "/slow", "", func() { require.NoError(t, c.Close()) }) // close_notify, then FIN
}
