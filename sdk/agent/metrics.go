package agent

import (
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// counters are the agent's activity counters, exported as Prometheus
// metrics when Config.Registerer is set.
type counters struct {
	streams   atomic.Int64 // open proxied streams
	served    atomic.Uint64
	dialFails atomic.Uint64
	bytesIn   atomic.Uint64 // from the edge to targets
	bytesOut  atomic.Uint64 // from targets to the edge
	rejected  atomic.Uint64
}

func (a *Agent) registerMetrics(r prometheus.Registerer) error {
	c := &a.counters
	gauge := func(name, help string, f func() float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, f)
	}
	counter := func(name, help string, f func() float64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, f)
	}
	for _, col := range []prometheus.Collector{
		gauge("pc_agent_edge_sessions", "Edges the agent holds a live tunnel to.", func() float64 { return float64(len(a.liveSessions())) }),
		gauge("pc_agent_services", "Services this agent serves.", func() float64 {
			a.mu.Lock()
			defer a.mu.Unlock()
			return float64(len(a.services))
		}),
		gauge("pc_agent_active_streams", "Proxied streams open now.", func() float64 { return float64(c.streams.Load()) }),
		counter("pc_agent_streams_total", "Proxied streams served.", func() float64 { return float64(c.served.Load()) }),
		counter("pc_agent_dial_failures_total", "Targets that could not be dialed.", func() float64 { return float64(c.dialFails.Load()) }),
		counter("pc_agent_bytes_in_total", "Bytes from edges to targets.", func() float64 { return float64(c.bytesIn.Load()) }),
		counter("pc_agent_bytes_out_total", "Bytes from targets to edges.", func() float64 { return float64(c.bytesOut.Load()) }),
		counter("pc_agent_rejections_total", "Handshakes an edge rejected.", func() float64 { return float64(c.rejected.Load()) }),
	} {
		if err := r.Register(col); err != nil {
			return err
		}
		a.collectors = append(a.collectors, col)
	}
	return nil
}

// unregisterMetrics removes the agent's collectors (when Run ends), so a new
// agent may register on the same registry.
func (a *Agent) unregisterMetrics() {
	if a.cfg.Registerer == nil {
		return
	}
	for _, c := range a.collectors {
		a.cfg.Registerer.Unregister(c)
	}
	a.collectors = nil
}
