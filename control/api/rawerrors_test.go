package api_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestUnparsableRequestsCarrySecurityHeaders: the answers fasthttp's
// ErrorHandler gives to requests it cannot read carry the security headers
// of every handler answer (api-v1.md), and the error envelope.
func TestUnparsableRequestsCarrySecurityHeaders(t *testing.T) {
	h := newHarness(t)
	addr := strings.TrimPrefix(h.base, "http://")
	for _, tc := range []struct {
		name   string
		raw    string
		status int
	}{
		{"garbage request line", "THIS IS NOT HTTP\r\n\r\n", 400},
		{"duplicate Content-Length", "POST /v1/services/register HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n" +
			"Content-Length: 2\r\nContent-Length: 3\r\n\r\n{}", 400},
		{"20 KB header", "GET /v1/services HTTP/1.1\r\nHost: x\r\nX-Big: " + strings.Repeat("a", 20<<10) + "\r\n\r\n", 431},
		{"body past the read limit", "POST /v1/services/register HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n" +
			"Content-Length: 104857600\r\n\r\n{", 413},
	} {
		t.Run(tc.name, func(t *testing.T) {
			conn, err := net.Dial("tcp", addr)
			require.NoError(t, err)
			defer conn.Close()
			require.NoError(t, conn.SetDeadline(time.Now().Add(10*time.Second)))
			_, err = io.WriteString(conn, tc.raw)
			require.NoError(t, err)
			res, err := http.ReadResponse(bufio.NewReader(conn), nil)
			require.NoError(t, err)
			defer res.Body.Close()
			raw, _ := io.ReadAll(res.Body)
			require.Equal(t, tc.status, res.StatusCode, "%s", raw)
			assert.Contains(t, string(raw), `"statusCode":`, "the error envelope")
			// The status line's reason is the envelope's error.
			assert.Contains(t, string(raw), `"error":"`+strings.TrimPrefix(res.Status, fmt.Sprint(tc.status)+" ")+`"`)
			assert.Equal(t, "nosniff", res.Header.Get("X-Content-Type-Options"))
			assert.Equal(t, "DENY", res.Header.Get("X-Frame-Options"))
			assert.Equal(t, "strict-origin-when-cross-origin", res.Header.Get("Referrer-Policy"))
			assert.Contains(t, res.Header.Get("Content-Security-Policy"), "default-src 'none'")
		})
	}
}
