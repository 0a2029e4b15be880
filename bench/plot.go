package bench

import (
	"bytes"
	"errors"
	"fmt"
	"html"
	"io"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// The chart is SVG written with the standard library: three panels.
//
//  1. Throughput by scenario: the system/direct ratio as a bar, with the
//     absolute rates as labels and the 0.5 target line.
//  2. Latency percentiles: p50, p90, p99, p99.9 on a log axis, direct and
//     system on one row per scenario.
//  3. Over time: throughput and mean latency of each second of the system
//     phase, normalized to the direct phase's mean.
//
// A .png path is rendered from the SVG with rsvg-convert or ImageMagick
// when one is installed.

const (
	svgW      = 1100
	rowH      = 26
	leftW     = 170
	colDirect = "#8c8c8c"
	colSystem = "#1f6feb"
	colWarn   = "#d29922"
)

// plotPNG reports whether a chart file is a PNG (.png) rather than an SVG
// (.svg); any other name is an error.
func plotPNG(path string) (bool, error) {
	switch strings.ToLower(filepath.Ext(path)) {
	case ".png":
		return true, nil
	case ".svg":
		return false, nil
	}
	return false, fmt.Errorf("--plot %s: the chart is written as .svg or .png", path)
}

// WritePlotFile writes the chart (.svg, or .png through a converter).
func (rep *Report) WritePlotFile(path string) error {
	png, err := plotPNG(path)
	if err != nil {
		return err
	}
	var buf bytes.Buffer
	rep.WritePlot(&buf)
	if png {
		return svgToPNG(buf.Bytes(), path)
	}
	return os.WriteFile(path, buf.Bytes(), 0o644)
}

func svgToPNG(svg []byte, path string) error {
	tmp, err := os.CreateTemp("", "pcbench-*.svg")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(svg); err != nil {
		return err
	}
	tmp.Close()
	if p, err := exec.LookPath("rsvg-convert"); err == nil {
		if out, err := exec.Command(p, "-o", path, tmp.Name()).CombinedOutput(); err != nil {
			return fmt.Errorf("rsvg-convert: %v: %s", err, out)
		}
		return nil
	}
	for _, name := range []string{"magick", "convert"} {
		if p, err := exec.LookPath(name); err == nil {
			if out, err := exec.Command(p, tmp.Name(), path).CombinedOutput(); err != nil {
				return fmt.Errorf("%s: %v: %s", name, err, out)
			}
			return nil
		}
	}
	return errNoConverter
}

var errNoConverter = errors.New("--plot .png needs rsvg-convert or ImageMagick on PATH; use a .svg file instead")

// pngConverter reports whether a program that svgToPNG uses is on PATH.
func pngConverter() error {
	for _, name := range []string{"rsvg-convert", "magick", "convert"} {
		if _, err := exec.LookPath(name); err == nil {
			return nil
		}
	}
	return errNoConverter
}

type svgDoc struct {
	b bytes.Buffer
	y float64
}

func (d *svgDoc) f(format string, args ...any) { fmt.Fprintf(&d.b, format+"\n", args...) }

func (d *svgDoc) text(x, y float64, anchor, style, s string) {
	d.f(`<text x="%.1f" y="%.1f" text-anchor="%s" %s>%s</text>`, x, y, anchor, style, html.EscapeString(s))
}

// WritePlot writes the SVG chart.
func (rep *Report) WritePlot(w io.Writer) {
	var withRatio, withLat, withSeries []*Result
	for _, r := range rep.Results {
		if r.Status != StatusOK {
			continue
		}
		if r.Ratios != nil {
			withRatio = append(withRatio, r)
		}
		if (r.Direct != nil && r.Direct.Latency != nil) || (r.System != nil && r.System.Latency != nil) {
			withLat = append(withLat, r)
		}
		if r.Direct != nil && r.System != nil && len(r.System.Series) > 1 {
			withSeries = append(withSeries, r)
		}
	}
	d := &svgDoc{y: 30}
	// Panel 1.
	d.text(20, d.y, "start", `font-size="16" font-weight="bold"`, "Throughput through the system, as a ratio of direct (same run)")
	d.y += 12
	d.text(20, d.y+8, "start", `font-size="11" fill="#555"`, rep.Machine.String()+" — "+rep.System)
	d.y += 24
	plotX0, plotX1 := float64(leftW), float64(svgW-260)
	maxRatio := 1.0
	for _, r := range withRatio {
		maxRatio = math.Max(maxRatio, r.Ratios.Throughput)
	}
	maxRatio = math.Ceil(maxRatio*4) / 4
	xr := func(v float64) float64 { return plotX0 + v/maxRatio*(plotX1-plotX0) }
	top := d.y
	for i, r := range withRatio {
		y := d.y + float64(i)*rowH
		d.text(plotX0-8, y+16, "end", `font-size="12"`, r.Scenario)
		col := colSystem
		if r.Pass != nil && !*r.Pass {
			col = colWarn
		}
		d.f(`<rect x="%.1f" y="%.1f" width="%.1f" height="%d" fill="%s"/>`, plotX0, y+4, math.Max(1, xr(r.Ratios.Throughput)-plotX0), rowH-8, col)
		if end := xr(r.Ratios.Throughput); end > plotX1-36 {
			// A full bar: the figure goes inside it, clear of the rates column.
			d.text(end-4, y+16, "end", `font-size="11" fill="#fff"`, fmt.Sprintf("%.2f", r.Ratios.Throughput))
		} else {
			d.text(end+4, y+16, "start", `font-size="11"`, fmt.Sprintf("%.2f", r.Ratios.Throughput))
		}
		d.text(plotX1+20, y+16, "start", `font-size="11" fill="#555"`, fmt.Sprintf("%s → %s", fmtRate(r.Direct), fmtRate(r.System)))
	}
	bottom := d.y + float64(len(withRatio))*rowH
	for v := 0.0; v <= maxRatio+1e-9; v += 0.25 {
		x := xr(v)
		d.f(`<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#ddd"/>`, x, top, x, bottom)
		d.text(x, bottom+14, "middle", `font-size="10" fill="#555"`, fmt.Sprintf("%.2f", v))
	}
	d.f(`<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#cf222e" stroke-dasharray="4 3"/>`, xr(0.5), top, xr(0.5), bottom)
	d.text(xr(0.5)+3, top-4, "start", `font-size="10" fill="#cf222e"`, "0.50 target (HTTP)")
	d.f(`<rect x="%.1f" y="%.1f" width="10" height="10" fill="%s"/>`, plotX0, bottom+24, colSystem)
	d.text(plotX0+14, bottom+33, "start", `font-size="11"`, "meets its target")
	d.f(`<rect x="%.1f" y="%.1f" width="10" height="10" fill="%s"/>`, plotX0+130, bottom+24, colWarn)
	d.text(plotX0+144, bottom+33, "start", `font-size="11"`, "below its target (see the table for which)")
	d.y = bottom + 60

	// Panel 2.
	if len(withLat) > 0 {
		d.text(20, d.y, "start", `font-size="16" font-weight="bold"`, "Latency percentiles (ms, log scale): p50 ● p90 ◆ p99 ■ p99.9 ▲ — grey direct, blue system")
		d.y += 20
		lo, hi := math.Inf(1), 0.0
		for _, r := range withLat {
			for _, p := range []*Phase{r.Direct, r.System} {
				if p != nil && p.Latency != nil {
					lo = math.Min(lo, math.Max(p.Latency.P50, 0.001))
					hi = math.Max(hi, p.Latency.P999)
				}
			}
		}
		lo = math.Pow(10, math.Floor(math.Log10(lo)))
		hi = math.Pow(10, math.Ceil(math.Log10(math.Max(hi, lo*10))))
		xl := func(v float64) float64 {
			v = math.Max(v, lo)
			return plotX0 + (math.Log10(v)-math.Log10(lo))/(math.Log10(hi)-math.Log10(lo))*(plotX1-plotX0)
		}
		top := d.y
		row := 0
		for _, r := range withLat {
			for k, p := range []*Phase{r.Direct, r.System} {
				if p == nil || p.Latency == nil {
					continue
				}
				y := d.y + float64(row)*18 + 9
				label := r.Scenario
				if k == 0 {
					label += " direct"
				} else {
					label += " system"
				}
				col := colDirect
				if k == 1 {
					col = colSystem
				}
				d.text(plotX0-8, y+4, "end", `font-size="11"`, label)
				l := p.Latency
				d.f(`<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s" stroke-width="2"/>`, xl(l.P50), y, xl(l.P999), y, col)
				d.f(`<circle cx="%.1f" cy="%.1f" r="4" fill="%s"/>`, xl(l.P50), y, col)
				d.f(`<path d="M %.1f %.1f l 5 5 l -5 5 l -5 -5 z" fill="%s"/>`, xl(l.P90), y-5, col)
				d.f(`<rect x="%.1f" y="%.1f" width="8" height="8" fill="%s"/>`, xl(l.P99)-4, y-4, col)
				d.f(`<path d="M %.1f %.1f l 5 9 l -10 0 z" fill="%s"/>`, xl(l.P999), y-5, col)
				d.text(plotX1+20, y+4, "start", `font-size="10" fill="#555"`, fmt.Sprintf("%s / %s / %s / %s", fmtNum(l.P50), fmtNum(l.P90), fmtNum(l.P99), fmtNum(l.P999)))
				row++
			}
		}
		bottom := d.y + float64(row)*18 + 4
		for v := lo; v <= hi*1.0001; v *= 10 {
			x := xl(v)
			d.f(`<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#ddd"/>`, x, top, x, bottom)
			d.text(x, bottom+14, "middle", `font-size="10" fill="#555"`, fmtNum(v))
		}
		d.y = bottom + 50
	}

	// Panel 3.
	if len(withSeries) > 0 {
		d.text(20, d.y, "start", `font-size="16" font-weight="bold"`, "Over time (system phase, per second): throughput (blue) and mean latency (orange); each box scaled to its own maximum")
		d.y += 14
		cellW, cellH := 250.0, 70.0
		perRow := 4
		for i, r := range withSeries {
			cx := 20 + float64(i%perRow)*(cellW+20)
			cy := d.y + float64(i/perRow)*(cellH+36)
			d.text(cx, cy+12, "start", `font-size="11"`, r.Scenario)
			d.f(`<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="none" stroke="#ddd"/>`, cx, cy+18, cellW, cellH)
			base := mean(r.Direct.Series)
			latBase := 0.0
			if r.Direct.Latency != nil {
				latBase = r.Direct.Latency.Mean
			}
			spark := func(vals []float64, ref float64, col string) {
				if ref <= 0 || len(vals) < 2 {
					return
				}
				top := 0.0
				for _, v := range vals {
					top = math.Max(top, v/ref)
				}
				top = math.Max(top, 1)
				var pts []string
				for j, v := range vals {
					x := cx + float64(j)/float64(len(vals)-1)*cellW
					y := cy + 18 + cellH - v/ref/top*cellH
					pts = append(pts, fmt.Sprintf("%.1f,%.1f", x, y))
				}
				d.f(`<polyline points="%s" fill="none" stroke="%s" stroke-width="1.5"/>`, strings.Join(pts, " "), col)
			}
			spark(r.System.Series, base, colSystem)
			spark(r.System.LatencySeries, latBase, "#e36209")
			if base > 0 && latBase > 0 {
				d.text(cx+cellW, cy+12, "end", `font-size="10" fill="#555"`,
					fmt.Sprintf("throughput %.2f×, mean latency %.1f×", mean(r.System.Series)/base, mean(r.System.LatencySeries)/latBase))
			}
		}
		d.y += float64((len(withSeries)+perRow-1)/perRow)*(cellH+36) + 20
	}
	fmt.Fprintf(w, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%.0f" viewBox="0 0 %d %.0f" font-family="Helvetica, Arial, sans-serif">`+"\n", svgW, d.y, svgW, d.y)
	fmt.Fprintf(w, `<rect width="100%%" height="100%%" fill="white"/>`+"\n")
	_, _ = w.Write(d.b.Bytes())
	fmt.Fprintln(w, "</svg>")
}

func mean(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := 0.0
	for _, x := range v {
		s += x
	}
	return s / float64(len(v))
}
