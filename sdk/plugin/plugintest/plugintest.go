// Package plugintest runs plugins written with package plugin as ordinary Go code, for unit
// tests without WebAssembly. It emulates the host side of ABI v1: request getters, header
// edits (with the host's validation rules), respond, a rate-limit store, HMAC-SHA256,
// signature verification and logs. The plugin's own code runs exactly as in the Wasm build:
// the same dispatch turns its Result into ABI calls.
//
//	res := plugintest.Run(handle, `{"paths":["/api/**"]}`, plugintest.Request{Method: "GET", Path: "/x"})
//	if res.Action != plugintest.Respond || res.Status != 403 { t.Fatalf("%+v", res) }
package plugintest

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"hash/fnv"
	"math/big"
	"strings"
	"sync"
	"time"

	_ "github.com/privateconnect/pc/sdk/plugin" // installs the dispatch hooks
	"github.com/privateconnect/pc/sdk/plugin/internal/hostapi"
)

// Request is the request a test feeds to a plugin.
type Request struct {
	Method, Path, Query, Host, ClientIP, ShareID string
	Headers                                      map[string]string // names are case-insensitive
}

// Action is the outcome of a call.
type Action string

const (
	Allow   Action = "allow"
	Respond Action = "respond"
	Error   Action = "error"
)

// Result is what the host would have received.
type Result struct {
	Action               Action
	Status               int
	Body                 string
	SetRequestHeaders    [][2]string
	RemoveRequestHeaders []string
	SetResponseHeaders   [][2]string
	Err                  string // set_error reason, or the ABI rule the plugin broke
	Logs                 []string
}

// ResponseHeader returns a header the plugin set on the visitor's response.
func (r Result) ResponseHeader(name string) (string, bool) { return lookup(r.SetResponseHeaders, name) }

// RequestHeader returns a header the plugin set on the forwarded request.
func (r Result) RequestHeader(name string) (string, bool) { return lookup(r.SetRequestHeaders, name) }

func lookup(l [][2]string, name string) (string, bool) {
	for _, kv := range l {
		if strings.EqualFold(kv[0], name) {
			return kv[1], true
		}
	}
	return "", false
}

// Host is an emulated edge host. Its rate-limit counters persist across Run calls, so a test
// can drive a plugin past its limit. The zero value is not usable; use New.
type Host struct {
	// Now is the host clock (now_unix_ms and rate-limit windows). Default time.Now.
	Now func() time.Time

	mu       sync.Mutex
	counters map[string]*counter
}

type counter struct{ start, curr, prev int64 }

// New returns an emulated host.
func New() *Host { return &Host{Now: time.Now, counters: map[string]*counter{}} }

// Run calls handler (a func(*plugin.Request) plugin.Result, or nil for the handler
// registered with plugin.Handle) for req with config (a JSON string or []byte, nil for "{}",
// or any other value, which is marshalled to JSON).
func Run(handler any, config any, req Request) Result { return New().Run(handler, config, req) }

// Validate calls validator (a func([]byte) error, or nil for the one registered with
// plugin.ValidateConfig) with config and returns its error.
func Validate(validator any, config any) error { return New().Validate(validator, config) }

// Run is the package-level Run on this host.
func (h *Host) Run(handler any, config any, req Request) Result {
	c := &call{host: h, req: req, config: configBytes(config)}
	code := hostapi.HandleRequest(c, handler)
	res := c.res
	switch {
	case c.violation != "":
		res.Action, res.Err = Error, c.violation
	case code == 0:
		res.Action = Allow
	case code == 1 && !c.responded:
		res.Action, res.Err = Error, "ABI violation: RESPOND without respond"
	case code == 1 && c.res.Status < 200:
		res.Action, res.Err = Error, fmt.Sprintf("ABI violation: RESPOND with an informational status, not a final response: %d", c.res.Status)
	case code == 1:
		res.Action = Respond
	default:
		res.Action = Error
		if res.Err == "" {
			res.Err = fmt.Sprintf("handle_request returned %d", code)
		}
	}
	if res.Action == Error {
		res.Status = 500
		res.SetRequestHeaders, res.RemoveRequestHeaders, res.SetResponseHeaders = nil, nil, nil
	}
	return res
}

