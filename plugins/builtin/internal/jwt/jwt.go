// Package jwt is the built-in plugin that admits requests carrying a valid JSON Web Token:
// anything else gets 401 with WWW-Authenticate: Bearer.
//
// Config: {"alg": "HS256"|"RS256"|"ES256"|"EdDSA", "key": "<HMAC secret or PEM public key>",
// "issuer": "...", "audience": "...", "header": "Authorization", "claims": {"role": "admin"},
// "leewaySeconds": 30, "allowNoExp": false}.
//
// The token is read from header (default Authorization, where it must follow "Bearer "; in
// another header the prefix is optional). The token's alg must equal the configured one (no
// "none", no algorithm confusion); its signature is checked by the host (verify_signature);
// exp is required (unless allowNoExp) and must be in the future, nbf in the past (both with
// the leeway); iss and aud must match when configured (aud may be a list); every entry of
// claims must be equal to the token's claim, or contained in it when the claim is a list.
// Tokens that passed are remembered per instance until they expire, so a client repeating its
// token costs one map lookup.
package jwt

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"reflect"
	"strings"

	"github.com/privateconnect/pc/plugins/builtin/internal/envelope"
	"github.com/privateconnect/pc/sdk/plugin"
)

type config struct {
	Alg           string         `json:"alg"`
	Key           string         `json:"key"`
	Issuer        string         `json:"issuer"`
	Audience      string         `json:"audience"`
	Header        string         `json:"header"`
	Claims        map[string]any `json:"claims"`
	LeewaySeconds int            `json:"leewaySeconds"`
	AllowNoExp    bool           `json:"allowNoExp"`
}

type compiled struct {
	config
	key    []byte
	bearer bool             // the header is Authorization: require the Bearer scheme
	seen   map[string]int64 // token -> exp (Unix seconds; 0 = none) of tokens that passed
}

func parse(b []byte) (*compiled, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	dec.UseNumber()
	var cfg config
	if err := dec.Decode(&cfg); err != nil {
		return nil, errors.New("config: " + err.Error())
	}
	switch cfg.Alg {
	case "HS256":
		if len(cfg.Key) < 16 {
			return nil, errors.New("HS256 key must be at least 16 bytes")
		}
	case "RS256", "ES256", "EdDSA":
		if !strings.Contains(cfg.Key, "-----BEGIN ") {
			return nil, errors.New(cfg.Alg + " key must be a PEM public key")
		}
	default:
		return nil, errors.New(`alg must be HS256, RS256, ES256 or EdDSA`)
	}
	if cfg.Header == "" {
		cfg.Header = "Authorization"
	}
	if cfg.LeewaySeconds < 0 || cfg.LeewaySeconds > 3600 {
		return nil, errors.New("leewaySeconds must be 0..3600")
	}
	if cfg.LeewaySeconds == 0 {
		cfg.LeewaySeconds = 30
	}
	return &compiled{config: cfg, key: []byte(cfg.Key), bearer: strings.EqualFold(cfg.Header, "Authorization"),
		seen: map[string]int64{}}, nil
}

// Validate checks a config.
func Validate(b []byte) error { _, err := parse(b); return err }

var tok [8192]byte

// Handle is the policy: the handler of the built-in's module (and a step of the bundle).
func Handle(r *plugin.Request) plugin.Result {
	c, err := plugin.ParseConfig(r, parse)
	if err != nil {
		return plugin.Error(err)
	}
	v, ok := r.AppendHeader(tok[:0], c.Header)
	if !ok {
		return unauthorized("")
	}
	v = bytes.TrimSpace(v)
	if len(v) > 7 && strings.EqualFold(string(v[:7]), "bearer ") {
		v = bytes.TrimSpace(v[7:])
	} else if c.bearer {
		return unauthorized("invalid_request")
	}
	now := r.Now().Unix()
	if exp, ok := c.seen[string(v)]; ok && (exp == 0 || now < exp+int64(c.LeewaySeconds)) {
		return plugin.Allow()
	}
	exp, err := c.verify(r, v, now)
	if err != nil {
		return unauthorized("invalid_token")
	}
	if len(c.seen) >= 1024 {
		clear(c.seen)
	}
	c.seen[string(v)] = exp
	return plugin.Allow()
}

func unauthorized(code string) plugin.Result {
	h := `Bearer realm="share"`
	if code != "" {
		h += `, error="` + code + `"`
	}
	return envelope.Deny(401, "A valid token is required").WithHeader("WWW-Authenticate", h)
}

var errInvalid = errors.New("invalid token")

// verify checks the token and returns its exp (0 when absent and allowed).
func (c *compiled) verify(r *plugin.Request, token []byte, now int64) (int64, error) {
	parts := bytes.Split(token, []byte("."))
	if len(parts) != 3 {
		return 0, errInvalid
	}
	var hdr struct {
		Alg  string          `json:"alg"`
		Crit json.RawMessage `json:"crit"`
	}
	if err := decodeSegment(parts[0], &hdr); err != nil || hdr.Alg != c.Alg || hdr.Crit != nil {
		return 0, errInvalid
	}
	sig, err := base64.RawURLEncoding.DecodeString(string(parts[2]))
	if err != nil {
		return 0, errInvalid
	}
	signed := token[:len(parts[0])+1+len(parts[1])]
	if !r.VerifySignature(c.Alg, c.key, signed, sig) {
		return 0, errInvalid
	}
	var claims map[string]any
	if err := decodeSegment(parts[1], &claims); err != nil {
		return 0, errInvalid
	}
	leeway := int64(c.LeewaySeconds)
	exp, hasExp, err := numericDate(claims["exp"])
	if err != nil || (!hasExp && !c.AllowNoExp) || (hasExp && now >= exp+leeway) {
		return 0, errInvalid
	}
	if nbf, has, err := numericDate(claims["nbf"]); err != nil || (has && now+leeway < nbf) {
		return 0, errInvalid
	}
	if c.Issuer != "" && claims["iss"] != c.Issuer {
		return 0, errInvalid
	}
	if c.Audience != "" && !matches(claims["aud"], c.Audience) {
		return 0, errInvalid
	}
	for k, want := range c.Claims {
		if !matches(claims[k], want) {
			return 0, errInvalid
		}
	}
	return exp, nil
}

func decodeSegment(seg []byte, v any) error {
	b, err := base64.RawURLEncoding.DecodeString(string(seg))
	if err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	return dec.Decode(v)
}

func numericDate(v any) (int64, bool, error) {
	if v == nil {
		return 0, false, nil
	}
	n, ok := v.(json.Number)
	if !ok {
		return 0, false, errInvalid
	}
	if i, err := n.Int64(); err == nil {
		return i, true, nil
	}
	f, err := n.Float64()
	if err != nil {
		return 0, false, errInvalid
	}
	return int64(f), true, nil
}

// matches reports whether a token claim equals want, or contains it when it is a list.
func matches(got, want any) bool {
	if list, ok := got.([]any); ok {
		if _, wantList := want.([]any); !wantList {
			for _, g := range list {
				if reflect.DeepEqual(g, want) {
					return true
				}
			}
			return false
		}
	}
	return reflect.DeepEqual(got, want)
}
