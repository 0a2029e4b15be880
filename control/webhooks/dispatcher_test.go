package webhooks

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/privateconnect/pc/control/store"
	"github.com/privateconnect/pc/control/store/memstore"
)

// receiver is a webhook endpoint that checks signatures and records events.
type receiver struct {
	t      *testing.T
	srv    *httptest.Server
	secret string
	mu     sync.Mutex
	ids    map[string]int // event id → deliveries
	events []string
	status atomic.Int32 // answer (0: 200)
	delay  atomic.Int64 // ns to wait before answering
	calls  atomic.Int32
	active atomic.Int32
	peak   atomic.Int32
}

func newReceiver(t *testing.T) *receiver {
	r := &receiver{t: t, ids: map[string]int{}}
	r.srv = httptest.NewServer(http.HandlerFunc(r.serve))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *receiver) serve(w http.ResponseWriter, req *http.Request) {
	r.calls.Add(1)
	n := r.active.Add(1)
	defer r.active.Add(-1)
	for p := r.peak.Load(); n > p && !r.peak.CompareAndSwap(p, n); p = r.peak.Load() {
	}
	b, _ := io.ReadAll(req.Body) // first: then net/http notices a client that hangs up
	if d := time.Duration(r.delay.Load()); d > 0 {
		select {
		case <-time.After(d):
		case <-req.Context().Done():
			return
		}
	}
	if s := r.status.Load(); s != 0 {
		w.WriteHeader(int(s))
		return
	}
	r.mu.Lock()
	secret := r.secret
	r.mu.Unlock()
	if !Verify(secret, b, req.Header.Get("X-Webhook-Signature")) {
		r.t.Errorf("bad signature on %s", b)
		w.WriteHeader(400)
		return
	}
	var body struct {
		ID, Event, WorkspaceID string
		Timestamp              time.Time
		Data                   map[string]any
	}
	if err := json.Unmarshal(b, &body); err != nil {
		r.t.Errorf("body %s: %v", b, err)
	}
	if req.Header.Get("X-Webhook-Id") != body.ID || req.Header.Get("X-Webhook-Event") != body.Event ||
		req.Header.Get("Content-Type") != "application/json" || req.Header.Get("X-Webhook-Timestamp") == "" {
		r.t.Errorf("headers %v do not match body %s", req.Header, b)
	}
	r.mu.Lock()
	r.ids[body.ID]++
	r.events = append(r.events, body.Event)
	r.mu.Unlock()
	w.WriteHeader(204)
}

func (r *receiver) distinct() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.ids)
}

func fastOptions() Options {
	return Options{AllowInsecure: true, AllowPrivate: true, Retries: []time.Duration{20 * time.Millisecond, 40 * time.Millisecond},
		Timeout: time.Second, PollInterval: 20 * time.Millisecond, ShareEventWindow: 100 * time.Millisecond,
		ShareEventGrace: 20 * time.Millisecond}
}

func newDispatcher(t *testing.T, kv store.KV, o Options) *Dispatcher {
	t.Helper()
	d, err := New(kv, o)
	require.NoError(t, err)
	d.Start()
	t.Cleanup(d.Close)
	return d
}

func addHook(t *testing.T, kv store.KV, d *Dispatcher, url string, events ...string) (id, secret string) {
	t.Helper()
	return addHookIn(t, kv, d, "ws", url, events...)
}

func addHookIn(t *testing.T, kv store.KV, d *Dispatcher, ws, url string, events ...string) (id, secret string) {
	t.Helper()
	id, secret = "hook-"+NewSecret()[:8], NewSecret()
	require.NoError(t, kv.Update(context.Background(), func(tx store.Tx) error {
		return store.CreateWebhook(tx, &store.Webhook{ID: id, WorkspaceID: ws, URL: url, Events: events, IsActive: true,
			Secret: d.Seal(id, secret), CreatedAt: time.Now()})
	}))
	return id, secret
}

func emit(t *testing.T, kv store.KV, d *Dispatcher, event string, n int) {
	t.Helper()
	emitIn(t, kv, d, "ws", event, n)
}

func emitIn(t *testing.T, kv store.KV, d *Dispatcher, ws, event string, n int) {
	t.Helper()
	for i := 0; i < n; i++ {
		require.NoError(t, kv.Update(context.Background(), func(tx store.Tx) error {
			return d.Enqueue(tx, ws, event, map[string]any{"i": i})
		}))
	}
}

