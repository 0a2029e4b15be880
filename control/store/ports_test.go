package store_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/privateconnect/pc/control/store"
)

// TestTunnelPortsRotate: a freed tunnel port is handed out again only after
// the rest of the range (it was the next one at once, so a deleted tunnel's
// clients reached the next service created, of any workspace).
func TestTunnelPortsRotate(t *testing.T) {
	stores(t, func(t *testing.T, kv store.KV) {
		ctx := context.Background()
		n := 0
		create := func(ws string) (string, int, error) {
			n++
			s := &store.Service{ID: fmt.Sprint("svc-", n), WorkspaceID: ws, Name: fmt.Sprint("s", n), TargetHost: "h", TargetPort: 1, CreatedAt: time.Now()}
			err := kv.Update(ctx, func(tx store.Tx) error { return store.CreateService(tx, s, 100, 104) })
			return s.ID, s.TunnelPort, err
		}
		remove := func(ws, id string) {
			require.NoError(t, kv.Update(ctx, func(tx store.Tx) error { _, err := store.DeleteService(tx, ws, id, time.Now()); return err }))
		}
		ids := map[int]string{}
		for _, want := range []int{100, 101, 102} {
			id, port, err := create("ws-a")
			require.NoError(t, err)
			require.Equal(t, want, port)
			ids[port] = id
		}
		remove("ws-a", ids[101])
		for _, want := range []int{103, 104, 101} { // 101 last, after a wrap
			_, port, err := create("ws-b")
			require.NoError(t, err)
			require.Equal(t, want, port)
		}
		_, _, err := create("ws-b")
		require.True(t, errors.Is(err, store.ErrExhausted), "%v", err)
		remove("ws-a", ids[100])
		_, port, err := create("ws-b")
		require.NoError(t, err)
		require.Equal(t, 100, port)
	})
}
