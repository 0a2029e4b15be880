package push

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/privateconnect/pc/control/store"
	"github.com/privateconnect/pc/internal/config"
)

// TestPluginChangesAndSnapshot: an uploaded plugin reaches edges as an
// upsert (metadata with the module's sha256 and limits), its deletion as a
// delete, and snapshots carry every workspace's plugins.
func TestPluginChangesAndSnapshot(t *testing.T) {
	h, kv := newHub(t, Options{})
	p := &store.Plugin{ID: "p1", WorkspaceID: "ws", Name: "geo", Version: "1", FailOpen: true, TimeoutMs: 20, MemoryLimitBytes: 8 << 20}
	require.NoError(t, kv.Update(ctx, func(tx store.Tx) error { return store.CreatePlugin(tx, p, []byte("wasm")) }))
	ch, _ := stream(t, h, h.Epoch(), h.Version())
	require.Equal(t, config.MsgChanges, recv(t, ch).Type)

	require.NoError(t, h.Publish(ctx, Plugin("ws", "p1")))
	m := recv(t, ch)
	require.Len(t, m.Changes, 1)
	c := m.Changes[0]
	assert.Equal(t, config.OpUpsert, c.Op)
	assert.Equal(t, config.KindPlugin, c.Kind)
	require.NotNil(t, c.Plugin)
	assert.Equal(t, config.Plugin{ID: "p1", Name: "geo", SHA256: store.ModuleSHA256([]byte("wasm")), FailOpen: true, TimeoutMs: 20, MemoryLimitBytes: 8 << 20}, *c.Plugin)

	snap, err := h.Snapshot(ctx)
	require.NoError(t, err)
	require.Len(t, snap.Plugins, 1)
	assert.Equal(t, "p1", snap.Plugins[0].ID)

	require.NoError(t, kv.Update(ctx, func(tx store.Tx) error { _, err := store.DeletePlugin(tx, "ws", "p1"); return err }))
	require.NoError(t, h.Publish(ctx, Plugin("ws", "p1")))
	m = recv(t, ch)
	require.Len(t, m.Changes, 1)
	assert.Equal(t, config.Change{Version: m.Changes[0].Version, Op: config.OpDelete, Kind: config.KindPlugin, ID: "p1"}, m.Changes[0])
	snap, err = h.Snapshot(ctx)
	require.NoError(t, err)
	assert.Empty(t, snap.Plugins)
}
