package api

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/valyala/fasthttp"

	"github.com/privateconnect/pc/control/push"
	"github.com/privateconnect/pc/control/store"
	"github.com/privateconnect/pc/plugins"
	"github.com/privateconnect/pc/plugins/abi"
	"github.com/privateconnect/pc/plugins/builtin"
)

// Plugins (admin): upload, list (built-ins included), get, download,
// delete and dry-run of Wasm access-control plugins, and the edge route
// that serves modules by SHA-256. Decisions:
//
//   - Uploads take three forms: the raw module (application/wasm, or
//     application/octet-stream) with ?name=&version=…; JSON with the module
//     in wasmBase64; a multipart form with the module in the part "file".
//     A module may be up to [MaxPluginBytes] (16 MiB: Go guests are 2-4 MB);
//     the 1 MiB limit of JSON bodies does not apply to this route, whose
//     body may be up to [MaxPluginUploadBytes] in any form (the base64 form
//     of a 16 MiB module is 4/3 as large).
//   - The module is validated by the control plane's own Wasm host
//     (plugins.Host.Validate: compiles, imports only what ABI v1 allows,
//     exports what it requires, _initialize runs with config {}), then
//     loaded with the plugin's own limits (so a module that cannot run
//     within its memoryLimitBytes is refused at upload, not on every edge).
//     A refused module is 400 with the reason.
//   - Plugins are immutable; a new module is a new plugin (name + version
//     are unique together in a workspace, 409 otherwise). Version is
//     optional.
//   - Built-ins are listed with builtin: true and ids "builtin:<name>"; they
//     can be read, downloaded and dry-run, and deleting one is 400 (it can
//     never succeed: they are part of the server, unlike a plugin in use,
//     409, which can be deleted once its shares let it go).
//   - The dry-run (POST /v1/plugins/:id/test) runs on the control plane's
//     host, created at first use with its compilation cache in
//     Options.PluginCacheDir (<data>/plugins); modules load on demand and
//     the least recently used are unloaded beyond maxLoadedPlugins.

// MaxPluginBytes bounds an uploaded module (413 above).
const MaxPluginBytes = 16 << 20

// MaxPluginUploadBytes bounds the body of POST /v1/plugins in any of its
// forms: the base64 of a MaxPluginBytes module, plus 1 MiB for the rest.
const MaxPluginUploadBytes = (MaxPluginBytes+2)/3*4 + 1<<20

// Plugin upload limits of the per-plugin options.
const (
	maxPluginTimeoutMs   = int(abi.MaxTimeout / time.Millisecond)
	minPluginMemoryBytes = 1 << 20
	maxPluginMemoryBytes = 256 << 20
)

var (
	rePluginName    = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$`)
	rePluginVersion = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9.+_-]{0,49}$`)
	reSHA256        = regexp.MustCompile(`^[0-9a-f]{64}$`)
)

// pluginRoutes are the plugin routes of the table.
func (a *API) pluginRoutes() []*route {
	wasm := &route{Name: "plugins.wasm", Method: "GET", Path: "/v1/plugins/{id}/wasm", Access: accessAdmin,
		Summary: "Download a plugin's module (application/wasm; built-ins too)", Resp: moduleFile{}, h: a.pluginModule}
	wasm.raw = a.serveModule(wasm)
	edge := &route{Name: "edges.plugin", Method: "GET", Path: "/v1/edges/plugins/{sha256}", Access: accessEdge,
		Summary: "A plugin module by SHA-256, for edges (application/wasm)", Resp: moduleFile{}, h: a.edgePluginModule}
	edge.raw = a.serveModule(edge)
	return []*route{
		{Name: "plugins.create", Method: "POST", Path: "/v1/plugins", Access: accessAdmin, Created: true,
			Summary: "Upload a Wasm plugin (application/wasm with ?name=&version=, JSON with wasmBase64, or multipart field file); validated first",
			Query:   []string{"name", "version", "description", "failOpen", "timeoutMs", "memoryLimitBytes"},
			Req:     createPluginRequest{}, Resp: pluginView{}, h: a.createPlugin},
		{Name: "plugins.list", Method: "GET", Path: "/v1/plugins", Access: accessAdmin, List: true,
			Summary: "List plugins, built-ins first (builtin: true)", Resp: pluginView{}, h: a.listPlugins},
		{Name: "plugins.get", Method: "GET", Path: "/v1/plugins/{id}", Access: accessAdmin, Summary: "Get a plugin (or a built-in: builtin:<name>)",
			Resp: pluginView{}, h: a.getPlugin},
		wasm,
		{Name: "plugins.delete", Method: "DELETE", Path: "/v1/plugins/{id}", Access: accessAdmin,
			Summary: "Delete an uploaded plugin (409 while a share uses it; built-ins: 400)", Resp: pluginView{}, h: a.deletePlugin},
		{Name: "plugins.test", Method: "POST", Path: "/v1/plugins/{id}/test", Access: accessAdmin,
			Summary: "Dry-run a plugin on a sample request, on the control plane", Req: testPluginRequest{}, Resp: testPluginResult{}, h: a.testPlugin},
		edge,
	}
}

