package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/privateconnect/pc/control"
	"github.com/privateconnect/pc/control/webhooks"
	"github.com/privateconnect/pc/edge"
	"github.com/privateconnect/pc/internal/config"
	"github.com/privateconnect/pc/internal/testenv"
	"github.com/privateconnect/pc/sdk/client"
)

// hookSink is a webhook receiver that verifies signatures and keeps each
// event once (by id).
type hookSink struct {
	t      *testing.T
	srv    *httptest.Server
	mu     sync.Mutex
	secret string
	seen   map[string]bool
	events []sinkEvent
}

type sinkEvent struct {
	Name string
	Data map[string]any
}

func newHookSink(t *testing.T) *hookSink {
	s := &hookSink{t: t, seen: map[string]bool{}}
	s.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		s.mu.Lock()
		defer s.mu.Unlock()
		if !webhooks.Verify(s.secret, b, r.Header.Get("X-Webhook-Signature")) {
			t.Errorf("webhook signature does not verify: %s", b)
			w.WriteHeader(401)
			return
		}
		var body struct {
			ID, Event string
			Data      map[string]any
		}
		if err := json.Unmarshal(b, &body); err != nil {
			t.Errorf("webhook body %s: %v", b, err)
		}
		if !s.seen[body.ID] {
			s.seen[body.ID] = true
			s.events = append(s.events, sinkEvent{body.Event, body.Data})
		}
		w.WriteHeader(204)
	}))
	t.Cleanup(s.srv.Close)
	return s
}

func (s *hookSink) of(name string) []map[string]any {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []map[string]any
	for _, e := range s.events {
		if e.Name == name {
			out = append(out, e.Data)
		}
	}
	return out
}

// sum adds a numeric field over the events of one kind for one share.
func (s *hookSink) sum(name, shareID, field string) (total float64, events int) {
	for _, d := range s.of(name) {
		if d["shareId"] == shareID {
			n, _ := d[field].(float64)
			total += n
			events++
		}
	}
	return total, events
}

