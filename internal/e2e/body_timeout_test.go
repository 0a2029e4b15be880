package e2e

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/privateconnect/pc/edge"
	"github.com/privateconnect/pc/internal/testenv"
	"github.com/privateconnect/pc/sdk/client"
)

// TestBodyTimeout: a request body that goes BodyTimeout without a byte ends
// its request wherever it stalls: in the first 8 KiB, which the edge reads
// before its handler runs, while the edge streams it to the service (with a
// Content-Length or in a chunk), after a 100 Continue, and in the drain of
// what a refused request left unread. The visitor gets 408 in the error
// envelope unless its answer had started, the connection is closed about
// the timeout after the last byte, the service never gets a whole request,
// and the stall is counted. A body that keeps coming goes through however
// long it takes in all; the timeout reaches neither the wait for the
// service's answer, nor the keep-alive wait for the next request, nor an
// upgraded connection.
func TestBodyTimeout(t *testing.T) {
	bodyTimeoutCases(t, nil, func(env *testenv.Env) (net.Conn, error) {
		return net.Dial("tcp", env.Edges[0].HTTPAddr())
	}, true)
}

// TestBodyTimeoutUnderTLSAndProxyProtocol: the main cases of
// TestBodyTimeout through TLS and the PROXY protocol at once, which the edge
// times the TCP connection under.
func TestBodyTimeoutUnderTLSAndProxyProtocol(t *testing.T) {
	bodyTimeoutCases(t, func(o *testenv.Options) {
		o.TLS = true
		o.Edge = func(c *edge.Config) {
			c.BodyTimeout = bodyTimeout
			c.TrustedProxies = []string{"127.0.0.0/8"}
			c.ProxyProtocol = true
		}
	}, func(env *testenv.Env) (net.Conn, error) {
		c, err := net.Dial("tcp", env.Edges[0].HTTPAddr())
		if err != nil {
			return nil, err
		}
		if _, err := io.WriteString(c, "PROXY TCP4 203.0.113.7 127.0.0.1 51000 80\r\n"); err != nil {
			c.Close()
			return nil, err
		}
		cfg := env.ClientTLS()
		cfg.ServerName = "127.0.0.1"
		tc := tls.Client(c, cfg)
		if err := tc.Handshake(); err != nil {
			c.Close()
			return nil, err
		}
		return tc, nil
	}, false)
}

// bodyTimeout is the edge's body timeout in TestBodyTimeout.
const bodyTimeout = 300 * time.Millisecond

