package api_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/privateconnect/pc/control"
	"github.com/privateconnect/pc/control/store"
)

func TestHealthAndSecurityHeaders(t *testing.T) {
	h := newHarness(t)
	r := h.must(200, "GET", "/health", "", nil)
	assert.Equal(t, true, r.Body["success"])
	assert.Equal(t, "ok", r.str("status"))
	assert.Equal(t, "ok", r.str("database"))
	for _, p := range []string{"/health", "/v1/agents", "/v1/nope"} {
		r := h.req("GET", p, "", nil)
		assert.Equal(t, "nosniff", r.Header.Get("X-Content-Type-Options"), p)
		assert.Equal(t, "DENY", r.Header.Get("X-Frame-Options"), p)
		assert.Contains(t, r.Header.Get("Content-Security-Policy"), "default-src 'none'", p)
		assert.Equal(t, "strict-origin-when-cross-origin", r.Header.Get("Referrer-Policy"), p)
		assert.Contains(t, r.Header.Get("Content-Type"), "application/json", p)
	}
	require.NoError(t, h.kv.Close())
	r = h.req("GET", "/health", "", nil)
	h.assertError(r, 503)
	assert.Equal(t, "degraded", r.str("status"))
	assert.Equal(t, "error", r.str("database"))
	// Any store-backed route answers 503 too.
	h.assertError(h.req("GET", "/v1/services", h.admin, nil), 503)
}

func TestAuth(t *testing.T) {
	h := newHarness(t)
	_, other := h.newWorkspace("tenant")
	past := time.Now().Add(-time.Minute)
	expired := h.addKey(h.ws, "expired", []string{"admin"}, nil, &past)
	v6only := h.addKey(h.ws, "v6", []string{"admin"}, []string{"2001:db8::/32"}, nil)
	lo := h.addKey(h.ws, "lo", []string{"admin"}, []string{"127.0.0.0/8", "::1/128"}, nil)
	read := h.addKey(h.ws, "read", []string{"read"}, nil, nil)
	write := h.addKey(h.ws, "write", []string{"write"}, nil, nil)

	cases := []struct {
		name   string
		method string
		path   string
		key    string
		body   any
		status int
		msg    string
	}{
		{"no key", "GET", "/v1/services", "", nil, 401, "missing API key"},
		{"malformed key", "GET", "/v1/services", "pc_123", nil, 401, "invalid API key"},
		{"unknown key", "GET", "/v1/services", "pc_" + strings.Repeat("a", 48), nil, 401, "invalid API key"},
		{"uppercase hex", "GET", "/v1/services", "pc_" + strings.Repeat("A", 48), nil, 401, "invalid API key"},
		{"expired", "GET", "/v1/services", expired, nil, 401, "expired"},
		{"ip not allowed", "GET", "/v1/services", v6only, nil, 403, "not allowed"},
		{"ip allowed", "GET", "/v1/services", lo, nil, 200, ""},
		{"read on read", "GET", "/v1/agents", read, nil, 200, ""},
		{"read on write", "POST", "/v1/agents/provision", read, map[string]any{}, 403, "write scope"},
		{"write on write", "POST", "/v1/agents/provision", write, map[string]any{}, 201, ""},
		{"write on admin", "GET", "/v1/edges", write, nil, 403, "admin scope"},
		{"tenant admin lists edges", "GET", "/v1/edges", other["admin"], nil, 200, ""},
		{"tenant admin creates edge", "POST", "/v1/edges", other["admin"], map[string]any{"name": "e", "publicUrl": "http://x", "tunnelAddr": "x:1"}, 403, "workspace default"},
		{"edge route without token", "POST", "/v1/edges/report", "", map[string]any{}, 401, "edge token"},
		{"edge route with api key", "GET", "/v1/edges/config", h.admin, nil, 401, "edge token"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := h.req(tc.method, tc.path, tc.key, tc.body)
			if tc.status >= 400 {
				h.assertError(r, tc.status)
				assert.Contains(t, r.Body["message"], tc.msg)
			} else {
				require.Equal(t, tc.status, r.Status, "%s", r.Raw)
				assert.Equal(t, true, r.Body["success"])
			}
		})
	}
}

