package api_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
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
