// Package badgerstore implements [store.KV] on Badger with synchronous
// writes: an Update that returned nil is on disk. It is the only package of
// the project that imports Badger.
//
// Errors of Badger itself (a full disk, a closed or corrupted database) are
// wrapped in [store.ErrUnavailable], which the API answers with 503; errors
// returned by the transaction's function pass through unchanged.
package badgerstore

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	badger "github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/options"

	"github.com/privateconnect/pc/control/store"
)

var _ store.KV = (*Store)(nil)

// Options configure Open.
type Options struct {
	// Dir is the database directory (created when missing).
	Dir string
	// Logger receives Badger's warnings and errors (nil: discard).
	Logger *slog.Logger
	// GCInterval is how often value-log garbage collection runs (default 5 min).
	GCInterval time.Duration
	// MinFreeBytes is the free disk space kept in reserve: writes fail with
	// store.ErrUnavailable when less than this remains beyond what Badger's
	// mapped files may still claim (default DefaultMinFreeBytes; negative
	// disables the check). See diskGuard.
	MinFreeBytes int64
	// OnFatal is called once, from its own goroutine, when the database
	// can no longer be used in this process (fail): the owner should shut
	// down so that a restart reopens it.
	OnFatal func(error)
}

// Store is a Badger-backed KV.
type Store struct {
	db    *badger.DB
	log   *slog.Logger
	guard *diskGuard
	stop  chan struct{}
	wg    sync.WaitGroup
	once  sync.Once

	failed  atomic.Pointer[error] // set by fail: every call answers it
	onFatal func(error)
}

// Open opens (or creates) the database in opts.Dir.
func Open(opts Options) (*Store, error) {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	la := &logAdapter{l: log}
	bo := badger.DefaultOptions(opts.Dir).
		WithSyncWrites(true).
		WithLogger(la).
		WithNumVersionsToKeep(1).
		WithMemTableSize(8 << 20).
		WithNumMemtables(3).
		WithBlockCacheSize(32 << 20).
		WithIndexCacheSize(16 << 20).
		WithValueLogFileSize(64 << 20).
		WithBaseTableSize(4 << 20).
		WithNumCompactors(2).
		WithCompression(options.None)
	// Memory: under a sustained stream of access logs, Badger's memory is
	// mostly its table builders (an L0 table is built in memory from a
	// memtable, compactions build several tables at once), which scale
	// with the memtable size, and doubled with compression (compressed
	// blocks are kept beside the plain ones). BenchmarkAccessLogIngest
	// (70-90k records/s): 16 MiB memtables with Snappy peaked at 2.8 GiB of
	// private memory, 8 MiB with Snappy at 2.6 GiB, 8 MiB without
	// compression at 0.33-0.86 GiB. The price was disk (385 bytes per
	// stored access record instead of 125, with the benchmark's short ids
	// then) and ingest speed at the limit (70k records/s instead of 92k);
	// the binary access records (store/accesscodec.go) since won both back
	// and more: 192-202 bytes per record with UUIDs, 123k records/s, peak
	// 0.29-0.41 GiB.
	// Every level's tables are 4 MiB (Badger's default doubles them at each
	// level below the base one, LevelDB and RocksDB keep them one size):
	// each table is built in memory by an allocator from a pool that keeps
	// up to 8 of them, grown to the biggest table each has built, and the
	// pool frees one only after 2 s without a build, so under a steady
	// stream of writes it never does. With doubling sizes the pool's memory
	// grew with the tree: BenchmarkAccessLogIngest, 3 minutes (~2.5 GB),
	// lowest Go heap after the warm-up 137 -> 196 MiB at the end, peak Go
	// heap 1.1 GiB. One size for all: 83 -> 84 MiB, peak 336 MiB, the same
	// ingest rate (90k records/s); the price is more files, about 250 per
	// GB stored (each an open file and a mapping). 2 MiB tables grew the
	// floor 104 -> 111 MiB (allocators sized for them grow again for the
	// 8 MiB memtables' L0 tables), 8 MiB tables held 146-152 MiB.
	bo.TableSizeMultiplier = 1
	// Opening maps a new memtable log (and a value log on a fresh
	// directory) and flushes replayed memtables: refuse to start rather
	// than crash when the disk cannot hold them (see diskGuard).
	guard := newDiskGuard(opts.Dir, opts.MinFreeBytes)
	if err := os.MkdirAll(opts.Dir, 0o700); err == nil {
		mems, _ := filepath.Glob(filepath.Join(opts.Dir, "*.mem"))
		extra := 2*bo.MemTableSize + int64(len(mems))*bo.MemTableSize
		if vlogs, _ := filepath.Glob(filepath.Join(opts.Dir, "*.vlog")); len(vlogs) == 0 {
			extra += 2 * bo.ValueLogFileSize
		}
		if err := guard.checkExtra("open", extra); err != nil {
			return nil, err
		}
	}
	db, err := badger.Open(bo)
	if err != nil {
		return nil, fmt.Errorf("badgerstore: open %s: %w", opts.Dir, err)
	}
	s := &Store{db: db, log: log, guard: guard, stop: make(chan struct{}), onFatal: opts.OnFatal}
	la.s.Store(s)
	iv := opts.GCInterval
	if iv <= 0 {
		iv = 5 * time.Minute
	}
	s.checkFileLimit()
	s.wg.Add(1)
	go s.gcLoop(iv)
	return s, nil
}

