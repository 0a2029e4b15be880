package api

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"time"
	"unicode"

	"github.com/valyala/fasthttp"

	"github.com/privateconnect/pc/internal/config"
)

// The OpenAPI 3.1 document is generated from the route table once, at
// start-up: paths and methods from the routes, request and response schemas
// from the Go types by reflection (json tags), errors from each route's
// access and body rules. A test checks it against the router's own route
// list and validates it with kin-openapi.

type jsonObj = map[string]any

// schemaer lets a type describe its own schema (for custom JSON forms).
type schemaer interface{ jsonSchema() jsonObj }

func (tunnelTarget) jsonSchema() jsonObj {
	return jsonObj{"oneOf": []any{
		jsonObj{"type": "string", "description": "host:port", "examples": []any{"localhost:5432"}},
		jsonObj{"type": "object", "required": []any{"host", "port"}, "additionalProperties": false,
			"properties": jsonObj{"host": jsonObj{"type": "string"}, "port": jsonObj{"type": "integer", "minimum": 1, "maximum": 65535}}},
	}}
}

type schemaGen struct {
	defs map[string]jsonObj
	seen map[reflect.Type]string
}

var (
	timeType   = reflect.TypeOf(time.Time{})
	rawType    = reflect.TypeOf(json.RawMessage{})
	schemaerIf = reflect.TypeOf((*schemaer)(nil)).Elem()
)

func nullable(s jsonObj) jsonObj {
	if t, ok := s["type"].(string); ok {
		out := jsonObj{}
		for k, v := range s {
			out[k] = v
		}
		out["type"] = []any{t, "null"}
		return out
	}
	if _, ok := s["$ref"]; ok {
		return jsonObj{"oneOf": []any{s, jsonObj{"type": "null"}}}
	}
	return s
}

func exportName(n string) string {
	r := []rune(n)
	r[0] = unicode.ToUpper(r[0])
	return string(r)
}

// schema returns the schema of t; request marks request bodies (pointer
// fields are optional there, and nullable only in responses).
func (g *schemaGen) schema(t reflect.Type, request bool) jsonObj {
	if t.Implements(schemaerIf) {
		return reflect.Zero(t).Interface().(schemaer).jsonSchema()
	}
	switch {
	case t == timeType:
		return jsonObj{"type": "string", "format": "date-time"}
	case t == rawType:
		return jsonObj{}
	}
	switch t.Kind() {
	case reflect.Pointer:
		s := g.schema(t.Elem(), request)
		if request {
			return s
		}
		return nullable(s)
	case reflect.String:
		return jsonObj{"type": "string"}
	case reflect.Bool:
		return jsonObj{"type": "boolean"}
	case reflect.Int, reflect.Int64, reflect.Int32, reflect.Uint64:
		return jsonObj{"type": "integer"}
	case reflect.Float64, reflect.Float32:
		return jsonObj{"type": "number"}
	case reflect.Slice:
		return jsonObj{"type": "array", "items": g.schema(t.Elem(), request)}
	case reflect.Map:
		return jsonObj{"type": "object", "additionalProperties": g.schema(t.Elem(), request)}
	case reflect.Interface:
		return jsonObj{}
	case reflect.Struct:
		if et, ok := optElem(t); ok {
			return nullable(g.schema(et, request))
		}
		if t.Name() == "" {
			return g.object(t, request)
		}
		name := exportName(t.Name())
		if request {
			name += "Request"
			name = strings.TrimSuffix(name, "RequestRequest") + "Request"
		}
		if prev, ok := g.seen[t]; ok && !request {
			return jsonObj{"$ref": "#/components/schemas/" + prev}
		}
		if _, ok := g.defs[name]; !ok {
			g.defs[name] = jsonObj{} // placeholder against recursion
			g.defs[name] = g.object(t, request)
		}
		if !request {
			g.seen[t] = name
		}
		return jsonObj{"$ref": "#/components/schemas/" + name}
	}
	return jsonObj{}
}

// object describes a struct: its json fields (embedded structs flattened).
// In a response every field without omitempty is required (it is always
// sent); in a request body exactly the fields tagged api:"required" are:
// what the handler refuses with a 400 when the field is absent, whatever
// the field's Go type (a pointer or a slice tells absent from empty, it
// does not make the field optional). TestOpenAPIRequiredFields holds the
// tags to the handlers.
func (g *schemaGen) object(t reflect.Type, request bool) jsonObj {
	props := jsonObj{}
	var required []any
	eachJSONField(t, func(name, opts string, f reflect.StructField) {
		props[name] = g.schema(f.Type, request)
		req := !strings.Contains(opts, "omitempty")
		if request {
			req = f.Tag.Get("api") == "required"
		}
		if req {
			required = append(required, name)
		}
	})
	s := jsonObj{"type": "object", "properties": props}
	if len(required) > 0 {
		s["required"] = required
	}
	if request {
		s["additionalProperties"] = false
	}
	return s
}

func errResponse(desc string) jsonObj {
	return jsonObj{"description": desc, "content": jsonObj{"application/json": jsonObj{"schema": jsonObj{"$ref": "#/components/schemas/Error"}}}}
}

