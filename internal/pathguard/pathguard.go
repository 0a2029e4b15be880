// Package pathguard recognises request paths that only exist to exploit how
// servers normalise paths differently: a NUL byte, or a "." or ".." segment
// carrying path parameters ("/a/..;/b", "/a/.;x/b"). Tomcat, Jetty and Spring
// drop ";..." from every segment before they resolve dot segments, so
// "/public/..;/admin" is /admin to them while a proxy, a path pattern or a
// plugin reads a segment named "..;"; a NUL ends the path for services in C.
// No legitimate client sends either: browsers and HTTP libraries resolve dot
// segments before sending.
//
// The edge refuses such requests for every share and public service before the
// policy chain runs (edge/proxy), and the allow-paths built-in refuses them too
// (it also runs outside the edge, in tests and plugintest). The package is the
// standard library's bytes alone: the built-ins are Go compiled to Wasm.
package pathguard

import "bytes"

// Exploit reports whether the decoded path p (percent-encodings resolved, as
// fasthttp's normalised path and a plugin's get_path have it: "%2e%2e%3b" is
// "..;" there) holds a NUL byte or a dot segment with path parameters. The
// usual path costs two byte searches (the runtime's optimised ones: Go compiled
// to Wasm runs byte loops slowly) and no allocation.
func Exploit(p []byte) bool {
	if bytes.IndexByte(p, 0) >= 0 {
		return true
	}
	for i := bytes.IndexByte(p, ';'); i >= 0; {
		// The segment's name is what comes before its first ';'.
		start := bytes.LastIndexByte(p[:i], '/') + 1
		if name := p[start:i]; len(name) > 0 && len(name) <= 2 && name[0] == '.' && name[len(name)-1] == '.' {
			return true
		}
		// Go on at the next segment's first ';'.
		rest := p[i:]
		j := bytes.IndexByte(rest, '/')
		if j < 0 {
			return false
		}
		k := bytes.IndexByte(rest[j:], ';')
		if k < 0 {
			return false
		}
		i += j + k
	}
	return false
}
