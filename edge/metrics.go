package edge

import (
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/privateconnect/pc/edge/routes"
	"github.com/privateconnect/pc/internal/config"
	"github.com/privateconnect/pc/plugins"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttpadaptor"
)

// metrics are the edge's Prometheus metrics, on a registry of its own so
// several edges can live in one process (tests, pcd dev).
type metrics struct {
	reg      *prometheus.Registry
	requests *prometheus.CounterVec
	duration prometheus.Histogram
	bytes    prometheus.Counter
	decision *prometheus.CounterVec
	dropped  prometheus.Counter
	// sampledOut counts the access logs the sample left out (the edge was
	// above its access log rate), statsDropped the requests left out of the
	// share statistics (too many share-minutes waiting to be reported).
	sampledOut   prometheus.Counter
	statsDropped prometheus.Counter
	handler      fasthttp.RequestHandler
	counters     sync.Map // reqKey → prometheus.Counter

	pruneEvery time.Duration // at most one pruneShares per period
	lastPrune  atomic.Int64  // unix ns
}

func newMetrics(s *Server) *metrics {
	m := &metrics{reg: prometheus.NewRegistry(), pruneEvery: time.Minute}
	m.requests = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "pc_edge_requests_total",
		Help: "Share requests by share id and status code."}, []string{"share", "status"})
	m.duration = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "pc_edge_request_duration_seconds",
		Help: "Time to the response head of share requests.", Buckets: prometheus.ExponentialBuckets(0.0001, 2.5, 14)})
	m.bytes = prometheus.NewCounter(prometheus.CounterOpts{Name: "pc_edge_bytes_total", Help: "Response body bytes sent to visitors."})
	m.decision = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "pc_edge_policy_decisions_total",
		Help: "Share requests by policy decision (allowed, denied) and the deciding check."}, []string{"decision", "by"})
	m.dropped = prometheus.NewCounter(prometheus.CounterOpts{Name: "pc_edge_report_dropped_total", Help: "Access logs dropped because the report buffer was full or the control plane was unreachable."})
	m.sampledOut = prometheus.NewCounter(prometheus.CounterOpts{Name: "pc_edge_access_logs_sampled_out_total",
		Help: "Access logs not sent because the edge served more requests a second than its access log rate (the share statistics count them)."})
	m.statsDropped = prometheus.NewCounter(prometheus.CounterOpts{Name: "pc_edge_share_stats_dropped_total",
		Help: "Requests left out of the share statistics and share uses because 200,000 share-minutes were waiting to be reported."})
	gauge := func(name, help string, f func() float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, f)
	}
	m.reg.MustRegister(m.requests, m.duration, m.bytes, m.decision, m.dropped, m.sampledOut, m.statsDropped,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		gauge("pc_edge_active_requests", "Share requests in flight.", func() float64 { return float64(s.proxy.Active()) }),
		gauge("pc_edge_tunnel_sessions", "Connected agent sessions.", func() float64 { return float64(len(s.registry.Connected())) }),
		gauge("pc_edge_active_streams", "Open tunnel streams over all agents.", func() float64 { return float64(s.registry.Streams()) }),
		gauge("pc_edge_config_version", "Applied config version.", func() float64 { return float64(s.sync.Table().Version) }),
		gauge("pc_edge_config_connected", "1 when the config stream to the control plane is up.", func() float64 {
			if s.sync.Connected() {
				return 1
			}
			return 0
		}),
		gauge("pc_edge_config_lag_seconds", "Seconds since the last config message from the control plane.", func() float64 {
			if t := s.sync.LastMessage(); !t.IsZero() {
				return time.Since(t).Seconds()
			}
			return -1
		}),
		gauge("pc_edge_tcp_connections", "Open TCP connections through tunnel ports and reach.", func() float64 { return float64(s.conns.count()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "pc_edge_handshakes_refused_total",
			Help: "Tunnel connections closed at once because their address already held the maximum of connections in handshake."},
			func() float64 { return float64(s.registry.HandshakesRefused()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "pc_edge_streams_refused_total",
			Help: "Streams (requests, TCP connections, reaches) refused because their agent already had the maximum open."},
			func() float64 { return float64(s.registry.StreamsRefused()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "pc_edge_body_stalls_total",
			Help: "Requests ended because no byte of their body arrived within the body timeout (408 unless the answer had started; the connection closed)."},
			func() float64 { return float64(s.bodyStalls.Load()) }),
		&pluginCollector{s: s},
	)
	m.handler = fasthttpadaptor.NewFastHTTPHandler(promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{}))
	return m
}

// requestCounter caches the counter of a (share, status) pair: label lookup
// hashes and allocates, and runs on every request.
func (m *metrics) requestCounter(share string, status int) prometheus.Counter {
	k := reqKey{share, status}
	if c, ok := m.counters.Load(k); ok {
		return c.(prometheus.Counter)
	}
	c := m.requests.WithLabelValues(share, strconv.Itoa(status))
	m.counters.Store(k, c)
	return c
}

// pruneShares drops the request series of shares the table no longer holds:
// without it a long-running edge keeps a series (and its memory) for every
// share it ever served. It runs on table swaps, at most once per pruneEvery
// (a swap can come with every API change, and the walk is over every series).
// A request still in flight for a removed share may bring its series back
// until the next prune.
func (m *metrics) pruneShares(t *routes.Table) {
	now, last := time.Now().UnixNano(), m.lastPrune.Load()
	if now-last < int64(m.pruneEvery) || !m.lastPrune.CompareAndSwap(last, now) {
		return
	}
	m.counters.Range(func(k, _ any) bool {
		if rk := k.(reqKey); !t.HasShare(rk.share) {
			m.counters.Delete(k)
			m.requests.DeleteLabelValues(rk.share, strconv.Itoa(rk.status))
		}
		return true
	})
}

type reqKey struct {
	share  string
	status int
}

// observe counts one access record.
func (m *metrics) observe(a *config.AccessLog) {
	m.requestCounter(a.ShareID, a.StatusCode).Inc()
	m.duration.Observe(a.LatencyMs / 1000)
	if a.BytesOut > 0 {
		m.bytes.Add(float64(a.BytesOut))
	}
	by := a.DeniedBy
	if by == "" {
		by = "-"
	}
	m.decision.WithLabelValues(a.Decision, by).Inc()
}

// pluginCollector reads the Wasm host's counters at scrape time.
type pluginCollector struct{ s *Server }

var (
	descPluginCalls     = prometheus.NewDesc("pc_edge_plugin_calls_total", "Plugin calls.", []string{"plugin"}, nil)
	descPluginFailures  = prometheus.NewDesc("pc_edge_plugin_failures_total", "Plugin calls that failed (error, trap, timeout, out of memory).", []string{"plugin"}, nil)
	descPluginInstances = prometheus.NewDesc("pc_edge_plugin_instances", "Live Wasm instances per plugin.", []string{"plugin"}, nil)
	descPluginBreaker   = prometheus.NewDesc("pc_edge_plugin_breaker_open", "1 while a plugin's circuit breaker is open.", []string{"plugin"}, nil)
	descPluginDuration  = prometheus.NewDesc("pc_edge_plugin_duration_seconds", "Plugin call time, waiting for an instance included.", []string{"plugin"}, nil)
)

func (c *pluginCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descPluginCalls
	ch <- descPluginFailures
	ch <- descPluginInstances
	ch <- descPluginBreaker
	ch <- descPluginDuration
}

func (c *pluginCollector) Collect(ch chan<- prometheus.Metric) {
	if c.s.policy == nil {
		return
	}
	for _, p := range c.s.policy.Host().Stats().Plugins {
		ch <- prometheus.MustNewConstMetric(descPluginCalls, prometheus.CounterValue, float64(p.Calls), p.PluginID)
		ch <- prometheus.MustNewConstMetric(descPluginFailures, prometheus.CounterValue, float64(p.Failures), p.PluginID)
		ch <- prometheus.MustNewConstMetric(descPluginInstances, prometheus.GaugeValue, float64(p.Instances), p.PluginID)
		open := 0.0
		if p.BreakerOpen {
			open = 1
		}
		ch <- prometheus.MustNewConstMetric(descPluginBreaker, prometheus.GaugeValue, open, p.PluginID)
		buckets := make(map[float64]uint64, len(plugins.DurationBuckets))
		for i, le := range plugins.DurationBuckets {
			buckets[le] = p.Durations.Counts[i]
		}
		ch <- prometheus.MustNewConstHistogram(descPluginDuration, p.Durations.Count, p.Durations.SumSeconds, buckets, p.PluginID)
	}
}
