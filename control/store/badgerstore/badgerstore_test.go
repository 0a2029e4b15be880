package badgerstore_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/privateconnect/pc/control/store"
	"github.com/privateconnect/pc/control/store/badgerstore"
	"github.com/privateconnect/pc/control/store/storetest"
)

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.KV {
		s, err := badgerstore.Open(badgerstore.Options{Dir: t.TempDir()})
		require.NoError(t, err)
		return s
	})
}

func TestDurableAcrossReopen(t *testing.T) {
	dir := t.TempDir()
	s, err := badgerstore.Open(badgerstore.Options{Dir: dir})
	require.NoError(t, err)
	ctx := context.Background()
	require.NoError(t, s.Update(ctx, func(tx store.Tx) error { return tx.Put([]byte("k"), []byte("v")) }))
	require.NoError(t, s.Close())
	s, err = badgerstore.Open(badgerstore.Options{Dir: dir})
	require.NoError(t, err)
	defer s.Close()
	require.NoError(t, s.View(ctx, func(tx store.Tx) error {
		v, err := tx.Get([]byte("k"))
		require.Equal(t, "v", string(v))
		return err
	}))
}
