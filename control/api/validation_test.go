package api_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// fieldErrors returns the fields named by a 400's details.
func fieldErrors(t *testing.T, r resp) []string {
	t.Helper()
	assertErr(t, r, 400)
	details, _ := r.Body["details"].([]any)
	var fields []string
	for _, d := range details {
		fields = append(fields, d.(map[string]any)["field"].(string))
	}
	return fields
}

// TestTunnelTargetErrorsNameRequestFields: a bad target of POST /v1/tunnels
// is reported under the field the client sent ("target", or target.host and
// target.port of the object form), never the service's targetHost or
// targetPort, which the request does not have.
func TestTunnelTargetErrorsNameRequestFields(t *testing.T) {
	h := newHarness(t)
	agentID, _ := h.agent(h.admin)
	for _, tc := range []struct {
		name   string
		target any
		fields []string
		msg    string
	}{
		{"port 0", "127.0.0.1:0", []string{"target"}, "invalid request: target port must be between 1 and 65535"},
		{"port too large", "127.0.0.1:70000", []string{"target"}, "invalid request: target port must be between 1 and 65535"},
		{"empty host", ":80", []string{"target"}, "invalid request: target host must be 1-253 characters"},
		{"bad host", "a@b:80", []string{"target"}, "invalid request: target host must be a host name or IP address"},
		{"object port 0", map[string]any{"host": "h", "port": 0}, []string{"target.port"}, "invalid request: target.port must be between 1 and 65535"},
		{"object, no host", map[string]any{"port": 80}, []string{"target.host"}, "invalid request: target.host must be 1-253 characters"},
		{"object, both bad", map[string]any{"host": "a b", "port": -1}, []string{"target.host", "target.port"}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := h.req("POST", "/v1/tunnels", h.admin, map[string]any{"target": tc.target, "agentId": agentID})
			assert.Equal(t, tc.fields, fieldErrors(t, r), "%s", r.Raw)
			if tc.msg != "" {
				assert.Equal(t, tc.msg, r.Body["message"])
			}
		})
	}
	// The service routes keep their own field names.
	r := h.req("POST", "/v1/services/register", h.admin, map[string]any{"agentId": agentID, "name": "x", "targetHost": "h", "targetPort": 0})
	require.Equal(t, []string{"targetPort"}, fieldErrors(t, r))
}

// TestAPIKeyNames: an API key's name is 1-50 characters that are not all
// white space and hold no control character.
func TestAPIKeyNames(t *testing.T) {
	h := newHarness(t)
	for _, tc := range []struct {
		name string
		ok   bool
	}{
		{"ci", true},
		{"CI deploy key", true},
		{"clé été ✓", true},
		{" padded ", true},
		{strings.Repeat("x", 50), true},
		{"", false},
		{strings.Repeat("x", 51), false},
		{"   ", false},
		{"\t\n", false},
		{"\u00a0\u3000", false}, // Unicode spaces
		{"nul\u0000x", false},
		{"esc\u001b[31mred", false},
		{"del\u007f", false},
		{"c1\u0085", false},
	} {
		t.Run(fmt.Sprintf("%q", tc.name), func(t *testing.T) {
			r := h.req("POST", "/v1/api-keys", h.admin, map[string]any{"name": tc.name})
			if tc.ok {
				require.Equal(t, 201, r.Status, "%s", r.Raw)
				assert.Equal(t, tc.name, r.str("name"))
				return
			}
			assert.Equal(t, []string{"name"}, fieldErrors(t, r), "%s", r.Raw)
		})
	}
}