func (s *Store) gcLoop(iv time.Duration) {
	defer s.wg.Done()
	t := time.NewTicker(iv)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			if s.broken() != nil {
				return // value-log GC reads the memtables
			}
			for s.db.RunValueLogGC(0.5) == nil {
			}
			s.checkFileLimit()
		}
	}
}

// maxConflictRetries bounds retries of an Update that lost an optimistic
// concurrency race with another Update.
const maxConflictRetries = 200

// Update runs fn in a read-write transaction and commits it durably. It
// fails with store.ErrUnavailable, without running fn, when the disk is
// almost full.
func (s *Store) Update(ctx context.Context, fn func(store.Tx) error) error {
	if err := s.broken(); err != nil {
		return err
	}
	if err := s.guard.check(); err != nil {
		return err
	}
	for attempt := 0; ; attempt++ {
		if err := ctx.Err(); err != nil {
			return err
		}
		var fnErr error
		err := s.guarded(func() error {
			return s.db.Update(func(txn *badger.Txn) error {
				fnErr = fn(&tx{s: s, txn: txn, write: true})
				return fnErr
			})
		})
		switch {
		case err == nil:
			return nil
		case fnErr != nil && err == fnErr:
			return err
		case strings.Contains(err.Error(), "cannot create new mem table"):
			// Badger has no memtable left (it set it to nil): every later
			// read or write would crash the process.
			return s.fail(err)
		case errors.Is(err, badger.ErrConflict) && attempt < maxConflictRetries:
			// Back off a little, with jitter, so that contending writers spread out.
			time.Sleep(time.Duration(rand.Int64N(int64(50*time.Microsecond) * int64(min(attempt+1, 20)))))
			continue
		default:
			return unavailable("update", err)
		}
	}
}

// View runs fn in a read-only transaction.
func (s *Store) View(ctx context.Context, fn func(store.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := s.broken(); err != nil {
		return err
	}
	var fnErr error
	err := s.guarded(func() error {
		return s.db.View(func(txn *badger.Txn) error {
			fnErr = fn(&tx{s: s, txn: txn})
			return fnErr
		})
	})
	if err != nil && err != fnErr {
		return unavailable("view", err)
	}
	return err
}

// Ping reads a key to check that the database answers.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.broken(); err != nil {
		return err
	}
	if s.db.IsClosed() {
		return unavailable("ping", badger.ErrDBClosed)
	}
	return s.View(ctx, func(t store.Tx) error {
		_, err := t.Get([]byte("meta/ping"))
		if errors.Is(err, store.ErrNotFound) {
			return nil
		}
		return err
	})
}

// Close stops background work and closes the database.
func (s *Store) Close() error {
	var err error
	s.once.Do(func() {
		close(s.stop)
		s.wg.Wait()
		if e := s.broken(); e != nil {
			// Closing would flush through the memtable Badger lost.
			s.log.Error("closing the database as a crash would: it failed in this process", "err", e)
			return
		}
		if e := s.guard.check(); e != nil {
			// Closing flushes the memtable into a new table file, which a
			// full disk cannot hold (SIGBUS). Every committed write is
			// already in the synced memtable log, which the next Open
			// replays: leave the database as a crash would.
			s.log.Error("closing the database without flushing its memtable: the disk is almost full", "err", e)
			return
		}
		// Badger retries a failed memtable flush forever (a directory
		// removed or made unwritable under it), which would hang the
		// shutdown: past closeTimeout, leave the database as a crash would.
		done := make(chan error, 1)
		go func() { done <- s.db.Close() }()
		select {
		case e := <-done:
			if e != nil {
				err = fmt.Errorf("badgerstore: close: %w", e)
			}
		case <-time.After(closeTimeout):
			s.log.Error("the database did not close in time: leaving it as a crash would (committed writes are in its synced log, which the next open replays)",
				"waited", closeTimeout)
			err = fmt.Errorf("badgerstore: close did not finish within %v (can the data directory still be written?)", closeTimeout)
		}
	})
	return err
}

// closeTimeout bounds Close (a variable for tests). A healthy close flushes
// one memtable: well under a second.
var closeTimeout = 20 * time.Second

// fail records that the database cannot be used any more in this process
// (Badger lost its memtable, or panicked): from then on every call fails
// with store.ErrUnavailable without touching Badger, and OnFatal is called
// once. Committed writes are in Badger's synced log; a restart reopens the
// database once the cause (an unwritable directory, no file descriptors
// left) is fixed.
func (s *Store) fail(cause error) error {
	e := fmt.Errorf("badgerstore: the database failed and must be reopened (restart the process once the cause is fixed): %w: %w", store.ErrUnavailable, cause)
	if s.failed.CompareAndSwap(nil, &e) {
		s.log.Error("storage failed; every call now answers 503 until the process restarts", "err", cause)
		if s.onFatal != nil {
			go s.onFatal(e)
		}
	}
	return *s.failed.Load()
}

