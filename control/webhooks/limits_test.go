package webhooks

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/privateconnect/pc/control/store"
	"github.com/privateconnect/pc/control/store/memstore"
)

// TestWorkspacesShareTheWorkers: one workspace's hung receivers hold at
// most PerWorkspace workers, so another workspace's delivery goes at once.
// With only per-webhook bounds, four hung webhooks of one tenant held every
// worker.
func TestWorkspacesShareTheWorkers(t *testing.T) {
	kv := store.WithCommitHooks(memstore.New())
	o := fastOptions()
	o.Concurrency, o.PerWorkspace, o.PerWebhook = 6, 3, 2
	o.Timeout = 5 * time.Second
	d := newDispatcher(t, kv, o)
	hung := newReceiver(t)
	hung.delay.Store(int64(5 * time.Second))
	t.Cleanup(d.Close) // before the receiver's Close, which waits for the hung requests
	for range 4 {
		addHookIn(t, kv, d, "tenant-a", hung.srv.URL, ShareCreated)
	}
	emitIn(t, kv, d, "tenant-a", ShareCreated, 10)
	require.Eventually(t, func() bool { return hung.active.Load() == 3 }, 5*time.Second, 5*time.Millisecond)

	fast := newReceiver(t)
	_, secret := addHookIn(t, kv, d, "tenant-b", fast.srv.URL, ShareCreated)
	fast.secret = secret
	emitIn(t, kv, d, "tenant-b", ShareCreated, 1)
	require.Eventually(t, func() bool { return fast.distinct() == 1 }, 2*time.Second, 5*time.Millisecond)
	require.LessOrEqual(t, hung.peak.Load(), int32(3), "tenant-a went past its share of the workers")
}

// TestDisabledWebhookHoldsItsBacklog: deliveries of a disabled webhook
// stay pending, with no attempt counted and nothing sent, and go once it
// is enabled again. They used to be failed for good.
func TestDisabledWebhookHoldsItsBacklog(t *testing.T) {
	kv := store.WithCommitHooks(memstore.New())
	d, err := New(kv, fastOptions())
	require.NoError(t, err)
	t.Cleanup(d.Close)
	r := newReceiver(t)
	hook, secret := addHook(t, kv, d, r.srv.URL, ShareCreated)
	r.secret = secret
	emit(t, kv, d, ShareCreated, 3)
	fanOutAll(t, d) // the deliveries exist while the webhook is active
	setActive := func(on bool) {
		require.NoError(t, kv.Update(context.Background(), func(tx store.Tx) error {
			w, err := store.GetWebhook(tx, "ws", hook)
			require.NoError(t, err)
			w.IsActive = on
			return store.PutWebhook(tx, w)
		}))
	}
	setActive(false)
	d.Start()
	require.Eventually(t, func() bool {
		d.mu.Lock()
		defer d.mu.Unlock()
		return !d.paused[hook].IsZero()
	}, 5*time.Second, 5*time.Millisecond)
	time.Sleep(100 * time.Millisecond) // five polls: a queue not held would be sent or failed
	require.Zero(t, r.calls.Load())
	ds := deliveries(t, kv, hook)
	require.Len(t, ds, 3)
	for _, x := range ds {
		require.Equal(t, store.DeliveryPending, x.Status)
		require.Zero(t, x.Attempts)
	}
	setActive(true)
	d.Resume(hook)
	require.Eventually(t, func() bool { return r.distinct() == 3 }, 5*time.Second, 5*time.Millisecond)
	require.Eventually(t, func() bool {
		for _, x := range deliveries(t, kv, hook) {
			if x.Status != store.DeliverySucceeded || x.Attempts != 1 {
				return false
			}
		}
		return true
	}, 5*time.Second, 5*time.Millisecond)
}

// TestRefusedURLIsNotSent: a URL saved while the server allowed insecure
// webhooks is not sent once it no longer does.
func TestRefusedURLIsNotSent(t *testing.T) {
	kv := store.WithCommitHooks(memstore.New())
	o := fastOptions()
	before, err := New(kv, o) // allows http://
	require.NoError(t, err)
	r := newReceiver(t)
	hook, secret := addHook(t, kv, before, r.srv.URL, ShareCreated)
	r.secret = secret
	before.Close()
	o.AllowInsecure = false
	d := newDispatcher(t, kv, o)
	emit(t, kv, d, ShareCreated, 1)
	require.Eventually(t, func() bool {
		ds := deliveries(t, kv, hook)
		return len(ds) == 1 && ds[0].Attempts >= 1
	}, 5*time.Second, 5*time.Millisecond)
	require.Contains(t, deliveries(t, kv, hook)[0].LastError, "the webhook's URL must use https")
	w := &store.Webhook{ID: hook, WorkspaceID: "ws", URL: r.srv.URL, IsActive: true, Secret: d.Seal(hook, secret)}
	res, err := d.Test(context.Background(), w)
	require.NoError(t, err)
	require.Contains(t, *res.Error, "must use https")
	require.Zero(t, r.calls.Load())
}

