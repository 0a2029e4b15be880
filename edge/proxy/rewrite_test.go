package proxy

import (
	"bufio"
	"bytes"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/valyala/fasthttp"

	"github.com/privateconnect/pc/internal/config"
)

const testPrefix = "/shared/abc"

func TestAppendLocation(t *testing.T) {
	for _, tc := range []struct {
		loc, prefix, want string // want "" : unchanged
	}{
		{"/login", testPrefix, "/shared/abc/login"},
		{"/", testPrefix, "/shared/abc/"},
		{"/a?next=/b#f", testPrefix, "/shared/abc/a?next=/b#f"},
		{"/shared/abc/login", testPrefix, ""}, // the service honours X-Forwarded-Prefix
		{"/shared/abc?x", testPrefix, ""},
		{"/shared/abcdef/x", testPrefix, "/shared/abc/shared/abcdef/x"},
		{"login", testPrefix, ""},   // relative: resolves under the link
		{"../up", testPrefix, ""},   // the same
		{"?page=2", testPrefix, ""}, // the same
		{"http://127.0.0.1:3000/x?y", testPrefix, "/shared/abc/x?y"},
		{"HTTP://127.0.0.1:3000/x", testPrefix, "/shared/abc/x"},
		{"https://127.0.0.1:3000/x", testPrefix, "/shared/abc/x"},
		{"http://127.0.0.1:3000", testPrefix, "/shared/abc/"},
		{"http://127.0.0.1:3000?q=1", testPrefix, "/shared/abc/?q=1"},
		{"http://127.0.0.1:3000//evil.example/", testPrefix, "/shared/abc//evil.example/"},
		{"//127.0.0.1:3000/x", testPrefix, "/shared/abc/x"},
		{"http://127.0.0.1/x", testPrefix, ""},            // port 80: another address
		{"http://127.0.0.1:3001/x", testPrefix, ""},       // another port
		{"http://example.com/x", testPrefix, ""},          // elsewhere
		{"//example.com/x", testPrefix, ""},               // elsewhere
		{"/\\example.com/x", testPrefix, ""},              // browsers read /\ as //
		{"http://u@127.0.0.1:3000/x", testPrefix, ""},     // userinfo: not rewritten
		{"http://127.0.0.1:3000\\@evil/", testPrefix, ""}, // a backslash is not the end of the authority
		{"ftp://127.0.0.1:3000/x", testPrefix, ""},
		// A share domain or a public service: only the service's own
		// absolute address changes, to a path on the visitor's host.
		{"/login", "", ""},
		{"http://127.0.0.1:3000/x", "", "/x"},
		{"http://127.0.0.1:3000", "", "/"},
		{"http://127.0.0.1:3000//evil.example/", "", ""},
		{"http://127.0.0.1:3000/\\evil.example/", "", ""},
		{"http://127.0.0.1:3000/\t/evil.example/", "", ""}, // browsers drop the tab: //evil.example
		{"/\t/evil.example/", testPrefix, ""},
		{"/shared/abc#top", testPrefix, ""},
	} {
		t.Run(tc.loc+"|"+tc.prefix, func(t *testing.T) {
			got, ok := appendLocation(nil, []byte(tc.loc), []byte(tc.prefix), "127.0.0.1", 3000)
			if tc.want == "" {
				require.False(t, ok, "got %q", got)
				return
			}
			require.True(t, ok)
			require.Equal(t, tc.want, string(got))
		})
	}
	// The scheme's own port may be left out of the service's address, and
	// IPv6 literals are bracketed.
	got, ok := appendLocation(nil, []byte("http://localhost/x"), []byte(testPrefix), "localhost", 80)
	require.True(t, ok)
	require.Equal(t, "/shared/abc/x", string(got))
	got, ok = appendLocation(nil, []byte("https://[::1]/x"), []byte(testPrefix), "::1", 443)
	require.True(t, ok)
	require.Equal(t, "/shared/abc/x", string(got))
	got, ok = appendLocation(nil, []byte("http://[::1]:8080/x"), []byte(testPrefix), "::1", 8080)
	require.True(t, ok)
	require.Equal(t, "/shared/abc/x", string(got))
}

func TestAppendCookiePath(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"sid=1; Path=/", "sid=1; Path=/shared/abc/"},
		{"sid=1; path=/app; HttpOnly", "sid=1; path=/shared/abc/app; HttpOnly"},
		{"sid=1;Path = /x ;Secure", "sid=1;Path = /shared/abc/x ;Secure"},
		{"sid=1; Path=/a; Path=/b", "sid=1; Path=/shared/abc/a; Path=/shared/abc/b"},
		{"sid=1; HttpOnly", ""},           // no Path: the request's directory, under the link
		{"sid=1; Path=", ""},              // empty: the same
		{"sid=1; Path=relative", ""},      // not absolute: the same
		{"sid=1; Path=/shared/abc/x", ""}, // already under the link
		{"path=/x; Secure", ""},           // a cookie named path, no attribute
		{"sid=path=/x", ""},               // in the value
		{"sid=1; Pathx=/y", ""},           // another attribute
		{"sid=1; Domain=x; Path=/", "sid=1; Domain=x; Path=/shared/abc/"},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, changed := appendCookiePath(nil, []byte(tc.in), []byte(testPrefix))
			if tc.want == "" {
				require.False(t, changed)
				require.Equal(t, tc.in, string(got))
				return
			}
			require.True(t, changed)
			require.Equal(t, tc.want, string(got))
		})
	}
}

