package e2e

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/privateconnect/pc/internal/testenv"
	"github.com/privateconnect/pc/internal/testwasm"
	"github.com/privateconnect/pc/sdk/client"
)

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
		pl, err := env.Client.UploadPlugin(ctx, fmt.Sprintf("respond-%d", status), "1", strings.NewReader(string(testwasm.Respond(status))))
		require.NoError(t, err)
		sh := env.Share(svc.ID, client.CreateShareRequest{Plugins: []client.SharePlugin{{PluginID: pl.ID}}})
		host := strings.TrimPrefix(sh.ShareURL, "http://")
		host, path, _ := strings.Cut(host, "/")
		var resp *http.Response
		var body string
		deadline := time.Now().Add(30 * time.Second)
		for {
			resp, body = rawResponse(t, host, fmt.Sprintf("GET /%s/ HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", path, host))
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
