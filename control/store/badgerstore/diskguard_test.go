package badgerstore

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/privateconnect/pc/control/store"
)

// TestDiskGuardRefusesWritesWhenFull checks that a nearly full disk fails
// writes with store.ErrUnavailable (the API's 503) before Badger touches its
// mapped files, that reads keep working, and that writes resume once space
// is freed. The real file system case is covered end to end by
// internal/e2e TestFaultDiskFullAnswers503.
func TestDiskGuardRefusesWritesWhenFull(t *testing.T) {
	s, err := Open(Options{Dir: t.TempDir()})
	require.NoError(t, err)
	defer s.Close()
	ctx := context.Background()
	put := func(k string) error {
		return s.Update(ctx, func(tx store.Tx) error { return tx.Put([]byte(k), []byte("v")) })
	}
	require.NoError(t, put("before"))

	var free atomic.Int64
	free.Store(1 << 40)
	var fnRan atomic.Bool
	s.guard.space = func(string) (int64, int64, error) { return free.Load(), 100 << 20, nil }
	free.Store(100<<20 + DefaultMinFreeBytes - 1) // one byte short
	err = s.Update(ctx, func(tx store.Tx) error { fnRan.Store(true); return tx.Put([]byte("k"), []byte("v")) })
	require.ErrorIs(t, err, store.ErrUnavailable)
	require.Contains(t, err.Error(), "disk almost full")
	require.False(t, fnRan.Load(), "the transaction must not run on a full disk")
	require.NoError(t, s.View(ctx, func(tx store.Tx) error {
		_, err := tx.Get([]byte("before"))
		return err
	}), "reads keep working")
	require.NoError(t, s.Ping(ctx))

	free.Store(100<<20 + DefaultMinFreeBytes)
	require.NoError(t, put("after"), "writes resume once space is freed")

	s.guard.space = func(string) (int64, int64, error) { return 0, 0, errors.New("statfs failed") }
	require.NoError(t, put("unknown"), "an unknown free space does not block writes")
}

func TestDiskGuardOptions(t *testing.T) {
	g := newDiskGuard("x", 0)
	require.Equal(t, int64(DefaultMinFreeBytes), g.reserve)
	g = newDiskGuard("x", -1)
	g.space = func(string) (int64, int64, error) { return 0, 1 << 30, nil }
	require.NoError(t, g.check(), "a negative reserve disables the guard")
	var nilGuard *diskGuard
	require.NoError(t, nilGuard.check())
}

// TestDiskSpaceSeesSparseMappedFiles checks the measurement itself: a fresh
// database maps sparse memtable and value-log files, whose unbacked bytes
// the guard must count.
func TestDiskSpaceSeesSparseMappedFiles(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("statfs guard is linux-only")
	}
	dir := t.TempDir()
	s, err := Open(Options{Dir: dir})
	require.NoError(t, err)
	defer s.Close()
	free, unbacked, err := diskSpace(dir)
	require.NoError(t, err)
	require.Positive(t, free)
	require.Greater(t, unbacked, int64(32<<20), "the memtable and value log files are mapped sparse")
}

// Close is bounded: Badger retries a failed memtable flush forever (here the
// data directory was removed under it), and a control plane stopping must
// not hang on it.
func TestCloseIsBoundedWhenTheDirectoryIsGone(t *testing.T) {
	old := closeTimeout
	closeTimeout = 500 * time.Millisecond
	defer func() { closeTimeout = old }()
	dir := t.TempDir()
	s, err := Open(Options{Dir: dir})
	require.NoError(t, err)
	require.NoError(t, s.Update(context.Background(), func(tx store.Tx) error { return tx.Put([]byte("k"), []byte("v")) }))
	require.NoError(t, os.RemoveAll(dir))
	start := time.Now()
	err = s.Close()
	require.Error(t, err)
	require.Contains(t, err.Error(), "did not finish within 500ms")
	require.Less(t, time.Since(start), 5*time.Second)
}

