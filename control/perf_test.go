package control_test

import (
	"encoding/json"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/valyala/fasthttp"

	"github.com/privateconnect/pc/control"
	"github.com/privateconnect/pc/control/store/badgerstore"
)

// TestPerformanceTargets measures the control API targets of performance.md
// on a Badger store with durable writes: GET /v1/services ≥ 5,000 req/s and
// share creation p99 ≤ 10 ms. It runs only with PC_PERF=1 (timing on shared
// CI machines is noisy); results are logged.
func TestPerformanceTargets(t *testing.T) {
	if os.Getenv("PC_PERF") == "" {
		t.Skip("set PC_PERF=1 to run")
	}
	kv, err := badgerstore.Open(badgerstore.Options{Dir: t.TempDir()})
	require.NoError(t, err)
	t.Cleanup(func() { kv.Close() })
	e := start(t, control.Config{Store: kv, RateLimits: control.RateLimits{PublicPerMin: -1, AuthenticatedPerMin: -1}})
	agent := e.call("POST", "/v1/agents/provision", map[string]any{})
	var svcID string
	for i := 0; i < 20; i++ {
		s := e.call("POST", "/v1/services/register", map[string]any{"agentId": agent["agentId"], "name": "svc" + string(rune('a'+i)), "targetHost": "127.0.0.1", "targetPort": 9000 + i})
		svcID = s["id"].(string)
	}
	c := &fasthttp.HostClient{Addr: e.srv.Addr(), MaxConns: 64}
	run := func(d time.Duration, conns int, do func() (time.Duration, error)) (n int64, lat []time.Duration) {
		var mu sync.Mutex
		var cnt atomic.Int64
		stop := time.Now().Add(d)
		var wg sync.WaitGroup
		for i := 0; i < conns; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				var local []time.Duration
				for time.Now().Before(stop) {
					l, err := do()
					if err != nil {
						t.Error(err)
						return
					}
					cnt.Add(1)
					local = append(local, l)
				}
				mu.Lock()
				lat = append(lat, local...)
				mu.Unlock()
			}()
		}
		wg.Wait()
		slices.Sort(lat)
		return cnt.Load(), lat
	}
	get := func() (time.Duration, error) {
		req, res := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
		defer fasthttp.ReleaseRequest(req)
		defer fasthttp.ReleaseResponse(res)
		req.SetRequestURI("http://" + e.srv.Addr() + "/v1/services?limit=20")
		req.Header.Set("x-api-key", e.key)
		t0 := time.Now()
		err := c.Do(req, res)
		if err == nil && res.StatusCode() != 200 {
			t.Fatalf("status %d: %s", res.StatusCode(), res.Body())
		}
		return time.Since(t0), err
	}
	n, lat := run(3*time.Second, 32, get)
	t.Logf("GET /v1/services (20 items): %.0f req/s, p50 %s p99 %s", float64(n)/3, lat[len(lat)/2], lat[len(lat)*99/100])

	body, _ := json.Marshal(map[string]any{"name": "bench", "expiresIn": "1h"})
	create := func() (time.Duration, error) {
		req, res := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
		defer fasthttp.ReleaseRequest(req)
		defer fasthttp.ReleaseResponse(res)
		req.SetRequestURI("http://" + e.srv.Addr() + "/v1/services/" + svcID + "/shares")
		req.Header.SetMethod("POST")
		req.Header.SetContentType("application/json")
		req.Header.Set("x-api-key", e.key)
		req.SetBody(body)
		t0 := time.Now()
		err := c.Do(req, res)
		if err == nil && res.StatusCode() != 201 {
			t.Fatalf("status %d: %s", res.StatusCode(), res.Body())
		}
		return time.Since(t0), err
	}
	for _, conns := range []int{1, 8} {
		n, lat = run(3*time.Second, conns, create)
		t.Logf("POST shares (%d concurrent, durable): %.0f req/s, p50 %s p99 %s", conns, float64(n)/3, lat[len(lat)/2], lat[len(lat)*99/100])
	}
	require.NotEmpty(t, lat)
}
