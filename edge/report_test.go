package edge

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/privateconnect/pc/edge/configsync"
	"github.com/privateconnect/pc/internal/config"
)

// reporterTo is the reporter of an edge (not started) whose control plane
// is at url.
func reporterTo(t *testing.T, url string) *reporter {
	t.Helper()
	s, err := New(Config{ControlURL: url, Token: "edge-token", DataDir: t.TempDir(), DisablePlugins: true,
		HTTPAddr: "127.0.0.1:0", TunnelAddr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	return s.reporter
}

// reportSink is a control plane that takes every report and keeps it,
// decoded and as sent.
type reportSink struct {
	srv  *httptest.Server
	mu   sync.Mutex
	reps []config.Report
	raw  []string
}

func newReportSink(t *testing.T) *reportSink { return newAnsweringSink(t, nil) }

// newAnsweringSink is a reportSink that answers the n-th report it gets
// (from 0; every one is kept) with the status answer(n) returns, nil: 200.
// answer runs in the handler, before the answer (while the report is on
// its way, for the edge).
func newAnsweringSink(t *testing.T, answer func(n int) int) *reportSink {
	k := &reportSink{}
	k.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var b strings.Builder
		var rep config.Report
		if err := json.NewDecoder(io.TeeReader(r.Body, &b)).Decode(&rep); err != nil {
			t.Errorf("report: %v", err)
		}
		k.mu.Lock()
		n := len(k.reps)
		k.reps = append(k.reps, rep)
		k.raw = append(k.raw, b.String())
		k.mu.Unlock()
		if answer != nil {
			w.WriteHeader(answer(n))
		}
	}))
	t.Cleanup(k.srv.Close)
	return k
}

// reports returns the reports taken so far and what was sent.
func (k *reportSink) reports() ([]config.Report, []string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	return slices.Clone(k.reps), slices.Clone(k.raw)
}