// TestLostMemtableFailsClosed: when Badger cannot create a new memtable
// (here its directory was moved away; in production an unwritable
// directory or no file descriptor left) it sets its memtable to nil, and
// every later read dereferences it: the webhook worker's scan crashed the
// control plane. The store now records the failure, answers ErrUnavailable
// to every call without touching Badger, tells its owner once, and closes
// without a flush.
func TestLostMemtableFailsClosed(t *testing.T) {
	dir := t.TempDir()
	fatal := make(chan error, 4)
	s, err := Open(Options{Dir: filepath.Join(dir, "db"), MinFreeBytes: -1, OnFatal: func(err error) { fatal <- err }})
	require.NoError(t, err)
	ctx := context.Background()
	require.NoError(t, s.Update(ctx, func(tx store.Tx) error { return tx.Put([]byte("k"), []byte("v")) }))
	require.NoError(t, os.Rename(filepath.Join(dir, "db"), filepath.Join(dir, "moved")))

	// 512 KiB values stay in the LSM tree: the 8 MiB memtable fills up
	// after about 16 and Badger needs a new one.
	failure := fillMemtable(s)
	require.Error(t, failure, "the memtable never rotated")
	require.ErrorIs(t, failure, store.ErrUnavailable)
	require.Contains(t, failure.Error(), "cannot create new mem table")
	select {
	case err := <-fatal:
		require.ErrorIs(t, err, store.ErrUnavailable)
	case <-time.After(5 * time.Second):
		t.Fatal("OnFatal was not called")
	}

	// Reads and writes fail closed; before, a read crashed the process.
	err = s.View(ctx, func(tx store.Tx) error { _, err := tx.Get([]byte("k")); return err })
	require.ErrorIs(t, err, store.ErrUnavailable)
	require.ErrorIs(t, s.Update(ctx, func(tx store.Tx) error { return tx.Put([]byte("k2"), nil) }), store.ErrUnavailable)
	require.ErrorIs(t, s.Ping(ctx), store.ErrUnavailable)

	// A read that slipped past the check (a race) panics inside Badger:
	// that panic becomes the same failure.
	s.failed.Store(nil)
	err = s.View(ctx, func(tx store.Tx) error {
		return tx.Scan([]byte("big/"), nil, func(k, v []byte) (bool, error) { return true, nil })
	})
	require.ErrorIs(t, err, store.ErrUnavailable)
	err = s.View(ctx, func(tx store.Tx) error { _, err := tx.Get([]byte("k")); return err })
	require.ErrorIs(t, err, store.ErrUnavailable)
	require.Len(t, fatal, 0, "OnFatal is called once per failure record")

	start := time.Now()
	require.NoError(t, s.Close())
	require.Less(t, time.Since(start), 5*time.Second)
}

// fillMemtable writes 512 KiB values, which stay in the LSM tree, until one
// fails (the 8 MiB memtable fills up after about 16).
func fillMemtable(s *Store) error {
	val := make([]byte, 512<<10)
	for i := 0; i < 64; i++ {
		if err := s.Update(context.Background(), func(tx store.Tx) error { return tx.Put(fmt.Appendf(nil, "big/%d", i), val) }); err != nil {
			return err
		}
	}
	return nil
}

// TestLostMemtableUnderConcurrentWrites: with several writers (the case
// under load), the commits queued behind the one that lost the memtable
// used to reach Badger's assertion and exit the process at once (6 runs out
// of 6 with two writers). They now wait (for the shutdown OnFatal starts);
// the failure is answered and reported.
func TestLostMemtableUnderConcurrentWrites(t *testing.T) {
	dir := t.TempDir()
	fatal := make(chan error, 4)
	s, err := Open(Options{Dir: filepath.Join(dir, "db"), MinFreeBytes: -1, OnFatal: func(err error) { fatal <- err }})
	require.NoError(t, err)
	require.NoError(t, os.Rename(filepath.Join(dir, "db"), filepath.Join(dir, "moved")))
	val := make([]byte, 512<<10)
	failures := make(chan error, 8)
	for w := 0; w < 8; w++ {
		go func() {
			for i := 0; i < 16; i++ {
				err := s.Update(context.Background(), func(tx store.Tx) error { return tx.Put(fmt.Appendf(nil, "big/%d/%d", w, i), val) })
				if err != nil {
					failures <- err
					return
				}
			}
		}()
	}
	select {
	case err := <-failures:
		require.ErrorIs(t, err, store.ErrUnavailable)
	case <-time.After(20 * time.Second):
		t.Fatal("no write failed")
	}
	select {
	case err := <-fatal:
		require.Contains(t, err.Error(), "cannot create new mem table")
	case <-time.After(5 * time.Second):
		t.Fatal("OnFatal was not called")
	}
	require.ErrorIs(t, s.Update(context.Background(), func(tx store.Tx) error { return tx.Put([]byte("k"), nil) }), store.ErrUnavailable)
	time.Sleep(200 * time.Millisecond) // the process would have exited by now
	require.NoError(t, s.Close())
}