// Validate is the package-level Validate on this host.
func (h *Host) Validate(validator any, config any) error {
	c := &call{host: h, config: configBytes(config)}
	if code := hostapi.ValidateConfig(c, validator); code != 0 {
		if c.res.Err == "" {
			return fmt.Errorf("validate_config returned %d", code)
		}
		return fmt.Errorf("%s", c.res.Err)
	}
	return nil
}

func configBytes(config any) []byte {
	switch c := config.(type) {
	case nil:
		return []byte("{}")
	case string:
		return []byte(c)
	case []byte:
		return c
	default:
		b, err := json.Marshal(c)
		if err != nil {
			panic(fmt.Sprintf("plugintest: config: %v", err))
		}
		return b
	}
}

// call implements hostapi.Host for one call, applying the host's rules.
type call struct {
	host      *Host
	req       Request
	config    []byte
	res       Result
	responded bool
	edits     int
	violation string
}

var _ hostapi.Host = (*call)(nil)

func (c *call) violate(msg string) {
	if c.violation == "" {
		c.violation = "ABI violation: " + msg
	}
}

func (c *call) AppendField(dst []byte, f hostapi.Field) ([]byte, bool) {
	var v string
	switch f {
	case hostapi.FieldConfig:
		if len(c.config) == 0 {
			return append(dst, "{}"...), true
		}
		return append(dst, c.config...), true
	case hostapi.FieldMethod:
		v = c.req.Method
	case hostapi.FieldPath:
		v = c.req.Path
	case hostapi.FieldQuery:
		v = c.req.Query
	case hostapi.FieldHost:
		v = c.req.Host
	case hostapi.FieldClientIP:
		v = c.req.ClientIP
	case hostapi.FieldShareID:
		v = c.req.ShareID
	}
	return append(dst, v...), true
}

func (c *call) ConfigID() uint64 {
	f := fnv.New64a()
	f.Write(c.config)
	return f.Sum64()
}

func (c *call) AppendHeader(dst []byte, name string) ([]byte, bool) {
	for k, v := range c.req.Headers {
		if strings.EqualFold(k, name) {
			return append(dst, v...), true
		}
	}
	return dst, false
}

func (c *call) NowUnixMs() int64 { return c.host.Now().UnixMilli() }

var forbidden = map[string]bool{
	"connection": true, "content-length": true, "host": true, "keep-alive": true, "proxy-connection": true,
	"te": true, "trailer": true, "transfer-encoding": true, "upgrade": true,
}

func validName(name string) bool {
	if name == "" || len(name) > 256 {
		return false
	}
	for i := 0; i < len(name); i++ {
		ch := name[i]
		ok := ch >= '0' && ch <= '9' || ch >= 'a' && ch <= 'z' || ch >= 'A' && ch <= 'Z' || strings.IndexByte("!#$%&'*+-.^_`|~", ch) >= 0
		if !ok {
			return false
		}
	}
	return true
}

func (c *call) checkEdit(name, value string) bool {
	switch {
	case !validName(name):
		c.violate("invalid header name " + fmt.Sprintf("%q", name))
	case len(value) > 8<<10 || strings.ContainsAny(value, "\r\n\x00"):
		c.violate("invalid header value")
	case forbidden[strings.ToLower(name)]:
		c.violate("connection-level header " + name)
	case c.edits >= 64:
		c.violate("too many header edits")
	default:
		c.edits++
		return true
	}
	return false
}

func setPair(l [][2]string, name, value string) [][2]string {
	for i := range l {
		if strings.EqualFold(l[i][0], name) {
			l[i] = [2]string{name, value}
			return l
		}
	}
	return append(l, [2]string{name, value})
}

func (c *call) SetRequestHeader(name, value string) {
	if !c.checkEdit(name, value) {
		return
	}
	out := c.res.RemoveRequestHeaders[:0]
	for _, n := range c.res.RemoveRequestHeaders {
		if !strings.EqualFold(n, name) {
			out = append(out, n)
		}
	}
	c.res.RemoveRequestHeaders = out
	c.res.SetRequestHeaders = setPair(c.res.SetRequestHeaders, name, value)
}

