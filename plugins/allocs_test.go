package plugins

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestEvaluateAllocs pins the allocations on the request path: EvaluateInto with a reused
// Decision allocates nothing itself; what remains is wazero's, per call: a channel and a
// goroutine with its closure (WithCloseOnContextDone), sometimes a fresh goroutine
// descriptor when the spawned ones have not exited yet.
func TestEvaluateAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts differ under -race")
	}
	h, _ := newTestHost(t, Config{})
	require.NoError(t, h.Load(context.Background(), "min", wat(t, "minimal"), ModuleOptions{}))
	require.NoError(t, h.Load(context.Background(), "echo", wat(t, "echo"), ModuleOptions{}))
	require.NoError(t, h.Load(context.Background(), "trusted", wat(t, "minimal"), ModuleOptions{Trusted: true}))
	require.NoError(t, h.Load(context.Background(), "trusted-echo", wat(t, "echo"), ModuleOptions{Trusted: true}))
	ctx := context.Background()
	req := testRequest()
	var d Decision
	for _, tc := range []struct {
		chain []Attachment
		max   float64
	}{
		{[]Attachment{{PluginID: "min"}}, 4},
		{[]Attachment{{PluginID: "trusted"}}, 0}, // no termination checks: no wazero goroutine
		{[]Attachment{{PluginID: "min"}, {PluginID: "min"}, {PluginID: "min"}}, 12},
		{[]Attachment{op("H")}, 4}, // reads a header
		// Reads a header of any name (X-Token): get_header does not copy the name.
		{[]Attachment{{PluginID: "trusted-echo", Config: []byte(`"H"`)}}, 0},
		{[]Attachment{op("R")}, 6}, // respond + a response header (two strings)
	} {
		h.EvaluateInto(ctx, tc.chain, req, &d)
		require.NotEqual(t, Error, d.Action, "%v", d.Err)
		allocs := testing.AllocsPerRun(200, func() { h.EvaluateInto(ctx, tc.chain, req, &d) })
		// +1: now and then one more goroutine descriptor (the spawned ones not yet exited);
		// trusted calls spawn none, so they are pinned exactly.
		slack := 1.0
		if tc.max == 0 {
			slack = 0
		}
		assert.LessOrEqual(t, allocs, tc.max+slack, "%v", tc.chain)
	}
}
