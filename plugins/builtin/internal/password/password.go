// Package password is the built-in plugin behind a share's password.
//
// Config: {"passwordHash": "pbkdf2-sha256:<iterations>:<salt hex>:<key hex>", "realm": "...",
// "sessionHours": 12, "secureCookie": false}; the hash comes from plugins.HashSharePassword.
//
// A visitor gets through with either
//   - HTTP Basic credentials (any user name, the share password); the Authorization header is
//     then removed from the forwarded request; or
//   - the share's session cookie "pc_s_<share id>" (HttpOnly, SameSite=Lax, signed with a key
//     derived from the password hash, so changing the password ends every session), which
//     the plugin removes from the forwarded Cookie header.
//
// Without them, browsers (Accept: text/html) get a 401 with a small login page whose script
// sends the password in an X-Share-Password header (base64 of UTF-8; plugins cannot read
// request bodies) and reloads when the plugin answers 204 with the cookie; other clients get
// 401 with WWW-Authenticate: Basic. Wrong passwords count against a per share and client IP
// limit of 10 a minute (then 429). Verified passwords are remembered per instance (by SHA-256)
// so that Basic clients do not pay the PBKDF2 cost on every request.
package password

import (
	"bytes"
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/privateconnect/pc/internal/sharepass"
	"github.com/privateconnect/pc/plugins/builtin/internal/envelope"
	"github.com/privateconnect/pc/sdk/plugin"
)

type config struct {
	PasswordHash string `json:"passwordHash"`
	Realm        string `json:"realm"`
	SessionHours int    `json:"sessionHours"`
	SecureCookie bool   `json:"secureCookie"`
}

type compiled struct {
	iter      int
	salt, key []byte
	cookieKey []byte
	realm     string
	session   time.Duration
	secure    bool
	verified  map[[32]byte]bool // HMAC (cacheKey) of passwords known to be right
	cacheKey  []byte
}

func parse(b []byte) (*compiled, error) {
	cfg, err := plugin.DecodeJSON[*config](b)
	if err != nil {
		return nil, err
	}
	c := &compiled{realm: cfg.Realm, secure: cfg.SecureCookie, verified: map[[32]byte]bool{}}
	if c.iter, c.salt, c.key, err = sharepass.Parse(cfg.PasswordHash); err != nil {
		return nil, err
	}
	if c.realm == "" {
		c.realm = "Private Connect share"
	}
	if strings.ContainsAny(c.realm, "\"\\\r\n") || len(c.realm) > 128 {
		return nil, errors.New("realm: at most 128 characters, no quotes or backslashes")
	}
	if cfg.SessionHours == 0 {
		cfg.SessionHours = 12
	}
	if cfg.SessionHours < 1 || cfg.SessionHours > 24*30 {
		return nil, errors.New("sessionHours must be 1..720")
	}
	c.session = time.Duration(cfg.SessionHours) * time.Hour
	k := sha256.Sum256([]byte("pc-share-session\x00" + cfg.PasswordHash))
	c.cookieKey = k[:]
	k = sha256.Sum256([]byte("pc-share-verified\x00" + cfg.PasswordHash))
	c.cacheKey = k[:]
	return c, nil
}

// Validate checks a config.
func Validate(b []byte) error { _, err := parse(b); return err }

// check verifies a password, remembering the right ones by d, their
// keyed digest.
func (c *compiled) check(pw []byte, d [32]byte) bool {
	k, err := pbkdf2.Key(sha256.New, string(pw), c.salt, c.iter, len(c.key))
	if err != nil || !hmac.Equal(k, c.key) {
		return false
	}
	if len(c.verified) >= 256 {
		for k := range c.verified { // drop one (map order is random), not every client
			delete(c.verified, k)
			break
		}
	}
	c.verified[d] = true
	return true
}

var (
	hdr      [4096]byte
	basicBuf [512]byte // decoded Basic credentials (one call at a time per instance)
	keyBuf   [1024]byte
)

