package e2e

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/require"

	"github.com/privateconnect/pc/control"
	"github.com/privateconnect/pc/internal/config"
	"github.com/privateconnect/pc/internal/docscheck"
	"github.com/privateconnect/pc/internal/testenv"
	"github.com/privateconnect/pc/sdk/agent"
	"github.com/privateconnect/pc/sdk/client"
)

// TestDocsMetricsAndRoutes holds the Prometheus metrics and the /v1 routes
// that README.md and docs/*.md name against a running system: a control
// plane, an edge and an agent, with a share, a webhook and an edge report
// of dropped logs so that every labelled series the docs name exists. Each
// pc_control_*, pc_edge_* or pc_agent_* name must be exported by that
// process (with the type and labels the docs give); each route must be in
// the control plane's /openapi.json. (The flags are checked by each
// command's TestDocsFlags.)
func TestDocsMetricsAndRoutes(t *testing.T) {
	docs, err := docscheck.Load("../..")
	require.NoError(t, err)
	metrics, routes := docscheck.Metrics(docs), docscheck.Routes(docs)
	require.NotEmpty(t, metrics, "no metric found in the docs: the extraction is broken")
	require.NotEmpty(t, routes, "no route found in the docs: the extraction is broken")

	env := testenv.New(t, testenv.Options{Control: func(c *control.Config) {
		c.Webhooks.AllowInsecure, c.Webhooks.AllowPrivate = true, true
	}})
	ctx := context.Background()
	sink := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	t.Cleanup(sink.Close)
	_, err = env.Client.CreateWebhook(ctx, client.CreateWebhookRequest{URL: sink.URL, Events: []string{"share.created"}})
	require.NoError(t, err)

	// The agent exports its metrics on a registry of its own (connect
	// expose --metrics serves one such).
	reg := prometheus.NewRegistry()
	id, token, edges := env.ProvisionAgent("docs")
	ag := env.RunAgentWith(id, token, edges, func(c *agent.Config) { c.Registerer = reg })
	org := origin(t)
	svc := env.Expose(ag, "web", org.URL)
	sh := env.Share(svc.ID, client.CreateShareRequest{AllowedPaths: []string{"/ok/*"}})
	code, _ := get(t, sh.ShareURL+"/ok/x")
	require.Equal(t, 200, code)
	code, _ = get(t, sh.ShareURL+"/no")
	require.Equal(t, 403, code)

	exported := map[string]map[string]*dto.MetricFamily{
		"edge": scrapeMetrics(t, "http://"+env.Edges[0].AdminAddr()+"/metrics"),
	}
	fams, err := reg.Gather()
	require.NoError(t, err)
	exported["agent"] = map[string]*dto.MetricFamily{}
	for _, f := range fams {
		exported["agent"][f.GetName()] = f
	}
	// pc_control_edge_report_dropped_total has a series once an edge
	// reports dropped logs: report some, as the edge does (with its agent,
	// so that presence does not change).
	rep, err := json.Marshal(config.Report{Agents: []string{id}, Dropped: 3, Uses: []config.ShareUse{}})
	require.NoError(t, err)
	req, err := http.NewRequest("POST", env.ControlURL()+"/v1/edges/report", strings.NewReader(string(rep)))
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+env.Edges[0].Token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, 200, resp.StatusCode)
	exported["control"] = scrapeMetrics(t, env.ControlURL()+"/metrics")

	for _, e := range docscheck.MetricErrors(metrics, exported) {
		t.Error(e)
	}

	// The routes, from the OpenAPI document (which lists every route:
	// TestOpenAPICoversEveryRoute).
	doc, err := env.Client.OpenAPI(ctx)
	require.NoError(t, err)
	paths, err := docscheck.APIPaths(doc)
	require.NoError(t, err)
	require.NotEmpty(t, paths["/v1/shares/{}"], "the OpenAPI document has no /v1/shares/{id}")
	for _, e := range docscheck.RouteErrors(routes, paths) {
		t.Error(e)
	}
}
