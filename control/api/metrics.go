package api

import (
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttpadaptor"

	"github.com/privateconnect/pc/control/store"
)

// metrics are the control plane's Prometheus metrics, on a registry of
// their own (GET /metrics). docs/monitoring.md lists them.
type metrics struct {
	reg           *prometheus.Registry
	requests      *prometheus.CounterVec
	latency       *prometheus.HistogramVec
	accessStored  prometheus.Counter
	accessDropped *prometheus.CounterVec
	statsDropped  prometheus.Counter // requests whose share statistics were not stored
	// reportRepeated counts report parts skipped as already applied.
	reportRepeated prometheus.Counter
	edgeDropped    *prometheus.CounterVec
	handler        fasthttp.RequestHandler
}

// storeSizer is implemented by stores that can report their size on disk
// (badgerstore: LSM tree and value log).
type storeSizer interface {
	Size() (lsm, vlog int64)
}

// storeTables is implemented by stores made of table files (badgerstore).
type storeTables interface {
	Tables() int
}

func newMetrics(a *API) *metrics {
	m := &metrics{reg: prometheus.NewRegistry()}
	m.requests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "pc_control_http_requests_total", Help: "API requests by route (operation id), method and status code.",
	}, []string{"route", "method", "code"})
	m.latency = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "pc_control_http_request_duration_seconds", Help: "API request latency by route.",
		Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 10},
	}, []string{"route"})
	m.accessStored = prometheus.NewCounter(prometheus.CounterOpts{Name: "pc_control_access_logs_total",
		Help: "Share access logs stored from edge reports."})
	m.accessDropped = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "pc_control_access_logs_dropped_total",
		Help: "Share access logs not stored, by reason (store: write failed; unknown_share)."}, []string{"reason"})
	for _, r := range []string{"store", "unknown_share"} {
		m.accessDropped.WithLabelValues(r) // at 0 from the start: the alert's rate() sees the first drop
	}
	m.statsDropped = prometheus.NewCounter(prometheus.CounterOpts{Name: "pc_control_share_stats_dropped_total",
		Help: "Requests edges counted in share statistics that were not stored (a failed write)."})
	m.reportRepeated = prometheus.NewCounter(prometheus.CounterOpts{Name: "pc_control_edge_report_parts_repeated_total",
		Help: "Parts of edge reports sent again after they were applied (an answer lost), skipped so that they count once."})
	m.edgeDropped = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "pc_control_edge_report_dropped_total",
		Help: "Access logs edges reported as dropped before they reached the control plane, by edge id."}, []string{"edge"})
	gauge := func(name, help string, f func() float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, f)
	}
	m.reg.MustRegister(m.requests, m.latency, m.accessStored, m.accessDropped, m.statsDropped, m.reportRepeated, m.edgeDropped,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		gauge("pc_control_config_version", "Current config version.", func() float64 { return float64(a.hub.Version()) }),
		gauge("pc_control_edge_streams", "Open edge config streams.", func() float64 { return float64(a.hub.Subscribers()) }),
		gauge("pc_control_online_edges", "Edges online (stream open or recent report).", func() float64 { return float64(len(a.hub.Presence.OnlineEdges())) }),
		gauge("pc_control_agent_sessions", "Agent sessions held by online edges (an agent on two edges counts twice).", func() float64 {
			n := 0
			for _, id := range a.hub.Presence.OnlineEdges() {
				n += a.hub.Presence.AgentCount(id, nil)
			}
			return float64(n)
		}),
		&edgeCollector{a: a, version: prometheus.NewDesc("pc_control_edge_applied_config_version",
			"Config version each online edge reports as applied.", []string{"edge"}, nil),
			lag: prometheus.NewDesc("pc_control_edge_config_lag_versions",
				"Config versions an online edge is behind the control plane (0 when current).", []string{"edge"}, nil)},
		a.webhooks.Metrics(),
	)
	if sz, ok := store.Unwrap(a.kv).(storeSizer); ok {
		m.reg.MustRegister(
			gauge("pc_control_store_lsm_bytes", "Size of the store's LSM tree on disk.", func() float64 { l, _ := sz.Size(); return float64(l) }),
			gauge("pc_control_store_vlog_bytes", "Size of the store's value log on disk.", func() float64 { _, v := sz.Size(); return float64(v) }),
		)
	}
	if tb, ok := store.Unwrap(a.kv).(storeTables); ok {
		m.reg.MustRegister(gauge("pc_control_store_tables", "Table files of the store's LSM tree (each an open file).",
			func() float64 { return float64(tb.Tables()) }))
	}
	m.handler = fasthttpadaptor.NewFastHTTPHandler(promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{}))
	return m
}

// observe records one answered request.
func (m *metrics) observe(route, method string, status int, d time.Duration) {
	m.requests.WithLabelValues(route, method, strconv.Itoa(status)).Inc()
	m.latency.WithLabelValues(route).Observe(d.Seconds())
}

func (a *API) serveMetrics(ctx *fasthttp.RequestCtx) { a.metrics.handler(ctx) }

// edgeCollector reports each online edge's applied config version.
type edgeCollector struct {
	a            *API
	version, lag *prometheus.Desc
}

func (c *edgeCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.version; ch <- c.lag }

func (c *edgeCollector) Collect(ch chan<- prometheus.Metric) {
	cur, epoch := c.a.hub.Version(), c.a.hub.Epoch()
	for _, id := range c.a.hub.Presence.OnlineEdges() {
		st, ok := c.a.hub.Presence.Edge(id)
		if !ok {
			continue
		}
		ch <- prometheus.MustNewConstMetric(c.version, prometheus.GaugeValue, float64(st.ConfigVersion), id)
		lag := cur - st.ConfigVersion
		if st.ConfigEpoch != epoch || lag < 0 {
			lag = cur // another epoch: everything is to be resent
		}
		ch <- prometheus.MustNewConstMetric(c.lag, prometheus.GaugeValue, float64(lag), id)
	}
}
