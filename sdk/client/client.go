// Package client is a typed Go client for the Private Connect control API
// (`/v1`; every route is described at the control plane's /docs and
// /openapi.json). It is what the `connect` CLI uses, and what a CI
// pipeline or custom tooling can import.
//
// Every route has one method taking a context and typed request values; the
// `{"success": true, "data": …}` envelope is unwrapped, and a non-2xx answer
// is returned as an [*APIError] whose Error method is the API's own message.
//
//	c := client.New("http://127.0.0.1:3001", os.Getenv("PC_API_KEY"))
//	svcs, next, err := c.ListServices(ctx, client.ListOptions{Limit: 100}, client.ServiceFilter{})
//
// List methods return one page of items and the cursor of the next page
// (empty on the last page); pass it back in [ListOptions.Cursor].
package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// DefaultBaseURL is the control plane's default address.
const DefaultBaseURL = "http://127.0.0.1:3001"

// maxResponseBytes bounds a JSON response body read by the client.
const maxResponseBytes = 64 << 20

// Client calls the control API. It is safe for concurrent use.
type Client struct {
	baseURL   string
	apiKey    string
	http      *http.Client
	userAgent string
}

// Option configures a Client.
type Option func(*Client)

// WithHTTPClient sets the HTTP client used for every call (default: a client
// with a 60 s timeout).
func WithHTTPClient(hc *http.Client) Option {
	return func(c *Client) {
		if hc != nil {
			c.http = hc
		}
	}
}

// WithUserAgent sets the User-Agent header of every call.
func WithUserAgent(ua string) Option {
	return func(c *Client) { c.userAgent = ua }
}

// New returns a client of the control plane at baseURL (for example
// "http://127.0.0.1:3001"; empty means [DefaultBaseURL]) that authenticates
// with apiKey (sent as `x-api-key`; empty sends none, for public and
// agent-token routes).
func New(baseURL, apiKey string, opts ...Option) *Client {
	if baseURL == "" {
		baseURL = DefaultBaseURL
	}
	c := &Client{
		baseURL:   strings.TrimRight(baseURL, "/"),
		apiKey:    apiKey,
		http:      &http.Client{Timeout: 60 * time.Second},
		userAgent: "privateconnect-go-client",
	}
	for _, o := range opts {
		o(c)
	}
	return c
}

// BaseURL returns the control plane address the client talks to.
func (c *Client) BaseURL() string { return c.baseURL }

// ListOptions selects one page of a list route.
type ListOptions struct {
	// Limit is the page size (server default 50, max 500); 0 leaves it to the server.
	Limit int
	// Cursor is the X-Next-Cursor value of the previous page; empty for the first page.
	Cursor string
}

func (o ListOptions) values() url.Values {
	v := url.Values{}
	if o.Limit > 0 {
		v.Set("limit", strconv.Itoa(o.Limit))
	}
	if o.Cursor != "" {
		v.Set("cursor", o.Cursor)
	}
	return v
}

// FieldError is one entry of a validation error's details.
type FieldError struct {
	Field   string `json:"field"`
	Message string `json:"message"`
}

// APIError is a non-2xx answer of the control plane.
type APIError struct {
	// StatusCode is the HTTP status.
	StatusCode int `json:"statusCode"`
	// Type is the reason phrase, e.g. "Not Found" (the envelope's "error").
	Type string `json:"error"`
	// Message is the API's human sentence.
	Message string `json:"message"`
	// Details lists the offending fields of a validation error.
	Details []FieldError `json:"details,omitempty"`
	// RetryAfter is the number of seconds to wait after a 429 (from the body
	// or the Retry-After header); 0 otherwise.
	RetryAfter int `json:"retryAfter,omitempty"`
}

// Error returns the API's message verbatim.
func (e *APIError) Error() string {
	if e.Message != "" {
		return e.Message
	}
	if e.Type != "" {
		return e.Type
	}
	if t := http.StatusText(e.StatusCode); t != "" {
		return t
	}
	return fmt.Sprintf("HTTP %d", e.StatusCode)
}

// IsStatus reports whether err is an *APIError with the given HTTP status.
func IsStatus(err error, status int) bool {
	var ae *APIError
	return errors.As(err, &ae) && ae.StatusCode == status
}

// IsNotFound reports whether err is a 404 answer.
func IsNotFound(err error) bool { return IsStatus(err, http.StatusNotFound) }

