package e2e

import (
	"bufio"
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

// TestUpgradeToAnotherProtocol: a WebSocket upgrade reaches the service as
// a WebSocket upgrade only, and a 101 to anything else is refused; an
// upgrade with a body is refused. The
// service here reads the Upgrade header as Hypercorn does (its last line
// wins, and "h2c" switches the connection to HTTP/2, with no Connection
// check): the edge, which saw "websocket" on the first line, forwarded
// both lines and piped the visitor to the service's HTTP/2, whose
// requests (here /admin/secret) never met the share's allowedPaths.
func TestUpgradeToAnotherProtocol(t *testing.T) {
	env := testenv.New(t, testenv.Options{})
	var mu sync.Mutex
	var upgrades [][]string // the Upgrade lines of each upgrade request
	var switched []string   // requests read after a switch to h2c
	ln := tcpService(t, func(c net.Conn) {
		defer c.Close()
		br := bufio.NewReader(c)
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		ups := req.Header.Values("Upgrade")
		mu.Lock()
		upgrades = append(upgrades, ups)
		mu.Unlock()
		last := ""
		if len(ups) > 0 {
			last = strings.ToLower(strings.TrimSpace(ups[len(ups)-1]))
		}
		switch {
		case last == "h2c" || req.URL.Path == "/public/always-h2c":
			_, _ = io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: h2c\r\n\r\n")
			// What follows is the new protocol's (HTTP/2 here; an HTTP/1
			// request stands in for its frames).
			if next, err := http.ReadRequest(br); err == nil {
				mu.Lock()
				switched = append(switched, next.URL.Path)
				mu.Unlock()
				_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nsecret")
			}
		case last == "websocket":
			_, _ = io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n")
			_, _ = io.Copy(io.Discard, br) // WebSocket frames
		default:
			_, _ = io.WriteString(c, "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
		}
	})
	_, svc := env.ExposeAgent("a", "hypercorn-like", ln.Addr().String())
	sh := env.Share(svc.ID, client.CreateShareRequest{Name: "ws", AllowedPaths: []string{"/public/*"}})
	addr := env.Edges[0].HTTPAddr()
	T := "/shared/" + sh.Token
	code, _ := get(t, "http://"+addr+T+"/admin/secret")
	require.Equal(t, 403, code, "the policy is in force")

	upgrade := func(path string, lines ...string) (int, net.Conn, *bufio.Reader) {
		c, err := net.Dial("tcp", addr)
		require.NoError(t, err)
		t.Cleanup(func() { c.Close() })
		head := "GET " + T + path + " HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\n" + strings.Join(lines, "\r\n") +
			"\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
		_, err = io.WriteString(c, head)
		require.NoError(t, err)
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		br := bufio.NewReader(c)
		resp, err := http.ReadResponse(br, nil)
		require.NoError(t, err)
		if resp.StatusCode != http.StatusSwitchingProtocols {
			_, _ = io.Copy(io.Discard, resp.Body)
		}
		return resp.StatusCode, c, br
	}

	// Two Upgrade lines: the service gets "websocket" alone, and what the
	// visitor sends after the 101 are WebSocket bytes, not requests.
	status, c, _ := upgrade("/public/ws", "Upgrade: websocket", "Upgrade: h2c")
	require.Equal(t, http.StatusSwitchingProtocols, status)
	_, err := io.WriteString(c, "GET /admin/secret HTTP/1.1\r\nHost: h\r\n\r\n")
	require.NoError(t, err)

	// A 101 to another protocol than the one asked for is not relayed.
	status, _, _ = upgrade("/public/always-h2c", "Upgrade: websocket")
	require.Equal(t, http.StatusBadGateway, status)

	// An upgrade with a body is refused: the service would have waited
	// for its bytes, which were the visitor's first frames.
	c2, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	defer c2.Close()
	_, err = io.WriteString(c2, "GET "+T+"/public/ws HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"+
		"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nContent-Length: 5\r\n\r\nhello")
	require.NoError(t, err)
	_ = c2.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(c2), nil)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusBadRequest, resp.StatusCode)

	time.Sleep(300 * time.Millisecond)
	mu.Lock()
	defer mu.Unlock()
	require.Empty(t, switched, "requests reached the service past the policy, through a switch to h2c")
	require.Equal(t, [][]string{{"websocket"}, {"websocket"}}, upgrades, "the service gets the WebSocket upgrade alone")
}
