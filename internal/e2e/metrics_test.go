package e2e

import (
	"net/http"
	"testing"

	"github.com/privateconnect/pc/internal/testenv"
	"github.com/privateconnect/pc/sdk/client"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/require"
)

func scrapeMetrics(t *testing.T, url string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get(url)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, 200, resp.StatusCode)
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	require.NoError(t, err)
	return fams
}

func metricValue(fams map[string]*dto.MetricFamily, name string, labels map[string]string) float64 {
	f := fams[name]
	if f == nil {
		return -1
	}
	for _, m := range f.Metric {
		ok := true
		for k, v := range labels {
			found := false
			for _, lp := range m.Label {
				if lp.GetName() == k && lp.GetValue() == v {
					found = true
				}
			}
			ok = ok && found
		}
		if ok {
			if m.Counter != nil {
				return m.Counter.GetValue()
			}
			if m.Gauge != nil {
				return m.Gauge.GetValue()
			}
			if m.Histogram != nil { // its sample count
				return float64(m.Histogram.GetSampleCount())
			}
		}
	}
	return -1
}

// TestEdgeMetrics scrapes the edge's /metrics with the Prometheus text
// parser and checks the counts match the requests sent.
func TestEdgeMetrics(t *testing.T) {
	env := testenv.New(t, testenv.Options{})
	org := origin(t)
	_, svc := env.ExposeAgent("a", "web", org.URL)
	sh := env.Share(svc.ID, client.CreateShareRequest{AllowedPaths: []string{"/ok/*"}})
	for i := 0; i < 7; i++ {
		code, _ := get(t, sh.ShareURL+"/ok/x")
		require.Equal(t, 200, code)
	}
	for i := 0; i < 2; i++ {
		code, _ := get(t, sh.ShareURL+"/no")
		require.Equal(t, 403, code)
	}
	fams := scrapeMetrics(t, "http://"+env.Edges[0].AdminAddr()+"/metrics")
	require.Equal(t, 7.0, metricValue(fams, "pc_edge_requests_total", map[string]string{"share": sh.ID, "status": "200"}))
	require.Equal(t, 2.0, metricValue(fams, "pc_edge_requests_total", map[string]string{"share": sh.ID, "status": "403"}))
	require.Equal(t, 2.0, metricValue(fams, "pc_edge_policy_decisions_total", map[string]string{"decision": "denied", "by": "builtin:allow-paths"}))
	require.Equal(t, 1.0, metricValue(fams, "pc_edge_tunnel_sessions", nil))
	// The edge runs a share's built-ins as one call of the bundle module: calls and their
	// times are the bundle's; decisions still name the built-in that made them (above).
	calls := metricValue(fams, "pc_edge_plugin_calls_total", map[string]string{"plugin": "builtin:bundle"})
	require.GreaterOrEqual(t, calls, 9.0)
	require.Equal(t, calls, metricValue(fams, "pc_edge_plugin_duration_seconds", map[string]string{"plugin": "builtin:bundle"}),
		"every plugin call is timed")
	require.Greater(t, metricValue(fams, "pc_edge_config_version", nil), 0.0)
}
