package api_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/privateconnect/pc/control/api"
	"github.com/privateconnect/pc/control/push"
	"github.com/privateconnect/pc/control/store/memstore"
)

func newAPI(t *testing.T) *api.API {
	t.Helper()
	kv := memstore.New()
	hub, err := push.New(context.Background(), kv, push.Options{})
	require.NoError(t, err)
	a, err := api.New(api.Options{KV: kv, Hub: hub, HealthTick: -1})
	require.NoError(t, err)
	t.Cleanup(a.Close)
	return a
}

// TestOpenAPICoversEveryRoute fails when a route registered on the router is
// missing from the document (or the document lists one the router lacks).
func TestOpenAPICoversEveryRoute(t *testing.T) {
	a := newAPI(t)
	var doc struct {
		Paths map[string]map[string]json.RawMessage `json:"paths"`
	}
	require.NoError(t, json.Unmarshal(a.OpenAPI(), &doc))
	registered := map[string]bool{}
	for method, paths := range a.RegisteredRoutes() {
		for _, p := range paths {
			registered[method+" "+p] = true
			if method == "HEAD" { // implied by GET, as HTTP has it
				_, ok := doc.Paths[p]["get"]
				assert.True(t, ok, "HEAD %s without a GET", p)
				continue
			}
			_, ok := doc.Paths[p][strings.ToLower(method)]
			assert.True(t, ok, "route %s %s is not in the OpenAPI document", method, p)
		}
	}
	for p, ops := range doc.Paths {
		for m := range ops {
			assert.True(t, registered[strings.ToUpper(m)+" "+p], "document lists %s %s, which the router lacks", m, p)
		}
	}
	assert.Greater(t, len(registered), 50)
}

// TestOpenAPIValidates loads and validates the document with kin-openapi
// (which supports OpenAPI 3.1 and JSON Schema 2020-12).
func TestOpenAPIValidates(t *testing.T) {
	a := newAPI(t)
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromData(a.OpenAPI())
	require.NoError(t, err)
	require.Equal(t, "3.1.0", doc.OpenAPI)
	require.NoError(t, doc.Validate(context.Background()))
	// Every operation has an id, a summary, a success and error responses.
	ids := map[string]bool{}
	for p, item := range doc.Paths.Map() {
		for m, op := range item.Operations() {
			assert.NotEmpty(t, op.OperationID, "%s %s", m, p)
			assert.False(t, ids[op.OperationID], "duplicate operationId %s", op.OperationID)
			ids[op.OperationID] = true
			assert.NotEmpty(t, op.Summary, "%s %s", m, p)
			assert.NotNil(t, op.Responses.Value("500"), "%s %s", m, p)
			if m == "POST" || m == "PATCH" || m == "PUT" {
				assert.NotNil(t, op.Responses.Value("415"), "%s %s", m, p)
			}
			if p == "/v1/edges/report" {
				require.NotNil(t, op.RequestBody, "the edge report's body is documented")
				schema := op.RequestBody.Value.Content.Get("application/json").Schema.Value
				assert.Contains(t, schema.Properties, "agents")
			}
		}
	}
	// Request schemas are strict (no unknown fields).
	op := doc.Paths.Find("/v1/services/{id}/shares").Post
	s := op.RequestBody.Value.Content.Get("application/json").Schema.Value
	require.NotNil(t, s.AdditionalProperties.Has)
	assert.False(t, *s.AdditionalProperties.Has)
	assert.Contains(t, s.Properties, "expiresIn")
}

