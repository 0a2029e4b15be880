package bench

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/privateconnect/pc/sdk/client"
)

func init() {
	register(scenario{name: "soak", desc: "http-small at 50% of the system's measured maximum, open loop, for 10 minutes (--soak-duration): errors and memory after warm-up",
		target: "no error; memory within 10% after warm-up", run: runSoak})
}

// Soak windows, as fractions of the soak: memory is judged from the end of
// the warm-up (the window [soakWarm, soakWarm+soakWindow)) to the end (the
// last soakWindow).
const (
	soakWarm   = 0.3
	soakWindow = 0.15
	soakGrowth = 0.10 // the target: at most 10% more memory at the end
)

// runSoak measures the system's maximum keep-alive throughput (closed loop,
// like http-small), then sends half of it in open loop for the soak
// duration while sampling every process's resident memory, and judges the
// growth of each of the edge, agent and control plane between the window
// after the warm-up and the last window. Each window's minimum is compared,
// so a garbage collector's sawtooth does not count as growth, and private
// memory (RssAnon) is judged: the control plane's Badger maps its value log
// and tables, whose page-cache pages count in VmRSS as they are written and
// are the kernel's to reclaim.
func runSoak(ctx context.Context, r *runner, res *Result) error {
	e := r.env
	if e == nil {
		return unavailable("soak starts its own system (not with --target)")
	}
	dur := r.opts.SoakDuration
	hc, conns := httpCase{wantBody: 1024}, r.conns(64)
	// Enough share links for any rate this machine reaches (the per-share
	// limit, when kept, is spread over them).
	shares, err := r.sharesFor(ctx, res, e.HTTPService, 50_000, max(dur, time.Minute), client.CreateShareRequest{})
	if err != nil {
		return err
	}
	for _, sh := range shares {
		hc.uris = append(hc.uris, []byte(e.shareURL(sh)+"/small"))
	}
	peak := r.measure(true, func() *Phase { return r.httpPhase(ctx, "soak/max", e.EdgeHTTP, hc, conns, r.opts.Duration) })
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if peak.Errors > 0 || peak.Rate <= 0 {
		return fmt.Errorf("measuring the maximum: %d errors, %.0f req/s", peak.Errors, peak.Rate)
	}
	hc.rate = peak.Rate / 2
	mon := startMonitor(e.procPIDs(true), true)
	heaps := sampleGoHeaps(map[string]string{"edge": e.EdgeAdmin, "control": strings.TrimPrefix(e.ControlURL, "http://")},
		min(max(dur/200, 200*time.Millisecond), 2*time.Second))
	res.System = r.httpPhase(ctx, "soak/system", e.EdgeHTTP, hc, conns, dur)
	res.System.Procs = mon.end()
	heapRec := heaps()
	res.System.Target = fmt.Sprintf("edge %s, %d share link(s), open loop", e.EdgeHTTP, len(shares))
	res.metric("maximum (closed loop)", peak.Rate, "req/s", "", nil)
	res.note("the maximum, closed loop over %d connections for %s: %s, p50/p99 %s ms", conns, r.opts.Duration, fmtRate(peak), fmtLat(peak))
	res.metric("soak rate (open loop, half the maximum)", res.System.Rate, "req/s", "", nil)
	pass := res.System.Errors == 0 && ctx.Err() == nil
	for _, name := range []string{"edge", "agent", "control"} {
		rec := mon.recorded(name)
		from, to, ok := windowMins(rec, soakWarm, soakWindow, func(s rssSample) int64 { return s.anon })
		if !ok {
			continue
		}
		g := to/from - 1
		ok = g <= soakGrowth
		pass = pass && ok
		res.metric(name+" private memory growth after warm-up", g*100, "%", "≤ 10%", boolPtr(ok))
		rf, rt, _ := windowMins(rec, soakWarm, soakWindow, func(s rssSample) int64 { return s.rss })
		peak := peakPrivate(rec)
		res.note("%s private memory (RssAnon) %.1f → %.1f MiB, peak %.1f MiB; resident with mapped files (VmRSS) %.1f → %.1f MiB (lowest sample after the warm-up → at the end)",
			name, from/(1<<20), to/(1<<20), float64(peak)/(1<<20), rf/(1<<20), rt/(1<<20))
		heapOf := func(s rssSample) int64 { return s.heap }
		if hf, ht, ok := windowMins(heapRec[name], soakWarm, soakWindow, heapOf); ok {
			// Private memory beyond the heap is freed memory the runtime has
			// not returned yet, stacks and memory outside Go's heap: the heap
			// tells a live set that grows from one that only swings.
			res.note("%s Go heap allocated (its /metrics, %d samples) %.1f → %.1f MiB, peak %.1f MiB (lowest after the warm-up → at the end)",
				name, len(heapRec[name]), hf/(1<<20), ht/(1<<20), float64(highest(heapRec[name], heapOf))/(1<<20))
		}
	}
	res.note("warm-up: the first %.0f%% of %s; memory compared between the next %.0f%% and the last %.0f%%",
		soakWarm*100, dur, soakWindow*100, soakWindow*100)
	res.Pass = boolPtr(pass)
	return ctx.Err()
}

