// Package bench is pcbench: the load harness of Private Connect and its
// scenarios.
//
// A run starts what it needs on loopback as separate processes, so the CPU
// time and memory of each can be reported: the origin (pcbench itself,
// re-executed as the hidden `pcbench origin` command: a fasthttp server with
// /small, /bytes, /upload, /sse and /ws, and TCP echo, sink and source
// servers), the system (`pcd control` + `pcd edge`, or `pcd dev`) and the
// agent (`connect expose`). Every end-to-end scenario first loads the origin
// directly, then the same load through a share link, and reports the ratios
// system/direct, since absolute numbers on small shared machines drift from
// run to run (performance.md).
//
// Load is generated with fasthttp's client: closed loop (connections ×
// duration) or open loop (--rate, latency measured from each request's
// intended send time, so a stalled server cannot hide its queueing delay).
// Latencies go to HDR histograms.
package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Options configure a run.
type Options struct {
	// Duration of each measured phase (0: 10 s for one scenario, 5 s in
	// `all`).
	Duration time.Duration
	// Connections overrides every scenario's default concurrency.
	Connections int
	// Rate switches to open loop: requests per second over all connections.
	Rate float64
	// JSONFile and PlotFile, when set, receive the results and the chart
	// (.svg; .png is drawn as SVG rasterized by nothing: see WritePlot).
	JSONFile, PlotFile, MarkdownFile string
	// BinDir holds pcd and connect (default ./bin).
	BinDir string
	// System is "split" (pcd control + pcd edge, the default: separate CPU
	// and memory figures for the edge) or "dev" (pcd dev).
	System string
	// SystemArgs are appended to every pcd command line.
	SystemArgs []string
	// ProductLimits keeps pcd's default per-share and per-key rate limits
	// (pcbench then spreads the load over several share links and API
	// keys); by default pcbench lifts them when pcd has the flags.
	ProductLimits bool
	// Target, when set, is a share URL of a running deployment: only HTTP
	// load scenarios run, against it. Direct is its baseline URL.
	Target, Direct string
	// Quick shrinks every scenario (seconds, few connections, small sizes).
	Quick bool
	// IdleAgents and Shares size those scenarios (0: defaults).
	IdleAgents, Shares int
	// SoakDuration is the length of the soak (0: 10 minutes; 3 s with
	// Quick).
	SoakDuration time.Duration
	// SharesBudget bounds the time spent creating shares through the API.
	SharesBudget time.Duration
	// Self is the pcbench executable re-executed for helper processes
	// (default os.Executable).
	Self string
	// WorkDir is where data directories go (default os.TempDir).
	WorkDir     string
	KeepWorkDir bool
	// ServerLogLevel for pcd and connect (default warn).
	ServerLogLevel string
	Stdout, Stderr io.Writer
	Quiet          bool
	// Repeat runs each load scenario (those with a ratio; not the control
	// plane's nor the ones that grow the edge's state) this many times and
	// keeps the run with the median ratio.
	Repeat int
}

func (o *Options) setDefaults(all bool) error {
	if err := o.validate(); err != nil {
		return err
	}
	if o.BinDir == "" {
		o.BinDir = "./bin"
	}
	if o.System == "" {
		o.System = "split"
	}
	if o.System != "split" && o.System != "dev" {
		return fmt.Errorf("--system must be split or dev, not %q", o.System)
	}
	if o.Duration <= 0 {
		switch {
		case o.Quick:
			o.Duration = 500 * time.Millisecond
		case all:
			o.Duration = 5 * time.Second
		default:
			o.Duration = 10 * time.Second
		}
	}
	if o.SoakDuration <= 0 {
		o.SoakDuration = 10 * time.Minute
		if o.Quick {
			o.SoakDuration = 3 * time.Second
		}
	}
	if o.ServerLogLevel == "" {
		o.ServerLogLevel = "warn"
	}
	if o.SharesBudget <= 0 {
		o.SharesBudget = 240 * time.Second
	}
	if o.Stdout == nil {
		o.Stdout = os.Stdout
	}
	if o.Stderr == nil {
		o.Stderr = os.Stderr
	}
	if o.Self == "" {
		exe, err := os.Executable()
		if err != nil {
			return err
		}
		o.Self = exe
	}
	return nil
}

