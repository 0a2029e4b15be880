// Package webhooks is the control plane's durable webhook outbox and its
// delivery worker.
//
// # Outbox
//
// An event is enqueued with [Dispatcher.Enqueue] inside the store
// transaction of the change that raised it, as one [store.WebhookEvent]
// when an active webhook of the workspace subscribes to it. So the event is
// stored exactly when the change commits — never for a change that failed,
// never lost for one that committed — and before the API call that made it
// returns, and the change's transaction grows by one record whatever the
// number of webhooks. The worker then fans the event out (fanout.go): one
// pending [store.Delivery] per subscribed webhook, plus its outbox entry
// (whq/<webhook>/<due>/<id>: one queue per webhook, in due order), at most
// fanOutChunk per transaction; a delivery is listed a few milliseconds
// after the change. A commit hook ([store.OnCommit]) wakes the worker; a
// periodic scan catches anything else.
//
// # Delivery
//
// The worker takes the due heads of every webhook's queue and posts each
// delivery:
//
//	POST <url>
//	Content-Type: application/json
//	X-Webhook-Id: <event id>            (the same on every attempt: de-duplicate by it)
//	X-Webhook-Event: <event name>
//	X-Webhook-Timestamp: <event time, Unix seconds>
//	X-Webhook-Signature: sha256=<hex HMAC-SHA256(secret, raw body)>
//
//	{"id","event","timestamp","workspaceId","data"}
//
// Any 2xx is delivered; anything else (status, timeout after Options.Timeout,
// connection error, redirect) is retried after Options.Retries (default 1 min,
// 5 min, 25 min, 2 h, 10 h) and then marked failed; POST
// /v1/webhooks/:id/deliveries/:deliveryId/redeliver queues it again. The
// outcome of each attempt is written to the store before the next one, and a
// delivery leaves the outbox only when it succeeded or failed for good, so a
// restart resumes every pending delivery (at-least-once: an attempt cut by a
// shutdown is sent again).
//
// At most Options.Concurrency requests are in flight, and at most
// Options.PerWebhook for one webhook, so a slow or dead receiver holds a few
// workers and never the API: the API only writes to the outbox.
//
// Deliveries to one webhook run concurrently and are retried, so they may
// arrive out of order and more than once: receivers order by timestamp and
// de-duplicate by X-Webhook-Id.
//
// # Aggregated and platform events
//
// share.accessed and share.denied are aggregated per share per window
// (Options.ShareEventWindow, one minute): access logs add to a window record
// in the transaction that stores them (store.RecordAccess), and when the
// window has closed the flusher turns it into at most one event of each kind,
// in the transaction that marks the window flushed. edge.connected and
// edge.disconnected come from a watcher of edge presence whose last known
// state per edge is in the store, so a transition is reported once, also
// across restarts; edges are platform-level, so their events go to every
// workspace with a subscribed webhook.
package webhooks

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/google/uuid"

	"github.com/privateconnect/pc/control/store"
)

// DefaultRetries is the retry schedule of the spec: the delays before the
// second to sixth attempt.
var DefaultRetries = []time.Duration{time.Minute, 5 * time.Minute, 25 * time.Minute, 2 * time.Hour, 10 * time.Hour}

