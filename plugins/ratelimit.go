package plugins

import (
	"hash/maphash"
	"sync"
)

// rateLimiter is the rate_limit import's shared counter store: a sliding window approximated
// from two fixed windows (the previous window's count weighted by how much of it still
// overlaps the sliding window, plus the current count), per (plugin id, window, key).
//
// Keys are stored as 64-bit maphash values under a per-process random seed, so a lookup does
// not allocate and a guest cannot engineer collisions. Memory is bounded: each of the shards
// holds at most maxKeys/shards entries; expired entries are swept every 10 s and when a shard
// is full; if it is still full, an entry is evicted from the workspace holding the most entries
// of the shard (Request.Tenant), and within it from the plugin holding the most. The store is
// shared by the plugins of every workspace: a workspace whose plugins call rate_limit with ever
// new keys evicts its own counters, never those of a workspace holding fewer (which would reset
// another workspace's limits: the ABI says plugins cannot touch each other's counters), and
// within a workspace a plugin flooding with keys a visitor chooses (a header's values) evicts
// its own, not the password built-in's guess limit. Accounting by plugin alone was not enough:
// the built-ins are one plugin for every workspace, so one workspace flooding its own
// rate-limited share evicted others' built-in counters.
type rateLimiter struct {
	perShard int
	shards   [rlShards]rlShard
}

const rlShards = 64

type rlShard struct {
	mu        sync.Mutex
	m         map[uint64]rlEntry
	per       map[rlOwner]int // entries of m per owner
	perTenant map[string]int  // entries of m per workspace
	_         [32]byte        // keep shards on separate cache lines
}

// rlOwner is whom a counter is accounted to for eviction.
type rlOwner struct{ tenant, plugin string }

type rlEntry struct {
	owner  rlOwner // the workspace and plugin the counter belongs to
	start  int64   // start of the current fixed window, ms, aligned to a multiple of window
	window int64   // ms
	curr   int64
	prev   int64
}

func newRateLimiter(maxKeys int) *rateLimiter {
	rl := &rateLimiter{perShard: max(1, maxKeys/rlShards)}
	for i := range rl.shards {
		rl.shards[i].m = make(map[uint64]rlEntry)
		rl.shards[i].per = make(map[rlOwner]int)
		rl.shards[i].perTenant = make(map[string]int)
	}
	return rl
}

func rlHash(seed maphash.Seed, pluginID string, window int64, key []byte) uint64 {
	var h maphash.Hash
	h.SetSeed(seed)
	h.WriteString(pluginID)
	var w [9]byte
	for i := range 8 {
		w[i] = byte(window >> (8 * i))
	}
	h.Write(w[:])
	h.Write(key)
	return h.Sum64()
}

// allow counts one event for key and reports whether it is within limit events per window
// (sliding). Denied events are not counted.
// tenant is the share's workspace, whom the counter is accounted to for eviction with the
// plugin (evictLocked).
func (rl *rateLimiter) allow(seed maphash.Seed, pluginID, tenant string, key []byte, limit, window, nowMs int64) bool {
	owner := rlOwner{tenant, pluginID}
	if limit <= 0 {
		return false
	}
	k := rlHash(seed, pluginID, window, key)
	sh := &rl.shards[k%rlShards]
	start := nowMs - nowMs%window
	sh.mu.Lock()
	e, ok := sh.m[k]
	if !ok {
		if len(sh.m) >= rl.perShard {
			sh.sweepLocked(nowMs)
			if len(sh.m) >= rl.perShard {
				sh.evictLocked(owner)
			}
		}
		e = rlEntry{owner: owner, start: start, window: window}
		sh.per[owner]++
		sh.perTenant[tenant]++
	} else if e.start != start {
		if start-e.start == window {
			e.prev = e.curr
		} else {
			e.prev = 0
		}
		e.curr = 0
		e.start = start
	}
	// Weighted previous window: prev * (window - elapsed) / window, in integer arithmetic
	// (counts and windows are small enough not to overflow).
	elapsed := nowMs - start
	est := e.curr + (e.prev*(window-elapsed)+window-1)/window
	allowed := est < limit
	if allowed {
		e.curr++
	}
	sh.m[k] = e
	sh.mu.Unlock()
	return allowed
}

func (sh *rlShard) sweepLocked(nowMs int64) {
	for k, e := range sh.m {
		if nowMs >= e.start+2*e.window {
			sh.deleteLocked(k, e.owner)
		}
	}
}

// evictLocked removes one entry of the workspace holding the most entries
// of the shard, of its plugin holding the most (the inserting workspace's
// and plugin's own when they hold as many as any).
func (sh *rlShard) evictLocked(inserting rlOwner) {
	tenant, most := inserting.tenant, sh.perTenant[inserting.tenant]
	for t, n := range sh.perTenant {
		if n > most {
			tenant, most = t, n
		}
	}
	if most == 0 {
		return
	}
	victim, most := inserting, -1
	if tenant == inserting.tenant {
		most = sh.per[inserting]
	}
	for o, n := range sh.per {
		if o.tenant == tenant && n > most {
			victim, most = o, n
		}
	}
	for k, e := range sh.m {
		if e.owner == victim {
			sh.deleteLocked(k, victim)
			return
		}
	}
}

func (sh *rlShard) deleteLocked(k uint64, o rlOwner) {
	delete(sh.m, k)
	if n := sh.per[o] - 1; n > 0 {
		sh.per[o] = n
	} else {
		delete(sh.per, o)
	}
	if n := sh.perTenant[o.tenant] - 1; n > 0 {
		sh.perTenant[o.tenant] = n
	} else {
		delete(sh.perTenant, o.tenant)
	}
}

func (rl *rateLimiter) sweep(nowMs int64) {
	for i := range rl.shards {
		sh := &rl.shards[i]
		sh.mu.Lock()
		sh.sweepLocked(nowMs)
		sh.mu.Unlock()
	}
}
