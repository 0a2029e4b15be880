package api

import (
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttpadaptor"
)

// metrics are the control plane's Prometheus metrics, on a registry of
// their own (GET /metrics).
type metrics struct {
	reg      *prometheus.Registry
	requests *prometheus.CounterVec
	latency  *prometheus.HistogramVec
	handler  fasthttp.RequestHandler
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
	m.reg.MustRegister(m.requests, m.latency,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "pc_control_config_version", Help: "Current config version."},
			func() float64 { return float64(a.hub.Version()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "pc_control_edge_streams", Help: "Open edge config streams."},
			func() float64 { return float64(a.hub.Subscribers()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "pc_control_online_edges", Help: "Edges online (stream open or recent report)."},
			func() float64 { return float64(len(a.hub.Presence.OnlineEdges())) }),
	)
	m.handler = fasthttpadaptor.NewFastHTTPHandler(promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{}))
	return m
}

// observe records one answered request.
func (m *metrics) observe(route, method string, status int, d time.Duration) {
	m.requests.WithLabelValues(route, method, strconv.Itoa(status)).Inc()
	m.latency.WithLabelValues(route).Observe(d.Seconds())
}

func (a *API) serveMetrics(ctx *fasthttp.RequestCtx) { a.metrics.handler(ctx) }
