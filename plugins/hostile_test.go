package plugins

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestValidateRejects(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct{ file, want string }{
		{"forbidden_wasi", "wasi_snapshot_preview1.path_open is not allowed"},
		{"unknown_import", "policy.open_socket is not part of ABI v1"},
		{"env_import", `module "env" is not allowed`},
		{"bad_signature", "import policy.get_path has signature"},
		{"import_memory", "imports memory policy.memory"},
		{"no_handle", "missing export handle_request"},
		{"wasi_command", "exports _start: a WASI command, not a reactor; build Go guests with -buildmode=c-shared"},
		{"bad_version", "policy_abi_version returned 2"},
		{"big_memory", "over limit"},
	} {
		t.Run(tc.file, func(t *testing.T) {
			_, err := Validate(ctx, wat(t, tc.file))
			require.Error(t, err)
			assert.ErrorIs(t, err, ErrInvalidModule)
			assert.Contains(t, err.Error(), tc.want)
		})
	}
	t.Run("not wasm", func(t *testing.T) {
		_, err := Validate(ctx, []byte("hello"))
		assert.ErrorIs(t, err, ErrInvalidModule)
	})
	t.Run("valid", func(t *testing.T) {
		info, err := Validate(ctx, wat(t, "echo"))
		require.NoError(t, err)
		assert.True(t, info.HasValidateConfig)
		assert.Len(t, info.SHA256, 64)
		assert.Contains(t, info.Exports, "handle_request")
		assert.Contains(t, info.Exports, "memory")
	})
	t.Run("load rejects too", func(t *testing.T) {
		h, _ := newTestHost(t, Config{})
		err := h.Load(ctx, "x", wat(t, "forbidden_wasi"), ModuleOptions{})
		assert.ErrorIs(t, err, ErrInvalidModule)
		_, ok := h.Loaded("x")
		assert.False(t, ok)
	})
}

func TestInitTimeout(t *testing.T) {
	h, _ := newTestHost(t, Config{InitTimeout: 50 * time.Millisecond})
	start := time.Now()
	err := h.Load(context.Background(), "x", wat(t, "init_loop"), ModuleOptions{})
	require.ErrorIs(t, err, ErrInvalidModule)
	assert.Contains(t, err.Error(), "_initialize did not return within 50ms")
	assert.Less(t, time.Since(start), 5*time.Second)
}

// A start section is guest code run by instantiation itself: it gets the
// same budget. It had none: one upload held a core of the control plane for
// ever, and every instance an edge made of a slow one cost its whole run.
func TestStartSectionTimeout(t *testing.T) {
	h, _ := newTestHost(t, Config{InitTimeout: 50 * time.Millisecond})
	start := time.Now()
	err := h.Load(context.Background(), "x", wat(t, "start_loop"), ModuleOptions{})
	require.ErrorIs(t, err, ErrInvalidModule)
	assert.Contains(t, err.Error(), "start function did not return within 50ms")
	assert.Less(t, time.Since(start), 5*time.Second)
	_, ok := h.Loaded("x")
	assert.False(t, ok)
}

func TestInfiniteLoopStoppedWithinBudget(t *testing.T) {
	h, _ := loadEcho(t, Config{PoolSize: 2, DefaultTimeout: 5 * time.Millisecond})
	ctx := context.Background()
	before := runtime.NumGoroutine()
	for range 3 {
		start := time.Now()
		d := h.Evaluate(ctx, []Attachment{op("X")}, testRequest())
		elapsed := time.Since(start)
		require.Equal(t, Error, d.Action)
		assert.Equal(t, 500, d.Status)
		assert.ErrorIs(t, d.Err, ErrTimeout)
		assert.Less(t, elapsed, 100*time.Millisecond, "stopped near the 5 ms budget")
		// Other calls keep working.
		d = h.Evaluate(ctx, []Attachment{op("m")}, testRequest())
		require.Equal(t, Respond, d.Action, "%v", d.Err)
	}
	waitFor(t, func() bool { return h.Stats().Instances == 2 }, "pool refilled")
	waitFor(t, func() bool { return runtime.NumGoroutine() <= before+2 }, "no goroutine leak")
}

func TestPerPluginTimeout(t *testing.T) {
	h, _ := newTestHost(t, Config{})
	require.NoError(t, h.Load(context.Background(), "echo", wat(t, "echo"), ModuleOptions{Timeout: 40 * time.Millisecond}))
	start := time.Now()
	d := h.Evaluate(context.Background(), []Attachment{op("X")}, testRequest())
	assert.ErrorIs(t, d.Err, ErrTimeout)
	assert.GreaterOrEqual(t, time.Since(start), 40*time.Millisecond)
	require.Error(t, h.Load(context.Background(), "x", wat(t, "echo"), ModuleOptions{Timeout: time.Second}))
}

