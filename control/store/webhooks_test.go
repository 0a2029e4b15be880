package store_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/privateconnect/pc/control/store"
	"github.com/privateconnect/pc/control/store/badgerstore"
	"github.com/privateconnect/pc/control/store/memstore"
)

// stores runs fn against both KV implementations.
func stores(t *testing.T, fn func(t *testing.T, kv store.KV)) {
	t.Run("mem", func(t *testing.T) { fn(t, memstore.New()) })
	t.Run("badger", func(t *testing.T) {
		kv, err := badgerstore.Open(badgerstore.Options{Dir: t.TempDir()})
		require.NoError(t, err)
		t.Cleanup(func() { kv.Close() })
		fn(t, kv)
	})
}

func TestOutboxOrderAndLifecycle(t *testing.T) {
	stores(t, func(t *testing.T, kv store.KV) {
		ctx := context.Background()
		base := time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)
		var dels []*store.Delivery
		require.NoError(t, kv.Update(ctx, func(tx store.Tx) error {
			require.NoError(t, store.CreateWebhook(tx, &store.Webhook{ID: "h1", WorkspaceID: "ws", URL: "https://x", Events: []string{"share.created"}, IsActive: true}))
			for i := 0; i < 5; i++ {
				due := base.Add(time.Duration(4-i) * time.Second) // due in reverse creation order
				d := &store.Delivery{ID: fmt.Sprintf("d%d", i), WorkspaceID: "ws", WebhookID: "h1", EventID: "e", Event: "share.created",
					Body: []byte(`{"x":1}`), CreatedAt: base.Add(time.Duration(i) * time.Millisecond), NextAttemptAt: &due}
				if err := store.EnqueueDelivery(tx, d); err != nil {
					return err
				}
				dels = append(dels, d)
			}
			return nil
		}))
		var order []string
		require.NoError(t, kv.View(ctx, func(tx store.Tx) error {
			return store.ScanOutbox(tx, func(it store.QueueItem) store.OutboxStep {
				order = append(order, it.DeliveryID)
				d, err := store.DeliveryAt(tx, it)
				require.NoError(t, err)
				require.Equal(t, it.DeliveryID, d.ID)
				require.Equal(t, []byte(`{"x":1}`), d.Body)
				require.Equal(t, "h1", it.WebhookID)
				require.Equal(t, "ws", it.WorkspaceID)
				return store.OutboxNext
			})
		}))
		require.Equal(t, []string{"d4", "d3", "d2", "d1", "d0"}, order, "due order")

		// Reschedule d4 after the others, finish d3.
		require.NoError(t, kv.Update(ctx, func(tx store.Tx) error {
			d, err := store.GetDelivery(tx, "ws", "h1", "d4")
			require.NoError(t, err)
			later := base.Add(time.Hour)
			d.NextAttemptAt = &later
			if err := store.SaveDelivery(tx, d, 0); err != nil {
				return err
			}
			d, err = store.GetDelivery(tx, "ws", "h1", "d3")
			require.NoError(t, err)
			d.Status = store.DeliverySucceeded
			return store.SaveDelivery(tx, d, time.Hour)
		}))
		order = nil
		var depth int
		require.NoError(t, kv.View(ctx, func(tx store.Tx) error {
			var err error
			depth, err = store.OutboxDepth(tx)
			require.NoError(t, err)
			return store.ScanOutbox(tx, func(it store.QueueItem) store.OutboxStep {
				order = append(order, it.DeliveryID)
				return store.OutboxNext
			})
		}))
		require.Equal(t, []string{"d2", "d1", "d0", "d4"}, order)
		require.Equal(t, 4, depth)

		// Listing: newest first; the finished one is still listed.
		require.NoError(t, kv.View(ctx, func(tx store.Tx) error {
			ds, next, err := store.ListDeliveries(tx, "ws", "h1", "", 3, nil)
			require.NoError(t, err)
			require.Equal(t, []string{"d4", "d3", "d2"}, ids(ds))
			ds, _, err = store.ListDeliveries(tx, "ws", "h1", next, 3, nil)
			require.NoError(t, err)
			require.Equal(t, []string{"d1", "d0"}, ids(ds))
			_, err = store.GetDelivery(tx, "ws", "other", "d1")
			require.True(t, errors.Is(err, store.ErrNotFound), "a delivery is found only under its webhook")
			_, err = store.GetDelivery(tx, "ws2", "h1", "d1")
			require.True(t, errors.Is(err, store.ErrNotFound))
			return nil
		}))

		// Dropping removes the record and the outbox entry.
		require.NoError(t, kv.Update(ctx, func(tx store.Tx) error {
			d, err := store.GetDelivery(tx, "ws", "h1", "d0")
			require.NoError(t, err)
			return store.DropDelivery(tx, d)
		}))
		require.NoError(t, kv.View(ctx, func(tx store.Tx) error {
			n, _ := store.OutboxDepth(tx)
			require.Equal(t, 3, n)
			_, err := store.GetDelivery(tx, "ws", "h1", "d0")
			require.True(t, errors.Is(err, store.ErrNotFound))
			return nil
		}))
	})
}