// guarded runs a transaction. Once the store has failed inside it (a read
// of the lost memtable, recovered by tx.call), Badger panics again when it
// discards the transaction (the iterator it was opening counts as open):
// that panic is the same failure. Any other panic is the caller's.
func (s *Store) guarded(f func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			if e := s.broken(); e != nil {
				err = e
				return
			}
			panic(r)
		}
	}()
	return f()
}

// broken is the recorded failure (fail), or nil.
func (s *Store) broken() error {
	if p := s.failed.Load(); p != nil {
		return *p
	}
	return nil
}

func unavailable(op string, err error) error {
	if errors.Is(err, store.ErrUnavailable) {
		return err
	}
	return fmt.Errorf("badgerstore: %s: %w: %w", op, store.ErrUnavailable, err)
}

type tx struct {
	s     *Store
	txn   *badger.Txn
	write bool
}

// call runs f, a read of Badger's memtables, turning a panic in it into the
// store's failure: a Badger that lost its memtable dereferences nil there.
func (t *tx) call(op string, f func()) (err error) {
	defer func() {
		if r := recover(); r != nil {
			t.s.log.Error("badger panicked", "op", op, "panic", r, "stack", string(debug.Stack()))
			err = t.s.fail(fmt.Errorf("%s: badger: %v", op, r))
		}
	}()
	f()
	return nil
}

func (t *tx) Get(key []byte) ([]byte, error) {
	var it *badger.Item
	var err error
	if perr := t.call("get", func() { it, err = t.txn.Get(key) }); perr != nil {
		return nil, perr
	}
	if errors.Is(err, badger.ErrKeyNotFound) {
		return nil, store.ErrNotFound
	}
	if err != nil {
		return nil, unavailable("get", err)
	}
	v, err := it.ValueCopy(nil)
	if err != nil {
		return nil, unavailable("get", err)
	}
	return v, nil
}

func (t *tx) Put(key, val []byte) error {
	if !t.write {
		return store.ErrReadOnly
	}
	if err := t.txn.Set(key, val); err != nil {
		return unavailable("put", err)
	}
	return nil
}

func (t *tx) PutTTL(key, val []byte, ttl time.Duration) error {
	if !t.write {
		return store.ErrReadOnly
	}
	e := badger.NewEntry(key, val)
	if ttl > 0 {
		e = e.WithTTL(ttl)
	}
	if err := t.txn.SetEntry(e); err != nil {
		return unavailable("put", err)
	}
	return nil
}

func (t *tx) Delete(key []byte) error {
	if !t.write {
		return store.ErrReadOnly
	}
	if err := t.txn.Delete(key); err != nil {
		return unavailable("delete", err)
	}
	return nil
}

func (t *tx) Scan(prefix, after []byte, fn func(k, v []byte) (bool, error)) error {
	opts := badger.DefaultIteratorOptions
	opts.Prefix = prefix
	opts.PrefetchValues = false
	var it *badger.Iterator
	if err := t.call("scan", func() { it = t.txn.NewIterator(opts) }); err != nil {
		return err
	}
	defer it.Close()
	start := prefix
	if after != nil && string(after) >= string(prefix) {
		start = after
	}
	for it.Seek(start); it.ValidForPrefix(prefix); it.Next() {
		item := it.Item()
		k := item.Key()
		if after != nil && string(k) <= string(after) {
			continue
		}
		var more bool
		var ferr error
		if err := item.Value(func(v []byte) error {
			more, ferr = fn(k, v)
			return nil
		}); err != nil {
			return unavailable("scan", err)
		}
		if ferr != nil || !more {
			return ferr
		}
	}
	return nil
}

type logAdapter struct {
	l *slog.Logger
	s atomic.Pointer[Store]
}

// Errorf logs Badger's errors. One of them says Badger lost its memtable
// (writeRequests: cannot create new mem table): it is logged by the
// goroutine that writes commits, before it hands over to the next batch,
// whose first step asserts the memtable exists and exits the process
// (log.Fatal) when it does not. So that goroutine records the failure and
// stops there: the commits queued behind it wait (their callers are cut by
// the shutdown OnFatal starts) instead of killing the process undrained.
func (a *logAdapter) Errorf(f string, args ...any) {
	msg := fmt.Sprintf(f, args...)
	a.l.Error(msg, "component", "badger")
	if strings.HasPrefix(msg, "writeRequests: ") && strings.Contains(msg, "cannot create new mem table") {
		if s := a.s.Load(); s != nil {
			s.fail(errors.New(msg))
			select {} // the writer goroutine parks for good (see above)
		}
	}
}
func (a *logAdapter) Warningf(f string, args ...any) {
	a.l.Warn(fmt.Sprintf(f, args...), "component", "badger")
}
func (a *logAdapter) Infof(string, ...any)  {}
func (a *logAdapter) Debugf(string, ...any) {}
