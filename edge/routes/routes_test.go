package routes

import (
	"crypto/sha256"
	"encoding/hex"
	"testing"

	"github.com/privateconnect/pc/internal/config"
)

// TestApplySkipsChangesTheTableHolds: a change at or below the table's
// version is already in it (a batch straddling a snapshot) and is not
// applied again; later ones are.
func TestApplySkipsChangesTheTableHolds(t *testing.T) {
	sum := sha256.Sum256([]byte("foo"))
	hash := hex.EncodeToString(sum[:])
	tb, err := Build(&config.Snapshot{Version: 10, Shares: []config.Share{{ID: "s1", TokenHash: hash}}})
	if err != nil {
		t.Fatal(err)
	}
	n, err := tb.Apply(11, []config.Change{
		{Version: 9, Op: config.OpDelete, Kind: config.KindShare, ID: "s1"},
		{Version: 11, Op: config.OpUpsert, Kind: config.KindShare, ID: "s2", Share: &config.Share{ID: "s2", TokenHash: "00" + hash[2:]}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := n.ShareByToken([]byte("foo")); !ok {
		t.Fatal("a change the table already held (version 9 < 10) was applied again")
	}
	if shares, _, _ := n.Counts(); shares != 2 || n.Version != 11 {
		t.Fatalf("%d shares at version %d, want 2 at 11", shares, n.Version)
	}
}