func TestStrictRequests(t *testing.T) {
	h := newHarness(t)
	agentID, _ := h.agent(h.admin)
	p := "/v1/services/register"
	big := `{"name":"` + strings.Repeat("x", 1<<20) + `"}`
	cases := []struct {
		name   string
		body   string
		ctype  string
		status int
		msg    string
		field  string
	}{
		{"malformed", `{"name":`, "", 400, "malformed JSON", ""},
		{"syntax", `{"name" "x"}`, "", 400, "malformed JSON at byte", ""},
		{"trailing data", `{"name":"x"} {}`, "", 400, "unexpected data", ""},
		{"not an object", `[1,2]`, "", 400, "must be a JSON object", ""},
		{"unknown field", `{"agentId":"` + agentID + `","name":"x","targetHost":"h","targetPort":1,"extra":1}`, "", 400, `unknown field "extra"`, "extra"},
		{"wrong type", `{"agentId":"` + agentID + `","name":"x","targetHost":"h","targetPort":"80"}`, "", 400, "targetPort must be a number", "targetPort"},
		{"not an integer", `{"agentId":"` + agentID + `","name":"x","targetHost":"h","targetPort":80.0}`, "", 400, "targetPort must be an integer, not 80.0", "targetPort"},
		{"out of range", `{"agentId":"` + agentID + `","name":"x","targetHost":"h","targetPort":70000}`, "", 400, "targetPort", "targetPort"},
		{"bad name", `{"agentId":"` + agentID + `","name":"a b","targetHost":"h","targetPort":1}`, "", 400, "name", "name"},
		{"bad protocol", `{"agentId":"` + agentID + `","name":"x","targetHost":"h","targetPort":1,"protocol":"ftp"}`, "", 400, "protocol", "protocol"},
		{"control character in host", `{"agentId":"` + agentID + `","name":"x","targetHost":"h\nX-Evil: 1","targetPort":1}`, "", 400, "targetHost", "targetHost"},
		{"key case", `{"agentId":"` + agentID + `","NAME":"x","targetHost":"h","targetPort":1}`, "", 400, "case-sensitive", "NAME"},
		{"text/plain", `{}`, "text/plain", 415, "application/json", ""},
		{"form", `a=b`, "application/x-www-form-urlencoded", 415, "application/json", ""},
		{"other json type", `{}`, "application/merge-patch+json", 415, "application/json", ""},
		{"too large", big, "", 413, "larger than", ""},
		{"json with charset ok", `{"agentId":"` + agentID + `","name":"ok","targetHost":"h","targetPort":1}`, "application/json; charset=utf-8", 201, "", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var hdr []string
			if tc.ctype != "" {
				hdr = []string{"Content-Type", tc.ctype}
			}
			r := h.req("POST", p, h.admin, tc.body, hdr...)
			if tc.status >= 400 {
				h.assertError(r, tc.status)
				assert.Contains(t, r.Body["message"], tc.msg)
				if tc.field != "" {
					details, _ := r.Body["details"].([]any)
					require.NotEmpty(t, details, "%s", r.Raw)
					assert.Equal(t, tc.field, details[0].(map[string]any)["field"])
				}
			} else {
				require.Equal(t, tc.status, r.Status, "%s", r.Raw)
			}
		})
	}
	// A nested unknown field is named with its whole path (it was "foo").
	svcID, _ := h.service(h.admin, "nested")
	r := h.req("POST", "/v1/services/"+svcID+"/shares", h.admin, `{"plugins":[{"pluginId":"builtin:ip-allow","foo":1}]}`)
	h.assertError(r, 400)
	assert.Equal(t, "plugins[0].foo", r.Body["details"].([]any)[0].(map[string]any)["field"])
	// A huge declared body is refused before it is read.
	req, _ := http.NewRequest("POST", h.base+p, strings.NewReader(strings.Repeat(" ", 20<<20)))
	req.Header.Set("x-api-key", h.admin)
	req.Header.Set("Content-Type", "application/json")
	res, err := h.hc.Do(req)
	if err == nil {
		assert.Equal(t, 413, res.StatusCode)
		res.Body.Close()
	}
}

