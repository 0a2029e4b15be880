package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
)

// summaryLine is the one-line outcome printed after each scenario.
func summaryLine(r *Result) string {
	switch r.Status {
	case StatusNotAvailable:
		return fmt.Sprintf("  %s: not available — %s", r.Scenario, r.Reason)
	case StatusFailed:
		return fmt.Sprintf("  %s: FAILED — %s", r.Scenario, firstLine(r.Reason))
	}
	var b strings.Builder
	fmt.Fprintf(&b, "  %s", r.Scenario)
	if r.Direct != nil {
		fmt.Fprintf(&b, " direct %s", fmtRate(r.Direct))
	}
	if r.System != nil && r.System.Unit != "" && r.System.Unit != "agents" {
		fmt.Fprintf(&b, " system %s", fmtRate(r.System))
	}
	if r.Ratios != nil {
		fmt.Fprintf(&b, " ratio %.2f", r.Ratios.Throughput)
		if r.Ratios.P99 > 0 {
			fmt.Fprintf(&b, " (p99 ×%.2f)", r.Ratios.P99)
		}
	}
	for _, m := range r.Metrics {
		if m.Target != "" {
			fmt.Fprintf(&b, "; %s: %s %s", m.Name, fmtNum(m.Value), m.Unit)
		}
	}
	if r.Pass != nil {
		fmt.Fprintf(&b, " [%s]", passWord(*r.Pass))
	}
	if r.Status == StatusInterrupted {
		b.WriteString(" [interrupted: partial figures]")
	}
	return b.String()
}

func passWord(p bool) string {
	if p {
		return "meets target"
	}
	return "below target"
}

func firstLine(s string) string {
	l, _, _ := strings.Cut(s, "\n")
	return l
}

func fmtRate(p *Phase) string {
	if p == nil {
		return "-"
	}
	return fmtNum(p.Rate) + " " + p.Unit
}

func fmtNum(v float64) string {
	switch {
	case v >= 100000:
		return fmt.Sprintf("%.0f", v)
	case v >= 100:
		return fmt.Sprintf("%.0f", v)
	case v >= 10:
		return fmt.Sprintf("%.1f", v)
	default:
		return fmt.Sprintf("%.3g", v)
	}
}

func fmtLat(p *Phase) string {
	if p == nil || p.Latency == nil {
		return "-"
	}
	return fmt.Sprintf("%s / %s", fmtNum(p.Latency.P50), fmtNum(p.Latency.P99))
}

// ceilingStr is the throughput of one and of two bare relays over direct
// ("-" for scenarios without the ceiling phases).
func ceilingStr(r *Result) string {
	if len(r.Ceiling) != 2 || r.Direct == nil || r.Direct.Rate == 0 {
		return "-"
	}
	return ratioStr(r.Ceiling[0].Rate/r.Direct.Rate) + " / " + ratioStr(r.Ceiling[1].Rate/r.Direct.Rate)
}

func ratioStr(v float64) string {
	if v == 0 {
		return "-"
	}
	return fmt.Sprintf("%.2f", v)
}

// WriteTable prints the final table.
func (rep *Report) WriteTable(w io.Writer) error {
	fmt.Fprintf(w, "\npcbench — %s\nsystem: %s; phase duration %s\n\n", rep.Machine, rep.System, rep.Options.Duration)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "scenario\tdirect\tsystem\tratio\tbare relays ×1 / ×2\tp50/p99 direct ms\tp50/p99 system ms\tp50 ×\tp99 ×\terrors\tedge CPU s / peak MiB\tresult")
	for _, r := range rep.Results {
		if r.Status != StatusOK {
			fmt.Fprintf(tw, "%s\t\t\t\t\t\t\t\t\t\t\t%s\n", r.Scenario, strings.ToUpper(r.Status[:1])+r.Status[1:])
			continue
		}
		var q Ratios
		if r.Ratios != nil {
			q = *r.Ratios
		}
		errs := "-"
		edge := "-"
		sys := "-"
		if r.System != nil {
			errs = fmt.Sprint(r.System.Errors)
			if r.System.Unit != "" && r.System.Unit != "agents" {
				sys = fmtRate(r.System)
			}
			ps := r.System.procStat("edge")
			if ps == nil {
				ps = r.System.procStat("pcd-dev")
			}
			if ps != nil {
				edge = fmt.Sprintf("%.2f / %.0f", ps.CPUSeconds, ps.PeakRSSMiB)
			}
		}
		res := "-"
		if r.Pass != nil {
			res = passWord(*r.Pass)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Scenario, fmtRate(r.Direct), sys, ratioStr(q.Throughput),
			ceilingStr(r), fmtLat(r.Direct), fmtLat(r.System), ratioStr(q.P50), ratioStr(q.P99), errs, edge, res)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	// Details: metrics, baselines, error kinds, notes, reasons.
	for _, r := range rep.Results {
		var lines []string
		if r.Status != StatusOK {
			lines = append(lines, r.Status+": "+r.Reason)
		}
		if r.Baseline != nil {
			lines = append(lines, fmt.Sprintf("no-plugin run: %s, p50/p99 %s ms", fmtRate(r.Baseline), fmtLat(r.Baseline)))
		}
		for _, m := range r.Metrics {
			l := fmt.Sprintf("%s: %s %s", m.Name, fmtNum(m.Value), m.Unit)
			if m.Target != "" {
				l += " (target " + m.Target + ")"
			}
			if m.Pass != nil {
				l += " " + passWord(*m.Pass)
			}
			lines = append(lines, l)
		}
		for _, p := range []*Phase{r.Direct, r.System} {
			if p != nil && len(p.ErrorKinds) > 0 {
				lines = append(lines, "errors by kind ("+p.Target+"): "+jsonString(p.ErrorKinds))
			}
		}
		if r.System != nil && len(r.System.Procs) > 0 {
			var ps []string
			for _, p := range r.System.Procs {
				ps = append(ps, fmt.Sprintf("%s %.2fs CPU, peak %.0f MiB", p.Name, p.CPUSeconds, p.PeakRSSMiB))
			}
			lines = append(lines, "processes (system phase): "+strings.Join(ps, "; "))
		}
		lines = append(lines, r.Notes...)
		if len(lines) == 0 {
			continue
		}
		fmt.Fprintf(w, "\n%s\n", r.Scenario)
		for _, l := range lines {
			fmt.Fprintf(w, "  %s\n", l)
		}
	}
	fmt.Fprintf(w, "\ntotal %.0f s\n", rep.Seconds)
	return nil
}

