package bench

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
	"os"
	"sort"
	"strconv"
	"strings"
	"syscall"

	"github.com/HdrHistogram/hdrhistogram-go"

	"github.com/valyala/fasthttp"
)

// Units of throughput.
const (
	unitReqs   = "req/s"
	unitMsgs   = "msg/s"
	unitEvents = "events/s"
	unitMBps   = "MB/s"
)

// Scenario statuses.
const (
	StatusOK           = "ok"
	StatusNotAvailable = "not available"
	StatusFailed       = "failed"
	// StatusInterrupted: the run was stopped (SIGINT, SIGTERM) during the
	// scenario; its figures cover the time before that and are not judged.
	StatusInterrupted = "interrupted"
)

// Phase is one measured run: the direct baseline or the system.
type Phase struct {
	Target      string  `json:"target"`
	Connections int     `json:"connections"`
	TargetRate  float64 `json:"targetRate,omitempty"`
	// Interrupted: the run was stopped (SIGINT) before the end of the
	// window; the figures cover the time before it.
	Interrupted bool             `json:"interrupted,omitempty"`
	Seconds     float64          `json:"seconds"`
	Ops         int64            `json:"ops"`
	Errors      int64            `json:"errors"`
	ErrorKinds  map[string]int64 `json:"errorKinds,omitempty"`
	Bytes       int64            `json:"bytes"`
	Rate        float64          `json:"rate"`
	Unit        string           `json:"unit"`
	Latency     *Latency         `json:"latency,omitempty"`
	Procs       []ProcStat       `json:"processes,omitempty"`
	// Series is the throughput of each second of the window, in Unit.
	Series []float64 `json:"series,omitempty"`
	// LatencySeries is the mean latency of each second, in ms.
	LatencySeries []float64 `json:"latencySeriesMs,omitempty"`

	hist *hdrhistogram.Histogram // the latencies, for mergePhases
}

// Ratios compare the system with the direct baseline of the same run.
type Ratios struct {
	Throughput float64 `json:"throughput"`
	P50        float64 `json:"p50,omitempty"`
	P99        float64 `json:"p99,omitempty"`
}

// Metric is one named figure of a scenario that is not a load phase (edge
// memory per agent, propagation p99, snapshot build time…).
type Metric struct {
	Name   string  `json:"name"`
	Value  float64 `json:"value"`
	Unit   string  `json:"unit"`
	Target string  `json:"target,omitempty"`
	// Pass is nil when the metric has no target.
	Pass *bool `json:"pass,omitempty"`
}

// Result is the outcome of one scenario.
type Result struct {
	Scenario    string `json:"scenario"`
	Description string `json:"description"`
	Status      string `json:"status"`
	Reason      string `json:"reason,omitempty"`
	Direct      *Phase `json:"direct,omitempty"`
	System      *Phase `json:"system,omitempty"`
	// Baseline is the system without plugins, for the plugin scenarios.
	Baseline *Phase `json:"baseline,omitempty"`
	// Ceiling is the direct load through one, then two bare TCP relays
	// (relay.go): what any proxy of the system's shape could reach here.
	Ceiling []*Phase `json:"ceiling,omitempty"`
	// Runs are the key ratios of every run with --repeat (this Result is
	// the median one).
	Runs    []float64 `json:"runs,omitempty"`
	Ratios  *Ratios   `json:"ratios,omitempty"`
	Target  string    `json:"target,omitempty"`
	Pass    *bool     `json:"pass,omitempty"`
	Metrics []Metric  `json:"metrics,omitempty"`
	Notes   []string  `json:"notes,omitempty"`
	Seconds float64   `json:"seconds"`
}

func (r *Result) note(format string, args ...any) {
	n := sprintf(format, args...)
	for _, old := range r.Notes {
		if old == n {
			return
		}
	}
	r.Notes = append(r.Notes, n)
}

func (r *Result) metric(name string, v float64, unit, target string, pass *bool) {
	r.Metrics = append(r.Metrics, Metric{Name: name, Value: round3(v), Unit: unit, Target: target, Pass: pass})
}

// computeRatios fills r.Ratios from the two phases.
func (r *Result) computeRatios() {
	if r.Direct == nil || r.System == nil || r.Direct.Rate == 0 {
		return
	}
	q := &Ratios{Throughput: round3(r.System.Rate / r.Direct.Rate)}
	if r.Direct.Latency != nil && r.System.Latency != nil && r.Direct.Latency.P50 > 0 {
		q.P50 = round3(r.System.Latency.P50 / r.Direct.Latency.P50)
		if r.Direct.Latency.P99 > 0 {
			q.P99 = round3(r.System.Latency.P99 / r.Direct.Latency.P99)
		}
	}
	r.Ratios = q
}

func boolPtr(b bool) *bool { return &b }

// Error kinds.
const (
	kindTimeout  = "timeout"
	kindRefused  = "conn-refused"
	kindReset    = "conn-reset"
	kindEOF      = "conn-closed"
	kindStatus   = "status"
	kindShort    = "short-body"
	kindProtocol = "protocol"
	kindTLS      = "tls"
	kindDNS      = "dns"
	kindOther    = "other"
)

// errKind classifies an error for the "errors by kind" report.
func errKind(err error) string {
	switch {
	case err == nil:
		return ""
	case errors.Is(err, fasthttp.ErrTimeout), errors.Is(err, os.ErrDeadlineExceeded):
		return kindTimeout
	case errors.Is(err, syscall.ECONNREFUSED):
		return kindRefused
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return kindReset
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, fasthttp.ErrConnectionClosed), errors.Is(err, net.ErrClosed):
		return kindEOF
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return kindTimeout
	}
	var dnsErr *net.DNSError
	if errors.As(err, &dnsErr) {
		return kindDNS
	}
	var recErr tls.RecordHeaderError
	var certErr *tls.CertificateVerificationError
	var alert tls.AlertError
	if errors.As(err, &recErr) || errors.As(err, &certErr) || errors.As(err, &alert) {
		return kindTLS
	}
	s := err.Error()
	switch {
	case strings.Contains(s, "error when reading response headers"), strings.Contains(s, "malformed HTTP"),
		strings.Contains(s, "cannot find whitespace"), strings.Contains(s, "unexpected content-length"):
		// Something answered, but not with HTTP (fasthttp's parse errors).
		return kindProtocol
	case strings.HasPrefix(s, "tls: "), strings.Contains(s, "x509: "):
		return kindTLS
	case strings.Contains(s, "connection refused"):
		return kindRefused
	case strings.Contains(s, "reset by peer"), strings.Contains(s, "broken pipe"):
		return kindReset
	case strings.Contains(s, "closed"), strings.Contains(s, "EOF"):
		return kindEOF
	}
	return kindOther
}

// statusKind names an unexpected HTTP status, e.g. "status-429".
func statusKind(code int) string { return "status-" + strconv.Itoa(code) }

func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}