// pluginView is a plugin as the API shows it. Limits are the effective
// ones (defaults filled in).
type pluginView struct {
	ID                string          `json:"id"`
	Name              string          `json:"name"`
	Version           string          `json:"version"`
	Description       string          `json:"description"`
	Builtin           bool            `json:"builtin"`
	SHA256            string          `json:"sha256"`
	SizeBytes         int             `json:"sizeBytes"`
	Exports           []string        `json:"exports"`
	HasValidateConfig bool            `json:"hasValidateConfig"`
	ConfigSchema      json.RawMessage `json:"configSchema,omitempty"`
	FailOpen          bool            `json:"failOpen"`
	TimeoutMs         int             `json:"timeoutMs"`
	MemoryLimitBytes  uint64          `json:"memoryLimitBytes"`
	CreatedAt         *time.Time      `json:"createdAt,omitempty"`
	CreatedBy         string          `json:"createdBy,omitempty"`
}

func pluginViewOf(p *store.Plugin) pluginView {
	v := pluginView{ID: p.ID, Name: p.Name, Version: p.Version, Description: p.Description, SHA256: p.SHA256,
		SizeBytes: p.SizeBytes, Exports: p.Exports, HasValidateConfig: p.HasValidateConfig, FailOpen: p.FailOpen,
		TimeoutMs: p.TimeoutMs, MemoryLimitBytes: p.MemoryLimitBytes, CreatedBy: p.CreatedBy}
	if v.Exports == nil {
		v.Exports = []string{}
	}
	if v.TimeoutMs == 0 {
		v.TimeoutMs = int(abi.DefaultTimeout / time.Millisecond)
	}
	if v.MemoryLimitBytes == 0 {
		v.MemoryLimitBytes = abi.DefaultMemoryLimitBytes
	}
	t := p.CreatedAt
	v.CreatedAt = &t
	return v
}

// createPluginRequest is the JSON form of POST /v1/plugins; the raw form
// takes the same fields (but the module) as query parameters, the multipart
// form as parts.
type createPluginRequest struct {
	Name             string  `json:"name" api:"required"`
	Version          *string `json:"version"`
	WasmBase64       string  `json:"wasmBase64" api:"required"`
	Description      *string `json:"description"`
	FailOpen         *bool   `json:"failOpen"`
	TimeoutMs        *int    `json:"timeoutMs"`
	MemoryLimitBytes *uint64 `json:"memoryLimitBytes"`
}

// customBody is implemented by request types whose route takes other
// bodies than JSON up to MaxBodyBytes: serve calls checkBody instead of the
// common rule, and the OpenAPI document takes the route's request body and
// 413 description from openAPIBody.
type customBody interface {
	checkBody(ctx *fasthttp.RequestCtx) *Error
	openAPIBody(g *schemaGen) (requestBody jsonObj, tooLarge string)
}

var _ customBody = createPluginRequest{}

var uploadTypes = []string{"application/json", "application/wasm", "application/octet-stream", "multipart/form-data"}

func (createPluginRequest) checkBody(ctx *fasthttp.RequestCtx) *Error {
	body := ctx.Request.Body()
	if len(body) > MaxPluginUploadBytes {
		return newError(fasthttp.StatusRequestEntityTooLarge, "%s", uploadTooLarge)
	}
	ct := string(ctx.Request.Header.ContentType())
	if ct == "" && len(body) == 0 {
		return nil
	}
	if mt, _, err := mime.ParseMediaType(ct); err == nil && slices.Contains(uploadTypes, mt) {
		return nil
	}
	if ct == "" {
		ct = "none"
	}
	return newError(fasthttp.StatusUnsupportedMediaType, "Content-Type must be application/json, application/wasm or multipart/form-data (got %s)", ct)
}