// TestOutboxQueuesPerWebhook: the scan can leave a webhook's queue for the
// next one's head.
func TestOutboxQueuesPerWebhook(t *testing.T) {
	stores(t, func(t *testing.T, kv store.KV) {
		ctx := context.Background()
		base := time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)
		require.NoError(t, kv.Update(ctx, func(tx store.Tx) error {
			for _, wh := range []string{"a", "b", "c"} {
				for i := 0; i < 3; i++ {
					due := base.Add(time.Duration(i) * time.Second)
					d := &store.Delivery{ID: fmt.Sprintf("%s%d", wh, i), WorkspaceID: "ws", WebhookID: wh, Event: "e", CreatedAt: base, NextAttemptAt: &due}
					if err := store.EnqueueDelivery(tx, d); err != nil {
						return err
					}
				}
			}
			return nil
		}))
		var seen []string
		require.NoError(t, kv.View(ctx, func(tx store.Tx) error {
			return store.ScanOutbox(tx, func(it store.QueueItem) store.OutboxStep {
				seen = append(seen, it.DeliveryID)
				switch it.WebhookID {
				case "a":
					return store.OutboxSkip // a's head only
				case "b":
					return store.OutboxNext
				}
				return store.OutboxStop
			})
		}))
		require.Equal(t, []string{"a0", "b0", "b1", "b2", "c0"}, seen)
	})
}

func ids(ds []store.Delivery) []string {
	var out []string
	for _, d := range ds {
		out = append(out, d.ID)
	}
	return out
}

func TestCommitHooks(t *testing.T) {
	stores(t, func(t *testing.T, raw store.KV) {
		kv := store.WithCommitHooks(raw)
		require.Same(t, kv, store.WithCommitHooks(kv))
		require.Equal(t, raw, store.Unwrap(kv))
		ctx := context.Background()
		ran := 0
		require.NoError(t, kv.Update(ctx, func(tx store.Tx) error {
			require.True(t, store.OnCommit(tx, func() { ran++ }))
			require.Zero(t, ran, "not before the commit")
			return tx.Put([]byte("k"), []byte("v"))
		}))
		require.Equal(t, 1, ran)
		boom := errors.New("boom")
		require.ErrorIs(t, kv.Update(ctx, func(tx store.Tx) error {
			store.OnCommit(tx, func() { ran++ })
			return boom
		}), boom)
		require.Equal(t, 1, ran, "never after a failed transaction")
		require.NoError(t, raw.Update(ctx, func(tx store.Tx) error {
			require.False(t, store.OnCommit(tx, func() { ran++ }))
			return nil
		}))
		require.Equal(t, 1, ran)
	})
}
