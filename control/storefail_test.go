package control

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/privateconnect/pc/control/store"
)

// TestStoreFailureShutsDown: when Badger loses its memtable (here its
// directory was moved away under it; in production an unwritable directory
// or no file descriptor left) no read or write can work in this process
// any more, and one crashed it with a nil dereference. The control plane
// now shuts down cleanly with that error, so that a supervisor restarts it.
func TestStoreFailureShutsDown(t *testing.T) {
	dir := t.TempDir()
	s, err := New(Config{DataDir: dir, Listen: "127.0.0.1:0", ShutdownTimeout: 2 * time.Second})
	require.NoError(t, err)
	done := make(chan error, 1)
	go func() { done <- s.Run(context.Background()) }()
	health := "http://" + s.Addr() + "/health"
	require.Eventually(t, func() bool {
		res, err := http.Get(health)
		if err == nil {
			res.Body.Close()
		}
		return err == nil && res.StatusCode == 200
	}, 5*time.Second, 20*time.Millisecond)

	require.NoError(t, os.Rename(filepath.Join(dir, "control.db"), filepath.Join(dir, "moved.db")))
	val := make([]byte, 512<<10)
	var failure error
	for i := 0; i < 64 && failure == nil; i++ {
		failure = s.kv.Update(context.Background(), func(tx store.Tx) error {
			return tx.Put(fmt.Appendf(nil, "test/big/%d", i), val)
		})
	}
	require.ErrorIs(t, failure, store.ErrUnavailable)
	select {
	case err := <-done:
		require.ErrorIs(t, err, store.ErrUnavailable)
		require.Contains(t, err.Error(), "cannot create new mem table")
	case <-time.After(10 * time.Second):
		t.Fatal("the control plane kept running on a failed store")
	}
	_, err = http.Get(health)
	require.Error(t, err, "the listener is closed")
}
