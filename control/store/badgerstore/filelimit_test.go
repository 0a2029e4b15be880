package badgerstore

import (
	"bytes"
	"context"
	"log/slog"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/privateconnect/pc/control/store"
)

func TestFileLimitWarning(t *testing.T) {
	for _, tc := range []struct {
		tables int
		limit  uint64
		warn   bool
	}{
		{0, 1024, false},
		{512, 1024, false},
		{513, 1024, true},
		{3000, 1 << 20, false},
		{3000, 4096, true},
		{1, 0, true},
	} {
		msg := fileLimitWarning(tc.tables, tc.limit)
		require.Equal(t, tc.warn, msg != "", "%d tables, limit %d: %q", tc.tables, tc.limit, msg)
	}
	require.Contains(t, fileLimitWarning(3000, 4096), "3000 table files")
	require.Contains(t, fileLimitWarning(3000, 4096), "(4096)")
}

// TestTablesAndTheFileLimit: Tables counts the tree's table files, and
// opening a store whose tables take more than half of the file limit logs
// the warning.
func TestTablesAndTheFileLimit(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(Options{Dir: dir, MinFreeBytes: -1})
	require.NoError(t, err)
	require.Equal(t, 0, s.Tables())
	require.NoError(t, s.Update(context.Background(), func(tx store.Tx) error { return tx.Put([]byte("k"), []byte("v")) }))
	require.NoError(t, s.Close()) // flushes the memtable to a table

	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	orig := fileLimit
	t.Cleanup(func() { fileLimit = orig })
	fileLimit = func() (uint64, bool) { return 1 << 20, true }
	s, err = Open(Options{Dir: dir, MinFreeBytes: -1, Logger: log})
	require.NoError(t, err)
	ssts, _ := filepath.Glob(filepath.Join(dir, "*.sst"))
	require.NotEmpty(t, ssts)
	require.Equal(t, len(ssts), s.Tables())
	require.NotContains(t, logs.String(), "open-file limit")
	require.NoError(t, s.Close())

	fileLimit = func() (uint64, bool) { return 1, true }
	s, err = Open(Options{Dir: dir, MinFreeBytes: -1, Logger: log})
	require.NoError(t, err)
	defer s.Close()
	require.Contains(t, logs.String(), "more than half of the open-file limit (1)")
}
