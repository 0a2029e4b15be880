// Package signedlink is the built-in plugin for expiring signed URLs: requests get 403
// unless the query carries an expiry in the future and a valid signature of the path and that
// expiry.
//
// Config: {"secret": "...", "param": "sig", "expiresParam": "exp"} (param and expiresParam
// default to "sig" and "exp"). The signature is
//
//	base64url(HMAC-SHA256(secret, path + "\n" + exp))   (no padding)
//
// where path is the path as the service sees it and exp the expiry in Unix seconds, as it
// appears in the query. plugins.SignLink produces such links.
package signedlink

import (
	"bytes"
	"crypto/hmac"
	"encoding/base64"
	"errors"
	"net/url"
	"strconv"

	"github.com/privateconnect/pc/plugins/builtin/internal/envelope"
	"github.com/privateconnect/pc/sdk/plugin"
)

type config struct {
	Secret       string `json:"secret"`
	Param        string `json:"param"`
	ExpiresParam string `json:"expiresParam"`
}

type compiled struct {
	secret              []byte
	param, expiresParam string
}

func parse(b []byte) (*compiled, error) {
	cfg, err := plugin.DecodeJSON[*config](b)
	if err != nil {
		return nil, err
	}
	if len(cfg.Secret) < 16 {
		return nil, errors.New("secret must be at least 16 bytes")
	}
	if cfg.Param == "" {
		cfg.Param = "sig"
	}
	if cfg.ExpiresParam == "" {
		cfg.ExpiresParam = "exp"
	}
	if cfg.Param == cfg.ExpiresParam {
		return nil, errors.New("param and expiresParam must differ")
	}
	return &compiled{secret: []byte(cfg.Secret), param: cfg.Param, expiresParam: cfg.ExpiresParam}, nil
}

// Validate checks a config.
func Validate(b []byte) error { _, err := parse(b); return err }

var buf, qbuf [4096]byte

// param returns the value of the only occurrence of name in a raw query (ok false when absent
// or repeated), unescaped only if it needs to be.
func param(q []byte, name string) (v []byte, ok bool) {
	for len(q) > 0 {
		var kv []byte
		kv, q, _ = bytes.Cut(q, []byte("&"))
		if len(kv) > len(name) && kv[len(name)] == '=' && string(kv[:len(name)]) == name {
			if ok {
				return nil, false // repeated
			}
			v, ok = kv[len(name)+1:], true
		}
	}
	if ok && bytes.IndexByte(v, '%') >= 0 {
		u, err := url.QueryUnescape(string(v))
		if err != nil {
			return nil, false
		}
		v = []byte(u)
	}
	return v, ok
}

// Handle is the policy: the handler of the built-in's module (and a step of the bundle).
func Handle(r *plugin.Request) plugin.Result {
	c, err := plugin.ParseConfig(r, parse)
	if err != nil {
		return plugin.Error(err)
	}
	q := r.AppendQuery(qbuf[:0])
	exp, ok1 := param(q, c.expiresParam)
	sig, ok2 := param(q, c.param)
	if !ok1 || !ok2 {
		return envelope.Deny(403, "This link needs a valid signature")
	}
	e, err := strconv.ParseInt(string(exp), 10, 64)
	if err != nil || e <= r.Now().Unix() {
		return envelope.Deny(403, "This link has expired or its signature is invalid")
	}
	var got [33]byte
	if n, err := base64.RawURLEncoding.Decode(got[:], sig); err != nil || n != 32 {
		return envelope.Deny(403, "This link needs a valid signature")
	}
	msg := r.AppendPath(buf[:0])
	msg = append(msg, '\n')
	msg = append(msg, exp...)
	want := r.HMACSHA256(c.secret, msg)
	if !hmac.Equal(got[:32], want[:]) {
		return envelope.Deny(403, "This link needs a valid signature")
	}
	return plugin.Allow()
}
