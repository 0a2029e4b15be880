package store

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Webhooks and their outbox.
//
//	w/<ws>/webhook/<id>                    Webhook
//	w/<ws>/whdel/<webhook>/<order>         Delivery, newest first
//	w/<ws>/whdelid/<delivery>              "<webhook>/<order>" (lookup by id)
//	whq/<webhook>/<due: 16 hex ns>/<delivery>   "<ws>/<order>": the outbox
//	whe/<at: 16 hex ns>/<event>            WebhookEvent not yet fanned out
//
// An event is written once, as a [WebhookEvent], inside the transaction of
// the change that raised it, so it exists if and only if its change
// committed, and that transaction grows by one record whatever the number
// of webhooks. The delivery worker then fans it out to the webhooks
// subscribed to it, a bounded number per transaction ([EnqueueDelivery]).
// The outbox holds one entry per pending delivery: one queue per webhook,
// ordered by the time each delivery is due, so that a worker can take the
// due heads of every queue without wading through one receiver's backlog.
// Finished deliveries leave the outbox and keep their record for a
// retention period (TTL).

// Delivery statuses.
const (
	DeliveryPending   = "pending"
	DeliverySucceeded = "succeeded"
	DeliveryFailed    = "failed"
)

// Webhook is a subscription of a workspace to events. Secret holds the
// signing secret sealed by package control/webhooks (never the plain value).
type Webhook struct {
	ID          string    `json:"id"`
	WorkspaceID string    `json:"workspaceId"`
	URL         string    `json:"url"`
	Events      []string  `json:"events"`
	Description string    `json:"description"`
	IsActive    bool      `json:"isActive"`
	Secret      string    `json:"secret"`
	CreatedAt   time.Time `json:"createdAt"`
	UpdatedAt   time.Time `json:"updatedAt"`
}

// Subscribed reports whether the webhook wants event.
func (w *Webhook) Subscribed(event string) bool {
	for _, e := range w.Events {
		if e == event {
			return true
		}
	}
	return false
}

// Delivery is one event for one webhook. Body is the exact request body
// (the same bytes on every attempt, so the event id and signature input never
// change).
type Delivery struct {
	ID             string     `json:"id"`
	WorkspaceID    string     `json:"workspaceId"`
	WebhookID      string     `json:"webhookId"`
	EventID        string     `json:"eventId"`
	Event          string     `json:"event"`
	Body           []byte     `json:"body"`
	Status         string     `json:"status"`
	Attempts       int        `json:"attempts"`
	RetryBase      int        `json:"retryBase,omitempty"` // attempts made before the last redelivery
	LastStatusCode int        `json:"lastStatusCode,omitempty"`
	LastError      string     `json:"lastError,omitempty"`
	NextAttemptAt  *time.Time `json:"nextAttemptAt,omitempty"`
	CreatedAt      time.Time  `json:"createdAt"`
	CompletedAt    *time.Time `json:"completedAt,omitempty"`
	Key            string     `json:"key"`                // order key under the webhook
	QueueKey       string     `json:"queueKey,omitempty"` // outbox key while pending
}

func webhookKey(ws, id string) []byte { return key("w", ws, "webhook", id) }

// CreateWebhook stores a new webhook.
func CreateWebhook(tx Tx, w *Webhook) error {
	if ok, err := exists(tx, webhookKey(w.WorkspaceID, w.ID)); err != nil {
		return err
	} else if ok {
		return conflict("id", "webhook %s exists", w.ID)
	}
	return putJSON(tx, webhookKey(w.WorkspaceID, w.ID), w)
}

// GetWebhook returns a webhook of the workspace.
func GetWebhook(tx Tx, ws, id string) (*Webhook, error) {
	var w Webhook
	if err := getJSON(tx, webhookKey(ws, id), &w); err != nil {
		return nil, notFound("webhook", err)
	}
	return &w, nil
}

// PutWebhook overwrites a webhook.
func PutWebhook(tx Tx, w *Webhook) error { return putJSON(tx, webhookKey(w.WorkspaceID, w.ID), w) }

// DeleteWebhook removes a webhook. Its pending deliveries stay in the outbox
// until the delivery worker meets them and drops them (see
// [DropDelivery]), so deleting is O(1) whatever the backlog.
func DeleteWebhook(tx Tx, ws, id string) error {
	if _, err := GetWebhook(tx, ws, id); err != nil {
		return err
	}
	return tx.Delete(webhookKey(ws, id))
}

// ListWebhooks pages through the workspace's webhooks.
func ListWebhooks(tx Tx, ws, after string, limit int, keep func(*Webhook) bool) ([]Webhook, string, error) {
	return List(tx, prefix("w", ws, "webhook"), after, limit, keep)
}

func deliveryKey(d *Delivery) []byte { return key("w", d.WorkspaceID, "whdel", d.WebhookID, d.Key) }

func deliveryIDKey(ws, id string) []byte { return key("w", ws, "whdelid", id) }