func TestMemoryCap(t *testing.T) {
	h, _ := newTestHost(t, Config{})
	require.NoError(t, h.Load(context.Background(), "echo", wat(t, "echo"), ModuleOptions{MemoryLimitBytes: 1 << 20, Timeout: 50 * time.Millisecond}))
	start := time.Now()
	d := h.Evaluate(context.Background(), []Attachment{op("W")}, testRequest())
	require.Equal(t, Error, d.Action)
	assert.ErrorIs(t, d.Err, ErrMemoryLimit, "%v", d.Err)
	t.Logf("grown to the cap and trapped in %v", time.Since(start))
	d = h.Evaluate(context.Background(), []Attachment{op("m")}, testRequest())
	require.Equal(t, Respond, d.Action)
}

// A guest that recurses without end is stopped by its stack guard at an 8 MiB estimate, at
// once and without growing wazero's stack in the edge's memory (TestUnboundedRecursionStops
// in stackguard tests the shapes of recursion).
func TestUnboundedRecursion(t *testing.T) {
	h, _ := newTestHost(t, Config{PoolSize: 2})
	require.NoError(t, h.Load(context.Background(), "recurse", wat(t, "recurse"), ModuleOptions{}))
	for range 3 {
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		start := time.Now()
		d := h.Evaluate(context.Background(), []Attachment{{PluginID: "recurse"}}, testRequest())
		elapsed := time.Since(start)
		runtime.ReadMemStats(&after)
		require.Equal(t, Error, d.Action)
		assert.Equal(t, 500, d.Status)
		assert.ErrorIs(t, d.Err, ErrTrap)
		assert.ErrorContains(t, d.Err, "call stack deeper than its 8 MiB budget")
		grown := after.TotalAlloc - before.TotalAlloc
		t.Logf("stopped in %v, %.1f MiB allocated", elapsed, float64(grown)/(1<<20))
		assert.Less(t, grown, uint64(32<<20), "Go memory allocated during the call")
	}
	waitFor(t, func() bool { return h.Stats().Instances == 2 }, "pool refilled")
}

func TestFailOpen(t *testing.T) {
	h, _ := newTestHost(t, Config{})
	ctx := context.Background()
	require.NoError(t, h.Load(ctx, "soft", wat(t, "echo"), ModuleOptions{FailOpen: true}))
	require.NoError(t, h.Load(ctx, "echo", wat(t, "echo"), ModuleOptions{}))
	soft := Attachment{PluginID: "soft", Config: []byte(`"T"`)}
	d := h.Evaluate(ctx, []Attachment{soft, op("A")}, testRequest())
	require.Equal(t, Allow, d.Action, "%v", d.Err)
	assert.Equal(t, [][2]string{{"X-A", "1"}}, d.SetRequestHeaders)
	// Edits of a failed failOpen call are dropped.
	softEdits := Attachment{PluginID: "soft", Config: []byte(`"B"`)}
	d = h.Evaluate(ctx, []Attachment{softEdits}, testRequest())
	assert.Equal(t, Allow, d.Action)
	assert.Empty(t, d.SetRequestHeaders)
}

func TestNotLoaded(t *testing.T) {
	h, _ := newTestHost(t, Config{})
	d := h.Evaluate(context.Background(), []Attachment{{PluginID: "ghost"}}, testRequest())
	assert.Equal(t, Error, d.Action)
	assert.Equal(t, 503, d.Status)
	assert.ErrorIs(t, d.Err, ErrNotLoaded)
	// An empty chain allows.
	d = h.Evaluate(context.Background(), nil, testRequest())
	assert.Equal(t, Allow, d.Action)
}

