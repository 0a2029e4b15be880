package memstore_test

import (
	"testing"

	"github.com/privateconnect/pc/control/store"
	"github.com/privateconnect/pc/control/store/memstore"
	"github.com/privateconnect/pc/control/store/storetest"
)

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.KV { return memstore.New() })
}
