package plugins

import (
	"sync"
	"sync/atomic"
	"time"
)

// tokenBucket rate-limits a plugin's log lines (guest logs and failure reports).
type tokenBucket struct {
	mu      sync.Mutex
	rate    float64 // tokens per second
	burst   float64
	tokens  float64
	last    time.Time
	dropped atomic.Int64
}

func (b *tokenBucket) init(rate, burst float64) {
	b.rate, b.burst, b.tokens = rate, burst, burst
	b.last = time.Now()
}

func (b *tokenBucket) allow() bool {
	now := time.Now()
	b.mu.Lock()
	b.tokens = min(b.burst, b.tokens+now.Sub(b.last).Seconds()*b.rate)
	b.last = now
	ok := b.tokens >= 1
	if ok {
		b.tokens--
	}
	b.mu.Unlock()
	if !ok {
		b.dropped.Add(1)
	}
	return ok
}

func (b *tokenBucket) takeDropped() int64 { return b.dropped.Swap(0) }