// recorded returns a recording monitor's samples of one process.
func (m *monitor) recorded(name string) []rssSample {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, p := range m.procs {
		if p.name == name {
			return slices.Clone(p.rss)
		}
	}
	return nil
}

// windowMins returns the lowest memory (as v reads it from a sample) in the
// window [warm, warm+window) of a recording and in its last window
// (fractions of its length), in bytes.
func windowMins(s []rssSample, warm, window float64, v func(rssSample) int64) (from, to float64, ok bool) {
	if len(s) < 2 {
		return 0, 0, false
	}
	start, end := s[0].at, s[len(s)-1].at
	span := end.Sub(start)
	at := func(f float64) time.Time { return start.Add(time.Duration(f * float64(span))) }
	from = lowest(s, at(warm), at(warm+window), v)
	to = lowest(s, at(1-window), end.Add(time.Nanosecond), v)
	return from, to, from > 0 && to > 0
}

// peakPrivate is a recording's highest private memory, in bytes.
func peakPrivate(s []rssSample) int64 { return highest(s, func(x rssSample) int64 { return x.anon }) }

func highest(s []rssSample, v func(rssSample) int64) int64 {
	var peak int64
	for _, x := range s {
		peak = max(peak, v(x))
	}
	return peak
}

// rssSample is one reading of a process's resident memory, or of its Go
// heap (heap, read from its /metrics).
type rssSample struct {
	at        time.Time
	rss, anon int64 // VmRSS, and its private part (RssAnon)
	heap      int64 // go_memstats_heap_alloc_bytes
}

// sampleGoHeaps reads the Go heap of processes (name → address of their
// /metrics) every interval until the returned func is called, which
// returns the samples by name. A process that does not answer is skipped
// for that round.
func sampleGoHeaps(addrs map[string]string, interval time.Duration) func() map[string][]rssSample {
	out := map[string][]rssSample{}
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			for name, addr := range addrs {
				if m, err := getGoMem(addr); err == nil {
					out[name] = append(out[name], rssSample{at: time.Now(), heap: int64(m.HeapAlloc)})
				}
			}
			select {
			case <-stop:
				return
			case <-t.C:
			}
		}
	}()
	return func() map[string][]rssSample {
		close(stop)
		<-done
		return out
	}
}

func lowest(s []rssSample, from, to time.Time, v func(rssSample) int64) float64 {
	var vals []int64
	for _, x := range s {
		if !x.at.Before(from) && x.at.Before(to) {
			vals = append(vals, v(x))
		}
	}
	if len(vals) == 0 {
		return 0
	}
	return float64(slices.Min(vals))
}
