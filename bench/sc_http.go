package bench

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"net"
	"os"
	"strings"
	"time"

	"github.com/privateconnect/pc/sdk/client"
	"github.com/valyala/fasthttp"
)

func init() {
	register(scenario{name: "http-small", desc: "HTTP keep-alive, 64 connections, 1 KiB responses", target: "throughput ≥ 0.50 of direct, p99 ≤ 3× direct", targetOK: true,
		run: func(ctx context.Context, r *runner, res *Result) error {
			hc, conns := httpCase{wantBody: 1024}, r.conns(64)
			err := r.httpScenario(ctx, res, "/small", hc, conns, client.CreateShareRequest{})
			if err == nil {
				err = r.ceiling(ctx, res, r.originHTTP(), func(label, addr string) *Phase {
					hc.uris = [][]byte{[]byte("http://" + addr + "/small")}
					return r.httpPhase(ctx, label, addr, hc, conns, r.opts.Duration)
				})
			}
			res.judge(0.5, 3)
			res.noteCeiling()
			return err
		}})
	register(scenario{name: "http-close", desc: "HTTP with Connection: close (a new visitor connection per request), 64 connections, 1 KiB", target: "throughput ≥ 0.50 of direct", targetOK: true,
		run: func(ctx context.Context, r *runner, res *Result) error {
			err := r.httpScenario(ctx, res, "/small", httpCase{wantBody: 1024, close: true}, r.conns(64), client.CreateShareRequest{})
			res.judge(0.5, 0)
			return err
		}})
	for _, b := range []struct {
		name string
		size int64
		up   bool
	}{{"body-1m-down", 1 << 20, false}, {"body-1m-up", 1 << 20, true}, {"body-100m-down", 100 << 20, false}, {"body-100m-up", 100 << 20, true}} {
		dir := "download"
		if b.up {
			dir = "upload"
		}
		register(scenario{name: b.name, desc: fmt.Sprintf("%d MiB %s through a share, streamed", b.size>>20, dir),
			target: "streamed: edge memory does not grow with body size",
			run: func(ctx context.Context, r *runner, res *Result) error {
				size := b.size
				if r.opts.Quick && size > 2<<20 {
					size = 2 << 20 // completes within a quick phase even under -race
				}
				conns := r.conns(8)
				if size > 8<<20 {
					conns = r.conns(2)
				}
				hc := httpCase{stream: true, wantBody: size}
				path := fmt.Sprintf("/bytes?n=%d", size)
				if b.up {
					hc = httpCase{method: fasthttp.MethodPost, uploadSize: size, wantBody: -1}
					path = "/upload"
				}
				if err := r.httpScenario(ctx, res, path, hc, conns, client.CreateShareRequest{}); err != nil {
					return err
				}
				res.checkStreamed(size, conns)
				return nil
			}})
	}
}

// httpScenario loads path on the origin directly, then through share links.
func (r *runner) httpScenario(ctx context.Context, res *Result, path string, hc httpCase, conns int, share client.CreateShareRequest) error {
	dur := r.opts.Duration
	if r.env == nil { // --target
		if r.opts.Direct != "" {
			d := hc
			uris, err := splitURLs(r.opts.Direct)
			if err != nil {
				return fmt.Errorf("--direct: %w", err)
			}
			d.uris, d.wantBody = uris, -1
			if len(d.uris) == 0 {
				return fmt.Errorf("--direct: no URL")
			}
			d.tls = bytes.HasPrefix(d.uris[0], []byte("https://"))
			res.Direct = r.measure(false, func() *Phase {
				return r.httpPhase(ctx, res.Scenario+"/direct", hostOf(string(d.uris[0])), d, conns, dur)
			})
			res.Direct.Target = r.opts.Direct
		}
		s := hc
		uris, err := splitURLs(r.opts.Target)
		if err != nil {
			return fmt.Errorf("--target: %w", err)
		}
		s.uris, s.wantBody = uris, -1
		if len(s.uris) == 0 {
			return fmt.Errorf("--target: no URL")
		}
		s.tls = bytes.HasPrefix(s.uris[0], []byte("https://"))
		host := hostOf(string(s.uris[0]))
		res.System = r.measure(false, func() *Phase { return r.httpPhase(ctx, res.Scenario+"/target", host, s, conns, dur) })
		res.System.Target = fmt.Sprintf("%d URL(s) on %s", len(s.uris), host)
		return nil
	}
	e := r.env
	d := hc
	d.uris = [][]byte{[]byte("http://" + e.Origin.HTTP + path)}
	res.Direct = r.measure(false, func() *Phase { return r.httpPhase(ctx, res.Scenario+"/direct", e.Origin.HTTP, d, conns, dur) })
	res.Direct.Target = "origin " + e.Origin.HTTP
	if ctx.Err() != nil {
		return ctx.Err()
	}
	shares, err := r.sharesFor(ctx, res, e.HTTPService, opsRate(res.Direct), dur, share)
	if err != nil {
		return err
	}
	s := hc
	for _, sh := range shares {
		s.uris = append(s.uris, []byte(e.shareURL(sh)+path))
	}
	res.System = r.measure(true, func() *Phase { return r.httpPhase(ctx, res.Scenario+"/system", e.EdgeHTTP, s, conns, dur) })
	res.System.Target = fmt.Sprintf("edge %s, %d share link(s)", e.EdgeHTTP, len(shares))
	return nil
}

