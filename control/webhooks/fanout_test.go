package webhooks

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/privateconnect/pc/control/store"
	"github.com/privateconnect/pc/control/store/badgerstore"
)

func openBadger(t *testing.T) store.KV {
	t.Helper()
	bs, err := badgerstore.Open(badgerstore.Options{Dir: filepath.Join(t.TempDir(), "db"), MinFreeBytes: -1})
	require.NoError(t, err)
	t.Cleanup(func() { bs.Close() })
	return store.WithCommitHooks(bs)
}

// fanOutAll runs the worker's fan-out until no event is left.
func fanOutAll(t *testing.T, d *Dispatcher) {
	t.Helper()
	for i := 0; d.fanOut(); i++ {
		require.Less(t, i, 10000, "the fan-out does not end")
	}
}

// TestEventsFanOutOutsideTheirTransaction: a change's transaction grows by
// one record per event, whatever the number of webhooks. 30 events for 100
// webhooks in one transaction (an edge report carries up to 200) went past
// Badger's transaction size when each event wrote its 100 deliveries there.
// The worker writes the 3,000 deliveries afterwards, in small transactions.
func TestEventsFanOutOutsideTheirTransaction(t *testing.T) {
	kv := openBadger(t)
	d, err := New(kv, fastOptions()) // not started: the test runs the fan-out
	require.NoError(t, err)
	t.Cleanup(d.Close)
	hooks := map[string]bool{}
	for range 100 {
		id, _ := addHook(t, kv, d, "https://receiver.example/hook", AgentConnected)
		hooks[id] = true
	}
	late := time.Now()
	const events = 30
	require.NoError(t, kv.Update(context.Background(), func(tx store.Tx) error {
		for i := range events {
			if err := d.Enqueue(tx, "ws", AgentConnected, map[string]any{"agentId": fmt.Sprint("agent-", i)}); err != nil {
				return err
			}
		}
		return nil
	}))
	// A webhook made after the events does not get them; an inactive one neither.
	lateID, _ := addHook(t, kv, d, "https://receiver.example/late", AgentConnected)
	require.True(t, time.Now().After(late))
	fanOutAll(t, d)

	require.NoError(t, kv.View(context.Background(), func(tx store.Tx) error {
		n, err := store.WebhookEventsPending(tx)
		require.NoError(t, err)
		require.Zero(t, n, "events left after the fan-out")
		depth, err := store.OutboxDepth(tx)
		require.NoError(t, err)
		require.Equal(t, 100*events, depth)
		return nil
	}))
	for id := range hooks {
		ds := deliveries(t, kv, id)
		require.Len(t, ds, events, "webhook %s", id)
		seen := map[string]bool{}
		for _, x := range ds {
			require.Equal(t, store.DeliveryPending, x.Status)
			var b struct {
				ID, Event, WorkspaceID string
				Data                   map[string]string
			}
			require.NoError(t, json.Unmarshal(x.Body, &b))
			require.Equal(t, x.EventID, b.ID)
			require.Equal(t, AgentConnected, b.Event)
			require.Equal(t, "ws", b.WorkspaceID)
			seen[b.Data["agentId"]] = true
		}
		require.Len(t, seen, events)
	}
	require.Empty(t, deliveries(t, kv, lateID))
}

// TestPlatformEventsFanOutToWorkspaces: an edge event is one record in the
// transaction that raised it, expanded into one event for each workspace
// with a webhook subscribed to it, each with its own id.
func TestPlatformEventsFanOutToWorkspaces(t *testing.T) {
	kv := openBadger(t)
	d, err := New(kv, fastOptions())
	require.NoError(t, err)
	t.Cleanup(d.Close)
	const workspaces = 3*fanOutChunk + 5
	wantHook := map[string]string{}
	require.NoError(t, kv.Update(context.Background(), func(tx store.Tx) error {
		for i := range workspaces {
			ws := fmt.Sprintf("ws-%03d", i)
			if err := store.CreateWorkspace(tx, &store.Workspace{ID: ws, Name: ws, CreatedAt: time.Now()}); err != nil {
				return err
			}
			if i%3 == 0 {
				continue // no webhook
			}
			events := []string{EdgeConnected}
			if i%3 == 1 {
				events = []string{EdgeDisconnected} // another event
			} else {
				wantHook[ws] = "hook-" + ws
			}
			if err := store.CreateWebhook(tx, &store.Webhook{ID: "hook-" + ws, WorkspaceID: ws, URL: "https://receiver.example/",
				Events: events, IsActive: true, Secret: d.Seal("hook-"+ws, NewSecret()), CreatedAt: time.Now()}); err != nil {
				return err
			}
		}
		return nil
	}))
	require.NoError(t, kv.Update(context.Background(), func(tx store.Tx) error {
		return d.EnqueueAll(tx, EdgeConnected, map[string]any{"edgeId": "edge-1"})
	}))
	fanOutAll(t, d)
	ids := map[string]bool{}
	require.NoError(t, kv.View(context.Background(), func(tx store.Tx) error {
		for i := range workspaces {
			ws := fmt.Sprintf("ws-%03d", i)
			ds, _, err := store.ListDeliveries(tx, ws, "hook-"+ws, "", 0, nil)
			require.NoError(t, err)
			if wantHook[ws] == "" {
				require.Empty(t, ds, ws)
				continue
			}
			require.Len(t, ds, 1, ws)
			var b struct{ ID, Event, WorkspaceID string }
			require.NoError(t, json.Unmarshal(ds[0].Body, &b))
			require.Equal(t, ws, b.WorkspaceID)
			require.Equal(t, EdgeConnected, b.Event)
			ids[b.ID] = true
		}
		n, err := store.WebhookEventsPending(tx)
		require.Zero(t, n)
		return err
	}))
	require.Len(t, ids, len(wantHook), "one event id per workspace")
}
