package client

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// Plugin is a Wasm access-control plugin.
type Plugin struct {
	ID           string          `json:"id"`
	Name         string          `json:"name"`
	Version      string          `json:"version"`
	Description  string          `json:"description,omitempty"`
	SHA256       string          `json:"sha256"`
	SizeBytes    int64           `json:"sizeBytes"`
	Exports      []string        `json:"exports"`
	ConfigSchema json.RawMessage `json:"configSchema,omitempty"`
	Builtin      bool            `json:"builtin"`
	// Host limits and failure mode of an uploaded plugin (see UploadOptions).
	FailOpen         bool       `json:"failOpen,omitempty"`
	TimeoutMs        int        `json:"timeoutMs,omitempty"`
	MemoryLimitBytes uint64     `json:"memoryLimitBytes,omitempty"`
	CreatedAt        *time.Time `json:"createdAt,omitempty"`
}

// UploadOptions are the optional fields of an upload (POST /v1/plugins).
type UploadOptions struct {
	Version     string
	Description string
	// FailOpen lets requests through when the plugin fails (for
	// non-security plugins; the default is to fail closed).
	FailOpen bool
	// TimeoutMs is the time budget of one call (default 5 ms, at most 50).
	TimeoutMs int
	// MemoryLimitBytes caps the guest's memory (default 16 MiB).
	MemoryLimitBytes uint64
}

// CreatePluginRequest is the JSON form of POST /v1/plugins.
type CreatePluginRequest struct {
	Name        string `json:"name"`
	Version     string `json:"version"`
	WasmBase64  string `json:"wasmBase64"`
	Description string `json:"description,omitempty"`
}

// PluginTestRequest is the body of POST /v1/plugins/:id/test.
type PluginTestRequest struct {
	Config  json.RawMessage   `json:"config"`
	Request PluginTestHTTPReq `json:"request"`
}

// PluginTestHTTPReq is the simulated visitor request of a plugin dry-run.
type PluginTestHTTPReq struct {
	Method   string            `json:"method"`
	Path     string            `json:"path"`
	Headers  map[string]string `json:"headers,omitempty"`
	ClientIP string            `json:"clientIp,omitempty"`
}

// PluginTestResult is the plugin's decision in a dry-run.
type PluginTestResult struct {
	Decision string `json:"decision"` // allow|respond|error
	// Status is the answer's status for respond and error (0 for allow).
	Status  int               `json:"status,omitempty"`
	Headers map[string]string `json:"headers,omitempty"`
	// RequestHeaders are set, RemovedRequestHeaders removed, on the request
	// forwarded to the service (allow).
	RequestHeaders        map[string]string `json:"requestHeaders,omitempty"`
	RemovedRequestHeaders []string          `json:"removedRequestHeaders,omitempty"`
	Body                  string            `json:"body,omitempty"`
	// Error says why the plugin failed (error): for the admin, never shown
	// to visitors.
	Error          string `json:"error,omitempty"`
	DurationMicros int64  `json:"durationMicros"`
}

// UploadPlugin calls POST /v1/plugins?name=&version= with the module bytes
// as an application/wasm body (admin). The module is validated by the server
// (400 with the reason otherwise).
func (c *Client) UploadPlugin(ctx context.Context, name, version string, wasm io.Reader) (*Plugin, error) {
	return c.UploadPluginWith(ctx, name, wasm, UploadOptions{Version: version})
}

// UploadPluginWith is UploadPlugin with every optional field.
func (c *Client) UploadPluginWith(ctx context.Context, name string, wasm io.Reader, o UploadOptions) (*Plugin, error) {
	q := url.Values{"name": {name}}
	if o.Version != "" {
		q.Set("version", o.Version)
	}
	if o.Description != "" {
		q.Set("description", o.Description)
	}
	if o.FailOpen {
		q.Set("failOpen", "true")
	}
	if o.TimeoutMs > 0 {
		q.Set("timeoutMs", strconv.Itoa(o.TimeoutMs))
	}
	if o.MemoryLimitBytes > 0 {
		q.Set("memoryLimitBytes", strconv.FormatUint(o.MemoryLimitBytes, 10))
	}
	var pl Plugin
	_, err := c.do(ctx, request{method: http.MethodPost, path: p("plugins"), query: q, raw: wasm, contentType: "application/wasm"}, &pl)
	if err != nil {
		return nil, err
	}
	return &pl, nil
}

// CreatePlugin calls POST /v1/plugins with the JSON body form (admin).
func (c *Client) CreatePlugin(ctx context.Context, req CreatePluginRequest) (*Plugin, error) {
	var pl Plugin
	if err := c.call(ctx, http.MethodPost, p("plugins"), req, &pl); err != nil {
		return nil, err
	}
	return &pl, nil
}

// ListPlugins calls GET /v1/plugins (admin), built-ins included.
func (c *Client) ListPlugins(ctx context.Context, lo ListOptions) ([]Plugin, string, error) {
	return list[Plugin](ctx, c, p("plugins"), lo, nil)
}

// GetPlugin calls GET /v1/plugins/:id (admin).
func (c *Client) GetPlugin(ctx context.Context, id string) (*Plugin, error) {
	var pl Plugin
	if err := c.get(ctx, p("plugins", id), nil, &pl); err != nil {
		return nil, err
	}
	return &pl, nil
}

// DownloadPlugin calls GET /v1/plugins/:id/wasm (admin) and returns the
// module bytes. A JSON envelope whose data is a base64 string is accepted too.
func (c *Client) DownloadPlugin(ctx context.Context, id string) ([]byte, error) {
	r := request{method: http.MethodGet, path: p("plugins", id, "wasm")}
	resp, body, err := c.send(ctx, r)
	if err != nil {
		return nil, err
	}
	if mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type")); mt != "application/json" {
		return body, nil
	}
	var b64 string
	if err := decodeData(ctx, r, body, &b64); err != nil {
		return nil, err
	}
	wasm, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		return nil, fmt.Errorf("GET %s: decode module: %w", r.path, err)
	}
	return wasm, nil
}

// DeletePlugin calls DELETE /v1/plugins/:id (admin); 409 while a share uses it.
func (c *Client) DeletePlugin(ctx context.Context, id string) error {
	return c.call(ctx, http.MethodDelete, p("plugins", id), nil, nil)
}

// TestPlugin calls POST /v1/plugins/:id/test (admin): a dry-run on the control plane.
func (c *Client) TestPlugin(ctx context.Context, id string, req PluginTestRequest) (*PluginTestResult, error) {
	if len(req.Config) == 0 {
		req.Config = json.RawMessage("{}")
	}
	var r PluginTestResult
	if err := c.call(ctx, http.MethodPost, p("plugins", id, "test"), req, &r); err != nil {
		return nil, err
	}
	return &r, nil
}
