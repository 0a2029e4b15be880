package store_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/privateconnect/pc/control/store"
	"github.com/privateconnect/pc/internal/config"
)

func rec(i int, at time.Time, allowed bool, status int, latency float64) store.AccessRecord {
	r := store.AccessRecord{ID: fmt.Sprintf("r%03d", i), ShareID: "sh", EdgeID: "e", At: at, IP: "10.0.0.1", Method: "GET",
		Path: "/p", StatusCode: status, LatencyMs: latency, BytesOut: 100, Decision: "allowed"}
	if !allowed {
		r.Decision, r.DeniedBy, r.BytesOut = "denied", "password", 0
	}
	return r
}

func TestAccessLogsAndStats(t *testing.T) {
	stores(t, func(t *testing.T, kv store.KV) {
		ctx := context.Background()
		now := time.Now().UTC().Truncate(time.Minute).Add(-30 * time.Minute)
		var recs []store.AccessRecord
		for i := 0; i < 30; i++ { // 3 minutes of 10 requests; every third denied
			recs = append(recs, rec(i, now.Add(time.Duration(i)*6*time.Second), i%3 != 0, map[bool]int{true: 200, false: 401}[i%3 != 0], float64(i+1)))
		}
		b := store.AccessBatch{WorkspaceID: "ws", ShareID: "sh", ServiceID: "svc", Records: recs}
		require.NoError(t, kv.Update(ctx, func(tx store.Tx) error { return store.RecordAccess(tx, &b, time.Hour, time.Minute, now) }))

		require.NoError(t, kv.View(ctx, func(tx store.Tx) error {
			// Newest first, paginated.
			var all []store.AccessRecord
			after := ""
			for {
				page, next, err := store.ListAccessLogs(tx, "ws", "sh", time.Time{}, after, 7)
				require.NoError(t, err)
				all = append(all, page...)
				if next == "" {
					break
				}
				after = next
			}
			require.Len(t, all, 30)
			for i := 1; i < len(all); i++ {
				require.False(t, all[i].At.After(all[i-1].At), "newest first")
			}
			require.Equal(t, "r029", all[0].ID)
			// since: only the last minute's 10.
			since, _, err := store.ListAccessLogs(tx, "ws", "sh", now.Add(2*time.Minute), "", 100)
			require.NoError(t, err)
			require.Len(t, since, 10)
			other, _, err := store.ListAccessLogs(tx, "ws2", "sh", time.Time{}, "", 100)
			require.NoError(t, err)
			require.Empty(t, other, "another workspace sees nothing")

			mins, err := store.ShareMinutes(tx, "ws", "sh", now.Add(-24*time.Hour))
			require.NoError(t, err)
			require.Len(t, mins, 3)
			var total, allowed, denied, bytes int64
			var lat store.LatencyHistogram
			for _, m := range mins {
				total += m.Requests
				allowed += m.Allowed
				denied += m.Denied
				bytes += m.BytesOut
				lat.Merge(&m.Latency)
			}
			require.Equal(t, int64(30), total)
			require.Equal(t, int64(20), allowed)
			require.Equal(t, int64(10), denied)
			require.Equal(t, int64(2000), bytes)
			require.InDelta(t, 15, lat.Quantile(0.5), 15*0.05)
			require.InDelta(t, 30, lat.Quantile(0.99), 30*0.05)
			require.Equal(t, float64(1), lat.Min)
			require.Equal(t, float64(30), lat.Max)
			later, err := store.ShareMinutes(tx, "ws", "sh", now.Add(time.Minute))
			require.NoError(t, err)
			require.Len(t, later, 2)
			return nil
		}))
	})
}

func TestLatencyQuantiles(t *testing.T) {
	var h store.LatencyHistogram
	require.Zero(t, h.Quantile(0.5))
	h.Add(7.5)
	require.Equal(t, 7.5, h.Quantile(0.5), "one sample: exact (clamped to min/max)")
	require.Equal(t, 7.5, h.Quantile(0.99))
	h = store.LatencyHistogram{}
	for i := 1; i <= 1000; i++ {
		h.Add(float64(i) / 10) // 0.1 .. 100 ms
	}
	for _, q := range []float64{0.5, 0.9, 0.99} {
		want := q * 100
		require.InDelta(t, want, h.Quantile(q), want*0.05, "q=%v", q)
	}
	h.Add(0)
	h.Add(1e9) // beyond the last bucket: clamped
	require.False(t, math.IsNaN(h.Quantile(1)))
	require.Equal(t, 1e9, h.Quantile(1))
}

