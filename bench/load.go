package bench

import (
	"context"
	"math"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// opFunc is one operation of a load worker (one request, one message, one
// transfer). It returns the payload bytes it moved and an error kind ("" on
// success; see errKind).
type opFunc func(w *worker) (bytes int64, errKind string)

// loadSpec describes one phase of load.
type loadSpec struct {
	Label string // for progress lines, e.g. "http-small/system"
	// Conns is the number of concurrent workers, each with its own
	// connection(s).
	Conns int
	// Duration of the measured window (0: until MaxOps ops are done).
	Duration time.Duration
	// Warmup runs the same load, unmeasured, before the window.
	Warmup time.Duration
	// Rate is the open-loop target in ops/s over all workers (0: closed
	// loop). In open loop each op's latency is measured from its intended
	// send time, so a stalled server cannot hide queueing delay
	// (no coordinated omission). An op due in the window that no worker
	// could send by openLoopGrace after its end is not sent: it counts as
	// an error of kind "unsent", and the phase ends on time.
	Rate float64
	// MaxOps stops the phase after this many ops (0: no limit).
	MaxOps int64
	// Unit of throughput: "req/s", "msg/s", "events/s" (ops per second) or
	// "MB/s" (payload bytes per second, 10^6).
	Unit string
	// Setup runs once per worker before the load (dial, upgrade…).
	Setup func(w *worker) error
	Op    opFunc
	// Teardown runs once per worker at the end.
	Teardown func(w *worker)
}

// worker is one load goroutine's state.
type worker struct {
	id    int
	hist  *hdrhistogram.Histogram
	state any
	errs  map[string]int64
	ops   int64
	bytes int64
	// lat, when set by an op, replaces the measured latency (used by
	// streams whose latency is carried in the payload, e.g. SSE).
	lat []time.Duration
}

// Latency bounds of the histograms: 1 µs to 1 hour, 3 significant digits.
const (
	histMin = 1
	histMax = int64(time.Hour / time.Microsecond)
)

func newHist() *hdrhistogram.Histogram { return hdrhistogram.New(histMin, histMax, 3) }

func (w *worker) record(d time.Duration) {
	us := d.Microseconds()
	if us < histMin {
		us = histMin
	}
	if us > histMax {
		us = histMax
	}
	_ = w.hist.RecordValue(us)
}

// openLoopGrace is how long after the end of the window an open loop may
// still send the window's late ops (the workers were all busy): a server
// that cannot keep up must not stretch a 10 s phase into minutes of backlog.
const openLoopGrace = time.Second

// kindUnsent counts the ops of an open loop that were due in the measured
// window but never sent, every worker being busy with earlier ones.
const kindUnsent = "unsent"

// live counters read by the progress line.
type liveCounters struct {
	ops, errs, bytes atomic.Int64
	// latUs and latN give the mean latency of each second.
	latUs, latN atomic.Int64
}

// runLoad runs one phase and returns its measurements (without process
// statistics, which the caller adds).
func runLoad(ctx context.Context, spec loadSpec, prog *progress) *Phase {
	if spec.Conns <= 0 {
		spec.Conns = 1
	}
	var live liveCounters
	workers := make([]*worker, spec.Conns)
	for i := range workers {
		workers[i] = &worker{id: i, hist: newHist(), errs: map[string]int64{}}
	}
	// Setup in parallel (bounded), so 100 stream dials do not serialize.
	setupErrs := make([]error, spec.Conns)
	if spec.Setup != nil {
		var wg sync.WaitGroup
		sem := make(chan struct{}, 32)
		for i, w := range workers {
			wg.Add(1)
			sem <- struct{}{}
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				setupErrs[i] = spec.Setup(w)
			}()
		}
		wg.Wait()
	}
	t0 := time.Now()
	measStart := t0.Add(spec.Warmup)
	var end time.Time
	if spec.Duration > 0 {
		end = measStart.Add(spec.Duration)
	}
	var ticket atomic.Int64
	var exhausted atomic.Bool // MaxOps reached before the end of the window
	var interval time.Duration
	if spec.Rate > 0 {
		interval = time.Duration(float64(time.Second) / spec.Rate)
	}
	stopProg := prog.start(spec.Label, measStart, spec.Duration, spec.Unit, &live)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var lastDone atomic.Int64
	var sentMeasured atomic.Int64 // open loop: ops of the window that were sent
	var wg sync.WaitGroup
	for i, w := range workers {
		if setupErrs[i] != nil {
			w.errs[errKind(setupErrs[i])]++
			live.errs.Add(1)
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				var start time.Time
				if interval > 0 {
					n := ticket.Add(1) - 1
					if spec.MaxOps > 0 && n >= spec.MaxOps {
						exhausted.Store(true)
						return
					}
					start = t0.Add(time.Duration(n) * interval)
					if !end.IsZero() && !start.Before(end) {
						return
					}
					if d := time.Until(start); d > 0 {
						sleepCtx(ctx, d)
					}
					if !end.IsZero() && time.Now().After(end.Add(openLoopGrace)) {
						return // too late: counted as unsent below
					}
					if !start.Before(measStart) {
						sentMeasured.Add(1)
					}
				} else {
					if spec.MaxOps > 0 && ticket.Add(1) > spec.MaxOps {
						exhausted.Store(true)
						return
					}
					start = time.Now()
					if !end.IsZero() && !start.Before(end) {
						return
					}
				}
				w.lat = w.lat[:0]
				b, ek := spec.Op(w)
				done := time.Now()
				measured := !start.Before(measStart)
				if ek != "" && ctx.Err() != nil {
					return // the run was interrupted: not the server's error
				}
				if ek != "" {
					live.errs.Add(1)
					if measured {
						w.errs[ek]++
					}
					if ctx.Err() == nil && !strings.HasPrefix(ek, "status-") {
						time.Sleep(time.Millisecond) // no hot spin on refused connections
					}
					continue
				}
				live.ops.Add(1)
				live.bytes.Add(b)
				if !measured {
					continue
				}
				w.ops++
				w.bytes += b
				if len(w.lat) > 0 {
					for _, l := range w.lat {
						w.record(l)
						live.latUs.Add(l.Microseconds())
						live.latN.Add(1)
					}
				} else {
					w.record(done.Sub(start))
					live.latUs.Add(done.Sub(start).Microseconds())
					live.latN.Add(1)
				}
				for {
					old := lastDone.Load()
					if done.UnixNano() <= old || lastDone.CompareAndSwap(old, done.UnixNano()) {
						break
					}
				}
			}
		}()
	}
	wg.Wait()
	interrupted := ctx.Err() != nil
	series, latSeries := stopProg()
	if spec.Teardown != nil {
		for i, w := range workers {
			if setupErrs[i] == nil {
				spec.Teardown(w)
			}
		}
	}
	elapsed := time.Duration(lastDone.Load() - measStart.UnixNano())
	if spec.Duration > 0 && elapsed < spec.Duration && !exhausted.Load() {
		elapsed = spec.Duration
		if interrupted {
			// Stopped early (SIGINT): the ops were done in the time
			// before it, not over the whole window.
			elapsed = min(spec.Duration, time.Since(measStart))
		}
	}
	if elapsed <= 0 {
		elapsed = time.Since(measStart)
	}
	ph := &Phase{Interrupted: interrupted, Seconds: round3(elapsed.Seconds()), Unit: spec.Unit, Connections: spec.Conns, ErrorKinds: map[string]int64{}, Series: series, LatencySeries: latSeries}
	if spec.Rate > 0 {
		ph.TargetRate = spec.Rate
	}
	h := newHist()
	for _, w := range workers {
		h.Merge(w.hist)
		ph.Ops += w.ops
		ph.Bytes += w.bytes
		for k, v := range w.errs {
			ph.ErrorKinds[k] += v
			ph.Errors += v
		}
	}
	if interval > 0 && !end.IsZero() && !interrupted {
		// The window's due ops (those MaxOps allows) that were never sent.
		due := int64((end.Sub(t0)+interval-1)/interval) - int64((measStart.Sub(t0)+interval-1)/interval)
		if spec.MaxOps > 0 {
			due = min(due, spec.MaxOps-int64((measStart.Sub(t0)+interval-1)/interval))
		}
		if unsent := due - sentMeasured.Load(); unsent > 0 {
			ph.ErrorKinds[kindUnsent] += unsent
			ph.Errors += unsent
		}
	}
	ph.Rate = rateOf(spec.Unit, ph.Ops, ph.Bytes, elapsed.Seconds())
	ph.Latency = summarize(h)
	ph.hist = h
	return ph
}

