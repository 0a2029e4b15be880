package webhooks

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"time"

	"github.com/google/uuid"

	"github.com/privateconnect/pc/control/store"
)

// maxScan bounds the outbox entries one pass looks at (Options.maxScan in
// tests). Each webhook's queue is read from its head and left as soon as the
// webhook has PerWebhook deliveries in flight, so a receiver's backlog costs
// a pass a few entries.
const maxScan = 10000

func (d *Dispatcher) deliverLoop() {
	defer d.wg.Done()
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-d.ctx.Done():
			return
		case <-d.kick:
		case <-t.C:
		}
		if d.fanOut() {
			d.Kick() // more events: come back after this pass's deliveries
		}
		next := d.dispatchDue(time.Now())
		wait := d.opts.PollInterval
		if !next.IsZero() {
			wait = min(wait, max(time.Until(next), time.Millisecond))
		}
		t.Reset(wait)
	}
}

// dispatchDue starts an attempt for each due delivery the concurrency
// limits allow. It returns when the first delivery not yet due is due (zero
// when there is none or the scan stopped early).
func (d *Dispatcher) dispatchDue(now time.Time) (next time.Time) {
	d.mu.Lock()
	free := d.opts.Concurrency - d.busy
	d.mu.Unlock()
	if free <= 0 {
		return time.Time{} // a finishing attempt wakes the loop
	}
	var items []store.QueueItem
	err := d.kv.View(d.ctx, func(tx store.Tx) error {
		items, next = items[:0], time.Time{}
		taken, takenWS := map[string]int{}, map[string]int{}
		scanned := 0
		return store.ScanOutbox(tx, func(it store.QueueItem) store.OutboxStep {
			if it.Due.After(now) { // this queue's head is not due yet
				if next.IsZero() || it.Due.Before(next) {
					next = it.Due
				}
				return store.OutboxSkip
			}
			if scanned++; scanned > d.opts.maxScan {
				next = time.Time{} // unknown: poll
				return store.OutboxStop
			}
			d.mu.Lock()
			inflight := d.inflight[it.DeliveryID]
			full := d.perWebhook[it.WebhookID]+taken[it.WebhookID] >= d.opts.PerWebhook ||
				d.perWorkspace[it.WorkspaceID]+takenWS[it.WorkspaceID] >= d.opts.PerWorkspace
			until, held := d.paused[it.WebhookID]
			paused := until.After(now)
			if held && !paused {
				delete(d.paused, it.WebhookID) // looked at again now (a deleted webhook's goes too)
			}
			d.mu.Unlock()
			switch {
			case full, paused:
				return store.OutboxSkip
			case inflight:
				return store.OutboxNext
			}
			taken[it.WebhookID]++
			takenWS[it.WorkspaceID]++
			items = append(items, it)
			if len(items) >= free {
				return store.OutboxStop
			}
			return store.OutboxNext
		})
	})
	if err != nil {
		if d.ctx.Err() == nil {
			d.log.Warn("webhooks: outbox scan", "err", err)
		}
		return time.Time{}
	}
	for _, it := range items {
		d.mu.Lock()
		d.inflight[it.DeliveryID] = true
		d.perWebhook[it.WebhookID]++
		d.perWorkspace[it.WorkspaceID]++
		d.busy++
		d.mu.Unlock()
		d.wg.Add(1)
		go d.attempt(it)
	}
	return next
}

func (d *Dispatcher) release(it store.QueueItem) {
	d.mu.Lock()
	delete(d.inflight, it.DeliveryID)
	countDown(d.perWebhook, it.WebhookID)
	countDown(d.perWorkspace, it.WorkspaceID)
	d.busy--
	d.mu.Unlock()
	d.Kick()
}

// attempt sends one delivery and records the outcome.
func (d *Dispatcher) attempt(it store.QueueItem) {
	defer d.wg.Done()
	defer d.release(it)
	var del *store.Delivery
	var wh *store.Webhook
	err := d.kv.View(d.ctx, func(tx store.Tx) error {
		var err error
		if del, err = store.DeliveryAt(tx, it); err != nil {
			return err
		}
		wh, err = store.GetWebhook(tx, it.WorkspaceID, it.WebhookID)
		if errors.Is(err, store.ErrNotFound) {
			wh, err = nil, nil
		}
		return err
	})
	switch {
	case errors.Is(err, store.ErrNotFound):
		d.update(func(tx store.Tx) error { return tx.Delete([]byte(it.Key)) }) // an orphan entry
		return
	case err != nil:
		d.pause(err)
		return
	case del.QueueKey != it.Key:
		return // rescheduled since the scan; the next scan sees the new entry
	case wh == nil: // the webhook was deleted: its backlog goes with it
		d.update(func(tx store.Tx) error {
			cur, err := store.DeliveryAt(tx, it)
			if err != nil {
				return err
			}
			return store.DropDelivery(tx, cur)
		})
		return
	case !wh.IsActive:
		d.hold(it)
		return
	}
	if msg := d.CheckURL(wh.URL); msg != "" {
		// Allowed when it was saved, refused by this server's settings now
		// (insecure or private webhooks turned off): never sent.
		d.record(it, 0, "the webhook's URL "+msg, false)
		return
	}
	secret, err := d.Open(wh)
	if err != nil {
		d.log.Error("webhooks: cannot open secret", "webhook", wh.ID, "err", err)
		d.record(it, 0, unreadableSecret, false)
		return
	}
	t0 := time.Now()
	status, msg := d.post(d.ctx, wh.URL, secret, del.EventID, del.Event, del.CreatedAt, del.Body)
	d.metrics.duration.Observe(time.Since(t0).Seconds())
	if d.ctx.Err() != nil {
		return // shutting down: the delivery stays pending and is sent again
	}
	d.record(it, status, msg, false)
}

