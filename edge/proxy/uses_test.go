package proxy

import (
	"sync"
	"sync/atomic"
	"testing"

	"github.com/privateconnect/pc/edge/routes"
	"github.com/privateconnect/pc/internal/config"
)

// TestShareUses: a share with maxUses gives exactly maxUses uses, however
// many refused attempts follow and however many visitors race for the last
// ones; the count the control plane sends (after a restart, or uses on
// other edges) is where the edge counts from, never lower than its own.
func TestShareUses(t *testing.T) {
	take := func(p *Proxy, s *routes.Share) bool { return takeUse(p.uses(s), s.MaxUses) }
	usesLeft := func(p *Proxy, s *routes.Share) int64 { return s.MaxUses - p.uses(s).Load() }
	p := New(Config{})
	share := func(max, uses int64) *routes.Share {
		return &routes.Share{Share: config.Share{ID: "s1", MaxUses: max, Uses: uses}}
	}
	s := share(3, 0)
	for i := 0; i < 3; i++ {
		if !take(p, s) {
			t.Fatalf("use %d refused", i+1)
		}
	}
	for i := 0; i < 10; i++ {
		if take(p, s) {
			t.Fatal("a use beyond maxUses")
		}
	}
	if left := usesLeft(p, s); left != 0 {
		t.Fatalf("usesLeft = %d, want 0", left)
	}
	// maxUses raised to 5: refused attempts did not count, 2 uses are left.
	if left := usesLeft(p, share(5, 0)); left != 2 {
		t.Fatalf("after raising maxUses to 5: usesLeft = %d, want 2", left)
	}
	// The control plane counted 4 (uses on another edge): 1 left.
	if left := usesLeft(p, share(5, 4)); left != 1 {
		t.Fatalf("with the control plane's count 4: usesLeft = %d, want 1", left)
	}
	// An older, lower count changes nothing.
	if left := usesLeft(p, share(5, 1)); left != 1 {
		t.Fatalf("with a lower count: usesLeft = %d, want 1", left)
	}

	// A restarted edge starts from the control plane's count.
	restarted := New(Config{})
	if take(restarted, share(3, 3)) {
		t.Fatal("a restarted edge handed out a use of a used-up share")
	}
	restarted = New(Config{})
	if !take(restarted, share(3, 2)) || take(restarted, share(3, 2)) {
		t.Fatal("a restarted edge with 1 use left did not give exactly 1")
	}

	// Racing visitors get exactly maxUses uses.
	racing := New(Config{})
	rs := &routes.Share{Share: config.Share{ID: "race", MaxUses: 1000}}
	var granted atomic.Int64
	var wg sync.WaitGroup
	for g := 0; g < 16; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 200; i++ {
				if take(racing, rs) {
					granted.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	if granted.Load() != 1000 {
		t.Fatalf("%d uses granted to racing visitors, want 1000", granted.Load())
	}

	// Counters of deleted shares go with the next table.
	table, err := routes.Build(&config.Snapshot{Shares: []config.Share{{ID: "race", ServiceID: "svc", TokenHash: tokenHash("t"), MaxUses: 1000}},
		Services: []config.Service{{ID: "svc", AgentID: "a", Protocol: "http", TargetHost: "127.0.0.1", TargetPort: 80}}})
	if err != nil {
		t.Fatal(err)
	}
	take(racing, share(3, 0))
	racing.ForgetShares(table)
	if _, ok := racing.useCounts.Load("s1"); ok {
		t.Fatal("the counter of a share no longer in the table is kept")
	}
	if left := usesLeft(racing, rs); left != 0 {
		t.Fatalf("a kept share's counter was lost: %d uses left", left)
	}
}