func deliveries(t *testing.T, kv store.KV, hook string) []store.Delivery {
	t.Helper()
	var out []store.Delivery
	require.NoError(t, kv.View(context.Background(), func(tx store.Tx) error {
		var err error
		out, _, err = store.ListDeliveries(tx, "ws", hook, "", 0, nil)
		return err
	}))
	return out
}

func TestDeliverSignedAndOnlySubscribed(t *testing.T) {
	kv := store.WithCommitHooks(memstore.New())
	d := newDispatcher(t, kv, fastOptions())
	r := newReceiver(t)
	hook, secret := addHook(t, kv, d, r.srv.URL, ShareCreated)
	r.secret = secret
	emit(t, kv, d, ShareCreated, 3)
	emit(t, kv, d, ShareRevoked, 2) // not subscribed: nothing stored
	require.Eventually(t, func() bool { return r.distinct() == 3 }, 5*time.Second, 5*time.Millisecond)
	require.Eventually(t, func() bool {
		ds := deliveries(t, kv, hook)
		for _, x := range ds {
			if x.Status != store.DeliverySucceeded {
				return false
			}
		}
		return len(ds) == 3
	}, 5*time.Second, 5*time.Millisecond)
	ds := deliveries(t, kv, hook)
	require.Equal(t, 1, ds[0].Attempts)
	require.Equal(t, 204, ds[0].LastStatusCode)
	require.Empty(t, ds[0].LastError)
	// An unknown event is a programming error.
	err := kv.Update(context.Background(), func(tx store.Tx) error { return d.Enqueue(tx, "ws", "nope", nil) })
	require.ErrorIs(t, err, ErrUnknownEvent)
	// A failed transaction leaves nothing behind.
	_ = kv.Update(context.Background(), func(tx store.Tx) error {
		require.NoError(t, d.Enqueue(tx, "ws", ShareCreated, nil))
		return context.Canceled
	})
	time.Sleep(50 * time.Millisecond)
	require.Len(t, deliveries(t, kv, hook), 3)
}

func TestRetriesThenFailedThenRedeliver(t *testing.T) {
	kv := store.WithCommitHooks(memstore.New())
	d := newDispatcher(t, kv, fastOptions())
	r := newReceiver(t)
	r.status.Store(500)
	hook, secret := addHook(t, kv, d, r.srv.URL, AgentConnected)
	r.secret = secret
	emit(t, kv, d, AgentConnected, 1)
	require.Eventually(t, func() bool {
		ds := deliveries(t, kv, hook)
		return len(ds) == 1 && ds[0].Status == store.DeliveryFailed
	}, 5*time.Second, 5*time.Millisecond)
	del := deliveries(t, kv, hook)[0]
	require.Equal(t, 3, del.Attempts, "one attempt plus len(Retries) retries")
	require.Equal(t, 500, del.LastStatusCode)
	require.Contains(t, del.LastError, "500")
	require.Nil(t, del.NextAttemptAt)
	require.EqualValues(t, 3, r.calls.Load())

	// Redeliver: pending again with a fresh schedule; delivered once the receiver is back.
	r.status.Store(0)
	require.NoError(t, kv.Update(context.Background(), func(tx store.Tx) error {
		x, err := store.GetDelivery(tx, "ws", hook, del.ID)
		require.NoError(t, err)
		return d.Redeliver(tx, x)
	}))
	require.Eventually(t, func() bool { return deliveries(t, kv, hook)[0].Status == store.DeliverySucceeded }, 5*time.Second, 5*time.Millisecond)
	require.Equal(t, 4, deliveries(t, kv, hook)[0].Attempts)
	require.Equal(t, 1, r.distinct())
}

func TestPendingSurviveANewDispatcher(t *testing.T) {
	kv := store.WithCommitHooks(memstore.New())
	o := fastOptions()
	o.Retries = []time.Duration{time.Hour} // the first dispatcher would wait an hour
	d1, err := New(kv, o)
	require.NoError(t, err)
	d1.Start()
	r := newReceiver(t)
	r.status.Store(503)
	hook, secret := addHook(t, kv, d1, r.srv.URL, TunnelCreated)
	r.secret = secret
	emit(t, kv, d1, TunnelCreated, 5)
	require.Eventually(t, func() bool { return r.calls.Load() >= 5 }, 5*time.Second, 5*time.Millisecond)
	d1.Close()
	// The same store, a new dispatcher whose first retry is due at once.
	r.status.Store(0)
	require.NoError(t, kv.Update(context.Background(), func(tx store.Tx) error {
		ds, _, _ := store.ListDeliveries(tx, "ws", hook, "", 0, nil)
		for i := range ds {
			now := time.Now()
			ds[i].NextAttemptAt = &now
			if err := store.SaveDelivery(tx, &ds[i], 0); err != nil {
				return err
			}
		}
		return nil
	}))
	newDispatcher(t, kv, o)
	require.Eventually(t, func() bool { return r.distinct() == 5 }, 5*time.Second, 5*time.Millisecond)
}

