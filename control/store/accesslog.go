package store

import (
	"bytes"
	"fmt"
	"strconv"
	"time"

	"github.com/privateconnect/pc/internal/config"
)

// Share access logs, per-minute statistics and share-event windows.
//
//	w/<ws>/alog/<share>/<inverted time>-<id>   AccessRecord (binary: accesscodec.go), newest first (TTL: retention)
//	w/<ws>/amin/<share>/<unix minute>          MinuteStats (TTL: StatsRetention)
//	shareev/<window>/<ws>/<share>              ShareWindow: counts of one event window
//	shareevq/<window>/<ws>/<share>             the window is waiting for its events
//
// A batch's records and the statistics it brings are written in one
// transaction ([RecordAccess]). The statistics are the edge's counts of every
// request when it sends them (the records are then a sample), else the
// records' own. Share events (share.accessed, share.denied) are aggregated
// per share per event window, by the time the control plane received the
// statistics; package control/webhooks turns each closed window into at
// most one event of each kind, in the transaction that consumes the
// shareevq entry.

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

// LatencyHistogram is the latency histogram of the edges' reports.
type LatencyHistogram = config.LatencyHistogram

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
	// Stats counts the share's requests per minute: every request, whether
	// or not its record is in Records (edges that count them send a sample
	// of the records). Nil counts the records instead.
	Stats []config.ShareStats
}

// RecordAccess stores one share's access records (kept for retention), adds
// its requests to the per-minute statistics, and to the share-event window
// of now (window long; a window already flushed moves them to the next
// one).
func RecordAccess(tx Tx, b *AccessBatch, retention, window time.Duration, now time.Time) error {
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
	}
	stats := b.Stats
	if stats == nil {
		stats = countRecords(b.Records)
	}
	if len(stats) == 0 {
		return nil
	}
	minutes := map[int64]*MinuteStats{}
	for i := range stats {
		st := &stats[i]
		ms := minutes[st.Minute]
		if ms == nil {
			ms = &MinuteStats{}
			if err := getJSON(tx, minuteKey(b.WorkspaceID, b.ShareID, st.Minute), ms); err != nil && !isNotFound(err) {
				return err
			}
			ms.Minute = time.Unix(st.Minute*60, 0).UTC()
			if ms.ByStatus == nil {
				ms.ByStatus = map[string]int64{}
			}
			minutes[st.Minute] = ms
		}
		ms.Requests += st.Allowed + st.Denied
		ms.Allowed += st.Allowed
		ms.Denied += st.Denied
		ms.BytesOut += st.AllowedBytes + st.DeniedBytes
		addByStatus(ms.ByStatus, st.AllowedStatus)
		addByStatus(ms.ByStatus, st.DeniedStatus)
		ms.Latency.Merge(&st.Latency)
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
	return addToWindow(tx, b, stats, window, now)
}

// countRecords counts records per minute, for a batch without statistics.
func countRecords(recs []AccessRecord) []config.ShareStats {
	var out []config.ShareStats
	at := map[int64]int{} // minute → index in out
	for i := range recs {
		r := &recs[i]
		m := config.Minute(r.At)
		j, ok := at[m]
		if !ok {
			j = len(out)
			at[m] = j
			out = append(out, config.ShareStats{ShareID: r.ShareID, Minute: m})
		}
		out[j].Add(&config.AccessLog{At: r.At, StatusCode: r.StatusCode, LatencyMs: r.LatencyMs, BytesOut: r.BytesOut,
			Decision: r.Decision, DeniedBy: r.DeniedBy})
	}
	return out
}

func addByStatus(to map[string]int64, from map[int]int64) {
	for code, n := range from {
		to[strconv.Itoa(code)] += n
	}
}

func addToWindow(tx Tx, b *AccessBatch, stats []config.ShareStats, window time.Duration, now time.Time) error {
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
	for i := range stats {
		st := &stats[i]
		w.Allowed += st.Allowed
		w.BytesOut += st.AllowedBytes
		addByStatus(w.ByStatus, st.AllowedStatus)
		w.Denied += st.Denied
		for by, n := range st.DeniedBy {
			w.DeniedBy[by] += n
		}
		addByStatus(w.DeniedCodes, st.DeniedStatus)
		if st.First.IsZero() {
			continue
		}
		if w.FirstAt.IsZero() || st.First.Before(w.FirstAt) {
			w.FirstAt = st.First
		}
		if st.Last.After(w.LastAt) {
			w.LastAt = st.Last
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
