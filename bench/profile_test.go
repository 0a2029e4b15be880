package bench

import (
	"context"
	"runtime"
	"runtime/pprof"
	"sync/atomic"
	"testing"
	"time"

	"github.com/privateconnect/pc/control"
	"github.com/privateconnect/pc/internal/testenv"
	"github.com/privateconnect/pc/sdk/client"
	"github.com/valyala/fasthttp"
)

// BenchmarkSharePath drives the whole request path in one process (visitor
// client → edge → smux → agent → origin), so `-cpuprofile` and
// `-memprofile` show the edge and agent hot spots that the separate pcd
// processes of pcbench do not expose:
//
//	go test ./bench -run '^$' -bench SharePath -benchtime 10s -cpuprofile cpu.out -memprofile mem.out
//	go tool pprof -top -focus 'edge|agent|smux|tunnel' cpu.out
//
// The per-share rate limit is lifted through control.Config (pcd has no
// flag for it). The origin runs in the same process too. Goroutines carry a
// pprof label "component" (client, origin, edge+control, agent), so each
// part can be read alone:
//
//	go tool pprof -top -tagfocus component=edge cpu.out
func BenchmarkSharePath(b *testing.B) {
	if testing.Short() {
		b.Skip("boots the whole system")
	}
	for _, conns := range []int{1, 64} {
		b.Run(map[int]string{1: "conns=1", 64: "conns=64"}[conns], func(b *testing.B) {
			urls, stop := sharePath(b, client.CreateShareRequest{Name: "bench"}, 1)
			defer stop()
			benchHTTP(b, urls, conns)
		})
	}
	// The default policy chain (allowedPaths + allowedIps + rateLimitPerMin,
	// at most 100,000/min per share: requests rotate over 20 shares).
	b.Run("conns=64/policy=default", func(b *testing.B) {
		req := defaultPolicy()
		req.Name = "bench"
		urls, stop := sharePath(b, req, 20)
		defer stop()
		benchHTTP(b, urls, 64)
	})
}

// BenchmarkDirect is the same load on the origin alone, the baseline of
// BenchmarkSharePath.
func BenchmarkDirect(b *testing.B) {
	o, err := StartOrigin("")
	if err != nil {
		b.Fatal(err)
	}
	defer o.Close()
	for _, conns := range []int{1, 64} {
		b.Run(map[int]string{1: "conns=1", 64: "conns=64"}[conns], func(b *testing.B) {
			benchHTTP(b, []string{"http://" + o.Addrs.HTTP + "/small"}, conns)
		})
	}
}

// labelled runs f with the pprof label component=name; goroutines f starts
// inherit it.
func labelled(name string, f func()) {
	pprof.Do(context.Background(), pprof.Labels("component", name), func(context.Context) { f() })
}

func sharePath(b testing.TB, share client.CreateShareRequest, n int) ([]string, func()) {
	var o *Origin
	var err error
	labelled("origin", func() { o, err = StartOrigin("") })
	if err != nil {
		b.Fatal(err)
	}
	var env *testenv.Env
	labelled("edge", func() {
		env = testenv.New(b, testenv.Options{Control: func(c *control.Config) {
			c.RateLimits = control.RateLimits{PublicPerMin: -1, AuthenticatedPerMin: -1, SharePerMin: 1 << 30}
		}})
	})
	id, token, edges := env.ProvisionAgent("bench")
	var ag *testenv.Agent
	labelled("agent", func() { ag = env.RunAgent(id, token, edges) })
	svc := env.Expose(ag, "bench", "http://"+o.Addrs.HTTP)
	var urls []string
	for i := 0; i < n; i++ {
		sh := env.Share(svc.ID, share)
		urls = append(urls, testenv.ShareURL(env.Edges[0], sh.Token)+"/small")
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		code, _, err := getStatus(urls[n-1])
		if err == nil && code == 200 {
			break
		}
		if time.Now().After(deadline) {
			b.Fatalf("share not served: %d %v", code, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return urls, o.Close
}

// benchHTTP sends b.N GETs over conns keep-alive connections, rotating
// over urls (one host).
func benchHTTP(b *testing.B, urls []string, conns int) {
	url := urls[0]
	var seq atomic.Uint64
	hc := &fasthttp.HostClient{Addr: hostOf(url), MaxConns: conns, ReadBufferSize: 16 << 10}
	defer hc.CloseIdleConnections()
	b.ReportAllocs()
	if conns == 1 {
		req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
		defer fasthttp.ReleaseRequest(req)
		defer fasthttp.ReleaseResponse(resp)
		req.SetRequestURI(url)
		b.ResetTimer()
		pprof.SetGoroutineLabels(pprof.WithLabels(context.Background(), pprof.Labels("component", "client")))
		defer pprof.SetGoroutineLabels(context.Background())
		for i := 0; i < b.N; i++ {
			if err := hc.Do(req, resp); err != nil || resp.StatusCode() != 200 {
				b.Fatalf("%v %d", err, resp.StatusCode())
			}
		}
		return
	}
	b.SetParallelism(max(1, conns/runtime.GOMAXPROCS(0)))
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		pprof.SetGoroutineLabels(pprof.WithLabels(context.Background(), pprof.Labels("component", "client")))
		req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
		defer fasthttp.ReleaseRequest(req)
		defer fasthttp.ReleaseResponse(resp)
		for pb.Next() {
			req.SetRequestURI(urls[seq.Add(1)%uint64(len(urls))])
			if err := hc.Do(req, resp); err != nil {
				b.Error(err)
				return
			}
			if resp.StatusCode() != 200 || len(resp.Body()) != 1024 {
				b.Errorf("status %d, %d bytes", resp.StatusCode(), len(resp.Body()))
				return
			}
		}
	})
}

// TestSharePathAllocations pins the allocations of one proxied request on
// the whole in-process path (edge, tunnel, agent; the fasthttp client and
// origin allocate nothing). Measured at about 52 per request; the bound
// leaves room for GC and report batching noise, and fails if a change adds
// a handful of allocations per request.
func TestSharePathAllocations(t *testing.T) {
	if testing.Short() {
		t.Skip("boots the whole system")
	}
	if raceEnabled {
		t.Skip("the race detector changes allocation counts")
	}
	urls, stop := sharePath(t, client.CreateShareRequest{Name: "allocs"}, 1)
	defer stop()
	hc := &fasthttp.HostClient{Addr: hostOf(urls[0]), MaxConns: 1}
	defer hc.CloseIdleConnections()
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.SetRequestURI(urls[0])
	get := func() {
		if err := hc.Do(req, resp); err != nil || resp.StatusCode() != 200 {
			t.Fatalf("%v %d", err, resp.StatusCode())
		}
	}
	for i := 0; i < 200; i++ { // warm pools and connections
		get()
	}
	allocs := testing.AllocsPerRun(2000, get)
	t.Logf("%.1f allocations per proxied request", allocs)
	if allocs > 65 {
		t.Fatalf("%.1f allocations per proxied request, want ≤ 65 (was about 52)", allocs)
	}
}
