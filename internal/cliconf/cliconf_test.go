package cliconf

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"github.com/stretchr/testify/require"
)

func TestPrecedence(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "c.yaml")
	require.NoError(t, os.WriteFile(cfg, []byte("listen: 1.2.3.4:1\ndata: /file\ntrusted-proxies: [10.0.0.0/8, 192.168.0.0/16]\n"), 0o600))
	fs := pflag.NewFlagSet("x", pflag.ContinueOnError)
	listen := fs.String("listen", "def", "")
	data := fs.String("data", "def", "")
	other := fs.String("other", "def", "")
	tp := fs.StringSlice("trusted-proxies", nil, "")
	require.NoError(t, fs.Parse([]string{"--listen", "flag"}))
	t.Setenv("PC_DATA", "/env")
	require.NoError(t, Apply(fs, cfg))
	require.Equal(t, "flag", *listen)
	require.Equal(t, "/env", *data)
	require.Equal(t, "def", *other)
	require.Equal(t, []string{"10.0.0.0/8", "192.168.0.0/16"}, *tp)
}

func TestUnknownKeysAndBadValues(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "c.yaml")
	require.NoError(t, os.WriteFile(cfg, []byte("listn: x\n"), 0o600))
	fs := pflag.NewFlagSet("x", pflag.ContinueOnError)
	fs.String("listen", "", "")
	n := fs.Int("n", 0, "")
	require.ErrorContains(t, Apply(fs, cfg), "unknown keys: listn")
	t.Setenv("PC_N", "abc")
	require.ErrorContains(t, Apply(fs, ""), "PC_N")
	_ = n
	require.Equal(t, "PC_TCP_PORTS", EnvName("tcp-ports"))
}

func TestExecuteExitCodes(t *testing.T) {
	var out, errOut bytes.Buffer
	ok := &cobra.Command{Use: "x", RunE: func(*cobra.Command, []string) error { return nil }}
	require.Equal(t, 0, Execute(ok, nil, &out, &errOut))
	bad := &cobra.Command{Use: "x", SilenceErrors: true, SilenceUsage: true,
		RunE: func(*cobra.Command, []string) error { return errors.New("boom") }}
	require.Equal(t, 1, Execute(bad, nil, &out, &errOut))
	require.Equal(t, "error: boom\n", errOut.String())
}

// TestProfiles: PC_CPUPROFILE and PC_MEMPROFILE each write their profile
// (gzipped protobuf) named after the command and the process id; without
// them nothing is written.
func TestProfiles(t *testing.T) {
	dir := t.TempDir()
	stop, err := StartCPUProfile([]string{"edge"})
	require.NoError(t, err)
	stop()
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	require.Empty(t, entries)

	prefix := filepath.Join(dir, "pc")
	t.Setenv("PC_CPUPROFILE", prefix)
	t.Setenv("PC_MEMPROFILE", prefix)
	stop, err = StartCPUProfile([]string{"edge", "--listen", "x"})
	require.NoError(t, err)
	stop()
	for _, ext := range []string{"pprof", "heap"} {
		b, err := os.ReadFile(fmt.Sprintf("%s.edge.%d.%s", prefix, os.Getpid(), ext))
		require.NoError(t, err, ext)
		require.True(t, bytes.HasPrefix(b, []byte{0x1f, 0x8b}), "%s: gzip", ext)
	}
}

// TestPeriodicHeapProfiles: PC_MEMPROFILE_EVERY adds numbered heap profiles
// during the run, and stopping ends them (no profile is written after).
func TestPeriodicHeapProfiles(t *testing.T) {
	prefix := filepath.Join(t.TempDir(), "pc")
	t.Setenv("PC_MEMPROFILE", prefix)
	t.Setenv("PC_MEMPROFILE_EVERY", "20ms")
	stop, err := StartCPUProfile([]string{"control"})
	require.NoError(t, err)
	first := fmt.Sprintf("%s.control.%d.1.heap", prefix, os.Getpid())
	require.Eventually(t, func() bool { _, err := os.Stat(first); return err == nil }, 10*time.Second, 10*time.Millisecond)
	stop()
	all, err := filepath.Glob(prefix + ".control.*.heap")
	require.NoError(t, err)
	time.Sleep(100 * time.Millisecond)
	after, err := filepath.Glob(prefix + ".control.*.heap")
	require.NoError(t, err)
	require.Equal(t, all, after, "profiles written after stop")
	require.Contains(t, all, fmt.Sprintf("%s.control.%d.heap", prefix, os.Getpid()))
	b, err := os.ReadFile(first)
	require.NoError(t, err)
	require.True(t, bytes.HasPrefix(b, []byte{0x1f, 0x8b}), "gzip")
}
