package main

import (
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
)

// Defects found by a CLI walk-through: each is refused, or reported, before
// the control plane is changed.

// TestExposeChecksFlagsBeforeAnyAPICall: a bad --metrics, --ca-file or
// --name is a usage error met before anything is provisioned or registered.
func TestExposeChecksFlagsBeforeAnyAPICall(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"metrics", []string{"--metrics", "notanaddr"}, "--metrics"},
		{"ca-file", []string{"--ca-file", filepath.Join(t.TempDir(), "nonexistent.pem")}, "--ca-file"},
		{"name", []string{"--name", "bad name!"}, "must be 1-100 characters"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := exposeHarness(t)
			out, errOut, code := h.run(append([]string{"expose", "127.0.0.1:3000", "--protocol", "tcp"}, tc.args...)...)
			assert.Equal(t, 2, code, errOut)
			assert.Empty(t, out)
			assert.Contains(t, errOut, tc.want)
			assert.Contains(t, errOut, "--help' for usage")
			h.mu.Lock()
			defer h.mu.Unlock()
			assert.Empty(t, h.reqs, "no API call before the flags are checked")
			assert.Empty(t, h.agents)
		})
	}
}