func TestRoutingErrors(t *testing.T) {
	h := newHarness(t)
	r := h.req("GET", "/v1/does-not-exist", h.admin, nil)
	h.assertError(r, 404)
	assert.Equal(t, "Not Found", r.Body["error"])
	r = h.req("GET", "/nope", "", nil)
	h.assertError(r, 404)
	r = h.req("PUT", "/v1/services", h.admin, "{}")
	h.assertError(r, 405)
	assert.Equal(t, "Method Not Allowed", r.Body["error"])
	assert.Contains(t, r.Header.Get("Allow"), "GET")
	r = h.req("POST", "/v1/shares/x", h.admin, "{}")
	h.assertError(r, 405)

	// HEAD answers every GET route with its headers (health probes), and
	// OPTIONS with the methods a path has, as the Allow header of a 405 says.
	r = h.req("HEAD", "/health", "", nil)
	assert.Equal(t, 200, r.Status)
	assert.Empty(t, r.Raw)
	assert.Contains(t, r.Header.Get("Content-Type"), "application/json")
	r = h.req("HEAD", "/v1/services", h.admin, nil)
	assert.Equal(t, 200, r.Status)
	assert.Empty(t, r.Raw)
	assert.Equal(t, 401, h.req("HEAD", "/v1/services", "", nil).Status, "the same rules as GET")
	// Not on the edges' routes: the inbox's GET hands commands over, which a
	// HEAD would lose.
	_, edgeTok := h.edge("e-head")
	assert.Equal(t, 405, h.req("HEAD", "/v1/edges/agent-inbox", "", nil, "Authorization", "Bearer "+edgeTok).Status)
	r = h.req("OPTIONS", "/v1/services", "", nil)
	assert.Equal(t, 200, r.Status)
	assert.Equal(t, []any{"GET", "HEAD", "OPTIONS"}, r.data()["allow"], "the envelope, as every 2xx body")
	assert.Contains(t, r.Header.Get("Allow"), "GET")
	assert.Contains(t, r.Header.Get("Allow"), "HEAD")

	// A fixed path beside a pattern is its own route: a wrong method is a
	// 405 naming its methods, not a lookup of the id "register" (a 404
	// "service not found"), nor the pattern's methods in Allow.
	for _, c := range []struct{ method, path, allow string }{
		{"GET", "/v1/services/register", "OPTIONS, POST"},
		{"DELETE", "/v1/services/register", "OPTIONS, POST"},
		{"GET", "/v1/agents/provision", "OPTIONS, POST"},
		{"DELETE", "/v1/agents/orchestration", "GET, HEAD, OPTIONS"},
		{"PATCH", "/v1/webhooks/events", "GET, HEAD, OPTIONS"},
		{"POST", "/v1/webhooks/events", "GET, HEAD, OPTIONS"},
		{"DELETE", "/v1/edges/report", "OPTIONS, POST"},
		{"GET", "/v1/edges/report", "OPTIONS, POST"},
	} {
		r := h.req(c.method, c.path, h.admin, nil)
		h.assertError(r, 405)
		assert.Equal(t, c.allow, r.Header.Get("Allow"), "%s %s", c.method, c.path)
	}
	r = h.req("OPTIONS", "/v1/agents/provision", "", nil)
	assert.Equal(t, 200, r.Status)
	assert.Equal(t, "OPTIONS, POST", r.Header.Get("Allow"))
	assert.Equal(t, []any{"OPTIONS", "POST"}, r.data()["allow"])
}

