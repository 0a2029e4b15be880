package bench

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/privateconnect/pc/sdk/client"
	"github.com/valyala/fasthttp"
)

// keyPool spreads API calls over several API keys.
//
// The control plane limits every API key to a fixed number of requests per
// wall-clock minute (1,000 by default) and pcd has no flag to change it, so
// a benchmark that provisions 10,000 agents or reads the API at full speed
// must use many keys. Each key is created with the admin key; the limiter
// itself stays on the measured path.
type keyPool struct {
	controlURL string
	admin      *apiKey
	// limit is the per-key budget per minute (0: no limit seen).
	limit int

	mu   sync.Mutex
	keys []*apiKey
	seq  int
}

type apiKey struct {
	key    string
	c      *client.Client
	minute int64
	used   int
}

func newKeyPool(ctx context.Context, controlURL, adminKey string) (*keyPool, error) {
	p := &keyPool{controlURL: controlURL, admin: &apiKey{key: adminKey, c: client.New(controlURL, adminKey)}}
	lim, err := probeRateLimit(controlURL+"/v1/status", adminKey)
	if err != nil {
		return nil, err
	}
	p.limit = lim
	p.admin.used = 1
	p.admin.minute = time.Now().Unix() / 60
	return p, nil
}

// probeRateLimit reads X-RateLimit-Limit of an authenticated route.
func probeRateLimit(url, key string) (int, error) {
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.SetRequestURI(url)
	req.Header.Set("x-api-key", key)
	if err := fasthttp.DoTimeout(req, resp, 10*time.Second); err != nil {
		return 0, fmt.Errorf("probe %s: %w", url, err)
	}
	if resp.StatusCode() != http.StatusOK && resp.StatusCode() != http.StatusTooManyRequests {
		return 0, fmt.Errorf("probe %s: status %d: %s", url, resp.StatusCode(), resp.Body())
	}
	lim, _ := strconv.Atoi(string(resp.Header.Peek("X-RateLimit-Limit")))
	return lim, nil
}

// usable is the budget of a key per minute, with a margin for clock skew.
func (p *keyPool) usable() int {
	if p.limit <= 0 {
		return 1 << 30
	}
	return max(1, p.limit*95/100-5)
}

// take reserves n calls on one key (a new key when no key has n left).
func (p *keyPool) take(ctx context.Context, n int) (*apiKey, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := time.Now().Unix() / 60
	if p.limit <= 0 {
		return p.admin, nil
	}
	for i := range p.keys {
		k := p.keys[(p.seq+i)%len(p.keys)]
		if k.minute != now {
			k.minute, k.used = now, 0
		}
		if k.used+n <= p.usable() {
			k.used += n
			p.seq++
			return k, nil
		}
	}
	k, err := p.newKeyLocked(ctx)
	if err != nil {
		return nil, err
	}
	k.used += n
	return k, nil
}

// newKeyLocked creates one more write key with the admin key, waiting for
// the next minute when the admin key's own budget is spent.
func (p *keyPool) newKeyLocked(ctx context.Context) (*apiKey, error) {
	a := p.admin
	now := time.Now().Unix() / 60
	if a.minute != now {
		a.minute, a.used = now, 0
	}
	if a.used >= p.usable() {
		wait := time.Until(time.Unix((now+1)*60, 0)) + 100*time.Millisecond
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(wait):
		}
		a.minute, a.used = time.Now().Unix()/60, 0
	}
	a.used++
	name := fmt.Sprintf("pcbench-%d-%d", time.Now().UnixNano()%1e9, len(p.keys))
	k, err := a.c.CreateAPIKey(ctx, client.CreateAPIKeyRequest{Name: name, Scopes: []string{client.ScopeAdmin}})
	if err != nil {
		return nil, fmt.Errorf("create API key: %w", err)
	}
	ak := &apiKey{key: k.Key, c: client.New(p.controlURL, k.Key), minute: now}
	p.keys = append(p.keys, ak)
	return ak, nil
}

// call runs f with a client that has budget for one request, retrying on
// 429 with another key.
func (p *keyPool) call(ctx context.Context, f func(c *client.Client) error) error {
	var err error
	for attempt := 0; attempt < 4; attempt++ {
		var k *apiKey
		if k, err = p.take(ctx, 1); err != nil {
			return err
		}
		if err = f(k.c); !client.IsStatus(err, http.StatusTooManyRequests) {
			return err
		}
		p.mu.Lock()
		k.used = p.usable() // spent: skip it for the rest of the minute
		p.mu.Unlock()
	}
	return err
}

// keysFor returns raw keys whose budgets together cover n requests (for the
// API load scenarios).
func (p *keyPool) keysFor(ctx context.Context, n int) ([]string, error) {
	if p.limit <= 0 {
		return []string{p.admin.key}, nil
	}
	var out []string
	for n > 0 {
		p.mu.Lock()
		k, err := p.newKeyLocked(ctx)
		if err == nil {
			k.used = p.usable() // reserved for the load
		}
		p.mu.Unlock()
		if err != nil {
			return nil, err
		}
		out = append(out, k.key)
		n -= p.usable()
	}
	return out, nil
}
