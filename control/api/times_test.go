package api_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestClientTimesInMilliseconds: a time the client sends comes back as
// every time in a response does (docs/architecture.md): RFC 3339 UTC to the
// millisecond at most, in the creation's answer and in later reads.
func TestClientTimesInMilliseconds(t *testing.T) {
	h := newHarness(t)
	svcID, _ := h.service(h.admin, "web")
	const sent, want = "2030-01-01T00:00:00.123456789+02:00", "2029-12-31T22:00:00.123Z"
	const sent2, want2 = "2031-06-01T12:00:00.987654321Z", "2031-06-01T12:00:00.987Z"

	key := h.must(201, "POST", "/v1/api-keys", h.admin, map[string]any{"name": "ms", "expiresAt": sent})
	share := h.must(201, "POST", "/v1/services/"+svcID+"/shares", h.admin, map[string]any{"name": "ms", "expiresAt": sent})
	tun := h.must(201, "POST", "/v1/tunnels/"+svcID+"/share", h.admin, map[string]any{"name": "ms2", "expiresAt": sent})
	// A record stored with nanoseconds (before they were cut on the way
	// in) is answered to the millisecond too.
	stored, err := time.Parse(time.RFC3339Nano, sent)
	require.NoError(t, err)
	h.addKey(h.ws, "old", []string{"read"}, nil, &stored)
	var old resp
	for _, k := range h.must(200, "GET", "/v1/api-keys", h.admin, nil).list() {
		if m := k.(map[string]any); m["name"] == "old" {
			old.Body = map[string]any{"data": m}
		}
	}
	for _, tc := range []struct {
		name string
		r    resp
		want string
	}{
		{"api key created", key, want},
		{"api key read", h.must(200, "GET", "/v1/api-keys/"+key.str("id"), h.admin, nil), want},
		{"share created", share, want},
		{"tunnel share created", tun, want},
		{"share read", h.must(200, "GET", "/v1/shares/"+share.str("id"), h.admin, nil), want},
		{"share info", h.must(200, "GET", "/v1/shared/"+share.str("token")+"/info", "", nil), want},
		{"share patched", h.must(200, "PATCH", "/v1/shares/"+share.str("id"), h.admin, map[string]any{"expiresAt": sent2}), want2},
		{"stored key listed", old, want},
		{"share patched, read", h.must(200, "GET", "/v1/shares/"+share.str("id"), h.admin, nil), want2},
	} {
		assert.Equal(t, tc.want, tc.r.str("expiresAt"), "%s: %s", tc.name, tc.r.Raw)
	}
}