func TestServicesLifecycle(t *testing.T) {
	h := newHarness(t, func(c *control.Config) { c.TCPPortMin, c.TCPPortMax = 24000, 24001 })
	agentID, _ := h.agent(h.admin)
	body := map[string]any{"agentId": agentID, "name": "web", "targetHost": "127.0.0.1", "targetPort": 9000}
	r := h.must(201, "POST", "/v1/services/register", h.admin, body)
	d := r.data()
	id := d["id"].(string)
	for _, f := range []string{"id", "name", "agentId", "targetHost", "targetPort", "protocol", "status", "tunnelPort", "isPublic", "publicUrl", "createdAt"} {
		assert.Contains(t, d, f)
	}
	assert.Equal(t, "auto", d["protocol"])
	assert.Equal(t, "offline", d["status"], "agent not connected")
	assert.Equal(t, float64(24000), d["tunnelPort"])

	// Same name: update, 200, same id and port.
	body["targetPort"] = 9001
	body["protocol"] = "http"
	r = h.must(200, "POST", "/v1/services/register", h.admin, body)
	assert.Equal(t, id, r.str("id"))
	assert.Equal(t, float64(9001), r.data()["targetPort"])
	assert.Equal(t, float64(24000), r.data()["tunnelPort"])

	r2 := h.must(201, "POST", "/v1/services/register", h.admin, map[string]any{"agentId": agentID, "name": "db", "targetHost": "127.0.0.1", "targetPort": 5432})
	assert.Equal(t, float64(24001), r2.data()["tunnelPort"])
	h.assertError(h.req("POST", "/v1/services/register", h.admin, map[string]any{"agentId": agentID, "name": "third", "targetHost": "h", "targetPort": 1}), 503)
	// An unknown agent is 404.
	h.assertError(h.req("POST", "/v1/services/register", h.admin, map[string]any{"agentId": "7c4e1a3e-2a4d-4f57-9a55-5c2c1c1f0e11", "name": "x", "targetHost": "h", "targetPort": 1}), 404)

	r = h.must(200, "GET", "/v1/services/"+id, h.admin, nil)
	assert.Equal(t, agentID, r.data()["agent"].(map[string]any)["id"])
	assert.Nil(t, r.data()["lastDiagnostic"])
	assert.Len(t, h.must(200, "GET", "/v1/services?protocol=http", h.admin, nil).list(), 1)
	assert.Len(t, h.must(200, "GET", "/v1/services?agentId="+agentID, h.admin, nil).list(), 2)
	h.assertError(h.req("GET", "/v1/services?status=weird", h.admin, nil), 400)

	// Delete frees the port: a new service gets it.
	shr := h.must(201, "POST", "/v1/services/"+id+"/shares", h.admin, map[string]any{"name": "s"})
	r = h.must(200, "DELETE", "/v1/services/"+id, h.admin, nil)
	assert.Equal(t, float64(1), r.data()["revokedShares"])
	h.assertError(h.req("GET", "/v1/services/"+id, h.admin, nil), 404)
	h.assertError(h.req("DELETE", "/v1/services/"+id, h.admin, nil), 404)
	r = h.must(201, "POST", "/v1/services/register", h.admin, map[string]any{"agentId": agentID, "name": "third", "targetHost": "h", "targetPort": 1})
	assert.Equal(t, float64(24000), r.data()["tunnelPort"])
	sh := h.must(200, "GET", "/v1/shares/"+shr.str("id"), h.admin, nil)
	assert.Equal(t, false, sh.data()["isActive"])
	assert.NotNil(t, sh.data()["revokedAt"])
}

