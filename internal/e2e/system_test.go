// Package e2e holds the whole-system tests: a real control plane (Badger),
// real edges, real agents and origin services in one process through the
// harness of internal/testenv, plus tests that run the built binaries.
package e2e

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/privateconnect/pc/internal/testenv"
	"github.com/privateconnect/pc/sdk/client"
	"github.com/stretchr/testify/require"
)

func origin(t *testing.T) *httptest.Server {
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello from origin: %s %s", r.Method, r.URL.RequestURI())
	})
	mux.HandleFunc("/echo-headers", func(w http.ResponseWriter, r *http.Request) {
		for _, h := range []string{"X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto", "X-Share-Id", "X-Hop", "Cookie"} {
			w.Header().Set("Seen-"+h, r.Header.Get(h))
		}
		w.Header().Set("Seen-Host", r.Host)
		fmt.Fprint(w, "headers")
	})
	mux.HandleFunc("/upload", func(w http.ResponseWriter, r *http.Request) {
		n, _ := io.Copy(io.Discard, r.Body)
		fmt.Fprintf(w, "%d", n)
	})
	mux.HandleFunc("/slow", func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-time.After(20 * time.Second):
		}
	})
	mux.HandleFunc("/sse", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		for i := 0; ; i++ {
			if _, err := fmt.Fprintf(w, "data: %d\n\n", i); err != nil {
				return
			}
			w.(http.Flusher).Flush()
			select {
			case <-r.Context().Done():
				return
			case <-time.After(10 * time.Millisecond):
			}
		}
	})
	mux.HandleFunc("/ws", func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer c.CloseNow()
		for {
			typ, msg, err := c.Read(r.Context())
			if err != nil {
				return
			}
			_ = c.Write(r.Context(), typ, msg)
		}
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	return httpGet(url)
}

