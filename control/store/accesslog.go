package store

import (
	"bytes"
	"fmt"
	"maps"
	"math"
	"slices"
	"strconv"
	"time"
)

// Share access logs, per-minute statistics and share-event windows.
//
//	w/<ws>/alog/<share>/<inverted time>-<id>   AccessRecord (binary: accesscodec.go), newest first (TTL: retention)
//	w/<ws>/amin/<share>/<unix minute>          MinuteStats (TTL: StatsRetention)
//	shareev/<window>/<ws>/<share>              ShareWindow: counts of one event window
//	shareevq/<window>/<ws>/<share>             the window is waiting for its events
//
// Records and their aggregates are written in one transaction
// ([RecordAccess]), so statistics always agree with the logs they cover.
// Share events (share.accessed, share.denied) are aggregated per share per
// event window, by the time the control plane received the logs; package
// control/webhooks turns each closed window into at most one event of each
// kind, in the transaction that consumes the shareevq entry.

// StatsRetention is how long per-minute statistics are kept (stats cover
// the last 24 hours).
const StatsRetention = 25 * time.Hour

// AccessRecord is one request through a share, as stored.
type AccessRecord struct {
	ID         string    `json:"id"`
	ShareID    string    `json:"shareId"`
	EdgeID     string    `json:"edgeId"`
	At         time.Time `json:"accessedAt"`
	IP         string    `json:"ipAddress"`
	UserAgent  string    `json:"userAgent"`
	Method     string    `json:"method"`
	Path       string    `json:"path"`
	StatusCode int       `json:"statusCode"`
	LatencyMs  float64   `json:"latencyMs"`
	BytesOut   int64     `json:"bytesOut"`
	Decision   string    `json:"decision"`
	DeniedBy   string    `json:"deniedBy,omitempty"`
}

// Allowed reports whether the request was let through.
func (r *AccessRecord) Allowed() bool { return r.Decision == "allowed" }

// MinuteStats aggregates one share's requests of one minute (by access time).
type MinuteStats struct {
	Minute   time.Time        `json:"minute"`
	Requests int64            `json:"requests"`
	Allowed  int64            `json:"allowed"`
	Denied   int64            `json:"denied"`
	BytesOut int64            `json:"bytesOut"`
	ByStatus map[string]int64 `json:"byStatus"`
	Latency  LatencyHistogram `json:"latency"`
}

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

// ShareWindow aggregates one share's requests received in one event window.
type ShareWindow struct {
	WorkspaceID string           `json:"workspaceId"`
	ShareID     string           `json:"shareId"`
	ServiceID   string           `json:"serviceId"`
	Start       time.Time        `json:"start"`
	End         time.Time        `json:"end"`
	Allowed     int64            `json:"allowed"`
	Denied      int64            `json:"denied"`
	BytesOut    int64            `json:"bytesOut"`
	ByStatus    map[string]int64 `json:"byStatus"`       // allowed requests
	DeniedBy    map[string]int64 `json:"deniedBy"`       // denied requests by check
	DeniedCodes map[string]int64 `json:"deniedByStatus"` // denied requests by status
	FirstAt     time.Time        `json:"firstAccessAt"`
	LastAt      time.Time        `json:"lastAccessAt"`
	Flushed     bool             `json:"flushed,omitempty"`
}

func accessKey(ws string, r *AccessRecord) []byte {
	return key("w", ws, "alog", r.ShareID, invTime(r.At)+"-"+r.ID)
}

func minuteKey(ws, share string, minute int64) []byte {
	return key("w", ws, "amin", share, fmt.Sprintf("%010d", minute))
}

func windowSuffix(t time.Time) string { return fmt.Sprintf("%016x", uint64(max(t.UnixNano(), 0))) }

// AccessBatch is what [RecordAccess] stores for one share.
type AccessBatch struct {
	WorkspaceID, ShareID, ServiceID string
	Records                         []AccessRecord
}

// RecordAccess stores one share's access records (kept for retention), adds
// them to the per-minute statistics, and to the share-event window of now
// (window long; a window already flushed moves them to the next one).
func RecordAccess(tx Tx, b *AccessBatch, retention, window time.Duration, now time.Time) error {
	if len(b.Records) == 0 {
		return nil
	}
	minutes := map[int64]*MinuteStats{}
	// One buffer holds every encoded record of the batch: the transaction
	// keeps the slices until it commits, so each is a part never written
	// again (a grown buffer leaves the earlier parts in the old array).
	var buf []byte
	for i := range b.Records {
		r := &b.Records[i]
		start := len(buf)
		buf = appendAccessRecord(buf, r)
		if err := tx.PutTTL(accessKey(b.WorkspaceID, r), buf[start:len(buf):len(buf)], retention); err != nil {
			return err
		}
		m := r.At.Unix() / 60
		ms := minutes[m]
		if ms == nil {
			ms = &MinuteStats{}
			if err := getJSON(tx, minuteKey(b.WorkspaceID, b.ShareID, m), ms); err != nil && !isNotFound(err) {
				return err
			}
			ms.Minute = time.Unix(m*60, 0).UTC()
			if ms.ByStatus == nil {
				ms.ByStatus = map[string]int64{}
			}
			minutes[m] = ms
		}
		ms.Requests++
		if r.Allowed() {
			ms.Allowed++
		} else {
			ms.Denied++
		}
		ms.BytesOut += r.BytesOut
		ms.ByStatus[strconv.Itoa(r.StatusCode)]++
		ms.Latency.Add(r.LatencyMs)
	}
	for m, ms := range minutes {
		ttl := StatsRetention - now.Sub(ms.Minute)
		if ttl <= 0 {
			continue // too old to count in any 24-hour window
		}
		if err := putJSONTTL(tx, minuteKey(b.WorkspaceID, b.ShareID, m), ms, ttl); err != nil {
			return err
		}
	}
	return addToWindow(tx, b, window, now)
}