// TestReporterDeliversEveryLogOnce: each report carries exactly the logs
// recorded since the previous one, in order, while the reporter reuses the
// last report's buffer; a report the control plane fails to answer is sent
// again, the same (id, logs, uses, statistics), before the next one. Share
// uses and statistics count every request, beyond the log buffer's bound
// too. Every report the control plane took has an id of its own.
func TestReporterDeliversEveryLogOnce(t *testing.T) {
	var mu sync.Mutex
	var got [][]config.AccessLog
	var uses []map[string]int64
	var counted []map[string][2]int64 // share → allowed, denied
	var ids, failedIDs []string
	fail := false
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var rep config.Report
		if err := json.NewDecoder(r.Body).Decode(&rep); err != nil {
			t.Errorf("report: %v", err)
		}
		mu.Lock()
		defer mu.Unlock()
		if fail {
			failedIDs = append(failedIDs, rep.ID)
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		ids = append(ids, rep.ID)
		got = append(got, rep.AccessLogs)
		u := map[string]int64{}
		for _, x := range rep.Uses {
			u[x.ShareID] += x.Allowed
		}
		uses = append(uses, u)
		c := map[string][2]int64{}
		for _, st := range rep.Stats {
			n := c[st.ShareID]
			c[st.ShareID] = [2]int64{n[0] + st.Allowed, n[1] + st.Denied}
		}
		counted = append(counted, c)
	}))
	defer srv.Close()
	r := reporterTo(t, srv.URL)
	// Every log is kept (the sample: TestReporterSamplesAboveItsRate) up to
	// the buffer's bound.
	r.sample.rate, r.maxLogs = math.MaxInt64, maxPendingLogs
	seq := 0
	round := func(n int) []string {
		var paths []string
		for i := 0; i < n; i++ {
			p := fmt.Sprintf("/r%d", seq)
			seq++
			paths = append(paths, p)
			r.access(config.AccessLog{ShareID: "sh", Path: p, StatusCode: 200, Decision: "allowed"})
			r.access(config.AccessLog{ShareID: "other", Path: p, StatusCode: 403, Decision: "denied"})
		}
		r.flush(context.Background())
		return paths
	}
	var want [][]string
	for _, n := range []int{300, 50, 700, 0, 10} {
		want = append(want, round(n))
	}
	wantUses := []int64{300, 50, 700, 0, 10, 40, 25, maxPendingLogs, 0}
	mu.Lock()
	fail = true
	mu.Unlock()
	want = append(want, round(40))
	if r.flush(context.Background()) {
		t.Fatal("more pending after a failed report")
	}
	if d := r.dropped.Load(); d != 0 {
		t.Fatalf("dropped = %d after an unanswered report of 80 logs, want 0: they are sent again", d)
	}
	mu.Lock()
	fail = false
	mu.Unlock()
	r.access(config.AccessLog{ShareID: "late", StatusCode: 200, Decision: "allowed"}) // after the unanswered report
	if !r.flush(context.Background()) {
		t.Fatal("the report sent again, then nothing more pending")
	}
	r.flush(context.Background())
	wantUses = slices.Insert(wantUses, 6, 0)
	want = append(want, nil) // the late request's report
	want = append(want, round(25))
	// Beyond the log buffer: the logs are a sample, the uses are all there.
	// A report carries at most maxReportLogs logs: the rest go in the
	// next one, asked for at once.
	logs := round(maxPendingLogs)
	want = append(want, logs[:maxReportLogs/2])
	select {
	case <-r.kick:
	default:
		t.Fatal("no report asked for with logs left over")
	}
	r.flush(context.Background())
	want = append(want, logs[maxReportLogs/2:maxPendingLogs/2])

	mu.Lock()
	defer mu.Unlock()
	if len(got) != len(want) {
		t.Fatalf("%d reports, want %d", len(got), len(want))
	}
	if len(failedIDs) != 2 || failedIDs[0] != ids[5] || failedIDs[1] != ids[5] {
		t.Fatalf("failed report ids %q, want twice the id of the report taken next (%q)", failedIDs, ids[5])
	}
	if len(slices.Compact(slices.Sorted(slices.Values(ids)))) != len(ids) || slices.Contains(ids, "") {
		t.Fatalf("report ids %q: want each its own", ids)
	}
	for i := range want {
		if i == 6 { // the late request, alone
			if len(got[i]) != 1 || got[i][0].ShareID != "late" {
				t.Fatalf("report %d: logs %+v, want the late request's", i, got[i])
			}
			continue
		}
		if len(got[i]) != 2*len(want[i]) {
			t.Fatalf("report %d: %d logs, want %d", i, len(got[i]), 2*len(want[i]))
		}
		for j, p := range want[i] {
			if got[i][2*j].Path != p || got[i][2*j+1].Path != p {
				t.Fatalf("report %d log %d: paths %q %q, want %q", i, j, got[i][2*j].Path, got[i][2*j+1].Path, p)
			}
		}
		if uses[i]["sh"] != wantUses[i] || uses[i]["other"] != 0 {
			t.Fatalf("report %d: uses %v, want sh: %d", i, uses[i], wantUses[i])
		}
		if want := map[string][2]int64{"sh": {wantUses[i], 0}, "other": {0, wantUses[i]}}; wantUses[i] > 0 && !maps.Equal(counted[i], want) {
			t.Fatalf("report %d: statistics (allowed, denied) %v, want %v", i, counted[i], want)
		}
	}
}

// TestReporterSplitsABacklog: thousands of pending agent events, command
// results and share uses go out in reports of at most maxReportItems each, in order, and the
// reporter asks for the next report at once while a backlog remains.
func TestReporterSplitsABacklog(t *testing.T) {
	sink := newReportSink(t)
	r := reporterTo(t, sink.srv.URL)
	const n = 2*maxReportItems + 500
	for i := 0; i < n; i++ {
		r.event(config.AgentEvent{AgentID: fmt.Sprint("ag", i), Event: config.EventDisconnected})
		r.access(config.AccessLog{ShareID: fmt.Sprint("sh", i), Decision: "allowed"})
		r.commandDone(config.CommandDone{CommandID: fmt.Sprint("c", i), OK: true})
	}
	<-r.kick // the events asked for a report
	next := 0
	for round, want := range []int{maxReportItems, maxReportItems, 500} {
		r.flush(context.Background())
		reps, _ := sink.reports()
		rep := reps[len(reps)-1]
		if len(rep.Events) != want || len(rep.Uses) != want || len(rep.CommandResult) != want || len(rep.Stats) != want {
			t.Fatalf("report %d: %d events, %d uses, %d command results and %d share statistics, want %d",
				round, len(rep.Events), len(rep.Uses), len(rep.CommandResult), len(rep.Stats), want)
		}
		for _, ev := range rep.Events {
			if ev.AgentID != fmt.Sprint("ag", next) {
				t.Fatalf("report %d: event of %s, want ag%d (order)", round, ev.AgentID, next)
			}
			next++
		}
		select {
		case <-r.kick:
			if round == 2 {
				t.Fatal("a further report asked for with nothing left")
			}
		default:
			if round < 2 {
				t.Fatalf("report %d: no further report asked for with a backlog left", round)
			}
		}
	}
	// An edge with nothing to count still says it counts uses and requests.
	r.flush(context.Background())
	_, raw := sink.reports()
	if last := raw[len(raw)-1]; !strings.Contains(last, `"shareUses":[]`) || !strings.Contains(last, `"shareStats":[]`) {
		t.Fatalf("an empty report without shareUses: [] and shareStats: []: %.300s", last)
	}
}

