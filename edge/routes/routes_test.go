package routes

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
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

// TestApplyMatchesBuild applies random batches of changes (shares, some
// revoked, attaching plugins, services moving between agents and
// subdomains, agents, plugins uploaded and deleted) and checks after each
// that every index of the applied table, the per-agent service lists and
// the per-plugin attachment counts included, equals that of a table built
// from scratch from its snapshot, that the counts equal those counted from
// the snapshot's shares (attachedFromSnapshot), and that the table applied
// to did not change.
func TestApplyMatchesBuild(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	tb := Empty()
	version := int64(0)
	maxAttached := 0
	for step := 0; step < 400; step++ {
		var changes []config.Change
		for range 1 + rng.IntN(8) {
			version++
			c := config.Change{Version: version, Op: config.OpUpsert}
			if rng.IntN(4) == 0 {
				c.Op = config.OpDelete
			}
			switch rng.IntN(4) {
			case 0:
				c.Kind, c.ID = config.KindShare, fmt.Sprintf("s%d", rng.IntN(40))
				if c.Op == config.OpUpsert {
					sum := sha256.Sum256(fmt.Appendf(nil, "%s-%d", c.ID, version))
					c.Share = &config.Share{ID: c.ID, ServiceID: fmt.Sprintf("v%d", rng.IntN(10)), TokenHash: hex.EncodeToString(sum[:]),
						Revoked: rng.IntN(6) == 0}
					// Up to three attachments of eight plugin ids, so a
					// chain may name one plugin twice; p6 and p7 are never
					// uploaded.
					for range rng.IntN(4) {
						c.Share.Plugins = append(c.Share.Plugins, config.PluginAttachment{PluginID: fmt.Sprintf("p%d", rng.IntN(8))})
					}
				}
			case 1:
				i := rng.IntN(10)
				c.Kind, c.ID = config.KindService, fmt.Sprintf("v%d", i)
				if c.Op == config.OpUpsert {
					c.Service = &config.Service{ID: c.ID, AgentID: fmt.Sprintf("a%d", rng.IntN(5)),
						IsPublic: rng.IntN(2) == 0, Subdomain: fmt.Sprintf("d%d-%d", i, rng.IntN(3))}
				}
			case 2:
				c.Kind, c.ID = config.KindPlugin, fmt.Sprintf("p%d", rng.IntN(6))
				if c.Op == config.OpUpsert {
					c.Plugin = &config.Plugin{ID: c.ID, SHA256: fmt.Sprint(version)}
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
		snap := n.Snapshot()
		built, err := Build(snap)
		if err != nil {
			t.Fatal(err)
		}
		if got, want := indexes(n), indexes(built); !reflect.DeepEqual(got, want) {
			t.Fatalf("step %d: applied table differs from a built one:\n%v\n%v", step, got, want)
		}
		want := attachedFromSnapshot(snap)
		for _, id := range []string{"p0", "p1", "p2", "p3", "p4", "p5", "p6", "p7"} {
			if got := attachments(n, id); got != want[id] {
				t.Fatalf("step %d: %s attached to %d shares, counted %d in the snapshot", step, id, got, want[id])
			}
		}
		var ids []string
		for _, p := range n.AttachedPlugins() {
			ids = append(ids, p.ID)
			if _, ok := n.Plugin(p.ID); !ok || want[p.ID] == 0 {
				t.Fatalf("step %d: AttachedPlugins lists %s, attached to %d shares, in the table: %v", step, p.ID, want[p.ID], ok)
			}
		}
		for id, c := range want {
			if _, ok := n.Plugin(id); ok && c > 0 && !slices.Contains(ids, id) {
				t.Fatalf("step %d: AttachedPlugins misses %s (%d shares)", step, id, c)
			}
		}
		maxAttached = max(maxAttached, len(ids))
		tb = n
	}
	if s, v, a := tb.Counts(); s == 0 || v == 0 || a == 0 || maxAttached < 3 {
		t.Fatalf("the walk left %d shares, %d services, %d agents, at most %d plugins attached: it tests little", s, v, a, maxAttached)
	}
}

// attachedFromSnapshot counts, per plugin id, the shares of s not revoked
// whose plugin list names it (each share once): what Table.Attachments
// keeps as changes apply, counted the slow way.
func attachedFromSnapshot(s *config.Snapshot) map[string]int {
	out := map[string]int{}
	for _, sh := range s.Shares {
		if sh.Revoked {
			continue
		}
		seen := map[string]bool{}
		for _, p := range sh.Plugins {
			if !seen[p.PluginID] {
				seen[p.PluginID] = true
				out[p.PluginID]++
			}
		}
	}
	return out
}

// TestAttachmentCounts follows one plugin through the cases of
// TestApplyMatchesBuild one at a time: attached before it is uploaded,
// twice by one share, by a share whose list changes, by a revoked share,
// by a share replaced by another with its token hash, and by shares
// deleted.
func TestAttachmentCounts(t *testing.T) {
	share := func(id string, revoked bool, plugins ...string) config.Change {
		sum := sha256.Sum256([]byte(id))
		sh := &config.Share{ID: id, TokenHash: hex.EncodeToString(sum[:]), Revoked: revoked}
		for _, p := range plugins {
			sh.Plugins = append(sh.Plugins, config.PluginAttachment{PluginID: p})
		}
		return config.Change{Op: config.OpUpsert, Kind: config.KindShare, ID: id, Share: sh}
	}
	del := func(kind, id string) config.Change { return config.Change{Op: config.OpDelete, Kind: kind, ID: id} }
	twin := share("d", false, "q") // c's token hash: replaces c
	twin.Share.TokenHash = share("c", false).Share.TokenHash
	plugin := config.Change{Op: config.OpUpsert, Kind: config.KindPlugin, ID: "p", Plugin: &config.Plugin{ID: "p", SHA256: "00"}}
	tb := Empty()
	for i, st := range []struct {
		changes  []config.Change
		p, q     int  // Attachments of p and q after
		attached bool // p listed by AttachedPlugins
	}{
		{[]config.Change{share("a", false, "p", "p")}, 1, 0, false},               // not uploaded yet; named twice
		{[]config.Change{plugin}, 1, 0, true},                                     // uploaded after
		{[]config.Change{share("b", false, "q", "p")}, 2, 1, true},                // a second share
		{[]config.Change{share("a", false, "q")}, 1, 2, true},                     // a's list changes
		{[]config.Change{share("b", true, "q", "p")}, 0, 1, false},                // b revoked
		{[]config.Change{share("b", false, "p"), del("share", "b")}, 0, 1, false}, // in and out in one batch
		{[]config.Change{share("c", false, "p")}, 1, 1, true},
		{[]config.Change{del("plugin", "p")}, 1, 1, false}, // deleted, still named
		{[]config.Change{twin}, 0, 2, false},
		{[]config.Change{del("share", "c"), del("share", "d"), del("share", "a"), del("share", "zz")}, 0, 0, false},
	} {
		n, err := tb.Apply(int64(i+1), st.changes)
		if err != nil {
			t.Fatal(err)
		}
		attached := slices.ContainsFunc(n.AttachedPlugins(), func(p config.Plugin) bool { return p.ID == "p" })
		if attachments(n, "p") != st.p || attachments(n, "q") != st.q || attached != st.attached {
			t.Fatalf("step %d: p attached to %d shares, q to %d, p listed %v; want %d, %d, %v",
				i, attachments(n, "p"), attachments(n, "q"), attached, st.p, st.q, st.attached)
		}
		tb = n
	}
	if tb.attached.len() != 0 {
		t.Fatalf("no share left, yet %d plugin ids are counted", tb.attached.len())
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

// BenchmarkApplyOneShareWithPlugin is one share attaching a plugin created
// at 100,000 shares that attach 1,000 plugins: the attachment counts cost
// a copy of one of their 256 shards.
func BenchmarkApplyOneShareWithPlugin(b *testing.B) {
	snap := &config.Snapshot{Version: 1}
	for i := range 1000 {
		snap.Plugins = append(snap.Plugins, config.Plugin{ID: fmt.Sprintf("plugin-%d", i), SHA256: "00"})
	}
	for i := range 100_000 {
		sum := sha256.Sum256(fmt.Appendf(nil, "token-%d", i))
		snap.Shares = append(snap.Shares, config.Share{ID: fmt.Sprintf("share-%d", i), ServiceID: "v", TokenHash: hex.EncodeToString(sum[:]),
			Plugins: []config.PluginAttachment{{PluginID: fmt.Sprintf("plugin-%d", i%1000)}}})
	}
	tb, err := Build(snap)
	if err != nil {
		b.Fatal(err)
	}
	sum := sha256.Sum256([]byte("new"))
	ch := []config.Change{{Version: 2, Op: config.OpUpsert, Kind: config.KindShare, ID: "new",
		Share: &config.Share{ID: "new", ServiceID: "v", TokenHash: hex.EncodeToString(sum[:]),
			Plugins: []config.PluginAttachment{{PluginID: "plugin-7"}}}}}
	for b.Loop() {
		if _, err := tb.Apply(2, ch); err != nil {
			b.Fatal(err)
		}
	}
}

// attachments is how many shares not revoked name the plugin id in their
// chain, as the table counts them.
func attachments(t *Table, pluginID string) int {
	n, _ := t.attached.get(strShard(pluginID), pluginID)
	return int(n)
}
