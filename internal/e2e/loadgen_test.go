package e2e

import (
	"io"
	"net"
	"net/http"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Paced load for the fault, graceful and soak tests: requests are issued at
// a fixed rate by a pool of workers (a slow request never slows the
// schedule down), every result is recorded with the edge it went to, and in
// load-balancer mode a request that was refused or closed before any
// response is retried once on another edge, as a load balancer does.

type result struct {
	at      time.Time // when the request started
	dur     time.Duration
	edge    int // the edge that gave the final answer (or the last one tried)
	status  int // 0 when no HTTP answer
	err     string
	retried bool
}

func (r result) ok() bool { return r.status == 200 }

type load struct {
	urls    []string // one per edge
	paths   []string // appended to the edge URL in turn (none: the URL alone)
	lb      bool
	down    []atomic.Bool // load-balancer view: edges taken out of rotation
	client  *http.Client
	stop    chan struct{}
	done    chan struct{}
	mu      sync.Mutex
	results []result
	next    atomic.Int64
	pathN   atomic.Int64
	// check, in load-balancer mode, is the health check that brings an edge
	// back into rotation (nil: back after 200 ms).
	check func(edge int) bool
}

// loadConfig describes a load.
type loadConfig struct {
	urls          []string // one per edge
	paths         []string // appended to the edge URL in turn
	rate, workers int      // requests per second, concurrent requests at most
	lb            bool     // load-balancer mode (see load)
	check         func(edge int) bool
}

// startLoad sends rate requests per second over urls (round robin) from
// workers goroutines until finish.
func startLoad(urls []string, rate, workers int, lb bool) *load {
	return runLoad(loadConfig{urls: urls, rate: rate, workers: workers, lb: lb})
}

func runLoad(c loadConfig) *load {
	rate, workers := c.rate, c.workers
	l := &load{urls: c.urls, paths: c.paths, lb: c.lb, check: c.check, down: make([]atomic.Bool, len(c.urls)),
		stop: make(chan struct{}), done: make(chan struct{}),
		client: &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
			MaxIdleConnsPerHost: workers, IdleConnTimeout: 30 * time.Second,
			DialContext: (&net.Dialer{Timeout: 2 * time.Second}).DialContext}}}
	tokens := make(chan struct{}, workers)
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-l.stop:
					return
				case <-tokens:
				}
				r := l.one()
				l.mu.Lock()
				l.results = append(l.results, r)
				l.mu.Unlock()
			}
		}()
	}
	go func() {
		tick := time.NewTicker(time.Second / time.Duration(rate))
		defer tick.Stop()
		for {
			select {
			case <-l.stop:
				wg.Wait()
				l.client.CloseIdleConnections()
				close(l.done)
				return
			case <-tick.C:
				select {
				case tokens <- struct{}{}:
				default: // every worker busy: skip this slot
				}
			}
		}
	}()
	return l
}

// pick returns the next edge in rotation.
func (l *load) pick() int {
	n := len(l.urls)
	for i := 0; i < n; i++ {
		e := int(l.next.Add(1)) % n
		if !l.lb || !l.down[e].Load() {
			return e
		}
	}
	return int(l.next.Load()) % n
}

func (l *load) one() result {
	e := l.pick()
	start := time.Now()
	r := l.get(e)
	if l.lb && r.status == 0 && isClosedBeforeResponseText(r.err) {
		// The edge is gone or going: take it out of rotation and retry once
		// on another one.
		l.markDown(e)
		if alt := l.pick(); alt != e {
			r = l.get(alt)
			r.retried = true
		}
	}
	r.at, r.dur = start, time.Since(start)
	return r
}

func (l *load) get(e int) result {
	r := result{edge: e}
	u := l.urls[e]
	if len(l.paths) > 0 {
		u += l.paths[int(l.pathN.Add(1))%len(l.paths)]
	}
	resp, err := l.client.Get(u)
	if err != nil {
		r.err = err.Error()
		return r
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	r.status = resp.StatusCode
	if err != nil {
		r.status, r.err = 0, "body: "+err.Error()
	} else if r.status != 200 {
		r.err = resp.Status
	}
	return r
}

// markDown takes an edge out of rotation until its health check passes.
func (l *load) markDown(e int) {
	if l.down[e].Swap(true) {
		return
	}
	go func() {
		for {
			select {
			case <-l.stop:
				return
			case <-time.After(100 * time.Millisecond):
			}
			if l.check == nil || l.check(e) {
				l.down[e].Store(false)
				return
			}
		}
	}()
}

// finish stops the load and returns every result in start order.
func (l *load) finish() []result {
	close(l.stop)
	<-l.done
	l.mu.Lock()
	defer l.mu.Unlock()
	sort.Slice(l.results, func(i, j int) bool { return l.results[i].at.Before(l.results[j].at) })
	return l.results
}

func isClosedBeforeResponseText(s string) bool {
	return strings.Contains(s, "connection refused") || strings.Contains(s, "connection reset") ||
		strings.Contains(s, "EOF") || strings.Contains(s, "server closed idle connection") ||
		strings.Contains(s, "broken pipe")
}

// window is a time span in which some edges may fail requests.
type window struct {
	name       string
	start, end time.Time
	edges      []int // affected edges; nil means every edge
}

// covers reports whether r was in flight at some point between w's start
// (less 50 ms) and slack after its end, on an edge w affects. A request is
// judged by when it was in flight, not when it was sent: one sent before a
// kill fails when the kill ends it, and under load (-race, a busy machine)
// it may have been sent hundreds of milliseconds before (TestChaosRestarts'
// outage.explains has the same rule).
func (w window) covers(r result, slack time.Duration) bool {
	if r.at.Add(r.dur).Before(w.start.Add(-50*time.Millisecond)) || r.at.After(w.end.Add(slack)) {
		return false
	}
	if w.edges == nil {
		return true
	}
	for _, e := range w.edges {
		if e == r.edge {
			return true
		}
	}
	return false
}

// loadSummary counts results and returns the failures no window covers.
type loadSummary struct {
	total, ok, failed, inWindow int
	outside                     []result
	maxDur                      time.Duration
}

func summarize(rs []result, windows []window, slack time.Duration) loadSummary {
	var s loadSummary
	for _, r := range rs {
		s.total++
		s.maxDur = max(s.maxDur, r.dur)
		if r.ok() {
			s.ok++
			continue
		}
		s.failed++
		covered := false
		for _, w := range windows {
			covered = covered || w.covers(r, slack)
		}
		if covered {
			s.inWindow++
		} else {
			s.outside = append(s.outside, r)
		}
	}
	return s
}