// TestSamplerKeepsAboutItsRate: below the rate every log is kept; above it
// about rate a second once the traffic of the second before is known (the
// first second of a burst keeps rate·(1+ln(n/rate)) at most on average);
// after a quiet second every log is kept again; a rate of 0 keeps none.
func TestSamplerKeepsAboutItsRate(t *testing.T) {
	s := sampler{rate: 1000}
	second := func(sec int64, n int) int {
		kept := 0
		for i := 0; i < n; i++ {
			if s.keep(sec) {
				kept++
			}
		}
		return kept
	}
	if k := second(100, 1000); k != 1000 {
		t.Fatalf("at the rate: %d of 1000 kept", k)
	}
	if k, most := second(101, 10000), 1000*(1+math.Log(10))*1.2; k < 1000 || float64(k) > most {
		t.Fatalf("first second of 10,000: %d kept, want 1000..%.0f", k, most)
	}
	for sec := int64(102); sec < 105; sec++ {
		if k := second(sec, 10000); k < 850 || k > 1150 {
			t.Fatalf("second %d of 10,000 requests: %d kept, want about 1000", sec, k)
		}
	}
	if k := second(107, 1000); k != 1000 {
		t.Fatalf("after quiet seconds: %d of 1000 kept", k)
	}
	s = sampler{}
	if k := second(200, 100); k != 0 {
		t.Fatalf("rate 0: %d kept", k)
	}
}

// TestReporterSamplesAboveItsRate: above the access log rate the reports
// carry a sample of the logs, and the share statistics and uses still count
// every request, with their status codes, bytes and deniers; the metrics
// count what the sample left out.
func TestReporterSamplesAboveItsRate(t *testing.T) {
	sink := newReportSink(t)
	s, err := New(Config{ControlURL: sink.srv.URL, Token: "edge-token", DataDir: t.TempDir(), DisablePlugins: true,
		HTTPAddr: "127.0.0.1:0", TunnelAddr: "127.0.0.1:0", AccessLogRate: 100})
	if err != nil {
		t.Fatal(err)
	}
	r := s.reporter
	at := time.Date(2026, 11, 28, 10, 0, 59, 0, time.UTC) // two minutes
	const n = 5000
	for i := 0; i < n; i++ {
		a := config.AccessLog{ShareID: "sh", At: at.Add(time.Duration(i) * time.Millisecond), StatusCode: 200, BytesOut: 10, Decision: "allowed", LatencyMs: 2}
		if i%5 == 0 {
			a.StatusCode, a.BytesOut, a.Decision, a.DeniedBy = 403, 1, "denied", "ip-allowlist"
		}
		r.access(a)
	}
	r.flush(context.Background())
	reps, _ := sink.reports()
	rep := reps[0]
	if l := len(rep.AccessLogs); l < 100 || l > 800 {
		t.Fatalf("%d logs of %d requests at 100 a second, want a sample", l, n)
	}
	var total config.ShareStats
	minutes := map[int64]bool{}
	for i := range rep.Stats {
		total.Merge(&rep.Stats[i])
		minutes[rep.Stats[i].Minute] = true
	}
	want := config.ShareStats{Allowed: 4000, Denied: 1000, AllowedBytes: 40000, DeniedBytes: 1000,
		AllowedStatus: map[int]int64{200: 4000}, DeniedStatus: map[int]int64{403: 1000}, DeniedBy: map[string]int64{"ip-allowlist": 1000}}
	if total.Allowed != want.Allowed || total.Denied != want.Denied || total.AllowedBytes != want.AllowedBytes || total.DeniedBytes != want.DeniedBytes ||
		!maps.Equal(total.AllowedStatus, want.AllowedStatus) || !maps.Equal(total.DeniedStatus, want.DeniedStatus) || !maps.Equal(total.DeniedBy, want.DeniedBy) {
		t.Fatalf("statistics %+v, want %+v", total, want)
	}
	if len(minutes) != 2 || !total.First.Equal(at) || !total.Last.Equal(at.Add((n-1)*time.Millisecond)) {
		t.Fatalf("minutes %v, first %v, last %v", minutes, total.First, total.Last)
	}
	if got := total.Latency.Quantile(0.5); got != 2 {
		t.Fatalf("median latency %v, want 2", got)
	}
	if len(rep.Uses) != 1 || rep.Uses[0].Allowed != 4000 {
		t.Fatalf("uses %+v, want 4000 allowed", rep.Uses)
	}
	if out := counterValue(t, s.metrics.sampledOut); int(out)+len(rep.AccessLogs) != n {
		t.Fatalf("sampled out %v + sent %d, want %d", out, len(rep.AccessLogs), n)
	}
}

