package e2e

import (
	"bufio"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/privateconnect/pc/edge"
	"github.com/privateconnect/pc/internal/testenv"
	"github.com/privateconnect/pc/sdk/client"
)

// wsCloseFrame is a WebSocket close frame (status 1000) as a service sends it.
var wsCloseFrame = []byte{0x88, 0x02, 0x03, 0xe8}

// wsOrigin is a raw WebSocket service: it accepts every upgrade, then ends
// the connection as the request path says: /close with a close frame and a
// FIN, /reset with a close frame and an RST, /hold not at all (it reads
// until the agent drops the connection).
func wsOrigin(t *testing.T) string {
	ln := rawHTTPService(t, func(c net.Conn, path string) {
		_, _ = io.WriteString(c, ws101)
		switch path {
		case "/close":
			_, _ = c.Write(wsCloseFrame)
		case "/reset":
			_, _ = c.Write(wsCloseFrame)
			_ = c.(*net.TCPConn).SetLinger(0)
		case "/hold":
			_, _ = io.Copy(io.Discard, c)
		}
	})
	return "http://" + ln.Addr().String()
}

// TestWebSocketEndReachesVisitor: when the service ends a WebSocket (a close
// frame and a FIN, or an RST) or its agent goes away, the visitor's
// connection ends too, on every kind of share listener (plain, TLS, PROXY
// protocol). It used to stay open until the visitor next sent something:
// the edge half-closed and closed fasthttp's hijacked connection, whose
// Close does nothing and which has no CloseWrite.
func TestWebSocketEndReachesVisitor(t *testing.T) {
	listeners := []struct {
		name string
		opts testenv.Options
		dial func(env *testenv.Env) (net.Conn, error)
	}{
		{"plain", testenv.Options{}, func(env *testenv.Env) (net.Conn, error) {
			return net.Dial("tcp", env.Edges[0].HTTPAddr())
		}},
		{"tls", testenv.Options{TLS: true}, func(env *testenv.Env) (net.Conn, error) {
			return tls.Dial("tcp", env.Edges[0].HTTPAddr(), env.ClientTLS())
		}},
		{"proxy-protocol", testenv.Options{Edge: func(c *edge.Config) {
			c.TrustedProxies = []string{"127.0.0.0/8"}
			c.ProxyProtocol = true
		}}, func(env *testenv.Env) (net.Conn, error) {
			c, err := net.Dial("tcp", env.Edges[0].HTTPAddr())
			if err == nil {
				_, err = io.WriteString(c, "PROXY TCP4 203.0.113.7 127.0.0.1 51000 80\r\n")
			}
			return c, err
		}},
	}
	for _, l := range listeners {
		t.Run(l.name, func(t *testing.T) {
			env := testenv.New(t, l.opts)
			ag, svc := env.ExposeAgent("a", "ws", wsOrigin(t))
			sh := env.Share(svc.ID, client.CreateShareRequest{})

			// open upgrades a visitor's connection to the service's path.
			open := func(t *testing.T, path string) (net.Conn, *bufio.Reader) {
				t.Helper()
				c, err := l.dial(env)
				require.NoError(t, err)
				t.Cleanup(func() { c.Close() })
				_ = c.SetDeadline(time.Now().Add(10 * time.Second))
				fmt.Fprintf(c, "GET /shared/%s%s HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"+
					"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n", sh.Token, path)
				br := bufio.NewReader(c)
				resp, err := http.ReadResponse(br, nil)
				require.NoError(t, err)
				require.Equal(t, 101, resp.StatusCode)
				return c, br
			}
			// ended reads the visitor's connection until it ends, for at
			// most within: what came, and how it ended.
			ended := func(t *testing.T, c net.Conn, br *bufio.Reader, within time.Duration) ([]byte, error) {
				t.Helper()
				_ = c.SetReadDeadline(time.Now().Add(within))
				got, err := io.ReadAll(br)
				var ne net.Error
				require.False(t, errors.As(err, &ne) && ne.Timeout(), "the visitor's connection was still open %v after the service's end (got %q)", within, got)
				return got, err
			}

			t.Run("service closes", func(t *testing.T) {
				c, br := open(t, "/close")
				got, err := ended(t, c, br, 2*time.Second)
				require.NoError(t, err, "a clean end reaches the visitor as one")
				require.Equal(t, wsCloseFrame, got)
			})
			t.Run("service resets", func(t *testing.T) {
				c, br := open(t, "/reset")
				_, _ = ended(t, c, br, 2*time.Second)
			})
			t.Run("agent stops", func(t *testing.T) {
				c, br := open(t, "/hold")
				_ = c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
				_, err := br.ReadByte()
				var ne net.Error
				require.True(t, errors.As(err, &ne) && ne.Timeout(), "the held WebSocket is open (%v)", err)
				ag.Stop()
				_, _ = ended(t, c, br, 5*time.Second)
			})
		})
	}
}
