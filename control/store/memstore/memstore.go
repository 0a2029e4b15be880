// Package memstore is an in-memory [store.KV] with the same semantics as the
// Badger one (atomic updates, ordered scans, TTL), for tests.
package memstore

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/privateconnect/pc/control/store"
)

var _ store.KV = (*Store)(nil)

type entry struct {
	val     []byte
	expires time.Time // zero: never
}

// Store is an in-memory KV. The zero value is not usable; call New.
type Store struct {
	mu     sync.RWMutex
	data   map[string]entry
	keys   []string // sorted
	closed bool
	// Now is the clock used for TTLs (tests may replace it before use).
	Now func() time.Time
	// FailWrites makes every Update fail with store.ErrUnavailable (tests).
	FailWrites bool
}

// New returns an empty store.
func New() *Store {
	return &Store{data: make(map[string]entry), Now: time.Now}
}

func (s *Store) check(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if s.closed {
		return fmt.Errorf("memstore: closed: %w", store.ErrUnavailable)
	}
	return nil
}

// Update runs fn under the write lock and undoes its writes when it fails.
func (s *Store) Update(ctx context.Context, fn func(store.Tx) error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.check(ctx); err != nil {
		return err
	}
	if s.FailWrites {
		return fmt.Errorf("memstore: writes disabled: %w", store.ErrUnavailable)
	}
	tx := &tx{s: s, write: true, now: s.Now()}
	if err := fn(tx); err != nil {
		tx.rollback()
		return err
	}
	return nil
}

// View runs fn under the read lock.
func (s *Store) View(ctx context.Context, fn func(store.Tx) error) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if err := s.check(ctx); err != nil {
		return err
	}
	return fn(&tx{s: s, now: s.Now()})
}

// Ping fails once the store is closed.
func (s *Store) Ping(ctx context.Context) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.check(ctx)
}

// Close makes every later call fail with store.ErrUnavailable.
func (s *Store) Close() error {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	return nil
}

type undo struct {
	key     string
	old     entry
	existed bool
}

type tx struct {
	s     *Store
	write bool
	now   time.Time
	log   []undo
}

func (t *tx) live(k string) (entry, bool) {
	e, ok := t.s.data[k]
	if !ok || (!e.expires.IsZero() && !t.now.Before(e.expires)) {
		return entry{}, false
	}
	return e, true
}

func (t *tx) Get(key []byte) ([]byte, error) {
	e, ok := t.live(string(key))
	if !ok {
		return nil, store.ErrNotFound
	}
	return bytes.Clone(e.val), nil
}

func (t *tx) set(k string, e entry, present bool) {
	old, existed := t.s.data[k]
	t.log = append(t.log, undo{key: k, old: old, existed: existed})
	t.apply(k, e, present, existed)
}

func (t *tx) apply(k string, e entry, present, existed bool) {
	switch {
	case present && !existed:
		i, _ := slices.BinarySearch(t.s.keys, k)
		t.s.keys = slices.Insert(t.s.keys, i, k)
		t.s.data[k] = e
	case present:
		t.s.data[k] = e
	case existed:
		i, found := slices.BinarySearch(t.s.keys, k)
		if found {
			t.s.keys = slices.Delete(t.s.keys, i, i+1)
		}
		delete(t.s.data, k)
	}
}

func (t *tx) rollback() {
	for i := len(t.log) - 1; i >= 0; i-- {
		u := t.log[i]
		_, now := t.s.data[u.key]
		t.apply(u.key, u.old, u.existed, now)
	}
	t.log = nil
}

func (t *tx) Put(key, val []byte) error { return t.PutTTL(key, val, 0) }

func (t *tx) PutTTL(key, val []byte, ttl time.Duration) error {
	if !t.write {
		return store.ErrReadOnly
	}
	if len(key) == 0 {
		return fmt.Errorf("memstore: empty key")
	}
	e := entry{val: bytes.Clone(val)}
	if e.val == nil {
		e.val = []byte{}
	}
	if ttl > 0 {
		e.expires = t.now.Add(ttl)
	}
	t.set(string(key), e, true)
	return nil
}

func (t *tx) Delete(key []byte) error {
	if !t.write {
		return store.ErrReadOnly
	}
	if _, ok := t.s.data[string(key)]; ok {
		t.set(string(key), entry{}, false)
	}
	return nil
}

func (t *tx) Scan(prefix, after []byte, fn func(k, v []byte) (bool, error)) error {
	start := string(prefix)
	keys := t.s.keys
	i := sort.SearchStrings(keys, start)
	if after != nil && string(after) >= start {
		i = sort.Search(len(keys), func(j int) bool { return keys[j] > string(after) })
	}
	// Collect the matching keys first so that fn may write.
	var match []string
	for ; i < len(keys) && len(keys[i]) >= len(start) && keys[i][:len(start)] == start; i++ {
		match = append(match, keys[i])
	}
	for _, k := range match {
		e, ok := t.live(k)
		if !ok {
			continue
		}
		more, err := fn([]byte(k), bytes.Clone(e.val))
		if err != nil || !more {
			return err
		}
	}
	return nil
}