var rateHeaders = jsonObj{
	"X-RateLimit-Limit":     jsonObj{"description": "Requests allowed per minute", "schema": jsonObj{"type": "integer"}},
	"X-RateLimit-Remaining": jsonObj{"description": "Requests left in the window", "schema": jsonObj{"type": "integer"}},
	"X-RateLimit-Reset":     jsonObj{"description": "Unix time when the window resets", "schema": jsonObj{"type": "integer"}},
}

// openAPI builds the document.
func (a *API) openAPI() jsonObj {
	g := &schemaGen{defs: map[string]jsonObj{}, seen: map[reflect.Type]string{}}
	g.defs["FieldError"] = jsonObj{"type": "object", "required": []any{"field", "message"},
		"properties": jsonObj{"field": jsonObj{"type": "string"}, "message": jsonObj{"type": "string"}}}
	g.defs["Error"] = jsonObj{"type": "object", "required": []any{"error", "message", "statusCode"},
		"properties": jsonObj{
			"error":      jsonObj{"type": "string", "description": "Reason phrase, e.g. Not Found"},
			"message":    jsonObj{"type": "string"},
			"statusCode": jsonObj{"type": "integer"},
			"details":    jsonObj{"type": "array", "items": jsonObj{"$ref": "#/components/schemas/FieldError"}},
			"retryAfter": jsonObj{"type": "integer", "description": "Seconds to wait (429 only)"},
			"data":       jsonObj{"description": "Health payload (503 from /health only)"},
		}}
	paths := jsonObj{}
	for _, r := range a.routes {
		item, _ := paths[r.Path].(jsonObj)
		if item == nil {
			item = jsonObj{}
			paths[r.Path] = item
		}
		item[strings.ToLower(r.Method)] = a.operation(g, r)
	}
	return jsonObj{
		"openapi": "3.1.0",
		"info": jsonObj{"title": "Private Connect control API", "version": "v1",
			"description": "REST API of the Private Connect control plane. Every 2xx body is {\"success\":true,\"data\":…}; every other body is the Error envelope."},
		"servers": []any{jsonObj{"url": "/"}},
		"paths":   paths,
		"components": jsonObj{
			"schemas": g.defs,
			"securitySchemes": jsonObj{
				"apiKey":    jsonObj{"type": "apiKey", "in": "header", "name": "x-api-key", "description": "pc_<48 lowercase hex>; scopes read < write < admin"},
				"edgeToken": jsonObj{"type": "http", "scheme": "bearer", "description": "Edge token from POST /v1/edges"},
			},
		},
	}
}

