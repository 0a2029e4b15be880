package e2e

import (
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/privateconnect/pc/control"
	"github.com/privateconnect/pc/internal/testenv"
	"github.com/privateconnect/pc/sdk/client"
	"github.com/stretchr/testify/require"
)

type sample struct {
	at      time.Time
	edge    int
	ok      bool
	latency time.Duration
	err     string
}

// loadRun sends requests to every edge in turn from several goroutines
// until stop is closed.
func loadRun(urls []string, workers int, stop <-chan struct{}) []sample {
	var mu sync.Mutex
	var out []sample
	var wg sync.WaitGroup
	var n atomic.Int64
	cl := &http.Client{Timeout: 4 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 8,
		DialContext: (&net.Dialer{Timeout: 2 * time.Second}).DialContext}}
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				i := int(n.Add(1)) % len(urls)
				start := time.Now()
				resp, err := cl.Get(urls[i])
				s := sample{at: start, edge: i, latency: time.Since(start)}
				if err == nil {
					resp.Body.Close()
					s.ok = resp.StatusCode == 200
					if !s.ok {
						s.err = resp.Status
					}
				} else {
					s.err = err.Error()
				}
				mu.Lock()
				out = append(out, s)
				mu.Unlock()
				if !s.ok {
					time.Sleep(5 * time.Millisecond)
				}
			}
		}()
	}
	wg.Wait()
	return out
}

// TestChaosRestarts kills and restarts the agent, an edge and the control
// plane in turn while load runs: no request hangs, errors stay inside the
// outage windows, and each edge serves again within 2 s of each restart.
func TestChaosRestarts(t *testing.T) {
	if testing.Short() {
		t.Skip("chaos run")
	}
	// The load exceeds the default 5,000/min per-share limit: turn it off.
	env := testenv.New(t, testenv.Options{Control: func(c *control.Config) { c.RateLimits.SharePerMin = -1 }})
	env.AddEdge("edge-2")
	org := origin(t)
	id, token, edges := env.ProvisionAgent("a")
	ag := env.RunAgent(id, token, edges)
	svc := env.Expose(ag, "web", org.URL)
	sh := env.Share(svc.ID, client.CreateShareRequest{})
	urls := []string{testenv.ShareURL(env.Edges[0], sh.Token) + "/", testenv.ShareURL(env.Edges[1], sh.Token) + "/"}
	for _, u := range urls {
		eventuallyStatus(t, u, 200, 2*time.Second)
	}

	stop := make(chan struct{})
	res := make(chan []sample, 1)
	go func() { res <- loadRun(urls, 4, stop) }()

	type window struct {
		name       string
		start, end time.Time
	}
	var windows []window
	outage := func(name string, f func()) {
		time.Sleep(700 * time.Millisecond)
		w := window{name: name, start: time.Now()}
		f()
		w.end = time.Now()
		windows = append(windows, w)
	}
	outage("agent restart", func() {
		ag.Stop()
		time.Sleep(200 * time.Millisecond)
		ag = env.RunAgent(id, token, edges)
		env.WaitAgentOnEdges(id, 5*time.Second)
	})
	outage("edge-1 restart", func() {
		env.RestartEdge(env.Edges[0])
		env.WaitAgentOnEdges(id, 5*time.Second)
	})
	controlDown := window{name: "control down", start: time.Now()}
	outage("control restart", func() {
		env.StopControl()
		time.Sleep(time.Second)
		env.StartControl()
	})
	controlDown.end = time.Now()
	time.Sleep(time.Second)
	close(stop)
	samples := <-res

	require.Greater(t, len(samples), 200, "the load ran")
	var errs, inWindow int
	for _, s := range samples {
		require.Less(t, s.latency, 4*time.Second, "a request hung (%s)", s.err)
		if s.ok {
			continue
		}
		errs++
		in := false
		for _, w := range windows {
			if w.name == "control restart" {
				continue // the data path does not need the control plane
			}
			if !s.at.Before(w.start.Add(-50*time.Millisecond)) && s.at.Before(w.end.Add(2*time.Second)) {
				in = true
			}
		}
		if in {
			inWindow++
		} else {
			t.Errorf("error outside the outage windows at %v (edge %d): %s", s.at.Format("15:04:05.000"), s.edge, s.err)
		}
	}
	// Recovery: for each window, both edges answer 200 within 2 s of its end.
	for _, w := range windows {
		for e := range urls {
			var first time.Time
			for _, s := range samples {
				if s.edge == e && s.ok && s.at.After(w.end) && (first.IsZero() || s.at.Before(first)) {
					first = s.at
				}
			}
			require.False(t, first.IsZero(), "%s: edge %d never recovered", w.name, e)
			require.Less(t, first.Sub(w.end), 2*time.Second, "%s: edge %d recovered after %v", w.name, e, first.Sub(w.end))
		}
	}
	t.Logf("%d requests, %d errors (all inside outage windows); control was down %.1fs with no effect on the data path",
		len(samples), errs, controlDown.end.Sub(controlDown.start).Seconds())
}