// TestShareMonitoringEndToEnd sends real requests through an edge to a
// share and checks that the access logs, the statistics, the share's
// counters, the share.accessed/denied webhooks and the control plane's
// metrics match them exactly; and that agent, tunnel and edge events arrive
// from where they happen.
func TestShareMonitoringEndToEnd(t *testing.T) {
	env := testenv.New(t, testenv.Options{Control: func(c *control.Config) {
		c.Webhooks = control.WebhookOptions{AllowInsecure: true, AllowPrivate: true, PollInterval: 20 * time.Millisecond,
			Retries:          []time.Duration{20 * time.Millisecond, 50 * time.Millisecond, 100 * time.Millisecond},
			ShareEventWindow: 300 * time.Millisecond, ShareEventGrace: 100 * time.Millisecond, EdgeCheckInterval: 50 * time.Millisecond}
	}})
	ctx := context.Background()
	sink := newHookSink(t)
	var all []string
	for _, e := range webhooks.Events {
		all = append(all, e.Name)
	}
	hook, err := env.Client.CreateWebhook(ctx, client.CreateWebhookRequest{URL: sink.srv.URL, Events: all})
	require.NoError(t, err)
	sink.mu.Lock()
	sink.secret = hook.Secret
	sink.mu.Unlock()
	// The first edge may have come online before the webhook existed (the
	// transition is then recorded with nobody to tell): a second edge
	// comes online after it.
	edge2 := env.AddEdge("edge-2")

	org := origin(t)
	ag, svc := env.ExposeAgent("mon", "web", org.URL)
	id := ag.ID
	sh := env.Share(svc.ID, client.CreateShareRequest{AllowedPaths: []string{"/api/**"}})

	const allowed, denied = 12, 5
	get := func(path string) (int, int) {
		req, _ := http.NewRequest("GET", sh.ShareURL+path, nil)
		req.Header.Set("User-Agent", "pc-e2e/1")
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp.StatusCode, len(b)
	}
	var bytesAllowed int
	for i := 0; i < allowed; i++ {
		st, n := get("/api/items")
		require.Equal(t, 200, st)
		bytesAllowed += n
	}
	time.Sleep(20 * time.Millisecond)
	mark := time.Now().UTC()
	time.Sleep(20 * time.Millisecond)
	for i := 0; i < denied; i++ {
		st, _ := get("/admin")
		require.Equal(t, 403, st)
	}

	// Stats: exact counts once the edge has reported.
	var stats *client.ShareStats
	require.Eventually(t, func() bool {
		stats, err = env.Client.ShareStats(ctx, sh.ID)
		return err == nil && stats.Requests == allowed+denied
	}, 10*time.Second, 20*time.Millisecond)
	time.Sleep(300 * time.Millisecond) // a late report would show up here
	stats, err = env.Client.ShareStats(ctx, sh.ID)
	require.NoError(t, err)
	assert.EqualValues(t, allowed+denied, stats.Requests)
	assert.EqualValues(t, allowed, stats.Allowed)
	assert.EqualValues(t, denied, stats.Denied)
	assert.Equal(t, map[string]int64{"200": allowed, "403": denied}, stats.ByStatus)
	assert.EqualValues(t, bytesAllowed, stats.BytesOut)
	assert.Greater(t, stats.P50LatencyMs, 0.0)
	assert.GreaterOrEqual(t, stats.P99LatencyMs, stats.P50LatencyMs)
	var byMinute []struct{ Requests int64 }
	require.NoError(t, json.Unmarshal(stats.ByMinute, &byMinute))
	var perMinute int64
	for _, m := range byMinute {
		perMinute += m.Requests
	}
	assert.EqualValues(t, allowed+denied, perMinute)

	// Logs: every request once, newest first, through pages.
	var logs []client.ShareLog
	cursor := ""
	for {
		page, next, err := env.Client.ListShareLogs(ctx, sh.ID, client.ListOptions{Limit: 5, Cursor: cursor}, client.ShareLogFilter{})
		require.NoError(t, err)
		logs = append(logs, page...)
		if next == "" {
			break
		}
		cursor = next
	}
	require.Len(t, logs, allowed+denied)
	count := map[string]int{}
	for i, l := range logs {
		if i > 0 {
			assert.False(t, l.AccessedAt.After(logs[i-1].AccessedAt), "newest first")
		}
		count[l.Decision+" "+l.Method+" "+l.Path]++
		assert.Equal(t, env.Edges[0].ID, l.EdgeID)
		assert.Equal(t, "pc-e2e/1", l.UserAgent)
		assert.NotEmpty(t, l.IPAddress)
		assert.NotEmpty(t, l.ID)
		if l.Decision == "denied" {
			assert.Equal(t, 403, l.StatusCode)
			assert.NotEmpty(t, l.DeniedBy)
		} else {
			assert.Equal(t, 200, l.StatusCode)
			assert.Empty(t, l.DeniedBy)
		}
	}
	assert.Equal(t, map[string]int{"allowed GET /api/items": allowed, "denied GET /admin": denied}, count)
	recent, _, err := env.Client.ListShareLogs(ctx, sh.ID, client.ListOptions{Limit: 100}, client.ShareLogFilter{Since: mark})
	require.NoError(t, err)
	assert.Len(t, recent, denied, "since")

	// The share's counters count allowed requests.
	got, err := env.Client.GetShare(ctx, sh.ID)
	require.NoError(t, err)
	assert.EqualValues(t, allowed, got.AccessCount)
	require.NotNil(t, got.LastAccessedAt)

	// share.accessed / share.denied: aggregated per window, counts add up.
	require.Eventually(t, func() bool {
		a, _ := sink.sum("share.accessed", sh.ID, "requests")
		d, _ := sink.sum("share.denied", sh.ID, "requests")
		return a == allowed && d == denied
	}, 10*time.Second, 20*time.Millisecond)
	_, n := sink.sum("share.accessed", sh.ID, "requests")
	assert.LessOrEqual(t, n, allowed, "aggregated, not one event per request")
	bytes, _ := sink.sum("share.accessed", sh.ID, "bytesOut")
	assert.EqualValues(t, bytesAllowed, bytes)

	// Events from where they happen.
	for _, ev := range []string{"agent.registered", "tunnel.created", "share.created", "agent.connected", "tunnel.connected", "edge.connected"} {
		require.Eventually(t, func() bool { return len(sink.of(ev)) > 0 }, 5*time.Second, 20*time.Millisecond, ev)
	}
	require.Eventually(t, func() bool {
		for _, e := range sink.of("edge.connected") {
			if e["edgeId"] == edge2.ID {
				return true
			}
		}
		return false
	}, 5*time.Second, 20*time.Millisecond, "edge.connected of the edge that came online after the webhook")
	// The audit log has every edge's connection too (api-v1.md: "every
	// agent and edge connection event"), webhook or not.
	require.Eventually(t, func() bool {
		var evs []map[string]any
		_, err := env.Client.Do(ctx, "GET", "/v1/audit", url.Values{"type": {"edge.CONNECTED"}}, nil, &evs)
		require.NoError(t, err)
		seen := map[any]bool{}
		for _, e := range evs {
			seen[e["edgeId"]] = e["event"] == "CONNECTED"
		}
		return seen[env.Edges[0].ID] && seen[edge2.ID]
	}, 5*time.Second, 20*time.Millisecond, "edge.CONNECTED in the audit log")
	assert.Equal(t, id, sink.of("agent.connected")[0]["agentId"])
	assert.Equal(t, svc.ID, sink.of("tunnel.connected")[0]["serviceId"])
	ag.Stop()
	for _, ev := range []string{"agent.disconnected", "tunnel.disconnected"} {
		require.Eventually(t, func() bool { return len(sink.of(ev)) > 0 }, 10*time.Second, 20*time.Millisecond, ev)
	}

	// The control plane's metrics.
	fams := scrapeMetrics(t, env.ControlURL()+"/metrics")
	assert.EqualValues(t, allowed+denied, metricValue(fams, "pc_control_access_logs_total", nil))
	assert.Equal(t, 2.0, metricValue(fams, "pc_control_online_edges", nil))
	assert.Greater(t, metricValue(fams, "pc_control_webhook_deliveries_total", map[string]string{"status": "succeeded"}), 5.0)
	assert.GreaterOrEqual(t, metricValue(fams, "pc_control_store_lsm_bytes", nil), 0.0)
	assert.Contains(t, fams, "pc_control_store_tables")
	assert.Contains(t, fams, "pc_control_webhook_queue_depth")

	// Every time the API gives, edges' reports included, is RFC 3339 UTC
	// to the millisecond at most (api-v1.md).
	_, err = env.Client.CheckService(ctx, svc.ID)
	_ = err // the agent is stopped: the check's failure is recorded too
	for _, path := range []string{"/v1/agents", "/v1/agents/" + id, "/v1/agents/" + id + "/audit-logs", "/v1/services",
		"/v1/services/" + svc.ID, "/v1/services/" + svc.ID + "/shares", "/v1/services/" + svc.ID + "/diagnostics",
		"/v1/shares/" + sh.ID, "/v1/shares/" + sh.ID + "/logs", "/v1/tunnels", "/v1/edges", "/v1/api-keys",
		"/v1/workspace", "/v1/webhooks/" + hook.ID, "/v1/webhooks/" + hook.ID + "/deliveries", "/v1/audit", "/v1/plugins"} {
		var data any
		_, err := env.Client.Do(ctx, "GET", path, nil, nil, &data)
		require.NoError(t, err, path)
		n := checkTimes(t, path, data)
		t.Logf("%s: %d times", path, n)
	}
}

