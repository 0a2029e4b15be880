// Package storetest is the conformance suite every [store.KV] implementation
// passes: the KV semantics (atomic updates, ordered scans with cursors, TTL,
// read-only views) and the typed repository of package store on top of it
// (uniqueness, workspace isolation, pagination, cascades).
package storetest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/privateconnect/pc/control/store"
)

// Run runs the suite; open returns a new, empty store for each subtest (the
// suite closes it).
func Run(t *testing.T, open func(t *testing.T) store.KV) {
	tests := []struct {
		name string
		fn   func(*testing.T, store.KV)
	}{
		{"GetPutDelete", testGetPutDelete},
		{"FailedUpdateIsAtomic", testAtomic},
		{"ViewIsReadOnly", testReadOnly},
		{"ScanOrderPrefixAfter", testScan},
		{"TTL", testTTL},
		{"ConcurrentUpdates", testConcurrent},
		{"Workspaces", testWorkspaces},
		{"APIKeys", testAPIKeys},
		{"AgentsIsolation", testAgents},
		{"ServicesUniquenessAndPorts", testServices},
		{"SharesAndCascade", testShares},
		{"Pagination", testPagination},
		{"Edges", testEdges},
		{"AuditMessagesCommands", testActivity},
		{"Plugins", testPlugins},
		{"ReportPartsClaimedOnce", testReportParts},
		{"ClosedStoreIsUnavailable", testClosed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			kv := open(t)
			t.Cleanup(func() { _ = kv.Close() })
			tc.fn(t, kv)
		})
	}
}

var ctx = context.Background()

func update(t *testing.T, kv store.KV, fn func(store.Tx) error) {
	t.Helper()
	require.NoError(t, kv.Update(ctx, fn))
}

func get(t *testing.T, kv store.KV, k string) ([]byte, error) {
	t.Helper()
	var v []byte
	err := kv.View(ctx, func(tx store.Tx) error {
		var err error
		v, err = tx.Get([]byte(k))
		return err
	})
	return v, err
}

func testGetPutDelete(t *testing.T, kv store.KV) {
	_, err := get(t, kv, "a")
	require.ErrorIs(t, err, store.ErrNotFound)
	update(t, kv, func(tx store.Tx) error { return tx.Put([]byte("a"), []byte("1")) })
	v, err := get(t, kv, "a")
	require.NoError(t, err)
	assert.Equal(t, "1", string(v))
	update(t, kv, func(tx store.Tx) error {
		// A transaction reads its own writes.
		if err := tx.Put([]byte("a"), []byte("2")); err != nil {
			return err
		}
		v, err := tx.Get([]byte("a"))
		if err != nil || string(v) != "2" {
			return fmt.Errorf("read own write: %q %v", v, err)
		}
		return tx.Delete([]byte("missing"))
	})
	update(t, kv, func(tx store.Tx) error { return tx.Delete([]byte("a")) })
	_, err = get(t, kv, "a")
	require.ErrorIs(t, err, store.ErrNotFound)
	require.NoError(t, kv.Ping(ctx))
}

func testAtomic(t *testing.T, kv store.KV) {
	update(t, kv, func(tx store.Tx) error { return tx.Put([]byte("keep"), []byte("old")) })
	boom := errors.New("boom")
	err := kv.Update(ctx, func(tx store.Tx) error {
		_ = tx.Put([]byte("keep"), []byte("new"))
		_ = tx.Put([]byte("added"), []byte("x"))
		_ = tx.Delete([]byte("keep"))
		return boom
	})
	require.ErrorIs(t, err, boom, "fn's error passes through")
	v, err := get(t, kv, "keep")
	require.NoError(t, err)
	assert.Equal(t, "old", string(v))
	_, err = get(t, kv, "added")
	require.ErrorIs(t, err, store.ErrNotFound)

	// A failed repository call inside a larger transaction leaves nothing.
	ws := &store.Workspace{ID: "w1", Name: "one", CreatedAt: time.Now()}
	update(t, kv, func(tx store.Tx) error { return store.CreateWorkspace(tx, ws) })
	err = kv.Update(ctx, func(tx store.Tx) error {
		if err := store.CreateWorkspace(tx, &store.Workspace{ID: "w2", Name: "two"}); err != nil {
			return err
		}
		return store.CreateWorkspace(tx, &store.Workspace{ID: "w3", Name: "one"})
	})
	require.ErrorIs(t, err, store.ErrConflict)
	err = kv.View(ctx, func(tx store.Tx) error { _, err := store.GetWorkspace(tx, "w2"); return err })
	require.ErrorIs(t, err, store.ErrNotFound)
}