// queueKey is the outbox key of a delivery due at t.
func queueKey(webhookID string, t time.Time, id string) string {
	return "whq/" + webhookID + "/" + hex16(t) + "/" + id
}

// hex16 is t in Unix ns as 16 hex digits: keys in time order.
func hex16(t time.Time) string {
	var b [8]byte
	n := uint64(max(t.UnixNano(), 0))
	for i := 7; i >= 0; i-- {
		b[i] = byte(n)
		n >>= 8
	}
	return hex.EncodeToString(b[:])
}

var queuePrefix = []byte("whq/")

// WebhookEvent is an event waiting to be fanned out to the webhooks
// subscribed to it. WorkspaceID "" is a platform event (edges), fanned out
// first into one event per workspace.
type WebhookEvent struct {
	ID          string          `json:"id"` // X-Webhook-Id of its deliveries
	WorkspaceID string          `json:"workspaceId"`
	Event       string          `json:"event"`
	Data        json.RawMessage `json:"data"`
	CreatedAt   time.Time       `json:"createdAt"`
	// After is how far the fan-out went: the last webhook (or, for a
	// platform event, workspace) given the event.
	After string `json:"after,omitempty"`
	Key   string `json:"-"`
}

var eventPrefix = []byte("whe/")

// PutWebhookEvent stores an event to fan out (again, with its progress).
func PutWebhookEvent(tx Tx, e *WebhookEvent) error {
	if e.Key == "" {
		e.Key = string(eventPrefix) + hex16(e.CreatedAt) + "/" + e.ID
	}
	return putJSON(tx, []byte(e.Key), e)
}

// NextWebhookEvent returns the oldest event to fan out, or nil. An event
// that does not decode is returned with its Key (to delete it) and the
// error.
func NextWebhookEvent(tx Tx) (*WebhookEvent, error) {
	var e *WebhookEvent
	err := tx.Scan(eventPrefix, nil, func(k, v []byte) (bool, error) {
		e = &WebhookEvent{Key: string(k)}
		if err := json.Unmarshal(v, e); err != nil { // Key is no JSON field: it stays
			return false, fmt.Errorf("decode %s: %w", k, err)
		}
		return false, nil
	})
	return e, err
}

// DeleteWebhookEvent removes an event fanned out to all its webhooks.
func DeleteWebhookEvent(tx Tx, e *WebhookEvent) error { return tx.Delete([]byte(e.Key)) }

// WebhookEventsPending counts the events not yet fanned out.
func WebhookEventsPending(tx Tx) (int, error) { return count(tx, eventPrefix) }

// EnqueueDelivery stores a new pending delivery, due at d.NextAttemptAt
// (or at once), and puts it in the outbox.
func EnqueueDelivery(tx Tx, d *Delivery) error {
	if d.Key == "" {
		d.Key = invTime(d.CreatedAt) + "-" + d.ID
	}
	d.Status = DeliveryPending
	if d.NextAttemptAt == nil {
		t := d.CreatedAt
		d.NextAttemptAt = &t
	}
	return SaveDelivery(tx, d, 0)
}

// SaveDelivery writes a delivery. A pending one is (re)placed in the outbox
// at its NextAttemptAt; a finished one leaves the outbox and is kept for
// retention (0: forever).
func SaveDelivery(tx Tx, d *Delivery, retention time.Duration) error {
	if d.QueueKey != "" {
		if err := tx.Delete([]byte(d.QueueKey)); err != nil {
			return err
		}
		d.QueueKey = ""
	}
	var ttl time.Duration
	if d.Status == DeliveryPending {
		if d.NextAttemptAt == nil {
			return fmt.Errorf("store: pending delivery %s without nextAttemptAt", d.ID)
		}
		d.QueueKey = queueKey(d.WebhookID, *d.NextAttemptAt, d.ID)
		if err := tx.Put([]byte(d.QueueKey), []byte(d.WorkspaceID+"/"+d.Key)); err != nil {
			return err
		}
	} else {
		ttl = retention
	}
	if err := tx.PutTTL(deliveryIDKey(d.WorkspaceID, d.ID), []byte(d.WebhookID+"/"+d.Key), ttl); err != nil {
		return err
	}
	return putJSONTTL(tx, deliveryKey(d), d, ttl)
}

// DropDelivery removes a delivery and its outbox entry (its webhook is gone).
func DropDelivery(tx Tx, d *Delivery) error {
	for _, k := range [][]byte{[]byte(d.QueueKey), deliveryIDKey(d.WorkspaceID, d.ID), deliveryKey(d)} {
		if len(k) == 0 {
			continue
		}
		if err := tx.Delete(k); err != nil {
			return err
		}
	}
	return nil
}