func TestRewriteHead(t *testing.T) {
	svc := &config.Service{TargetHost: "127.0.0.1", TargetPort: 3000}
	parse := func(t *testing.T, raw string) *fasthttp.ResponseHeader {
		var h fasthttp.ResponseHeader
		require.NoError(t, h.Read(bufioReader(raw)))
		return &h
	}
	t.Run("path link", func(t *testing.T) {
		h := parse(t, "HTTP/1.1 302 Found\r\nLocation: /login\r\nSet-Cookie: a=1; Path=/\r\nSet-Cookie: b=2\r\nSet-Cookie: c=3; Path=/c\r\nContent-Length: 0\r\n\r\n")
		rewriteHead(h, &target{svc: svc, prefix: []byte(testPrefix)}, nil)
		require.Equal(t, "/shared/abc/login", string(h.Peek("Location")))
		var cookies []string
		for _, v := range h.Cookies() {
			cookies = append(cookies, string(v))
		}
		require.Equal(t, []string{"a=1; Path=/shared/abc/", "b=2", "c=3; Path=/shared/abc/c"}, cookies, "rewritten in their order")
	})
	t.Run("share domain", func(t *testing.T) {
		h := parse(t, "HTTP/1.1 301 Moved\r\nLocation: http://127.0.0.1:3000/next\r\nSet-Cookie: a=1; Path=/\r\nContent-Length: 0\r\n\r\n")
		rewriteHead(h, &target{svc: svc}, nil)
		require.Equal(t, "/next", string(h.Peek("Location")))
		require.Equal(t, "a=1; Path=/", string(h.PeekCookie("a")), "the host is the share's own")
	})
	t.Run("nothing to do allocates nothing", func(t *testing.T) {
		// A cookie without Path, and one already under the link (a service
		// that honours X-Forwarded-Prefix): nothing to rewrite.
		h := parse(t, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2; Path=/shared/abc/x\r\nContent-Length: 0\r\n\r\n")
		tg := &target{svc: svc, prefix: []byte(testPrefix)}
		scratch := make([]byte, 0, 64)
		require.Zero(t, testing.AllocsPerRun(100, func() { scratch = rewriteHead(h, tg, scratch) }))
		require.Equal(t, "b=2; Path=/shared/abc/x", string(h.PeekCookie("b")))
	})
}

// FuzzRewriteHead feeds arbitrary Location and Set-Cookie values: a rewrite
// of a path link's Location stays under the link; on a share domain it
// never makes a scheme-relative (off-site) URL out of the service's own;
// a cookie keeps its name and value; rewriting twice is rewriting once.
func FuzzRewriteHead(f *testing.F) {
	for _, s := range []string{"/login", "http://127.0.0.1:3000/x", "//127.0.0.1:3000//e", "http://127.0.0.1:3000/\\e",
		"sid=1; Path=/", "a=b; path = /x; Path=/y", "x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		if v == "" {
			return
		}
		prefix := []byte(testPrefix)
		if got, ok := appendLocation(nil, []byte(v), prefix, "127.0.0.1", 3000); ok {
			if !underPrefix(got, prefix) {
				t.Fatalf("%q → %q: not under the link", v, got)
			}
			if again, ok := appendLocation(nil, got, prefix, "127.0.0.1", 3000); ok {
				t.Fatalf("%q → %q → %q: not idempotent", v, got, again)
			}
		}
		if got, ok := appendLocation(nil, []byte(v), nil, "127.0.0.1", 3000); ok {
			// As a browser reads it: tabs and newlines dropped.
			got = bytes.Map(func(r rune) rune {
				if r == '\t' || r == '\r' || r == '\n' {
					return -1
				}
				return r
			}, got)
			if len(got) == 0 || got[0] != '/' || len(got) > 1 && (got[1] == '/' || got[1] == '\\') {
				t.Fatalf("%q → %q: not a path on the visitor's host", v, got)
			}
		}
		got, changed := appendCookiePath(nil, []byte(v), prefix)
		if !changed && string(got) != v {
			t.Fatalf("%q → %q without a change", v, got)
		}
		nv := v
		if i := bytes.IndexByte([]byte(v), ';'); i >= 0 {
			nv = v[:i]
		}
		if !bytes.HasPrefix(got, []byte(nv)) {
			t.Fatalf("%q → %q: the name=value changed", v, got)
		}
		if again, changed := appendCookiePath(nil, got, prefix); changed {
			t.Fatalf("%q → %q → %q: not idempotent", v, got, again)
		}
	})
}

func bufioReader(s string) *bufio.Reader { return bufio.NewReader(strings.NewReader(s)) }