// WriteJSONFile writes the report as indented JSON.
func (rep *Report) WriteJSONFile(path string) error {
	b, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

// WriteMarkdownFile writes the results as a markdown table.
func (rep *Report) WriteMarkdownFile(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	return rep.WriteMarkdown(f)
}

// WriteMarkdown writes the results as markdown.
func (rep *Report) WriteMarkdown(w io.Writer) error {
	fmt.Fprintf(w, "Machine: %s. System: %s. Phase duration %s. Run at %s, %.0f s in total.\n\n",
		rep.Machine, rep.System, rep.Options.Duration, rep.StartedAt.Format("2006-01-02 15:04 UTC"), rep.Seconds)
	fmt.Fprintln(w, "| scenario | direct | system | ratio | bare relays ×1 / ×2 | p50 direct → system (ms) | p99 direct → system (ms) | p99 × | errors | edge CPU s / peak MiB | target | result |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|---|---|---|---|")
	for _, r := range rep.Results {
		if r.Status != StatusOK {
			fmt.Fprintf(w, "| %s | | | | | | | | | | %s | **%s**: %s |\n", r.Scenario, r.Target, r.Status, mdEscape(firstLine(r.Reason)))
			continue
		}
		var q Ratios
		if r.Ratios != nil {
			q = *r.Ratios
		}
		p50, p99 := "-", "-"
		if r.Direct != nil && r.Direct.Latency != nil && r.System != nil && r.System.Latency != nil {
			p50 = fmt.Sprintf("%s → %s", fmtNum(r.Direct.Latency.P50), fmtNum(r.System.Latency.P50))
			p99 = fmt.Sprintf("%s → %s", fmtNum(r.Direct.Latency.P99), fmtNum(r.System.Latency.P99))
		} else if r.System != nil && r.System.Latency != nil {
			p50, p99 = fmtNum(r.System.Latency.P50), fmtNum(r.System.Latency.P99)
		}
		sys, errs, edge := "-", "-", "-"
		if r.System != nil {
			if r.System.Unit != "" && r.System.Unit != "agents" {
				sys = fmtRate(r.System)
			}
			errs = fmt.Sprint(r.System.Errors)
			ps := r.System.procStat("edge")
			if ps == nil {
				ps = r.System.procStat("pcd-dev")
			}
			if ps != nil {
				edge = fmt.Sprintf("%.2f / %.0f", ps.CPUSeconds, ps.PeakRSSMiB)
			}
		}
		res := "-"
		if r.Pass != nil {
			res = passWord(*r.Pass)
		}
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", r.Scenario, fmtRate(r.Direct), sys,
			ratioStr(q.Throughput), ceilingStr(r), p50, p99, ratioStr(q.P99), errs, edge, r.Target, res)
	}
	fmt.Fprintln(w)
	for _, r := range rep.Results {
		if len(r.Metrics) == 0 && len(r.Notes) == 0 && r.Baseline == nil {
			continue
		}
		fmt.Fprintf(w, "**%s**\n\n", r.Scenario)
		if r.Baseline != nil {
			fmt.Fprintf(w, "- no-plugin run: %s, p50/p99 %s ms\n", fmtRate(r.Baseline), fmtLat(r.Baseline))
		}
		for _, m := range r.Metrics {
			l := fmt.Sprintf("- %s: %s %s", m.Name, fmtNum(m.Value), m.Unit)
			if m.Target != "" {
				l += " (target " + m.Target + ")"
			}
			if m.Pass != nil {
				l += " — " + passWord(*m.Pass)
			}
			fmt.Fprintln(w, l)
		}
		for _, n := range r.Notes {
			fmt.Fprintf(w, "- %s\n", mdEscape(n))
		}
		fmt.Fprintln(w)
	}
	return nil
}

func mdEscape(s string) string { return strings.ReplaceAll(s, "|", "\\|") }

// ReadJSONFile loads a report written with --json.
func ReadJSONFile(path string) (*Report, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var rep Report
	if err := json.Unmarshal(b, &rep); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	// Any JSON object decodes into a Report: one without a run's start and
	// results is not one (it would print an empty table as if it were).
	if rep.StartedAt.IsZero() || rep.Results == nil {
		return nil, fmt.Errorf("%s: not a pcbench report (no startedAt or results)", path)
	}
	return &rep, nil
}
