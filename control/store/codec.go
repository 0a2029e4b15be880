package store

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// key joins parts with '/'.
func key(parts ...string) []byte {
	n := len(parts) - 1
	for _, p := range parts {
		n += len(p)
	}
	b := make([]byte, 0, n)
	for i, p := range parts {
		if i > 0 {
			b = append(b, '/')
		}
		b = append(b, p...)
	}
	return b
}

// prefix is key(parts...) + "/".
func prefix(parts ...string) []byte { return append(key(parts...), '/') }

func getJSON(tx Tx, k []byte, v any) error {
	b, err := tx.Get(k)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("decode %s: %w", k, err)
	}
	return nil
}

func putJSON(tx Tx, k []byte, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode %s: %w", k, err)
	}
	return tx.Put(k, b)
}

func putJSONTTL(tx Tx, k []byte, v any, ttl time.Duration) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode %s: %w", k, err)
	}
	return tx.PutTTL(k, b, ttl)
}

// pointer encodes a global index value "<ws>/<id>".
func pointer(ws, id string) []byte { return []byte(ws + "/" + id) }

func splitPointer(b []byte) (ws, id string, ok bool) {
	ws, id, ok = strings.Cut(string(b), "/")
	return ws, id, ok
}

// exists reports whether k is present.
func exists(tx Tx, k []byte) (bool, error) {
	_, err := tx.Get(k)
	switch {
	case err == nil:
		return true, nil
	case isNotFound(err):
		return false, nil
	default:
		return false, err
	}
}

func isNotFound(err error) bool { return errors.Is(err, ErrNotFound) }

// List pages through JSON records under pfx in key order. after is the key
// suffix (cursor) to start after; limit ≤ 0 means no limit. keep filters
// records (nil keeps all). It returns the records and the cursor of the
// next page ("" when there is none).
func List[T any](tx Tx, pfx []byte, after string, limit int, keep func(*T) bool) ([]T, string, error) {
	return listUntil(tx, pfx, after, limit, func(t *T) (bool, bool) { return keep == nil || keep(t), false })
}

// listUntil is List whose filter can also end the scan (stop): records are
// ordered, so a filter may know that nothing further can match.
func listUntil[T any](tx Tx, pfx []byte, after string, limit int, filter func(*T) (keep, stop bool)) ([]T, string, error) {
	var (
		out        []T
		next, last string
		afk        []byte
	)
	if after != "" {
		afk = append(bytes.Clone(pfx), after...)
	}
	err := tx.Scan(pfx, afk, func(k, v []byte) (bool, error) {
		var t T
		if err := decode(k, v, &t); err != nil {
			return false, fmt.Errorf("decode %s: %w", k, err)
		}
		keep, stop := filter(&t)
		if stop {
			return false, nil
		}
		if !keep {
			return true, nil
		}
		if limit > 0 && len(out) == limit {
			next = last // a further record exists: the page ends at the previous one
			return false, nil
		}
		out = append(out, t)
		last = string(k[len(pfx):])
		return true, nil
	})
	if err != nil {
		return nil, "", err
	}
	return out, next, nil
}

// count counts keys under pfx.
func count(tx Tx, pfx []byte) (int, error) {
	n := 0
	err := tx.Scan(pfx, nil, func(k, v []byte) (bool, error) { n++; return true, nil })
	return n, err
}

// invTime encodes t so that newer times sort first.
func invTime(t time.Time) string {
	return fmt.Sprintf("%016x", uint64(1<<63-1-t.UnixNano()))
}

var lastOrder atomic.Int64

// orderKey is a key suffix that sorts records newest first: t's nanoseconds,
// bumped past the previous call's so that records created in the same
// instant keep their creation order, then the id.
func orderKey(t time.Time, id string) string {
	ns := t.UnixNano()
	for {
		last := lastOrder.Load()
		n := max(ns, last+1)
		if lastOrder.CompareAndSwap(last, n) {
			return fmt.Sprintf("%016x", uint64(1<<63-1-n)) + "-" + id
		}
	}
}

func portKey(p int) string { return fmt.Sprintf("%05d", p) }

func atoiOr(s string, d int) int {
	n, err := strconv.Atoi(s)
	if err != nil {
		return d
	}
	return n
}