func eventuallyStatus(t *testing.T, url string, want int, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	var last int
	var body string
	for time.Now().Before(deadline) {
		if last, body = get(t, url); last == want {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("%s: want %d within %v, last %d %s", url, want, within, last, body)
}

// TestWholePath walks the product's promise: share a private service, use
// the link, revoke it.
func TestWholePath(t *testing.T) {
	env := testenv.New(t, testenv.Options{})
	org := origin(t)
	id, token, edges := env.ProvisionAgent("laptop")
	require.Len(t, edges, 1)
	ag := env.RunAgent(id, token, edges)
	svc := env.Expose(ag, "web", org.URL)
	sh := env.Share(svc.ID, client.CreateShareRequest{Name: "demo", ExpiresIn: "1h"})
	require.True(t, strings.HasPrefix(sh.ShareURL, "http://"+env.Edges[0].HTTPAddr()+"/shared/"), sh.ShareURL)

	code, body := get(t, sh.ShareURL+"/hello?x=1")
	require.Equal(t, 200, code)
	require.Equal(t, "hello from origin: GET /hello?x=1", body)

	// The agent shows online through the API.
	require.Eventually(t, func() bool {
		list, _, err := env.Client.ListAgents(context.Background(), client.ListOptions{}, client.AgentFilter{})
		return err == nil && len(list) == 1 && list[0].IsOnline
	}, 3*time.Second, 20*time.Millisecond)

	// What the service sees of the visitor: forwarded headers added,
	// hop-by-hop headers (and those named in Connection) removed, its own
	// host:port as Host.
	req, _ := http.NewRequest("GET", sh.ShareURL+"/echo-headers", nil)
	req.Header.Set("Connection", "X-Hop")
	req.Header.Set("X-Hop", "drop-me")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, 200, resp.StatusCode)
	require.Equal(t, "127.0.0.1", resp.Header.Get("Seen-X-Forwarded-For"))
	require.Equal(t, env.Edges[0].HTTPAddr(), resp.Header.Get("Seen-X-Forwarded-Host"))
	require.Equal(t, "http", resp.Header.Get("Seen-X-Forwarded-Proto"))
	require.Equal(t, sh.ID, resp.Header.Get("Seen-X-Share-Id"))
	require.Empty(t, resp.Header.Get("Seen-X-Hop"), "headers named in Connection are hop-by-hop")
	require.Equal(t, strings.TrimPrefix(org.URL, "http://"), resp.Header.Get("Seen-Host"))

	// Public info of the link.
	code, body = get(t, env.ControlURL()+"/v1/shared/"+sh.Token+"/info")
	require.Equal(t, 200, code)
	require.Contains(t, body, `"serviceName":"web"`)

	// Revoke: the edge answers 404/410 within 1 s.
	start := time.Now()
	require.NoError(t, env.Client.RevokeShare(context.Background(), sh.ID))
	eventuallyStatus(t, sh.ShareURL+"/", 410, time.Second)
	t.Logf("revocation in force after %v", time.Since(start))
}

func TestStreamsAndWebSocket(t *testing.T) {
	env := testenv.New(t, testenv.Options{})
	org := origin(t)
	_, svc := env.ExposeAgent("a", "web", org.URL)
	sh := env.Share(svc.ID, client.CreateShareRequest{ExpiresIn: "1h"})

	// 100 MiB streamed upload.
	const size = 100 << 20
	resp, err := http.Post(sh.ShareURL+"/upload", "application/octet-stream", io.LimitReader(zeros{}, size))
	require.NoError(t, err)
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Equal(t, fmt.Sprint(size), string(b))

	// SSE arrives event by event.
	resp, err = http.Get(sh.ShareURL + "/sse")
	require.NoError(t, err)
	br := bufio.NewReader(resp.Body)
	for i := 0; i < 5; i++ {
		line, err := br.ReadString('\n')
		require.NoError(t, err)
		require.Equal(t, fmt.Sprintf("data: %d\n", i), line)
		_, _ = br.ReadString('\n')
	}
	resp.Body.Close()

	// WebSocket echo.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(sh.ShareURL, "http")+"/ws", nil)
	require.NoError(t, err)
	for i := 0; i < 3; i++ {
		require.NoError(t, c.Write(ctx, websocket.MessageBinary, []byte{byte(i), 1, 2}))
		_, got, err := c.Read(ctx)
		require.NoError(t, err)
		require.Equal(t, []byte{byte(i), 1, 2}, got)
	}
	c.Close(websocket.StatusNormalClosure, "")
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// TestAgentDropAndReconnect: a request in flight when the tunnel drops gets
// 502 at once; a new agent session serves again within 2 s.
func TestAgentDropAndReconnect(t *testing.T) {
	env := testenv.New(t, testenv.Options{})
	org := origin(t)
	id, token, edges := env.ProvisionAgent("a")
	ag := env.RunAgent(id, token, edges)
	svc := env.Expose(ag, "web", org.URL)
	sh := env.Share(svc.ID, client.CreateShareRequest{ExpiresIn: "1h"})

	done := make(chan int, 1)
	go func() {
		code, _ := get(t, sh.ShareURL+"/slow")
		done <- code
	}()
	time.Sleep(200 * time.Millisecond)
	ag.Stop()
	select {
	case code := <-done:
		require.Equal(t, 502, code)
	case <-time.After(3 * time.Second):
		t.Fatal("request hung after the agent dropped")
	}
	eventuallyStatus(t, sh.ShareURL+"/", 503, 2*time.Second)

	start := time.Now()
	env.RunAgent(id, token, edges)
	eventuallyStatus(t, sh.ShareURL+"/", 200, 2*time.Second)
	t.Logf("serving again %v after reconnect", time.Since(start))
}

// TestEdgeServesFromSnapshotWhileControlDown: restart the edge while the
// control plane is down; it serves from its saved snapshot, and picks up
// changes once control is back.
func TestEdgeServesFromSnapshotWhileControlDown(t *testing.T) {
	env := testenv.New(t, testenv.Options{})
	org := origin(t)
	ag, svc := env.ExposeAgent("a", "web", org.URL)
	id := ag.ID
	sh := env.Share(svc.ID, client.CreateShareRequest{ExpiresIn: "1h"})
	eventuallyStatus(t, sh.ShareURL+"/", 200, 2*time.Second)
	time.Sleep(1200 * time.Millisecond) // the edge persists at most once a second

	env.StopControl()
	env.RestartEdge(env.Edges[0])
	env.WaitAgentOnEdges(id, 5*time.Second)
	eventuallyStatus(t, sh.ShareURL+"/", 200, 3*time.Second)

	// Control comes back; a revocation made now reaches the edge.
	env.StartControl()
	require.NoError(t, env.Client.RevokeShare(context.Background(), sh.ID))
	eventuallyStatus(t, sh.ShareURL+"/", 410, 5*time.Second)
}

// TestSSEStopsWhenTheVisitorLeaves: an endless response stops at the
// service as soon as the visitor goes away (nothing streams into the void).
func TestSSEStopsWhenTheVisitorLeaves(t *testing.T) {
	env := testenv.New(t, testenv.Options{})
	ended := make(chan struct{}, 1)
	org := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		defer func() { ended <- struct{}{} }()
		for i := 0; ; i++ {
			if _, err := fmt.Fprintf(w, "data: %d\n\n", i); err != nil {
				return
			}
			w.(http.Flusher).Flush()
			select {
			case <-r.Context().Done():
				return
			case <-time.After(10 * time.Millisecond):
			}
		}
	}))
	defer org.Close()
	_, svc := env.ExposeAgent("a", "web", org.URL)
	sh := env.Share(svc.ID, client.CreateShareRequest{})
	resp, err := http.Get(sh.ShareURL + "/events")
	require.NoError(t, err)
	line, err := bufio.NewReader(resp.Body).ReadString('\n')
	require.NoError(t, err)
	require.Equal(t, "data: 0\n", line)
	resp.Body.Close()
	select {
	case <-ended:
	case <-time.After(3 * time.Second):
		t.Fatal("the service kept streaming after the visitor left")
	}
}

