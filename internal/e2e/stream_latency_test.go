package e2e

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/privateconnect/pc/internal/testenv"
	"github.com/privateconnect/pc/sdk/client"
)

// TestStreamedAnswersLatency: the latency of a request (its access log's
// latencyMs, pc_edge_request_duration_seconds) is the time to its answer's
// head, as for every request, also for a streamed body and a WebSocket,
// which are recorded when they end: an event stream of an hour counted as an
// hour of latency swamped the latency percentiles.
func TestStreamedAnswersLatency(t *testing.T) {
	const hold = 1500 * time.Millisecond
	env := testenv.New(t, testenv.Options{})
	ln := rawHTTPService(t, func(c net.Conn, path string) {
		switch path {
		case "/events": // the head at once, the body over hold
			_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n")
			for i := range 3 {
				msg := fmt.Sprintf("data: %d\n\n", i)
				_, _ = fmt.Fprintf(c, "%x\r\n%s\r\n", len(msg), msg)
				time.Sleep(hold / 3)
			}
			_, _ = io.WriteString(c, "0\r\n\r\n")
		case "/ws": // a 101 at once, open for hold
			_, _ = io.WriteString(c, ws101)
			time.Sleep(hold)
			_, _ = c.Write(wsCloseFrame)
		}
	})
	_, svc := env.ExposeAgent("a", "stream", "http://"+ln.Addr().String())
	sh := env.Share(svc.ID, client.CreateShareRequest{})

	t0 := time.Now()
	resp, err := http.Get("http://" + env.Edges[0].HTTPAddr() + "/shared/" + sh.Token + "/events")
	require.NoError(t, err)
	_, err = io.ReadAll(resp.Body)
	resp.Body.Close()
	require.NoError(t, err)
	require.GreaterOrEqual(t, time.Since(t0), hold, "the stream lasted")
	status, _ := wsAttempt(t, env.Edges[0].HTTPAddr(), sh.Token, "/ws")
	require.Equal(t, http.StatusSwitchingProtocols, status)

	ctx := context.Background()
	var logs []client.ShareLog
	require.Eventually(t, func() bool {
		page, _, err := env.Client.ListShareLogs(ctx, sh.ID, client.ListOptions{Limit: 10}, client.ShareLogFilter{})
		logs = page
		return err == nil && len(page) == 2
	}, 10*time.Second, 50*time.Millisecond, "access logs")
	for _, l := range logs {
		require.Less(t, l.LatencyMs, float64(hold.Milliseconds())/2, "%s %s: latency %v ms, want the time to its head", l.Method, l.Path, l.LatencyMs)
	}
	fams := scrapeMetrics(t, "http://"+env.Edges[0].AdminAddr()+"/metrics")
	h := fams["pc_edge_request_duration_seconds"].GetMetric()[0].GetHistogram()
	require.Equal(t, uint64(2), h.GetSampleCount())
	require.Less(t, h.GetSampleSum(), hold.Seconds()/2, "seconds of latency observed in all")
}
