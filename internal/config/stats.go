package config

import (
	"errors"
	"maps"
	"math"
	"slices"
	"time"
)

// Share statistics: edges count every request of a share per minute
// ([ShareStats], in [Report.Stats]) whether or not its access log is sent,
// so the control plane's statistics stay exact when the logs are a sample.

// LatencyHistogram counts latencies in logarithmic buckets (ratio
// [latencyRatio], so a percentile read from it is within about 4% of the
// true value), plus the exact minimum and maximum.
type LatencyHistogram struct {
	Counts map[int]int64 `json:"counts"` // bucket index → count (JSON keys are the index in decimal)
	Min    float64       `json:"min"`
	Max    float64       `json:"max"`
}

const (
	latencyBase  = 0.01 // ms: bucket 0 holds everything up to this
	latencyRatio = 1.08
	latencyMax   = 400 // last bucket (≈ 2.3 hours)
)

func latencyBucket(ms float64) int {
	if ms <= latencyBase {
		return 0
	}
	i := int(math.Ceil(math.Log(ms/latencyBase) / math.Log(latencyRatio)))
	return min(max(i, 0), latencyMax)
}

// Add records one latency.
func (h *LatencyHistogram) Add(ms float64) {
	if h.Counts == nil {
		h.Counts = map[int]int64{}
	}
	empty := len(h.Counts) == 0 // counts only grow: no key means no sample
	h.Counts[latencyBucket(ms)]++
	if empty || ms < h.Min {
		h.Min = ms
	}
	if empty || ms > h.Max {
		h.Max = ms
	}
}

// Merge adds o into h.
func (h *LatencyHistogram) Merge(o *LatencyHistogram) {
	if len(o.Counts) == 0 {
		return
	}
	if h.Counts == nil {
		h.Counts = map[int]int64{}
	}
	empty := len(h.Counts) == 0
	for k, v := range o.Counts {
		h.Counts[k] += v
	}
	if empty || o.Min < h.Min {
		h.Min = o.Min
	}
	if empty || o.Max > h.Max {
		h.Max = o.Max
	}
}

func (h *LatencyHistogram) total() int64 {
	var n int64
	for _, v := range h.Counts {
		n += v
	}
	return n
}

// Quantile returns the q-quantile (0 < q ≤ 1) in milliseconds: the
// geometric middle of the bucket holding it, clamped to [Min, Max]. It is 0
// when the histogram is empty.
func (h *LatencyHistogram) Quantile(q float64) float64 {
	n := h.total()
	if n == 0 {
		return 0
	}
	idx := slices.Sorted(maps.Keys(h.Counts))
	rank := int64(math.Ceil(q * float64(n)))
	rank = min(max(rank, 1), n)
	var seen int64
	for _, i := range idx {
		seen += h.Counts[i]
		if seen >= rank {
			v := latencyBase
			if i > 0 {
				v = latencyBase * math.Pow(latencyRatio, float64(i)-0.5)
			}
			return math.Round(min(max(v, h.Min), h.Max)*1000) / 1000
		}
	}
	return h.Max
}

// ShareStats counts one share's requests of one minute (by access time) on
// an edge between two reports: every request, logged or not.
type ShareStats struct {
	ShareID string `json:"shareId"`
	Minute  int64  `json:"minute"` // Unix time / 60 of the requests' access time
	Allowed int64  `json:"allowed"`
	Denied  int64  `json:"denied"`
	// Bytes sent to visitors by allowed and by denied requests.
	AllowedBytes int64 `json:"allowedBytes,omitempty"`
	DeniedBytes  int64 `json:"deniedBytes,omitempty"`
	// Allowed and denied requests by status code, denied ones by the check
	// that denied them ("policy" when none is named).
	AllowedStatus map[int]int64    `json:"allowedByStatus,omitempty"`
	DeniedStatus  map[int]int64    `json:"deniedByStatus,omitempty"`
	DeniedBy      map[string]int64 `json:"deniedBy,omitempty"`
	Latency       LatencyHistogram `json:"latency"`
	First         time.Time        `json:"firstAccessAt"` // access time of the earliest request
	Last          time.Time        `json:"lastAccessAt"`  // and of the latest
	// LastAllowed is the access time of the latest allowed request: the
	// edge's share uses (Report.Uses) are derived from its statistics.
	LastAllowed time.Time `json:"-"`
}

// Minute is the Unix minute of t, the key of [ShareStats].
func Minute(t time.Time) int64 { return t.Unix() / 60 }

// Add counts one request.
func (s *ShareStats) Add(a *AccessLog) {
	if a.Decision == "allowed" {
		s.Allowed++
		s.AllowedBytes += a.BytesOut
		s.AllowedStatus = addCount(s.AllowedStatus, a.StatusCode, 1)
		if a.At.After(s.LastAllowed) {
			s.LastAllowed = a.At
		}
	} else {
		s.Denied++
		s.DeniedBytes += a.BytesOut
		s.DeniedStatus = addCount(s.DeniedStatus, a.StatusCode, 1)
		by := a.DeniedBy
		if by == "" {
			by = "policy"
		}
		s.DeniedBy = addCount(s.DeniedBy, by, 1)
	}
	s.Latency.Add(max(a.LatencyMs, 0))
	s.seen(a.At, a.At)
}

// Merge adds o's counts into s (of the same share and minute).
func (s *ShareStats) Merge(o *ShareStats) {
	s.Allowed += o.Allowed
	s.Denied += o.Denied
	s.AllowedBytes += o.AllowedBytes
	s.DeniedBytes += o.DeniedBytes
	for k, v := range o.AllowedStatus {
		s.AllowedStatus = addCount(s.AllowedStatus, k, v)
	}
	for k, v := range o.DeniedStatus {
		s.DeniedStatus = addCount(s.DeniedStatus, k, v)
	}
	for k, v := range o.DeniedBy {
		s.DeniedBy = addCount(s.DeniedBy, k, v)
	}
	s.Latency.Merge(&o.Latency)
	s.seen(o.First, o.Last)
	if o.LastAllowed.After(s.LastAllowed) {
		s.LastAllowed = o.LastAllowed
	}
}

func (s *ShareStats) seen(first, last time.Time) {
	if first.IsZero() {
		return
	}
	if s.First.IsZero() || first.Before(s.First) {
		s.First = first
	}
	if last.After(s.Last) {
		s.Last = last
	}
}

func addCount[K comparable](m map[K]int64, k K, n int64) map[K]int64 {
	if m == nil {
		m = map[K]int64{}
	}
	m[k] += n
	return m
}

// Check refuses statistics no edge counts: negative counts, latency
// buckets out of range, oversized maps.
func (s *ShareStats) Check() error {
	if s.Allowed < 0 || s.Denied < 0 || s.AllowedBytes < 0 || s.DeniedBytes < 0 {
		return errors.New("negative count")
	}
	if len(s.AllowedStatus)+len(s.DeniedStatus)+len(s.DeniedBy) > 1000 || len(s.Latency.Counts) > latencyMax+1 {
		return errors.New("too many keys")
	}
	for _, m := range []map[int]int64{s.AllowedStatus, s.DeniedStatus} {
		for _, n := range m {
			if n < 0 {
				return errors.New("negative count")
			}
		}
	}
	for by, n := range s.DeniedBy {
		if n < 0 || len(by) > 100 {
			return errors.New("bad deniedBy entry")
		}
	}
	for i, n := range s.Latency.Counts {
		if i < 0 || i > latencyMax || n < 0 {
			return errors.New("bad latency bucket")
		}
	}
	return nil
}