// bodyTimeoutCases runs TestBodyTimeout's cases (all, or the main ones) on
// an edge with bodyTimeout (options tweaks it further), whose share
// listener dial reaches.
func bodyTimeoutCases(t *testing.T, options func(*testenv.Options), dial func(*testenv.Env) (net.Conn, error), all bool) {
	const timeout = bodyTimeout
	type got struct {
		n   int64
		err error
	}
	var mu sync.Mutex
	bodies := map[string]chan got{} // by request path
	seen := func(path string) chan got {
		mu.Lock()
		defer mu.Unlock()
		if bodies[path] == nil {
			bodies[path] = make(chan got, 4)
		}
		return bodies[path]
	}
	org := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/ws" { // an echo once upgraded
			c, brw, err := w.(http.Hijacker).Hijack()
			if err != nil {
				return
			}
			defer c.Close()
			fmt.Fprint(c, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
			_, _ = io.Copy(c, brw)
			return
		}
		n, err := io.Copy(io.Discard, r.Body)
		seen(r.URL.Path) <- got{n, err}
		if r.URL.Path == "/slow-answer" {
			time.Sleep(2 * timeout)
		}
		fmt.Fprint(w, n)
	}))
	t.Cleanup(org.Close)
	opts := testenv.Options{Edge: func(c *edge.Config) { c.BodyTimeout = timeout }}
	if options != nil {
		options(&opts)
	}
	env := testenv.New(t, opts)
	_, svc := env.ExposeAgent("a", "web", org.URL)
	sh := env.Share(svc.ID, client.CreateShareRequest{})
	prefix := "/shared/" + sh.Token

	connect := func(t *testing.T) (net.Conn, *bufio.Reader) {
		t.Helper()
		c, err := dial(env)
		require.NoError(t, err)
		t.Cleanup(func() { c.Close() })
		return c, bufio.NewReader(c)
	}
	write := func(t *testing.T, c net.Conn, s string) {
		t.Helper()
		_, err := io.WriteString(c, s)
		require.NoError(t, err)
	}
	// answer reads a response, at most 3 s past the timeout: a
	// stall that is not cut fails here.
	answer := func(t *testing.T, c net.Conn, br *bufio.Reader) (*http.Response, string) {
		t.Helper()
		_ = c.SetReadDeadline(time.Now().Add(timeout + 3*time.Second))
		resp, err := http.ReadResponse(br, nil)
		require.NoError(t, err, "no answer: the stalled body still holds the connection")
		b, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		resp.Body.Close()
		return resp, string(b)
	}
	// requireCutInTime checks when an answer (or an end) came after the
	// visitor's last byte: at the timeout, not much later.
	requireCutInTime := func(t *testing.T, took time.Duration) {
		t.Helper()
		require.GreaterOrEqual(t, took, timeout-50*time.Millisecond, "cut before the timeout")
		require.Less(t, took, timeout+3*time.Second)
	}
	// requireClosed checks that the edge closed the connection.
	requireClosed := func(t *testing.T, c net.Conn, br *bufio.Reader) {
		t.Helper()
		_ = c.SetReadDeadline(time.Now().Add(timeout + 3*time.Second))
		rest, err := io.ReadAll(br)
		if err != nil {
			require.NotErrorIs(t, err, os.ErrDeadlineExceeded, "the connection is still open")
		}
		require.Empty(t, rest)
	}
	// stalled sends a head and the start of its body, then nothing:
	// the edge answers 408 about the timeout later and closes.
	stalled := func(t *testing.T, head, body string) {
		t.Helper()
		c, br := connect(t)
		write(t, c, head+body)
		start := time.Now()
		resp, b := answer(t, c, br)
		requireCutInTime(t, time.Since(start))
		requireEnvelope(t, resp, b, http.StatusRequestTimeout)
		require.True(t, resp.Close, "the connection closes: the body is not read on")
		requireClosed(t, c, br)
	}
	// nothingForwarded: a body that stalled before the handler ran
	// never reached the service.
	nothingForwarded := func(t *testing.T, path string) {
		t.Helper()
		select {
		case g := <-seen(path):
			t.Fatalf("the service got a request (%d bytes, %v)", g.n, g.err)
		case <-time.After(100 * time.Millisecond):
		}
	}
	// cutForward: the service got the request but not its whole
	// body: its connection ended mid-body.
	cutForward := func(t *testing.T, path string, max int64) {
		t.Helper()
		select {
		case g := <-seen(path):
			require.Error(t, g.err, "the service got a whole request of %d bytes", g.n)
			require.LessOrEqual(t, g.n, max)
		case <-time.After(5 * time.Second):
			t.Fatal("the service never saw the request end")
		}
	}
	post := func(path string, length int) string { return postHead(prefix+path, length, false) }
	chunkedPost := func(path string) string { return postHead(prefix+path, 0, true) }
	// steady sends pieces of 1,500 bytes timeout/4 apart, two
	// timeouts in all: past the 8 KiB read before the handler, the
	// rest streamed.
	steady := func(t *testing.T, path string, chunked bool) {
		t.Helper()
		const pieces = 8
		c, br := connect(t)
		piece := strings.Repeat("s", 1500)
		write(t, c, postHead(prefix+path, pieces*len(piece), chunked))
		start := time.Now()
		writeSlowBody(t, c, piece, pieces, timeout/4, chunked)
		resp, b := answer(t, c, br)
		require.Equal(t, 200, resp.StatusCode, "%s", b)
		require.Equal(t, fmt.Sprint(pieces*len(piece)), b)
		require.Greater(t, time.Since(start), 3*timeout/2)
		g := <-seen(path)
		require.NoError(t, g.err)
	}

	// Where a case's body stalls: in what fasthttp reads before the
	// handler runs, as the handler streams it (an access record with the
	// 408), in the drain after the answer, or nowhere.
	const before, streamed, drain, none = "before", "streamed", "drain", ""
	cases := []struct {
		name  string
		all   bool   // only in TestBodyTimeout
		stall string // where the body stalls
		run   func(t *testing.T)
	}{
		{"nothing after the head", false, before, func(t *testing.T) {
			stalled(t, post("/head-only", 1_000_000), "")
			nothingForwarded(t, "/head-only")
		}},
		{"a small body cut short", true, before, func(t *testing.T) {
			stalled(t, post("/short", 100), strings.Repeat("x", 50))
			nothingForwarded(t, "/short")
		}},
		{"stalled while streamed", false, streamed, func(t *testing.T) {
			stalled(t, post("/streamed", 1_000_000), strings.Repeat("x", 20_000))
			cutForward(t, "/streamed", 20_000)
		}},
		{"stalled in a chunk", true, streamed, func(t *testing.T) {
			stalled(t, chunkedPost("/chunked"), "4e20\r\n"+strings.Repeat("x", 10_000))
			cutForward(t, "/chunked", 10_000)
		}},
		{"stalled after 100 Continue", true, before, func(t *testing.T) {
			c, br := connect(t)
			write(t, c, fmt.Sprintf("POST %s/continue HTTP/1.1\r\nHost: h\r\nContent-Length: 1000\r\nExpect: 100-continue\r\n\r\n", prefix))
			_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
			resp, err := http.ReadResponse(br, nil)
			require.NoError(t, err)
			require.Equal(t, http.StatusContinue, resp.StatusCode)
			start := time.Now()
			resp, b := answer(t, c, br)
			requireCutInTime(t, time.Since(start))
			requireEnvelope(t, resp, b, http.StatusRequestTimeout)
			requireClosed(t, c, br)
			nothingForwarded(t, "/continue")
		}},
		{"a refused request's unread body", true, drain, func(t *testing.T) {
			// The answer comes once the 8 KiB read before the
			// handler are in; the edge then drains the rest (it
			// would read on up to 256 KiB), and stops at the stall.
			c, br := connect(t)
			write(t, c, "POST /shared/"+strings.Repeat("a", 32)+"/x HTTP/1.1\r\nHost: h\r\nContent-Length: 100000\r\n\r\n"+strings.Repeat("x", 10_000))
			start := time.Now()
			resp, b := answer(t, c, br)
			requireEnvelope(t, resp, b, http.StatusNotFound)
			requireClosed(t, c, br)
			requireCutInTime(t, time.Since(start))
		}},
		{"steady upload", false, none, func(t *testing.T) { steady(t, "/steady", false) }},
		{"steady chunked upload", true, none, func(t *testing.T) { steady(t, "/steady-chunked", true) }},
		{"keep-alive wait", true, none, func(t *testing.T) {
			c, br := connect(t)
			write(t, c, post("/kept", 5)+"hello")
			resp, b := answer(t, c, br)
			require.Equal(t, 200, resp.StatusCode, "%s", b)
			<-seen("/kept")
			// Idle for twice the body timeout: the wait for the next
			// request is the idle timeout's.
			time.Sleep(2 * timeout)
			write(t, c, "GET "+prefix+"/kept HTTP/1.1\r\nHost: h\r\n\r\n")
			resp, b = answer(t, c, br)
			require.Equal(t, 200, resp.StatusCode, "%s", b)
		}},
		{"a service slower than the timeout", true, none, func(t *testing.T) {
			c, br := connect(t)
			write(t, c, post("/slow-answer", 5)+"hello")
			resp, b := answer(t, c, br)
			require.Equal(t, 200, resp.StatusCode, "%s", b)
			require.Equal(t, "5", b)
		}},
		{"idle WebSocket", false, none, func(t *testing.T) {
			c, br := connect(t)
			write(t, c, "GET "+prefix+"/ws HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"+
				"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
			_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
			resp, err := http.ReadResponse(br, nil)
			require.NoError(t, err)
			require.Equal(t, http.StatusSwitchingProtocols, resp.StatusCode)
			time.Sleep(2 * timeout) // idle is legitimate once upgraded
			write(t, c, "ping")
			b := make([]byte, 4)
			_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
			_, err = io.ReadFull(br, b)
			require.NoError(t, err, "the idle WebSocket was cut")
			require.Equal(t, "ping", string(b))
		}},
	}
	stalls, logged := 0, 0
	t.Run("requests", func(t *testing.T) {
		for _, tc := range cases {
			if tc.all && !all {
				continue
			}
			if tc.stall != none {
				stalls++
			}
			if tc.stall == streamed {
				logged++
			}
			t.Run(tc.name, func(t *testing.T) {
				t.Parallel()
				tc.run(t)
			})
		}
	})
	fams := scrapeMetrics(t, "http://"+env.Edges[0].AdminAddr()+"/metrics")
	require.Equal(t, float64(stalls), metricValue(fams, "pc_edge_body_stalls_total", nil),
		"every stall counted once, nothing else")
	require.Equal(t, float64(logged), metricValue(fams, "pc_edge_requests_total", map[string]string{"status": "408"}),
		"the share's requests count the 408s of bodies stalled as they streamed")
}
