package api_test

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/privateconnect/pc/control"
)

// TestRateLimitCountsForbidden: a request authenticated by a valid key is
// counted against that key's budget before its scope or IP allowlist is
// checked, so the 403s carry X-RateLimit-* and a key past its limit gets
// 429s, not an endless stream of free 403s.
func TestRateLimitCountsForbidden(t *testing.T) {
	const perMin = 5
	h := newHarness(t, func(c *control.Config) {
		c.RateLimits = control.RateLimits{PublicPerMin: 1000, AuthenticatedPerMin: perMin}
	})
	for _, tc := range []struct {
		name, method, path string
		key                string
		body               any
	}{
		{"scope too small", "POST", "/v1/agents/provision", h.addKey(h.ws, "reader", []string{"read"}, nil, nil), map[string]any{}},
		{"ip not allowed", "GET", "/v1/services", h.addKey(h.ws, "elsewhere", []string{"admin"}, []string{"10.0.0.0/8"}, nil), nil},
	} {
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
	require.Equal(t, fmt.Sprint(perMin-1), r.Header.Get("X-RateLimit-Remaining"))
}
