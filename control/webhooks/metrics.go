package webhooks

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/privateconnect/pc/control/store"
)

// Metrics are the dispatcher's Prometheus collectors (registered by the
// control plane's /metrics).
type Metrics struct {
	d          *Dispatcher
	enqueued   *prometheus.CounterVec
	attempts   *prometheus.CounterVec
	deliveries *prometheus.CounterVec
	dropped    prometheus.Counter
	duration   prometheus.Histogram
	depth      *prometheus.Desc
	events     *prometheus.Desc
	lag        *prometheus.Desc
	inflight   *prometheus.Desc
}

func newMetrics(d *Dispatcher) *Metrics {
	m := &Metrics{
		d: d,
		enqueued: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "pc_control_webhook_events_total",
			Help: "Deliveries enqueued in the webhook outbox, by event."}, []string{"event"}),
		attempts: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "pc_control_webhook_attempts_total",
			Help: "Webhook delivery attempts by outcome (success: 2xx; failure: anything else)."}, []string{"outcome"}),
		deliveries: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "pc_control_webhook_deliveries_total",
			Help: "Webhook deliveries finished, by final status (succeeded, failed after every retry)."}, []string{"status"}),
		dropped: prometheus.NewCounter(prometheus.CounterOpts{Name: "pc_control_webhook_events_dropped_total",
			Help: "Events dropped because they could not be fanned out to their webhooks (see the control plane's log)."}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "pc_control_webhook_attempt_duration_seconds",
			Help: "Duration of webhook delivery attempts.", Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}}),
		depth: prometheus.NewDesc("pc_control_webhook_queue_depth", "Pending webhook deliveries in the outbox (due now or waiting for a retry).", nil, nil),
		events: prometheus.NewDesc("pc_control_webhook_events_pending",
			"Events stored but not yet fanned out to their webhooks' deliveries (normally 0 within milliseconds).", nil, nil),
		lag: prometheus.NewDesc("pc_control_webhook_queue_lag_seconds",
			"How long the oldest due webhook delivery has been waiting (0 when nothing is overdue).", nil, nil),
		inflight: prometheus.NewDesc("pc_control_webhook_inflight", "Webhook requests in flight.", nil, nil),
	}
	// Every known series exists from the start at 0, so that an alert on
	// increase() or rate() sees the first failure (a series born at 1 has
	// no increase).
	for _, o := range []string{"success", "failure"} {
		m.attempts.WithLabelValues(o)
	}
	for _, st := range []string{"succeeded", "failed"} {
		m.deliveries.WithLabelValues(st)
	}
	return m
}

// Metrics returns the dispatcher's collectors.
func (d *Dispatcher) Metrics() *Metrics { return d.metrics }

// Describe implements prometheus.Collector.
func (m *Metrics) Describe(ch chan<- *prometheus.Desc) {
	m.enqueued.Describe(ch)
	m.attempts.Describe(ch)
	m.deliveries.Describe(ch)
	m.dropped.Describe(ch)
	m.duration.Describe(ch)
	ch <- m.depth
	ch <- m.events
	ch <- m.lag
	ch <- m.inflight
}

// Collect implements prometheus.Collector; the queue gauges scan the outbox.
func (m *Metrics) Collect(ch chan<- prometheus.Metric) {
	m.enqueued.Collect(ch)
	m.attempts.Collect(ch)
	m.deliveries.Collect(ch)
	m.dropped.Collect(ch)
	m.duration.Collect(ch)
	now := time.Now()
	var depth, events int
	var oldest time.Time
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	err := m.d.kv.View(ctx, func(tx store.Tx) error {
		depth, oldest = 0, time.Time{}
		var err error
		if events, err = store.WebhookEventsPending(tx); err != nil {
			return err
		}
		return store.ScanOutbox(tx, func(it store.QueueItem) store.OutboxStep {
			if depth == 0 || it.Due.Before(oldest) {
				oldest = it.Due
			}
			depth++
			return store.OutboxNext
		})
	})
	if err == nil {
		ch <- prometheus.MustNewConstMetric(m.depth, prometheus.GaugeValue, float64(depth))
		ch <- prometheus.MustNewConstMetric(m.events, prometheus.GaugeValue, float64(events))
		lag := 0.0
		if !oldest.IsZero() && now.After(oldest) {
			lag = now.Sub(oldest).Seconds()
		}
		ch <- prometheus.MustNewConstMetric(m.lag, prometheus.GaugeValue, lag)
	}
	m.d.mu.Lock()
	busy := m.d.busy
	m.d.mu.Unlock()
	ch <- prometheus.MustNewConstMetric(m.inflight, prometheus.GaugeValue, float64(busy))
}
