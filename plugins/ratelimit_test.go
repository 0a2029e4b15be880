package plugins

import (
	"fmt"
	"hash/maphash"
	"testing"
)

// TestRateLimitFloodKeepsOtherPluginsCounters: plugins of different
// workspaces share the edge's rate_limit store. One plugin calling
// rate_limit with ever new keys (a few requests to its share suffice) must
// not evict another plugin's counters, which would reset that plugin's
// limits (a share's rate limit, the password built-in's guess limit).
func TestRateLimitFloodKeepsOtherPluginsCounters(t *testing.T) {
	const maxKeys = 64 * 16
	rl := newRateLimiter(maxKeys)
	seed := maphash.MakeSeed()
	now := int64(1_000_000_000)
	const window = 60_000
	victims := make([][]byte, 64)
	for i := range victims {
		victims[i] = fmt.Appendf(nil, "victim-%d", i)
		for range 3 {
			if !rl.allow(seed, "plugin-a", victims[i], 3, window, now) {
				t.Fatalf("victim key %d refused within its limit", i)
			}
		}
		if rl.allow(seed, "plugin-a", victims[i], 3, window, now) {
			t.Fatalf("victim key %d allowed over its limit", i)
		}
	}
	// Another plugin floods the store with new keys, many times its size.
	for i := range 20 * maxKeys {
		rl.allow(seed, "plugin-b", fmt.Appendf(nil, "flood-%d", i), 1000, window, now+1)
	}
	reset := 0
	for i, k := range victims {
		if rl.allow(seed, "plugin-a", k, 3, window, now+2) {
			reset++
			t.Logf("victim key %d: counter evicted by another plugin", i)
		}
	}
	if reset > 0 {
		t.Fatalf("%d of %d counters of plugin-a were reset by plugin-b's keys", reset, len(victims))
	}
	// The flooding plugin still gets counters of its own (its oldest are
	// evicted, not refused).
	if !rl.allow(seed, "plugin-b", []byte("fresh"), 1, window, now+3) {
		t.Fatal("the flooding plugin's new key was refused")
	}
}
