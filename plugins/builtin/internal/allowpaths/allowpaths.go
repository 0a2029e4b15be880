// Package allowpaths is the built-in plugin behind a share's allowedPaths and
// allowedMethods: requests outside the allowed paths or methods get 403.
//
// Config: {"paths": ["/api/**", "/docs/*.html", "/static"], "methods": ["GET", "POST"]}. An
// empty or missing list allows everything on that axis. A pattern without a star is a prefix
// of whole segments (api-v1.md: "prefix, or glob"): "/static" (or "/static/") allows
// "/static" and everything under "/static/", not "/staticfiles". "/" alone allows the root
// only, as it always did (every path is "/**"): read as a prefix it would have opened every
// path of the links made with it. In a glob "*" matches any run of characters within one
// segment and "**" any run of characters across segments ("/a/**" also matches "/a"
// itself). Methods are case-insensitive; allowing GET allows HEAD. A method override
// (X-HTTP-Method-Override, X-HTTP-Method, X-Method-Override, a _method query parameter),
// which many frameworks act on instead of a POST's method, must name an allowed method too
// (on any method but GET and HEAD, which no framework overrides by default).
//
// Paths with dot segments ("/a/../b", also with path parameters: "/a/..;/b"), backslashes,
// NUL bytes or percent-encoded dots, slashes or backslashes are refused unless "/**" is
// allowed: the service might resolve them differently from the pattern. A path with path
// parameters (";v=1") must match both as sent and without them, as servlet containers
// route it ("/docs/secret.json;.html" is /docs/secret.json to Tomcat).
package allowpaths

import (
	"bytes"
	"errors"
	"fmt"
	"net/url"
	"strings"

	"github.com/privateconnect/pc/internal/pathguard"
	"github.com/privateconnect/pc/plugins/builtin/internal/envelope"
	"github.com/privateconnect/pc/sdk/plugin"
)

type config struct {
	Paths   []string `json:"paths"`
	Methods []string `json:"methods"`
}

type compiled struct {
	patterns []pattern
	any      bool // "/**" or no patterns
	methods  []string
}

// pattern is a path glob, pre-classified: Go compiled to Wasm runs byte loops slowly, so
// the common shapes use the runtime's optimised byte comparisons instead of the matcher.
type pattern struct {
	glob   string
	kind   byte   // 'p' a prefix: "<prefix>/**" without other stars, or no star at all; 'e' "/" (the root); 'g' glob
	prefix []byte // 'p': "<prefix>/"
}

func parse(b []byte) (*compiled, error) {
	cfg, err := plugin.DecodeJSON[*config](b)
	if err != nil {
		return nil, err
	}
	if len(cfg.Paths) > 256 || len(cfg.Methods) > 32 {
		return nil, errors.New("at most 256 paths and 32 methods")
	}
	c := &compiled{any: len(cfg.Paths) == 0}
	for _, p := range cfg.Paths {
		if !strings.HasPrefix(p, "/") || len(p) > 1024 {
			return nil, fmt.Errorf("path pattern %q must start with / and be at most 1024 bytes", p)
		}
		if strings.Contains(strings.ReplaceAll(p, "**", ""), "**") {
			return nil, fmt.Errorf("path pattern %q: more than two stars in a row", p)
		}
		if p == "/**" {
			c.any = true
		}
		pt := pattern{glob: p, kind: 'g'}
		switch {
		case p == "/":
			pt.kind = 'e'
		case !strings.Contains(p, "*"):
			pt.kind, pt.prefix = 'p', []byte(strings.TrimSuffix(p, "/")+"/")
		case strings.HasSuffix(p, "/**") && !strings.Contains(p[:len(p)-3], "*"):
			pt.kind, pt.prefix = 'p', []byte(p[:len(p)-2])
		}
		c.patterns = append(c.patterns, pt)
	}
	for _, m := range cfg.Methods {
		if m == "" || len(m) > 32 || strings.IndexFunc(m, func(r rune) bool { return r <= ' ' || r >= 0x7f }) >= 0 {
			return nil, fmt.Errorf("invalid method %q", m)
		}
		m = strings.ToUpper(m)
		c.methods = append(c.methods, m)
		if m == "GET" {
			c.methods = append(c.methods, "HEAD")
		}
	}
	return c, nil
}

