package docscheck

import (
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/spf13/cobra"
	"github.com/stretchr/testify/assert"
)

const sample = "# Title\n" + // 1
	"\n" + // 2
	"Run `pcd edge --tunnel\n" + // 3
	"0.0.0.0:7070 --tls-cert c.pem` then `--bare` and `cmd/pcd` and `go tool pprof bin/pcd -top`.\n" + // 4
	"\n" + // 5
	"```sh\n" + // 6
	"export PC_API_KEY=$(cat data/admin.key)   # not --this\n" + // 7
	"PC_TOKEN=x bin/pcd edge --control http://c \\\n" + // 8
	"    --http 127.0.0.1:8080\n" + // 9
	"curl \"$(bin/connect link web --expires 1h)/\" | jq -r .token\n" + // 10
	"```\n" + // 11
	"\n" + // 12
	"```\n" + // 13
	"pcd edge --not-shell\n" + // 14
	"```\n" + // 15
	"| Metric | Type | Labels | Meaning |\n" + // 16
	"|---|---|---|---|\n" + // 17
	"| `pc_control_a_total`, `pc_control_b` | counter | `outcome` (`ok`, `bad`) | x |\n" + // 18
	"\n" + // 19
	"`pc_edge_requests_total{share,status}`, `increase(pc_control_a_total{outcome=\"bad\"}[1h])`, `pc_agent_*`.\n" + // 20
	"`GET /v1/shares/:id/stats`, `/v1`, `POST /v1/webhooks {url}`, `/v1/shares/<id>/logs?limit=` and `GET /v1/x` is a 405.\n" + // 21
	"## Findings of this review\n" + // 22
	"`pcd edge --gone`\n" // 23

func parseSample(file string) []*Doc { return []*Doc{Parse(file, sample)} }

func TestCommandLines(t *testing.T) {
	var got []string
	for _, cl := range CommandLines(parseSample("README.md")) {
		got = append(got, cl.Where()+" "+strings.Join(cl.Words, " "))
	}
	assert.Equal(t, []string{
		"README.md:3 pcd edge --tunnel 0.0.0.0:7070 --tls-cert c.pem",
		"README.md:23 pcd edge --gone",
		"README.md:8 pcd edge --control http://c --http 127.0.0.1:8080",
		"README.md:10 connect link web --expires 1h",
	}, got)
	// The findings of docs/security.md are a history, not read.
	for _, cl := range CommandLines(parseSample("docs/security.md")) {
		assert.NotContains(t, cl.Words, "--gone")
	}
}

// testTree is a small command tree: root with a persistent --json, and
// "link" with --expires (a value) and -s (a shorthand).
func testTree() *cobra.Command {
	root := &cobra.Command{Use: "connect"}
	root.PersistentFlags().Bool("json", false, "")
	link := &cobra.Command{Use: "link", Run: func(*cobra.Command, []string) {}}
	link.Flags().String("expires", "", "")
	link.Flags().StringP("scenario", "s", "", "")
	shares := &cobra.Command{Use: "shares"}
	shares.AddCommand(&cobra.Command{Use: "ls", Run: func(*cobra.Command, []string) {}})
	root.AddCommand(link, shares)
	return root
}

func TestFlagErrors(t *testing.T) {
	cl := func(line int, words string) CommandLine {
		return CommandLine{File: "README.md", Line: line, Words: strings.Fields(words)}
	}
	errs := FlagErrors([]CommandLine{
		cl(1, "connect link web --expires 1h --json -s x --help"),
		cl(2, "connect --json shares ls"),
		cl(3, "connect link web --expirs 1h"), // a typo
		cl(4, "connect shares lss"),           // no such command
		cl(5, "connect link ls --nope=1"),     // "ls" is link's argument, not a command
		cl(6, "connect link -x"),
		cl(7, "pcd edge --whatever"), // another program's
	}, testTree())
	assert.Equal(t, []string{
		"README.md:3: `connect link web --expirs 1h`: \"connect link\" has no flag --expirs",
		"README.md:4: `connect shares lss`: \"connect shares\" has no command \"lss\"",
		"README.md:5: `connect link ls --nope=1`: \"connect link\" has no flag --nope",
		"README.md:6: `connect link -x`: \"connect link\" has no flag -x",
	}, errs)
}