func TestConcurrencyBounds(t *testing.T) {
	kv := store.WithCommitHooks(memstore.New())
	o := fastOptions()
	o.Concurrency, o.PerWebhook = 3, 2
	d := newDispatcher(t, kv, o)
	slow, fast := newReceiver(t), newReceiver(t)
	slow.delay.Store(int64(200 * time.Millisecond))
	_, s1 := addHook(t, kv, d, slow.srv.URL, ShareCreated)
	_, s2 := addHook(t, kv, d, fast.srv.URL, ShareCreated)
	slow.secret, fast.secret = s1, s2
	emit(t, kv, d, ShareCreated, 10)
	// The slow receiver holds at most PerWebhook workers; the fast one gets the rest.
	require.Eventually(t, func() bool { return fast.distinct() == 10 }, 2*time.Second, 5*time.Millisecond)
	require.Less(t, slow.distinct(), 10)
	require.Eventually(t, func() bool { return slow.distinct() == 10 }, 10*time.Second, 10*time.Millisecond)
	require.LessOrEqual(t, slow.peak.Load(), int32(2))
}

// TestBacklogDoesNotStarveOthers: a hung receiver with a large backlog due
// first holds only its PerWebhook workers; another webhook's deliveries,
// due later, are sent at once.
func TestBacklogDoesNotStarveOthers(t *testing.T) {
	kv := store.WithCommitHooks(memstore.New())
	o := fastOptions()
	o.Concurrency, o.PerWebhook = 4, 2
	o.Timeout = 5 * time.Second
	o.maxScan = 100
	d := newDispatcher(t, kv, o)
	hung, ok := newReceiver(t), newReceiver(t)
	hung.delay.Store(int64(time.Hour))
	t.Cleanup(d.Close) // first: it hangs up on the hung receiver, which can then close
	_, s1 := addHook(t, kv, d, hung.srv.URL, TunnelCreated)
	hung.secret = s1
	require.NoError(t, kv.Update(context.Background(), func(tx store.Tx) error {
		for i := 0; i < 5*o.maxScan; i++ { // more than one pass scans
			if err := d.Enqueue(tx, "ws", TunnelCreated, i); err != nil {
				return err
			}
		}
		return nil
	}))
	_, s2 := addHook(t, kv, d, ok.srv.URL, ShareCreated)
	ok.secret = s2
	emit(t, kv, d, ShareCreated, 20)
	require.Eventually(t, func() bool { return ok.distinct() == 20 }, 5*time.Second, 5*time.Millisecond)
	require.LessOrEqual(t, hung.peak.Load(), int32(2))
}

func TestTimeoutIsAFailure(t *testing.T) {
	kv := store.WithCommitHooks(memstore.New())
	o := fastOptions()
	o.Timeout = 50 * time.Millisecond
	o.Retries = []time.Duration{time.Hour}
	d := newDispatcher(t, kv, o)
	r := newReceiver(t)
	r.delay.Store(int64(time.Second))
	hook, secret := addHook(t, kv, d, r.srv.URL, ShareCreated)
	r.secret = secret
	emit(t, kv, d, ShareCreated, 1)
	require.Eventually(t, func() bool { ds := deliveries(t, kv, hook); return len(ds) == 1 && ds[0].Attempts == 1 }, 5*time.Second, 5*time.Millisecond)
	del := deliveries(t, kv, hook)[0]
	require.Equal(t, store.DeliveryPending, del.Status)
	require.Contains(t, del.LastError, "no answer within")
	require.WithinDuration(t, time.Now().Add(time.Hour), *del.NextAttemptAt, time.Minute)
}