func (createPluginRequest) openAPIBody(g *schemaGen) (jsonObj, string) {
	binary := jsonObj{"type": "string", "contentMediaType": "application/wasm"}
	str, integer := jsonObj{"type": "string"}, jsonObj{"type": "integer"}
	return jsonObj{"required": true,
		"description": fmt.Sprintf("The module (at most %d bytes) and its metadata, in one of three forms. "+
			"application/wasm (or application/octet-stream): the module as the body, the other fields as query parameters. "+
			"application/json: the module in wasmBase64. multipart/form-data: the module in the part file, the other fields as parts.", MaxPluginBytes),
		"content": jsonObj{
			"application/json": jsonObj{"schema": g.schema(reflect.TypeOf(createPluginRequest{}), true)},
			"application/wasm": jsonObj{"schema": binary},
			"multipart/form-data": jsonObj{"schema": jsonObj{"type": "object", "required": []any{"file", "name"},
				"properties": jsonObj{"file": binary, "name": str, "version": str, "description": str,
					"failOpen": jsonObj{"type": "boolean"}, "timeoutMs": integer, "memoryLimitBytes": integer}}},
		}}, fmt.Sprintf("Payload Too Large: module over %d bytes, or body over %d bytes", MaxPluginBytes, MaxPluginUploadBytes)
}

// pluginUpload is a decoded upload, whatever its form.
type pluginUpload struct {
	createPluginRequest
	wasm  []byte
	field string // where the module was: body, wasmBase64 or file
}

// readPluginUpload decodes the three forms of POST /v1/plugins.
func readPluginUpload(c *call) (*pluginUpload, error) {
	body := c.ctx.Request.Body()
	mt, params, _ := mime.ParseMediaType(string(c.ctx.Request.Header.ContentType()))
	up := &pluginUpload{}
	switch mt {
	case "application/wasm", "application/octet-stream":
		if err := up.setFields(func(visit func(name, value string) error) error {
			for k, v := range c.ctx.QueryArgs().All() {
				if err := visit(string(k), string(v)); err != nil {
					return err
				}
			}
			return nil
		}); err != nil {
			return nil, err
		}
		up.wasm, up.field = body, "body"
	case "multipart/form-data":
		if err := noQuery(c); err != nil {
			return nil, err
		}
		if err := up.readMultipart(body, params["boundary"]); err != nil {
			return nil, err
		}
	default: // JSON (checkBody allowed nothing else)
		if err := noQuery(c); err != nil {
			return nil, err
		}
		if err := decodeJSON(body, &up.createPluginRequest); err != nil {
			return nil, err
		}
		up.field = "wasmBase64"
		if up.WasmBase64 != "" {
			b, err := base64.StdEncoding.DecodeString(up.WasmBase64)
			if err != nil {
				b, err = base64.RawStdEncoding.DecodeString(strings.TrimRight(up.WasmBase64, "="))
			}
			if err != nil {
				return nil, invalidField("wasmBase64", "must be the module in standard base64")
			}
			up.wasm = b
		}
	}
	return up, up.validate()
}

func noQuery(c *call) error {
	if c.ctx.QueryArgs().Len() > 0 {
		return badRequest("query parameters are only for the application/wasm form of the upload; send the fields in the body")
	}
	return nil
}

// setFields sets the metadata fields from name/value pairs (query
// parameters or form parts); unknown and repeated names are errors.
func (up *pluginUpload) setFields(each func(visit func(name, value string) error) error) error {
	seen := map[string]bool{}
	return each(func(name, value string) error {
		if seen[name] {
			return invalidField(name, "is given more than once")
		}
		seen[name] = true
		switch name {
		case "name":
			up.Name = value
		case "version":
			up.Version = &value
		case "description":
			up.Description = &value
		case "failOpen":
			b, err := strconv.ParseBool(value)
			if err != nil {
				return invalidField(name, "must be true or false")
			}
			up.FailOpen = &b
		case "timeoutMs":
			n, err := strconv.Atoi(value)
			if err != nil {
				return invalidField(name, "must be an integer")
			}
			up.TimeoutMs = &n
		case "memoryLimitBytes":
			n, err := strconv.ParseUint(value, 10, 64)
			if err != nil {
				return invalidField(name, "must be an integer")
			}
			up.MemoryLimitBytes = &n
		default:
			return &Error{Status: fasthttp.StatusBadRequest, Message: fmt.Sprintf("invalid request: unknown field %q", name),
				Details: []FieldError{{Field: name, Message: "unknown field"}}}
		}
		return nil
	})
}