// Revoking a share ends its open exchanges too: an event stream and a
// WebSocket opened before the revocation stop within the propagation bound,
// not only the requests that come after it. Pausing the tunnel does the same.
func TestRevocationEndsOpenStreams(t *testing.T) {
	env := testenv.New(t, testenv.Options{})
	org := origin(t)
	_, svc := env.ExposeAgent("a", "web", org.URL)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	open := func(sh *client.Share) (*bufio.Reader, *websocket.Conn, func()) {
		resp, err := http.Get(sh.ShareURL + "/sse")
		require.NoError(t, err)
		require.Equal(t, 200, resp.StatusCode)
		br := bufio.NewReader(resp.Body)
		_, err = br.ReadString('\n')
		require.NoError(t, err)
		c, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(sh.ShareURL, "http")+"/ws", nil)
		require.NoError(t, err)
		require.NoError(t, c.Write(ctx, websocket.MessageText, []byte("hi")))
		_, _, err = c.Read(ctx)
		require.NoError(t, err)
		return br, c, func() { resp.Body.Close(); c.CloseNow() }
	}
	ended := func(br *bufio.Reader, c *websocket.Conn) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for { // events keep coming until the stream is cut
			if _, err := br.ReadString('\n'); err != nil {
				break
			}
			require.True(t, time.Now().Before(deadline), "the event stream outlived the change")
		}
		// A visitor that only listens (a feed) must see its WebSocket end,
		// not fall silent.
		wctx, wcancel := context.WithTimeout(ctx, 5*time.Second)
		defer wcancel()
		_, _, err := c.Read(wctx)
		require.Error(t, err, "the WebSocket outlived the change")
		require.NoError(t, wctx.Err(), "the WebSocket was not ended, only silent")
	}

	sh := env.Share(svc.ID, client.CreateShareRequest{Name: "revoked"})
	br, c, done := open(sh)
	defer done()
	other := env.Share(svc.ID, client.CreateShareRequest{Name: "kept"})
	obr, oc, odone := open(other)
	defer odone()
	start := time.Now()
	require.NoError(t, env.Client.RevokeShare(ctx, sh.ID))
	ended(br, c)
	t.Logf("streams of the revoked share ended %v after the API answered", time.Since(start).Round(time.Millisecond))
	// Another share's streams go on.
	_, err := obr.ReadString('\n')
	require.NoError(t, err)
	require.NoError(t, oc.Write(ctx, websocket.MessageText, []byte("hi")))
	_, _, err = oc.Read(ctx)
	require.NoError(t, err)

	// Pausing the tunnel.
	start = time.Now()
	_, err = env.Client.PauseTunnel(ctx, svc.ID)
	require.NoError(t, err)
	ended(obr, oc)
	t.Logf("and those of a paused tunnel %v after", time.Since(start).Round(time.Millisecond))
}

