package edge

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

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

// TestReporterDeliversEveryLogOnce: each report carries exactly the logs
// recorded since the previous one, in order, while the reporter reuses the
// last report's buffer; a report the control plane refuses counts its logs
// as dropped and the next one is unaffected. Share uses count every allowed
// request, beyond the log buffer's bound too, and survive a refused report.
func TestReporterDeliversEveryLogOnce(t *testing.T) {
	var mu sync.Mutex
	var got [][]config.AccessLog
	var uses []map[string]int64
	fail := false
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var rep config.Report
		if err := json.NewDecoder(r.Body).Decode(&rep); err != nil {
			t.Errorf("report: %v", err)
		}
		mu.Lock()
		defer mu.Unlock()
		if fail {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		got = append(got, rep.AccessLogs)
		u := map[string]int64{}
		for _, x := range rep.Uses {
			u[x.ShareID] += x.Allowed
		}
		uses = append(uses, u)
	}))
	defer srv.Close()
	r := reporterTo(t, srv.URL)
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
	wantUses := []int64{300, 50, 700, 0, 10, 40 + 25, maxPendingLogs}
	mu.Lock()
	fail = true
	mu.Unlock()
	round(40)
	if d := r.dropped.Load(); d != 80 {
		t.Fatalf("dropped = %d after a refused report of 80 logs, want 80", d)
	}
	mu.Lock()
	fail = false
	mu.Unlock()
	r.dropped.Store(0)
	want = append(want, round(25))
	// Beyond the log buffer: the logs are a sample, the uses are all there.
	logs := round(maxPendingLogs)
	want = append(want, logs[:maxPendingLogs/2])

	mu.Lock()
	defer mu.Unlock()
	if len(got) != len(want) {
		t.Fatalf("%d reports, want %d", len(got), len(want))
	}
	for i := range want {
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
	}
}

// TestReporterSplitsABacklog: thousands of pending agent events, command
// results and share uses go out in reports of at most maxReportItems each, in order, and the
// reporter asks for the next report at once while a backlog remains.
func TestReporterSplitsABacklog(t *testing.T) {
	var mu sync.Mutex
	var reps []config.Report
	var raw []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var b strings.Builder
		var rep config.Report
		if err := json.NewDecoder(io.TeeReader(r.Body, &b)).Decode(&rep); err != nil {
			t.Errorf("report: %v", err)
		}
		mu.Lock()
		reps = append(reps, rep)
		raw = append(raw, b.String())
		mu.Unlock()
	}))
	defer srv.Close()
	r := reporterTo(t, srv.URL)
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
		mu.Lock()
		rep := reps[len(reps)-1]
		mu.Unlock()
		if len(rep.Events) != want || len(rep.Uses) != want || len(rep.CommandResult) != want {
			t.Fatalf("report %d: %d events, %d uses and %d command results, want %d", round, len(rep.Events), len(rep.Uses), len(rep.CommandResult), want)
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
	// An edge with nothing to count still says it counts uses.
	r.flush(context.Background())
	mu.Lock()
	defer mu.Unlock()
	if last := raw[len(raw)-1]; !strings.Contains(last, `"shareUses":[]`) {
		t.Fatalf("an empty report without shareUses: []: %.300s", last)
	}
}
