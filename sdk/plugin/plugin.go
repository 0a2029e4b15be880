package plugin

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/privateconnect/pc/sdk/plugin/internal/hostapi"
)

// ABIVersion is the plugin ABI this SDK implements.
const ABIVersion = 1

// Decision codes of ABI v1.
const (
	decisionAllow   = 0
	decisionRespond = 1
	decisionError   = 2
)

// Level is a log level.
type Level int32

const (
	LevelDebug Level = 0
	LevelInfo  Level = 1
	LevelWarn  Level = 2
	LevelError Level = 3
)

// Handler decides what happens to one request.
type Handler func(r *Request) Result

// ConfigValidator checks an attachment's config (JSON) when a share is saved; its error
// message is shown to the admin.
type ConfigValidator func(config []byte) error

var (
	handler   Handler
	validator ConfigValidator
)

// Handle registers the plugin's handler. Call it from init.
func Handle(h Handler) { handler = h }

// ValidateConfig registers the plugin's config validator. Call it from init. Without one,
// every JSON config is accepted.
func ValidateConfig(v ConfigValidator) { validator = v }

// Request is the request being decided, plus the host services of the current call. It is
// only valid during the handler call.
type Request struct {
	h       hostapi.Host
	scratch [256]byte
}

// Method returns the request method.
func (r *Request) Method() string { return r.str(hostapi.FieldMethod) }

// Path returns the path as the service sees it (after the share token), without the query.
func (r *Request) Path() string { return r.str(hostapi.FieldPath) }

// Query returns the raw query string, without "?".
func (r *Request) Query() string { return r.str(hostapi.FieldQuery) }

// Host returns the Host header.
func (r *Request) Host() string { return r.str(hostapi.FieldHost) }

// ClientIP returns the visitor's IP address in text form.
func (r *Request) ClientIP() string { return r.str(hostapi.FieldClientIP) }

// ShareID returns the id of the share the request arrived at.
func (r *Request) ShareID() string { return r.str(hostapi.FieldShareID) }

// Header returns a request header (case-insensitive name; several values joined by ", ").
// On the edge, a header the service never gets from the visitor (hop-by-hop, X-Forwarded-*,
// X-Share-Id, ...) is absent: see plugins/README.md, "What a plugin sees".
func (r *Request) Header(name string) (string, bool) {
	b, ok := r.h.AppendHeader(r.scratch[:0], name)
	return string(b), ok
}

// Config returns this attachment's config, JSON ("{}" when none).
func (r *Request) Config() []byte {
	b, ok := r.h.AppendField(nil, hostapi.FieldConfig)
	if !ok || len(b) == 0 {
		return []byte("{}")
	}
	return b
}

// The Append variants append a value to dst and return the extended slice, like
// strconv.AppendInt: with a reused buffer they do not allocate, which matters on hot paths
// (see the package doc).

// AppendMethod appends the request method to dst.
func (r *Request) AppendMethod(dst []byte) []byte { return r.appendField(dst, hostapi.FieldMethod) }

// AppendPath appends the path to dst.
func (r *Request) AppendPath(dst []byte) []byte { return r.appendField(dst, hostapi.FieldPath) }

// AppendQuery appends the raw query to dst.
func (r *Request) AppendQuery(dst []byte) []byte { return r.appendField(dst, hostapi.FieldQuery) }

// AppendHost appends the Host header to dst.
func (r *Request) AppendHost(dst []byte) []byte { return r.appendField(dst, hostapi.FieldHost) }

// AppendClientIP appends the visitor's IP address to dst.
func (r *Request) AppendClientIP(dst []byte) []byte {
	return r.appendField(dst, hostapi.FieldClientIP)
}

// AppendShareID appends the share id to dst.
func (r *Request) AppendShareID(dst []byte) []byte {
	return r.appendField(dst, hostapi.FieldShareID)
}

// AppendHeader appends a header's value to dst; ok is false when the header is absent.
func (r *Request) AppendHeader(dst []byte, name string) (_ []byte, ok bool) {
	return r.h.AppendHeader(dst, name)
}

func (r *Request) appendField(dst []byte, f hostapi.Field) []byte {
	b, _ := r.h.AppendField(dst, f)
	return b
}

func (r *Request) str(f hostapi.Field) string {
	b, _ := r.h.AppendField(r.scratch[:0], f)
	return string(b)
}

// ConfigID returns the host's id of (plugin, config): equal configs have equal ids.
func (r *Request) ConfigID() uint64 { return r.h.ConfigID() }

// Now returns the host's wall clock (millisecond precision).
func (r *Request) Now() time.Time { return time.UnixMilli(r.h.NowUnixMs()) }

