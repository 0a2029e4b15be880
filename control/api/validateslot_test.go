package api

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/valyala/fasthttp"

	"github.com/privateconnect/pc/internal/testwasm"
	"github.com/privateconnect/pc/plugins"
)

// Uploads are validated one at a time: one waiting past validateWait gets a
// 503 that says to retry, and the slot serves the next upload once free.
func TestValidationSlot(t *testing.T) {
	h, err := plugins.NewHost(context.Background(), plugins.Config{PoolSize: 1})
	require.NoError(t, err)
	t.Cleanup(func() { _ = h.Close(context.Background()) })
	ph := &pluginHost{validating: make(chan struct{}, 1)}
	old := validateWait
	validateWait = 50 * time.Millisecond
	t.Cleanup(func() { validateWait = old })

	ph.validating <- struct{}{} // another upload is being validated
	start := time.Now()
	_, err = ph.validate(context.Background(), h, testwasm.Respond(200))
	var e *Error
	require.ErrorAs(t, err, &e)
	assert.Equal(t, fasthttp.StatusServiceUnavailable, e.Status)
	assert.Contains(t, e.Message, "try again")
	assert.GreaterOrEqual(t, time.Since(start), validateWait)
	assert.Same(t, e, moduleError(err, "body"), "the upload answers the slot's 503, not a 400")

	<-ph.validating
	info, err := ph.validate(context.Background(), h, testwasm.Respond(200))
	require.NoError(t, err)
	assert.Contains(t, info.Exports, "handle_request")
	assert.Empty(t, ph.validating, "the slot is given back")
}
