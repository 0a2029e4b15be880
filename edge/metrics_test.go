package edge

import (
	"crypto/sha256"
	"encoding/hex"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/require"

	"github.com/privateconnect/pc/edge/routes"
	"github.com/privateconnect/pc/internal/config"
)

// Series of shares the table no longer holds are dropped on a swap (at most
// once per period); those of shares it holds stay.
func TestMetricsPruneRemovedShares(t *testing.T) {
	m := newMetrics(&Server{})
	share := func(id string) config.Share {
		h := sha256.Sum256([]byte(id))
		return config.Share{ID: id, TokenHash: hex.EncodeToString(h[:]), ServiceID: "svc"}
	}
	table, err := routes.Build(&config.Snapshot{Version: 1, Shares: []config.Share{share("shr_kept")}})
	require.NoError(t, err)
	for _, a := range []config.AccessLog{{ShareID: "shr_kept", StatusCode: 200}, {ShareID: "shr_kept", StatusCode: 404},
		{ShareID: "shr_gone", StatusCode: 200}, {ShareID: "shr_gone", StatusCode: 502}} {
		m.observe(&a)
	}
	require.Equal(t, 4, seriesCount(t, m.requests))

	m.lastPrune.Store(time.Now().UnixNano()) // pruned a moment ago: not again yet
	m.pruneShares(table)
	require.Equal(t, 4, seriesCount(t, m.requests))

	m.pruneEvery = 0
	m.pruneShares(table)
	require.Equal(t, 2, seriesCount(t, m.requests), "only shr_kept's two series are left")
	require.Equal(t, 1.0, counterValue(t, m.requestCounter("shr_kept", 404)))

	// A late request for the removed share brings a fresh series back.
	m.observe(&config.AccessLog{ShareID: "shr_gone", StatusCode: 200})
	require.Equal(t, 1.0, counterValue(t, m.requestCounter("shr_gone", 200)))
}

func seriesCount(t *testing.T, c prometheus.Collector) int {
	ch := make(chan prometheus.Metric, 100)
	c.Collect(ch)
	close(ch)
	n := 0
	for range ch {
		n++
	}
	return n
}

func counterValue(t *testing.T, c prometheus.Counter) float64 {
	var m dto.Metric
	require.NoError(t, c.Write(&m))
	return m.GetCounter().GetValue()
}