// SetRequestHeader sets a header on the request forwarded to the service (if it is
// forwarded).
func (r *Request) SetRequestHeader(name, value string) { r.h.SetRequestHeader(name, value) }

// RemoveRequestHeader removes a header from the forwarded request.
func (r *Request) RemoveRequestHeader(name string) { r.h.RemoveRequestHeader(name) }

// SetResponseHeader sets a header on the response the visitor gets, whether the request is
// forwarded or answered by the plugin.
func (r *Request) SetResponseHeader(name, value string) { r.h.SetResponseHeader(name, value) }

// RateLimit counts one event for key in a counter shared by every instance on the edge, and
// reports whether it is within limit events per window (sliding). Over the limit the event is
// not counted. Keys are private to the plugin; include the share id when a limit is per
// share. Windows are aligned to multiples of window since the Unix epoch.
func (r *Request) RateLimit(key string, limit int, window time.Duration) bool {
	ms := window.Milliseconds()
	if ms < 1 {
		ms = 1
	}
	if ms > 24*60*60*1000 {
		ms = 24 * 60 * 60 * 1000
	}
	if limit > 1<<31-1 {
		limit = 1<<31 - 1
	}
	if len(key) > 1024 {
		key = key[:1024]
	}
	if key == "" {
		key = "-"
	}
	return r.h.RateLimit([]byte(key), int32(limit), int32(ms))
}

// RateLimitKey is RateLimit with a byte-slice key (no allocation with a reused buffer).
func (r *Request) RateLimitKey(key []byte, limit int, window time.Duration) bool {
	ms := min(max(window.Milliseconds(), 1), 24*60*60*1000)
	limit = min(limit, 1<<31-1)
	if len(key) > 1024 {
		key = key[:1024]
	}
	if len(key) == 0 {
		key = []byte("-")
	}
	return r.h.RateLimit(key, int32(limit), int32(ms))
}

// HMACSHA256 computes HMAC-SHA256 on the host.
func (r *Request) HMACSHA256(key, msg []byte) [32]byte { return r.h.HMACSHA256(key, msg) }

// VerifySignature verifies sig over msg on the host. alg is HS256 (key: raw secret), RS256,
// ES256 (sig r||s or DER) or EdDSA (key: PEM public key or certificate).
func (r *Request) VerifySignature(alg string, key, msg, sig []byte) bool {
	return r.h.VerifySignature(alg, key, msg, sig)
}

// Log writes a line to the edge's logs, tagged with the plugin id (rate-limited).
func (r *Request) Log(level Level, msg string) { r.h.Log(int32(level), msg) }

// Logf is Log with formatting.
func (r *Request) Logf(level Level, format string, args ...any) {
	r.h.Log(int32(level), fmt.Sprintf(format, args...))
}

// Result is a handler's decision.
type Result struct {
	code    int32
	status  int
	body    []byte
	headers [][2]string
	err     string
}

// Allow forwards the request (with any header edits made).
func Allow() Result { return Result{code: decisionAllow} }

// Deny answers the visitor with status (200-599, as for Respond) and a text body.
func Deny(status int, body string) Result {
	return Result{code: decisionRespond, status: status, body: []byte(body)}.
		WithHeader("Content-Type", "text/plain; charset=utf-8")
}

// Respond answers the visitor with status and body; add headers with WithHeader. status must
// be a final one, 200-599: the host takes an informational status (1xx) for an ERROR (500).
func Respond(status int, body []byte) Result {
	return Result{code: decisionRespond, status: status, body: body}
}

// Redirect answers 302 Found with a Location header.
func Redirect(url string) Result {
	return Result{code: decisionRespond, status: 302}.WithHeader("Location", url)
}

// Error ends the call with ERROR: the visitor gets a generic 500 and err is logged by the
// host (never shown to the visitor).
func Error(err error) Result {
	msg := "error"
	if err != nil {
		msg = err.Error()
	}
	return Result{code: decisionError, err: msg}
}

// Errorf is Error with formatting.
func Errorf(format string, args ...any) Result { return Error(fmt.Errorf(format, args...)) }

// WithHeader adds a response header (for Allow too: it is set on the service's response).
func (res Result) WithHeader(name, value string) Result {
	res.headers = append(res.headers[:len(res.headers):len(res.headers)], [2]string{name, value})
	return res
}

// IsAllow reports whether the result forwards the request.
func (res Result) IsAllow() bool { return res.code == decisionAllow }

// Status returns the response status of a Respond/Deny/Redirect result (0 otherwise).
func (res Result) Status() int { return res.status }

// --- config ---

type cacheEntry struct {
	v   any
	err error
}