// Options configure a Dispatcher. Zero fields take the defaults noted.
type Options struct {
	Logger *slog.Logger
	// AllowInsecure accepts http:// webhook URLs (default: https only).
	AllowInsecure bool
	// AllowPrivate lets deliveries reach loopback, private (RFC 1918,
	// fc00::/7), link-local and unspecified addresses. Off by default, so
	// that the admin of a tenant cannot make the control plane call into its
	// own network (checked when connecting, after DNS resolution).
	AllowPrivate bool
	// Retries are the delays between attempts (default DefaultRetries); a
	// delivery is failed after len(Retries)+1 attempts.
	Retries []time.Duration
	// Timeout bounds one attempt (default 10 s).
	Timeout time.Duration
	// Concurrency bounds requests in flight (default 32); PerWorkspace
	// bounds them per workspace (default 8), so that one tenant's slow
	// receivers leave the others most workers; PerWebhook per webhook
	// (default 4).
	Concurrency, PerWorkspace, PerWebhook int
	// PollInterval is how often the outbox is scanned without a wake-up
	// (default 1 s).
	PollInterval time.Duration
	// DeliveryRetention is how long finished deliveries are listed (default 7 days).
	DeliveryRetention time.Duration
	// ShareEventWindow is the aggregation window of share.accessed and
	// share.denied (default 1 min); ShareEventGrace is how long after a
	// window ends its events are sent (default 5 s), so that reports in
	// flight at the boundary still count.
	ShareEventWindow, ShareEventGrace time.Duration
	// EdgeCheckInterval is how often edge presence is compared with the
	// stored state (default 2 s). EdgeOfflineGrace is how long after start an
	// edge absent from presence is not yet reported offline (default 35 s:
	// the presence window plus a report).
	EdgeCheckInterval, EdgeOfflineGrace time.Duration
	// OnlineEdges returns the ids of the online edges (nil: no edge events).
	OnlineEdges func() []string
	// EdgeAuditWorkspace is the workspace whose audit log records each
	// edge's connections and disconnections (the operator's; "" records
	// none).
	EdgeAuditWorkspace string
	// SecretKey seals webhook secrets (32 bytes); nil keeps a key in the
	// store (see secret.go).
	SecretKey []byte
	// Transport is the HTTP transport of deliveries (tests); nil: a
	// dedicated one.
	Transport http.RoundTripper

	maxScan int // outbox entries per pass (tests; default maxScan)
}

func (o Options) withDefaults() Options {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if len(o.Retries) == 0 {
		o.Retries = DefaultRetries
	}
	if o.Timeout <= 0 {
		o.Timeout = 10 * time.Second
	}
	if o.Concurrency <= 0 {
		o.Concurrency = 32
	}
	if o.PerWorkspace <= 0 {
		o.PerWorkspace = 8
	}
	if o.PerWebhook <= 0 {
		o.PerWebhook = 4
	}
	o.PerWorkspace = min(o.PerWorkspace, o.Concurrency)
	o.PerWebhook = min(o.PerWebhook, o.PerWorkspace)
	if o.PollInterval <= 0 {
		o.PollInterval = time.Second
	}
	if o.DeliveryRetention <= 0 {
		o.DeliveryRetention = 7 * 24 * time.Hour
	}
	if o.ShareEventWindow <= 0 {
		o.ShareEventWindow = time.Minute
	}
	if o.ShareEventGrace <= 0 {
		o.ShareEventGrace = 5 * time.Second
	}
	if o.EdgeCheckInterval <= 0 {
		o.EdgeCheckInterval = 2 * time.Second
	}
	if o.maxScan <= 0 {
		o.maxScan = maxScan
	}
	if o.EdgeOfflineGrace <= 0 {
		o.EdgeOfflineGrace = 35 * time.Second
	}
	return o
}

// Dispatcher is the outbox and its workers.
type Dispatcher struct {
	opts    Options
	kv      store.KV
	log     *slog.Logger
	seal    *sealer
	client  *http.Client
	metrics *Metrics
	started time.Time

	kick    chan struct{}
	ctx     context.Context
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	runOnce sync.Once
	stopped sync.Once

	mu           sync.Mutex
	inflight     map[string]bool // delivery ids being sent
	perWebhook   map[string]int
	perWorkspace map[string]int
	paused       map[string]time.Time // disabled webhooks' queues, left alone until then (hold)
	busy         int
	tests        map[string]int // POST /v1/webhooks/:id/test in flight, by workspace
	testsBusy    int

	// Of the fan-out loop (deliverLoop's goroutine only): the event at the
	// head that failed last, and how many times in a row.
	fanFailKey string
	fanFails   int
}

