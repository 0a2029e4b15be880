package webhooks

import (
	"time"

	"github.com/privateconnect/pc/control/store"
)

// windowLoop turns closed share-event windows into share.accessed and
// share.denied events.
func (d *Dispatcher) windowLoop() {
	defer d.wg.Done()
	iv := min(d.opts.ShareEventWindow/4, 5*time.Second)
	iv = max(iv, 10*time.Millisecond)
	t := time.NewTicker(iv)
	defer t.Stop()
	for {
		select {
		case <-d.ctx.Done():
			return
		case <-t.C:
			if err := d.FlushWindows(time.Now()); err != nil && d.ctx.Err() == nil {
				d.log.Warn("webhooks: share events", "err", err)
			}
		}
	}
}

// maxWindowsPerTx bounds the windows flushed in one transaction.
const maxWindowsPerTx = 200

// FlushWindows sends the events of every share window that ended at least
// ShareEventGrace before now. Each window's events are enqueued in the
// transaction that marks it flushed, so each is sent once.
func (d *Dispatcher) FlushWindows(now time.Time) error {
	end := now.Add(-d.opts.ShareEventGrace)
	for {
		n := 0
		err := d.kv.Update(d.ctx, func(tx store.Tx) error {
			n = 0
			var due []store.ShareWindow
			if err := store.ClosedWindows(tx, end, func(w *store.ShareWindow) bool {
				due = append(due, *w)
				return len(due) < maxWindowsPerTx
			}); err != nil {
				return err
			}
			for i := range due {
				w := &due[i]
				if err := d.enqueueWindow(tx, w); err != nil {
					return err
				}
				if err := store.FlushWindow(tx, w, d.opts.ShareEventWindow); err != nil {
					return err
				}
			}
			n = len(due)
			return nil
		})
		if err != nil || n < maxWindowsPerTx {
			return err
		}
	}
}

func (d *Dispatcher) enqueueWindow(tx store.Tx, w *store.ShareWindow) error {
	base := func(n int64, byStatus map[string]int64) map[string]any {
		return map[string]any{"shareId": w.ShareID, "serviceId": w.ServiceID, "windowStart": w.Start.UTC(), "windowEnd": w.End.UTC(),
			"requests": n, "byStatus": byStatus, "firstAccessAt": w.FirstAt.UTC(), "lastAccessAt": w.LastAt.UTC()}
	}
	if w.Allowed > 0 {
		data := base(w.Allowed, w.ByStatus)
		data["bytesOut"] = w.BytesOut
		if err := d.Enqueue(tx, w.WorkspaceID, ShareAccessed, data); err != nil {
			return err
		}
	}
	if w.Denied > 0 {
		data := base(w.Denied, w.DeniedCodes)
		data["deniedBy"] = w.DeniedBy
		if err := d.Enqueue(tx, w.WorkspaceID, ShareDenied, data); err != nil {
			return err
		}
	}
	return nil
}