// TestSamplerAfterTheClockStepsBack: a clock stepped back (NTP, a VM
// restored) starts a new second; it does not keep counting the requests of
// every later second as one second's, which kept almost no logs until the
// clock caught up again.
func TestSamplerAfterTheClockStepsBack(t *testing.T) {
	s := sampler{rate: 1000}
	for i := 0; i < 500; i++ {
		s.keep(5000)
	}
	for sec := int64(1400); sec < 1420; sec++ { // an hour back, 500 requests a second
		kept := 0
		for i := 0; i < 500; i++ {
			if s.keep(sec) {
				kept++
			}
		}
		if kept != 500 {
			t.Fatalf("second %d after the clock stepped back: %d of 500 kept, below the rate of 1000", sec, kept)
		}
	}
}

// TestReporterRetriesOrDropsAReport: a report the control plane does not
// answer (503) keeps its share statistics, though the pending share-minutes
// filled up meanwhile, and is sent again the same before the newer ones; a
// report it refuses (400) is not sent again, and every request its
// statistics counted is counted in pc_edge_share_stats_dropped_total.
func TestReporterRetriesOrDropsAReport(t *testing.T) {
	var r *reporter
	at := time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC)
	status := []int{http.StatusServiceUnavailable, http.StatusOK, http.StatusOK, http.StatusBadRequest, http.StatusOK}
	sink := newAnsweringSink(t, func(n int) int {
		if n == 0 { // new share-minutes arrive while the report is on its way
			r.access(config.AccessLog{ShareID: "b", At: at, StatusCode: 200, Decision: "allowed"})
			r.access(config.AccessLog{ShareID: "c", At: at, StatusCode: 200, Decision: "allowed"})
			r.access(config.AccessLog{ShareID: "d", At: at, StatusCode: 200, Decision: "allowed"}) // does not fit
		}
		return status[n]
	})
	r = reporterTo(t, sink.srv.URL)
	r.maxStats = 2
	for i := 0; i < 5; i++ {
		r.access(config.AccessLog{ShareID: "a", At: at, StatusCode: 200, Decision: "allowed"})
	}
	allowed := func(rep config.Report) map[string]int64 {
		m := map[string]int64{}
		for _, st := range rep.Stats {
			m[st.ShareID] += st.Allowed
		}
		return m
	}
	r.flush(context.Background()) // 503
	if got := counterValue(t, r.s.metrics.statsDropped); got != 1 {
		t.Fatalf("pc_edge_share_stats_dropped_total %v, want the 1 request of share d", got)
	}
	if !r.flush(context.Background()) { // the same again, taken; b and c wait
		t.Fatal("nothing pending after the report sent again")
	}
	r.flush(context.Background()) // b and c
	for i := 0; i < 7; i++ {
		r.access(config.AccessLog{ShareID: "e", At: at, StatusCode: 200, Decision: "allowed"})
	}
	r.flush(context.Background()) // 400
	r.access(config.AccessLog{ShareID: "f", At: at, StatusCode: 200, Decision: "allowed"})
	r.flush(context.Background())
	reps, _ := sink.reports()
	if len(reps) != 5 {
		t.Fatalf("%d reports, want 5", len(reps))
	}
	for i, want := range []map[string]int64{{"a": 5}, {"a": 5}, {"b": 1, "c": 1}, {"e": 7}, {"f": 1}} {
		if got := allowed(reps[i]); !maps.Equal(got, want) {
			t.Fatalf("report %d: allowed %v, want %v", i, got, want)
		}
	}
	if reps[0].ID != reps[1].ID || reps[1].ID == reps[2].ID || reps[3].ID == reps[4].ID {
		t.Fatalf("report ids %q %q %q %q %q: want the unanswered one sent again the same, then new ones",
			reps[0].ID, reps[1].ID, reps[2].ID, reps[3].ID, reps[4].ID)
	}
	if got := counterValue(t, r.s.metrics.statsDropped); got != 1+7 {
		t.Fatalf("pc_edge_share_stats_dropped_total %v, want 8 (share d, then the refused report's 7)", got)
	}
}