// Handle is the policy: the handler of the built-in's module (and a step of the bundle).
func Handle(r *plugin.Request) plugin.Result {
	c, err := plugin.ParseConfig(r, parse)
	if err != nil {
		return plugin.Error(err)
	}
	// The share id and cookie name are computed only on the paths that
	// need them: a Basic request that was verified before skips both (each
	// is an allocation inside the guest).
	if cookies, ok := r.AppendHeader(hdr[:0], "Cookie"); ok {
		share := r.ShareID()
		if v, rest, found := takeCookie(cookies, cookieName(share)); found && c.validSession(r, share, v) {
			if len(bytes.TrimSpace(rest)) == 0 {
				r.RemoveRequestHeader("Cookie")
			} else {
				r.SetRequestHeader("Cookie", string(rest))
			}
			return plugin.Allow()
		}
	}

	if v, ok := r.AppendHeader(hdr[:0], "X-Share-Password"); ok {
		pw, err := base64.StdEncoding.DecodeString(string(bytes.TrimSpace(v)))
		if err != nil {
			return failed(false)
		}
		if ok, limited := c.attempt(r, pw); !ok {
			return failed(limited)
		}
		share := r.ShareID()
		exp := r.Now().Add(c.session).Unix()
		cookie := fmt.Sprintf("%s=%s; Path=/; Max-Age=%d; HttpOnly; SameSite=Lax", cookieName(share), c.sessionValue(r, share, exp), int(c.session.Seconds()))
		if c.secure {
			cookie += "; Secure"
		}
		return plugin.Respond(204, nil).WithHeader("Set-Cookie", cookie).WithHeader("Cache-Control", "no-store")
	}

	if v, ok := r.AppendHeader(hdr[:0], "Authorization"); ok && len(v) > 6 && strings.EqualFold(string(v[:6]), "basic ") {
		raw, err := decodeBasic(bytes.TrimSpace(v[6:]))
		if err == nil {
			if i := bytes.IndexByte(raw, ':'); i >= 0 {
				ok, limited := c.attempt(r, raw[i+1:])
				if ok {
					r.RemoveRequestHeader("Authorization")
					return plugin.Allow()
				}
				r := failed(limited)
				if !limited {
					// A 401 names its scheme (RFC 9110), so a Basic client asks again.
					r = r.WithHeader("WWW-Authenticate", `Basic realm="`+c.realm+`", charset="UTF-8"`)
				}
				return r
			}
		}
	}

	if accept, _ := r.Header("Accept"); strings.Contains(accept, "text/html") {
		return plugin.Respond(401, []byte(loginPage)).
			WithHeader("Content-Type", "text/html; charset=utf-8").
			WithHeader("Cache-Control", "no-store").
			WithHeader("X-Frame-Options", "DENY")
	}
	return envelope.Deny(401, "This share link needs a password").
		WithHeader("WWW-Authenticate", `Basic realm="`+c.realm+`", charset="UTF-8"`)
}

// attempt checks a password. Passwords not already verified count against a limit of 10 a
// minute per share and client IP before the PBKDF2 runs, which bounds both guessing and the
// CPU an attacker can burn.
// The digest that remembers a right password is computed by the host
// (hmac_sha256), several times faster than SHA-256 inside the guest. It covers the client
// IP: a password is remembered for the client that proved it, so that another client's
// guesses all go through the limit. Remembered for everyone, the right guess would have
// answered 200 while every wrong one answered 429, telling a throttled guesser which was
// right.
// Both the digest's message and the limit's key are built in keyBuf, so a
// remembered password costs no allocation in the guest.
func (c *compiled) attempt(r *plugin.Request, pw []byte) (ok, limited bool) {
	msg := append(append(r.AppendClientIP(keyBuf[:0]), 0), pw...)
	d := r.HMACSHA256(c.cacheKey, msg)
	if c.verified[d] {
		return true, false
	}
	key := append(keyBuf[:0], "pw|"...)
	key = append(r.AppendShareID(key), '|')
	if !r.RateLimitKey(r.AppendClientIP(key), 10, time.Minute) {
		return false, true
	}
	return c.check(pw, d), false
}

