package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/privateconnect/pc/sdk/client"
	"github.com/valyala/fasthttp"
)

func init() {
	register(scenario{name: "api-reads", desc: "control API: GET /v1/services, keep-alive, 32 connections", target: "≥ 5,000 req/s", run: runAPIReads})
	register(scenario{name: "api-create", desc: "control API: share creation (durable writes), 4 connections", target: "p99 ≤ 10 ms", run: runAPICreate})
	register(scenario{name: "config-propagation", desc: "share created / revoked → in force at the edge (polling the share URL)", target: "p99 ≤ 100 ms", run: runPropagation})
}

// apiPhase loads the control API with requests built by prep.
func (r *runner) apiPhase(ctx context.Context, label string, conns int, estRate float64, prep func(req *fasthttp.Request, n int64), okStatus int) (*Phase, error) {
	e := r.env
	dur := r.opts.Duration
	est := estRate * (dur + r.warmup(dur)).Seconds()
	keys, err := e.keys.keysFor(ctx, int(est))
	if err != nil {
		return nil, err
	}
	per := int64(e.keys.usable())
	// More keys are created on the fly when the load outruns the estimate.
	var keyMu sync.RWMutex
	keyFor := func(n int64) string {
		i := int(n / per)
		keyMu.RLock()
		if i < len(keys) {
			k := keys[i]
			keyMu.RUnlock()
			return k
		}
		keyMu.RUnlock()
		keyMu.Lock()
		defer keyMu.Unlock()
		for i >= len(keys) {
			more, err := e.keys.keysFor(ctx, int(per)*8)
			if err != nil {
				return keys[len(keys)-1]
			}
			keys = append(keys, more...)
		}
		return keys[i]
	}
	addr := e.ControlURL[len("http://"):]
	hc := &fasthttp.HostClient{Addr: addr, MaxConns: conns, ReadTimeout: 30 * time.Second, MaxIdleConnDuration: time.Minute}
	defer hc.CloseIdleConnections()
	var seq atomic.Int64
	ph := runLoad(ctx, loadSpec{Label: label, Conns: conns, Duration: dur, Warmup: r.warmup(dur), Rate: r.opts.Rate, Unit: unitReqs,
		Setup: func(w *worker) error {
			w.state = &httpWorker{req: fasthttp.AcquireRequest(), resp: fasthttp.AcquireResponse()}
			return nil
		},
		Teardown: func(w *worker) {
			hw := w.state.(*httpWorker)
			fasthttp.ReleaseRequest(hw.req)
			fasthttp.ReleaseResponse(hw.resp)
		},
		Op: func(w *worker) (int64, string) {
			hw := w.state.(*httpWorker)
			n := seq.Add(1) - 1
			hw.req.Reset()
			prep(hw.req, n)
			hw.req.Header.Set("x-api-key", keyFor(n))
			if err := hc.Do(hw.req, hw.resp); err != nil {
				return 0, errKind(err)
			}
			if hw.resp.StatusCode() != okStatus {
				return 0, statusKind(hw.resp.StatusCode())
			}
			return int64(len(hw.resp.Body())), ""
		},
	}, r.prog)
	keyMu.RLock()
	defer keyMu.RUnlock()
	if len(keys) > 1 {
		ph.Target = fmt.Sprintf("control %s, %d API keys (the API allows %d requests/min per key)", addr, len(keys), e.keys.limit)
	} else {
		ph.Target = "control " + addr
	}
	return ph, nil
}

func runAPIReads(ctx context.Context, r *runner, res *Result) error {
	e := r.env
	url := e.ControlURL + "/v1/services"
	est := 80000.0
	if r.opts.Quick {
		est = 20000
	}
	var err error
	res.System = r.measure(true, func() *Phase {
		var ph *Phase
		ph, err = r.apiPhase(ctx, res.Scenario, r.conns(32), est, func(req *fasthttp.Request, _ int64) {
			req.SetRequestURI(url)
		}, fasthttp.StatusOK)
		if ph == nil {
			ph = &Phase{}
		}
		return ph
	})
	if err != nil {
		return err
	}
	pass := res.System.Rate >= 5000 && res.System.Errors == 0
	res.metric("GET /v1/services", res.System.Rate, "req/s", "≥ 5000", boolPtr(pass))
	res.Pass = boolPtr(pass)
	return nil
}