func TestWorkspaceIsolation(t *testing.T) {
	h := newHarness(t)
	svcID, agentID := h.service(h.admin, "web")
	share := h.must(201, "POST", "/v1/services/"+svcID+"/shares", h.admin, map[string]any{"name": "s"})
	shareID := share.str("id")
	_, other := h.newWorkspace("tenant")
	k := other["admin"]
	for _, rq := range []struct{ method, path string }{
		{"GET", "/v1/services/" + svcID},
		{"DELETE", "/v1/services/" + svcID},
		{"GET", "/v1/services/" + svcID + "/shares"},
		{"POST", "/v1/services/" + svcID + "/shares"},
		{"GET", "/v1/shares/" + shareID},
		{"PATCH", "/v1/shares/" + shareID},
		{"DELETE", "/v1/shares/" + shareID},
		{"GET", "/v1/agents/" + agentID},
		{"DELETE", "/v1/agents/" + agentID},
	} {
		var body any
		if rq.method == "POST" || rq.method == "PATCH" {
			body = map[string]any{"name": "x"}
		}
		r := h.req(rq.method, rq.path, k, body)
		h.assertError(r, 404)
	}
	assert.Empty(t, h.must(200, "GET", "/v1/services", k, nil).list())
	assert.Empty(t, h.must(200, "GET", "/v1/agents", k, nil).list())
	// Registering a service for another workspace's agent: 404.
	h.assertError(h.req("POST", "/v1/services/register", k, map[string]any{"agentId": agentID, "name": "w", "targetHost": "h", "targetPort": 1}), 404)
	// Registering an agent id owned by another workspace: 409.
	h.assertError(h.req("POST", "/v1/agents/register", k, map[string]any{"agentId": agentID, "token": strings.Repeat("t", 40)}), 409)
	// Same service name in another workspace is fine.
	_, _ = h.service(k, "web")
	// The owner still sees everything intact.
	h.must(200, "GET", "/v1/shares/"+shareID, h.admin, nil)
	assert.Len(t, h.must(200, "GET", "/v1/services", h.admin, nil).list(), 1)
}

func TestPagination(t *testing.T) {
	h := newHarness(t)
	for i := 0; i < 7; i++ {
		h.agent(h.admin)
	}
	var ids []string
	cursor := ""
	pages := 0
	for {
		p := "/v1/agents?limit=3"
		if cursor != "" {
			p += "&cursor=" + cursor
		}
		r := h.must(200, "GET", p, h.admin, nil)
		pages++
		for _, a := range r.list() {
			ids = append(ids, a.(map[string]any)["id"].(string))
		}
		cursor = r.Header.Get("X-Next-Cursor")
		if cursor == "" {
			break
		}
		require.Less(t, pages, 5)
	}
	assert.Equal(t, 3, pages)
	assert.Len(t, ids, 7)
	seen := map[string]bool{}
	for _, id := range ids {
		assert.False(t, seen[id], "duplicate %s", id)
		seen[id] = true
	}
	r := h.must(200, "GET", "/v1/agents", h.admin, nil)
	assert.Len(t, r.list(), 7)
	assert.Empty(t, r.Header.Get("X-Next-Cursor"))
	// A cursor this API did not return, base64url or not, is refused rather than read as
	// "nothing after it" (an empty last page): ZmFrZQ is base64url of "fake".
	for _, q := range []string{"limit=0", "limit=501", "limit=x", "cursor=%25%25", "cursor=ZmFrZQ", "cursor=garbage", "online=maybe"} {
		r := h.req("GET", "/v1/agents?"+q, h.admin, nil)
		h.assertError(r, 400)
	}
}

