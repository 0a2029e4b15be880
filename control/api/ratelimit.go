package api

import (
	"hash/maphash"
	"strconv"
	"sync"
	"time"

	"github.com/valyala/fasthttp"
)

// RateLimits are the API's request limits per minute. Zero fields take the
// defaults of api-v1.md; a negative value disables that tier.
type RateLimits struct {
	// PublicPerMin limits public routes per client IP (default 100).
	PublicPerMin int
	// AuthenticatedPerMin limits API-key routes per key, and agent-token
	// routes per client IP (default 1000).
	AuthenticatedPerMin int
	// SharePerMin is the default per-share limit pushed to edges (default 5000).
	SharePerMin int
}

// SharePerMinOrDefault is SharePerMin with its default applied (a negative
// value means no default per-share limit: 0).
func (r RateLimits) SharePerMinOrDefault() int {
	switch {
	case r.SharePerMin < 0:
		return 0
	case r.SharePerMin == 0:
		return 5000
	}
	return r.SharePerMin
}

func (r RateLimits) withDefaults() RateLimits {
	if r.PublicPerMin == 0 {
		r.PublicPerMin = 100
	}
	if r.AuthenticatedPerMin == 0 {
		r.AuthenticatedPerMin = 1000
	}
	if r.SharePerMin == 0 {
		r.SharePerMin = 5000
	}
	return r
}

// limiter counts requests in fixed one-minute windows per key.
type limiter struct {
	seed   maphash.Seed
	shards [32]limShard
	now    func() time.Time
}

type limShard struct {
	mu sync.Mutex
	m  map[string]*window
}

type window struct {
	start int64 // unix minute
	n     int
}

func newLimiter() *limiter {
	l := &limiter{seed: maphash.MakeSeed(), now: time.Now}
	for i := range l.shards {
		l.shards[i].m = make(map[string]*window)
	}
	return l
}

// allow counts one request for key and reports the remaining budget and the
// window's reset time.
func (l *limiter) allow(key string, limit int) (ok bool, remaining int, reset int64) {
	now := l.now().Unix()
	minute := now / 60
	sh := &l.shards[maphash.String(l.seed, key)%uint64(len(l.shards))]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	w := sh.m[key]
	if w == nil {
		if len(sh.m) > 50_000 {
			for k, v := range sh.m {
				if v.start != minute {
					delete(sh.m, k)
				}
			}
		}
		w = &window{start: minute}
		sh.m[key] = w
	}
	if w.start != minute {
		w.start, w.n = minute, 0
	}
	reset = (minute + 1) * 60
	if w.n >= limit {
		return false, 0, reset
	}
	w.n++
	return true, limit - w.n, reset
}

// limit applies a tier to the call, setting the X-RateLimit-* headers.
func (a *API) limit(c *call, key string, perMin int) error {
	if perMin < 0 {
		return nil
	}
	ok, rem, reset := a.limiter.allow(key, perMin)
	h := &c.ctx.Response.Header
	// Spelled as api-v1.md spells them (fasthttp's Set would send
	// "X-Ratelimit-Limit"); nothing else sets them on this response.
	h.SetCanonical([]byte("X-RateLimit-Limit"), strconv.AppendInt(nil, int64(perMin), 10))
	h.SetCanonical([]byte("X-RateLimit-Remaining"), strconv.AppendInt(nil, int64(rem), 10))
	h.SetCanonical([]byte("X-RateLimit-Reset"), strconv.AppendInt(nil, reset, 10))
	if !ok {
		ra := int(reset - a.limiter.now().Unix())
		if ra < 1 {
			ra = 1
		}
		return &Error{Status: fasthttp.StatusTooManyRequests, Message: "Please wait before trying again", RetryAfter: ra}
	}
	return nil
}

func itoa(n int) string { return strconv.Itoa(n) }
