package plugins

import (
	"testing"
	"time"
)

func TestCallTimesHistogram(t *testing.T) {
	var c callTimes
	for _, d := range []time.Duration{500 * time.Nanosecond, time.Microsecond, 3 * time.Microsecond, 2 * time.Millisecond, 5 * time.Second} {
		c.observe(d)
	}
	h := c.snapshot()
	if h.Count != 5 {
		t.Fatalf("count %d, want 5", h.Count)
	}
	// le=1µs holds 500ns and 1µs; le=5µs adds 3µs; le=2.5ms adds 2ms; 5 s is only in +Inf.
	want := map[float64]uint64{1e-6: 2, 2.5e-6: 2, 5e-6: 3, 1e-3: 3, 2.5e-3: 4, 1: 4}
	for i, le := range DurationBuckets {
		if w, ok := want[le]; ok && h.Counts[i] != w {
			t.Errorf("le=%g: %d, want %d", le, h.Counts[i], w)
		}
	}
	if got, w := h.SumSeconds, 5.0020045; got < w-1e-9 || got > w+1e-9 {
		t.Errorf("sum %v, want %v", got, w)
	}
}
