package storetest

import (
	"bytes"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/privateconnect/pc/control/store"
)

// testPlugins: plugin metadata is workspace-scoped and unique by name and
// version; module bytes are stored once per SHA-256 and deleted with their
// last plugin; multi-MiB modules round-trip; shares using a plugin are
// found; UsePlugin makes a concurrent delete see the share.
func testPlugins(t *testing.T, kv store.KV) {
	modA := bytes.Repeat([]byte("module-a"), 1000)
	modB := []byte("module-b")
	sumA := store.ModuleSHA256(modA)
	pl := func(ws, id, name, version string) *store.Plugin {
		return &store.Plugin{ID: id, WorkspaceID: ws, Name: name, Version: version, Exports: []string{"handle_request", "memory"}, CreatedAt: t0}
	}
	update(t, kv, func(tx store.Tx) error { return store.CreatePlugin(tx, pl("wa", "p1", "geo", "1.0.0"), modA) })
	update(t, kv, func(tx store.Tx) error { return store.CreatePlugin(tx, pl("wa", "p2", "geo", "1.1.0"), modA) })
	update(t, kv, func(tx store.Tx) error { return store.CreatePlugin(tx, pl("wb", "p3", "geo", "1.0.0"), modA) })
	update(t, kv, func(tx store.Tx) error { return store.CreatePlugin(tx, pl("wa", "p4", "other", "1"), modB) })

	// Same name and version in the same workspace: conflict, nothing written.
	err := kv.Update(ctx, func(tx store.Tx) error { return store.CreatePlugin(tx, pl("wa", "p5", "geo", "1.0.0"), modB) })
	var ce *store.ConflictError
	require.ErrorAs(t, err, &ce)
	assert.Equal(t, "version", ce.Field)
	// A wrong SHA-256 is refused.
	bad := pl("wa", "p6", "x", "1")
	bad.SHA256 = "00"
	require.Error(t, kv.Update(ctx, func(tx store.Tx) error { return store.CreatePlugin(tx, bad, modB) }))
	require.Error(t, kv.Update(ctx, func(tx store.Tx) error { return store.CreatePlugin(tx, pl("wa", "p7", "y", "1"), nil) }))

	require.NoError(t, view(t, kv, func(tx store.Tx) error {
		p, err := store.GetPlugin(tx, "wa", "p1")
		require.NoError(t, err)
		assert.Equal(t, sumA, p.SHA256)
		assert.Equal(t, len(modA), p.SizeBytes)
		assert.Equal(t, []string{"handle_request", "memory"}, p.Exports)
		assert.True(t, p.CreatedAt.Equal(t0))
		_, err = store.GetPlugin(tx, "wb", "p1")
		assert.ErrorIs(t, err, store.ErrNotFound, "another workspace's plugin is not found")
		var nf *store.NotFoundError
		require.ErrorAs(t, err, &nf)
		assert.Equal(t, "plugin", nf.Kind)
		_, err = store.GetPlugin(tx, "wa", "p5")
		assert.ErrorIs(t, err, store.ErrNotFound)
		b, err := store.GetPluginModule(tx, sumA)
		require.NoError(t, err)
		assert.Equal(t, modA, b)
		_, err = store.GetPluginModule(tx, store.ModuleSHA256([]byte("nothing")))
		assert.ErrorIs(t, err, store.ErrNotFound)

		page, next, err := store.ListPlugins(tx, "wa", "", 2)
		require.NoError(t, err)
		assert.Len(t, page, 2)
		require.NotEmpty(t, next)
		rest, next, err := store.ListPlugins(tx, "wa", next, 2)
		require.NoError(t, err)
		assert.Len(t, rest, 1)
		assert.Empty(t, next)
		n, err := store.Count(tx, "wa", "plugin")
		require.NoError(t, err)
		assert.Equal(t, 3, n, "workspace usage counts plugins")
		// The module is stored once, whatever the number of plugins using it.
		blobs := 0
		require.NoError(t, tx.Scan([]byte("wasm/"), nil, func(k, v []byte) (bool, error) { blobs++; return true, nil }))
		assert.Equal(t, 2, blobs)
		return nil
	}))

	// Shares using a plugin: revoked ones do not count.
	update(t, kv, func(tx store.Tx) error {
		for _, sh := range []*store.Share{
			{ID: "s1", WorkspaceID: "wa", ServiceID: "svc", TokenHash: "t1", Plugins: []store.PluginRef{{PluginID: "p4"}, {PluginID: "p1"}}},
			{ID: "s2", WorkspaceID: "wa", ServiceID: "svc", TokenHash: "t2", Plugins: []store.PluginRef{{PluginID: "p1"}}, RevokedAt: &t0},
			{ID: "s3", WorkspaceID: "wa", ServiceID: "svc", TokenHash: "t3", Plugins: []store.PluginRef{{PluginID: "builtin:ip-allow"}}},
		} {
			if err := store.CreateShare(tx, sh); err != nil {
				return err
			}
		}
		return nil
	})
	require.NoError(t, view(t, kv, func(tx store.Tx) error {
		ids, err := store.SharesUsingPlugin(tx, "wa", "p1")
		require.NoError(t, err)
		assert.Equal(t, []string{"s1"}, ids)
		ids, err = store.SharesUsingPlugin(tx, "wa", "p2")
		require.NoError(t, err)
		assert.Empty(t, ids)
		ids, err = store.SharesUsingPlugin(tx, "wb", "p1")
		require.NoError(t, err)
		assert.Empty(t, ids, "another workspace's shares")
		return nil
	}))

	// UsePlugin returns the plugin and leaves it unchanged.
	update(t, kv, func(tx store.Tx) error {
		p, err := store.UsePlugin(tx, "wa", "p2")
		require.NoError(t, err)
		assert.Equal(t, "1.1.0", p.Version)
		_, err = store.UsePlugin(tx, "wb", "p2")
		assert.ErrorIs(t, err, store.ErrNotFound)
		return nil
	})

	// Deleting keeps the module while another plugin (of any workspace) uses it.
	update(t, kv, func(tx store.Tx) error { _, err := store.DeletePlugin(tx, "wa", "p1"); return err })
	update(t, kv, func(tx store.Tx) error { _, err := store.DeletePlugin(tx, "wa", "p2"); return err })
	require.NoError(t, view(t, kv, func(tx store.Tx) error {
		_, err := store.GetPlugin(tx, "wa", "p1")
		assert.ErrorIs(t, err, store.ErrNotFound)
		_, err = store.GetPluginModule(tx, sumA)
		assert.NoError(t, err, "workspace wb still uses the module")
		return nil
	}))
	_ = kv.Update(ctx, func(tx store.Tx) error {
		_, err := store.DeletePlugin(tx, "wa", "p1")
		assert.ErrorIs(t, err, store.ErrNotFound)
		return nil
	})
	update(t, kv, func(tx store.Tx) error { _, err := store.DeletePlugin(tx, "wb", "p3"); return err })
	// The name and version are free again.
	update(t, kv, func(tx store.Tx) error { return store.CreatePlugin(tx, pl("wa", "p8", "geo", "1.0.0"), modB) })
	require.NoError(t, view(t, kv, func(tx store.Tx) error {
		_, err := store.GetPluginModule(tx, sumA)
		assert.ErrorIs(t, err, store.ErrNotFound, "the last plugin's deletion deletes the module")
		left := 0
		require.NoError(t, tx.Scan([]byte("wasmref/"+sumA), nil, func(k, v []byte) (bool, error) { left++; return true, nil }))
		assert.Zero(t, left)
		return nil
	}))

	// A module of several MiB (the API accepts up to 16 MiB) round-trips.
	big := bytes.Repeat([]byte("0123456789abcdef"), 12<<20/16)
	update(t, kv, func(tx store.Tx) error { return store.CreatePlugin(tx, pl("wa", "big", "big", "1"), big) })
	require.NoError(t, view(t, kv, func(tx store.Tx) error {
		b, err := store.GetPluginModule(tx, store.ModuleSHA256(big))
		require.NoError(t, err)
		assert.True(t, bytes.Equal(big, b))
		return nil
	}))
}
