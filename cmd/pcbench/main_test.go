package main

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

// Flags no run can mean are refused at once, before pcbench starts
// anything, rather than replaced by a default or found out at the end of a
// run (an output file that cannot be written).
func TestBadFlags(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"run", "-s", "http-small", "--duration", "-1s"}, "--duration must be positive"},
		{[]string{"run", "-s", "http-small", "--duration", "0s"}, "--duration must be positive"},
		{[]string{"run", "-s", "http-small", "--connections", "0"}, "--connections must be positive"},
		{[]string{"run", "-s", "http-small", "--connections", "-5"}, "--connections must be positive"},
		{[]string{"run", "-s", "http-small", "--rate", "0"}, "--rate must be positive"},
		{[]string{"run", "-s", "http-small", "--rate", "-10"}, "--rate must be a positive number"},
		{[]string{"run", "-s", "http-small", "--rate", "NaN"}, "--rate must be a positive number"},
		{[]string{"run", "-s", "http-small", "--rate", "+Inf"}, "--rate must be a positive number"},
		{[]string{"all", "--repeat", "0"}, "--repeat must be positive"},
		{[]string{"all", "--repeat", "-2"}, "--repeat must be positive"},
		{[]string{"run", "-s", "nosuch"}, `unknown scenario "nosuch"`},
		{[]string{"run", "-s", "http-small", "--json", filepath.Join(dir, "missing", "r.json")}, "output file"},
		{[]string{"run", "-s", "http-small", "--markdown", dir}, "output file"},
		{[]string{"run", "-s", "http-small", "--plot", filepath.Join(dir, "r.pdf")}, "written as .svg or .png"},
		{[]string{"run", "-s", "http-small", "--direct", "http://127.0.0.1:1/"}, "give --target too"},
	} {
		var stdout, stderr bytes.Buffer
		code := run(tc.args, &stdout, &stderr)
		require.Equal(t, 1, code, "%v", tc.args)
		require.Contains(t, stderr.String(), tc.want, "%v", tc.args)
		require.Empty(t, stdout.String(), "%v: nothing ran", tc.args)
	}
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	require.Empty(t, entries, "the checks leave no file behind")
}

// report refuses a JSON file that is not a pcbench report instead of
// printing an empty table.
func TestReportNotAReport(t *testing.T) {
	dir := t.TempDir()
	for name, body := range map[string]string{"other.json": `{"version": 99, "foo": [1, 2]}`, "cut.json": `{"startedAt": "2026-`, "array.json": `[]`} {
		path := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(path, []byte(body), 0o644))
		var stdout, stderr bytes.Buffer
		require.Equal(t, 1, run([]string{"report", path}, &stdout, &stderr), name)
		require.Contains(t, stderr.String(), path, name)
		require.Empty(t, stdout.String(), name)
	}
	var stdout, stderr bytes.Buffer
	require.Equal(t, 0, run([]string{"report", "../../bench/results/reference.json", "--plot", filepath.Join(dir, "r.svg")}, &stdout, &stderr), stderr.String())
	require.Contains(t, stdout.String(), "http-small")
}