func TestShareWindows(t *testing.T) {
	stores(t, func(t *testing.T, kv store.KV) {
		ctx := context.Background()
		const window = time.Minute
		t0 := time.Date(2026, 3, 2, 10, 0, 10, 0, time.UTC)
		add := func(now time.Time, recs ...store.AccessRecord) {
			t.Helper()
			b := store.AccessBatch{WorkspaceID: "ws", ShareID: "sh", ServiceID: "svc", Records: recs}
			require.NoError(t, kv.Update(ctx, func(tx store.Tx) error { return store.RecordAccess(tx, &b, time.Hour, window, now) }))
		}
		closed := func(end time.Time) (out []store.ShareWindow) {
			t.Helper()
			require.NoError(t, kv.View(ctx, func(tx store.Tx) error {
				return store.ClosedWindows(tx, end, func(w *store.ShareWindow) bool { out = append(out, *w); return true })
			}))
			return out
		}
		add(t0, rec(1, t0, true, 200, 1), rec(2, t0, false, 401, 1))
		add(t0.Add(20*time.Second), rec(3, t0, true, 200, 1))
		require.Empty(t, closed(t0.Add(40*time.Second)), "the window is still open")
		ws := closed(t0.Add(50 * time.Second)) // 10:01:00 ≤ end
		require.Len(t, ws, 1)
		w := ws[0]
		require.Equal(t, int64(2), w.Allowed)
		require.Equal(t, int64(1), w.Denied)
		require.Equal(t, map[string]int64{"password": 1}, w.DeniedBy)
		require.Equal(t, map[string]int64{"200": 2}, w.ByStatus)
		require.Equal(t, map[string]int64{"401": 1}, w.DeniedCodes)
		require.Equal(t, "svc", w.ServiceID)
		require.NoError(t, kv.Update(ctx, func(tx store.Tx) error { return store.FlushWindow(tx, &w, window) }))
		require.Empty(t, closed(t0.Add(time.Hour)), "flushed once")
		// A late batch stamped in the flushed window goes to the next one.
		add(t0.Add(30*time.Second), rec(4, t0, true, 200, 1))
		require.Empty(t, closed(t0.Add(50*time.Second)))
		ws = closed(t0.Add(110 * time.Second))
		require.Len(t, ws, 1)
		require.Equal(t, int64(1), ws[0].Allowed)
		require.Equal(t, t0.Truncate(window).Add(window), ws[0].Start)
	})
}

// TestCountedBatch: a batch with the edge's statistics stores its records
// (a sample) as they are and counts the statistics, not the records, in the
// minutes and in the share-event window.
func TestCountedBatch(t *testing.T) {
	stores(t, func(t *testing.T, kv store.KV) {
		ctx := context.Background()
		const window = time.Minute
		t0 := time.Now().UTC().Truncate(time.Minute).Add(-10 * time.Minute)
		var st config.ShareStats
		for i := 0; i < 90; i++ {
			a := config.AccessLog{At: t0.Add(time.Duration(i) * time.Second / 2), StatusCode: 200, BytesOut: 5, LatencyMs: 4, Decision: "allowed"}
			if i%3 == 0 {
				a.StatusCode, a.Decision, a.BytesOut = 401, "denied", 0
			}
			st.Add(&a)
		}
		st.ShareID, st.Minute = "sh", config.Minute(t0)
		b := store.AccessBatch{WorkspaceID: "ws", ShareID: "sh", ServiceID: "svc", Records: []store.AccessRecord{rec(1, t0, true, 200, 4)},
			Stats: []config.ShareStats{st}}
		require.NoError(t, kv.Update(ctx, func(tx store.Tx) error { return store.RecordAccess(tx, &b, time.Hour, window, t0) }))
		require.NoError(t, kv.View(ctx, func(tx store.Tx) error {
			logs, _, err := store.ListAccessLogs(tx, "ws", "sh", time.Time{}, "", 100)
			require.NoError(t, err)
			require.Len(t, logs, 1)
			mins, err := store.ShareMinutes(tx, "ws", "sh", t0)
			require.NoError(t, err)
			require.Len(t, mins, 1)
			m := mins[0]
			require.Equal(t, [4]int64{90, 60, 30, 300}, [4]int64{m.Requests, m.Allowed, m.Denied, m.BytesOut})
			require.Equal(t, map[string]int64{"200": 60, "401": 30}, m.ByStatus)
			require.Equal(t, float64(4), m.Latency.Quantile(0.99))
			var ws []store.ShareWindow
			require.NoError(t, store.ClosedWindows(tx, t0.Add(window), func(w *store.ShareWindow) bool { ws = append(ws, *w); return true }))
			require.Len(t, ws, 1)
			w := ws[0]
			require.Equal(t, [3]int64{60, 30, 300}, [3]int64{w.Allowed, w.Denied, w.BytesOut})
			require.Equal(t, map[string]int64{"policy": 30}, w.DeniedBy)
			require.Equal(t, map[string]int64{"401": 30}, w.DeniedCodes)
			require.Equal(t, t0, w.FirstAt)
			require.Equal(t, t0.Add(89*time.Second/2), w.LastAt)
			return nil
		}))
	})
}

// TestLatencyHistogramJSON: bucket keys are stored as decimal strings, so
// minutes recorded before the map became integer-keyed still decode.
func TestLatencyHistogramJSON(t *testing.T) {
	var h store.LatencyHistogram
	require.NoError(t, json.Unmarshal([]byte(`{"counts":{"0":1,"30":2},"min":0.005,"max":0.1}`), &h))
	require.Equal(t, map[int]int64{0: 1, 30: 2}, h.Counts)
	h.Add(0.001)
	require.Equal(t, 0.001, h.Min)
	b, err := json.Marshal(&h)
	require.NoError(t, err)
	require.JSONEq(t, `{"counts":{"0":2,"30":2},"min":0.001,"max":0.1}`, string(b))
}