var (
	cacheMu sync.Mutex
	cache   = map[uint64]cacheEntry{}
	last    struct {
		id uint64
		e  cacheEntry
		ok bool
	}
)

const maxCachedConfigs = 256

// ParseConfig returns the attachment's config parsed by parse. The result (or error) is
// cached per config id, so parse runs once per distinct config per instance; do the
// expensive work (compiling patterns, parsing CIDRs) in parse. A plugin should use one parse
// function.
func ParseConfig[T any](r *Request, parse func([]byte) (T, error)) (T, error) {
	if sh, ok := r.h.(*stepHost); ok {
		// A step of HandleSteps: its parsed config lives with the parsed steps.
		if sh.slot.set {
			if v, ok := sh.slot.e.v.(T); ok || sh.slot.e.err != nil {
				return v, sh.slot.e.err
			}
		}
		v, err := parse(sh.config)
		sh.slot.e, sh.slot.set = cacheEntry{v: v, err: err}, true
		return v, err
	}
	id := r.h.ConfigID()
	cacheMu.Lock()
	// Fast path: an instance usually sees the same few configs in a row.
	if last.ok && last.id == id {
		e := last.e
		cacheMu.Unlock()
		if v, ok := e.v.(T); ok || e.err != nil {
			return v, e.err
		}
	} else {
		e, ok := cache[id]
		if ok {
			last.id, last.e, last.ok = id, e, true
		}
		cacheMu.Unlock()
		if ok {
			if v, ok := e.v.(T); ok || e.err != nil {
				return v, e.err
			}
		}
	}
	v, err := parse(r.Config())
	e := cacheEntry{v: v, err: err}
	cacheMu.Lock()
	if len(cache) >= maxCachedConfigs {
		clear(cache)
	}
	cache[id] = e
	last.id, last.e, last.ok = id, e, true
	cacheMu.Unlock()
	return v, err
}

// DecodeJSON decodes a JSON config strictly: unknown fields and trailing data are errors.
// T is usually a pointer to a struct.
func DecodeJSON[T any](b []byte) (T, error) {
	var v T
	if len(bytes.TrimSpace(b)) == 0 {
		b = []byte("{}")
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&v); err != nil {
		return v, fmt.Errorf("config: %w", err)
	}
	if dec.More() {
		return v, errors.New("config: trailing data")
	}
	return v, nil
}

// --- dispatch, shared by the Wasm exports and plugintest ---

func init() {
	hostapi.HandleRequest = func(h hostapi.Host, hd any) int32 {
		fn := handler
		if hd != nil {
			switch f := hd.(type) {
			case Handler:
				fn = f
			case func(*Request) Result:
				fn = f
			default:
				panic(fmt.Sprintf("plugin: not a handler: %T", hd))
			}
		}
		return handleRequest(h, fn)
	}
	hostapi.ValidateConfig = func(h hostapi.Host, v any) int32 {
		fn := validator
		if v != nil {
			switch f := v.(type) {
			case ConfigValidator:
				fn = f
			case func([]byte) error:
				fn = f
			default:
				panic(fmt.Sprintf("plugin: not a config validator: %T", v))
			}
		}
		return validateConfig(h, fn)
	}
}

func handleRequest(h hostapi.Host, fn Handler) (code int32) {
	return handleRequestWith(&Request{h: h}, h, fn)
}

// handleRequestWith runs fn with r. The Wasm export passes a package-level Request: the guest
// is single-threaded, and every heap allocation in a Go guest is expensive (see the package
// doc), so the fixed path allocates nothing.
func handleRequestWith(r *Request, h hostapi.Host, fn Handler) (code int32) {
	if fn == nil {
		h.SetError("plugin: no handler registered (call plugin.Handle in init)")
		return decisionError
	}
	defer func() {
		if p := recover(); p != nil {
			h.SetError(fmt.Sprint("plugin panic: ", p))
			code = decisionError
		}
	}()
	res := fn(r)
	switch res.code {
	case decisionAllow:
		for _, kv := range res.headers {
			h.SetResponseHeader(kv[0], kv[1])
		}
		return decisionAllow
	case decisionRespond:
		for _, kv := range res.headers {
			h.SetResponseHeader(kv[0], kv[1])
		}
		h.Respond(res.status, res.body)
		return decisionRespond
	default:
		h.SetError(res.err)
		return decisionError
	}
}

func validateConfig(h hostapi.Host, fn ConfigValidator) (code int32) {
	if fn == nil {
		return 0
	}
	defer func() {
		if p := recover(); p != nil {
			h.SetError(fmt.Sprint("plugin panic: ", p))
			code = 1
		}
	}()
	if err := fn((&Request{h: h}).Config()); err != nil {
		h.SetError(err.Error())
		return 1
	}
	return 0
}