const unreadableSecret = "the signing secret cannot be read by this control plane; rotate it"

// heldFor is how long a disabled webhook's queue is left alone before the
// worker looks at it again (Resume ends it at once).
const heldFor = time.Minute

// hold keeps a disabled webhook's deliveries pending, without an attempt
// and without a write: its queue is skipped for heldFor (then looked at
// again), and the deliveries go once it is enabled again (PATCH isActive,
// then Resume), or are dropped with it.
func (d *Dispatcher) hold(it store.QueueItem) {
	d.mu.Lock()
	d.paused[it.WebhookID] = time.Now().Add(heldFor)
	d.mu.Unlock()
	// Enabled since the attempt read it? Its Resume may have come before
	// the pause above: look again, after it.
	var active bool
	_ = d.kv.View(d.ctx, func(tx store.Tx) error {
		w, err := store.GetWebhook(tx, it.WorkspaceID, it.WebhookID)
		active = err == nil && w.IsActive
		return nil
	})
	if active {
		d.Resume(it.WebhookID)
	}
}

// Resume sends a webhook's held deliveries now: call it when it is enabled.
func (d *Dispatcher) Resume(webhookID string) {
	d.mu.Lock()
	delete(d.paused, webhookID)
	d.mu.Unlock()
	d.Kick()
}

// record writes the outcome of an attempt: succeeded, retried later, or
// failed for good (final).
func (d *Dispatcher) record(it store.QueueItem, status int, msg string, final bool) {
	now := time.Now().UTC()
	var outcome string
	err := d.update(func(tx store.Tx) error {
		outcome = ""
		del, err := store.DeliveryAt(tx, it)
		if errors.Is(err, store.ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		del.Attempts++
		del.LastStatusCode, del.LastError = status, msg
		n := del.Attempts - del.RetryBase
		switch {
		case msg == "":
			del.Status, del.NextAttemptAt, del.CompletedAt = store.DeliverySucceeded, nil, &now
			outcome = store.DeliverySucceeded
		case del.QueueKey != it.Key:
			// Redelivered while this attempt ran: keep the new schedule.
		case !final && n <= len(d.opts.Retries):
			t := now.Add(d.opts.Retries[n-1])
			del.NextAttemptAt = &t
			outcome = "retry"
		default:
			del.Status, del.NextAttemptAt, del.CompletedAt = store.DeliveryFailed, nil, &now
			outcome = store.DeliveryFailed
		}
		return store.SaveDelivery(tx, del, d.opts.DeliveryRetention)
	})
	if err != nil {
		d.pause(err)
		return
	}
	if msg == "" {
		d.metrics.attempts.WithLabelValues("success").Inc()
	} else {
		d.metrics.attempts.WithLabelValues("failure").Inc()
		d.log.Debug("webhooks: attempt failed", "delivery", it.DeliveryID, "webhook", it.WebhookID, "status", status, "err", msg)
	}
	if outcome == store.DeliverySucceeded || outcome == store.DeliveryFailed {
		d.metrics.deliveries.WithLabelValues(outcome).Inc()
	}
}

func (d *Dispatcher) update(fn func(store.Tx) error) error {
	err := d.kv.Update(context.Background(), fn)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return err
	}
	return nil
}

// pause keeps a delivery claimed for a while after a store error, so that a
// failing store does not turn into a tight loop of attempts.
func (d *Dispatcher) pause(err error) {
	if d.ctx.Err() != nil {
		return
	}
	d.log.Warn("webhooks: store error", "err", err)
	select {
	case <-d.ctx.Done():
	case <-time.After(min(5*time.Second, d.opts.PollInterval*5)):
	}
}