// TestLastReportsSendTheBacklog: as the edge stops, the share statistics,
// uses and events still pending go out in as many reports as they need (one
// carries at most maxReportItems of each), the last one saying the edge
// stops; a single last report lost what did not fit in it.
func TestLastReportsSendTheBacklog(t *testing.T) {
	sink := newReportSink(t)
	r := reporterTo(t, sink.srv.URL)
	at := time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC)
	const shares = 2500
	for i := 0; i < shares; i++ {
		r.access(config.AccessLog{ShareID: fmt.Sprint("sh", i), At: at, StatusCode: 200, Decision: "allowed"})
	}
	r.last()
	reps, _ := sink.reports()
	var stats, uses int64
	for i, rep := range reps {
		for _, st := range rep.Stats {
			stats += st.Allowed
		}
		for _, u := range rep.Uses {
			uses += u.Allowed
		}
		if rep.Stopping != (i == len(reps)-1) {
			t.Fatalf("report %d of %d: stopping %v", i+1, len(reps), rep.Stopping)
		}
	}
	if stats != shares || uses != shares {
		t.Fatalf("the last reports counted %d requests in the statistics and %d uses, want %d", stats, uses, shares)
	}
}

// TestBusyEdgeReportsOnATick: requests that arrive while a report is on its
// way wait for the next tick; they do not make the reporter send the next
// report at once (a busy edge then reported in a loop, hundreds of reports
// a second, and the control plane spent a core storing them).
func TestBusyEdgeReportsOnATick(t *testing.T) {
	var r *reporter
	srv := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {
		r.access(config.AccessLog{ShareID: "busy", StatusCode: 200, Decision: "allowed"})
	}))
	defer srv.Close()
	r = reporterTo(t, srv.URL)
	r.access(config.AccessLog{ShareID: "busy", StatusCode: 200, Decision: "allowed"})
	for i := 0; i < 3; i++ {
		if r.flush(context.Background()) {
			t.Fatalf("report %d: more to send at once, while only new requests arrived", i)
		}
		select {
		case <-r.kick:
			t.Fatalf("report %d: the next report asked for at once", i)
		default:
		}
	}
}

// TestReporterRequeues: a report the control plane refuses as too big (413),
// or has not answered for retryFor, is given up but for what it counts: its
// statistics go in the next report, under a new id, and its access logs
// are dropped (counted).
func TestReporterRequeues(t *testing.T) {
	for _, tc := range []struct {
		name   string
		status int
		old    bool // first sent retryFor ago
	}{{"too big", http.StatusRequestEntityTooLarge, false}, {"unanswered for long", http.StatusBadGateway, true}} {
		t.Run(tc.name, func(t *testing.T) {
			sink := newAnsweringSink(t, func(n int) int {
				if n == 0 || (tc.old && n == 1) {
					return tc.status
				}
				return http.StatusOK
			})
			r := reporterTo(t, sink.srv.URL)
			for i := 0; i < 3; i++ {
				r.access(config.AccessLog{ShareID: "a", StatusCode: 200, Decision: "allowed"})
			}
			if tc.old {
				r.flush(context.Background()) // not answered: kept
				r.unackedSince = time.Now().Add(-retryFor)
			}
			r.flush(context.Background())
			if r.unacked != nil {
				t.Fatal("the report is still sent again")
			}
			if d := r.dropped.Load(); d != 3 {
				t.Fatalf("dropped %d, want its 3 logs", d)
			}
			r.access(config.AccessLog{ShareID: "a", StatusCode: 200, Decision: "allowed"})
			r.flush(context.Background())
			reps, _ := sink.reports()
			last := reps[len(reps)-1]
			if len(last.Stats) != 1 || last.Stats[0].Allowed != 4 || last.Uses[0].Allowed != 4 || len(last.AccessLogs) != 1 {
				t.Fatalf("next report: stats %+v, uses %+v, %d logs; want the 3 requests given up and the new one counted, its log alone",
					last.Stats, last.Uses, len(last.AccessLogs))
			}
			if last.ID == reps[0].ID || last.Dropped != 3 {
				t.Fatalf("next report: id %q (first %q), dropped %d; want a new id and the 3 logs dropped", last.ID, reps[0].ID, last.Dropped)
			}
		})
	}
}