func addToWindow(tx Tx, b *AccessBatch, window time.Duration, now time.Time) error {
	if window <= 0 {
		return nil
	}
	start := now.Truncate(window)
	var w ShareWindow
	var k []byte
	for {
		k = key("shareev", windowSuffix(start), b.WorkspaceID, b.ShareID)
		w = ShareWindow{}
		err := getJSON(tx, k, &w)
		if isNotFound(err) {
			w = ShareWindow{WorkspaceID: b.WorkspaceID, ShareID: b.ShareID, ServiceID: b.ServiceID, Start: start, End: start.Add(window),
				ByStatus: map[string]int64{}, DeniedBy: map[string]int64{}, DeniedCodes: map[string]int64{}}
			break
		}
		if err != nil {
			return err
		}
		if !w.Flushed {
			break
		}
		start = start.Add(window) // its events are out: count in the next window
	}
	for i := range b.Records {
		r := &b.Records[i]
		if r.Allowed() {
			w.Allowed++
			w.BytesOut += r.BytesOut
			w.ByStatus[strconv.Itoa(r.StatusCode)]++
		} else {
			w.Denied++
			by := r.DeniedBy
			if by == "" {
				by = "policy"
			}
			w.DeniedBy[by]++
			w.DeniedCodes[strconv.Itoa(r.StatusCode)]++
		}
		if w.FirstAt.IsZero() || r.At.Before(w.FirstAt) {
			w.FirstAt = r.At
		}
		if r.At.After(w.LastAt) {
			w.LastAt = r.At
		}
	}
	ttl := windowTTL(window)
	if err := putJSONTTL(tx, k, &w, ttl); err != nil {
		return err
	}
	return tx.PutTTL(key("shareevq", windowSuffix(start), b.WorkspaceID, b.ShareID), nil, 0)
}

func windowTTL(window time.Duration) time.Duration { return 3*window + time.Hour }

// ClosedWindows calls fn with the share windows that ended at or before
// end and whose events are not out yet, oldest first, until fn returns
// false.
func ClosedWindows(tx Tx, end time.Time, fn func(w *ShareWindow) bool) error {
	pfx := prefix("shareevq")
	return tx.Scan(pfx, nil, func(k, _ []byte) (bool, error) {
		rest := k[len(pfx):]
		i := bytes.IndexByte(rest, '/')
		if i < 0 {
			return true, nil
		}
		n, err := strconv.ParseUint(string(rest[:i]), 16, 64)
		if err != nil {
			return true, nil
		}
		var w ShareWindow
		if err := getJSON(tx, key("shareev", string(rest)), &w); err != nil {
			if isNotFound(err) {
				return true, nil // expired: nothing to report
			}
			return false, err
		}
		if !time.Unix(0, int64(n)).Before(end) || w.End.After(end) {
			return false, nil
		}
		return fn(&w), nil
	})
}

// FlushWindow marks a window's events out: later records of its share go to
// a newer window.
func FlushWindow(tx Tx, w *ShareWindow, window time.Duration) error {
	sfx := windowSuffix(w.Start)
	if err := tx.Delete(key("shareevq", sfx, w.WorkspaceID, w.ShareID)); err != nil {
		return err
	}
	w.Flushed = true
	return putJSONTTL(tx, key("shareev", sfx, w.WorkspaceID, w.ShareID), w, windowTTL(window))
}

// ListAccessLogs pages through a share's access records, newest first;
// records older than since (when set) end the list.
func ListAccessLogs(tx Tx, ws, share string, since time.Time, after string, limit int) ([]AccessRecord, string, error) {
	return listUntil(tx, prefix("w", ws, "alog", share), after, limit, func(r *AccessRecord) (bool, bool) {
		if !since.IsZero() && r.At.Before(since) {
			return false, true
		}
		return true, false
	})
}

// ShareMinutes returns a share's per-minute statistics from the minute of
// since on, oldest first.
func ShareMinutes(tx Tx, ws, share string, since time.Time) ([]MinuteStats, error) {
	pfx := prefix("w", ws, "amin", share)
	m := since.Unix()/60 - 1
	after := minuteKey(ws, share, m)
	var out []MinuteStats
	err := tx.Scan(pfx, after, func(k, v []byte) (bool, error) {
		var ms MinuteStats
		if err := decode(k, v, &ms); err != nil {
			return false, fmt.Errorf("decode %s: %w", k, err)
		}
		out = append(out, ms)
		return true, nil
	})
	return out, err
}