// TestHopByHopHeaders: every Proxy-* header and the headers a Connection
// header names stay on their hop, both ways and whatever the case the
// service writes them in (they passed: only a fixed list was removed, and
// on responses not the names Connection lists).
func TestHopByHopHeaders(t *testing.T) {
	env := testenv.New(t, testenv.Options{})
	heads := make(chan string, 4)
	ln := tcpService(t, func(c net.Conn) {
		defer c.Close()
		br := bufio.NewReader(c)
		var head strings.Builder
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				return
			}
			head.WriteString(line)
			if line == "\r\n" {
				break
			}
		}
		heads <- head.String()
		status := "200 OK"
		if strings.Contains(strings.ToLower(head.String()), "upgrade: websocket") {
			status = "400 Bad Request" // a refused upgrade is relayed like any answer
		}
		fmt.Fprint(c, "HTTP/1.1 "+status+"\r\nContent-Length: 2\r\nconnection: x-secret\r\nx-secret: s3\r\nproxy-foo: bar\r\n"+
			"keep-alive: timeout=5\r\nupgrade: h2c\r\nte: trailers\r\nX-Kept: yes\r\n\r\nok")
	})
	_, svc := env.ExposeAgent("a", "web", "http://"+ln.Addr().String())
	sh := env.Share(svc.ID, client.CreateShareRequest{})
	req, _ := http.NewRequest("GET", sh.ShareURL+"/", nil)
	req.Header.Set("Proxy-Foo", "v")
	req.Header.Set("Connection", "X-Named")
	req.Header.Set("X-Named", "1")
	req.Header.Set("X-Kept", "1")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, 200, resp.StatusCode)
	head := strings.ToLower(<-heads)
	require.Contains(t, head, "x-kept: 1")
	require.NotContains(t, head, "proxy-foo")
	require.NotContains(t, head, "x-named")
	hopFree := func(resp *http.Response) {
		t.Helper()
		require.Equal(t, "yes", resp.Header.Get("X-Kept"))
		for _, h := range []string{"X-Secret", "Proxy-Foo", "Keep-Alive", "Upgrade", "Te"} {
			require.Empty(t, resp.Header.Values(h), h)
		}
		// The service sent no Content-Type: none is made up.
		require.Empty(t, resp.Header.Values("Content-Type"))
	}
	hopFree(resp)
	// The same for a refused WebSocket upgrade, relayed by another path.
	req, _ = http.NewRequest("GET", sh.ShareURL+"/ws", nil)
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", "websocket")
	req.Header.Set("Sec-WebSocket-Version", "13")
	req.Header.Set("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
	resp, err = http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, 400, resp.StatusCode)
	<-heads
	hopFree(resp)
	// CONNECT and TRACE are not for a share's service.
	for _, m := range []string{"TRACE", "CONNECT"} {
		req, _ := http.NewRequest(m, sh.ShareURL+"/", nil)
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		require.Equal(t, 405, resp.StatusCode, m)
	}
	select {
	case h := <-heads:
		t.Fatalf("the service got %q", h)
	default:
	}
}