// validate refuses the values no run can mean (0 stands for the default).
func (o *Options) validate() error {
	for _, d := range []struct {
		flag string
		v    time.Duration
	}{{"--duration", o.Duration}, {"--soak-duration", o.SoakDuration}, {"--shares-budget", o.SharesBudget}} {
		if d.v < 0 {
			return fmt.Errorf("%s must be positive, not %v", d.flag, d.v)
		}
	}
	for _, n := range []struct {
		flag string
		v    int
	}{{"--connections", o.Connections}, {"--idle-agents", o.IdleAgents}, {"--shares", o.Shares}, {"--repeat", o.Repeat}} {
		if n.v < 0 {
			return fmt.Errorf("%s must be positive, not %d", n.flag, n.v)
		}
	}
	if o.Rate < 0 || math.IsNaN(o.Rate) || math.IsInf(o.Rate, 0) {
		return fmt.Errorf("--rate must be a positive number of requests per second, not %v", o.Rate)
	}
	if o.Direct != "" && o.Target == "" {
		return fmt.Errorf("--direct is the baseline of --target: give --target too")
	}
	for _, f := range []string{o.JSONFile, o.MarkdownFile, o.PlotFile} {
		if err := checkWritable(f); err != nil {
			return err
		}
	}
	if o.PlotFile != "" {
		png, err := plotPNG(o.PlotFile)
		if err != nil {
			return err
		}
		if png {
			if err := pngConverter(); err != nil {
				return err
			}
		}
	}
	return nil
}

// checkWritable makes sure an output file can be written before a run that
// may last many minutes, without truncating one that exists.
func checkWritable(path string) error {
	if path == "" {
		return nil
	}
	_, statErr := os.Stat(path)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE, 0o644)
	if err != nil {
		return fmt.Errorf("output file: %w", err)
	}
	f.Close()
	if os.IsNotExist(statErr) {
		os.Remove(path)
	}
	return nil
}

// scenario is one benchmark.
type scenario struct {
	name, desc, target string
	// targetOK: runs against --target too.
	targetOK bool
	run      func(ctx context.Context, r *runner, res *Result) error
}

// Scenarios lists the scenarios in the order `all` runs them.
func Scenarios() []ScenarioInfo {
	out := make([]ScenarioInfo, 0, len(registry))
	for _, s := range registry {
		out = append(out, ScenarioInfo{Name: s.name, Description: s.desc, Target: s.target})
	}
	return out
}

// ScenarioInfo describes a scenario for `pcbench scenarios`.
type ScenarioInfo struct{ Name, Description, Target string }

var registry []scenario

// scenarioOrder is the order of `all`: the data path first, then the
// control plane, then the scenarios that grow the edge's state, the soak last.
var scenarioOrder = []string{"http-small", "http-close", "body-1m-down", "body-1m-up", "body-100m-down", "body-100m-up",
	"websocket-echo", "sse", "tcp-bulk", "tcp-parallel", "plugins-default", "plugins-5", "api-reads", "api-create",
	"config-propagation", "idle-agents", "shares-100k", "soak"}

func register(s scenario) {
	registry = append(registry, s)
	rank := func(n string) int {
		for i, o := range scenarioOrder {
			if o == n {
				return i
			}
		}
		return len(scenarioOrder)
	}
	sort.SliceStable(registry, func(i, j int) bool { return rank(registry[i].name) < rank(registry[j].name) })
}

func lookup(name string) (scenario, bool) {
	for _, s := range registry {
		if s.name == name {
			return s, true
		}
	}
	return scenario{}, false
}

// runner carries the state of one invocation.
type runner struct {
	opts *Options
	env  *Env
	prog *progress
}

// Report is the output of a run.
type Report struct {
	StartedAt time.Time `json:"startedAt"`
	Machine   Machine   `json:"machine"`
	System    string    `json:"system"`
	Options   struct {
		Duration    string  `json:"duration"`
		Connections int     `json:"connections,omitempty"`
		Rate        float64 `json:"rate,omitempty"`
		Quick       bool    `json:"quick,omitempty"`
		Target      string  `json:"target,omitempty"`
	} `json:"options"`
	Results []*Result `json:"results"`
	Seconds float64   `json:"seconds"`
}