// originHTTP is the origin's HTTP address ("" with --target).
func (r *runner) originHTTP() string {
	if r.env == nil {
		return ""
	}
	return r.env.Origin.HTTP
}

// opsRate is a phase's operations per second, whatever its unit.
func opsRate(p *Phase) float64 {
	if p == nil || p.Seconds == 0 {
		return 0
	}
	return float64(p.Ops) / p.Seconds
}

// sharesFor creates enough share links of svc for rate ops/s during dur
// without hitting the edge's per-share limit (requests rotate over them).
func (r *runner) sharesFor(ctx context.Context, res *Result, svc *client.Service, rate float64, dur time.Duration, req client.CreateShareRequest) ([]*client.Share, error) {
	e := r.env
	if !e.shareLimitProbed {
		probe, err := e.createShares(ctx, e.HTTPService, 1, client.CreateShareRequest{Name: "probe"})
		if err != nil {
			return nil, err
		}
		if err := e.detectShareLimit(ctx, e.shareURL(probe[0])+"/small"); err != nil {
			return nil, err
		}
	}
	first, err := e.createShares(ctx, svc, 1, req)
	if err != nil {
		return nil, err
	}
	limit := e.shareLimit
	if req.RateLimitPerMin > 0 && (limit == 0 || req.RateLimitPerMin < limit) {
		limit = req.RateLimitPerMin
	}
	if limit <= 0 {
		return first, nil
	}
	if r.opts.Rate > 0 {
		rate = r.opts.Rate
	}
	window := min(dur+r.warmup(dur), time.Minute).Seconds()
	// Headroom: the system may outrun the direct baseline's estimate.
	need := int(math.Ceil(rate * 1.5 * window / float64(limit)))
	need = min(need, 4000)
	if need <= 1 {
		return first, nil
	}
	more, err := e.createShares(ctx, svc, need-1, req)
	if err != nil {
		return nil, err
	}
	res.note("the edge limits each share link to %d requests/min (X-RateLimit-Limit): the load rotates over %d share links of the same service", limit, need)
	return append(first, more...), nil
}

// judge sets Pass from the throughput and p99 ratio targets (0: none).
func (res *Result) judge(minThroughput, maxP99 float64) {
	res.computeRatios()
	if res.Ratios == nil || res.System == nil {
		return
	}
	ok := res.Ratios.Throughput >= minThroughput
	if maxP99 > 0 && res.Ratios.P99 > maxP99 {
		ok = false
	}
	if res.System.Errors > 0 {
		ok = false
	}
	res.Pass = boolPtr(ok)
}

// checkStreamed judges whether the edge streamed bodies: its memory must not
// grow by anything near the bodies in flight.
func (res *Result) checkStreamed(size int64, conns int) {
	res.computeRatios()
	edge := res.System.procStat("edge")
	if edge == nil {
		edge = res.System.procStat("pcd-dev")
	}
	if edge == nil {
		return
	}
	growth := edge.PeakRSSMiB - edge.StartRSSMiB
	inflight := float64(size) * float64(conns) / (1 << 20)
	// Buffers (smux windows, fasthttp buffers) are bounded: allow 64 MiB
	// or half of the bytes in flight, whichever is larger.
	limit := math.Max(64, inflight/2)
	pass := growth <= limit && res.System.Errors == 0
	res.metric("edge RSS growth during the system phase", growth, "MiB", fmt.Sprintf("≤ %.0f MiB (bodies in flight: %.0f MiB)", limit, inflight), boolPtr(pass))
	res.metric("edge peak RSS", edge.PeakRSSMiB, "MiB", "", nil)
	res.Pass = boolPtr(pass)
}

func hostOf(url string) string {
	u := fasthttp.AcquireURI()
	defer fasthttp.ReleaseURI(u)
	if err := u.Parse(nil, []byte(url)); err != nil {
		return url
	}
	h := string(u.Host())
	if _, _, err := net.SplitHostPort(h); err != nil {
		if string(u.Scheme()) == "https" {
			return h + ":443"
		}
		return h + ":80"
	}
	return h
}

// splitURLs splits a comma-separated --target or --direct list; requests
// rotate over the URLs (all on one host).
// "@FILE" reads them from FILE, one a line.
func splitURLs(list string) ([][]byte, error) {
	if f, ok := strings.CutPrefix(list, "@"); ok {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		list = strings.ReplaceAll(string(b), "\n", ",")
	}
	var out [][]byte
	for _, u := range strings.Split(list, ",") {
		if u = strings.TrimSpace(u); u != "" {
			out = append(out, []byte(u))
		}
	}
	return out, nil
}