// TestLastSendsWhatWaitedBehindAnUnansweredReport: as the edge stops, a
// report the control plane did not answer is sent again until it is, then
// what waited behind it, then the stopping report.
func TestLastSendsWhatWaitedBehindAnUnansweredReport(t *testing.T) {
	status := []int{503, 503, 200, 200, 200, 200}
	sink := newAnsweringSink(t, func(n int) int { return status[n] })
	r := reporterTo(t, sink.srv.URL)
	r.access(config.AccessLog{ShareID: "a", StatusCode: 200, Decision: "allowed"})
	r.flush(context.Background()) // 503: kept
	r.access(config.AccessLog{ShareID: "b", StatusCode: 200, Decision: "allowed"})
	r.last()
	reps, _ := sink.reports()
	var got []string
	for _, rep := range reps {
		for _, l := range rep.AccessLogs {
			got = append(got, l.ShareID)
		}
	}
	if want := []string{"a", "a", "a", "b"}; !slices.Equal(got, want) || !reps[len(reps)-1].Stopping {
		t.Fatalf("logs in the reports %q, want %q, the last report stopping", got, want)
	}
}

// TestReporterSendsTheRestOfASplitAtOnce: logs beyond one report's bound
// go in the next report, asked for at once.
func TestReporterSendsTheRestOfASplitAtOnce(t *testing.T) {
	sink := newReportSink(t)
	r := reporterTo(t, sink.srv.URL)
	r.sample.rate, r.maxLogs = math.MaxInt64, 1<<20
	for i := 0; i < maxReportLogs+10; i++ {
		r.access(config.AccessLog{ShareID: "a", StatusCode: 200, Decision: "allowed"})
	}
	if !r.flush(context.Background()) {
		t.Fatal("no more to send with 10 logs left behind a full report")
	}
}

// TestLastGivesUpAtOnceWithoutAControlPlane: as the edge stops, a report is
// sent again only to a control plane that is there but busy (5xx); one that
// refuses the connection or the edge's token, or is something else, ends
// the last reports at once (pcd edge with bad settings exits fast).
func TestLastGivesUpAtOnceWithoutAControlPlane(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "http://" + ln.Addr().String()
	ln.Close()
	status := func(code int) string { return newAnsweringSink(t, func(int) int { return code }).srv.URL }
	for _, tc := range []struct {
		name, url string
		fast      bool
	}{{"refused connection", closed, true}, {"401", status(401), true}, {"404", status(404), true}, {"503", status(503), false}, {"429", status(429), false}} {
		t.Run(tc.name, func(t *testing.T) {
			r := reporterTo(t, tc.url)
			r.lastFor = 2 * time.Second
			r.access(config.AccessLog{ShareID: "a", StatusCode: 200, Decision: "allowed"})
			r.flush(context.Background())
			start := time.Now()
			r.last()
			if took := time.Since(start); (took < time.Second) != tc.fast {
				t.Fatalf("last() took %v (fast: %v)", took, tc.fast)
			}
		})
	}
}