// IsUnreachable reports whether err says the control plane could not be
// reached or could not answer, rather than that it refused the call: a
// network error (connection refused, a timeout, a name that does not
// resolve) or a 502, 503 or 504 (a proxy in front of a control plane that
// is down or restarting, or a control plane that cannot serve). A caller
// that can go on without the control plane (an agent with a saved identity)
// goes on, and tries again later. A cancelled ctx is not "unreachable",
// nor a setup that retrying cannot mend: a certificate this client does not
// trust, a URL of an unsupported scheme.
func IsUnreachable(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) {
		return false
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		// The transport's own failure, not url.Error's wrapping (itself a
		// net.Error): a network error, or a connection cut before an answer.
		var ne net.Error
		return errors.As(ue.Err, &ne) || errors.Is(ue.Err, io.EOF) || errors.Is(ue.Err, io.ErrUnexpectedEOF)
	}
	var ae *APIError
	if errors.As(err, &ae) {
		switch ae.StatusCode {
		case http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
			return true
		}
	}
	return false
}

type rawDataKey struct{}

// WithRawData returns a context that makes every call made with it store the
// unwrapped `data` payload of its (successful) response in *dst, exactly as
// the server sent it. The CLI's --json output uses it.
func WithRawData(ctx context.Context, dst *json.RawMessage) context.Context {
	return context.WithValue(ctx, rawDataKey{}, dst)
}

// request is one API call.
type request struct {
	method string
	path   string // starting with "/", already escaped
	query  url.Values
	body   any // JSON-encoded when non-nil
	// raw, when set, is sent as is with contentType instead of body.
	raw         io.Reader
	contentType string
}

// envelope is the success body.
type envelope struct {
	Success bool            `json:"success"`
	Data    json.RawMessage `json:"data"`
}

// Do performs a call of any route and decodes the envelope's data into out
// (nil discards it). body, when non-nil, is sent as JSON. It returns the
// X-Next-Cursor header. The typed methods are built on it; use it for routes
// this package does not know yet.
func (c *Client) Do(ctx context.Context, method, path string, query url.Values, body, out any) (nextCursor string, err error) {
	h, err := c.do(ctx, request{method: method, path: path, query: query, body: body}, out)
	if err != nil {
		return "", err
	}
	return h.Get("X-Next-Cursor"), nil
}

func (c *Client) newRequest(ctx context.Context, r request) (*http.Request, error) {
	u := c.baseURL + r.path
	if len(r.query) > 0 {
		u += "?" + r.query.Encode()
	}
	var body io.Reader
	contentType := ""
	switch {
	case r.raw != nil:
		body, contentType = r.raw, r.contentType
	case r.body != nil:
		b, err := json.Marshal(r.body)
		if err != nil {
			return nil, fmt.Errorf("encode %s %s: %w", r.method, r.path, err)
		}
		body, contentType = bytes.NewReader(b), "application/json"
	}
	req, err := http.NewRequestWithContext(ctx, r.method, u, body)
	if err != nil {
		return nil, err
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	req.Header.Set("Accept", "application/json")
	if c.apiKey != "" {
		req.Header.Set("x-api-key", c.apiKey)
	}
	if c.userAgent != "" {
		req.Header.Set("User-Agent", c.userAgent)
	}
	return req, nil
}

// do sends r and decodes the data of a 2xx envelope into out.
func (c *Client) do(ctx context.Context, r request, out any) (http.Header, error) {
	resp, body, err := c.send(ctx, r)
	if err != nil {
		return nil, err
	}
	if err := decodeData(ctx, r, body, out); err != nil {
		return resp.Header, err
	}
	return resp.Header, nil
}

// send performs r and returns the response with its body read; a non-2xx
// answer becomes an *APIError.
func (c *Client) send(ctx context.Context, r request) (*http.Response, []byte, error) {
	if strings.HasSuffix(r.path, "/") || strings.Contains(r.path, "//") {
		// An empty id: the API would answer "no route" (a 404 that reads
		// as "already deleted" to a caller checking IsNotFound).
		return nil, nil, fmt.Errorf("%w: %s %s", ErrEmptyID, r.method, r.path)
	}
	req, err := c.newRequest(ctx, r)
	if err != nil {
		return nil, nil, err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes))
	if err != nil {
		return nil, nil, fmt.Errorf("%s %s: read response: %w", r.method, r.path, err)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return resp, body, parseError(resp, body)
	}
	return resp, body, nil
}