func TestDeletedWebhookDropsBacklog(t *testing.T) {
	kv := store.WithCommitHooks(memstore.New())
	o := fastOptions()
	o.Retries = []time.Duration{30 * time.Millisecond}
	d := newDispatcher(t, kv, o)
	r := newReceiver(t)
	r.status.Store(500)
	hook, _ := addHook(t, kv, d, r.srv.URL, ShareCreated)
	emit(t, kv, d, ShareCreated, 3)
	require.NoError(t, kv.Update(context.Background(), func(tx store.Tx) error { return store.DeleteWebhook(tx, "ws", hook) }))
	require.Eventually(t, func() bool {
		n := -1
		_ = kv.View(context.Background(), func(tx store.Tx) error { n, _ = store.OutboxDepth(tx); return nil })
		return n == 0
	}, 5*time.Second, 5*time.Millisecond)
	require.Empty(t, deliveries(t, kv, hook))
}

func TestSecretsSealedAndSigned(t *testing.T) {
	s, err := newSealer(make([]byte, 32))
	require.NoError(t, err)
	sealed := s.seal("w1", "abc")
	require.True(t, strings.HasPrefix(sealed, "v1:"))
	require.NotContains(t, sealed, "abc")
	got, err := s.open("w1", sealed)
	require.NoError(t, err)
	require.Equal(t, "abc", got)
	_, err = s.open("w2", sealed)
	require.Error(t, err, "bound to the webhook id")
	other, _ := newSealer(append(make([]byte, 31), 1))
	_, err = other.open("w1", sealed)
	require.Error(t, err, "another key does not open it")
	_, err = newSealer(make([]byte, 16))
	require.Error(t, err)
	// The signature is HMAC-SHA256 over the raw body, keyed by the secret string.
	require.Equal(t, "sha256=f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8",
		Sign("key", []byte("The quick brown fox jumps over the lazy dog")))
	require.Len(t, NewSecret(), 64)
}

func TestCheckURL(t *testing.T) {
	d := &Dispatcher{opts: Options{}.withDefaults()}
	require.Empty(t, d.CheckURL("https://example.com/hook"))
	require.Contains(t, d.CheckURL("http://example.com/hook"), "https")
	require.NotEmpty(t, d.CheckURL("ftp://example.com"))
	require.NotEmpty(t, d.CheckURL("/relative"))
	require.NotEmpty(t, d.CheckURL("https://example.com/#frag"))
	require.Contains(t, d.CheckURL("https://127.0.0.1/x"), "private")
	require.Contains(t, d.CheckURL("https://192.168.1.10/x"), "private")
	require.Contains(t, d.CheckURL("https://[fd00::1]/x"), "private")
	require.Contains(t, d.CheckURL("https://LOCALHOST./x"), "private")
	require.Empty(t, d.CheckURL("https://8.8.8.8/x"))
	require.Empty(t, d.CheckURL("https://[2606:4700::1111]/x"))
	// Special-use ranges: cloud metadata behind carrier-grade NAT, benchmark
	// and reserved ranges, and IPv6 prefixes that embed an IPv4 address.
	for _, h := range []string{"100.100.100.200", "100.64.0.1", "198.18.0.1", "192.0.0.1", "240.0.0.1", "0.1.2.3",
		"255.255.255.255", "[64:ff9b::a9fe:a9fe]", "[::127.0.0.1]", "[::ffff:127.0.0.1]", "[2002:7f00:1::]",
		"[2001:0:4136:e378::1]", "[fec0::1]", "[ff02::1]", "[fe80::1]"} {
		require.Contains(t, d.CheckURL("https://"+h+"/x"), "special-use", h)
	}
	// The scheme is named before the address.
	require.Contains(t, d.CheckURL("ftp://localhost/x"), "http or https")
	d.opts.AllowInsecure, d.opts.AllowPrivate = true, true
	require.Empty(t, d.CheckURL("http://127.0.0.1:9/x"))
}

// TestPrivateAddressesRefusedAtDial: without AllowPrivate a name that
// resolves to a private address is refused when connecting (DNS cannot
// bypass the URL check).
func TestPrivateAddressesRefusedAtDial(t *testing.T) {
	kv := store.WithCommitHooks(memstore.New())
	o := fastOptions()
	o.AllowPrivate = false
	d := newDispatcher(t, kv, o)
	r := newReceiver(t)
	_, port, _ := strings.Cut(r.srv.Listener.Addr().String(), ":")
	w := &store.Webhook{ID: "w", WorkspaceID: "ws", URL: "http://localhost:" + port + "/x", IsActive: true}
	w.Secret = d.Seal(w.ID, "s")
	// The name passes no URL check here (post is what a delivery calls
	// after CheckURL): the dialer refuses the address it resolves to.
	status, msg := d.post(context.Background(), w.URL, "s", "id", TestEvent, time.Now(), []byte("{}"))
	require.Zero(t, status)
	require.Contains(t, msg, "private or special-use address")
	require.NotContains(t, msg, "127.0.0.1", "the refusal names the address the host resolved to")
	// A test to a URL this server refuses is not sent.
	res, err := d.Test(context.Background(), w)
	require.NoError(t, err)
	require.False(t, res.Delivered)
	require.NotNil(t, res.Error)
	require.Contains(t, *res.Error, "the webhook's URL must not point to a loopback")
	require.Zero(t, r.calls.Load())
}

