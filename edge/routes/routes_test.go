package routes

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"reflect"
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

// TestApplyMatchesBuild applies random batches of changes (shares,
// services moving between agents and subdomains, agents) and checks after
// each that every index of the applied table, the per-agent service lists
// included, equals that of a table built from scratch from its snapshot,
// and that the table applied to did not change.
func TestApplyMatchesBuild(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	tb := Empty()
	version := int64(0)
	for step := 0; step < 400; step++ {
		var changes []config.Change
		for range 1 + rng.IntN(8) {
			version++
			c := config.Change{Version: version, Op: config.OpUpsert}
			if rng.IntN(4) == 0 {
				c.Op = config.OpDelete
			}
			switch rng.IntN(3) {
			case 0:
				c.Kind, c.ID = config.KindShare, fmt.Sprintf("s%d", rng.IntN(40))
				if c.Op == config.OpUpsert {
					sum := sha256.Sum256(fmt.Appendf(nil, "%s-%d", c.ID, version))
					c.Share = &config.Share{ID: c.ID, ServiceID: fmt.Sprintf("v%d", rng.IntN(10)), TokenHash: hex.EncodeToString(sum[:])}
				}
			case 1:
				i := rng.IntN(10)
				c.Kind, c.ID = config.KindService, fmt.Sprintf("v%d", i)
				if c.Op == config.OpUpsert {
					c.Service = &config.Service{ID: c.ID, AgentID: fmt.Sprintf("a%d", rng.IntN(5)),
						IsPublic: rng.IntN(2) == 0, Subdomain: fmt.Sprintf("d%d-%d", i, rng.IntN(3))}
				}
			default:
				c.Kind, c.ID = config.KindAgent, fmt.Sprintf("a%d", rng.IntN(5))
				if c.Op == config.OpUpsert {
					sum := sha256.Sum256([]byte(c.ID))
					c.Agent = &config.Agent{ID: c.ID, TokenHash: hex.EncodeToString(sum[:]), Revoked: rng.IntN(2) == 0}
				}
			}
			changes = append(changes, c)
		}
		before := indexes(tb)
		n, err := tb.Apply(version, changes)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(before, indexes(tb)) {
			t.Fatalf("step %d: Apply changed the table it was applied to", step)
		}
		built, err := Build(n.Snapshot())
		if err != nil {
			t.Fatal(err)
		}
		if got, want := indexes(n), indexes(built); !reflect.DeepEqual(got, want) {
			t.Fatalf("step %d: applied table differs from a built one:\n%v\n%v", step, got, want)
		}
		tb = n
	}
	if s, v, a := tb.Counts(); s == 0 || v == 0 || a == 0 {
		t.Fatalf("the walk left %d shares, %d services, %d agents: it tests little", s, v, a)
	}
}

// BenchmarkApplyOneShare is one share created at 100,000 shares: what every
// API change costs each edge before its atomic swap.
func BenchmarkApplyOneShare(b *testing.B) {
	snap := &config.Snapshot{Version: 1}
	for i := range 100_000 {
		sum := sha256.Sum256(fmt.Appendf(nil, "token-%d", i))
		snap.Shares = append(snap.Shares, config.Share{ID: fmt.Sprintf("share-%d", i), ServiceID: "v", TokenHash: hex.EncodeToString(sum[:])})
	}
	tb, err := Build(snap)
	if err != nil {
		b.Fatal(err)
	}
	sum := sha256.Sum256([]byte("new"))
	ch := []config.Change{{Version: 2, Op: config.OpUpsert, Kind: config.KindShare, ID: "new",
		Share: &config.Share{ID: "new", ServiceID: "v", TokenHash: hex.EncodeToString(sum[:])}}}
	for b.Loop() {
		if _, err := tb.Apply(2, ch); err != nil {
			b.Fatal(err)
		}
	}
}