// TestIPv4MappedRanges: an IPv4-mapped IPv6 range (::ffff:a.b.c.d/96 and
// longer) is stored and applied as the IPv4 range it maps, since client
// addresses are compared unmapped: "::ffff:127.0.0.1/128" lets a key be
// used from 127.0.0.1 (it matched nothing), "::ffff:10.0.0.0/104" keeps it
// from being used from anywhere else.
func TestIPv4MappedRanges(t *testing.T) {
	h := newHarness(t)
	keyID := h.must(201, "POST", "/v1/api-keys", h.admin, map[string]any{"name": "k"}).str("id")
	ranges := func(r resp) []any { return r.data()["allowedIpRanges"].([]any) }
	for _, tc := range []struct {
		in   []string
		want []any
	}{
		{[]string{"::ffff:127.0.0.1/128"}, []any{"127.0.0.1/32"}},
		{[]string{"::ffff:127.0.0.1"}, []any{"127.0.0.1/32"}},
		{[]string{"::ffff:10.1.2.3/104"}, []any{"10.0.0.0/8"}},
		{[]string{"::ffff:0.0.0.0/96"}, []any{"0.0.0.0/0"}},
		{[]string{"::ffff:0:0/80", "::1/128", "2001:db8::/32", "10.0.0.0/8"}, []any{"::/80", "::1/128", "2001:db8::/32", "10.0.0.0/8"}},
	} {
		r := h.must(200, "PUT", "/v1/api-keys/"+keyID+"/ip-restrictions", h.admin, map[string]any{"allowedIpRanges": tc.in})
		assert.Equal(t, tc.want, ranges(r), "%v", tc.in)
	}
	created := h.must(201, "POST", "/v1/api-keys", h.admin, map[string]any{"name": "k2", "allowedIpRanges": []string{"::ffff:127.0.0.1/128"}})
	assert.Equal(t, []any{"127.0.0.1/32"}, ranges(created))

	// Applied: the harness's client is 127.0.0.1.
	loopback := h.must(201, "POST", "/v1/api-keys", h.admin, map[string]any{"name": "lo", "scopes": []string{"read"},
		"allowedIpRanges": []string{"::ffff:127.0.0.1/128"}}).str("key")
	h.must(200, "GET", "/v1/services", loopback, nil)
	elsewhere := h.must(201, "POST", "/v1/api-keys", h.admin, map[string]any{"name": "ten", "scopes": []string{"read"},
		"allowedIpRanges": []string{"::ffff:10.0.0.0/104"}}).str("key")
	h.assertError(h.req("GET", "/v1/services", elsewhere, nil), 403)
	// A key stored with a mapped range before this rule works too.
	stored := h.addKey(h.ws, "stored", []string{"read"}, []string{"::ffff:127.0.0.1/128"}, nil)
	h.must(200, "GET", "/v1/services", stored, nil)
}

// TestDisplayNames: the other free-text names (an agent's name and label, a
// share's, an edge's, a workspace's) refuse what a key's name refuses: only
// white space, control characters.
func TestDisplayNames(t *testing.T) {
	h := newHarness(t)
	svcID, _ := h.service(h.admin, "web")
	for _, tc := range []struct {
		route, path, field string
		body               func(name string) map[string]any
	}{
		{"agent name", "/v1/agents/provision", "name", func(n string) map[string]any { return map[string]any{"name": n} }},
		{"agent label", "/v1/agents/provision", "label", func(n string) map[string]any { return map[string]any{"label": n} }},
		{"registered agent name", "/v1/agents/register", "name", func(n string) map[string]any {
			return map[string]any{"agentId": uuid.NewString(), "token": strings.Repeat("t", 40), "name": n}
		}},
		{"registered agent label", "/v1/agents/register", "label", func(n string) map[string]any {
			return map[string]any{"agentId": uuid.NewString(), "token": strings.Repeat("t", 40), "label": n}
		}},
		{"share", "/v1/services/" + svcID + "/shares", "name", func(n string) map[string]any { return map[string]any{"name": n} }},
		{"edge", "/v1/edges", "name", func(n string) map[string]any {
			return map[string]any{"name": n, "publicUrl": "http://127.0.0.1:1", "tunnelAddr": "127.0.0.1:2"}
		}},
		{"workspace", "/v1/workspaces", "name", func(n string) map[string]any { return map[string]any{"name": n} }},
	} {
		t.Run(tc.route, func(t *testing.T) {
			for _, bad := range []string{"   ", "nul\u0000x", "esc\u001b[31mred"} {
				r := h.req("POST", tc.path, h.admin, tc.body(bad))
				assert.Equal(t, []string{tc.field}, fieldErrors(t, r), "%q: %s", bad, r.Raw)
			}
			r := h.req("POST", tc.path, h.admin, tc.body("Dev box ✓ "+tc.route))
			require.Less(t, r.Status, 300, "%s", r.Raw)
		})
	}
}
