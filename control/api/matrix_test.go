package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"sort"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/legacy"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/privateconnect/pc/control/api"
	"github.com/privateconnect/pc/control/store"
)

// docChecker validates answers against the served OpenAPI document.
type docChecker struct {
	doc    *openapi3.T
	router routers.Router
}

func newDocChecker(t *testing.T, h *harness) *docChecker {
	t.Helper()
	r := h.must(200, "GET", "/openapi.json", "", nil)
	doc, err := openapi3.NewLoader().LoadFromData(r.Raw)
	require.NoError(t, err)
	doc.Servers = nil
	rt, err := legacy.NewRouter(doc)
	require.NoError(t, err)
	return &docChecker{doc: doc, router: rt}
}

// check validates one answer (status documented, body matching its schema).
func (d *docChecker) check(t *testing.T, method, path string, r resp) {
	t.Helper()
	req, _ := http.NewRequest(method, "http://x"+path, nil)
	route, params, err := d.router.FindRoute(req)
	require.NoError(t, err, "%s %s is not in the document", method, path)
	in := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route,
			Options: &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc}},
		Status: r.Status, Header: r.Header,
		Options: &openapi3filter.Options{IncludeResponseStatus: true},
	}
	in.SetBodyBytes(r.Raw)
	assert.NoError(t, openapi3filter.ValidateResponse(context.Background(), in), "%s %s → %d %s", method, path, r.Status, r.Raw)
}

// dump returns the store's state without the records a failed request may
// legitimately touch (audit events, key usage, the config version mark).
func dump(t *testing.T, h *harness) map[string]string {
	t.Helper()
	out := map[string]string{}
	require.NoError(t, h.kv.View(context.Background(), func(tx store.Tx) error {
		return tx.Scan(nil, nil, func(k, v []byte) (bool, error) {
			ks := string(k)
			if strings.Contains(ks, "/audit/") || strings.Contains(ks, "/agentaudit/") || strings.Contains(ks, "/key/") || strings.HasPrefix(ks, "meta/") {
				return true, nil
			}
			out[ks] = string(v)
			return true, nil
		})
	}))
	return out
}