// TestWebhookTestsAreBounded: tests of one workspace in flight at once are
// bounded (a tenant cannot make the control plane flood a host), another
// workspace's still go.
func TestWebhookTestsAreBounded(t *testing.T) {
	kv := store.WithCommitHooks(memstore.New())
	d := newDispatcher(t, kv, fastOptions())
	release := make(chan struct{})
	var active atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		active.Add(1)
		<-release
		w.WriteHeader(204)
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() {
		select {
		case <-release:
		default:
			close(release)
		}
	})
	hook := func(ws string) *store.Webhook {
		w := &store.Webhook{ID: "hook-" + ws, WorkspaceID: ws, URL: srv.URL, IsActive: true}
		w.Secret = d.Seal(w.ID, "secret")
		return w
	}
	results := make(chan TestResult, TestsPerWorkspace+1)
	for range TestsPerWorkspace {
		go func() {
			res, err := d.Test(context.Background(), hook("a"))
			require.NoError(t, err)
			results <- res
		}()
	}
	require.Eventually(t, func() bool { return active.Load() == TestsPerWorkspace }, 5*time.Second, 5*time.Millisecond)
	_, err := d.Test(context.Background(), hook("a"))
	require.ErrorIs(t, err, ErrTestsBusy)
	go func() {
		res, err := d.Test(context.Background(), hook("b"))
		require.NoError(t, err)
		results <- res
	}()
	require.Eventually(t, func() bool { return active.Load() == TestsPerWorkspace+1 }, 5*time.Second, 5*time.Millisecond)
	close(release)
	for range TestsPerWorkspace + 1 {
		require.True(t, (<-results).Delivered)
	}
	res, err := d.Test(context.Background(), hook("a")) // the slots were given back
	require.NoError(t, err)
	require.True(t, res.Delivered)
}

// setActiveIn sets a webhook's isActive as PATCH does (UpdatedAt too).
func setActiveIn(t *testing.T, kv store.KV, ws, hook string, on bool) {
	t.Helper()
	require.NoError(t, kv.Update(context.Background(), func(tx store.Tx) error {
		w, err := store.GetWebhook(tx, ws, hook)
		require.NoError(t, err)
		w.IsActive, w.UpdatedAt = on, time.Now()
		return store.PutWebhook(tx, w)
	}))
}

// TestDisabledBeforeFanOutStillGetsTheEvent: a webhook active when an
// event is raised and disabled before the worker fans it out gets its
// delivery, held until it is enabled again (the review of the fan-out found
// it got none); one disabled before the event gets none.
func TestDisabledBeforeFanOutStillGetsTheEvent(t *testing.T) {
	kv := store.WithCommitHooks(memstore.New())
	d, err := New(kv, fastOptions())
	require.NoError(t, err)
	t.Cleanup(d.Close)
	r := newReceiver(t)
	hook, secret := addHook(t, kv, d, r.srv.URL, ShareCreated)
	before, _ := addHook(t, kv, d, r.srv.URL, ShareCreated)
	r.secret = secret
	setActiveIn(t, kv, "ws", before, false)
	time.Sleep(time.Millisecond)
	emit(t, kv, d, ShareCreated, 1)
	setActiveIn(t, kv, "ws", hook, false) // after the event, before its fan-out
	fanOutAll(t, d)
	require.Len(t, deliveries(t, kv, hook), 1)
	require.Empty(t, deliveries(t, kv, before), "disabled before the event")

	d.Start()
	time.Sleep(100 * time.Millisecond)
	require.Zero(t, r.calls.Load(), "held while disabled")
	setActiveIn(t, kv, "ws", hook, true)
	d.Resume(hook)
	require.Eventually(t, func() bool { return r.distinct() == 1 }, 5*time.Second, 5*time.Millisecond)
}

// TestHoldLooksAgainAfterPausing: a webhook enabled while an attempt held
// it (its Resume coming before the pause) is not left paused for a minute.
func TestHoldLooksAgainAfterPausing(t *testing.T) {
	kv := store.WithCommitHooks(memstore.New())
	d, err := New(kv, fastOptions())
	require.NoError(t, err)
	t.Cleanup(d.Close)
	hook, _ := addHook(t, kv, d, "https://receiver.example/", ShareCreated) // active
	d.hold(store.QueueItem{WorkspaceID: "ws", WebhookID: hook})
	d.mu.Lock()
	defer d.mu.Unlock()
	require.NotContains(t, d.paused, hook)
}

// TestAnEventThatCannotFanOutIsDropped: an event record that cannot be
// fanned out is dropped after a few tries, and the events behind it go;
// it held every later event of every workspace.
func TestAnEventThatCannotFanOutIsDropped(t *testing.T) {
	kv := store.WithCommitHooks(memstore.New())
	o := fastOptions()
	o.PollInterval = 5 * time.Millisecond
	d, err := New(kv, o)
	require.NoError(t, err)
	t.Cleanup(d.Close)
	hook, _ := addHook(t, kv, d, "https://receiver.example/", ShareCreated)
	require.NoError(t, kv.Update(context.Background(), func(tx store.Tx) error {
		return tx.Put([]byte("whe/0000000000000001/broken"), []byte("{not json"))
	}))
	emit(t, kv, d, ShareCreated, 1)
	for i := 0; i < maxFanOutFailures; i++ {
		require.False(t, d.fanOut(), "try %d", i)
	}
	fanOutAll(t, d)
	require.Len(t, deliveries(t, kv, hook), 1, "the event behind the broken one")
	require.NoError(t, kv.View(context.Background(), func(tx store.Tx) error {
		n, err := store.WebhookEventsPending(tx)
		require.Zero(t, n)
		return err
	}))
}
