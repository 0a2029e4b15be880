package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http/httputil"
	"strconv"
	"strings"
	"time"

	"github.com/privateconnect/pc/sdk/client"
)

func init() {
	register(scenario{name: "websocket-echo", desc: "WebSocket echo, 64 connections, 128-byte messages", target: "throughput ratio reported (no spec target)",
		run: runWebSocket})
	register(scenario{name: "sse", desc: "Server-Sent Events, 64 streams × 200 events/s, delivery latency", target: "every event delivered promptly (flushing)",
		run: runSSE})
}

func runWebSocket(ctx context.Context, r *runner, res *Result) error {
	e := r.env
	conns := r.conns(64)
	msg := bytes.Repeat([]byte("m"), 128)
	phase := func(label, addr, path string) *Phase {
		return runLoad(ctx, loadSpec{Label: label, Conns: conns, Duration: r.opts.Duration, Warmup: r.warmup(r.opts.Duration),
			Rate: r.opts.Rate, Unit: unitMsgs,
			Setup: func(w *worker) (err error) {
				w.state, err = wsDial(addr, path, 10*time.Second)
				return err
			},
			Op: func(w *worker) (int64, string) {
				if err := w.state.(*wsConn).roundTrip(msg); err != nil {
					return 0, errKind(err)
				}
				return int64(2 * len(msg)), ""
			},
			Teardown: func(w *worker) { w.state.(*wsConn).close() },
		}, r.prog)
	}
	res.Direct = r.measure(false, func() *Phase { return phase(res.Scenario+"/direct", e.Origin.HTTP, "/ws") })
	res.Direct.Target = "origin " + e.Origin.HTTP
	shares, err := e.createShares(ctx, e.HTTPService, 1, client.CreateShareRequest{})
	if err != nil {
		return err
	}
	// An upgrade is one request for the share's rate limit; the messages
	// are not requests.
	path := strings.TrimPrefix(e.shareURL(shares[0]), "http://"+e.EdgeHTTP) + "/ws"
	res.System = r.measure(true, func() *Phase { return phase(res.Scenario+"/system", e.EdgeHTTP, path) })
	res.System.Target = "edge " + e.EdgeHTTP
	res.computeRatios()
	res.Pass = boolPtr(res.System.Errors == 0 && res.System.Ops > 0)
	return nil
}

// sseStream is an open event stream.
type sseStream struct {
	c net.Conn
	r *bufio.Reader
}

func sseOpen(addr, path string) (*sseStream, error) {
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return nil, err
	}
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: %s\r\nAccept: text/event-stream\r\n\r\n", path, addr)
	br := bufio.NewReaderSize(c, 16<<10)
	status, err := br.ReadString('\n')
	if err != nil {
		c.Close()
		return nil, err
	}
	if !strings.Contains(status, " 200 ") {
		c.Close()
		return nil, fmt.Errorf("sse: %s", strings.TrimSpace(status))
	}
	chunked := false
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			c.Close()
			return nil, err
		}
		line = strings.TrimSpace(line)
		if line == "" {
			break
		}
		if k, v, ok := cutHeader(line); ok && equalFold(k, "Transfer-Encoding") && strings.Contains(strings.ToLower(v), "chunked") {
			chunked = true
		}
	}
	_ = c.SetDeadline(time.Time{})
	var body io.Reader = br
	if chunked {
		body = httputil.NewChunkedReader(br)
	}
	return &sseStream{c: c, r: bufio.NewReaderSize(body, 16<<10)}, nil
}

// next reads one event and returns its delivery latency (the origin stamps
// each event with its send time; both run on this machine's clock).
func (s *sseStream) next() (time.Duration, int, error) {
	_ = s.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	n := 0
	var lat time.Duration
	got := false
	for {
		line, err := s.r.ReadSlice('\n')
		n += len(line)
		if err != nil {
			return 0, n, err
		}
		if len(bytes.TrimSpace(line)) == 0 {
			if got {
				return lat, n, nil
			}
			continue
		}
		if rest, ok := bytes.CutPrefix(line, []byte("data: ")); ok {
			f, _, _ := bytes.Cut(rest, []byte(" "))
			ts, err := strconv.ParseInt(string(bytes.TrimSpace(f)), 10, 64)
			if err != nil {
				return 0, n, fmt.Errorf("sse: bad event %q", line)
			}
			lat, got = time.Since(time.Unix(0, ts)), true
		}
	}
}

func runSSE(ctx context.Context, r *runner, res *Result) error {
	e := r.env
	conns := r.conns(64)
	perConn := 200
	phase := func(label, addr, path string) *Phase {
		return runLoad(ctx, loadSpec{Label: label, Conns: conns, Duration: r.opts.Duration, Warmup: r.warmup(r.opts.Duration), Unit: unitEvents,
			Setup: func(w *worker) (err error) {
				w.state, err = sseOpen(addr, path)
				return err
			},
			Op: func(w *worker) (int64, string) {
				lat, n, err := w.state.(*sseStream).next()
				if err != nil {
					return 0, errKind(err)
				}
				w.lat = append(w.lat, lat)
				return int64(n), ""
			},
			Teardown: func(w *worker) { w.state.(*sseStream).c.Close() },
		}, r.prog)
	}
	q := fmt.Sprintf("/sse?rate=%d&size=64", perConn)
	res.Direct = r.measure(false, func() *Phase { return phase(res.Scenario+"/direct", e.Origin.HTTP, q) })
	res.Direct.Target = "origin " + e.Origin.HTTP
	shares, err := e.createShares(ctx, e.HTTPService, 1, client.CreateShareRequest{})
	if err != nil {
		return err
	}
	path := strings.TrimPrefix(e.shareURL(shares[0]), "http://"+e.EdgeHTTP) + q
	res.System = r.measure(true, func() *Phase { return phase(res.Scenario+"/system", e.EdgeHTTP, path) })
	res.System.Target = "edge " + e.EdgeHTTP
	res.computeRatios()
	want := float64(conns*perConn) * 0.95
	pass := res.System.Errors == 0 && res.System.Rate >= want && res.System.Latency != nil && res.System.Latency.P99 < 100
	res.metric("events/s offered", float64(conns*perConn), "events/s", "", nil)
	// Every visitor has hung up: the origin must see its streams end.
	left := originSSEActive(ctx, e.Origin.HTTP, 5*time.Second)
	res.metric("origin event streams still written to 5 s after every visitor left", float64(left), "streams", "0", boolPtr(left == 0))
	if left != 0 {
		// End them from the origin's side, so the leak does not load the
		// scenarios that follow.
		_, _, _ = getStatus("http://" + e.Origin.HTTP + "/stats?abortSSE=1")
		originSSEActive(ctx, e.Origin.HTTP, 5*time.Second)
		pass = false
		res.note("the upstream streams outlive the visitors: when a visitor leaves, the edge must close its tunnel stream and the agent the connection to the service (tunnel.PipeClose); one of the two did not")
	}
	res.Pass = boolPtr(pass)
	return nil
}

// originSSEActive waits up to wait for the origin's event streams to end and
// returns how many are still being written.
func originSSEActive(ctx context.Context, addr string, wait time.Duration) int64 {
	deadline := time.Now().Add(wait)
	for {
		code, body, err := getStatus("http://" + addr + "/stats")
		var st struct {
			SSEActive int64 `json:"sseActive"`
		}
		if err == nil && code == 200 && json.Unmarshal([]byte(body), &st) == nil && (st.SSEActive == 0 || time.Now().After(deadline)) {
			return st.SSEActive
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return -1
		}
		sleepCtx(ctx, 100*time.Millisecond)
	}
}
