package proxy

import (
	"bytes"

	"github.com/valyala/fasthttp"
)

// A service behind a link /shared/<token>/ believes it is at the root of
// its own host (it sees the path after the token and Host: target:port). Its
// redirects and cookies are written for that belief; the edge moves them
// under the share, as nginx's proxy_redirect and proxy_cookie_path do:
//
//   - Location: /login                        → /shared/<token>/login
//   - Location: http://<target:port>/login    → /shared/<token>/login
//     (on a share domain or public service: → /login)
//   - Set-Cookie: sid=1; Path=/                → sid=1; Path=/shared/<token>/
//
// A cookie's Path is also what keeps it to its share: without the rewrite a
// browser would send share A's cookies to every other share of the edge, so
// to other services, other workspaces' included. Links inside bodies are
// not rewritten (bodies stream); a service that honours X-Forwarded-Prefix
// (sent on path links) writes its links right, and what it writes already
// under the prefix is left as it is.

var (
	strLocation = []byte("Location")
	strPathAttr = []byte("path")
)

// rewriteHead moves the service's redirect and cookie paths under the
// share link. scratch is reused and returned.
func rewriteHead(h *fasthttp.ResponseHeader, tg *target, scratch []byte) []byte {
	if loc := h.PeekBytes(strLocation); len(loc) > 0 {
		if b, ok := appendLocation(scratch[:0], loc, tg.prefix, tg.svc.TargetHost, tg.svc.TargetPort); ok {
			h.SetBytesKV(strLocation, b)
			scratch = b
		}
	}
	if len(tg.prefix) == 0 {
		return scratch
	}
	// Every cookie, rewritten or not, into scratch (ends: where each ends);
	// nothing is allocated once scratch has grown.
	buf, changed := scratch[:0], false
	var endsArr [8]int
	ends := endsArr[:0]
	for _, v := range h.Cookies() {
		var c bool
		buf, c = appendCookiePath(buf, v, tg.prefix)
		changed = changed || c
		ends = append(ends, len(buf))
	}
	if changed {
		// fasthttp keys response cookies by name and has no raw setter:
		// take them all out and put them back, in their order.
		h.Del(fasthttp.HeaderSetCookie)
		start := 0
		for _, e := range ends {
			h.AddBytesV(fasthttp.HeaderSetCookie, buf[start:e])
			start = e
		}
	}
	return buf
}

// appendLocation appends the rewritten Location of a redirect, and whether
// it changed: a root-relative path goes under prefix, and an absolute URL
// to the service's own address (host:port, or host alone on the scheme's
// port) becomes prefix plus its path. Relative paths, redirects elsewhere,
// and paths already under prefix stay.
func appendLocation(dst, loc, prefix []byte, host string, port int) ([]byte, bool) {
	if bytes.ContainsAny(loc, "\t\r\n") {
		// Browsers drop these anywhere in a URL: "/\t/evil.example" is
		// "//evil.example" to them. Left as the service wrote it.
		return dst, false
	}
	path := loc
	switch {
	case len(loc) >= 2 && loc[0] == '/' && (loc[1] == '/' || loc[1] == '\\'):
		// Scheme-relative //authority/path (browsers read "/\" so too).
		rest, ok := sameAuthority(loc[2:], host, port, 0)
		if !ok {
			return dst, false
		}
		path = rest
	case loc[0] == '/':
	default:
		i := bytes.Index(loc, []byte("://"))
		if i <= 0 {
			return dst, false // relative: the browser resolves it under the link
		}
		var defPort int
		switch scheme := loc[:i]; {
		case bytes.EqualFold(scheme, []byte("http")):
			defPort = 80
		case bytes.EqualFold(scheme, []byte("https")):
			defPort = 443
		default:
			return dst, false
		}
		rest, ok := sameAuthority(loc[i+3:], host, port, defPort)
		if !ok {
			return dst, false
		}
		path = rest
	}
	if len(path) == 0 || path[0] != '/' {
		// http://target:port or http://target:port?q: the root.
		dst = append(append(dst, prefix...), '/')
		return append(dst, path...), true
	}
	if len(prefix) == 0 {
		if len(path) >= 2 && (path[1] == '/' || path[1] == '\\') {
			// http://target//evil.example/ must not become //evil.example/.
			return dst, false
		}
		return append(dst, path...), len(path) != len(loc)
	}
	if underPrefix(path, prefix) {
		return append(dst, path...), len(path) != len(loc)
	}
	return append(append(dst, prefix...), path...), true
}

// sameAuthority reports whether u (a URL after "scheme://") names the
// service's address, and returns the rest of it (path, query, fragment).
// defPort is the scheme's port, under which the port may be left out.
func sameAuthority(u []byte, host string, port, defPort int) ([]byte, bool) {
	end := bytes.IndexAny(u, "/?#")
	if end < 0 {
		end = len(u)
	}
	auth := u[:end]
	if bytes.IndexByte(auth, '@') >= 0 {
		return nil, false
	}
	var hp [300]byte
	if bytes.EqualFold(auth, appendHostPort(hp[:0], host, port)) ||
		port == defPort && bytes.EqualFold(auth, appendHost(hp[:0], host)) {
		return u[end:], true
	}
	return nil, false
}

// underPrefix reports whether path is prefix itself or below it.
func underPrefix(path, prefix []byte) bool {
	return bytes.HasPrefix(path, prefix) && (len(path) == len(prefix) || path[len(prefix)] == '/' || path[len(prefix)] == '?' || path[len(prefix)] == '#')
}

// appendCookiePath appends a Set-Cookie value with every Path attribute
// that is an absolute path moved under prefix (the browser keeps the last
// one; one that is not absolute makes it use the request's directory, which
// is under the link already).
func appendCookiePath(dst, v, prefix []byte) ([]byte, bool) {
	changed := false
	for len(v) > 0 {
		i := attributeIndex(v, strPathAttr)
		if i < 0 {
			break
		}
		// v[i:] is "path" (any case), spaces, '=', spaces, the value.
		j := i + len(strPathAttr)
		for j < len(v) && (v[j] == ' ' || v[j] == '\t') {
			j++
		}
		j++ // '='
		for j < len(v) && (v[j] == ' ' || v[j] == '\t') {
			j++
		}
		dst = append(dst, v[:j]...)
		v = v[j:]
		if len(v) > 0 && v[0] == '/' && !underPrefix(attrValue(v), prefix) {
			dst = append(dst, prefix...)
			changed = true
		}
	}
	return append(dst, v...), changed
}

// attrValue is the attribute value at the start of v (up to ';').
func attrValue(v []byte) []byte {
	if i := bytes.IndexByte(v, ';'); i >= 0 {
		v = v[:i]
	}
	return bytes.TrimRight(v, " \t")
}

// attributeIndex finds the first attribute named name (lowercase) with a
// value in a Set-Cookie value, after its name=value pair: the index of the
// attribute's name, or -1.
func attributeIndex(v, name []byte) int {
	off := 0
	for {
		i := bytes.IndexByte(v[off:], ';')
		if i < 0 {
			return -1
		}
		off += i + 1
		k := off
		for k < len(v) && (v[k] == ' ' || v[k] == '\t') {
			k++
		}
		if len(v)-k < len(name) || !bytes.EqualFold(v[k:k+len(name)], name) {
			continue
		}
		e := k + len(name)
		for e < len(v) && (v[e] == ' ' || v[e] == '\t') {
			e++
		}
		if e < len(v) && v[e] == '=' {
			return k
		}
	}
}