// ErrDecode is wrapped by the error of an answer whose body is not the
// API's JSON envelope (a server that is not a control plane, a proxy's
// error page).
var ErrDecode = errors.New("decode response")

func decodeData(ctx context.Context, r request, body []byte, out any) error {
	var env envelope
	if len(bytes.TrimSpace(body)) > 0 {
		if err := json.Unmarshal(body, &env); err != nil {
			return fmt.Errorf("%s %s: %w: %w", r.method, r.path, ErrDecode, err)
		}
	}
	if dst, ok := ctx.Value(rawDataKey{}).(*json.RawMessage); ok && dst != nil {
		*dst = append((*dst)[:0], env.Data...)
	}
	if out == nil || len(env.Data) == 0 || string(env.Data) == "null" {
		return nil
	}
	if err := json.Unmarshal(env.Data, out); err != nil {
		return fmt.Errorf("%s %s: decode data: %w", r.method, r.path, err)
	}
	return nil
}

// parseError builds the *APIError of a non-2xx response. A body that is not
// the error envelope (a proxy's HTML page) yields the status text.
func parseError(resp *http.Response, body []byte) error {
	e := &APIError{}
	if err := json.Unmarshal(body, e); err != nil || (e.Message == "" && e.Type == "") {
		e = &APIError{Type: http.StatusText(resp.StatusCode)}
		if msg := strings.TrimSpace(string(body)); msg != "" && len(msg) < 200 && !strings.HasPrefix(msg, "<") && !strings.HasPrefix(msg, "{") {
			e.Message = msg
		}
	}
	e.StatusCode = resp.StatusCode
	if e.RetryAfter == 0 {
		if s := resp.Header.Get("Retry-After"); s != "" {
			if n, err := strconv.Atoi(strings.TrimSpace(s)); err == nil {
				e.RetryAfter = n
			} else if t, err := http.ParseTime(s); err == nil {
				e.RetryAfter = max(0, int(time.Until(t).Seconds()+0.5))
			}
		}
	}
	return e
}

// p joins escaped path segments under /v1: p("agents", id) = "/v1/agents/<id>".
// ErrEmptyID is returned, before any request, by a call given an empty id.
var ErrEmptyID = errors.New("client: an id or name in the path is empty")

func p(segments ...string) string {
	var b strings.Builder
	b.WriteString("/v1")
	for _, s := range segments {
		b.WriteByte('/')
		b.WriteString(url.PathEscape(s))
	}
	return b.String()
}

// get fetches path into out.
func (c *Client) get(ctx context.Context, path string, query url.Values, out any) error {
	_, err := c.do(ctx, request{method: http.MethodGet, path: path, query: query}, out)
	return err
}

// list fetches one page of a list route.
func list[T any](ctx context.Context, c *Client, path string, lo ListOptions, filter url.Values) ([]T, string, error) {
	q := lo.values()
	for k, vs := range filter {
		for _, v := range vs {
			if v != "" {
				q.Add(k, v)
			}
		}
	}
	var items []T
	h, err := c.do(ctx, request{method: http.MethodGet, path: path, query: q}, &items)
	if err != nil {
		return nil, "", err
	}
	return items, h.Get("X-Next-Cursor"), nil
}

// send JSON body with method to path, decoding into out.
func (c *Client) call(ctx context.Context, method, path string, body, out any) error {
	_, err := c.do(ctx, request{method: method, path: path, body: body}, out)
	return err
}

// All collects every page of a list method, following cursors:
//
//	agents, err := client.All(ctx, func(ctx context.Context, lo client.ListOptions) ([]client.Agent, string, error) {
//		return c.ListAgents(ctx, lo, client.AgentFilter{})
//	})
func All[T any](ctx context.Context, page func(context.Context, ListOptions) ([]T, string, error)) ([]T, error) {
	var all []T
	lo := ListOptions{Limit: 500}
	for {
		items, next, err := page(ctx, lo)
		if err != nil {
			return all, err
		}
		all = append(all, items...)
		if next == "" || next == lo.Cursor {
			return all, nil
		}
		lo.Cursor = next
	}
}

func boolString(b *bool) string {
	if b == nil {
		return ""
	}
	return strconv.FormatBool(*b)
}
