package plugins

import (
	"sync/atomic"
	"time"
)

// DurationBuckets are the upper bounds, in seconds, of the call-time
// histogram of each plugin (PluginStats.Durations). A built-in answers in a
// few microseconds; the default budget is 2 ms.
var DurationBuckets = [...]float64{1e-6, 2.5e-6, 5e-6, 10e-6, 25e-6, 50e-6, 100e-6, 250e-6, 500e-6, 1e-3, 2.5e-3, 10e-3, 100e-3, 1}

// bucketNs is DurationBuckets in nanoseconds.
var bucketNs = func() (ns [len(DurationBuckets)]int64) {
	for i, s := range DurationBuckets {
		ns[i] = int64(s * 1e9)
	}
	return ns
}()

// DurationHistogram is a snapshot of a call-time histogram: Counts[i] calls
// took at most DurationBuckets[i] (cumulative, as Prometheus wants them).
type DurationHistogram struct {
	Count      uint64
	SumSeconds float64
	Counts     []uint64
}

// callTimes counts call times per bucket without locks: two atomic adds per
// call.
type callTimes struct {
	buckets [len(DurationBuckets) + 1]atomic.Uint64 // the last one is +Inf
	sumNs   atomic.Uint64
}

func (c *callTimes) observe(d time.Duration) {
	ns := int64(d)
	i := 0
	for i < len(bucketNs) && ns > bucketNs[i] {
		i++
	}
	c.buckets[i].Add(1)
	c.sumNs.Add(uint64(max(ns, 0)))
}

func (c *callTimes) snapshot() DurationHistogram {
	h := DurationHistogram{Counts: make([]uint64, len(DurationBuckets))}
	var cum uint64
	for i := range c.buckets {
		cum += c.buckets[i].Load()
		if i < len(h.Counts) {
			h.Counts[i] = cum
		}
	}
	h.Count = cum
	h.SumSeconds = float64(c.sumNs.Load()) / 1e9
	return h
}