func TestBreaker(t *testing.T) {
	var notified atomic.Int32
	h, _ := newTestHost(t, Config{BreakerThreshold: 3, BreakerBackoff: 100 * time.Millisecond,
		OnFailure: func(id string, err error) { notified.Add(1) }})
	ctx := context.Background()
	require.NoError(t, h.Load(ctx, "echo", wat(t, "echo"), ModuleOptions{}))
	for range 3 {
		d := h.Evaluate(ctx, []Attachment{op("T")}, testRequest())
		require.ErrorIs(t, d.Err, ErrTrap)
	}
	d := h.Evaluate(ctx, []Attachment{op("m")}, testRequest())
	require.Equal(t, Error, d.Action)
	assert.Equal(t, 503, d.Status)
	assert.ErrorIs(t, d.Err, ErrBreakerOpen)
	assert.True(t, h.Stats().Plugins[0].BreakerOpen)

	time.Sleep(120 * time.Millisecond)
	// Half-open: the trial fails, the breaker opens again (with a doubled backoff).
	d = h.Evaluate(ctx, []Attachment{op("T")}, testRequest())
	assert.ErrorIs(t, d.Err, ErrTrap)
	d = h.Evaluate(ctx, []Attachment{op("m")}, testRequest())
	assert.ErrorIs(t, d.Err, ErrBreakerOpen)
	time.Sleep(250 * time.Millisecond)
	waitFor(t, func() bool { return h.Stats().Plugins[0].Instances == h.cfg.PoolSize }, "pool refilled")
	d = h.Evaluate(ctx, []Attachment{op("m")}, testRequest())
	require.Equal(t, Respond, d.Action, "trial succeeded, breaker closed: %v", d.Err)
	d = h.Evaluate(ctx, []Attachment{op("m")}, testRequest())
	require.Equal(t, Respond, d.Action)
	assert.Equal(t, int32(1), notified.Load(), "OnFailure is rate-limited")

	// A reload resets the breaker.
	for range 3 {
		h.Evaluate(ctx, []Attachment{op("T")}, testRequest())
	}
	require.ErrorIs(t, h.Evaluate(ctx, []Attachment{op("m")}, testRequest()).Err, ErrBreakerOpen)
	require.NoError(t, h.Load(ctx, "echo", wat(t, "echo"), ModuleOptions{Timeout: 6 * time.Millisecond}))
	require.Equal(t, Respond, h.Evaluate(ctx, []Attachment{op("m")}, testRequest()).Action)
}

func TestHotReloadNoLeaks(t *testing.T) {
	h, _ := newTestHost(t, Config{PoolSize: 2})
	ctx := context.Background()
	echo, minimal := wat(t, "echo"), wat(t, "minimal")
	require.NoError(t, h.Load(ctx, "p", echo, ModuleOptions{}))
	sha1, _ := h.Loaded("p")
	require.NoError(t, h.Load(ctx, "p", echo, ModuleOptions{}), "same sha: no-op")
	assert.Equal(t, int64(1), h.Stats().Runtimes)

	goroutines := runtime.NumGoroutine()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var bad atomic.Int32
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				d := h.Evaluate(ctx, []Attachment{{PluginID: "p", Config: []byte(`"A"`)}}, testRequest())
				if d.Action != Allow {
					bad.Add(1)
					t.Log(d.Err)
				}
			}
		}()
	}
	for i := range 10 {
		wasm := echo
		if i%2 == 1 {
			wasm = minimal
		}
		require.NoError(t, h.Load(ctx, "p", wasm, ModuleOptions{}))
	}
	close(stop)
	wg.Wait()
	assert.Zero(t, bad.Load(), "no request failed during reloads")
	sha2, _ := h.Loaded("p")
	assert.NotEqual(t, sha1, sha2)
	waitFor(t, func() bool { s := h.Stats(); return s.Runtimes == 1 && s.Instances == 2 }, "old pools closed")
	// Goroutines settle (wazero compiles with short-lived workers).
	waitFor(t, func() bool { return runtime.NumGoroutine() <= goroutines+2 }, "goroutines back to baseline")

	h.Unload("p")
	waitFor(t, func() bool { s := h.Stats(); return s.Runtimes == 0 && s.Instances == 0 }, "unloaded")
	d := h.Evaluate(ctx, []Attachment{{PluginID: "p"}}, testRequest())
	assert.ErrorIs(t, d.Err, ErrNotLoaded)
}

func TestFailedReloadKeepsOld(t *testing.T) {
	h, _ := newTestHost(t, Config{})
	ctx := context.Background()
	require.NoError(t, h.Load(ctx, "p", wat(t, "echo"), ModuleOptions{}))
	sha, _ := h.Loaded("p")
	require.Error(t, h.Load(ctx, "p", wat(t, "forbidden_wasi"), ModuleOptions{}))
	now, _ := h.Loaded("p")
	assert.Equal(t, sha, now)
	assert.Equal(t, Respond, h.Evaluate(ctx, []Attachment{{PluginID: "p", Config: []byte(`"m"`)}}, testRequest()).Action)
	assert.Equal(t, int64(1), h.Stats().Runtimes)
}

func TestPoolExhaustion(t *testing.T) {
	h, _ := newTestHost(t, Config{PoolSize: 1, AcquireTimeout: 2 * time.Millisecond})
	ctx := context.Background()
	require.NoError(t, h.Load(ctx, "echo", wat(t, "echo"), ModuleOptions{Timeout: 50 * time.Millisecond}))
	done := make(chan Decision)
	go func() { done <- h.Evaluate(ctx, []Attachment{op("X")}, testRequest()) }()
	waitFor(t, func() bool { return h.Stats().Plugins[0].Idle == 0 }, "instance busy")
	d := h.Evaluate(ctx, []Attachment{op("m")}, testRequest())
	assert.Equal(t, 503, d.Status)
	assert.ErrorIs(t, d.Err, ErrNoInstance)
	assert.ErrorIs(t, (<-done).Err, ErrTimeout)
}