func TestSharesLifecycle(t *testing.T) {
	h := pluginHarness(t)
	_, _ = h.edge("e1")
	svcID, _ := h.service(h.admin, "web")
	r := h.must(201, "POST", "/v1/services/"+svcID+"/shares", h.admin, map[string]any{
		"name": "demo", "description": "for review", "expiresIn": "7d",
		"allowedPaths": []string{"/api/*"}, "allowedMethods": []string{"GET", "post"},
		"rateLimitPerMin": 60, "password": "s3cret-pass", "allowedIps": []string{"10.0.0.0/8", "2001:db8::1"},
		"maxUses": 10, "plugins": []any{map[string]any{"pluginId": "builtin:ip-allow", "config": map[string]any{"allow": []string{"192.0.2.0/24"}}}},
	})
	d := r.data()
	token := d["token"].(string)
	assert.Regexp(t, `^[a-z2-7]{32}$`, token, "160 bits, lowercase base32: URL-safe and a DNS label")
	assert.NotContains(t, token, "=")
	assert.Equal(t, "http://127.0.0.1:8080/shared/"+token, d["shareUrl"])
	assert.Equal(t, []any{"GET", "POST"}, d["allowedMethods"])
	assert.Equal(t, []any{"10.0.0.0/8", "2001:db8::1/128"}, d["allowedIps"])
	assert.Equal(t, true, d["requiresPassword"])
	assert.NotContains(t, string(r.Raw), "s3cret-pass")
	exp, err := time.Parse(time.RFC3339, d["expiresAt"].(string))
	require.NoError(t, err)
	assert.WithinDuration(t, time.Now().Add(7*24*time.Hour), exp, time.Minute)
	id := d["id"].(string)

	list := h.must(200, "GET", "/v1/services/"+svcID+"/shares", h.admin, nil).list()
	require.Len(t, list, 1)
	item := list[0].(map[string]any)
	assert.Equal(t, token[:6], item["tokenPreview"])
	assert.NotContains(t, item, "token")
	for _, f := range []string{"id", "name", "description", "tokenPreview", "expiresAt", "revokedAt", "isActive", "accessCount", "lastAccessedAt", "createdAt", "createdBy"} {
		assert.Contains(t, item, f)
	}
	assert.Equal(t, true, item["isActive"])

	info := h.must(200, "GET", "/v1/shared/"+token+"/info", "", nil)
	assert.Equal(t, "web", info.str("serviceName"))
	assert.Equal(t, true, info.data()["requiresPassword"])
	h.assertError(h.req("GET", "/v1/shared/"+strings.Repeat("x", 32)+"/info", "", nil), 404)

	p := h.must(200, "PATCH", "/v1/shares/"+id, h.admin, map[string]any{"name": "renamed", "rateLimitPerMin": nil, "password": nil, "expiresIn": "never"})
	assert.Equal(t, "renamed", p.str("name"))
	assert.Nil(t, p.data()["rateLimitPerMin"])
	assert.Nil(t, p.data()["expiresAt"])
	assert.Equal(t, false, p.data()["requiresPassword"])
	assert.Equal(t, []any{"/api/*"}, p.data()["allowedPaths"], "untouched fields stay")

	for _, bad := range []map[string]any{
		{"name": ""}, {"expiresIn": "2d"}, {"expiresIn": "1h", "expiresAt": "2099-01-01T00:00:00Z"},
		{"expiresAt": "2001-01-01T00:00:00Z"}, {"expiresAt": "tomorrow"}, {"allowedMethods": []string{"TRACE"}},
		{"allowedPaths": []string{"api"}}, {"rateLimitPerMin": 0}, {"password": "short"}, {"allowedIps": []string{"10.0.0.0/33"}},
		{"maxUses": 0}, {"plugins": []any{map[string]any{"pluginId": ""}}}, {"description": strings.Repeat("d", 501)},
	} {
		r := h.req("PATCH", "/v1/shares/"+id, h.admin, bad)
		h.assertError(r, 400)
	}
	h.assertError(h.req("POST", "/v1/services/"+svcID+"/shares", h.admin, map[string]any{}), 400)

	del := h.must(200, "DELETE", "/v1/shares/"+id, h.admin, nil)
	assert.Equal(t, false, del.data()["isActive"])
	h.assertError(h.req("GET", "/v1/shared/"+token+"/info", "", nil), 404)
}

