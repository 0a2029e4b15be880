package e2e

// The edge's HTTP server against raw sockets: answers it writes before any
// share handler runs, the time a visitor has to send a request head,
// Expect: 100-continue, and the request body limit.

import (
	"bufio"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/privateconnect/pc/internal/testenv"
)

// rawResponse writes payload on a new connection to addr and reads one
// response.
func rawResponse(t *testing.T, addr, payload string) (*http.Response, string) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	defer c.Close()
	_, err = io.WriteString(c, payload)
	require.NoError(t, err)
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	require.NoError(t, err)
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	resp.Body.Close()
	return resp, string(b)
}

// requireEnvelope checks an answer the edge wrote itself: the status, and
// the API's error envelope with the edge's security header.
func requireEnvelope(t *testing.T, resp *http.Response, body string, status int) {
	t.Helper()
	require.Equal(t, status, resp.StatusCode, "%s", body)
	require.Equal(t, "application/json", resp.Header.Get("Content-Type"), "%s", body)
	require.Equal(t, "nosniff", resp.Header.Get("X-Content-Type-Options"))
	var env struct {
		Error      string `json:"error"`
		Message    string `json:"message"`
		StatusCode int    `json:"statusCode"`
	}
	require.NoError(t, json.Unmarshal([]byte(body), &env), "%q", body)
	require.Equal(t, http.StatusText(status), env.Error)
	require.Equal(t, status, env.StatusCode)
	require.NotEmpty(t, env.Message)
}

// TestEdgeParseErrorsAreEnvelopes: requests fasthttp refuses before the
// share handler runs (ambiguous framing, two Hosts, a head past the read
// buffer) get the error envelope of dataplane.md, not fasthttp's plain
// text, and the connection is closed.
func TestEdgeParseErrorsAreEnvelopes(t *testing.T) {
	env := testenv.New(t, testenv.Options{})
	addr := env.Edges[0].HTTPAddr()
	const p = "/shared/abc/x"
	for _, tc := range []struct {
		name, raw string
		status    int
	}{
		{"duplicate Content-Length", "POST " + p + " HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\nContent-Length: 4\r\n\r\nabcd", 400},
		{"obfuscated Transfer-Encoding", "POST " + p + " HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n", 400},
		{"two Host headers", "GET " + p + " HTTP/1.1\r\nHost: h\r\nHost: evil\r\n\r\n", 400},
		{"negative Content-Length", "POST " + p + " HTTP/1.1\r\nHost: h\r\nContent-Length: -5\r\n\r\n", 400},
		{"headers over the read buffer", "GET " + p + " HTTP/1.1\r\nHost: h\r\nX-Big: " + strings.Repeat("a", 20<<10) + "\r\n\r\n", 431},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := rawResponse(t, addr, tc.raw)
			requireEnvelope(t, resp, body, tc.status)
			require.True(t, resp.Close, "the connection is closed after a request that could not be read")
		})
	}
}