// readMultipart reads the parts: file (the module) and the metadata fields.
func (up *pluginUpload) readMultipart(body []byte, boundary string) error {
	if boundary == "" {
		return badRequest("multipart/form-data needs a boundary parameter")
	}
	mr := multipart.NewReader(bytes.NewReader(body), boundary)
	up.field = "file"
	gotFile := false
	return up.setFields(func(visit func(name, value string) error) error {
		for {
			part, err := mr.NextPart()
			if err == io.EOF {
				return nil
			}
			if err != nil {
				return badRequest("malformed multipart body: %s", err)
			}
			name := part.FormName()
			if name == "file" {
				if gotFile {
					return invalidField("file", "is given more than once")
				}
				gotFile = true
				b, err := io.ReadAll(io.LimitReader(part, MaxPluginBytes+1))
				if err != nil {
					return badRequest("malformed multipart body: %s", err)
				}
				up.wasm = b
				continue
			}
			v, err := io.ReadAll(io.LimitReader(part, 4<<10+1))
			if err != nil {
				return badRequest("malformed multipart body: %s", err)
			}
			if len(v) > 4<<10 {
				return invalidField(name, "must be at most 4096 bytes")
			}
			if err := visit(name, string(v)); err != nil {
				return err
			}
		}
	})
}

func (up *pluginUpload) validate() error {
	if len(up.wasm) > MaxPluginBytes {
		return newError(fasthttp.StatusRequestEntityTooLarge, "plugin module is larger than %d bytes", MaxPluginBytes)
	}
	var v validator
	if up.Name == "" {
		v.add("name", "is required (1-100 characters: letters, digits, . _ -)")
	} else {
		v.re(up.Name, rePluginName, "name", "must be 1-100 characters: letters, digits, . _ - (starting with a letter or digit)")
	}
	if up.Version != nil && *up.Version != "" {
		v.re(*up.Version, rePluginVersion, "version", "must be 1-50 characters: letters, digits, . + _ - (starting with a letter or digit)")
	}
	v.optStrLen(up.Description, "description", 0, 500)
	if up.TimeoutMs != nil {
		v.intRange(*up.TimeoutMs, "timeoutMs", 1, maxPluginTimeoutMs)
	}
	if up.MemoryLimitBytes != nil {
		v.check(*up.MemoryLimitBytes >= minPluginMemoryBytes && *up.MemoryLimitBytes <= maxPluginMemoryBytes, "memoryLimitBytes",
			"must be between %d and %d", minPluginMemoryBytes, maxPluginMemoryBytes)
	}
	v.check(len(up.wasm) > 0, up.field, "is required: the Wasm module")
	return v.err()
}