// New returns a dispatcher on kv (which should be wrapped with
// store.WithCommitHooks for prompt wake-ups). Start runs its workers.
func New(kv store.KV, opts Options) (*Dispatcher, error) {
	opts = opts.withDefaults()
	for _, r := range opts.Retries {
		if r <= 0 {
			return nil, fmt.Errorf("webhooks: retry delays must be positive")
		}
	}
	key := opts.SecretKey
	if key == nil {
		var err error
		if key, err = storedKey(context.Background(), kv); err != nil {
			return nil, fmt.Errorf("webhooks: key: %w", err)
		}
	}
	s, err := newSealer(key)
	if err != nil {
		return nil, err
	}
	tr := opts.Transport
	if tr == nil {
		dialer := &net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}
		if !opts.AllowPrivate {
			dialer.Control = func(_, address string, _ syscall.RawConn) error {
				host, _, err := net.SplitHostPort(address)
				if err != nil {
					return err
				}
				if ip, err := netip.ParseAddr(host); err == nil && privateAddr(ip) {
					return fmt.Errorf("%w: %s", ErrPrivateAddress, ip)
				}
				return nil
			}
		}
		tr = &http.Transport{
			DialContext:           dialer.DialContext,
			MaxIdleConnsPerHost:   opts.PerWebhook,
			IdleConnTimeout:       60 * time.Second,
			TLSHandshakeTimeout:   5 * time.Second,
			ResponseHeaderTimeout: opts.Timeout,
			ForceAttemptHTTP2:     true,
		}
	}
	d := &Dispatcher{
		opts: opts, kv: kv, log: opts.Logger, seal: s, started: time.Now(),
		client: &http.Client{Transport: tr, Timeout: opts.Timeout,
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }},
		kick: make(chan struct{}, 1), inflight: map[string]bool{}, perWebhook: map[string]int{}, perWorkspace: map[string]int{},
		paused: map[string]time.Time{}, tests: map[string]int{},
	}
	d.metrics = newMetrics(d)
	d.ctx, d.cancel = context.WithCancel(context.Background())
	return d, nil
}

// Start runs the delivery worker, the share-event flusher and the edge
// watcher until Close.
func (d *Dispatcher) Start() {
	d.runOnce.Do(func() {
		d.wg.Add(3)
		go d.deliverLoop()
		go d.windowLoop()
		go d.edgeLoop()
	})
}

// Close stops the workers and waits for them; attempts in flight are cut
// and stay pending (they are sent again after a restart).
func (d *Dispatcher) Close() {
	d.stopped.Do(func() {
		d.cancel()
		d.wg.Wait()
		if t, ok := d.client.Transport.(*http.Transport); ok && d.opts.Transport == nil {
			t.CloseIdleConnections()
		}
	})
}

// Kick wakes the delivery worker.
func (d *Dispatcher) Kick() {
	select {
	case d.kick <- struct{}{}:
	default:
	}
}

// Options returns the effective options.
func (d *Dispatcher) Options() Options { return d.opts }

// CheckURL validates a webhook URL: absolute http(s) with a host; https
// unless AllowInsecure. It returns a message for the client, or "".
func (d *Dispatcher) CheckURL(raw string) string {
	u, err := url.Parse(raw)
	switch {
	case err != nil || u.Host == "" || u.Hostname() == "" || !u.IsAbs() || len(raw) > 2048:
		return "must be an absolute http(s) URL of at most 2048 characters"
	case u.Fragment != "":
		return "must not have a fragment"
	case u.Scheme != "http" && u.Scheme != "https":
		return "must be an http or https URL"
	case !d.opts.AllowPrivate && privateHost(u.Hostname()):
		return "must not point to a loopback, private, link-local or other special-use address (this server does not allow private webhooks)"
	case u.Scheme == "https":
		return ""
	case u.Scheme == "http" && d.opts.AllowInsecure:
		return ""
	default:
		return "must use https (this server does not allow insecure webhooks)"
	}
}

// ErrPrivateAddress refuses a delivery to a private address (see
// Options.AllowPrivate).
var ErrPrivateAddress = errors.New("webhooks: the destination is a private address")

