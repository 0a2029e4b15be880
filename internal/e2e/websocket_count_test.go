package e2e

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"sort"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/privateconnect/pc/internal/testenv"
	"github.com/privateconnect/pc/sdk/client"
)

// TestWebSocketAttemptsCounted: every WebSocket upgrade that reaches the
// forward step is counted once, in pc_edge_requests_total and in the access
// logs, with the status the visitor got: the service's refusal (403 here),
// the edge's 502 when the service drops the stream without an answer or its
// agent cannot reach it, and the 101 of an upgrade, counted when it ends
// (with its method and path). Only the 101 used to be counted: the other
// attempts were answered but left no trace.
func TestWebSocketAttemptsCounted(t *testing.T) {
	env := testenv.New(t, testenv.Options{})
	ln := rawHTTPService(t, func(c net.Conn, path string) {
		switch path {
		case "/refuse":
			_, _ = io.WriteString(c, "HTTP/1.1 403 Forbidden\r\nContent-Length: 4\r\n\r\nnope")
		case "/ok":
			_, _ = io.WriteString(c, ws101)
			_, _ = c.Write(wsCloseFrame)
		}
		// /drop: no answer at all.
	})
	ag, svc := env.ExposeAgent("a", "ws", "http://"+ln.Addr().String())
	sh := env.Share(svc.ID, client.CreateShareRequest{})
	// A service whose agent finds nothing listening: the stream is refused.
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	closed.Close()
	gone := env.Expose(ag, "gone", "http://"+closed.Addr().String())
	shGone := env.Share(gone.ID, client.CreateShareRequest{})

	for _, tc := range []struct {
		share  *client.Share
		path   string
		status int
	}{
		{sh, "/refuse", 403},
		{sh, "/drop", 502},
		{sh, "/ok", 101},
		{shGone, "/x", 502},
	} {
		status, body := wsAttempt(t, env.Edges[0].HTTPAddr(), tc.share.Token, tc.path)
		require.Equal(t, tc.status, status, "%s: %s", tc.path, body)
	}

	metrics := "http://" + env.Edges[0].AdminAddr() + "/metrics"
	want := map[string]map[string]float64{sh.ID: {"403": 1, "502": 1, "101": 1}, shGone.ID: {"502": 1}}
	counted := func() bool {
		fams := scrapeMetrics(t, metrics)
		for id, byStatus := range want {
			for st, n := range byStatus {
				if metricValue(fams, "pc_edge_requests_total", map[string]string{"share": id, "status": st}) != n {
					return false
				}
			}
		}
		return true
	}
	// The 101 is counted when the WebSocket ends, just after the visitor saw its end.
	require.Eventually(t, counted, 5*time.Second, 20*time.Millisecond, "pc_edge_requests_total")

	ctx := context.Background()
	logs := func(s *client.Share) []string {
		page, _, err := env.Client.ListShareLogs(ctx, s.ID, client.ListOptions{Limit: 100}, client.ShareLogFilter{})
		require.NoError(t, err)
		var out []string
		for _, l := range page {
			out = append(out, fmt.Sprintf("%s %s %d %s", l.Method, l.Path, l.StatusCode, l.Decision))
		}
		sort.Strings(out)
		return out
	}
	wantLogs := []string{"GET /drop 502 allowed", "GET /ok 101 allowed", "GET /refuse 403 allowed"}
	require.Eventually(t, func() bool { return len(logs(sh)) >= 3 && len(logs(shGone)) >= 1 }, 10*time.Second, 50*time.Millisecond, "access logs")
	time.Sleep(300 * time.Millisecond) // a second record would show up here
	require.Equal(t, wantLogs, logs(sh), "each attempt logged once")
	require.Equal(t, []string{"GET /x 502 allowed"}, logs(shGone))
	require.True(t, counted(), "each attempt counted once")
}

// wsAttempt sends a WebSocket upgrade to path under a share's link and reads
// the answer; after a 101 it reads the connection to its end.
func wsAttempt(t *testing.T, addr, token, path string) (int, string) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(c, "GET /shared/%s%s HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"+
		"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n", token, path)
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	require.NoError(t, err, path)
	var b []byte
	if resp.StatusCode == http.StatusSwitchingProtocols {
		b, err = io.ReadAll(br)
	} else {
		b, err = io.ReadAll(resp.Body)
	}
	require.NoError(t, err, path)
	return resp.StatusCode, string(b)
}

// TestWebSocketInterimResponses: interim responses (100 Continue, 103 Early
// Hints) a service sends before its answer to an upgrade are skipped, as the
// HTTP client skips them: the visitor gets the 101 or the refusal after
// them. The first head was taken for the answer: the visitor got a bare
// "100 Continue" and waited for a response that never came.
func TestWebSocketInterimResponses(t *testing.T) {
	env := testenv.New(t, testenv.Options{})
	const interim = "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n"
	ln := rawHTTPService(t, func(c net.Conn, path string) {
		switch path {
		case "/refuse":
			_, _ = io.WriteString(c, interim+"HTTP/1.1 403 Forbidden\r\nContent-Length: 4\r\n\r\nnope")
		case "/ok":
			_, _ = io.WriteString(c, interim+ws101)
			_, _ = c.Write(wsCloseFrame)
		case "/endless":
			for i := 0; i < 100; i++ {
				_, _ = io.WriteString(c, "HTTP/1.1 100 Continue\r\n\r\n")
			}
			_, _ = io.Copy(io.Discard, c)
		}
	})
	_, svc := env.ExposeAgent("a", "ws", "http://"+ln.Addr().String())
	sh := env.Share(svc.ID, client.CreateShareRequest{})
	addr := env.Edges[0].HTTPAddr()

	status, body := wsAttempt(t, addr, sh.Token, "/refuse")
	require.Equal(t, 403, status, body)
	require.Equal(t, "nope", body)
	status, body = wsAttempt(t, addr, sh.Token, "/ok")
	require.Equal(t, 101, status, body)
	require.Equal(t, string(wsCloseFrame), body)
	status, body = wsAttempt(t, addr, sh.Token, "/endless")
	require.Equal(t, 502, status, body)
	require.Contains(t, body, "invalid response")
}