func TestShareWindowEvents(t *testing.T) {
	kv := store.WithCommitHooks(memstore.New())
	d := newDispatcher(t, kv, fastOptions())
	r := newReceiver(t)
	_, secret := addHook(t, kv, d, r.srv.URL, ShareAccessed, ShareDenied)
	r.secret = secret
	now := time.Now()
	var recs []store.AccessRecord
	for i := 0; i < 7; i++ {
		rec := store.AccessRecord{ID: NewSecret()[:8], ShareID: "sh", At: now, StatusCode: 200, Decision: "allowed", BytesOut: 10}
		if i >= 5 {
			rec.Decision, rec.DeniedBy, rec.StatusCode = "denied", "ip-allow", 403
		}
		recs = append(recs, rec)
	}
	for _, batch := range [][]store.AccessRecord{recs[:3], recs[3:]} {
		b := store.AccessBatch{WorkspaceID: "ws", ShareID: "sh", ServiceID: "svc", Records: batch}
		require.NoError(t, kv.Update(context.Background(), func(tx store.Tx) error {
			return store.RecordAccess(tx, &b, time.Hour, d.opts.ShareEventWindow, now)
		}))
	}
	require.Eventually(t, func() bool { return r.distinct() == 2 }, 5*time.Second, 5*time.Millisecond)
	time.Sleep(300 * time.Millisecond)
	r.mu.Lock()
	defer r.mu.Unlock()
	require.ElementsMatch(t, []string{ShareAccessed, ShareDenied}, r.events, "one event of each kind for the window")
}

func TestEdgeTransitions(t *testing.T) {
	kv := store.WithCommitHooks(memstore.New())
	var mu sync.Mutex
	online := []string{}
	o := fastOptions()
	o.OnlineEdges = func() []string { mu.Lock(); defer mu.Unlock(); return append([]string(nil), online...) }
	o.EdgeOfflineGrace = time.Millisecond
	o.EdgeCheckInterval = time.Hour // driven by hand
	d := newDispatcher(t, kv, o)
	require.NoError(t, kv.Update(context.Background(), func(tx store.Tx) error {
		if err := store.CreateWorkspace(tx, &store.Workspace{ID: "ws", Name: "default"}); err != nil {
			return err
		}
		return store.CreateEdge(tx, &store.Edge{ID: "e1", Name: "edge-1", TokenHash: "h"})
	}))
	r := newReceiver(t)
	_, secret := addHook(t, kv, d, r.srv.URL, EdgeConnected, EdgeDisconnected)
	r.secret = secret
	time.Sleep(5 * time.Millisecond)
	set := func(ids ...string) { mu.Lock(); online = ids; mu.Unlock() }
	require.NoError(t, d.CheckEdges(time.Now()))
	set("e1")
	require.NoError(t, d.CheckEdges(time.Now()))
	require.NoError(t, d.CheckEdges(time.Now())) // no change: no event
	set()
	require.NoError(t, d.CheckEdges(time.Now()))
	require.Eventually(t, func() bool { return r.distinct() == 2 }, 5*time.Second, 5*time.Millisecond)
	r.mu.Lock()
	require.ElementsMatch(t, []string{EdgeConnected, EdgeDisconnected}, r.events) // deliveries are concurrent: no order
	r.mu.Unlock()
	// A fresh dispatcher (restart) within its grace does not report the edge offline again.
	o.EdgeOfflineGrace = time.Hour
	d2, err := New(kv, o)
	require.NoError(t, err)
	require.NoError(t, d2.CheckEdges(time.Now()))
	set("e1")
	require.NoError(t, d2.CheckEdges(time.Now()))
	require.Eventually(t, func() bool { return r.distinct() == 3 }, 5*time.Second, 5*time.Millisecond)
	time.Sleep(50 * time.Millisecond)
	r.mu.Lock()
	require.ElementsMatch(t, []string{EdgeConnected, EdgeDisconnected, EdgeConnected}, r.events, "connected again after it was offline, once")
	r.mu.Unlock()
}
