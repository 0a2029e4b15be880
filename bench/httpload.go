package bench

import (
	"context"
	"io"
	"net"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/privateconnect/pc/internal/connset"
)

// httpCase is one kind of HTTP request for the load generator.
type httpCase struct {
	method string
	// uris are full request URIs; requests rotate over them (several share
	// links of one service spread the per-share rate limit).
	uris [][]byte
	// uploadSize, when > 0, sends a streamed request body of that size.
	uploadSize int64
	// close sends Connection: close (a new connection per request).
	close bool
	// stream reads the response body as a stream (large bodies).
	stream bool
	// wantBody is the expected response body length (-1: any).
	wantBody int64
	// tls dials with TLS (--target https://…).
	tls bool
	// rate, when > 0, is the open-loop rate in req/s (else --rate).
	rate float64
}

type httpWorker struct {
	req  *fasthttp.Request
	resp *fasthttp.Response
	buf  []byte
}

// httpPhase loads addr with hc.
func (r *runner) httpPhase(ctx context.Context, label, addr string, hc httpCase, conns int, dur time.Duration) *Phase {
	client := &fasthttp.HostClient{
		Addr:                          addr,
		IsTLS:                         hc.tls,
		MaxConns:                      conns,
		ReadBufferSize:                16 << 10,
		WriteBufferSize:               16 << 10,
		MaxIdleConnDuration:           time.Minute,
		ReadTimeout:                   60 * time.Second,
		WriteTimeout:                  60 * time.Second,
		MaxResponseBodySize:           64 << 20,
		StreamResponseBody:            hc.stream,
		DisableHeaderNamesNormalizing: true,
		DisablePathNormalizing:        true,
		NoDefaultUserAgentHeader:      true,
		MaxIdemponentCallAttempts:     1,
	}
	// fasthttp's Do takes no context: on SIGINT the connections are closed
	// so that requests in flight to a stalled server end now, not at the
	// read timeout.
	var tracked connset.Set[*trackedConn]
	client.Dial = func(addr string) (net.Conn, error) { return dialTracked(&tracked, addr) }
	stopWatch := context.AfterFunc(ctx, func() { tracked.CloseAll() })
	defer stopWatch()
	defer client.CloseIdleConnections()
	var seq atomic.Uint64
	unit := unitReqs
	if hc.uploadSize >= 1<<20 || hc.wantBody >= 1<<20 {
		unit = unitMBps
	}
	rate := r.opts.Rate
	if hc.rate > 0 {
		rate = hc.rate
	}
	spec := loadSpec{
		Label: label, Conns: conns, Duration: dur, Warmup: r.warmup(dur), Rate: rate, Unit: unit,
		Setup: func(w *worker) error {
			hw := &httpWorker{req: fasthttp.AcquireRequest(), resp: fasthttp.AcquireResponse(), buf: make([]byte, 64<<10)}
			if hc.method != "" {
				hw.req.Header.SetMethod(hc.method)
			}
			if hc.close {
				hw.req.SetConnectionClose()
			}
			w.state = hw
			return nil
		},
		Teardown: func(w *worker) {
			hw := w.state.(*httpWorker)
			fasthttp.ReleaseRequest(hw.req)
			fasthttp.ReleaseResponse(hw.resp)
		},
		Op: func(w *worker) (int64, string) {
			hw := w.state.(*httpWorker)
			uri := hc.uris[0]
			if len(hc.uris) > 1 {
				uri = hc.uris[seq.Add(1)%uint64(len(hc.uris))]
			}
			hw.req.SetRequestURIBytes(uri)
			var sent int64
			if hc.uploadSize > 0 {
				hw.req.SetBodyStream(&patternReader{n: hc.uploadSize}, int(hc.uploadSize))
				sent = hc.uploadSize
			}
			if err := client.Do(hw.req, hw.resp); err != nil {
				return 0, errKind(err)
			}
			code := hw.resp.StatusCode()
			var n int64
			if hc.stream && hw.resp.IsBodyStream() {
				var err error
				n, err = io.CopyBuffer(io.Discard, onlyReader{hw.resp.BodyStream()}, hw.buf)
				_ = hw.resp.CloseBodyStream()
				if err != nil {
					return 0, errKind(err)
				}
			} else {
				n = int64(len(hw.resp.Body()))
			}
			if code != fasthttp.StatusOK {
				return 0, statusKind(code)
			}
			if hc.uploadSize > 0 {
				if got, _ := strconv.ParseInt(string(hw.resp.Body()), 10, 64); got != hc.uploadSize {
					return 0, kindShort
				}
				return sent, ""
			}
			if hc.wantBody >= 0 && n != hc.wantBody {
				return 0, kindShort
			}
			return n, ""
		},
	}
	return runLoad(ctx, spec, r.prog)
}

// trackedConn is a load connection held in its phase's set until it
// closes, so that an interrupted run can close them all.
type trackedConn struct {
	net.Conn
	set *connset.Set[*trackedConn]
}

func (c *trackedConn) Close() error {
	c.set.Remove(c)
	return c.Conn.Close()
}

// dialTracked dials addr and holds the connection in set (refused once the
// set was closed).
func dialTracked(set *connset.Set[*trackedConn], addr string) (net.Conn, error) {
	c, err := fasthttp.Dial(addr)
	if err != nil {
		return nil, err
	}
	tc := &trackedConn{Conn: c, set: set}
	if !set.Add(tc) {
		c.Close()
		return nil, net.ErrClosed
	}
	return tc, nil
}