// rateOf is a phase's throughput in its unit: MB/s (10^6) of payload, or
// operations per second.
func rateOf(unit string, ops, bytes int64, seconds float64) float64 {
	if unit == unitMBps {
		return round3(float64(bytes) / 1e6 / seconds)
	}
	return round3(float64(ops) / seconds)
}

// mergePhases adds up slices of one load (interleaved with another, see
// interleave): ops, bytes, errors and seconds add, latencies merge as
// histograms, CPU seconds add and memory peaks take the highest.
func mergePhases(parts []*Phase) *Phase {
	if len(parts) == 1 {
		return parts[0]
	}
	out := &Phase{Unit: parts[0].Unit, Connections: parts[0].Connections, TargetRate: parts[0].TargetRate,
		Target: parts[0].Target, ErrorKinds: map[string]int64{}}
	h := newHist()
	procs := map[string]*ProcStat{}
	var order []string
	for _, p := range parts {
		out.Seconds += p.Seconds
		out.Ops += p.Ops
		out.Bytes += p.Bytes
		out.Errors += p.Errors
		for k, v := range p.ErrorKinds {
			out.ErrorKinds[k] += v
		}
		if p.hist != nil {
			h.Merge(p.hist)
		}
		out.Series = append(out.Series, p.Series...)
		out.LatencySeries = append(out.LatencySeries, p.LatencySeries...)
		for _, ps := range p.Procs {
			m, ok := procs[ps.Name]
			if !ok {
				c := ps
				procs[ps.Name] = &c
				order = append(order, ps.Name)
				continue
			}
			m.CPUSeconds += ps.CPUSeconds
			m.PeakRSSMiB = max(m.PeakRSSMiB, ps.PeakRSSMiB)
			m.HWMMiB = max(m.HWMMiB, ps.HWMMiB)
			m.EndRSSMiB = ps.EndRSSMiB
		}
	}
	for _, n := range order {
		out.Procs = append(out.Procs, *procs[n])
	}
	out.Seconds = round3(out.Seconds)
	if out.Seconds > 0 {
		out.Rate = rateOf(out.Unit, out.Ops, out.Bytes, out.Seconds)
	}
	out.hist = h
	out.Latency = summarize(h)
	return out
}

