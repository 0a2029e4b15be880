package proxy

import (
	"sync"
	"time"
)

// limiter is a fixed-window counter per key, sharded to keep contention low.
type limiter struct {
	shards [32]limShard
}

type limShard struct {
	mu sync.Mutex
	m  map[string]*window
}

type window struct {
	start time.Time
	count int
}

func newLimiter() *limiter {
	l := &limiter{}
	for i := range l.shards {
		l.shards[i].m = map[string]*window{}
	}
	return l
}

func fnv(s string) uint32 {
	h := uint32(2166136261)
	for i := 0; i < len(s); i++ {
		h ^= uint32(s[i])
		h *= 16777619
	}
	return h
}

// allow counts one event for key; it returns whether it is within limit,
// the remaining count and when the window resets.
func (l *limiter) allow(key string, limit int, per time.Duration) (bool, int, time.Time) {
	sh := &l.shards[fnv(key)%uint32(len(l.shards))]
	now := time.Now()
	sh.mu.Lock()
	defer sh.mu.Unlock()
	w := sh.m[key]
	if w == nil || now.Sub(w.start) >= per {
		if len(sh.m) > 4096 {
			for k, v := range sh.m { // drop stale windows
				if now.Sub(v.start) >= per {
					delete(sh.m, k)
				}
			}
		}
		w = &window{start: now.Truncate(per)}
		sh.m[key] = w
	}
	reset := w.start.Add(per)
	if w.count >= limit {
		return false, 0, reset
	}
	w.count++
	return true, limit - w.count, reset
}
