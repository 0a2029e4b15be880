package e2e

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/privateconnect/pc/internal/testenv"
	"github.com/privateconnect/pc/sdk/client"
)

// respondWasm answers every request RESPOND with status and no body:
//
//	(module
//	  (import "policy" "respond" (func $respond (param i32 i32 i32)))
//	  (memory (export "memory") 1)
//	  (func (export "policy_abi_version") (result i32) (i32.const 1))
//	  (func (export "handle_request") (result i32)
//	    (call $respond (i32.const STATUS) (i32.const 0) (i32.const 0))
//	    (i32.const 1)))
//
// (STATUS as a two-byte signed LEB128: 64-8191; plugins/interim_test.go has the same bytes.)
func respondWasm(t *testing.T, status int) []byte {
	return mustHex(t, "0061736d01000000010b0260037f7f7f006000017f02120106706f6c69637907726573706f6e6400000303020101"+
		"0503010001073003066d656d6f7279020012706f6c6963795f6162695f76657273696f6e00010e68616e646c655f7265717565737400020a"+
		"1402040041010b0d0041"+fmt.Sprintf("%02x%02x", byte(status&0x7f|0x80), byte(status>>7))+"41004100100041010b")
}

// TestPluginInformationalStatus: a plugin answering RESPOND with 100 or 101
// had the edge write "HTTP/1.1 100 Continue" (or 101 Switching Protocols)
// as the answer, without a body, and nothing after it: the visitor waited for
// a final response that never came. The visitor now gets 500 in the error
// envelope (a plugin error, failing closed), read here from a raw socket.
func TestPluginInformationalStatus(t *testing.T) {
	env := testenv.New(t, testenv.Options{})
	org := origin(t)
	_, svc := env.ExposeAgent("a", "web", org.URL)
	ctx := context.Background()
	for _, status := range []int{100, 101} {
		pl, err := env.Client.UploadPlugin(ctx, fmt.Sprintf("respond-%d", status), "1", strings.NewReader(string(respondWasm(t, status))))
		require.NoError(t, err)
		sh := env.Share(svc.ID, client.CreateShareRequest{Plugins: []client.SharePlugin{{PluginID: pl.ID}}})
		host := strings.TrimPrefix(sh.ShareURL, "http://")
		host, path, _ := strings.Cut(host, "/")
		var resp *http.Response
		var body string
		deadline := time.Now().Add(30 * time.Second)
		for {
			resp, body = rawGet(t, host, "/"+path+"/")
			if (resp.StatusCode != 404 && resp.StatusCode != 503) || time.Now().After(deadline) {
				break // 404 until the edge has the share, 503 until it has the plugin
			}
			time.Sleep(20 * time.Millisecond)
		}
		require.Equal(t, 500, resp.StatusCode, "plugin status %d: %s", status, body)
		require.Equal(t, "application/json", resp.Header.Get("Content-Type"))
		require.Contains(t, body, `"statusCode":500`)
		require.NotContains(t, body, "informational", "internal causes are not shown to visitors")
	}
}

// rawGet sends GET path to addr on a fresh connection and reads the first
// response there is, interim or not (a Go client waits past a 100).
func rawGet(t *testing.T, addr, path string) (*http.Response, string) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", path, addr)
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	require.NoError(t, err)
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err, "the answer's body (got %d)", resp.StatusCode)
	return resp, string(b)
}
