package webhooks

import (
	"encoding/json"
	"errors"
	"time"

	"github.com/google/uuid"

	"github.com/privateconnect/pc/control/store"
)

// An event is stored once, in the transaction of the change that raised it
// (Enqueue). Writing a delivery per webhook there made that transaction grow
// with the webhooks: 100 webhooks on an agent's events and an edge report of
// 20 such events went past Badger's transaction size, so the report failed,
// again on every retry, with every other workspace's events and access logs
// in it. The worker now fans events out in transactions of a bounded size.

// fanOutChunk bounds the deliveries (or, for a platform event, the
// workspaces) that one fan-out transaction writes: tens of KB whatever the
// event, far below Badger's limit of about a megabyte.
const fanOutChunk = 32

// fanOutSteps bounds the transactions of one pass, so that deliveries due
// are not kept waiting behind a burst of events.
const fanOutSteps = 64

// maxFanOutFailures is how many times in a row an event may fail to fan
// out (for another reason than a store that is unavailable) before it is
// dropped: events are taken oldest first, and one that cannot be fanned
// out (a record that does not decode) must not hold every later event of
// every workspace.
const maxFanOutFailures = 3

// fanOut gives stored events to their webhooks, one bounded transaction at
// a time. It reports whether events are left.
func (d *Dispatcher) fanOut() (more bool) {
	for range fanOutSteps {
		var (
			cur *store.WebhookEvent // the event at the head (nil: none left)
			n   int                 // deliveries written
		)
		err := d.kv.Update(d.ctx, func(tx store.Tx) error {
			var err error
			n = 0
			if cur, err = store.NextWebhookEvent(tx); err != nil || cur == nil {
				return err
			}
			if cur.WorkspaceID == "" {
				return d.expand(tx, cur)
			}
			n, err = d.deliverEvent(tx, cur)
			return err
		})
		if err != nil {
			if d.ctx.Err() == nil {
				d.log.Warn("webhooks: fan-out", "err", err)
				if cur != nil && !errors.Is(err, store.ErrUnavailable) && !errors.Is(err, store.ErrConflict) {
					d.fanOutFailed(cur, err)
				}
				d.pause(err)
			}
			return false
		}
		d.fanFails = 0
		if cur == nil {
			return false
		}
		if n > 0 {
			d.metrics.enqueued.WithLabelValues(cur.Event).Add(float64(n))
		}
	}
	return true
}

// deliverEvent writes the deliveries of a workspace event to its next
// fanOutChunk webhooks: those subscribed to it that existed when it
// happened and were active then, as far as the webhook tells: an active
// one, or a disabled one changed since the event (disabled after it, most
// likely: its delivery waits until it is enabled, see hold). The event goes
// when the last is done.
func (d *Dispatcher) deliverEvent(tx store.Tx, e *store.WebhookEvent) (int, error) {
	hooks, next, err := store.ListWebhooks(tx, e.WorkspaceID, e.After, fanOutChunk, func(w *store.Webhook) bool {
		return w.Subscribed(e.Event) && !w.CreatedAt.After(e.CreatedAt) && (w.IsActive || !w.UpdatedAt.Before(e.CreatedAt))
	})
	if err != nil {
		return 0, err
	}
	if len(hooks) > 0 {
		b, err := json.Marshal(body{ID: e.ID, Event: e.Event, Timestamp: e.CreatedAt.Truncate(time.Millisecond), WorkspaceID: e.WorkspaceID, Data: e.Data})
		if err != nil {
			return 0, err
		}
		for i := range hooks {
			del := store.Delivery{ID: uuid.NewString(), WorkspaceID: e.WorkspaceID, WebhookID: hooks[i].ID, EventID: e.ID,
				Event: e.Event, Body: b, CreatedAt: e.CreatedAt}
			if err := store.EnqueueDelivery(tx, &del); err != nil {
				return 0, err
			}
		}
	}
	if next == "" {
		return len(hooks), store.DeleteWebhookEvent(tx, e)
	}
	e.After = next
	return len(hooks), store.PutWebhookEvent(tx, e)
}

// expand turns a platform event into one event for each of its next
// fanOutChunk workspaces that has a webhook subscribed to it. Each gets its
// own event id, derived from the platform event's, so that a step run again
// after a crash writes the same events.
func (d *Dispatcher) expand(tx store.Tx, e *store.WebhookEvent) error {
	wss, next, err := store.ListWorkspaces(tx, e.After, fanOutChunk)
	if err != nil {
		return err
	}
	parent, err := uuid.Parse(e.ID)
	if err != nil {
		parent = uuid.NewSHA1(uuid.Nil, []byte(e.ID))
	}
	for _, w := range wss {
		ok, err := d.Wants(tx, w.ID, e.Event)
		if err != nil {
			return err
		}
		if !ok {
			continue
		}
		we := store.WebhookEvent{ID: uuid.NewSHA1(parent, []byte(w.ID)).String(), WorkspaceID: w.ID, Event: e.Event,
			Data: e.Data, CreatedAt: e.CreatedAt}
		if err := store.PutWebhookEvent(tx, &we); err != nil {
			return err
		}
	}
	if next == "" {
		return store.DeleteWebhookEvent(tx, e)
	}
	e.After = next
	return store.PutWebhookEvent(tx, e)
}

// fanOutFailed counts a failure of the event at the head; past
// maxFanOutFailures in a row it drops the event, saying so.
func (d *Dispatcher) fanOutFailed(e *store.WebhookEvent, err error) {
	if e.Key != d.fanFailKey {
		d.fanFailKey, d.fanFails = e.Key, 0
	}
	if d.fanFails++; d.fanFails < maxFanOutFailures {
		return
	}
	d.log.Error("webhooks: an event could not be fanned out and is dropped, so that later events are not held behind it",
		"event", e.Event, "id", e.ID, "workspace", e.WorkspaceID, "err", err)
	if uerr := d.update(func(tx store.Tx) error { return store.DeleteWebhookEvent(tx, e) }); uerr == nil {
		d.fanFailKey, d.fanFails = "", 0
		d.metrics.dropped.Inc()
	}
}
