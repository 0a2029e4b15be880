package plugins

import (
	"fmt"
	"hash/maphash"
	"testing"
)

// TestRateLimitFloodKeepsOtherPluginsCounters: plugins of different
// workspaces share the edge's rate_limit store. One owner calling
// rate_limit with ever new keys (a few requests to its share suffice) must
// not evict another owner's counters, which would reset that owner's
// limits (a share's rate limit, the password built-in's guess limit). The
// owner is the workspace: the built-ins are one plugin id for all of them,
// so a workspace flooding its own rate-limited share must not evict
// another workspace's built-in counters either.
func TestRateLimitFloodKeepsOtherPluginsCounters(t *testing.T) {
	for _, tc := range []struct {
		name                                       string
		victimPlugin, victim, floodPlugin, flooder string
		floodPlugins                               int // the flood spread over this many plugins
	}{
		{"two plugins, no workspace", "plugin-a", "", "plugin-b", "", 1},
		{"one built-in, two workspaces", "builtin:bundle", "ws-a", "builtin:bundle", "ws-b", 1},
		{"a workspace's plugin and its built-in", "builtin:bundle", "ws-a", "plg_custom", "ws-a", 1},
		{"a flood spread over 100 plugins of a workspace", "builtin:bundle", "ws-a", "plg_", "ws-b", 100},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const maxKeys = 64 * 16
			rl := newRateLimiter(maxKeys)
			seed := maphash.MakeSeed()
			now := int64(1_000_000_000)
			const window = 60_000
			victims := make([][]byte, 64)
			for i := range victims {
				victims[i] = fmt.Appendf(nil, "victim-%d", i)
				for range 3 {
					if !rl.allow(seed, tc.victimPlugin, tc.victim, victims[i], 3, window, now) {
						t.Fatalf("victim key %d refused within its limit", i)
					}
				}
				if rl.allow(seed, tc.victimPlugin, tc.victim, victims[i], 3, window, now) {
					t.Fatalf("victim key %d allowed over its limit", i)
				}
			}
			// Another owner floods the store with new keys, many times its size.
			for i := range 20 * maxKeys {
				plugin := tc.floodPlugin
				if tc.floodPlugins > 1 {
					plugin = fmt.Sprint(plugin, i%tc.floodPlugins)
				}
				rl.allow(seed, plugin, tc.flooder, fmt.Appendf(nil, "flood-%d", i), 1000, window, now+1)
			}
			reset := 0
			for i, k := range victims {
				if rl.allow(seed, tc.victimPlugin, tc.victim, k, 3, window, now+2) {
					reset++
					t.Logf("victim key %d: counter evicted by another owner", i)
				}
			}
			if reset > 0 {
				t.Fatalf("%d of %d counters of %s/%s were reset by %s/%s's keys", reset, len(victims), tc.victim, tc.victimPlugin, tc.flooder, tc.floodPlugin)
			}
			// The flooding owner still gets counters of its own (its oldest are
			// evicted, not refused).
			if !rl.allow(seed, tc.floodPlugin, tc.flooder, []byte("fresh"), 1, window, now+3) {
				t.Fatal("the flooding owner's new key was refused")
			}
		})
	}
}