func runAPICreate(ctx context.Context, r *runner, res *Result) error {
	e := r.env
	url := e.ControlURL + "/v1/services/" + e.HTTPService.ID + "/shares"
	stamp := time.Now().UnixNano() % 1e9
	var err error
	res.System = r.measure(true, func() *Phase {
		var ph *Phase
		ph, err = r.apiPhase(ctx, res.Scenario, r.conns(4), 5000, func(req *fasthttp.Request, n int64) {
			req.SetRequestURI(url)
			req.Header.SetMethod(fasthttp.MethodPost)
			req.Header.SetContentType("application/json")
			req.SetBodyString(fmt.Sprintf(`{"name":"create-%d-%d","expiresIn":"24h"}`, stamp, n))
		}, fasthttp.StatusCreated)
		if ph == nil {
			ph = &Phase{}
		}
		return ph
	})
	if err != nil {
		return err
	}
	if res.System.Latency != nil {
		pass := res.System.Latency.P99 <= 10 && res.System.Errors == 0
		res.metric("share creation p99", res.System.Latency.P99, "ms", "≤ 10", boolPtr(pass))
		res.Pass = boolPtr(pass)
	}
	res.note("the shares created here stay: they count towards later scenarios' tables")
	return nil
}

// propagation measures, for n share creations then n revocations, the time
// from the API's answer (the change is committed) to the edge serving the
// new state, by polling the share URL.
func (r *runner) propagation(ctx context.Context, n int) (created, revoked, fromSend []time.Duration, err error) {
	e := r.env
	hc := &fasthttp.HostClient{Addr: e.EdgeHTTP, MaxConns: 4, ReadTimeout: 5 * time.Second}
	defer hc.CloseIdleConnections()
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	poll := func(url string, want func(int) bool) (time.Duration, error) {
		start := time.Now()
		req.SetRequestURI(url)
		for time.Since(start) < 5*time.Second {
			if err := hc.Do(req, resp); err == nil && want(resp.StatusCode()) {
				return time.Since(start), nil
			}
			if ctx.Err() != nil {
				return 0, ctx.Err()
			}
		}
		return 0, fmt.Errorf("no change at the edge within 5 s (last status %d)", resp.StatusCode())
	}
	var shares []*client.Share
	for i := 0; i < n; i++ {
		var sh *client.Share
		sent := time.Now()
		err := e.keys.call(ctx, func(c *client.Client) (err error) {
			sh, err = c.CreateShare(ctx, e.HTTPService.ID, client.CreateShareRequest{Name: fmt.Sprintf("prop-%d-%d", time.Now().UnixNano()%1e9, i), ExpiresIn: client.Expires1h})
			return err
		})
		if err != nil {
			return nil, nil, nil, err
		}
		committed := time.Since(sent)
		d, err := poll(e.shareURL(sh)+"/small", func(c int) bool { return c == 200 })
		if err != nil {
			return nil, nil, nil, fmt.Errorf("share creation: %w", err)
		}
		created = append(created, d)
		fromSend = append(fromSend, committed+d)
		shares = append(shares, sh)
	}
	for _, sh := range shares {
		sent := time.Now()
		if err := e.keys.call(ctx, func(c *client.Client) error { return c.RevokeShare(ctx, sh.ID) }); err != nil {
			return nil, nil, nil, err
		}
		committed := time.Since(sent)
		d, err := poll(e.shareURL(sh)+"/small", func(c int) bool { return c == 404 || c == 410 })
		if err != nil {
			return nil, nil, nil, fmt.Errorf("share revocation: %w", err)
		}
		revoked = append(revoked, d)
		fromSend = append(fromSend, committed+d)
	}
	return created, revoked, fromSend, nil
}

func runPropagation(ctx context.Context, r *runner, res *Result) error {
	n := 100
	if r.opts.Quick {
		n = 5
	}
	var err error
	var created, revoked, fromSend []time.Duration
	res.System = r.measure(true, func() *Phase {
		start := time.Now()
		created, revoked, fromSend, err = r.propagation(ctx, n)
		all := append(append([]time.Duration(nil), created...), revoked...)
		return &Phase{Ops: int64(len(all)), Seconds: round3(time.Since(start).Seconds()), Unit: "changes/s",
			Rate: round3(float64(len(all)) / time.Since(start).Seconds()), Latency: summarizeDurations(all), Target: "API commit → edge serves the change"}
	})
	if err != nil {
		return err
	}
	c, v, s := summarizeDurations(created), summarizeDurations(revoked), summarizeDurations(fromSend)
	all := res.System.Latency
	pass := all != nil && all.P99 <= 100
	res.metric("propagation p50 (commit → in force)", all.P50, "ms", "", nil)
	res.metric("propagation p99 (commit → in force)", all.P99, "ms", "≤ 100", boolPtr(pass))
	res.metric("share created: p50", c.P50, "ms", "", nil)
	res.metric("share created: p99", c.P99, "ms", "", nil)
	res.metric("share revoked: p50", v.P50, "ms", "", nil)
	res.metric("share revoked: p99", v.P99, "ms", "", nil)
	res.metric("API request sent → in force: p99", s.P99, "ms", "", nil)
	res.Pass = boolPtr(pass)
	res.note("%d creations and %d revocations, one at a time", n, n)
	return nil
}

// jsonString is a helper for notes.
func jsonString(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}