// Run runs the named scenarios (all of them when names is empty) and writes
// the table, and the JSON and chart when asked.
func Run(ctx context.Context, opts Options, names []string) (*Report, error) {
	all := len(names) == 0
	if err := opts.setDefaults(all); err != nil {
		return nil, err
	}
	var list []scenario
	if all {
		list = registry
	} else {
		for _, n := range names {
			s, ok := lookup(n)
			if !ok {
				return nil, fmt.Errorf("unknown scenario %q (see `pcbench scenarios`)", n)
			}
			list = append(list, s)
		}
	}
	prog := newProgress(opts.Stderr, opts.Quiet)
	rep := &Report{StartedAt: time.Now().UTC(), Machine: describeMachine(), System: opts.System}
	rep.Options.Duration = opts.Duration.String()
	rep.Options.Connections, rep.Options.Rate, rep.Options.Quick, rep.Options.Target = opts.Connections, opts.Rate, opts.Quick, opts.Target
	r := &runner{opts: &opts, prog: prog}
	begin := time.Now()
	var setupErr error
	if opts.Target == "" {
		raiseFileLimit()
		env, err := newEnv(&opts, prog)
		if err != nil {
			return nil, err
		}
		defer env.Close()
		r.env = env
		prog.logf("starting origin, %s system and agent (binaries in %s)…", opts.System, opts.BinDir)
		if err := env.startOrigin(ctx); err != nil {
			return nil, err
		}
		if setupErr = env.startSystem(ctx); setupErr != nil {
			setupErr = fmt.Errorf("start the system: %w", setupErr)
			if strings.Contains(setupErr.Error(), "not found at") {
				return nil, setupErr
			}
		}
		if v := buildInfo(env.opts.BinDir + "/pcd"); v != "" {
			rep.System += " (" + v + ")"
		}
		if env.limitsLifted {
			rep.System += ", rate limits lifted (--share-rate-limit/--api-rate-limit 1e9)"
		} else {
			rep.System += ", product rate limits"
		}
	} else {
		rep.System = "target " + opts.Target
	}
	for _, s := range list {
		if ctx.Err() != nil {
			break
		}
		desc := r.describe(s)
		res := &Result{Scenario: s.name, Description: desc, Target: s.target, Status: StatusOK}
		start := time.Now()
		switch {
		case setupErr != nil:
			res.Status, res.Reason = StatusFailed, setupErr.Error()
		case opts.Target != "" && !s.targetOK:
			res.Status, res.Reason = StatusNotAvailable, errNoSystem.Error()
		default:
			runs := 1
			if opts.Repeat > 1 && s.repeatable() {
				runs = opts.Repeat
			}
			var tries []*Result
			for i := range runs {
				if ctx.Err() != nil {
					break
				}
				try := res
				if i > 0 {
					try = &Result{Scenario: s.name, Description: desc, Target: s.target, Status: StatusOK}
				}
				if runs > 1 {
					prog.logf("▶ %s (run %d of %d) — %s", s.name, i+1, runs, desc)
				} else {
					prog.logf("▶ %s — %s", s.name, desc)
				}
				r.runOnce(ctx, s, try)
				tries = append(tries, try)
			}
			res = medianRun(tries)
			if ctx.Err() != nil {
				res.interrupted()
			}
		}
		res.Seconds = round3(time.Since(start).Seconds())
		prog.logf("%s", summaryLine(res))
		rep.Results = append(rep.Results, res)
	}
	rep.Seconds = round3(time.Since(begin).Seconds())
	if err := rep.WriteTable(opts.Stdout); err != nil {
		return rep, err
	}
	if opts.JSONFile != "" {
		if err := rep.WriteJSONFile(opts.JSONFile); err != nil {
			return rep, err
		}
	}
	if opts.MarkdownFile != "" {
		if err := rep.WriteMarkdownFile(opts.MarkdownFile); err != nil {
			return rep, err
		}
	}
	if opts.PlotFile != "" {
		if err := rep.WritePlotFile(opts.PlotFile); err != nil {
			return rep, err
		}
	}
	if ctx.Err() != nil {
		return rep, fmt.Errorf("interrupted: %w", ctx.Err())
	}
	return rep, nil
}

// runOnce runs s into res.
func (r *runner) runOnce(ctx context.Context, s scenario, res *Result) {
	err := s.run(ctx, r, res)
	var na notAvailable
	switch {
	case errors.As(err, &na):
		res.Status, res.Reason = StatusNotAvailable, na.reason
	case err != nil:
		res.Status, res.Reason = StatusFailed, err.Error()
	}
	res.computeRatios()
}