// privateAddr reports whether a delivery may not go to ip without
// Options.AllowPrivate: anything but a global unicast address, and the
// special-use ranges inside it where cloud metadata, carrier-grade NAT or
// a network's own services live, or that embed an IPv4 address
// (translation and tunnelling prefixes).
func privateAddr(ip netip.Addr) bool {
	ip = ip.Unmap()
	if !ip.IsGlobalUnicast() || ip.IsPrivate() {
		return true
	}
	for _, p := range specialUse {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

var specialUse = func() []netip.Prefix {
	var out []netip.Prefix
	for _, s := range []string{
		"0.0.0.0/8",       // "this network"
		"100.64.0.0/10",   // carrier-grade NAT, Tailscale; 100.100.100.200 is a cloud metadata address
		"192.0.0.0/24",    // IETF protocol assignments
		"192.0.2.0/24",    // documentation
		"198.18.0.0/15",   // benchmarking
		"198.51.100.0/24", // documentation
		"203.0.113.0/24",  // documentation
		"240.0.0.0/4",     // reserved
		"::/96",           // IPv4-compatible
		"64:ff9b::/96",    // NAT64
		"64:ff9b:1::/48",  // local NAT64
		"100::/64",        // discard
		"2001::/32",       // Teredo
		"2001:db8::/32",   // documentation
		"2002::/16",       // 6to4
		"fec0::/10",       // site-local (deprecated)
	} {
		out = append(out, netip.MustParsePrefix(s))
	}
	return out
}()

// privateHost reports whether a URL host is a private IP literal or a
// loopback name (names are checked again when connecting).
func privateHost(h string) bool {
	if ip, err := netip.ParseAddr(strings.Trim(h, "[]")); err == nil {
		return privateAddr(ip)
	}
	h = strings.ToLower(strings.TrimSuffix(h, "."))
	return h == "localhost" || strings.HasSuffix(h, ".localhost")
}

// Seal seals a webhook's secret for storage; Open opens it.
func (d *Dispatcher) Seal(webhookID, secret string) string { return d.seal.seal(webhookID, secret) }

// Open returns the plain secret of a stored webhook.
func (d *Dispatcher) Open(w *store.Webhook) (string, error) { return d.seal.open(w.ID, w.Secret) }

// body is the JSON body of a delivery.
type body struct {
	ID          string    `json:"id"`
	Event       string    `json:"event"`
	Timestamp   time.Time `json:"timestamp"`
	WorkspaceID string    `json:"workspaceId"`
	Data        any       `json:"data"`
}

// ErrUnknownEvent is returned by Enqueue for names outside the catalog.
var ErrUnknownEvent = errors.New("webhooks: unknown event")

// Enqueue stores the event for the active webhooks of the workspace
// subscribed to it, in tx: the event is stored if and only if tx commits.
// It writes one record, whatever the number of webhooks (the worker fans it
// out to them, see fanout.go), and nothing when no webhook wants the event.
func (d *Dispatcher) Enqueue(tx store.Tx, workspaceID, event string, data any) error {
	if !known[event] {
		return fmt.Errorf("%w %q", ErrUnknownEvent, event)
	}
	if ok, err := d.Wants(tx, workspaceID, event); err != nil || !ok {
		return err
	}
	return d.store(tx, workspaceID, event, data)
}

// Wants reports whether an active webhook of the workspace subscribes to
// event, so that callers can skip building costly event data.
func (d *Dispatcher) Wants(tx store.Tx, workspaceID, event string) (bool, error) {
	hooks, _, err := store.ListWebhooks(tx, workspaceID, "", 1, func(w *store.Webhook) bool { return w.IsActive && w.Subscribed(event) })
	return len(hooks) > 0, err
}

// EnqueueAll enqueues a platform-level event (edges) in every workspace
// with a webhook subscribed to it: one record in tx, fanned out to the
// workspaces by the worker.
func (d *Dispatcher) EnqueueAll(tx store.Tx, event string, data any) error {
	if !known[event] {
		return fmt.Errorf("%w %q", ErrUnknownEvent, event)
	}
	return d.store(tx, "", event, data)
}

func (d *Dispatcher) store(tx store.Tx, workspaceID, event string, data any) error {
	raw, err := json.Marshal(data)
	if err != nil {
		return fmt.Errorf("webhooks: encode %s: %w", event, err)
	}
	e := store.WebhookEvent{ID: uuid.NewString(), WorkspaceID: workspaceID, Event: event, Data: raw, CreatedAt: time.Now().UTC()}
	if err := store.PutWebhookEvent(tx, &e); err != nil {
		return err
	}
	store.OnCommit(tx, d.Kick)
	return nil
}

// trimErr shortens an error for lastError.
func trimErr(s string) string {
	s = strings.TrimSpace(s)
	if len(s) > 500 {
		s = s[:500] + "…"
	}
	return s
}
