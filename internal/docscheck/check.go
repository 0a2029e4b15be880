package docscheck

import (
	"encoding/json"
	"fmt"
	"regexp"
	"sort"
	"strings"

	dto "github.com/prometheus/client_model/go"
)

// Processes names the process that exports a metric prefix.
var Processes = map[string]string{"control": "control plane", "edge": "edge", "agent": "agent"}

// MetricErrors holds the metric mentions against what each process
// exports: exported maps "control", "edge" and "agent" to the metric
// families of its /metrics (as expfmt parses them: a histogram's _bucket,
// _sum and _count are its family). A mention names the process by its
// prefix; it must be one of its families (a "_bucket", "_sum" or "_count"
// of a histogram or summary counts as that), of the type and with the
// labels the docs give. "pc_edge_*" must match at least one family.
func MetricErrors(ms []Mention, exported map[string]map[string]*dto.MetricFamily) []string {
	var errs []string
	for _, m := range ms {
		proc, _, _ := strings.Cut(strings.TrimPrefix(m.Name, "pc_"), "_")
		fams := exported[proc]
		if fams == nil {
			errs = append(errs, fmt.Sprintf("%s: %s: no metrics of the %s to compare with", m.Where(), m.Name, Processes[proc]))
			continue
		}
		if prefix, ok := strings.CutSuffix(m.Name, "*"); ok {
			found := false
			for name := range fams {
				found = found || strings.HasPrefix(name, prefix)
			}
			if !found {
				errs = append(errs, fmt.Sprintf("%s: %s: the %s exports no metric named so", m.Where(), m.Name, Processes[proc]))
			}
			continue
		}
		f, sample := fams[m.Name], false
		for _, sfx := range []string{"_bucket", "_sum", "_count"} {
			if base, ok := strings.CutSuffix(m.Name, sfx); f == nil && ok {
				if b := fams[base]; b != nil && (b.GetType() == dto.MetricType_HISTOGRAM || b.GetType() == dto.MetricType_SUMMARY) {
					f, sample = b, true
				}
			}
		}
		if f == nil {
			errs = append(errs, fmt.Sprintf("%s: %s: the %s does not export it%s", m.Where(), m.Name, Processes[proc], near(m.Name, fams)))
			continue
		}
		if typ := strings.ToLower(f.GetType().String()); m.Type != "" && m.Type != typ {
			errs = append(errs, fmt.Sprintf("%s: %s: the docs say %s, the %s exports a %s", m.Where(), m.Name, m.Type, Processes[proc], typ))
		}
		if m.LabelsSaid == LabelsNone || sample {
			continue
		}
		has := map[string]bool{}
		for _, s := range f.GetMetric() {
			for _, l := range s.GetLabel() {
				has[l.GetName()] = true
			}
		}
		var missing []string
		for _, l := range m.Labels {
			if !has[l] {
				missing = append(missing, l)
			}
			delete(has, l)
		}
		var extra []string
		if m.LabelsSaid == LabelsExact {
			for l := range has {
				extra = append(extra, l)
			}
			sort.Strings(extra)
		}
		if len(missing) > 0 || len(extra) > 0 {
			errs = append(errs, fmt.Sprintf("%s: %s: the docs give the labels %v, the %s exports it without %v and with %v",
				m.Where(), m.Name, m.Labels, Processes[proc], missing, extra))
		}
	}
	return errs
}

// near names the exported metrics that share the name's first words, to
// make a typo plain.
func near(name string, fams map[string]*dto.MetricFamily) string {
	parts := strings.Split(name, "_")
	if len(parts) > 3 {
		parts = parts[:3]
	}
	prefix := strings.Join(parts, "_")
	var out []string
	for n := range fams {
		if strings.HasPrefix(n, prefix) {
			out = append(out, n)
		}
	}
	if len(out) == 0 {
		return ""
	}
	sort.Strings(out)
	return " (it has " + strings.Join(out, ", ") + ")"
}

// APIPaths reads an OpenAPI document into the paths RouteErrors takes:
// each path, its parameters written {}, to its methods (upper case).
func APIPaths(doc []byte) (map[string][]string, error) {
	var d struct {
		Paths map[string]map[string]json.RawMessage `json:"paths"`
	}
	if err := json.Unmarshal(doc, &d); err != nil {
		return nil, err
	}
	paths := map[string][]string{}
	for p, ops := range d.Paths {
		p = openAPIParam.ReplaceAllString(p, "{}")
		for method := range ops {
			paths[p] = append(paths[p], strings.ToUpper(method))
		}
	}
	return paths, nil
}

var openAPIParam = regexp.MustCompile(`\{[^}]*\}`)

// RouteErrors holds the route mentions against the API's routes: paths
// maps each path, parameters written {} ("/v1/shares/{}"), to its methods.
// A method and path must be a route (HEAD goes with every GET, OPTIONS
// with every path, as the API answers them); a path alone must be a route
// or the start of one ("/v1").
func RouteErrors(ms []Mention, paths map[string][]string) []string {
	var errs []string
	for _, m := range ms {
		method, path, ok := strings.Cut(m.Name, " ")
		if !ok {
			method, path = "", m.Name
		}
		methods, known := paths[path]
		switch {
		case method == "":
			found := known
			for p := range paths {
				found = found || strings.HasPrefix(p, path+"/")
			}
			if !found {
				errs = append(errs, fmt.Sprintf("%s: %s: no route of the API has this path", m.Where(), path))
			}
		case !known:
			errs = append(errs, fmt.Sprintf("%s: %s: no route of the API has this path", m.Where(), m.Name))
		case method == "OPTIONS":
		default:
			found := false
			for _, x := range methods {
				found = found || x == method || method == "HEAD" && x == "GET"
			}
			if !found {
				errs = append(errs, fmt.Sprintf("%s: %s: the API has %s %s only", m.Where(), m.Name, strings.Join(methods, ", "), path))
			}
		}
	}
	return errs
}