func TestMetrics(t *testing.T) {
	byName := map[string]Mention{}
	for _, m := range Metrics(parseSample("docs/monitoring.md")) {
		if _, ok := byName[m.Name]; !ok {
			byName[m.Name] = m
		}
	}
	assert.Equal(t, Mention{File: "docs/monitoring.md", Line: 18, Name: "pc_control_a_total", Labels: []string{"outcome"}, LabelsSaid: LabelsExact, Type: "counter"}, byName["pc_control_a_total"])
	assert.Equal(t, Mention{File: "docs/monitoring.md", Line: 18, Name: "pc_control_b", Labels: []string{"outcome"}, LabelsSaid: LabelsExact, Type: "counter"}, byName["pc_control_b"])
	assert.Equal(t, []string{"share", "status"}, byName["pc_edge_requests_total"].Labels)
	assert.Contains(t, byName, "pc_agent_*")

	fam := func(name string, typ dto.MetricType, labels ...string) *dto.MetricFamily {
		m := &dto.Metric{}
		for _, l := range labels {
			m.Label = append(m.Label, &dto.LabelPair{Name: ptr(l), Value: ptr("v")})
		}
		return &dto.MetricFamily{Name: ptr(name), Type: typ.Enum(), Metric: []*dto.Metric{m}}
	}
	exported := map[string]map[string]*dto.MetricFamily{
		"control": {"pc_control_a_total": fam("pc_control_a_total", dto.MetricType_COUNTER, "outcome"),
			"pc_control_b": fam("pc_control_b", dto.MetricType_GAUGE, "outcome")},
		"edge":  {"pc_edge_requests_total": fam("pc_edge_requests_total", dto.MetricType_COUNTER, "share", "code")},
		"agent": {"pc_agent_x": fam("pc_agent_x", dto.MetricType_GAUGE)},
	}
	errs := MetricErrors(Metrics(parseSample("docs/monitoring.md")), exported)
	assert.Equal(t, []string{
		"docs/monitoring.md:18: pc_control_b: the docs say counter, the control plane exports a gauge",
		"docs/monitoring.md:20: pc_edge_requests_total: the docs give the labels [share status], the edge exports it without [status] and with [code]",
	}, errs)
	errs = MetricErrors([]Mention{{File: "f.md", Line: 1, Name: "pc_control_a_totl"}, {File: "f.md", Line: 2, Name: "pc_edge_*"}, {File: "f.md", Line: 3, Name: "pc_agent_zz_*"}}, exported)
	assert.Equal(t, []string{
		"f.md:1: pc_control_a_totl: the control plane does not export it (it has pc_control_a_total)",
		"f.md:3: pc_agent_zz_*: the agent exports no metric named so",
	}, errs)
}

func TestRoutes(t *testing.T) {
	var got []string
	for _, m := range Routes(parseSample("README.md")) {
		got = append(got, m.Where()+" "+m.Name)
	}
	assert.Equal(t, []string{
		"README.md:21 GET /v1/shares/{}/stats", "README.md:21 /v1", "README.md:21 POST /v1/webhooks", "README.md:21 /v1/shares/{}/logs",
	}, got)
	paths := map[string][]string{"/v1/shares/{}/stats": {"GET"}, "/v1/webhooks": {"GET", "POST"}}
	assert.Equal(t, []string{"README.md:21: /v1/shares/{}/logs: no route of the API has this path"}, RouteErrors(Routes(parseSample("README.md")), paths))
	assert.Equal(t, []string{"f.md:1: DELETE /v1/webhooks: the API has GET, POST /v1/webhooks only"},
		RouteErrors([]Mention{{File: "f.md", Line: 1, Name: "DELETE /v1/webhooks"}, {File: "f.md", Line: 2, Name: "HEAD /v1/shares/{}/stats"}}, paths))
}

func ptr(s string) *string { return &s }