// post sends one request. It returns the status code (0 without an answer)
// and an error message ("" when delivered: any 2xx).
func (d *Dispatcher) post(ctx context.Context, url, secret, id, event string, at time.Time, body []byte) (int, string) {
	ctx, cancel := context.WithTimeout(ctx, d.opts.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return 0, trimErr(err.Error())
	}
	h := req.Header
	h.Set("Content-Type", "application/json")
	h.Set("User-Agent", "PrivateConnect-Webhooks/1")
	h.Set("X-Webhook-Id", id)
	h.Set("X-Webhook-Event", event)
	h.Set("X-Webhook-Timestamp", strconv.FormatInt(at.Unix(), 10))
	h.Set("X-Webhook-Signature", Sign(secret, body))
	resp, err := d.client.Do(req)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) || errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return 0, fmt.Sprintf("no answer within %v", d.opts.Timeout)
		}
		return 0, trimErr(transportError(err))
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return resp.StatusCode, ""
	}
	return resp.StatusCode, "receiver answered " + strconv.Itoa(resp.StatusCode) + " " + http.StatusText(resp.StatusCode)
}

// transportError says why a request got no answer, in the receiver's terms:
// a DNS failure names the host, not the control plane's resolver, and no
// answer names the address a host resolved to (the operator's network is
// not the webhook owner's business: a refusal must not map internal names
// to addresses).
func transportError(err error) string {
	if errors.Is(err, ErrPrivateAddress) {
		return "the host resolves to a loopback, private or special-use address, which this server does not allow for webhooks"
	}
	var de *net.DNSError
	if errors.As(err, &de) {
		if de.IsNotFound {
			return "cannot resolve " + de.Name + ": no such host"
		}
		return "cannot resolve " + de.Name + ": " + de.Err
	}
	var oe *net.OpError
	if errors.As(err, &oe) {
		var se *os.SyscallError
		if errors.As(oe.Err, &se) {
			return oe.Op + ": " + se.Err.Error() // "dial: connection refused"
		}
		return oe.Op + ": " + oe.Err.Error()
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err.Error()
	}
	return err.Error()
}

// TestResult is the answer of POST /v1/webhooks/:id/test.
type TestResult struct {
	Delivered bool `json:"delivered"`
	// StatusCode is the receiver's answer; null when there was none.
	StatusCode *int `json:"statusCode"`
	// Error is why the delivery failed; null when it did not.
	Error      *string `json:"error"`
	DurationMs float64 `json:"durationMs"`
}

// Test sends at most TestsPerWorkspace webhook tests of one workspace at
// once, and at most Tests in all: tests do not queue behind deliveries, but
// must not let the control plane be used to flood a host.
const (
	Tests             = 8
	TestsPerWorkspace = 2
)

// ErrTestsBusy refuses a test while the workspace (or the server) has as
// many in flight as allowed.
var ErrTestsBusy = errors.New("webhooks: too many webhook tests in progress")

func (d *Dispatcher) takeTest(ws string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.testsBusy >= Tests || d.tests[ws] >= TestsPerWorkspace {
		return false
	}
	d.testsBusy++
	d.tests[ws]++
	return true
}

func (d *Dispatcher) releaseTest(ws string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.testsBusy--
	countDown(d.tests, ws)
}

// countDown takes one from m[k], forgetting k at zero.
func countDown(m map[string]int, k string) {
	if m[k]--; m[k] <= 0 {
		delete(m, k)
	}
}

// Test sends a signed webhook.test event to w now (not stored, not
// retried). It refuses with ErrTestsBusy past the limits above.
func (d *Dispatcher) Test(ctx context.Context, w *store.Webhook) (TestResult, error) {
	fail := func(msg string) (TestResult, error) { return TestResult{Error: &msg}, nil }
	if msg := d.CheckURL(w.URL); msg != "" {
		return fail("the webhook's URL " + msg)
	}
	secret, err := d.Open(w)
	if err != nil {
		d.log.Error("webhooks: cannot open secret", "webhook", w.ID, "err", err)
		return fail(unreadableSecret)
	}
	if !d.takeTest(w.WorkspaceID) {
		return TestResult{}, ErrTestsBusy
	}
	defer d.releaseTest(w.WorkspaceID)
	now := time.Now().UTC().Truncate(time.Millisecond)
	id := uuid.NewString()
	b, err := json.Marshal(body{ID: id, Event: TestEvent, Timestamp: now, WorkspaceID: w.WorkspaceID,
		Data: map[string]any{"webhookId": w.ID, "message": "A test delivery from Private Connect."}})
	if err != nil {
		return TestResult{}, err
	}
	t0 := time.Now()
	status, msg := d.post(ctx, w.URL, secret, id, TestEvent, now, b)
	res := TestResult{Delivered: msg == "", DurationMs: float64(time.Since(t0).Microseconds()) / 1000}
	if msg != "" {
		res.Error = &msg
	}
	if status != 0 {
		res.StatusCode = &status
	}
	return res, nil
}

// Redeliver queues a delivery again, due now, with a fresh retry schedule.
// Call it inside the transaction that read del.
func (d *Dispatcher) Redeliver(tx store.Tx, del *store.Delivery) error {
	now := time.Now().UTC()
	del.Status, del.RetryBase, del.NextAttemptAt, del.CompletedAt = store.DeliveryPending, del.Attempts, &now, nil
	store.OnCommit(tx, d.Kick)
	return store.SaveDelivery(tx, del, 0)
}
