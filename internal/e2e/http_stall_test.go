package e2e

import (
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
	"time"

	"github.com/privateconnect/pc/edge"
	"github.com/privateconnect/pc/internal/testenv"
	"github.com/privateconnect/pc/sdk/agent"
	"github.com/privateconnect/pc/sdk/client"
	"github.com/stretchr/testify/require"
)

// TestHTTPVisitorsThatStopReadingDoNotStallTheSession: the share-link form
// of TestVisitorsThatStopReadingDoNotStallTheSession. Downloads whose
// visitors stop reading each hold their stream's window of the agent
// session's receive buffer; eight of them stopped every other request
// through that agent, for as long as they stayed. The edge now resets a
// visitor whose write made no progress for VisitorWriteTimeout.
func TestHTTPVisitorsThatStopReadingDoNotStallTheSession(t *testing.T) {
	env := testenv.New(t, testenv.Options{Edge: func(c *edge.Config) { c.VisitorWriteTimeout = 500 * time.Millisecond }})
	flood := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		buf := make([]byte, 32<<10)
		for {
			if _, err := w.Write(buf); err != nil {
				return
			}
		}
	}))
	t.Cleanup(flood.CloseClientConnections)
	t.Cleanup(flood.Close)
	ag, fs := env.ExposeAgent("host", "flood", flood.URL)
	u, webURL := sharesBeside(t, env, ag, fs, "/big")
	for range 8 {
		c, err := net.Dial("tcp", u.Host)
		require.NoError(t, err)
		_ = c.(*net.TCPConn).SetReadBuffer(4096)
		defer c.Close() // never read
		_, err = fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: %s\r\n\r\n", u.Path, u.Host)
		require.NoError(t, err)
	}
	time.Sleep(2 * time.Second) // the windows fill; the write timeout passes
	require.Eventually(t, answers(webURL), 10*time.Second, 100*time.Millisecond,
		"the agent's other requests stay stalled behind visitors that stopped reading")
}

// TestHTTPServicesThatStopReadingDoNotStallTheSession: uploads through share
// links into an HTTP service that stops reading fill the agent session's
// receive buffer the same way; the agent's writes to HTTP services are
// timed by progress as its writes to TCP services are (TargetWriteTimeout).
func TestHTTPServicesThatStopReadingDoNotStallTheSession(t *testing.T) {
	env := testenv.New(t, testenv.Options{})
	hold := make(chan struct{})
	defer close(hold)
	sink := tcpService(t, func(c net.Conn) { // accepts, never reads
		_ = c.(*net.TCPConn).SetReadBuffer(4096)
		<-hold
		c.Close()
	})
	id, token, edges := env.ProvisionAgent("host")
	ag := env.RunAgentWith(id, token, edges, func(c *agent.Config) { c.TargetWriteTimeout = 500 * time.Millisecond })
	ss := env.ExposeProtocol(ag, "sink", "127.0.0.1", sink.Addr().(*net.TCPAddr).Port, "http")
	u, webURL := sharesBeside(t, env, ag, ss, "/upload")
	for range 8 {
		c, err := net.Dial("tcp", u.Host)
		require.NoError(t, err)
		defer c.Close()
		go func() {
			_ = c.SetWriteDeadline(time.Now().Add(20 * time.Second))
			const n = 16 << 20
			if _, err := fmt.Fprintf(c, "POST %s HTTP/1.1\r\nHost: %s\r\nContent-Length: %d\r\n\r\n", u.Path, u.Host, n); err == nil {
				_, _ = c.Write(make([]byte, n))
			}
		}()
	}
	time.Sleep(2 * time.Second)
	require.Eventually(t, answers(webURL), 10*time.Second, 100*time.Millisecond,
		"the agent's other requests stay stalled behind a service that stopped reading")
}

// answers reports whether url answers 200 within 3 s (a stalled session
// must fail the probe, not hang it).
func answers(url string) func() bool {
	probe := &http.Client{Timeout: 3 * time.Second}
	return func() bool {
		resp, err := probe.Get(url)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	}
}

// sharesBeside shares svc, and a web service it exposes beside it on the
// same agent: it returns svc's share URL for path, and the web share's URL
// once it answers (the probe of a session that must not stall).
func sharesBeside(t *testing.T, env *testenv.Env, ag *testenv.Agent, svc *client.Service, path string) (*url.URL, string) {
	t.Helper()
	ws := env.Expose(ag, "web", origin(t).URL)
	webURL := testenv.ShareURL(env.Edges[0], env.Share(ws.ID, client.CreateShareRequest{}).Token) + "/"
	eventuallyStatus(t, webURL, 200, 5*time.Second)
	u, err := url.Parse(testenv.ShareURL(env.Edges[0], env.Share(svc.ID, client.CreateShareRequest{}).Token) + path)
	require.NoError(t, err)
	return u, webURL
}