func (c *call) RemoveRequestHeader(name string) {
	if !c.checkEdit(name, "") {
		return
	}
	out := c.res.SetRequestHeaders[:0]
	for _, kv := range c.res.SetRequestHeaders {
		if !strings.EqualFold(kv[0], name) {
			out = append(out, kv)
		}
	}
	c.res.SetRequestHeaders = out
	for _, n := range c.res.RemoveRequestHeaders {
		if strings.EqualFold(n, name) {
			return
		}
	}
	c.res.RemoveRequestHeaders = append(c.res.RemoveRequestHeaders, name)
}

func (c *call) SetResponseHeader(name, value string) {
	if c.checkEdit(name, value) {
		c.res.SetResponseHeaders = setPair(c.res.SetResponseHeaders, name, value)
	}
}

func (c *call) Respond(status int, body []byte) {
	if status < 100 || status > 599 {
		c.violate(fmt.Sprintf("respond status %d", status))
		return
	}
	if len(body) > 64<<10 {
		c.violate("respond body too large")
		return
	}
	c.res.Status, c.res.Body, c.responded = status, string(body), true
}

func (c *call) RateLimit(key []byte, limit, windowMs int32) bool {
	if len(key) == 0 || len(key) > 1024 {
		c.violate("rate_limit key")
		return false
	}
	if windowMs <= 0 || windowMs > 24*60*60*1000 {
		c.violate("rate_limit window")
		return false
	}
	if limit <= 0 {
		return false
	}
	h := c.host
	now := h.Now().UnixMilli()
	w := int64(windowMs)
	start := now - now%w
	h.mu.Lock()
	defer h.mu.Unlock()
	k := fmt.Sprintf("%d\x00%s", w, key)
	e := h.counters[k]
	if e == nil {
		e = &counter{start: start}
		h.counters[k] = e
	} else if e.start != start {
		if start-e.start == w {
			e.prev = e.curr
		} else {
			e.prev = 0
		}
		e.curr, e.start = 0, start
	}
	est := e.curr + (e.prev*(w-(now-start))+w-1)/w
	if est >= int64(limit) {
		return false
	}
	e.curr++
	return true
}

func (c *call) HMACSHA256(key, msg []byte) (out [32]byte) {
	m := hmac.New(sha256.New, key)
	m.Write(msg)
	copy(out[:], m.Sum(nil))
	return out
}

func (c *call) VerifySignature(alg string, key, msg, sig []byte) bool {
	return verify(alg, key, msg, sig)
}

func (c *call) SetError(msg string) {
	if len(msg) > 1024 {
		msg = msg[:1024]
	}
	c.res.Err = msg
}

func (c *call) Log(level int32, msg string) {
	c.res.Logs = append(c.res.Logs, fmt.Sprintf("%d %s", level, msg))
}

// verify mirrors the host's verify_signature (see package plugins/abi).
func verify(alg string, key, msg, sig []byte) bool {
	d := sha256.Sum256(msg)
	switch alg {
	case "HS256":
		m := hmac.New(sha256.New, key)
		m.Write(msg)
		return hmac.Equal(m.Sum(nil), sig)
	case "RS256":
		pub, ok := parseKey(key).(*rsa.PublicKey)
		return ok && rsa.VerifyPKCS1v15(pub, crypto.SHA256, d[:], sig) == nil
	case "ES256":
		pub, ok := parseKey(key).(*ecdsa.PublicKey)
		if !ok || pub.Curve != elliptic.P256() {
			return false
		}
		if len(sig) == 64 {
			return ecdsa.Verify(pub, d[:], new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:]))
		}
		return ecdsa.VerifyASN1(pub, d[:], sig)
	case "EdDSA":
		pub, ok := parseKey(key).(ed25519.PublicKey)
		return ok && len(sig) == ed25519.SignatureSize && ed25519.Verify(pub, msg, sig)
	}
	return false
}

func parseKey(b []byte) any {
	block, _ := pem.Decode(b)
	if block == nil {
		return nil
	}
	switch block.Type {
	case "PUBLIC KEY":
		if k, err := x509.ParsePKIXPublicKey(block.Bytes); err == nil {
			return k
		}
	case "RSA PUBLIC KEY":
		if k, err := x509.ParsePKCS1PublicKey(block.Bytes); err == nil {
			return k
		}
	case "CERTIFICATE":
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil
		}
		return cert.PublicKey
	}
	return nil
}