// apiTime is a time as api-v1.md gives them.
var apiTime = regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,3})?Z$`)

// checkTimes fails the test for every string in v that reads as a time
// but is not an apiTime, and counts the times.
func checkTimes(t *testing.T, where string, v any) int {
	t.Helper()
	n := 0
	switch v := v.(type) {
	case string:
		if len(v) >= 20 && v[4] == '-' && v[10] == 'T' {
			n++
			assert.Regexp(t, apiTime, v, where)
		}
	case []any:
		for _, e := range v {
			n += checkTimes(t, where, e)
		}
	case map[string]any:
		for k, e := range v {
			n += checkTimes(t, where+"."+k, e)
		}
	}
	return n
}

// TestShareStatsCountEveryRequestAboveTheLogRate: an edge past its access
// log rate sends a sample of the logs, and the share's statistics and
// accessCount still count every request (the statistics the edge counts).
func TestShareStatsCountEveryRequestAboveTheLogRate(t *testing.T) {
	env := testenv.New(t, testenv.Options{Edge: func(c *edge.Config) { c.AccessLogRate = 10 }})
	ctx := context.Background()
	org := origin(t)
	_, svc := env.ExposeAgent("sampled", "web", org.URL)
	sh := env.Share(svc.ID, client.CreateShareRequest{})
	const n = 150
	var wg sync.WaitGroup
	for w := 0; w < 10; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < n/10; i++ {
				resp, err := http.Get(sh.ShareURL + "/x")
				if !assert.NoError(t, err) {
					return
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				assert.Equal(t, 200, resp.StatusCode)
			}
		}()
	}
	wg.Wait()
	var stats *client.ShareStats
	require.Eventually(t, func() bool {
		var err error
		stats, err = env.Client.ShareStats(ctx, sh.ID)
		return err == nil && stats.Requests >= n
	}, 10*time.Second, 20*time.Millisecond)
	time.Sleep(300 * time.Millisecond) // a late report would show up here
	stats, err := env.Client.ShareStats(ctx, sh.ID)
	require.NoError(t, err)
	assert.EqualValues(t, n, stats.Requests)
	assert.EqualValues(t, n, stats.Allowed)
	assert.Equal(t, map[string]int64{"200": n}, stats.ByStatus)
	got, err := env.Client.GetShare(ctx, sh.ID)
	require.NoError(t, err)
	assert.EqualValues(t, n, got.AccessCount)
	logs, _, err := env.Client.ListShareLogs(ctx, sh.ID, client.ListOptions{Limit: 200}, client.ShareLogFilter{})
	require.NoError(t, err)
	assert.NotEmpty(t, logs)
	assert.Less(t, len(logs), n*2/3, "the logs are a sample at 10 a second")
}

// TestGrafanaDashboardMetrics checks docs/grafana-dashboard.json: valid
// JSON, unique panel ids, and every pc_* metric it queries is exported by
// the control plane, the edge or the agent (a name in their sources), so a
// renamed metric cannot silently blank a panel.
func TestGrafanaDashboardMetrics(t *testing.T) {
	raw, err := os.ReadFile("../../docs/grafana-dashboard.json")
	require.NoError(t, err)
	var dash struct {
		UID    string `json:"uid"`
		Panels []struct {
			ID      int    `json:"id"`
			Type    string `json:"type"`
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	require.NoError(t, json.Unmarshal(raw, &dash))
	require.NotEmpty(t, dash.UID)
	exported := map[string]bool{}
	re := regexp.MustCompile(`"(pc_(?:control|edge|agent)_[a-z0-9_]+)"`)
	for _, dir := range []string{"../../control", "../../edge", "../../sdk/agent"} {
		require.NoError(t, filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() || !strings.HasSuffix(p, ".go") || strings.HasSuffix(p, "_test.go") {
				return err
			}
			b, err := os.ReadFile(p)
			for _, m := range re.FindAllStringSubmatch(string(b), -1) {
				exported[m[1]] = true
			}
			return err
		}))
	}
	ids := map[int]bool{}
	used := regexp.MustCompile(`pc_[a-z0-9_]+`)
	for _, p := range dash.Panels {
		require.False(t, ids[p.ID], "duplicate panel id %d", p.ID)
		ids[p.ID] = true
		if p.Type != "row" {
			require.NotEmpty(t, p.Targets, p.Title)
		}
		for _, tg := range p.Targets {
			// Each process kind has its own job variable (an agent's job has
			// no edge series, so the edge variable never lists it).
			for prefix, variable := range map[string]string{"pc_agent_": "$agent_job", "pc_edge_": "$job", "pc_control_": "$control_job"} {
				if strings.Contains(tg.Expr, prefix) && strings.Contains(tg.Expr, "job=~") {
					assert.Contains(t, tg.Expr, `job=~"`+variable+`"`, "panel %q", p.Title)
				}
			}
			for _, name := range used.FindAllString(tg.Expr, -1) {
				base := name
				for _, sfx := range []string{"_bucket", "_sum", "_count"} {
					if b, ok := strings.CutSuffix(name, sfx); ok && exported[b] {
						base = b
					}
				}
				assert.True(t, exported[base], "panel %q queries %s, which nothing exports", p.Title, name)
			}
		}
	}
}

// TestLostReportAnswersCountOnce: the control plane stores an edge's report
// but its answer is lost (the connection drops), twice; the edge sends the
// report again until it hears the answer, and every request is still
// counted once in the statistics, accessCount and the logs.
func TestLostReportAnswersCountOnce(t *testing.T) {
	var target atomic.Pointer[url.URL]
	var lose, lost atomic.Int32 // answers still to lose, lost
	lose.Store(2)
	rp := &httputil.ReverseProxy{Rewrite: func(r *httputil.ProxyRequest) { r.SetURL(target.Load()) }, FlushInterval: -1}
	lossy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v1/edges/report" && lose.Load() > 0 {
			body, err := io.ReadAll(r.Body)
			r.Body = io.NopCloser(bytes.NewReader(body))
			var rep config.Report
			if assert.NoError(t, err) && assert.NoError(t, json.Unmarshal(body, &rep)) && len(rep.Stats) > 0 && lose.Add(-1) >= 0 {
				defer lost.Add(1)
				rec := httptest.NewRecorder()
				rp.ServeHTTP(rec, r) // stored by the control plane...
				assert.Equal(t, 200, rec.Code, rec.Body.String())
				panic(http.ErrAbortHandler) // ...and its answer never reaches the edge
			}
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(lossy.Close) // after the edge's config stream through it ended
	env := testenv.New(t, testenv.Options{Edge: func(c *edge.Config) {
		u, err := url.Parse(c.ControlURL)
		require.NoError(t, err)
		target.Store(u)
		c.ControlURL = lossy.URL
	}})
	ctx := context.Background()
	org := origin(t)
	_, svc := env.ExposeAgent("lossy", "web", org.URL)
	sh := env.Share(svc.ID, client.CreateShareRequest{})
	const n = 40
	for i := 0; i < n; i++ {
		resp, err := http.Get(sh.ShareURL + "/x")
		require.NoError(t, err)
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		require.Equal(t, 200, resp.StatusCode)
	}
	require.Eventually(t, func() bool {
		stats, err := env.Client.ShareStats(ctx, sh.ID)
		return err == nil && stats.Requests >= n && lost.Load() == 2
	}, 15*time.Second, 20*time.Millisecond, "the statistics and two lost answers")
	time.Sleep(1500 * time.Millisecond) // a report sent again after the last loss would count here
	stats, err := env.Client.ShareStats(ctx, sh.ID)
	require.NoError(t, err)
	assert.EqualValues(t, n, stats.Requests)
	got, err := env.Client.GetShare(ctx, sh.ID)
	require.NoError(t, err)
	assert.EqualValues(t, n, got.AccessCount)
	logs, _, err := env.Client.ListShareLogs(ctx, sh.ID, client.ListOptions{Limit: 200}, client.ShareLogFilter{})
	require.NoError(t, err)
	assert.Len(t, logs, n)
}