// TestBadInputMatrix walks every route with: no credentials, a revoked key,
// a read-only key, another workspace's ids, malformed JSON, a body of the
// wrong type, an unknown field, a wrong content type, an oversized body and a
// wrong method. Each answer must have the expected status, the error
// envelope, a useful message and match the OpenAPI document; no failed
// request may change the store.
func TestBadInputMatrix(t *testing.T) {
	h := newHarness(t)
	dc := newDocChecker(t, h)
	edgeID, edgeTok := h.edge("e")
	svcID, agentID := h.service(h.admin, "web")
	share := h.must(201, "POST", "/v1/services/"+svcID+"/shares", h.admin, map[string]any{"name": "s"})
	shareID, shareTok := share.str("id"), share.str("token")
	cmdID := h.must(201, "POST", "/v1/agents/"+agentID+"/command", h.admin, map[string]any{"action": "status"}).str("commandId")
	keyResp := h.must(201, "POST", "/v1/api-keys", h.admin, map[string]any{"name": "victim"})
	keyID := keyResp.str("id")
	readKey := h.must(201, "POST", "/v1/api-keys", h.admin, map[string]any{"name": "reader", "scopes": []string{"read"}}).str("key")
	revKey := h.must(201, "POST", "/v1/api-keys", h.admin, map[string]any{"name": "rev", "scopes": []string{"admin"}})
	h.must(200, "DELETE", "/v1/api-keys/"+revKey.str("id"), h.admin, nil)
	revokedKey := revKey.str("key")
	_, tenant := h.newWorkspace("tenant")
	hookID := h.must(201, "POST", "/v1/webhooks", h.admin, map[string]any{"url": "https://hooks.example.com/x", "events": []string{"plugin.failed"}}).str("id")
	pluginID := h.mustUpload("p", guest(t, "minimal"))

	fill := func(p string) string {
		rep := map[string]string{"{commandId}": cmdID, "{token}": shareTok, "{deliveryId}": cmdID}
		switch {
		case strings.HasPrefix(p, "/v1/agents/"):
			rep["{id}"] = agentID
		case strings.HasPrefix(p, "/v1/services/"), strings.HasPrefix(p, "/v1/tunnels/"):
			rep["{id}"] = svcID
		case strings.HasPrefix(p, "/v1/shares/"):
			rep["{id}"] = shareID
		case strings.HasPrefix(p, "/v1/api-keys/"):
			rep["{id}"] = keyID
		case strings.HasPrefix(p, "/v1/edges/"):
			rep["{id}"] = edgeID
		case strings.HasPrefix(p, "/v1/webhooks/"):
			rep["{id}"] = hookID
		case strings.HasPrefix(p, "/v1/plugins/"):
			rep["{id}"] = pluginID
		}
		for k, v := range rep {
			p = strings.ReplaceAll(p, k, v)
		}
		return p
	}

	type op struct {
		method, path string
		o            *openapi3.Operation
	}
	var ops []op
	for p, item := range dc.doc.Paths.Map() {
		for m, o := range item.Operations() {
			ops = append(ops, op{m, p, o})
		}
	}
	sort.Slice(ops, func(i, j int) bool { return ops[i].path+ops[i].method < ops[j].path+ops[j].method })
	require.Greater(t, len(ops), 50)

	send := func(method, path, key string, body []byte, hdr ...string) resp {
		if body == nil && (method == "POST" || method == "PATCH" || method == "PUT") {
			body = []byte("{}")
		}
		var b any
		if body != nil {
			b = body
		}
		return h.req(method, path, key, b, hdr...)
	}
	expect := func(t *testing.T, o op, path string, r resp, status int, msg string) {
		t.Helper()
		assertErr(t, r, status)
		if msg != "" {
			assert.Contains(t, strings.ToLower(r.Body["message"].(string)), strings.ToLower(msg), "%s %s", o.method, path)
		}
		dc.check(t, o.method, path, r)
	}

	// Valid bodies, so that the other-workspace case reaches the lookup.
	valid := map[string][]byte{
		"POST /v1/agents/{id}/capabilities":       []byte(`{"capabilities":[{"name":"x"}]}`),
		"POST /v1/agents/{id}/command":            []byte(`{"action":"status"}`),
		"POST /v1/agents/{id}/messages/broadcast": []byte(`{"payload":{}}`),
		"POST /v1/agents/{id}/messages/read":      []byte(`{"messageIds":["` + cmdID + `"]}`),
		"POST /v1/agents/{id}/messages/send":      []byte(`{"toAgentId":"` + agentID + `","payload":{}}`),
		"PUT /v1/api-keys/{id}/ip-restrictions":   []byte(`{"allowedIpRanges":[]}`),
		"POST /v1/services/{id}/shares":           []byte(`{"name":"x"}`),
		"POST /v1/tunnels/{id}/share":             []byte(`{"name":"x"}`),
		"PATCH /v1/services/{id}/public":          []byte(`{"isPublic":false}`),
		"POST /v1/services/{id}/reach":            []byte(`{"sourceAgentId":"` + agentID + `"}`),
	}
	before := dump(t, h)
	cases := 0
	for _, o := range ops {
		path := fill(o.path)
		sec := "public"
		if o.o.Security != nil && len(*o.o.Security) > 0 {
			for name := range (*o.o.Security)[0] {
				sec = name
			}
		}
		desc := o.o.Description
		hasBody := o.method == "POST" || o.method == "PATCH" || o.method == "PUT"
		agentRoute := strings.Contains(desc, "agent token")
		cred := []string{}
		key := ""
		switch {
		case sec == "apiKey":
			key = h.admin
		case sec == "edgeToken":
			cred = []string{"Authorization", "Bearer " + edgeTok}
		}
		t.Run(o.method+" "+o.path, func(t *testing.T) {
			if sec == "apiKey" {
				expect(t, o, path, send(o.method, path, "", nil), 401, "missing API key")
				expect(t, o, path, send(o.method, path, revokedKey, nil), 401, "invalid API key")
				expect(t, o, path, send(o.method, path, "pc_nothex", nil), 401, "invalid API key")
				cases += 3
				if !strings.Contains(desc, "read scope") {
					expect(t, o, path, send(o.method, path, readKey, nil), 403, "scope")
					cases++
				}
				if strings.Contains(o.path, "{id}") {
					r := send(o.method, path, tenant["admin"], valid[o.method+" "+o.path])
					if strings.HasPrefix(o.path, "/v1/edges/") {
						expect(t, o, path, r, 403, "workspace default")
					} else {
						expect(t, o, path, r, 404, "not found")
					}
					cases++
				}
			}
			if sec == "edgeToken" {
				expect(t, o, path, send(o.method, path, "", nil), 401, "edge token")
				expect(t, o, path, send(o.method, path, "", nil, "Authorization", "Bearer wrong"), 401, "edge token")
				cases += 2
			}
			if agentRoute {
				body := `{"agentId":"` + agentID + `","token":"x"}`
				if strings.HasSuffix(o.path, "rotate-token") {
					body = `{"agentId":"` + agentID + `","currentToken":"x"}`
				}
				expect(t, o, path, send(o.method, path, "", []byte(body)), 401, "agent")
				cases++
			}
			if hasBody {
				expect(t, o, path, send(o.method, path, key, []byte("{}"), append(cred, "Content-Type", "text/plain")...), 415, "application/json")
				size := 1<<20 + 1
				if o.path == "/v1/edges/report" {
					size = 16<<20 + 1
				}
				if o.path == "/v1/plugins" { // module uploads: 16 MiB, base64 in JSON
					size = api.MaxPluginUploadBytes + 1
				}
				big := bytes.Repeat([]byte(" "), size)
				big[0] = '{'
				big[len(big)-1] = '}'
				expect(t, o, path, send(o.method, path, key, big, cred...), 413, "larger than")
				cases += 2
				if o.o.RequestBody != nil {
					expect(t, o, path, send(o.method, path, key, []byte(`{"name":`), cred...), 400, "malformed JSON")
					expect(t, o, path, send(o.method, path, key, []byte(`[1]`), cred...), 400, "")
					cases += 2
					if o.path != "/v1/edges/report" { // reports are decoded leniently, for version skew
						expect(t, o, path, send(o.method, path, key, []byte(`{"noSuchField":1}`), cred...), 400, "noSuchField")
						cases++
					}
				} else if sec != "edgeToken" {
					// No request body: none, {} or null; a field is refused.
					expect(t, o, path, send(o.method, path, key, []byte(`{"noSuchField":1}`), cred...), 400, "noSuchField")
					cases++
				}
			}
			// A method the path does not have.
			item := dc.doc.Paths.Find(o.path)
			for _, m := range []string{"PUT", "PATCH", "DELETE", "POST", "GET"} {
				if item.GetOperation(m) == nil {
					r := send(m, path, h.admin, nil)
					assertErr(t, r, 405)
					assert.NotEmpty(t, r.Header.Get("Allow"))
					cases++
					break
				}
			}
		})
	}
	// Unknown routes.
	for _, p := range []string{"/v1/nothing", "/v2/services", "/v1/services/x/y/z"} {
		r := h.req("GET", p, h.admin, nil)
		h.assertError(r, 404)
		cases++
	}
	assert.Equal(t, before, dump(t, h), "a failed request changed the store")
	t.Logf("%d bad-input cases over %d operations", cases, len(ops))
}

