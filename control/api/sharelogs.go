package api

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"time"

	"github.com/google/uuid"

	"github.com/privateconnect/pc/control/push"
	"github.com/privateconnect/pc/control/store"
	"github.com/privateconnect/pc/internal/config"
)

// Share monitoring: edge reports carry access logs (a sample above the
// edge's access log rate) and per-minute share statistics counting every
// request; each log is stored with a TTL
// (MonitoringOptions.AccessLogRetention), the statistics are added to the
// per-minute statistics and the share-event window (store.RecordAccess), in
// transactions of at most accessChunk items (Badger bounds a transaction's
// size).

const accessChunk = 500

// A share-minute of statistics counts as this many items of a chunk: it
// reads and writes a minute's record and the share's event window.
const statsWeight = 4

// recordAccess stores the access logs and share statistics of an edge
// report; stats nil (edges that do not count) counts the logs instead. Logs
// and statistics of unknown shares are skipped.
//
// Chunk n is part "access/<n>" of the report (once): a report sent again
// after its answer was lost skips the chunks stored the first time. The
// chunks are cut the same way each time the same report comes. So a
// storage failure fails a report that has an id, after the chunks before
// it: the edge sends the report again and the rest is stored then. A report
// without an id (an edge before them) would count its stored chunks again:
// its failed chunk is dropped instead (its logs counted in
// pc_control_access_logs_dropped_total, the requests its statistics
// counted in pc_control_share_stats_dropped_total).
func (a *API) recordAccess(ctx context.Context, once push.ReportOnce, edgeID string, logs []config.AccessLog, stats []config.ShareStats) error {
	if len(logs) == 0 && len(stats) == 0 {
		return nil
	}
	type shareRef struct{ ws, service string }
	type work struct {
		recs  []store.AccessRecord
		stats []config.ShareStats
	}
	edgeCounts := stats != nil // else each chunk's records are counted (store.AccessBatch)
	order := []string{}
	byShare := map[string]*work{}
	get := func(id string) *work {
		w := byShare[id]
		if w == nil {
			w = &work{}
			if edgeCounts {
				w.stats = []config.ShareStats{} // not nil: do not count the records
			}
			byShare[id] = w
			order = append(order, id)
		}
		return w
	}
	for i := range logs {
		w := get(logs[i].ShareID)
		w.recs = append(w.recs, accessRecordOf(edgeID, &logs[i]))
	}
	// Statistics no edge counts are left out, with one warning a report:
	// what Check refuses, or a minute more than 10 minutes ahead of this
	// clock (it would be kept for ever and shown in every 24 hours' stats).
	// The latter depends on the time, so it is left out of its chunk only
	// once the chunks are cut: the same report sent again a minute later
	// is cut the same way, and its parts claimed the first time are the
	// same parts.
	latest := config.Minute(time.Now().Add(10 * time.Minute))
	future := func(st config.ShareStats) bool { return st.Minute > latest }
	bad, why := 0, ""
	for i := range stats {
		if err := stats[i].Check(); err != nil {
			bad, why = bad+1, err.Error()
			continue
		}
		w := get(stats[i].ShareID)
		w.stats = append(w.stats, stats[i])
	}
	defer func() {
		if bad > 0 {
			a.log.Warn("edge report: share statistics ignored", "edge", edgeID, "entries", bad, "last", why)
		}
	}()
	refs := map[string]*shareRef{} // nil: unknown share
	for n := 0; len(order) > 0; n++ {
		// The next chunk: whole shares while they fit, a share's records
		// beyond accessChunk alone in chunks of their own.
		var chunk []store.AccessBatch
		cost := 0
		for len(order) > 0 {
			w := byShare[order[0]]
			c := len(w.recs) + statsWeight*len(w.stats)
			if cost > 0 && cost+c > accessChunk {
				break
			}
			b := store.AccessBatch{ShareID: order[0], Records: w.recs, Stats: w.stats}
			if len(w.recs) > accessChunk { // the rest of the records next time, without the statistics
				b.Records, w.recs = w.recs[:accessChunk], w.recs[accessChunk:]
				if edgeCounts {
					w.stats = []config.ShareStats{}
				}
			} else {
				order = order[1:]
			}
			chunk = append(chunk, b)
			cost += len(b.Records) + statsWeight*len(b.Stats)
		}
		for i := range chunk {
			if slices.ContainsFunc(chunk[i].Stats, future) {
				kept := slices.DeleteFunc(slices.Clone(chunk[i].Stats), future)
				bad, why = bad+len(chunk[i].Stats)-len(kept), "minute in the future"
				chunk[i].Stats = kept
			}
		}
		now := time.Now().UTC()
		stored, unknown, logsIn, requests := 0, 0, 0, int64(0)
		for i := range chunk {
			logsIn += len(chunk[i].Records)
			for j := range chunk[i].Stats {
				requests += chunk[i].Stats[j].Allowed + chunk[i].Stats[j].Denied
			}
		}
		applied, err := once.Do(ctx, a.kv, "access/"+strconv.Itoa(n), func(tx store.Tx) error {
			stored, unknown = 0, 0
			for i := range chunk {
				b := chunk[i] // a copy: a retried transaction starts afresh
				ref, seen := refs[b.ShareID]
				if !seen {
					sh, err := store.LookupShare(tx, b.ShareID)
					switch {
					case errors.Is(err, store.ErrNotFound):
					case err != nil:
						return err
					default:
						ref = &shareRef{ws: sh.WorkspaceID, service: sh.ServiceID}
					}
					refs[b.ShareID] = ref
				}
				if ref == nil {
					unknown += len(b.Records)
					continue
				}
				b.WorkspaceID, b.ServiceID = ref.ws, ref.service
				if err := store.RecordAccess(tx, &b, a.opts.Monitoring.AccessLogRetention,
					a.webhooks.Options().ShareEventWindow, now); err != nil {
					return err
				}
				stored += len(b.Records)
			}
			return nil
		})
		if err != nil && once.Identified() {
			a.log.Warn("access logs not stored: the edge sends them again", "edge", edgeID, "logs", logsIn, "err", err)
			return err
		}
		if err != nil {
			a.log.Warn("access logs not stored", "edge", edgeID, "logs", logsIn, "err", err)
			a.metrics.accessDropped.WithLabelValues("store").Add(float64(logsIn))
			a.metrics.statsDropped.Add(float64(requests))
			continue
		}
		if !applied {
			continue
		}
		if unknown > 0 {
			a.metrics.accessDropped.WithLabelValues("unknown_share").Add(float64(unknown))
		}
		a.metrics.accessStored.Add(float64(stored))
	}
	return nil
}