// An "auto" service is probed from its agent (api-v1.md): one that answers
// HTTP becomes http; one that does not stays auto (never taken for raw TCP
// on a guess).
func TestAutoProtocolDetection(t *testing.T) {
	env := testenv.New(t, testenv.Options{})
	org := origin(t)
	ag, _ := env.ExposeAgent("a", "web", org.URL)
	host, port, err := net.SplitHostPort(strings.TrimPrefix(org.URL, "http://"))
	require.NoError(t, err)
	p, _ := strconv.Atoi(port)
	web := env.ExposeProtocol(ag, "auto-web", host, p, "auto")

	ln := tcpService(t, func(c net.Conn) {
		fmt.Fprint(c, "220 not http\r\n")
		c.Close()
	})
	raw := env.ExposeProtocol(ag, "auto-raw", "127.0.0.1", ln.Addr().(*net.TCPAddr).Port, "auto")

	// TLS on a port other than 443 (asked in plain HTTP it answers a 400,
	// which had read as http).
	tlsOrg := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "tls") }))
	t.Cleanup(tlsOrg.Close)
	tlsPort := tlsOrg.Listener.Addr().(*net.TCPAddr).Port
	secure := env.ExposeProtocol(ag, "auto-tls", "127.0.0.1", tlsPort, "auto")

	ctx := context.Background()
	require.Eventually(t, func() bool {
		s, err := env.Client.GetService(ctx, web.ID)
		return err == nil && s.Protocol == "http"
	}, 10*time.Second, 50*time.Millisecond, "the HTTP target is detected")
	require.Eventually(t, func() bool {
		s, err := env.Client.GetService(ctx, secure.ID)
		return err == nil && s.Protocol == "https"
	}, 10*time.Second, 50*time.Millisecond, "the TLS target is detected")
	require.Eventually(t, func() bool {
		d, _, err := env.Client.ListDiagnostics(ctx, raw.ID, client.ListOptions{})
		return err == nil && len(d) > 0
	}, 10*time.Second, 50*time.Millisecond, "the other target is probed")
	s, err := env.Client.GetService(ctx, raw.ID)
	require.NoError(t, err)
	require.Equal(t, "auto", s.Protocol)
}

// A streamed answer whose service stops early reaches the visitor as a
// truncated answer (its head, then the end), not as an empty reply: the
// head goes out as soon as the service's arrives.
func TestStreamedAnswerCutShort(t *testing.T) {
	env := testenv.New(t, testenv.Options{})
	ln := tcpService(t, func(c net.Conn) {
		defer c.Close()
		br := bufio.NewReader(c)
		for {
			line, err := br.ReadString('\n')
			if err != nil || line == "\r\n" {
				break
			}
		}
		fmt.Fprint(c, "HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n")
		_, _ = c.Write(make([]byte, 1000))
		time.Sleep(100 * time.Millisecond)
	})
	_, svc := env.ExposeAgent("a", "web", "http://"+ln.Addr().String())
	sh := env.Share(svc.ID, client.CreateShareRequest{})
	u, err := url.Parse(sh.ShareURL)
	require.NoError(t, err)
	c, err := net.Dial("tcp", u.Host)
	require.NoError(t, err)
	defer c.Close()
	fmt.Fprintf(c, "GET %s/ HTTP/1.1\r\nHost: x\r\n\r\n", u.Path)
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	got, _ := io.ReadAll(c)
	require.True(t, strings.HasPrefix(string(got), "HTTP/1.1 200 OK\r\n"), "%.200q", got)
	_, body, _ := strings.Cut(string(got), "\r\n\r\n")
	require.Equal(t, 1000, len(body), "what the service sent, then the connection closed")
}