func (a *API) operation(g *schemaGen, r *route) jsonObj {
	tag := strings.Split(strings.TrimPrefix(r.Path, "/v1/"), "/")[0]
	if !strings.HasPrefix(r.Path, "/v1/") {
		tag = "meta"
	}
	op := jsonObj{"operationId": r.Name, "summary": r.Summary, "tags": []any{tag}}
	var params []any
	for _, seg := range strings.Split(r.Path, "/") {
		if strings.HasPrefix(seg, "{") && strings.HasSuffix(seg, "}") {
			params = append(params, jsonObj{"name": seg[1 : len(seg)-1], "in": "path", "required": true, "schema": jsonObj{"type": "string"}})
		}
	}
	if r.List {
		params = append(params,
			jsonObj{"name": "limit", "in": "query", "schema": jsonObj{"type": "integer", "minimum": 1, "maximum": 500, "default": 50}},
			jsonObj{"name": "cursor", "in": "query", "schema": jsonObj{"type": "string"}, "description": "X-Next-Cursor of the previous page"})
	}
	for _, q := range r.Query {
		params = append(params, jsonObj{"name": q, "in": "query", "schema": jsonObj{"type": "string"}})
	}
	if len(params) > 0 {
		op["parameters"] = params
	}
	switch r.Access {
	case accessRead, accessWrite, accessAdmin:
		op["security"] = []any{jsonObj{"apiKey": []any{}}}
		op["description"] = "Requires an API key with the " + r.Access.scope() + " scope."
	case accessEdge:
		op["security"] = []any{jsonObj{"edgeToken": []any{}}}
	case accessAgent:
		op["security"] = []any{}
		op["description"] = "Authenticated by the agent token in the body."
	default:
		op["security"] = []any{}
	}
	hasBody := r.Method == "POST" || r.Method == "PATCH" || r.Method == "PUT"
	tooLarge := "Payload Too Large: body over 1 MiB"
	if cb, ok := r.Req.(customBody); ok {
		op["requestBody"], tooLarge = cb.openAPIBody(g)
	} else if r.Path == "/v1/edges/report" {
		// Decoded leniently: edges and control planes of neighbouring
		// versions interoperate, so unknown fields are allowed.
		op["requestBody"] = jsonObj{"required": true, "description": "internal/config.Report; unknown fields are ignored",
			"content": jsonObj{"application/json": jsonObj{"schema": g.schema(reflect.TypeOf(config.Report{}), false)}}}
		tooLarge = fmt.Sprintf("Payload Too Large: body over %d bytes", MaxRequestBodySize)
	} else if r.Req != nil {
		op["requestBody"] = jsonObj{"required": true, "content": jsonObj{"application/json": jsonObj{"schema": g.schema(reflect.TypeOf(r.Req), true)}}}
	}
	responses := jsonObj{}
	status := "200"
	if r.Created {
		status = "201"
	}
	var content jsonObj
	switch {
	case r.Path == "/v1/edges/config":
		content = jsonObj{"application/x-ndjson": jsonObj{"schema": g.schema(reflect.TypeOf(configMessage{}), false)}}
		op["description"] = "A stream of newline-delimited JSON messages (internal/config.Message), one per line, flushed as they are produced."
	case r.Path == "/openapi.json":
		content = jsonObj{"application/json": jsonObj{"schema": jsonObj{"type": "object"}}}
	case r.Path == "/metrics":
		content = jsonObj{"text/plain": jsonObj{"schema": jsonObj{"type": "string"}}}
	case r.Path == "/docs":
		content = jsonObj{"text/html": jsonObj{"schema": jsonObj{"type": "string"}}}
	case isRawContent(r.Resp):
		content = r.Resp.(rawContent).openAPIContent()
	case r.Path == "/docs/{file}":
		content = jsonObj{"text/javascript": jsonObj{"schema": jsonObj{"type": "string"}}, "text/css": jsonObj{"schema": jsonObj{"type": "string"}},
			"image/png": jsonObj{"schema": jsonObj{"type": "string", "contentMediaType": "image/png"}}}
	default:
		var data jsonObj
		if r.Resp != nil {
			data = g.schema(reflect.TypeOf(r.Resp), false)
		} else {
			data = jsonObj{}
		}
		if r.List {
			data = jsonObj{"type": "array", "items": data}
		}
		content = jsonObj{"application/json": jsonObj{"schema": jsonObj{"type": "object", "required": []any{"success", "data"},
			"properties": jsonObj{"success": jsonObj{"const": true}, "data": data}}}}
	}
	ok := jsonObj{"description": "Success", "content": content}
	headers := jsonObj{}
	if r.List {
		headers["X-Next-Cursor"] = jsonObj{"description": "Cursor of the next page, when there is one", "schema": jsonObj{"type": "string"}}
	}
	meta := r.Path == "/health" || r.Path == "/openapi.json" || r.Path == "/metrics" || strings.HasPrefix(r.Path, "/docs")
	limited := r.Access != accessEdge && r.Path != "/health"
	if limited {
		for k, v := range rateHeaders {
			headers[k] = v
		}
	}
	if len(headers) > 0 {
		ok["headers"] = headers
	}
	responses[status] = ok
	if r.Created && r.Name == "services.register" {
		responses["200"] = jsonObj{"description": "Updated (same name)", "content": content}
	}
	if r.Path == "/docs/{file}" {
		responses["404"] = errResponse("Not Found")
	}
	if !meta {
		responses["400"] = errResponse("Bad Request: malformed or invalid input (details name the fields)")
		responses["404"] = errResponse("Not Found (also: another workspace's resource)")
	}
	switch r.Access {
	case accessRead, accessWrite, accessAdmin:
		responses["401"] = errResponse("Unauthorized: missing, unknown, expired or revoked API key")
		responses["403"] = errResponse("Forbidden: scope too small or client IP not allowed")
	case accessEdge, accessAgent:
		responses["401"] = errResponse("Unauthorized: bad credentials")
	}
	if r.mutation() {
		responses["409"] = errResponse("Conflict: name or id taken")
	}
	if hasBody {
		responses["413"] = errResponse(tooLarge)
		responses["415"] = errResponse("Unsupported Media Type: body is not application/json")
	}
	if limited {
		responses["429"] = errResponse("Too Many Requests (Retry-After header, retryAfter field)")
	}
	responses["405"] = errResponse("Method Not Allowed")
	responses["500"] = errResponse("Internal Server Error")
	responses["503"] = errResponse("Service Unavailable: storage down or agent offline")
	if r.Name == "services.check" || r.Name == "services.reach" {
		responses["504"] = errResponse("Gateway Timeout: the agent did not answer")
	}
	op["responses"] = responses
	return op
}

// serveOpenAPI serves the generated document.
func (a *API) serveOpenAPI(ctx *fasthttp.RequestCtx) {
	ctx.SetContentType("application/json; charset=utf-8")
	ctx.SetBody(a.openapiDoc)
}

// OpenAPI returns the generated OpenAPI 3.1 document.
func (a *API) OpenAPI() []byte { return a.openapiDoc }

// RegisteredRoutes is the router's own list of registered routes (method →
// paths), for checking the OpenAPI document against it.
func (a *API) RegisteredRoutes() map[string][]string { return a.router.List() }

// optElem is T of the field type opt[T] (an optional field, agents.go).
func optElem(t reflect.Type) (reflect.Type, bool) {
	if !isOpt(t) {
		return nil, false
	}
	f, _ := t.FieldByName("V")
	return f.Type, true
}

func isOpt(t reflect.Type) bool {
	return t.Kind() == reflect.Struct && strings.HasPrefix(t.Name(), "opt[")
}
