package webhooks_test

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/require"

	"github.com/privateconnect/pc/control"
	"github.com/privateconnect/pc/control/controltest"
	"github.com/privateconnect/pc/control/webhooks"
	"github.com/privateconnect/pc/sdk/client"
)

// receiver is a webhook endpoint on a fixed address that can answer 500,
// be killed (its listener closed: connection refused) and come back.
type receiver struct {
	t      *testing.T
	addr   string
	secret atomic.Value // string
	fail   atomic.Bool  // answer 500
	delay  atomic.Int64 // ns before answering
	mu     sync.Mutex
	srv    *http.Server
	count  map[string]int    // event id → deliveries
	names  map[string]string // event id → event name
	calls  atomic.Int64
}

func newReceiver(t *testing.T) *receiver {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	r := &receiver{t: t, addr: ln.Addr().String(), count: map[string]int{}, names: map[string]string{}}
	r.serveOn(ln)
	t.Cleanup(r.kill)
	return r
}

func (r *receiver) url() string { return "http://" + r.addr + "/hook" }

func (r *receiver) serveOn(ln net.Listener) {
	srv := &http.Server{Handler: http.HandlerFunc(r.handle)}
	r.mu.Lock()
	r.srv = srv
	r.mu.Unlock()
	go func() { _ = srv.Serve(ln) }()
}

// kill closes the listener and every connection.
func (r *receiver) kill() {
	r.mu.Lock()
	srv := r.srv
	r.srv = nil
	r.mu.Unlock()
	if srv != nil {
		_ = srv.Close()
	}
}

