package main

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
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

// TestEmptyStateIsAUsageError: --state "" would provision an agent, then
// fail to save it in the current directory (leaving ./.lock there).
func TestEmptyStateIsAUsageError(t *testing.T) {
	for _, args := range [][]string{
		{"expose", "127.0.0.1:3000", "--name", "web", "--state", ""},
		{"up", "--state", ""},
		{"agents", "rotate-token", "--state", " "},
	} {
		h := exposeHarness(t)
		dir := t.TempDir()
		t.Chdir(dir)
		out, errOut, code := h.run(args...)
		assert.Equal(t, 2, code, "%v: %s", args, errOut)
		assert.Empty(t, out, "%v", args)
		assert.Contains(t, errOut, "--state must not be empty", "%v", args)
		h.mu.Lock()
		assert.Empty(t, h.reqs, "%v: no API call", args)
		h.mu.Unlock()
		entries, err := os.ReadDir(dir)
		require.NoError(t, err)
		assert.Empty(t, entries, "%v: nothing written in the current directory", args)
	}
}

// TestSharesUpdateRefusesClearingWhatItSets: the clear used to win silently.
func TestSharesUpdateRefusesClearingWhatItSets(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--clear", "allow-ip", "--allow-ip", "10.1.0.0/16"}, "--clear allow-ip and --allow-ip"},
		{[]string{"--rate-limit", "60", "--clear", "max-uses,rate-limit"}, "--clear rate-limit and --rate-limit"},
		{[]string{"--clear", "methods", "--methods", "GET"}, "--clear methods and --methods"},
		{[]string{"--clear", "paths", "--paths", "/api/*"}, "--clear paths and --paths"},
		{[]string{"--clear", "max-uses", "--max-uses", "5"}, "--clear max-uses and --max-uses"},
		{[]string{"--clear", "password", "--password", "pw"}, "--clear password and --password"},
		{[]string{"--clear", "plugins", "--plugin", "p1"}, "--clear plugins and --plugin"},
	} {
		h := newHarness(t)
		h.ok("PATCH /v1/shares/{id}", 200, `{"id":"s1","name":"demo"}`)
		out, errOut, code := h.run(append([]string{"shares", "update", "s1"}, tc.args...)...)
		assert.Equal(t, 2, code, "%v: %s", tc.args, errOut)
		assert.Empty(t, out)
		assert.Contains(t, errOut, tc.want, "%v", tc.args)
		assert.Empty(t, h.requests("PATCH", "/v1/shares/s1"), "%v: nothing changed", tc.args)
	}
}