func TestDocs(t *testing.T) {
	h := newHarness(t)
	r := h.req("GET", "/docs", "", nil)
	require.Equal(t, 200, r.Status)
	assert.Contains(t, string(r.Raw), "swagger-ui-bundle.js")
	assert.Contains(t, r.Header.Get("Content-Security-Policy"), "script-src 'self'")
	assert.Equal(t, "nosniff", r.Header.Get("X-Content-Type-Options"))
	for _, f := range []string{"swagger-ui-bundle.js", "swagger-ui-standalone-preset.js", "swagger-ui.css", "init.js", "favicon-32x32.png"} {
		r := h.req("GET", "/docs/"+f, "", nil)
		require.Equal(t, 200, r.Status, f)
		assert.Greater(t, len(r.Raw), 100, f)
	}
	assert.Contains(t, string(h.req("GET", "/docs/init.js", "", nil).Raw), "/openapi.json")
	h.assertError(h.req("GET", "/docs/nope.js", "", nil), 404)
	r = h.req("GET", "/openapi.json", "", nil)
	require.Equal(t, 200, r.Status)
	assert.Equal(t, "3.1.0", r.Body["openapi"])
}

func TestMetrics(t *testing.T) {
	h := newHarness(t)
	h.must(200, "GET", "/v1/services", h.admin, nil)
	h.req("GET", "/v1/services", "", nil)
	r := h.req("GET", "/metrics", "", nil)
	require.Equal(t, 200, r.Status)
	body := string(r.Raw)
	assert.Contains(t, body, `pc_control_http_requests_total{code="200",method="GET",route="services.list"} 1`)
	assert.Contains(t, body, `pc_control_http_requests_total{code="401",method="GET",route="services.list"} 1`)
	assert.Contains(t, body, "pc_control_config_version")
	assert.Contains(t, body, "go_goroutines")
}