func TestConcurrentEvaluate(t *testing.T) {
	h, _ := loadEcho(t, Config{PoolSize: 2})
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 200 {
				var d Decision
				if (g+i)%50 == 0 {
					d = h.Evaluate(context.Background(), []Attachment{op("T")}, testRequest())
					assert.Equal(t, Error, d.Action)
					continue
				}
				d = h.Evaluate(context.Background(), []Attachment{op("A"), op("p")}, testRequest())
				if d.Action == Error {
					// 503s are acceptable while trapped instances are replaced.
					assert.Equal(t, 503, d.Status, "%v", d.Err)
					continue
				}
				assert.Equal(t, "/api/items", string(d.Body))
			}
		}()
	}
	wg.Wait()
}

func TestCloseWhileBusy(t *testing.T) {
	h, err := NewHost(context.Background(), Config{})
	require.NoError(t, err)
	require.NoError(t, h.Load(context.Background(), "echo", wat(t, "echo"), ModuleOptions{Timeout: 20 * time.Millisecond}))
	done := make(chan Decision)
	go func() { done <- h.Evaluate(context.Background(), []Attachment{op("X")}, testRequest()) }()
	time.Sleep(2 * time.Millisecond)
	require.NoError(t, h.Close(context.Background()))
	<-done
	assert.Zero(t, h.Stats().Runtimes)
	assert.Zero(t, h.Stats().Instances)
	d := h.Evaluate(context.Background(), []Attachment{op("m")}, testRequest())
	assert.ErrorIs(t, d.Err, ErrClosed)
	assert.ErrorIs(t, h.Load(context.Background(), "x", wat(t, "minimal"), ModuleOptions{}), ErrClosed)
}

func waitFor(t *testing.T, cond func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting: %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func TestTrustedModule(t *testing.T) {
	h, _ := newTestHost(t, Config{})
	require.NoError(t, h.Load(context.Background(), "echo", wat(t, "echo"), ModuleOptions{Trusted: true}))
	d := h.Evaluate(context.Background(), []Attachment{op("m")}, testRequest())
	require.Equal(t, Respond, d.Action, "%v", d.Err)
	assert.Equal(t, "POST", string(d.Body))
	d = h.Evaluate(context.Background(), []Attachment{op("T")}, testRequest())
	assert.ErrorIs(t, d.Err, ErrTrap)
}

// Loads of different ids run at once; loads of one id stay ordered (the last
// one asked wins); a Close that lands while modules compile leaves nothing
// running.
func TestConcurrentLoadsAndCloseDuringLoad(t *testing.T) {
	h, _ := newTestHost(t, Config{})
	ctx := context.Background()
	echo, minimal := wat(t, "echo"), wat(t, "minimal")
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			assert.NoError(t, h.Load(ctx, fmt.Sprintf("p%d", i), echo, ModuleOptions{}))
		}()
	}
	wg.Wait()
	assert.Equal(t, int64(8), h.Stats().Runtimes)
	for i := range 8 {
		_, ok := h.Loaded(fmt.Sprintf("p%d", i))
		assert.True(t, ok)
	}
	// One id, loads one after another from several goroutines: each waits
	// for the previous one, so exactly one version stays.
	for i := range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			wasm := echo
			if i%2 == 1 {
				wasm = minimal
			}
			assert.NoError(t, h.Load(ctx, "same", wasm, ModuleOptions{}))
		}()
	}
	wg.Wait()
	waitFor(t, func() bool { return h.Stats().Runtimes == 9 }, "one runtime per id once the replaced ones drained")

	// A Go guest takes about a second to compile without a cache: Close
	// lands while the loads are compiling, and each must find out when it
	// swaps and drain what it made.
	guest := goGuest(t)
	h2, err := NewHost(ctx, Config{CacheDir: t.TempDir()})
	require.NoError(t, err)
	errs := make(chan error, 2)
	for i := range 2 {
		go func() { errs <- h2.Load(ctx, fmt.Sprintf("c%d", i), guest, ModuleOptions{}) }()
	}
	time.Sleep(100 * time.Millisecond)
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	require.NoError(t, h2.Close(cctx))
	for range 2 {
		assert.ErrorIs(t, <-errs, ErrClosed)
	}
	waitFor(t, func() bool { return h2.Stats().Runtimes == 0 && h2.Stats().Instances == 0 }, "no runtime left after Close")
}