// Validate checks a config.
func Validate(b []byte) error { _, err := parse(b); return err }

var method, path [1024]byte

// Handle is the policy: the handler of the built-in's module (and a step of the bundle).
func Handle(r *plugin.Request) plugin.Result {
	c, err := plugin.ParseConfig(r, parse)
	if err != nil {
		return plugin.Error(err)
	}
	if len(c.methods) > 0 {
		m := r.AppendMethod(method[:0])
		ok := false
		for _, want := range c.methods {
			if string(m) == want {
				ok = true
				break
			}
		}
		if !ok || (!safeMethod(m) && !c.overridesAllowed(r)) {
			return envelope.Deny(403, "This path or method is not allowed for this share link")
		}
	}
	if c.any {
		return plugin.Allow()
	}
	p := r.AppendPath(path[:0])
	if suspicious(p) || !c.allows(p) {
		return envelope.Deny(403, "This path or method is not allowed for this share link")
	}
	if bytes.IndexByte(p, ';') >= 0 && !c.allows(withoutParams(p)) {
		// Tomcat, Jetty and Spring drop ";..." from every segment before
		// routing: "/docs/secret.json;.html" matches "/docs/*.html" but
		// serves /docs/secret.json. The path must match without them too.
		return envelope.Deny(403, "This path or method is not allowed for this share link")
	}
	return plugin.Allow()
}

// allows reports whether a pattern matches p.
func (c *compiled) allows(p []byte) bool {
	for i := range c.patterns {
		pt := &c.patterns[i]
		var ok bool
		switch pt.kind {
		case 'e':
			ok = len(p) == 1 && p[0] == '/'
		case 'p': // "/a/**" and "/a" match "/a" and everything under "/a/"
			ok = bytes.HasPrefix(p, pt.prefix) || bytes.Equal(p, pt.prefix[:len(pt.prefix)-1])
		default:
			ok = match(pt.glob, p)
		}
		if ok {
			return true
		}
	}
	return false
}

// withoutParams is p with the path parameters (";" to the end of its segment) of every
// segment removed, as servlet containers read it. (A new slice: p is the shared buffer.)
func withoutParams(p []byte) []byte {
	out := make([]byte, 0, len(p))
	for len(p) > 0 {
		i := bytes.IndexByte(p, ';')
		if i < 0 {
			return append(out, p...)
		}
		out = append(out, p[:i]...)
		p = p[i:]
		if j := bytes.IndexByte(p, '/'); j >= 0 {
			p = p[j:]
		} else {
			p = nil
		}
	}
	return out
}

// overrideHeaders name the method a framework acts on instead of the request's: Rails
// (Rack::MethodOverride), Express's method-override, Symfony and Laravel, ASP.NET Core
// and OData honour one of these (or a _method parameter) on a POST.
var overrideHeaders = [...]string{"X-HTTP-Method-Override", "X-HTTP-Method", "X-Method-Override"}

// safeMethod reports GET and HEAD, whose overrides are not read: Rails, Laravel, Symfony,
// Spring, ASP.NET Core and Express's method-override (by default) override a POST only, and
// an override honoured on a GET would make any link a cross-site DELETE. Reading the four
// places an override can be costs four host calls, most of this built-in's time on the
// requests links mostly get.
func safeMethod(m []byte) bool { return string(m) == "GET" || string(m) == "HEAD" }