// revive listens again on the same address.
func (r *receiver) revive() {
	var ln net.Listener
	var err error
	for i := 0; i < 100; i++ {
		if ln, err = net.Listen("tcp", r.addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	require.NoError(r.t, err)
	r.serveOn(ln)
}

func (r *receiver) handle(w http.ResponseWriter, req *http.Request) {
	r.calls.Add(1)
	if d := time.Duration(r.delay.Load()); d > 0 {
		select {
		case <-time.After(d):
		case <-req.Context().Done():
			return
		}
	}
	if r.fail.Load() {
		w.WriteHeader(500)
		return
	}
	b, err := io.ReadAll(req.Body)
	if err != nil {
		return
	}
	secret, _ := r.secret.Load().(string)
	if !webhooks.Verify(secret, b, req.Header.Get("X-Webhook-Signature")) {
		r.t.Errorf("signature %q does not verify %s", req.Header.Get("X-Webhook-Signature"), b)
		w.WriteHeader(401)
		return
	}
	var body struct {
		ID, Event, WorkspaceID string
		Timestamp              time.Time
		Data                   json.RawMessage
	}
	if err := json.Unmarshal(b, &body); err != nil {
		r.t.Errorf("body %s: %v", b, err)
	}
	if body.ID == "" || body.ID != req.Header.Get("X-Webhook-Id") || body.Event != req.Header.Get("X-Webhook-Event") ||
		body.WorkspaceID == "" || body.Timestamp.IsZero() || len(body.Data) == 0 {
		r.t.Errorf("bad delivery: headers %v body %s", req.Header, b)
	}
	r.mu.Lock()
	r.count[body.ID]++
	r.names[body.ID] = body.Event
	r.mu.Unlock()
	w.WriteHeader(200)
}

func (r *receiver) got(id string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.count[id]
}

// cp is a running control plane.
type cp struct {
	*controltest.Server
	c *client.Client
}

func startCP(t *testing.T, dir, key string, mod func(*control.Config)) (*cp, string) {
	t.Helper()
	cfg := control.Config{Listen: "127.0.0.1:0", DataDir: dir,
		RateLimits: control.RateLimits{PublicPerMin: 1e6, AuthenticatedPerMin: 1e6},
		Webhooks: control.WebhookOptions{AllowInsecure: true, AllowPrivate: true, Timeout: time.Second, PollInterval: 20 * time.Millisecond,
			Retries: []time.Duration{50 * time.Millisecond, 100 * time.Millisecond, 100 * time.Millisecond, 100 * time.Millisecond,
				100 * time.Millisecond, 100 * time.Millisecond, 100 * time.Millisecond, 100 * time.Millisecond, 100 * time.Millisecond,
				100 * time.Millisecond, 100 * time.Millisecond, 100 * time.Millisecond, 100 * time.Millisecond, 100 * time.Millisecond,
				100 * time.Millisecond, 100 * time.Millisecond, 100 * time.Millisecond, 100 * time.Millisecond, 100 * time.Millisecond,
				200 * time.Millisecond, 200 * time.Millisecond, 200 * time.Millisecond, 200 * time.Millisecond, 200 * time.Millisecond}}}
	if mod != nil {
		mod(&cfg)
	}
	srv := controltest.Start(t, cfg)
	if k, created := srv.BootstrapAdminKey(); created || key == "" {
		key = k
	}
	return &cp{Server: srv, c: client.New(srv.URL(), key)}, key
}

// causeEvents makes n services with a share each, and revokes every share:
// n tunnel.created, n share.created, n share.revoked.
func causeEvents(t *testing.T, c *client.Client, agentID, prefix string, n int) {
	t.Helper()
	ctx := context.Background()
	for i := 0; i < n; i++ {
		svc, _, err := c.RegisterService(ctx, client.RegisterServiceRequest{AgentID: agentID, Name: prefix + string(rune('a'+i)), TargetHost: "127.0.0.1", TargetPort: 8000 + i})
		require.NoError(t, err)
		sh, err := c.CreateShare(ctx, svc.ID, client.CreateShareRequest{Name: "s"})
		require.NoError(t, err)
		require.NoError(t, c.RevokeShare(ctx, sh.ID))
	}
}

// delivery is a row of GET /v1/webhooks/:id/deliveries.
type delivery struct {
	ID, EventID, Event, Status string
	Attempts                   int
}

// allDeliveries lists every delivery of a webhook.
func allDeliveries(t *testing.T, c *client.Client, hook string) []delivery {
	t.Helper()
	var out []delivery
	q := url.Values{"limit": {"500"}}
	for {
		var page []delivery
		next, err := c.Do(context.Background(), "GET", "/v1/webhooks/"+hook+"/deliveries", q, nil, &page)
		require.NoError(t, err)
		out = append(out, page...)
		if next == "" {
			return out
		}
		q.Set("cursor", next)
	}
}

// TestAtLeastOnceAcrossOutageAndRestart: a receiver that answers 500, then
// is dead (connection refused), then comes back gets every event; events
// raised while it is dead and still pending when the control plane restarts
// are delivered by the new process.
func TestAtLeastOnceAcrossOutageAndRestart(t *testing.T) {
	dir := t.TempDir()
	rcv := newReceiver(t)
	cp1, key := startCP(t, dir, "", nil)
	ctx := context.Background()
	var events []string
	for _, e := range webhooks.Events {
		events = append(events, e.Name)
	}
	hook, err := cp1.c.CreateWebhook(ctx, client.CreateWebhookRequest{URL: rcv.url(), Events: events})
	require.NoError(t, err)
	rcv.secret.Store(hook.Secret)
	p, err := cp1.c.ProvisionAgent(ctx, client.ProvisionRequest{Name: "a"})
	require.NoError(t, err)
	_, err = cp1.c.RegisterAgent(ctx, client.RegisterAgentRequest{AgentID: p.AgentID, Token: p.Token})
	require.NoError(t, err)

	causeEvents(t, cp1.c, p.AgentID, "up", 2) // receiver up
	rcv.fail.Store(true)
	causeEvents(t, cp1.c, p.AgentID, "err", 3) // receiver answers 500
	require.Eventually(t, func() bool { return rcv.calls.Load() >= 10 }, 5*time.Second, 10*time.Millisecond)
	rcv.kill()
	causeEvents(t, cp1.c, p.AgentID, "dead", 3) // connection refused
	time.Sleep(200 * time.Millisecond)
	rcv.fail.Store(false)
	rcv.revive()
	waitAllDelivered(t, cp1.c, rcv, hook.ID, 1+8*3)

	// Restart with deliveries pending: the receiver is dead while events
	// happen and while the control plane stops and starts again.
	rcv.kill()
	causeEvents(t, cp1.c, p.AgentID, "rs", 4)
	require.Eventually(t, func() bool {
		ds := allDeliveries(t, cp1.c, hook.ID)
		n := 0
		for _, d := range ds {
			if d.Status == "pending" && d.Attempts >= 1 {
				n++
			}
		}
		return n == 12
	}, 5*time.Second, 10*time.Millisecond, "the new deliveries are tried and pending")
	before := rcv.calls.Load()
	cp1.Stop()
	_ = cp1.Close()

	rcv.revive()
	cp2, _ := startCP(t, dir, key, nil)
	waitAllDelivered(t, cp2.c, rcv, hook.ID, 1+8*3+12)
	require.Greater(t, rcv.calls.Load(), before)

	// The Badger store reports its size in /metrics.
	resp, err := http.Get("http://" + cp2.Addr() + "/metrics")
	require.NoError(t, err)
	defer resp.Body.Close()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(resp.Body)
	require.NoError(t, err)
	require.Contains(t, fams, "pc_control_store_lsm_bytes")
	require.Contains(t, fams, "pc_control_store_vlog_bytes")
	require.Contains(t, fams, "pc_control_store_tables")
	require.GreaterOrEqual(t, fams["pc_control_store_tables"].GetMetric()[0].GetGauge().GetValue(), 1.0,
		"the first run's writes were flushed to a table when it closed")
	require.Equal(t, float64(0), fams["pc_control_webhook_queue_depth"].GetMetric()[0].GetGauge().GetValue())
}

// waitAllDelivered waits until the webhook has want deliveries, all
// succeeded, and the receiver got each event id at least once.
func waitAllDelivered(t *testing.T, c *client.Client, rcv *receiver, hook string, want int) {
	t.Helper()
	var ds []delivery
	ok := false
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) && !ok {
		ds = allDeliveries(t, c, hook)
		ok = len(ds) == want
		for _, d := range ds {
			ok = ok && d.Status == "succeeded"
		}
		if !ok {
			time.Sleep(20 * time.Millisecond)
		}
	}
	require.True(t, ok, "deliveries: %d of %d, %+v", len(ds), want, ds)
	names := map[string]int{}
	for _, d := range ds {
		require.GreaterOrEqual(t, rcv.got(d.EventID), 1, "event %s (%s) never arrived", d.EventID, d.Event)
		names[d.Event]++
	}
	n := (want - 1) / 3
	require.Equal(t, map[string]int{"agent.registered": 1, "tunnel.created": n, "share.created": n, "share.revoked": n}, names)
}

// TestSlowReceiverDoesNotSlowAPI: with a receiver that never answers, API
// mutations that raise events stay fast.
func TestSlowReceiverDoesNotSlowAPI(t *testing.T) {
	rcv := newReceiver(t)
	rcv.delay.Store(int64(time.Hour))
	cp, _ := startCP(t, t.TempDir(), "", func(c *control.Config) { c.Webhooks.Timeout = 2 * time.Second })
	ctx := context.Background()
	hook, err := cp.c.CreateWebhook(ctx, client.CreateWebhookRequest{URL: rcv.url(), Events: []string{"tunnel.created", "share.created", "share.revoked"}})
	require.NoError(t, err)
	rcv.secret.Store(hook.Secret)
	p, err := cp.c.ProvisionAgent(ctx, client.ProvisionRequest{Name: "a"})
	require.NoError(t, err)
	// Were mutations waiting on deliveries, each of the 20 rounds would
	// take at least the 2 s delivery timeout (40 s in all); the bound is far
	// from both that and a loaded CI machine's fsync latency.
	t0 := time.Now()
	for i := 0; i < 20; i++ {
		causeEvents(t, cp.c, p.AgentID, "s"+strings.Repeat("x", i), 1)
	}
	require.Less(t, time.Since(t0), 20*time.Second, "60 mutations with a hung receiver")
	require.Eventually(t, func() bool { return rcv.calls.Load() >= 4 }, 5*time.Second, 10*time.Millisecond)
	// Test waits for the answer, bounded by the timeout.
	t0 = time.Now()
	res, err := cp.c.TestWebhook(ctx, hook.ID)
	require.NoError(t, err)
	require.False(t, res.Delivered)
	require.Contains(t, res.Error, "no answer")
	require.Less(t, time.Since(t0), 5*time.Second)
}