// GetDelivery returns a delivery of a webhook by id.
func GetDelivery(tx Tx, ws, webhookID, id string) (*Delivery, error) {
	p, err := tx.Get(deliveryIDKey(ws, id))
	if err != nil {
		return nil, notFound("delivery", err)
	}
	wh, order, ok := splitPointer(p)
	if !ok || wh != webhookID {
		return nil, &NotFoundError{Kind: "delivery"}
	}
	var d Delivery
	if err := getJSON(tx, key("w", ws, "whdel", webhookID, order), &d); err != nil {
		return nil, notFound("delivery", err)
	}
	return &d, nil
}

// ListDeliveries pages through a webhook's deliveries, newest first.
func ListDeliveries(tx Tx, ws, webhookID, after string, limit int, keep func(*Delivery) bool) ([]Delivery, string, error) {
	return List(tx, prefix("w", ws, "whdel", webhookID), after, limit, keep)
}

// QueueItem is one outbox entry.
type QueueItem struct {
	Key                         string // the outbox key
	Due                         time.Time
	DeliveryID                  string
	WorkspaceID, WebhookID, Ref string // Ref: the delivery's order key
}

// OutboxStep tells ScanOutbox where to go next.
type OutboxStep int

// Steps of ScanOutbox.
const (
	OutboxNext OutboxStep = iota // the next entry of this webhook's queue
	OutboxSkip                   // the head of the next webhook's queue
	OutboxStop                   // end the scan
)

// ScanOutbox walks the outbox queue by queue: each webhook's pending
// deliveries in due order (entries not yet due included: fn decides), the
// webhooks in id order. fn's answer moves the scan on.
func ScanOutbox(tx Tx, fn func(QueueItem) OutboxStep) error {
	var after []byte
	for {
		var skipTo []byte
		err := tx.Scan(queuePrefix, after, func(k, v []byte) (bool, error) {
			it, ok := parseQueueItem(k, v)
			if !ok {
				return true, nil
			}
			switch fn(it) {
			case OutboxNext:
				return true, nil
			case OutboxSkip:
				skipTo = append([]byte(string(queuePrefix)+it.WebhookID+"/"), 0xff)
			}
			return false, nil
		})
		if err != nil || skipTo == nil {
			return err
		}
		after = skipTo
	}
}

func parseQueueItem(k, v []byte) (QueueItem, bool) {
	rest := string(k[len(queuePrefix):])
	wh, rest, ok := strings.Cut(rest, "/")
	if !ok || len(rest) < 18 || rest[16] != '/' {
		return QueueItem{}, false
	}
	n, err := strconv.ParseUint(rest[:16], 16, 64)
	if err != nil {
		return QueueItem{}, false
	}
	ws, ref, ok := splitPointer(v)
	if !ok {
		return QueueItem{}, false
	}
	return QueueItem{Key: string(k), Due: time.Unix(0, int64(n)).UTC(), DeliveryID: rest[17:], WorkspaceID: ws, WebhookID: wh, Ref: ref}, true
}

// DeliveryAt returns the delivery an outbox entry points at.
func DeliveryAt(tx Tx, it QueueItem) (*Delivery, error) {
	var d Delivery
	if err := getJSON(tx, key("w", it.WorkspaceID, "whdel", it.WebhookID, it.Ref), &d); err != nil {
		return nil, notFound("delivery", err)
	}
	return &d, nil
}

// OutboxDepth counts pending deliveries.
func OutboxDepth(tx Tx) (int, error) { return count(tx, queuePrefix) }

// Commit hooks.

// committer is implemented by transactions of a KV wrapped with
// [WithCommitHooks].
type committer interface{ OnCommit(func()) }

// OnCommit arranges for f to run after tx commits (never when it fails). It
// reports false, and never calls f, when tx does not come from a KV wrapped
// with [WithCommitHooks]. The outbox uses it to wake its worker.
func OnCommit(tx Tx, f func()) bool {
	if c, ok := tx.(committer); ok {
		c.OnCommit(f)
		return true
	}
	return false
}

// WithCommitHooks wraps kv so that its Update transactions support
// [OnCommit]. Wrapping twice returns the same wrapper.
func WithCommitHooks(kv KV) KV {
	if _, ok := kv.(*hookKV); ok {
		return kv
	}
	return &hookKV{KV: kv}
}

// Unwrap returns the KV below commit-hook wrappers (for optional interfaces
// of the implementation, such as a size report).
func Unwrap(kv KV) KV {
	for {
		h, ok := kv.(*hookKV)
		if !ok {
			return kv
		}
		kv = h.KV
	}
}

type hookKV struct{ KV }

func (k *hookKV) Update(ctx context.Context, fn func(Tx) error) error {
	var after []func()
	err := k.KV.Update(ctx, func(tx Tx) error {
		after = after[:0] // a retried transaction starts over
		return fn(&hookTx{Tx: tx, after: &after})
	})
	if err != nil {
		return err
	}
	for _, f := range after {
		f()
	}
	return nil
}

type hookTx struct {
	Tx
	after *[]func()
}

func (t *hookTx) OnCommit(f func()) { *t.after = append(*t.after, f) }