func TestEdgesAndAgentPresence(t *testing.T) {
	h := newHarness(t)
	edgeID, edgeToken := h.edge("e1")
	h.assertError(h.req("POST", "/v1/edges", h.admin, map[string]any{"name": "e1", "publicUrl": "http://a", "tunnelAddr": "a:1"}), 409)
	h.assertError(h.req("POST", "/v1/edges", h.admin, map[string]any{"name": "e2", "publicUrl": "ftp://a", "tunnelAddr": "a"}), 400)

	agentID, _ := h.agent(h.admin)
	report := func(body any) resp {
		return h.req("POST", "/v1/edges/report", "", body, "Authorization", "Bearer "+edgeToken)
	}
	h.assertError(h.req("POST", "/v1/edges/report", "", map[string]any{}, "Authorization", "Bearer nope"), 401)
	r := report(map[string]any{"configEpoch": "x", "configVersion": 1, "agents": []string{agentID},
		"events": []any{map[string]any{"agentId": agentID, "event": "CONNECTED", "ip": "192.0.2.7", "at": time.Now().UTC().Format(time.RFC3339)}}})
	require.Equal(t, 200, r.Status, "%s", r.Raw)

	a := h.must(200, "GET", "/v1/agents/"+agentID, h.admin, nil).data()
	assert.Equal(t, true, a["isOnline"])
	assert.Equal(t, []any{edgeID}, a["connectedEdges"])
	assert.Equal(t, "192.0.2.7", a["lastSeenIp"])
	assert.NotNil(t, a["lastSeenAt"])
	assert.Len(t, h.must(200, "GET", "/v1/agents?online=true", h.admin, nil).list(), 1)
	assert.Len(t, h.must(200, "GET", "/v1/agents?online=false", h.admin, nil).list(), 0)

	edges := h.must(200, "GET", "/v1/edges", h.admin, nil).list()
	require.Len(t, edges, 1)
	e := edges[0].(map[string]any)
	assert.Equal(t, true, e["isOnline"])
	assert.Equal(t, float64(1), e["connectedAgents"])
	assert.NotContains(t, e, "token")
	// Another workspace's admins see the edge, but only their own agents
	// on it (the count had every tenant's).
	tenant := h.must(201, "POST", "/v1/workspaces", h.admin, map[string]any{"name": "acme"}).data()["apiKey"].(map[string]any)["key"].(string)
	theirs := h.must(200, "GET", "/v1/edges", tenant, nil).list()
	require.Len(t, theirs, 1)
	assert.Equal(t, float64(0), theirs[0].(map[string]any)["connectedAgents"])
	tenantAgent, _ := h.agent(tenant)
	report(map[string]any{"configEpoch": "x", "configVersion": 1, "agents": []string{agentID, tenantAgent}})
	theirs = h.must(200, "GET", "/v1/edges", tenant, nil).list()
	assert.Equal(t, float64(1), theirs[0].(map[string]any)["connectedAgents"], "their own agent")
	assert.Equal(t, float64(2), h.must(200, "GET", "/v1/edges", h.admin, nil).list()[0].(map[string]any)["connectedAgents"], "the platform's admins see all")

	// The connection event is in the store's audit log.
	var evs []store.AuditEvent
	require.NoError(t, h.kv.View(context.Background(), func(tx store.Tx) error {
		var err error
		evs, _, err = store.ListAgentAudit(tx, h.ws, agentID, "", 0)
		return err
	}))
	var names []string
	for _, ev := range evs {
		names = append(names, ev.Event)
	}
	assert.Contains(t, names, "CONNECTED")
	assert.Contains(t, names, "PROVISIONED")

	// The agent leaves: offline again.
	require.Equal(t, 200, report(map[string]any{"configEpoch": "x", "configVersion": 1, "agents": []string{}}).Status)
	a = h.must(200, "GET", "/v1/agents/"+agentID, h.admin, nil).data()
	assert.Equal(t, false, a["isOnline"])
	assert.Equal(t, []any{}, a["connectedEdges"])

	h.must(200, "DELETE", "/v1/edges/"+edgeID, h.admin, nil)
	h.assertError(report(map[string]any{}), 401)
	h.assertError(h.req("DELETE", "/v1/edges/"+edgeID, h.admin, nil), 404)
}