// decodeBasic decodes Basic credentials into basicBuf when they fit (no
// allocation in the guest), or into a new buffer.
func decodeBasic(enc []byte) ([]byte, error) {
	if base64.StdEncoding.DecodedLen(len(enc)) > len(basicBuf) {
		return base64.StdEncoding.DecodeString(string(enc))
	}
	n, err := base64.StdEncoding.Decode(basicBuf[:], enc)
	return basicBuf[:n], err
}

func failed(limited bool) plugin.Result {
	if limited {
		return envelope.TooMany(60, "Too many password attempts: wait a minute")
	}
	return envelope.Deny(401, "Wrong password")
}

func cookieName(share string) string {
	b := []byte("pc_s_")
	for i := 0; i < len(share) && i < 64; i++ {
		ch := share[i]
		if ch >= '0' && ch <= '9' || ch >= 'a' && ch <= 'z' || ch >= 'A' && ch <= 'Z' || ch == '_' || ch == '-' {
			b = append(b, ch)
		}
	}
	return string(b)
}

func (c *compiled) sessionValue(r *plugin.Request, share string, exp int64) string {
	e := strconv.FormatInt(exp, 10)
	sum := r.HMACSHA256(c.cookieKey, []byte(share+"|"+e))
	return e + "." + hex.EncodeToString(sum[:])
}

func (c *compiled) validSession(r *plugin.Request, share string, v []byte) bool {
	dot := bytes.IndexByte(v, '.')
	if dot <= 0 {
		return false
	}
	exp, err := strconv.ParseInt(string(v[:dot]), 10, 64)
	if err != nil || exp <= r.Now().Unix() {
		return false
	}
	want := c.sessionValue(r, share, exp)
	return hmac.Equal([]byte(want), v)
}

// takeCookie finds name in a Cookie header and returns its value and the header without it.
func takeCookie(h []byte, name string) (value, rest []byte, found bool) {
	var out []byte
	for len(h) > 0 {
		var part []byte
		if i := bytes.IndexByte(h, ';'); i >= 0 {
			part, h = h[:i], h[i+1:]
		} else {
			part, h = h, nil
		}
		p := bytes.TrimSpace(part)
		if eq := bytes.IndexByte(p, '='); eq > 0 && string(p[:eq]) == name {
			value, found = p[eq+1:], true
			continue
		}
		if len(p) > 0 {
			if len(out) > 0 {
				out = append(out, "; "...)
			}
			out = append(out, p...)
		}
	}
	return value, out, found
}

const loginPage = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<meta name="robots" content="noindex"><title>Password required</title>
<style>body{font:16px system-ui,sans-serif;display:grid;place-items:center;min-height:90vh;margin:0;background:#f6f7f9}
form{background:#fff;padding:2rem;border-radius:8px;box-shadow:0 1px 4px #0002;min-width:18rem}
input,button{font:inherit;width:100%;box-sizing:border-box;padding:.5rem;margin:.4rem 0}#e{color:#b00;min-height:1.2em}</style>
</head><body><form id="f"><h1 style="font-size:1.2rem">This link is password protected</h1>
<label for="p">Password</label><input type="password" id="p" autocomplete="current-password" required autofocus>
<button>Continue</button><p id="e"></p></form>
<script>
document.getElementById("f").onsubmit = async function (ev) {
  ev.preventDefault();
  var pw = btoa(unescape(encodeURIComponent(document.getElementById("p").value)));
  var r = await fetch(location.href, {headers: {"X-Share-Password": pw}, credentials: "same-origin", cache: "no-store"});
  if (r.status === 204) { location.reload(); return; }
  document.getElementById("e").textContent = r.status === 429 ? "Too many attempts, wait a minute." : "Wrong password.";
};
</script></body></html>
`