// TestResponsesMatchDocument runs the success paths of the main routes and
// checks each answer against the OpenAPI document.
func TestResponsesMatchDocument(t *testing.T) {
	h := newHarness(t)
	dc := newDocChecker(t, h)
	_, edgeTok := h.edge("e")
	svcID, agentID := h.service(h.admin, "web")
	do := func(status int, method, path string, body any) resp {
		t.Helper()
		r := h.must(status, method, path, h.admin, body)
		dc.check(t, method, path, r)
		return r
	}
	share := do(201, "POST", "/v1/services/"+svcID+"/shares", map[string]any{"name": "s", "password": "password1", "maxUses": 3})
	do(200, "GET", "/v1/services/"+svcID+"/shares", nil)
	do(200, "GET", "/v1/shares/"+share.str("id"), nil)
	do(200, "PATCH", "/v1/shares/"+share.str("id"), map[string]any{"description": "d"})
	do(200, "GET", "/v1/services", nil)
	do(200, "GET", "/v1/services/"+svcID, nil)
	do(200, "PATCH", "/v1/services/"+svcID, map[string]any{"protocol": "http"})
	do(200, "PATCH", "/v1/services/"+svcID+"/public", map[string]any{"isPublic": true})
	do(200, "PATCH", "/v1/services/"+svcID+"/health-config", map[string]any{"enabled": false})
	do(200, "GET", "/v1/services/"+svcID+"/diagnostics", nil)
	do(200, "GET", "/v1/agents", nil)
	do(200, "GET", "/v1/agents/"+agentID, nil)
	do(200, "GET", "/v1/agents/orchestration", nil)
	do(200, "GET", "/v1/agents/"+agentID+"/audit-logs", nil)
	do(200, "POST", "/v1/agents/"+agentID+"/capabilities", map[string]any{"capabilities": []any{map[string]any{"name": "x"}}})
	a2, _ := h.agent(h.admin)
	do(201, "POST", "/v1/agents/"+agentID+"/messages/send", map[string]any{"toAgentId": a2, "payload": map[string]any{}})
	do(201, "POST", "/v1/agents/"+agentID+"/messages/broadcast", map[string]any{"payload": map[string]any{}})
	do(200, "GET", "/v1/agents/"+a2+"/messages", nil)
	cmd := do(201, "POST", "/v1/agents/"+agentID+"/command", map[string]any{"action": "status"})
	do(200, "GET", "/v1/agents/"+agentID+"/commands/"+cmd.str("commandId"), nil)
	do(200, "GET", "/v1/tunnels", nil)
	do(200, "GET", "/v1/tunnels/"+svcID, nil)
	do(200, "GET", "/v1/tunnels/"+svcID+"/connections", nil)
	tun := do(201, "POST", "/v1/tunnels", map[string]any{"target": "127.0.0.1:6379", "agentId": agentID})
	do(200, "PATCH", "/v1/tunnels/"+tun.str("id"), map[string]any{"status": "paused"})
	do(201, "POST", "/v1/tunnels/"+tun.str("id")+"/share", map[string]any{"name": "t"})
	do(200, "DELETE", "/v1/tunnels/"+tun.str("id"), nil)
	k := do(201, "POST", "/v1/api-keys", map[string]any{"name": "k"})
	do(200, "GET", "/v1/api-keys", nil)
	do(200, "GET", "/v1/api-keys/"+k.str("id"), nil)
	do(200, "PUT", "/v1/api-keys/"+k.str("id")+"/ip-restrictions", map[string]any{"allowedIpRanges": []string{"::1/128"}})
	do(200, "DELETE", "/v1/api-keys/"+k.str("id"), nil)
	do(200, "GET", "/v1/workspace", nil)
	do(201, "POST", "/v1/workspaces", map[string]any{"name": "w2"})
	do(200, "GET", "/v1/status", nil)
	do(200, "GET", "/v1/audit", nil)
	do(200, "GET", "/v1/edges", nil)
	do(200, "DELETE", "/v1/shares/"+share.str("id"), nil)
	info := h.must(404, "GET", "/v1/shared/"+share.str("token")+"/info", "", nil)
	dc.check(t, "GET", "/v1/shared/x/info", info)
	r := h.req("POST", "/v1/edges/report", "", map[string]any{"agents": []string{agentID}}, "Authorization", "Bearer "+edgeTok)
	dc.check(t, "POST", "/v1/edges/report", r)
	r = h.req("GET", "/v1/edges/agent-inbox?agentId="+agentID, "", nil, "Authorization", "Bearer "+edgeTok)
	dc.check(t, "GET", "/v1/edges/agent-inbox", r)
	do(200, "DELETE", "/v1/agents/"+a2, nil)
	do(200, "DELETE", "/v1/services/"+svcID, nil)
	hr := h.must(200, "GET", "/health", "", nil)
	dc.check(t, "GET", "/health", hr)
	var raw map[string]any
	require.NoError(t, json.NewDecoder(io.LimitReader(bytes.NewReader(h.must(200, "GET", "/openapi.json", "", nil).Raw), 1<<24)).Decode(&raw))
}
