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
	org := origin(t)
	ag, fs := env.ExposeAgent("host", "flood", flood.URL)
	ws := env.Expose(ag, "web", org.URL)
	floodShare := env.Share(fs.ID, client.CreateShareRequest{})
	webShare := env.Share(ws.ID, client.CreateShareRequest{})
	webURL := testenv.ShareURL(env.Edges[0], webShare.Token) + "/"
	eventuallyStatus(t, webURL, 200, 5*time.Second)

	u, err := url.Parse(testenv.ShareURL(env.Edges[0], floodShare.Token) + "/big")
	require.NoError(t, err)
	for range 8 {
		c, err := net.Dial("tcp", u.Host)
		require.NoError(t, err)
		_ = c.(*net.TCPConn).SetReadBuffer(4096)
		defer c.Close() // never read
		_, err = fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: %s\r\n\r\n", u.Path, u.Host)
		require.NoError(t, err)
	}
	time.Sleep(2 * time.Second) // the windows fill; the write timeout passes
	probe := &http.Client{Timeout: 3 * time.Second}
	require.Eventually(t, func() bool {
		resp, err := probe.Get(webURL)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	}, 10*time.Second, 100*time.Millisecond, "the agent's other requests stay stalled behind visitors that stopped reading")
}