func accessRecordOf(edgeID string, l *config.AccessLog) store.AccessRecord {
	at := l.At.UTC()
	if at.IsZero() {
		at = time.Now().UTC()
	}
	decision := "allowed"
	if l.Decision != "allowed" {
		decision = "denied"
	}
	return store.AccessRecord{ID: uuid.NewString(), ShareID: l.ShareID, EdgeID: edgeID, At: at, IP: config.Cut(l.IP, 64),
		UserAgent: config.Cut(l.UserAgent, config.MaxLogUserAgent), Method: config.Cut(l.Method, 16), Path: config.Cut(config.LogPath(l.Path), config.MaxLogPath),
		StatusCode: l.StatusCode, LatencyMs: max(l.LatencyMs, 0), BytesOut: max(l.BytesOut, 0), Decision: decision,
		DeniedBy: config.Cut(l.DeniedBy, 100)}
}

type accessLogView struct {
	ID         string    `json:"id"`
	AccessedAt time.Time `json:"accessedAt"`
	IPAddress  string    `json:"ipAddress"`
	UserAgent  string    `json:"userAgent"`
	Method     string    `json:"method"`
	Path       string    `json:"path"`
	StatusCode int       `json:"statusCode"`
	LatencyMs  float64   `json:"latencyMs"`
	BytesOut   int64     `json:"bytesOut"`
	EdgeID     string    `json:"edgeId"`
	Decision   string    `json:"decision"`
	DeniedBy   *string   `json:"deniedBy"`
}

