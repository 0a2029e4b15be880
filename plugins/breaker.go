package plugins

import (
	"sync"
	"sync/atomic"
	"time"
)

// breaker is a plugin's circuit breaker. Closed: calls go through and failures are counted in
// six 10-second buckets; threshold failures within the last minute open it. Open: calls are
// refused (503, or skipped for failOpen plugins) until the backoff has passed. Half-open: one
// trial call goes through; success closes the breaker, failure opens it again with the backoff
// doubled (up to 10 minutes). The success path is one atomic load.
type breaker struct {
	state     atomic.Int32
	threshold int
	base      time.Duration

	mu        sync.Mutex
	buckets   [6]struct{ slot, n int64 }
	openUntil time.Time
	backoff   time.Duration
	trial     bool // a half-open trial call is in flight
}

const (
	breakerClosed int32 = iota
	breakerOpen
	breakerHalfOpen
)

const maxBreakerBackoff = 10 * time.Minute

func newBreaker(threshold int, backoff time.Duration) *breaker {
	return &breaker{threshold: threshold, base: backoff, backoff: backoff}
}

// allow reports whether a call may go through. A true answer in the half-open state makes the
// caller the trial: it must report success, failure or abort.
func (b *breaker) allow() bool {
	if b.state.Load() == breakerClosed {
		return true
	}
	now := time.Now()
	b.mu.Lock()
	defer b.mu.Unlock()
	switch b.state.Load() {
	case breakerClosed:
		return true
	case breakerOpen:
		if now.Before(b.openUntil) {
			return false
		}
		b.state.Store(breakerHalfOpen)
		b.trial = true
		return true
	default: // half-open
		if b.trial {
			return false
		}
		b.trial = true
		return true
	}
}

func (b *breaker) success() {
	if b.state.Load() == breakerClosed {
		return
	}
	b.mu.Lock()
	b.state.Store(breakerClosed)
	b.trial = false
	b.backoff = b.base
	b.buckets = [6]struct{ slot, n int64 }{}
	b.mu.Unlock()
}

// abort ends a trial that could not run (no instance): the breaker stays half-open.
func (b *breaker) abort() {
	if b.state.Load() == breakerClosed {
		return
	}
	b.mu.Lock()
	b.trial = false
	b.mu.Unlock()
}

// failure counts a failed call and reports whether it tripped the breaker.
func (b *breaker) failure(now time.Time) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.state.Load() == breakerHalfOpen {
		b.trial = false
		b.backoff = min(b.backoff*2, maxBreakerBackoff)
		b.openUntil = now.Add(b.backoff)
		b.state.Store(breakerOpen)
		return true
	}
	if b.state.Load() == breakerOpen {
		return false
	}
	slot := now.Unix() / 10
	bk := &b.buckets[slot%6]
	if bk.slot != slot {
		bk.slot, bk.n = slot, 0
	}
	bk.n++
	var total int64
	for _, x := range b.buckets {
		if slot-x.slot < 6 {
			total += x.n
		}
	}
	if b.threshold > 0 && total >= int64(b.threshold) {
		b.openUntil = now.Add(b.backoff)
		b.state.Store(breakerOpen)
		return true
	}
	return false
}

func (b *breaker) isOpen(now time.Time) bool {
	if b.state.Load() == breakerClosed {
		return false
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.state.Load() == breakerOpen && now.Before(b.openUntil)
}