// TestOpenAPIRequiredFields holds each documented request body's `required`
// list to its handler: for every operation with a JSON request body, a
// minimal valid body (exactly the schema's required fields, at every level)
// is accepted, so no field left out of it is required; and that body
// without any one of its required fields is a 400 naming the field.
func TestOpenAPIRequiredFields(t *testing.T) {
	h := newHarness(t)
	dc := newDocChecker(t, h)
	svcID, agentID := h.service(h.admin, "web")
	otherAgent, otherToken := h.agent(h.admin)
	rotAgent, rotToken := h.agent(h.admin)
	shareID := h.must(201, "POST", "/v1/services/"+svcID+"/shares", h.admin, map[string]any{"name": "s"}).str("id")
	keyID := h.must(201, "POST", "/v1/api-keys", h.admin, map[string]any{"name": "victim"}).str("id")
	hookID := h.must(201, "POST", "/v1/webhooks", h.admin, map[string]any{"url": "https://hooks.example.com/x", "events": []string{"plugin.failed"}}).str("id")
	pluginID := h.mustUpload("p", guest(t, "minimal"))
	msgID := h.must(201, "POST", "/v1/agents/"+agentID+"/messages/send", h.admin,
		map[string]any{"toAgentId": otherAgent, "payload": map[string]any{}}).str("messageId")

	type minimal struct {
		path   string         // the concrete path
		body   map[string]any // exactly the required fields
		status int            // of the minimal body (0: 200 or 201)
	}
	// The agent token's fields are credentials: without one, 401.
	credentials := map[string]bool{"POST /v1/agents/heartbeat": true, "POST /v1/agents/rotate-token": true}
	// Keyed by the document's "METHOD path". Each minimal body is sent once
	// (it may create something); the bodies missing a field change nothing.
	table := map[string]minimal{
		"POST /v1/agents/provision":    {"/v1/agents/provision", map[string]any{}, 0},
		"POST /v1/agents/register":     {"/v1/agents/register", map[string]any{"agentId": uuid.NewString(), "token": strings.Repeat("t", 32)}, 0},
		"POST /v1/agents/heartbeat":    {"/v1/agents/heartbeat", map[string]any{"agentId": otherAgent, "token": otherToken}, 0},
		"POST /v1/agents/rotate-token": {"/v1/agents/rotate-token", map[string]any{"agentId": rotAgent, "currentToken": rotToken}, 0},
		"POST /v1/agents/{id}/capabilities": {"/v1/agents/" + agentID + "/capabilities",
			map[string]any{"capabilities": []any{map[string]any{"name": "gpu"}}}, 0},
		"POST /v1/agents/{id}/messages/send": {"/v1/agents/" + agentID + "/messages/send",
			map[string]any{"toAgentId": otherAgent, "payload": map[string]any{}}, 0},
		"POST /v1/agents/{id}/messages/broadcast": {"/v1/agents/" + agentID + "/messages/broadcast", map[string]any{"payload": map[string]any{}}, 0},
		"POST /v1/agents/{id}/messages/read":      {"/v1/agents/" + otherAgent + "/messages/read", map[string]any{"messageIds": []any{msgID}}, 0},
		"POST /v1/agents/{id}/command":            {"/v1/agents/" + agentID + "/command", map[string]any{"action": "status"}, 0},
		"POST /v1/services/register": {"/v1/services/register",
			map[string]any{"agentId": agentID, "name": "db", "targetHost": "127.0.0.1", "targetPort": 5432}, 0},
		"PATCH /v1/services/{id}":               {"/v1/services/" + svcID, map[string]any{}, 0},
		"PATCH /v1/services/{id}/health-config": {"/v1/services/" + svcID + "/health-config", map[string]any{}, 0},
		"PATCH /v1/services/{id}/public":        {"/v1/services/" + svcID + "/public", map[string]any{"isPublic": false}, 0},
		// The source agent is offline: the body was accepted.
		"POST /v1/services/{id}/reach":          {"/v1/services/" + svcID + "/reach", map[string]any{"sourceAgentId": otherAgent}, 503},
		"POST /v1/services/{id}/shares":         {"/v1/services/" + svcID + "/shares", map[string]any{"name": "s2"}, 0},
		"PATCH /v1/shares/{id}":                 {"/v1/shares/" + shareID, map[string]any{}, 0},
		"POST /v1/tunnels":                      {"/v1/tunnels", map[string]any{"target": "127.0.0.1:6379", "agentId": agentID}, 0},
		"PATCH /v1/tunnels/{id}":                {"/v1/tunnels/" + svcID, map[string]any{}, 0},
		"POST /v1/tunnels/{id}/share":           {"/v1/tunnels/" + svcID + "/share", map[string]any{"name": "s3"}, 0},
		"POST /v1/api-keys":                     {"/v1/api-keys", map[string]any{"name": "k"}, 0},
		"PUT /v1/api-keys/{id}/ip-restrictions": {"/v1/api-keys/" + keyID + "/ip-restrictions", map[string]any{"allowedIpRanges": []any{}}, 0},
		"POST /v1/workspaces":                   {"/v1/workspaces", map[string]any{"name": "w2"}, 0},
		"POST /v1/edges": {"/v1/edges",
			map[string]any{"name": "e", "publicUrl": "http://127.0.0.1:8080", "tunnelAddr": "127.0.0.1:7070"}, 0},
		"POST /v1/webhooks": {"/v1/webhooks",
			map[string]any{"url": "https://hooks.example.com/y", "events": []any{"share.created"}}, 0},
		"PATCH /v1/webhooks/{id}": {"/v1/webhooks/" + hookID, map[string]any{}, 0},
		"POST /v1/plugins": {"/v1/plugins",
			map[string]any{"name": "q", "wasmBase64": base64.StdEncoding.EncodeToString(guest(t, "minimal"))}, 0},
		"POST /v1/plugins/{id}/test": {"/v1/plugins/" + pluginID + "/test", map[string]any{}, 0},
	}

	// A required field at a path of a body: ["capabilities", 0, "name"].
	type fieldPath []any
	name := func(p fieldPath) string {
		var b strings.Builder
		for _, s := range p {
			switch s := s.(type) {
			case string:
				if b.Len() > 0 {
					b.WriteByte('.')
				}
				b.WriteString(s)
			case int:
				fmt.Fprintf(&b, "[%d]", s)
			}
		}
		return b.String()
	}
	// required lists the required fields of v under schema s, checking
	// that v holds exactly those.
	var required func(t *testing.T, s *openapi3.Schema, v any, at fieldPath) []fieldPath
	required = func(t *testing.T, s *openapi3.Schema, v any, at fieldPath) []fieldPath {
		var out []fieldPath
		switch v := v.(type) {
		case map[string]any:
			if s.Properties == nil { // a free-form object (payload)
				return nil
			}
			var keys []string
			for k := range v {
				keys = append(keys, k)
			}
			assert.ElementsMatch(t, s.Required, keys, "%s: the minimal body holds the required fields, no more", name(at))
			for _, k := range s.Required {
				p := append(append(fieldPath{}, at...), k)
				out = append(out, p)
				if ps := s.Properties[k]; ps != nil && ps.Value != nil {
					out = append(out, required(t, ps.Value, v[k], p)...)
				}
			}
		case []any:
			if s.Items != nil && s.Items.Value != nil {
				for i, it := range v {
					out = append(out, required(t, s.Items.Value, it, append(append(fieldPath{}, at...), i))...)
				}
			}
		}
		return out
	}
	without := func(body map[string]any, p fieldPath) map[string]any {
		var v any
		b, _ := json.Marshal(body)
		require.NoError(t, json.Unmarshal(b, &v))
		cur := v
		for _, s := range p[:len(p)-1] {
			switch s := s.(type) {
			case string:
				cur = cur.(map[string]any)[s]
			case int:
				cur = cur.([]any)[s]
			}
		}
		delete(cur.(map[string]any), p[len(p)-1].(string))
		return v.(map[string]any)
	}
	send := func(method, path string, body map[string]any) resp {
		if strings.HasSuffix(path, "/heartbeat") || strings.HasSuffix(path, "/rotate-token") {
			return h.req(method, path, "", body) // agent token in the body
		}
		return h.req(method, path, h.admin, body)
	}

	seen := map[string]bool{}
	for p, item := range dc.doc.Paths.Map() {
		for m, op := range item.Operations() {
			if op.RequestBody == nil || p == "/v1/edges/report" { // reports are decoded leniently
				continue
			}
			mt := op.RequestBody.Value.Content.Get("application/json")
			if mt == nil {
				continue
			}
			key := m + " " + p
			seen[key] = true
			tc, ok := table[key]
			if !assert.True(t, ok, "%s has a request body: give it a minimal body here", key) {
				continue
			}
			schema := mt.Schema.Value
			t.Run(key, func(t *testing.T) {
				fields := required(t, schema, tc.body, nil)
				for _, f := range fields {
					r := send(m, tc.path, without(tc.body, f))
					if credentials[key] {
						assertErr(t, r, 401)
						continue
					}
					assertErr(t, r, 400)
					assert.Contains(t, string(r.Raw), `"field":"`+name(f)+`"`, "without %s: %s", name(f), r.Raw)
				}
				r := send(m, tc.path, tc.body)
				if tc.status != 0 {
					assert.Equal(t, tc.status, r.Status, "%s", r.Raw)
				} else {
					assert.Contains(t, []int{200, 201}, r.Status, "the required fields alone: %s", r.Raw)
				}
			})
		}
	}
	for key := range table {
		assert.True(t, seen[key], "%s is not a documented operation with a JSON body", key)
	}
	// The audit's named bodies are checked.
	for _, k := range []string{"POST /v1/services/{id}/shares", "POST /v1/webhooks", "POST /v1/agents/{id}/messages/send",
		"POST /v1/agents/{id}/messages/broadcast", "PATCH /v1/services/{id}/public", "PUT /v1/api-keys/{id}/ip-restrictions",
		"POST /v1/agents/{id}/messages/read", "POST /v1/agents/{id}/capabilities"} {
		assert.NotEmpty(t, table[k].body, k)
	}
}
