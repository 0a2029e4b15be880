package e2e

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/privateconnect/pc/edge"
	"github.com/privateconnect/pc/internal/testenv"
	"github.com/privateconnect/pc/sdk/client"
)

// TestUpstreamTimeout: a service that does not start answering within the
// edge's upstream timeout gets the visitor a 504 at the timeout (not a
// retry, not a hang); a response that started in time is never cut, however
// long it streams.
func TestUpstreamTimeout(t *testing.T) {
	const timeout = 400 * time.Millisecond
	env := testenv.New(t, testenv.Options{Edge: func(c *edge.Config) { c.UpstreamTimeout = timeout }})
	org := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/slow":
			select {
			case <-time.After(5 * time.Second):
			case <-r.Context().Done():
			}
			_, _ = io.WriteString(w, "too late")
		case "/events": // starts at once, streams for 3 timeouts
			w.Header().Set("Content-Type", "text/event-stream")
			for i := 0; i < 12; i++ {
				fmt.Fprintf(w, "data: %d\n\n", i)
				w.(http.Flusher).Flush()
				time.Sleep(timeout / 4)
			}
		default:
			_, _ = io.WriteString(w, "ok")
		}
	}))
	t.Cleanup(org.Close)
	_, svc := env.ExposeAgent("a", "web", org.URL)
	sh := env.Share(svc.ID, client.CreateShareRequest{})

	start := time.Now()
	resp, err := http.Get(sh.ShareURL + "/slow")
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	took := time.Since(start)
	require.Equal(t, http.StatusGatewayTimeout, resp.StatusCode, "%s", body)
	require.Contains(t, string(body), "did not answer in time")
	require.GreaterOrEqual(t, took, timeout)
	require.Less(t, took, 2*timeout+time.Second, "one wait, no retry")

	resp, err = http.Get(sh.ShareURL + "/events")
	require.NoError(t, err)
	sc := bufio.NewScanner(resp.Body)
	n := 0
	for sc.Scan() {
		if strings.HasPrefix(sc.Text(), "data: ") {
			n++
		}
	}
	resp.Body.Close()
	require.Equal(t, 12, n, "a response streaming past the timeout is not cut")

	code, b := get(t, sh.ShareURL+"/")
	require.Equal(t, 200, code, b)
}

// TestServiceDropsMidBody: a service that announces a small body and hangs
// up halfway gets the visitor a clean 502 in the edge's error envelope,
// with none of the service's response head (its cookie, its encoding).
func TestServiceDropsMidBody(t *testing.T) {
	env := testenv.New(t, testenv.Options{})
	ln := tcpService(t, func(c net.Conn) {
		defer c.Close()
		_, _ = bufio.NewReader(c).ReadString('\n') // the request line is enough
		_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\nSet-Cookie: session=secret\r\nContent-Encoding: gzip\r\n\r\nonly ten b")
	})
	_, svc := env.ExposeAgent("a", "web", "http://"+ln.Addr().String())
	sh := env.Share(svc.ID, client.CreateShareRequest{})
	resp, err := http.Get(sh.ShareURL + "/")
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Equal(t, http.StatusBadGateway, resp.StatusCode, "%s", body)
	require.Contains(t, string(body), "The connection to the service was lost")
	require.Empty(t, resp.Header.Get("Set-Cookie"), "the service's head does not reach the visitor")
	require.Empty(t, resp.Header.Get("Content-Encoding"))
	require.Equal(t, "application/json", resp.Header.Get("Content-Type"))
}

// TestUpstreamTimeoutWebSocket: a service that does not answer a WebSocket
// upgrade within the edge's upstream timeout gets the visitor a 504 at the
// timeout, as any request. The upgrade used to wait a fixed 30 s whatever
// the timeout, then answer 502.
func TestUpstreamTimeoutWebSocket(t *testing.T) {
	const timeout = 400 * time.Millisecond
	env := testenv.New(t, testenv.Options{Edge: func(c *edge.Config) { c.UpstreamTimeout = timeout }})
	for _, tc := range []struct {
		name   string
		answer string // what the service sends before it stalls
		status int
		msg    string
	}{
		{"no answer", "", http.StatusGatewayTimeout, "did not answer in time"},
		// A refusal whose body stalls is not relayed half-read.
		{"refusal that stalls", "HTTP/1.1 403 Forbidden\r\nContent-Length: 100\r\n\r\nnot", http.StatusGatewayTimeout, "did not answer in time"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ln := tcpService(t, func(c net.Conn) {
				defer c.Close()
				if tc.answer != "" {
					// After the upgrade's head (the upgrade has no body).
					_, _ = http.ReadRequest(bufio.NewReader(c))
					_, _ = io.WriteString(c, tc.answer)
				}
				_, _ = io.Copy(io.Discard, c) // never (finishes) answering
			})
			_, svc := env.ExposeAgent("a-"+strings.ReplaceAll(tc.name, " ", "-"), "ws-"+strings.ReplaceAll(tc.name, " ", "-"), "http://"+ln.Addr().String())
			sh := env.Share(svc.ID, client.CreateShareRequest{})

			start := time.Now()
			status, body := wsAttempt(t, env.Edges[0].HTTPAddr(), sh.Token, "/ws")
			took := time.Since(start)
			require.Equal(t, tc.status, status, "%s", body)
			require.Contains(t, body, tc.msg)
			require.GreaterOrEqual(t, took, timeout)
			require.Less(t, took, 2*timeout+time.Second, "the upstream timeout, not a fixed wait")
		})
	}
}