// TestReporterBoundsCommandResultBytes: command results (up to 1 MiB each)
// go out at most maxReportResultBytes a report (one whatever its size), the
// rest in the next ones at once, in order: ten of 1 MiB made a 10 MiB
// report, and a thousand one the control plane refuses.
func TestReporterBoundsCommandResultBytes(t *testing.T) {
	sink := newReportSink(t)
	r := reporterTo(t, sink.srv.URL)
	big := json.RawMessage(`"` + strings.Repeat("x", 1<<20-2) + `"`)
	for i := 0; i < 10; i++ {
		r.commandDone(config.CommandDone{CommandID: fmt.Sprint("c", i), OK: true, Result: big})
	}
	for r.flush(context.Background()) {
	}
	reps, _ := sink.reports()
	var ids []string
	for i, rep := range reps {
		size := 0
		for _, c := range rep.CommandResult {
			size += len(c.Result)
			ids = append(ids, c.CommandID)
		}
		if size > maxReportResultBytes {
			t.Fatalf("report %d: %d bytes of command results", i, size)
		}
	}
	if want := []string{"c0", "c1", "c2", "c3", "c4", "c5", "c6", "c7", "c8", "c9"}; !slices.Equal(ids, want) || len(reps) != 10 {
		t.Fatalf("%d reports carried %q, want 10 (one each) carrying %q", len(reps), ids, want)
	}
}

// TestTooBigResultsAreNotSentForEver: a report refused as too big (413)
// that has no access logs to shed is too big for its command results (a
// proxy's body limit in front of the control plane): they are dropped, the
// rest of what it counts goes in the next report.
func TestTooBigResultsAreNotSentForEver(t *testing.T) {
	sink := newAnsweringSink(t, func(n int) int {
		if n == 0 {
			return http.StatusRequestEntityTooLarge
		}
		return http.StatusOK
	})
	r := reporterTo(t, sink.srv.URL)
	r.commandDone(config.CommandDone{CommandID: "c1", OK: true, Result: json.RawMessage(`"big"`)})
	r.event(config.AgentEvent{AgentID: "ag1", Event: config.EventConnected})
	r.flush(context.Background())
	r.flush(context.Background())
	reps, _ := sink.reports()
	if len(reps) != 2 {
		t.Fatalf("%d reports, want 2", len(reps))
	}
	if len(reps[1].CommandResult) != 0 || len(reps[1].Events) != 1 {
		t.Fatalf("the second report: %d command results and %d events, want none and the event", len(reps[1].CommandResult), len(reps[1].Events))
	}
}

// TestRequeueKeepsPluginFailureCounts: a report given up puts its plugin
// failures back; one the next report already holds for the same plugin and
// share keeps its count and adds the given-up one's.
func TestRequeueKeepsPluginFailureCounts(t *testing.T) {
	sink := newAnsweringSink(t, nil)
	r := reporterTo(t, sink.srv.URL)
	r.pluginFailed("p1", "s1", nil)
	r.pluginFailed("p1", "s1", nil)
	rep, _ := r.take()
	r.pluginFailed("p1", "s1", nil)
	r.requeue(rep, "test")
	r.flush(context.Background())
	reps, _ := sink.reports()
	if len(reps) != 1 || len(reps[0].PluginFailures) != 1 || reps[0].PluginFailures[0].Count != 3 {
		t.Fatalf("reports %+v, want one plugin failure counted 3 times", reps)
	}
}

// TestFailureOf: how a failed report is sorted decides whether it is sent
// again (and as the edge stops), requeued or dropped.
func TestFailureOf(t *testing.T) {
	status := func(code int) error { return fmt.Errorf("report: %w", &configsync.StatusError{Code: code}) }
	for _, tc := range []struct {
		err  error
		want int
	}{
		{status(http.StatusRequestEntityTooLarge), failTooBig},
		{status(http.StatusBadRequest), failRefused},
		{status(http.StatusUnprocessableEntity), failRefused},
		{status(http.StatusInternalServerError), failBusy},
		{status(http.StatusBadGateway), failBusy},
		{status(http.StatusServiceUnavailable), failBusy},
		{status(http.StatusRequestTimeout), failBusy},
		{status(http.StatusTooManyRequests), failBusy},
		{status(http.StatusUnauthorized), failOther},
		{status(http.StatusNotFound), failOther},
		{context.DeadlineExceeded, failBusy},
		{fmt.Errorf("post: %w", &net.OpError{Op: "read", Err: os.ErrDeadlineExceeded}), failBusy},
		{&net.OpError{Op: "dial", Err: errors.New("connection refused")}, failOther},
	} {
		if got := failureOf(tc.err); got != tc.want {
			t.Errorf("failureOf(%v) = %d, want %d", tc.err, got, tc.want)
		}
	}
}
