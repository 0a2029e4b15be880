package bench

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"
)

// progress prints a live line while a phase runs: rewritten in place on a
// terminal, or one line every few seconds otherwise (CI logs).
type progress struct {
	w        io.Writer
	tty      bool
	disabled bool
	mu       sync.Mutex
}

func newProgress(w io.Writer, quiet bool) *progress {
	p := &progress{w: w, disabled: quiet || w == nil}
	if f, ok := w.(*os.File); ok {
		if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
			p.tty = true
		}
	}
	return p
}

// logf prints a status line (clearing a live line first).
func (p *progress) logf(format string, args ...any) {
	if p == nil || p.w == nil || p.disabled {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.tty {
		fmt.Fprint(p.w, "\r\033[K")
	}
	fmt.Fprintf(p.w, format+"\n", args...)
}

// start begins reporting a phase; the returned function stops it and
// returns the per-second throughput of the measured window.
func (p *progress) start(label string, measStart time.Time, dur time.Duration, unit string, live *liveCounters) func() ([]float64, []float64) {
	stop := make(chan struct{})
	done := make(chan [2][]float64, 1)
	go func() {
		var series, lats []float64
		every := 5 * time.Second
		if p != nil && p.tty {
			every = 250 * time.Millisecond
		}
		show := time.NewTicker(every)
		sec := time.NewTicker(time.Second)
		defer show.Stop()
		defer sec.Stop()
		begin := time.Now()
		lastOps, lastBytes := live.ops.Load(), live.bytes.Load()
		lastLat, lastLatN := live.latUs.Load(), live.latN.Load()
		lastShowOps, lastShowBytes, lastShow := lastOps, lastBytes, begin
		for {
			select {
			case <-stop:
				if p != nil && p.tty && !p.disabled {
					p.mu.Lock()
					fmt.Fprint(p.w, "\r\033[K")
					p.mu.Unlock()
				}
				done <- [2][]float64{series, lats}
				return
			case now := <-sec.C:
				o, b := live.ops.Load(), live.bytes.Load()
				l, ln := live.latUs.Load(), live.latN.Load()
				if !now.Before(measStart.Add(time.Second)) {
					if unit == unitMBps {
						series = append(series, round3(float64(b-lastBytes)/1e6))
					} else {
						series = append(series, float64(o-lastOps))
					}
					if ln > lastLatN {
						lats = append(lats, round3(float64(l-lastLat)/float64(ln-lastLatN)/1000))
					} else {
						lats = append(lats, 0)
					}
				}
				lastOps, lastBytes = o, b
				lastLat, lastLatN = l, ln
			case now := <-show.C:
				if p == nil || p.disabled {
					continue
				}
				o, b, e := live.ops.Load(), live.bytes.Load(), live.errs.Load()
				dt := now.Sub(lastShow).Seconds()
				rate := float64(o-lastShowOps) / dt
				mbps := float64(b-lastShowBytes) / 1e6 / dt
				lastShowOps, lastShowBytes, lastShow = o, b, now
				el := now.Sub(begin).Truncate(100 * time.Millisecond)
				total := ""
				if dur > 0 {
					total = "/" + (dur + measStart.Sub(begin)).Truncate(100*time.Millisecond).String()
				}
				phase := ""
				if now.Before(measStart) {
					phase = " (warm-up)"
				}
				line := fmt.Sprintf("%-28s %8s%s  %10.0f ops/s  %9.1f MB/s  %d ops  %d errors%s", label, el, total, rate, mbps, o, e, phase)
				p.mu.Lock()
				if p.tty {
					fmt.Fprint(p.w, "\r\033[K"+strings.TrimSpace(line))
				} else {
					fmt.Fprintln(p.w, strings.TrimSpace(line))
				}
				p.mu.Unlock()
			}
		}
	}()
	return func() ([]float64, []float64) {
		close(stop)
		d := <-done
		return d[0], d[1]
	}
}

func sprintf(format string, args ...any) string { return fmt.Sprintf(format, args...) }