// interrupted marks a scenario stopped by a signal: its partial figures are
// kept (in the JSON) but not judged.
func (r *Result) interrupted() {
	r.Status, r.Pass = StatusInterrupted, nil
	r.Reason = "stopped by a signal before the end; the figures cover the time before it and are not judged"
	for i := range r.Metrics {
		r.Metrics[i].Pass = nil
	}
}

// repeatable: a load scenario whose ratio a repeat steadies (the others
// measure the control plane or grow the edge's state run after run).
func (s scenario) repeatable() bool {
	switch s.name {
	case "api-reads", "api-create", "config-propagation", "idle-agents", "shares-100k", "soak":
		return false
	}
	return true
}

// keyRatio is the figure a scenario is judged by: the throughput against
// the no-plugin run for the plugin scenarios, against direct otherwise.
func (r *Result) keyRatio() (float64, bool) {
	if r.Baseline != nil && r.Baseline.Rate > 0 && r.System != nil {
		return r.System.Rate / r.Baseline.Rate, true
	}
	if r.Ratios != nil && r.Ratios.Throughput > 0 {
		return r.Ratios.Throughput, true
	}
	return 0, false
}

// medianRun returns the run with the median key ratio (the lower of the two
// middle ones for an even count), noting every run's ratio in it. A run
// that failed or has no ratio is returned as it is: a repeat never hides a
// failure.
func medianRun(tries []*Result) *Result {
	if len(tries) == 1 {
		return tries[0]
	}
	ratios := make([]float64, len(tries))
	for i, t := range tries {
		k, ok := t.keyRatio()
		if t.Status != StatusOK || !ok {
			return t
		}
		ratios[i] = k
	}
	order := make([]int, len(tries))
	for i := range order {
		order[i] = i
	}
	sort.SliceStable(order, func(a, b int) bool { return ratios[order[a]] < ratios[order[b]] })
	med := tries[order[(len(order)-1)/2]]
	parts := make([]string, len(ratios))
	for i, k := range ratios {
		parts[i] = ratioStr(k)
	}
	med.Runs = ratios
	med.note("median of %d runs; their ratios in run order: %s", len(tries), strings.Join(parts, ", "))
	return med
}

// notAvailable marks a scenario the system cannot run yet (a feature that
// does not exist), as opposed to a failure.
type notAvailable struct{ reason string }

func (n notAvailable) Error() string { return "not available: " + n.reason }

func unavailable(format string, args ...any) error {
	return notAvailable{reason: fmt.Sprintf(format, args...)}
}

// concurrency is a description's count of connections or streams, a
// scenario's default (r.conns).
var concurrency = regexp.MustCompile(`\b(\d+) (connections|streams)\b`)

// describe is s's description with the concurrency this run uses
// (--connections, --quick) in place of the default.
func (r *runner) describe(s scenario) string {
	return concurrency.ReplaceAllStringFunc(s.desc, func(m string) string {
		sub := concurrency.FindStringSubmatch(m)
		def, _ := strconv.Atoi(sub[1])
		return strconv.Itoa(r.conns(def)) + " " + sub[2]
	})
}

// conns is the scenario's concurrency: --connections, else def (small in
// quick mode).
func (r *runner) conns(def int) int {
	if r.opts.Connections > 0 {
		return r.opts.Connections
	}
	if r.opts.Quick {
		return min(def, 4)
	}
	return def
}

// warmup precedes each measured window.
func (r *runner) warmup(d time.Duration) time.Duration {
	if d <= 0 {
		return 0
	}
	return min(time.Second, d/5)
}

// measure runs f while sampling the processes of the phase.
func (r *runner) measure(system bool, f func() *Phase) *Phase {
	var pids map[string]int
	if r.env != nil {
		pids = r.env.procPIDs(system)
	} else {
		pids = map[string]int{"pcbench": os.Getpid()}
	}
	return measurePIDs(pids, f)
}

// measurePIDs runs f while sampling the processes named in pids.
func measurePIDs(pids map[string]int, f func() *Phase) *Phase {
	mon := newMonitor(pids)
	ph := f()
	ph.Procs = mon.end()
	return ph
}

// procStat finds one process's figures in a phase.
func (p *Phase) procStat(name string) *ProcStat {
	if p == nil {
		return nil
	}
	for i := range p.Procs {
		if p.Procs[i].Name == name {
			return &p.Procs[i]
		}
	}
	return nil
}
