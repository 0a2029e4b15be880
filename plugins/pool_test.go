package plugins

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestPoolWarmThenGrowsOnDemand: a pool starts with PoolWarm instances;
// a caller finding them all busy makes the pool grow by one in the
// background (it takes whichever instance is free first), up to PoolSize;
// beyond it a caller waits AcquireTimeout and gets ErrNoInstance.
func TestPoolWarmThenGrowsOnDemand(t *testing.T) {
	h, _ := newTestHost(t, Config{PoolSize: 4, PoolWarm: 1, AcquireTimeout: 300 * time.Millisecond})
	require.NoError(t, h.Load(context.Background(), "p", wat(t, "minimal"), ModuleOptions{}))
	require.Equal(t, 1, h.Stats().Plugins[0].Instances, "warm instances at load")
	p := h.lookup("p").pool
	var held []*instance
	for i := 1; i <= 4; i++ {
		in, err := p.acquire() // the first is warm; each next one waits for the pool to grow
		require.NoError(t, err)
		held = append(held, in)
		require.Equal(t, i, h.Stats().Plugins[0].Instances)
	}
	start := time.Now()
	_, err := p.acquire()
	require.True(t, errors.Is(err, ErrNoInstance), "beyond PoolSize: %v", err)
	require.GreaterOrEqual(t, time.Since(start), 300*time.Millisecond)
	for _, in := range held {
		p.release(in)
	}
	// Concurrent callers never push the pool past its bound.
	var wg sync.WaitGroup
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 50 {
				d := h.Evaluate(context.Background(), []Attachment{{PluginID: "p"}}, nil)
				if d.Action != Allow && !errors.Is(d.Err, ErrNoInstance) {
					t.Errorf("decision %v: %v", d.Action, d.Err)
					return
				}
			}
		}()
	}
	wg.Wait()
	require.LessOrEqual(t, h.Stats().Plugins[0].Instances, 4)
}

// TestLoadLocksAreReleased: the per-key load locks exclude each other per key
// and leave nothing behind once every holder and waiter is gone.
func TestLoadLocksAreReleased(t *testing.T) {
	h := &Host{loading: map[string]*keyedLock{}}
	var wg sync.WaitGroup
	var inside [4]atomic.Int32
	for g := 0; g < 16; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 200; i++ {
				k := (g + i) % len(inside)
				unlock := h.lock(fmt.Sprint("id\x00", k))
				if n := inside[k].Add(1); n != 1 {
					t.Errorf("key %d held by %d callers at once", k, n)
				}
				inside[k].Add(-1)
				unlock()
			}
		}()
	}
	wg.Wait()
	h.loadMu.Lock()
	defer h.loadMu.Unlock()
	if len(h.loading) != 0 {
		t.Fatalf("%d load locks left behind", len(h.loading))
	}
}