func testReadOnly(t *testing.T, kv store.KV) {
	err := kv.View(ctx, func(tx store.Tx) error { return tx.Put([]byte("x"), []byte("y")) })
	require.Error(t, err)
	_, err = get(t, kv, "x")
	require.ErrorIs(t, err, store.ErrNotFound)
}

func scanAll(t *testing.T, kv store.KV, prefix, after string) []string {
	t.Helper()
	var out []string
	var af []byte
	if after != "" {
		af = []byte(after)
	}
	require.NoError(t, kv.View(ctx, func(tx store.Tx) error {
		return tx.Scan([]byte(prefix), af, func(k, v []byte) (bool, error) {
			out = append(out, string(k)+"="+string(v))
			return true, nil
		})
	}))
	return out
}

func testScan(t *testing.T, kv store.KV) {
	update(t, kv, func(tx store.Tx) error {
		for _, k := range []string{"p/c", "p/a", "q/a", "p/b", "o/z", "p/aa"} {
			if err := tx.Put([]byte(k), []byte(k[2:])); err != nil {
				return err
			}
		}
		return nil
	})
	assert.Equal(t, []string{"p/a=a", "p/aa=aa", "p/b=b", "p/c=c"}, scanAll(t, kv, "p/", ""))
	assert.Equal(t, []string{"p/b=b", "p/c=c"}, scanAll(t, kv, "p/", "p/aa"))
	assert.Equal(t, []string{"p/b=b", "p/c=c"}, scanAll(t, kv, "p/", "p/ab"), "after need not exist")
	assert.Empty(t, scanAll(t, kv, "p/", "p/c"))
	assert.Empty(t, scanAll(t, kv, "r/", ""))
	// Stopping early.
	n := 0
	require.NoError(t, kv.View(ctx, func(tx store.Tx) error {
		return tx.Scan([]byte("p/"), nil, func(k, v []byte) (bool, error) { n++; return n < 2, nil })
	}))
	assert.Equal(t, 2, n)
	// An error from fn is returned.
	boom := errors.New("boom")
	err := kv.View(ctx, func(tx store.Tx) error {
		return tx.Scan([]byte("p/"), nil, func(k, v []byte) (bool, error) { return true, boom })
	})
	require.ErrorIs(t, err, boom)
	// Writes inside the transaction are visible to its scans.
	update(t, kv, func(tx store.Tx) error {
		if err := tx.Put([]byte("p/ab"), []byte("ab")); err != nil {
			return err
		}
		if err := tx.Delete([]byte("p/c")); err != nil {
			return err
		}
		var got []string
		if err := tx.Scan([]byte("p/"), nil, func(k, v []byte) (bool, error) {
			got = append(got, string(k))
			return true, nil
		}); err != nil {
			return err
		}
		if fmt.Sprint(got) != "[p/a p/aa p/ab p/b]" {
			return fmt.Errorf("scan in tx: %v", got)
		}
		return nil
	})
}

func testTTL(t *testing.T, kv store.KV) {
	update(t, kv, func(tx store.Tx) error {
		if err := tx.PutTTL([]byte("t/short"), []byte("1"), time.Second); err != nil {
			return err
		}
		return tx.PutTTL([]byte("t/long"), []byte("2"), time.Hour)
	})
	_, err := get(t, kv, "t/short")
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		_, err := get(t, kv, "t/short")
		return errors.Is(err, store.ErrNotFound)
	}, 5*time.Second, 50*time.Millisecond)
	assert.Equal(t, []string{"t/long=2"}, scanAll(t, kv, "t/", ""))
}

func testConcurrent(t *testing.T, kv store.KV) {
	// Read-modify-write increments from many goroutines never lose one.
	const n = 20
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			assert.NoError(t, kv.Update(ctx, func(tx store.Tx) error {
				v, err := tx.Get([]byte("ctr"))
				if err != nil && !errors.Is(err, store.ErrNotFound) {
					return err
				}
				c := 0
				if len(v) > 0 {
					fmt.Sscan(string(v), &c)
				}
				return tx.Put([]byte("ctr"), []byte(fmt.Sprint(c+1)))
			}))
		}()
	}
	wg.Wait()
	v, err := get(t, kv, "ctr")
	require.NoError(t, err)
	assert.Equal(t, fmt.Sprint(n), string(v))
}

func testClosed(t *testing.T, kv store.KV) {
	require.NoError(t, kv.Close())
	err := kv.Update(ctx, func(tx store.Tx) error { return tx.Put([]byte("a"), []byte("b")) })
	require.ErrorIs(t, err, store.ErrUnavailable)
	require.ErrorIs(t, kv.Ping(ctx), store.ErrUnavailable)
}