func TestRateLimit(t *testing.T) {
	h := newHarness(t, func(c *control.Config) { c.RateLimits = control.RateLimits{PublicPerMin: 3, AuthenticatedPerMin: 5} })
	for i := 0; i < 3; i++ {
		r := h.req("GET", "/v1/shared/"+strings.Repeat("x", 32)+"/info", "", nil)
		require.Equal(t, 404, r.Status)
		assert.Equal(t, "3", r.Header.Get("X-RateLimit-Limit"))
		assert.Equal(t, fmt.Sprint(2-i), r.Header.Get("X-RateLimit-Remaining"))
		assert.NotEmpty(t, r.Header.Get("X-RateLimit-Reset"))
	}
	r := h.req("GET", "/v1/shared/"+strings.Repeat("x", 32)+"/info", "", nil)
	h.assertError(r, 429)
	assert.Equal(t, "Too Many Requests", r.Body["error"])
	assert.Equal(t, "Please wait before trying again", r.Body["message"])
	assert.Greater(t, r.Body["retryAfter"], float64(0))
	assert.NotEmpty(t, r.Header.Get("Retry-After"))
	// Failed authentication counts against the address (3 a minute here):
	// guessing keys meets a 429 (it never did), with the headers.
	bad := newHarness(t, func(c *control.Config) { c.RateLimits = control.RateLimits{PublicPerMin: 3, AuthenticatedPerMin: 1000} })
	for i := 0; i < 3; i++ {
		r := bad.req("GET", "/v1/services", "pc_"+strings.Repeat("0", 48), nil)
		bad.assertError(r, 401)
		assert.Equal(t, fmt.Sprint(2-i), r.Header.Get("X-RateLimit-Remaining"))
	}
	bad.assertError(bad.req("GET", "/v1/services", "pc_"+strings.Repeat("1", 48), nil), 429)
	bad.must(200, "GET", "/v1/services", bad.admin, nil) // a valid key is not held back
	// Keys have their own budget.
	for i := 0; i < 5; i++ {
		h.must(200, "GET", "/v1/services", h.admin, nil)
	}
	h.assertError(h.req("GET", "/v1/services", h.admin, nil), 429)
	// On the wire, the names are spelled as api-v1.md spells them (fasthttp
	// sent "X-Ratelimit-Limit").
	conn, err := net.Dial("tcp", strings.TrimPrefix(h.base, "http://"))
	require.NoError(t, err)
	fmt.Fprintf(conn, "GET /v1/services HTTP/1.1\r\nHost: x\r\nX-Api-Key: %s\r\nConnection: close\r\n\r\n", h.admin)
	raw, _ := io.ReadAll(conn)
	conn.Close()
	for _, name := range []string{"X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset"} {
		assert.Contains(t, string(raw), "\r\n"+name+": ")
	}
	other := h.addKey(h.ws, "second", []string{"read"}, nil, nil)
	h.must(200, "GET", "/v1/services", other, nil)
	// Health is not limited.
	for i := 0; i < 5; i++ {
		h.must(200, "GET", "/health", "", nil)
	}
}

func TestBootstrapAdminKeyFile(t *testing.T) {
	dir := t.TempDir()
	s, err := control.New(control.Config{Listen: "127.0.0.1:0", DataDir: dir})
	require.NoError(t, err)
	key, created := s.BootstrapAdminKey()
	require.True(t, created)
	require.Regexp(t, `^pc_[0-9a-f]{48}$`, key)
	require.NoError(t, s.Close())
	st, err := osStat(dir + "/admin.key")
	require.NoError(t, err)
	assert.Equal(t, "-rw-------", st)

	// Second start: no new key; the file's key is returned as not created.
	s, err = control.New(control.Config{Listen: "127.0.0.1:0", DataDir: dir})
	require.NoError(t, err)
	defer s.Close()
	k2, created := s.BootstrapAdminKey()
	assert.False(t, created)
	assert.Equal(t, key, k2)
}