// moduleError turns a validation or load failure into what the client
// sees: 400 with the reason, unless the host itself is gone or the API
// already said what to answer (no validation slot in time).
func moduleError(err error, field string) error {
	if e := (*Error)(nil); errors.As(err, &e) {
		return e
	}
	if errors.Is(err, plugins.ErrClosed) {
		return unavailable("the plugin host is shutting down")
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	msg := err.Error()
	for _, p := range []string{"plugins: validate: ", "plugins: load "} {
		if strings.HasPrefix(msg, p) {
			msg = strings.TrimPrefix(msg, p)
			if p == "plugins: load " { // "plugins: load <id>: reason"
				if _, rest, ok := strings.Cut(msg, ": "); ok {
					msg = rest
				}
			}
		}
	}
	msg = strings.TrimPrefix(msg, plugins.ErrInvalidModule.Error()+": ")
	if i := strings.IndexByte(msg, '\n'); i >= 0 {
		msg = msg[:i]
	}
	if len(msg) > 1000 {
		msg = msg[:1000]
	}
	return &Error{Status: fasthttp.StatusBadRequest, Message: "invalid plugin module: " + msg,
		Details: []FieldError{{Field: field, Message: msg}}, cause: err}
}

func (a *API) createPlugin(c *call) (any, error) {
	up, err := readPluginUpload(c)
	if err != nil {
		return nil, err
	}
	host, err := a.pluginHost()
	if err != nil {
		return nil, err
	}
	info, err := a.plugins.validate(c.ctx, host, up.wasm)
	if err != nil {
		return nil, moduleError(err, up.field)
	}
	p := &store.Plugin{ID: uuid.NewString(), WorkspaceID: c.ws, Name: up.Name, Exports: info.Exports,
		HasValidateConfig: info.HasValidateConfig, CreatedAt: c.now, CreatedBy: c.key.ID}
	if up.Version != nil {
		p.Version = *up.Version
	}
	if up.Description != nil {
		p.Description = *up.Description
	}
	if up.FailOpen != nil {
		p.FailOpen = *up.FailOpen
	}
	if up.TimeoutMs != nil {
		p.TimeoutMs = *up.TimeoutMs
	}
	if up.MemoryLimitBytes != nil {
		p.MemoryLimitBytes = *up.MemoryLimitBytes
	}
	if err := a.loadPlugin(c.ctx, p, up.wasm); err != nil {
		return nil, moduleError(err, up.field)
	}
	err = a.kv.Update(c.ctx, func(tx store.Tx) error { return store.CreatePlugin(tx, p, up.wasm) })
	if err != nil {
		a.unloadPlugin(p.ID)
		return nil, err
	}
	c.resource = p.ID
	a.publish(c, push.Plugin(c.ws, p.ID))
	return pluginViewOf(p), nil
}

// listPlugins lists the built-ins, then the workspace's plugins. Cursors:
// "b:<name>" within the built-ins, "c:<store cursor>" after them.
func (a *API) listPlugins(c *call) (any, error) {
	after, limit, err := c.page()
	if err != nil {
		return nil, err
	}
	names := builtin.Names()
	from, storeAfter := 0, ""
	switch {
	case after == "":
	case strings.HasPrefix(after, "b:") && slices.Contains(names, after[2:]):
		from = slices.Index(names, after[2:]) + 1
	case strings.HasPrefix(after, "c:"):
		from, storeAfter = len(names), after[2:]
	default:
		return nil, invalidField("cursor", "is not a cursor this API returned")
	}
	out := []pluginView{}
	for i := from; i < len(names) && len(out) < limit; i++ {
		out = append(out, a.builtinView(names[i]))
	}
	var custom []store.Plugin
	var next string
	err = a.kv.View(c.ctx, func(tx store.Tx) error {
		var err error
		custom, next, err = store.ListPlugins(tx, c.ws, storeAfter, max(limit-len(out), 1))
		return err
	})
	if err != nil {
		return nil, err
	}
	if len(out) == limit {
		if from+len(out) < len(names) || len(custom) > 0 {
			c.setNext("b:" + out[len(out)-1].Name)
		}
		return out, nil
	}
	for i := range custom {
		out = append(out, pluginViewOf(&custom[i]))
	}
	if next != "" {
		c.setNext("c:" + next)
	}
	return out, nil
}

// builtinName returns the name of a built-in's id ("builtin:<name>").
func builtinName(id string) (string, bool) {
	name, ok := strings.CutPrefix(id, builtin.IDPrefix)
	return name, ok
}

func (a *API) getPlugin(c *call) (any, error) {
	id := c.param("id")
	if name, ok := builtinName(id); ok {
		if !slices.Contains(builtin.Names(), name) {
			return nil, notFound("plugin")
		}
		return a.builtinView(name), nil
	}
	var p *store.Plugin
	err := a.kv.View(c.ctx, func(tx store.Tx) error {
		var err error
		p, err = store.GetPlugin(tx, c.ws, id)
		return err
	})
	if err != nil {
		return nil, err
	}
	return pluginViewOf(p), nil
}

func (a *API) deletePlugin(c *call) (any, error) {
	id := c.param("id")
	if _, ok := builtinName(id); ok {
		return nil, invalidField("id", "is a built-in plugin: built-ins are part of the server and cannot be deleted")
	}
	var p *store.Plugin
	err := a.kv.Update(c.ctx, func(tx store.Tx) error {
		if _, err := store.GetPlugin(tx, c.ws, id); err != nil {
			return err
		}
		users, err := store.SharesUsingPlugin(tx, c.ws, id)
		if err != nil {
			return err
		}
		if len(users) > 0 {
			list := strings.Join(users[:min(len(users), 5)], ", ")
			if len(users) > 5 {
				list += ", …"
			}
			return &Error{Status: fasthttp.StatusConflict,
				Message: fmt.Sprintf("plugin %s is attached to %d share(s) (%s): detach it from them (PATCH /v1/shares/:id) or revoke them first", id, len(users), list),
				Details: []FieldError{{Field: "id", Message: "in use by share " + users[0]}}}
		}
		p, err = store.DeletePlugin(tx, c.ws, id)
		return err
	})
	if err != nil {
		return nil, err
	}
	c.resource = id
	a.unloadPlugin(id)
	a.publish(c, push.Plugin(c.ws, id))
	return pluginViewOf(p), nil
}

// moduleFile is the data of the routes that answer with module bytes
// instead of the envelope (see serveModule).
type moduleFile struct {
	wasm   []byte
	sha256 string
	name   string
}

// rawContent is implemented by response types sent as they are instead of
// in the envelope; the OpenAPI document takes their content from it.
type rawContent interface{ openAPIContent() jsonObj }

func (moduleFile) openAPIContent() jsonObj {
	return jsonObj{"application/wasm": jsonObj{"schema": jsonObj{"type": "string", "contentMediaType": "application/wasm"}}}
}

func isRawContent(v any) bool {
	_, ok := v.(rawContent)
	return ok
}

// serveModule serves a route whose handler returns a moduleFile:
// credentials and rate limits as for every route (serve), errors in the
// envelope, the module bytes as they are.
func (a *API) serveModule(r *route) fasthttp.RequestHandler {
	return func(ctx *fasthttp.RequestCtx) {
		c := &call{ctx: ctx, a: a, r: r, now: time.Now().UTC().Truncate(time.Millisecond)}
		data, err := a.serve(c)
		if err != nil {
			writeError(ctx, toError(err, a.log, r.Path))
			return
		}
		m := data.(moduleFile)
		ctx.SetStatusCode(fasthttp.StatusOK)
		ctx.SetContentType("application/wasm")
		ctx.Response.Header.Set("ETag", `"`+m.sha256+`"`)
		if m.name != "" {
			ctx.Response.Header.Set("Content-Disposition", `attachment; filename="`+m.name+`.wasm"`)
		}
		ctx.SetBody(m.wasm)
	}
}

func (a *API) pluginModule(c *call) (any, error) {
	id := c.param("id")
	if name, ok := builtinName(id); ok {
		if !slices.Contains(builtin.Names(), name) {
			return nil, notFound("plugin")
		}
		b, err := builtin.Module(name)
		if err != nil {
			return nil, builtinError(err)
		}
		return moduleFile{wasm: b, sha256: store.ModuleSHA256(b), name: name}, nil
	}
	var m moduleFile
	err := a.kv.View(c.ctx, func(tx store.Tx) error {
		p, err := store.GetPlugin(tx, c.ws, id)
		if err != nil {
			return err
		}
		b, err := store.GetPluginModule(tx, p.SHA256)
		m = moduleFile{wasm: b, sha256: p.SHA256, name: p.Name}
		return err
	})
	return m, err
}

// edgePluginModule serves a module by SHA-256 to any edge (edges are
// platform-level); unknown or malformed sums are 404.
func (a *API) edgePluginModule(c *call) (any, error) {
	sum := c.param("sha256")
	if !reSHA256.MatchString(sum) {
		return nil, notFound("plugin module")
	}
	var b []byte
	err := a.kv.View(c.ctx, func(tx store.Tx) error {
		var err error
		b, err = store.GetPluginModule(tx, sum)
		return err
	})
	if err != nil {
		return nil, err
	}
	return moduleFile{wasm: b, sha256: sum}, nil
}

func builtinError(err error) error {
	if errors.Is(err, builtin.ErrNotBuilt) {
		return unavailable("the built-in plugins are not built into this server (make plugins)")
	}
	return err
}

// isPluginUpload reports whether a request is an upload that may carry a
// large body (POST /v1/plugins with an API key of the right form; the key
// itself is checked later, like on every route).
func isPluginUpload(h *fasthttp.RequestHeader) bool {
	path, _, _ := bytes.Cut(h.RequestURI(), []byte("?"))
	return string(h.Method()) == fasthttp.MethodPost && string(path) == "/v1/plugins" && validKeyFormat(h.Peek("x-api-key"))
}
