package plugins

import (
	"context"
	"encoding/hex"
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// respondWasm is a guest whose handle_request answers RESPOND with status and no body:
//
//	(module
//	  (import "policy" "respond" (func $respond (param i32 i32 i32)))
//	  (memory (export "memory") 1)
//	  (func (export "policy_abi_version") (result i32) (i32.const 1))
//	  (func (export "handle_request") (result i32)
//	    (call $respond (i32.const STATUS) (i32.const 0) (i32.const 0))
//	    (i32.const 1)))
//
// assembled by hand (wat2wasm is not always installed): STATUS is the two-byte signed LEB128
// of the i32.const, which holds any status from 64 to 8191.
func respondWasm(t testing.TB, status int) []byte {
	t.Helper()
	require.True(t, status >= 64 && status < 8192)
	b, err := hex.DecodeString("0061736d01000000010b0260037f7f7f006000017f02120106706f6c69637907726573706f6e6400000303020101" +
		"0503010001073003066d656d6f7279020012706f6c6963795f6162695f76657273696f6e00010e68616e646c655f7265717565737400020a" +
		"1402040041010b0d0041" + fmt.Sprintf("%02x%02x", byte(status&0x7f|0x80), byte(status>>7)) + "41004100100041010b")
	require.NoError(t, err)
	return b
}

// TestRespondInterimStatus: a guest answering RESPOND with an informational status (1xx) made
// the edge write "HTTP/1.1 101 Switching Protocols" (or 100 Continue) as if it were the answer,
// and the visitor then waited for a final response that never came. respond still accepts
// 100-599, but RESPOND must answer with a final status: a 1xx is an ERROR, failing closed with
// the generic 500, logged with the plugin id (and skipped for a failOpen plugin).
func TestRespondInterimStatus(t *testing.T) {
	h, logs := newTestHost(t, Config{})
	ctx := context.Background()
	load := func(id string, status int, opts ModuleOptions) {
		require.NoError(t, h.Load(ctx, id, respondWasm(t, status), opts))
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