// overridesAllowed reports whether every method override of the request (a header of
// overrideHeaders, a _method query parameter) names an allowed method: with POST allowed
// and DELETE not, "POST ...?_method=DELETE" is a DELETE to a Laravel service. (A _method
// field of a form body is out of a plugin's sight.)
func (c *compiled) overridesAllowed(r *plugin.Request) bool {
	for _, h := range overrideHeaders {
		if v, ok := r.AppendHeader(method[:0], h); ok && !c.allowed(bytes.TrimSpace(v)) {
			return false
		}
	}
	q := r.AppendQuery(path[:0])
	if bytes.IndexByte(q, 'm') < 0 && bytes.IndexByte(q, 'M') < 0 && bytes.IndexByte(q, '%') < 0 {
		return true // no "method" in it, plainly or encoded
	}
	for len(q) > 0 {
		var kv []byte
		kv, q, _ = bytes.Cut(q, []byte("&"))
		k, v, _ := bytes.Cut(kv, []byte("="))
		if len(k) < len("_method") && bytes.IndexByte(k, '%') < 0 {
			continue // no "_method", nothing to unescape: no copy for the usual short keys
		}
		key, err := url.QueryUnescape(string(k))
		if err != nil {
			return false
		}
		// PHP reads " method", ".method" and "[method" as "_method".
		if len(key) == len("_method") && strings.ContainsRune("_ .[", rune(key[0])) && strings.EqualFold(key[1:], "method") {
			val, err := url.QueryUnescape(string(v))
			if err != nil || !c.allowed([]byte(strings.TrimSpace(val))) {
				return false
			}
		}
	}
	return true
}

// allowed reports whether m (any case) is an allowed method.
func (c *compiled) allowed(m []byte) bool {
	for _, want := range c.methods {
		if len(m) == len(want) && strings.EqualFold(string(m), want) {
			return true
		}
	}
	return false
}

// suspicious reports paths whose meaning may differ between the pattern and the service.
// A NUL and dot segments with path parameters ("..;x") are [pathguard.Exploit]'s, which
// the edge refuses for every share before the chain runs: Tomcat, Jetty and Spring drop
// ";..." before resolving dots, and a NUL ends the path for services in C.
func suspicious(p []byte) bool {
	if bytes.IndexByte(p, '.') < 0 && bytes.IndexByte(p, '%') < 0 && bytes.IndexByte(p, '\\') < 0 && bytes.IndexByte(p, 0) < 0 {
		return false // the usual case, without a byte loop in Wasm
	}
	if pathguard.Exploit(p) {
		return true
	}
	for i := 0; i < len(p); i++ {
		switch p[i] {
		case '\\':
			return true
		case '%':
			if i+2 < len(p) {
				a, b := p[i+1], p[i+2]|0x20
				if (a == '2' && (b == 'e' || b == 'f')) || (a == '5' && b == 'c') {
					return true
				}
			}
		case '.':
			// a "." or ".." segment (with path parameters: pathguard.Exploit)
			if (i == 0 || p[i-1] == '/') && (i+1 == len(p) || p[i+1] == '/' ||
				(p[i+1] == '.' && (i+2 == len(p) || p[i+2] == '/'))) {
				return true
			}
		}
	}
	return false
}

// match reports whether path matches the glob pattern: "*" within a segment, "**" across
// segments; a trailing "/**" also matches the directory itself.
func match(pat string, path []byte) bool {
	if strings.HasSuffix(pat, "/**") && string(path) == pat[:len(pat)-3] {
		return true
	}
	return globMatch(pat, path)
}

func globMatch(pat string, s []byte) bool {
	// Greedy matching with two backtrack points: the last "*" (which may not cross '/') and
	// the last "**". When the "*" cannot grow, fall back to growing the "**".
	px, sx := 0, 0
	starPx, starSx := -1, 0 // after the last "*": pattern index, path index it started at
	deepPx, deepSx := -1, 0 // same for "**"
	for sx < len(s) || px < len(pat) {
		if px < len(pat) {
			if c := pat[px]; c == '*' {
				if px+1 < len(pat) && pat[px+1] == '*' {
					px += 2
					deepPx, deepSx = px, sx
					starPx = -1
				} else {
					px++
					starPx, starSx = px, sx
				}
				continue
			} else if sx < len(s) && s[sx] == c {
				px++
				sx++
				continue
			}
		}
		if starPx >= 0 && starSx < len(s) && s[starSx] != '/' {
			starSx++
			px, sx = starPx, starSx
			continue
		}
		if deepPx >= 0 && deepSx < len(s) {
			deepSx++
			px, sx = deepPx, deepSx
			starPx = -1
			continue
		}
		return false
	}
	return true
}