func (a *API) shareLogs(c *call) (any, error) {
	after, limit, err := c.page()
	if err != nil {
		return nil, err
	}
	var since time.Time
	if s := c.query("since"); s != "" {
		if since, err = time.Parse(time.RFC3339Nano, s); err != nil {
			return nil, invalidField("since", "must be an RFC 3339 time, e.g. 2026-03-02T10:00:00Z")
		}
	}
	var recs []store.AccessRecord
	var next string
	err = a.kv.View(c.ctx, func(tx store.Tx) error {
		if _, err := store.GetShare(tx, c.ws, c.param("id")); err != nil {
			return err
		}
		var err error
		recs, next, err = store.ListAccessLogs(tx, c.ws, c.param("id"), since, after, limit)
		return err
	})
	if err != nil {
		return nil, err
	}
	c.setNext(next)
	out := make([]accessLogView, 0, len(recs))
	for i := range recs {
		r := &recs[i]
		v := accessLogView{ID: r.ID, AccessedAt: apiTime(r.At), IPAddress: r.IP, UserAgent: r.UserAgent, Method: r.Method, Path: r.Path,
			StatusCode: r.StatusCode, LatencyMs: r.LatencyMs, BytesOut: r.BytesOut, EdgeID: r.EdgeID, Decision: r.Decision}
		if r.DeniedBy != "" {
			by := r.DeniedBy
			v.DeniedBy = &by
		}
		out = append(out, v)
	}
	return out, nil
}

type shareStatsView struct {
	From         time.Time        `json:"from"`
	To           time.Time        `json:"to"`
	Requests     int64            `json:"requests"`
	Allowed      int64            `json:"allowed"`
	Denied       int64            `json:"denied"`
	BytesOut     int64            `json:"bytesOut"`
	P50LatencyMs float64          `json:"p50LatencyMs"`
	P99LatencyMs float64          `json:"p99LatencyMs"`
	ByStatus     map[string]int64 `json:"byStatus"`
	ByMinute     []minuteView     `json:"byMinute"`
}

type minuteView struct {
	Minute       time.Time `json:"minute"`
	Requests     int64     `json:"requests"`
	Allowed      int64     `json:"allowed"`
	Denied       int64     `json:"denied"`
	BytesOut     int64     `json:"bytesOut"`
	P50LatencyMs float64   `json:"p50LatencyMs"`
	P99LatencyMs float64   `json:"p99LatencyMs"`
}

// shareStats sums the share's per-minute statistics of the last 24 hours
// (at most 1,440 records). byMinute lists the minutes with requests, oldest
// first.
func (a *API) shareStats(c *call) (any, error) {
	to := c.now
	from := to.Add(-24 * time.Hour).Truncate(time.Minute)
	var mins []store.MinuteStats
	err := a.kv.View(c.ctx, func(tx store.Tx) error {
		if _, err := store.GetShare(tx, c.ws, c.param("id")); err != nil {
			return err
		}
		var err error
		mins, err = store.ShareMinutes(tx, c.ws, c.param("id"), from)
		return err
	})
	if err != nil {
		return nil, err
	}
	out := shareStatsView{From: from, To: to, ByStatus: map[string]int64{}, ByMinute: make([]minuteView, 0, len(mins))}
	var lat store.LatencyHistogram
	for i := range mins {
		m := &mins[i]
		if m.Minute.Before(from) {
			continue
		}
		out.Requests += m.Requests
		out.Allowed += m.Allowed
		out.Denied += m.Denied
		out.BytesOut += m.BytesOut
		for k, v := range m.ByStatus {
			out.ByStatus[k] += v
		}
		lat.Merge(&m.Latency)
		out.ByMinute = append(out.ByMinute, minuteView{Minute: m.Minute, Requests: m.Requests, Allowed: m.Allowed, Denied: m.Denied,
			BytesOut: m.BytesOut, P50LatencyMs: m.Latency.Quantile(0.5), P99LatencyMs: m.Latency.Quantile(0.99)})
	}
	out.P50LatencyMs, out.P99LatencyMs = lat.Quantile(0.5), lat.Quantile(0.99)
	return out, nil
}

// reportMonitoring applies the monitoring parts of an edge report: access
// logs and share statistics (stored before the report is answered, so logs and stats are
// readable once the edge's report returned), the edge's dropped count, and
// plugin failures. An error (a storage failure, recordAccess) fails the
// report: the edge sends it again.
func (a *API) reportMonitoring(c *call, r *config.Report) error {
	once := push.NewReportOnce(c.edge.ID, r.ID, a.metrics.reportRepeated.Inc)
	err := a.recordAccess(c.ctx, once, c.edge.ID, r.AccessLogs, r.Stats)
	if r.Dropped > 0 {
		if applied, derr := once.Do(c.ctx, a.kv, "dropped", nil); derr == nil && applied {
			a.metrics.edgeDropped.WithLabelValues(c.edge.ID).Add(float64(r.Dropped))
		}
	}
	if err == nil {
		a.pluginFailures(c.ctx, once, c.edge.ID, r.PluginFailures)
	}
	return err
}
