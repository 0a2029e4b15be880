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
	"sync"
	"time"

	badger "github.com/dgraph-io/badger/v4"

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
}

// Store is a Badger-backed KV.
type Store struct {
	db   *badger.DB
	log  *slog.Logger
	stop chan struct{}
	wg   sync.WaitGroup
	once sync.Once
}

// Open opens (or creates) the database in opts.Dir.
func Open(opts Options) (*Store, error) {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	bo := badger.DefaultOptions(opts.Dir).
		WithSyncWrites(true).
		WithLogger(logAdapter{log}).
		WithNumVersionsToKeep(1).
		WithMemTableSize(16 << 20).
		WithNumMemtables(3).
		WithBlockCacheSize(32 << 20).
		WithIndexCacheSize(16 << 20).
		WithValueLogFileSize(64 << 20).
		WithNumCompactors(2)
	db, err := badger.Open(bo)
	if err != nil {
		return nil, fmt.Errorf("badgerstore: open %s: %w", opts.Dir, err)
	}
	s := &Store{db: db, log: log, stop: make(chan struct{})}
	iv := opts.GCInterval
	if iv <= 0 {
		iv = 5 * time.Minute
	}
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
			for s.db.RunValueLogGC(0.5) == nil {
			}
		}
	}
}

// maxConflictRetries bounds retries of an Update that lost an optimistic
// concurrency race with another Update.
const maxConflictRetries = 200

// Update runs fn in a read-write transaction and commits it durably.
func (s *Store) Update(ctx context.Context, fn func(store.Tx) error) error {
	for attempt := 0; ; attempt++ {
		if err := ctx.Err(); err != nil {
			return err
		}
		var fnErr error
		err := s.db.Update(func(txn *badger.Txn) error {
			fnErr = fn(&tx{txn: txn, write: true})
			return fnErr
		})
		switch {
		case err == nil:
			return nil
		case fnErr != nil && err == fnErr:
			return err
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
	var fnErr error
	err := s.db.View(func(txn *badger.Txn) error {
		fnErr = fn(&tx{txn: txn})
		return fnErr
	})
	if err != nil && err != fnErr {
		return unavailable("view", err)
	}
	return err
}

// Ping reads a key to check that the database answers.
func (s *Store) Ping(ctx context.Context) error {
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
		if e := s.db.Close(); e != nil {
			err = fmt.Errorf("badgerstore: close: %w", e)
		}
	})
	return err
}

func unavailable(op string, err error) error {
	if errors.Is(err, store.ErrUnavailable) {
		return err
	}
	return fmt.Errorf("badgerstore: %s: %w: %w", op, store.ErrUnavailable, err)
}

type tx struct {
	txn   *badger.Txn
	write bool
}

func (t *tx) Get(key []byte) ([]byte, error) {
	it, err := t.txn.Get(key)
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
	it := t.txn.NewIterator(opts)
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

type logAdapter struct{ l *slog.Logger }

func (a logAdapter) Errorf(f string, args ...any) {
	a.l.Error(fmt.Sprintf(f, args...), "component", "badger")
}
func (a logAdapter) Warningf(f string, args ...any) {
	a.l.Warn(fmt.Sprintf(f, args...), "component", "badger")
}
func (a logAdapter) Infof(string, ...any)  {}
func (a logAdapter) Debugf(string, ...any) {}
