package api_test

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/privateconnect/pc/control"
)

// TestRateLimitCountsForbidden: the 403s of a valid key are counted, so
// they carry X-RateLimit-* and meet 429s past the limit, not an endless
// stream of free 403s: a key refused by its scope against its own budget,
// a key used from outside its IP allowlist against the address's (whoever
// holds a leaked key elsewhere cannot spend its owner's budget).
func TestRateLimitCountsForbidden(t *testing.T) {
	const perKey, perIP = 5, 3
	h := newHarness(t, func(c *control.Config) {
		c.RateLimits = control.RateLimits{PublicPerMin: perIP, AuthenticatedPerMin: perKey}
	})
	awayFromMinuteEdge(t)
	for _, tc := range []struct {
		name, method, path string
		key                string
		body               any
		perMin             int
	}{
		{"scope too small", "POST", "/v1/agents/provision", h.addKey(h.ws, "reader", []string{"read"}, nil, nil), map[string]any{}, perKey},
		{"ip not allowed", "GET", "/v1/services", h.addKey(h.ws, "elsewhere", []string{"admin"}, []string{"10.0.0.0/8"}, nil), nil, perIP},
	} {
		perMin := tc.perMin
		t.Run(tc.name, func(t *testing.T) {
			for i := 0; i < perMin; i++ {
				r := h.req(tc.method, tc.path, tc.key, tc.body)
				h.assertError(r, 403)
				assert.Equal(t, fmt.Sprint(perMin), r.Header.Get("X-RateLimit-Limit"), "request %d", i)
				assert.Equal(t, fmt.Sprint(perMin-1-i), r.Header.Get("X-RateLimit-Remaining"), "request %d", i)
				assert.NotEmpty(t, r.Header.Get("X-RateLimit-Reset"), "request %d", i)
			}
			r := h.req(tc.method, tc.path, tc.key, tc.body)
			h.assertError(r, 429)
			assert.Equal(t, "0", r.Header.Get("X-RateLimit-Remaining"))
			assert.NotEmpty(t, r.Header.Get("Retry-After"))
		})
	}
	// The budget is the key's own: the admin key was not charged.
	r := h.must(200, "GET", "/v1/services", h.admin, nil)
	require.Equal(t, fmt.Sprint(perKey-1), r.Header.Get("X-RateLimit-Remaining"))
}

// TestUnversionedRoutesRateLimited: /openapi.json, /docs, its assets and
// /metrics count against the client IP's public limit like the other public
// routes (headers, 429 past it); /health does not (load balancers poll it).
func TestUnversionedRoutesRateLimited(t *testing.T) {
	const perMin = 4
	for _, path := range []string{"/openapi.json", "/docs", "/docs/init.js", "/docs/swagger-ui.css", "/metrics"} {
		t.Run(path, func(t *testing.T) {
			h := newHarness(t, func(c *control.Config) {
				c.RateLimits = control.RateLimits{PublicPerMin: perMin, AuthenticatedPerMin: 1000}
			})
			awayFromMinuteEdge(t)
			for i := 0; i < perMin; i++ {
				method := "GET"
				if i == 1 {
					method = "HEAD" // HEAD is the same route
				}
				r := h.req(method, path, "", nil)
				require.Equal(t, 200, r.Status, "%s %s", method, r.Raw)
				assert.Equal(t, fmt.Sprint(perMin), r.Header.Get("X-RateLimit-Limit"), "request %d", i)
				assert.Equal(t, fmt.Sprint(perMin-1-i), r.Header.Get("X-RateLimit-Remaining"), "request %d", i)
				assert.NotEmpty(t, r.Header.Get("X-RateLimit-Reset"), "request %d", i)
			}
			r := h.req("GET", path, "", nil)
			h.assertError(r, 429)
			assert.NotEmpty(t, r.Header.Get("Retry-After"))
			// The bucket is the address's, shared with the /v1 public routes;
			// /metrics has its own: a scraper is not starved by the rest.
			if path == "/metrics" {
				h.must(200, "GET", "/v1/webhooks/events", "", nil)
			} else {
				h.assertError(h.req("GET", "/v1/webhooks/events", "", nil), 429)
				h.must(200, "GET", "/metrics", "", nil)
			}
			// Health is exempt, even for an address past its limit.
			for i := 0; i < 2*perMin; i++ {
				r := h.must(200, "GET", "/health", "", nil)
				assert.Empty(t, r.Header.Get("X-RateLimit-Limit"))
			}
		})
	}
}

// TestDocsPageWithinPublicLimit: loading the Swagger UI page (the page, the
// assets it names, the document its init script loads) takes a handful of
// the default 100 public requests a minute.
func TestDocsPageWithinPublicLimit(t *testing.T) {
	h := newHarness(t, func(c *control.Config) { c.RateLimits = control.RateLimits{} }) // the defaults
	awayFromMinuteEdge(t)
	page := h.must(200, "GET", "/docs", "", nil)
	assert.Equal(t, "100", page.Header.Get("X-RateLimit-Limit"))
	refs := regexp.MustCompile(`(?:href|src)="(/[^"]+)"`).FindAllStringSubmatch(string(page.Raw), -1)
	require.NotEmpty(t, refs)
	n := 1
	var last resp
	for _, m := range refs {
		last = h.must(200, "GET", m[1], "", nil)
		n++
		if strings.HasSuffix(m[1], "/init.js") {
			u := regexp.MustCompile(`url: "(/[^"]+)"`).FindStringSubmatch(string(last.Raw))
			require.NotNil(t, u, "init.js names the document")
			last = h.must(200, "GET", u[1], "", nil)
			n++
		}
	}
	remaining, err := strconv.Atoi(last.Header.Get("X-RateLimit-Remaining"))
	require.NoError(t, err)
	assert.Equal(t, 100-n, remaining)
	assert.LessOrEqual(t, n, 10, "a page load costs %d requests", n)
}

// awayFromMinuteEdge waits out the end of a minute when it is close: the
// limiter counts in fixed minutes, and a test that counts a budget down
// must not see it refilled halfway.
func awayFromMinuteEdge(t *testing.T) {
	t.Helper()
	if left := time.Minute - time.Duration(time.Now().UnixNano()%int64(time.Minute)); left < 5*time.Second {
		time.Sleep(left + 100*time.Millisecond)
	}
}