// interleave measures two loads in alternating slices (a, b, a, b…), so
// that whatever else the machine does during the run weighs on both alike,
// and returns each one's slices merged. slice(i, d) runs slice i of a load
// for d.
func interleave(slices int, d time.Duration, a, b func(d time.Duration) *Phase) (*Phase, *Phase) {
	var as, bs []*Phase
	per := d / time.Duration(slices)
	for range slices {
		as = append(as, a(per))
		bs = append(bs, b(per))
	}
	return mergePhases(as), mergePhases(bs)
}

func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// Latency is a latency distribution in milliseconds.
type Latency struct {
	Count int64   `json:"count"`
	P50   float64 `json:"p50Ms"`
	P90   float64 `json:"p90Ms"`
	P99   float64 `json:"p99Ms"`
	P999  float64 `json:"p999Ms"`
	Max   float64 `json:"maxMs"`
	Mean  float64 `json:"meanMs"`
}

func summarize(h *hdrhistogram.Histogram) *Latency {
	if h.TotalCount() == 0 {
		return nil
	}
	ms := func(us int64) float64 { return round3(float64(us) / 1000) }
	return &Latency{Count: h.TotalCount(), P50: ms(h.ValueAtQuantile(50)), P90: ms(h.ValueAtQuantile(90)),
		P99: ms(h.ValueAtQuantile(99)), P999: ms(h.ValueAtQuantile(99.9)), Max: ms(h.Max()),
		Mean: round3(h.Mean() / 1000)}
}

// summarizeDurations builds a Latency from raw samples (for small sample
// sets such as config propagation).
func summarizeDurations(ds []time.Duration) *Latency {
	h := newHist()
	w := &worker{hist: h}
	for _, d := range ds {
		w.record(d)
	}
	return summarize(h)
}

func round3(f float64) float64 {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return 0
	}
	return math.Round(f*1000) / 1000
}
