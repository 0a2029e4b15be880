package plugins

import (
	"context"
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/privateconnect/pc/internal/testwasm"
)

// TestRespondInterimStatus: a guest answering RESPOND with an informational status (1xx) made
// the edge write "HTTP/1.1 101 Switching Protocols" (or 100 Continue) as if it were the answer,
// and the visitor then waited for a final response that never came. respond still accepts
// 100-599, but RESPOND must answer with a final status: a 1xx is an ERROR, failing closed with
// the generic 500, logged with the plugin id (and skipped for a failOpen plugin).
func TestRespondInterimStatus(t *testing.T) {
	h, logs := newTestHost(t, Config{})
	ctx := context.Background()
	load := func(id string, status int, opts ModuleOptions) {
		require.NoError(t, h.Load(ctx, id, testwasm.Respond(status), opts))
	}
	for _, status := range []int{100, 101, 103, 199} {
		id := fmt.Sprintf("interim-%d", status)
		load(id, status, ModuleOptions{})
		d := h.Evaluate(ctx, []Attachment{{PluginID: id}}, testRequest())
		assert.Equal(t, Error, d.Action, "status %d", status)
		assert.Equal(t, 500, d.Status, "status %d", status)
		assert.Equal(t, "Internal Server Error\n", string(d.Body))
		assert.Equal(t, id, d.PluginID)
		require.ErrorIs(t, d.Err, ErrABIViolation)
		assert.Contains(t, d.Err.Error(), fmt.Sprintf("informational status, not a final response: %d", status))
		assert.True(t, logs.contains("plugin="+id), "the failure is logged with the plugin id")
	}
	for _, status := range []int{200, 204, 302, 599} {
		id := fmt.Sprintf("final-%d", status)
		load(id, status, ModuleOptions{})
		d := h.Evaluate(ctx, []Attachment{{PluginID: id}}, testRequest())
		assert.Equal(t, Respond, d.Action, "status %d: %v", status, d.Err)
		assert.Equal(t, status, d.Status)
	}
	// A failOpen plugin's ERROR is skipped: the chain goes on to the next plugin.
	load("interim-open", 101, ModuleOptions{FailOpen: true})
	d := h.Evaluate(ctx, []Attachment{{PluginID: "interim-open"}, {PluginID: "final-204"}}, testRequest())
	assert.Equal(t, Respond, d.Action, "%v", d.Err)
	assert.Equal(t, 204, d.Status)
	assert.Equal(t, "final-204", d.PluginID)
}
