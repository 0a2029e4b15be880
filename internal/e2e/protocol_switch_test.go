package e2e

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/privateconnect/pc/internal/testenv"
	"github.com/privateconnect/pc/sdk/client"
)

// TestUnaskedProtocolSwitch: a service that answers a plain request with
// "101 Switching Protocols" (here followed by a 200, as a confused server
// might) gets its visitor a 502 at once, and the tunnel stream is dropped:
// every later request through the share gets its own response. The edge
// used to relay the 101 (the visitor then waited for a protocol that never
// came) and put the stream back in its pool with the 200 unread, so each
// later request got the response of the one before it, Set-Cookie included.
// Interim responses the HTTP client skips (103 Early Hints) still work.
func TestUnaskedProtocolSwitch(t *testing.T) {
	env := testenv.New(t, testenv.Options{})
	var mu sync.Mutex
	seen := map[string]int{} // requests the service got, by path
	ln := tcpService(t, func(c net.Conn) {
		defer c.Close()
		br := bufio.NewReader(c)
		for {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			_, _ = io.Copy(io.Discard, req.Body)
			path := req.URL.Path
			mu.Lock()
			seen[path]++
			mu.Unlock()
			own := func(p string) string {
				return fmt.Sprintf("HTTP/1.1 200 OK\r\nSet-Cookie: session=%s\r\nContent-Length: %d\r\n\r\nfor %s", p, len("for ")+len(p), p)
			}
			const switched = "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n"
			const hints = "HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n"
			switch path {
			case "/switch": // the 200 comes a moment later: the stream holds it
				_, _ = io.WriteString(c, switched)
				time.Sleep(50 * time.Millisecond)
				_, _ = io.WriteString(c, own(path))
			case "/switch-at-once":
				_, _ = io.WriteString(c, switched+own(path))
			case "/hints-then-switch":
				_, _ = io.WriteString(c, hints)
				time.Sleep(20 * time.Millisecond)
				_, _ = io.WriteString(c, switched)
				time.Sleep(50 * time.Millisecond)
				_, _ = io.WriteString(c, own(path))
			case "/hints":
				_, _ = io.WriteString(c, hints)
				time.Sleep(20 * time.Millisecond)
				_, _ = io.WriteString(c, own(path))
			default:
				_, _ = io.WriteString(c, own(path))
			}
		}
	})
	_, svc := env.ExposeAgent("a", "raw", "http://"+ln.Addr().String())
	sh := env.Share(svc.ID, client.CreateShareRequest{})

	// get requests path on a visitor connection of its own.
	get := func(t *testing.T, path string) (status int, cookie, body string) {
		t.Helper()
		c, err := net.Dial("tcp", env.Edges[0].HTTPAddr())
		require.NoError(t, err)
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(3 * time.Second))
		fmt.Fprintf(c, "GET /shared/%s%s HTTP/1.1\r\nHost: x\r\n\r\n", sh.Token, path)
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		require.NoError(t, err, "no answer for %s", path)
		b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<10))
		if resp.ContentLength >= 0 {
			require.NoError(t, err, "the body of %s", path)
		}
		return resp.StatusCode, resp.Header.Get("Set-Cookie"), string(b)
	}
	// own checks that the following requests get their own responses (they
	// run one after another: each reuses the stream the one before left).
	own := func(t *testing.T, tag string) {
		t.Helper()
		for i := range 4 {
			p := fmt.Sprintf("/%s-%d", tag, i)
			status, cookie, body := get(t, p)
			require.Equal(t, 200, status, "%s: %s", p, body)
			require.Equal(t, "for "+p, body, "%s got another request's response", p)
			require.Equal(t, "session="+p, cookie)
		}
	}
	own(t, "warm")
	for _, path := range []string{"/switch", "/switch-at-once", "/hints-then-switch"} {
		t.Run(strings.TrimPrefix(path, "/"), func(t *testing.T) {
			start := time.Now()
			status, cookie, body := get(t, path)
			require.Equal(t, 502, status, "body %q", body)
			require.Less(t, time.Since(start), 2*time.Second)
			require.Contains(t, body, `"statusCode":502`)
			require.Empty(t, cookie, "none of the service's head goes with the error")
			own(t, "after"+path[1:])
			mu.Lock()
			sent := seen[path]
			mu.Unlock()
			require.Equal(t, 1, sent, "the request was sent again")
		})
	}
	t.Run("early hints", func(t *testing.T) {
		status, cookie, body := get(t, "/hints")
		require.Equal(t, 200, status)
		require.Equal(t, "for /hints", body)
		require.Equal(t, "session=/hints", cookie)
		own(t, "after-hints")
	})
}
