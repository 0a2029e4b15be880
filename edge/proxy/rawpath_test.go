package proxy

import "testing"

// The service gets the path as sent (a%2Fb stays one segment) only when it
// names the resource the policies saw; otherwise the normalized path.
func TestRawPath(t *testing.T) {
	const link = "/shared/abc"
	for _, c := range []struct {
		orig, prefix, want string // want "" = the normalized path
	}{
		{"/shared/abc/a%2Fb", link, "/a%2Fb"},
		{"/shared/abc/files/a%20b.txt", link, "/files/a%20b.txt"},
		{"/shared/abc/a%2fb/", link, "/a%2fb/"},
		{"/a%2Fb", "", "/a%2Fb"},
		{"/shared/abc/plain/path", link, ""}, // nothing encoded: the same
		{"/shared/abc/a/../b%2F", link, ""},
		{"/shared/abc/a/%2e%2e/b%2F", link, ""},
		{"/shared/abc/a/.%2E/b%2F", link, ""},
		{"/shared/abc/%2e/b%2F", link, ""},
		{"/shared/abc/a//b%2F", link, ""},
		{"/shared/abc//b%2F", link, ""},
		{"/shared/abc/a%5c..%5cb", link, ""},
		{"/shared/abc/a\\b%2F", link, ""},
		{"/shared/%61bc/x%2Fy", link, ""}, // the link itself encoded
		{"/shared/abc", link, ""},
		{"/shared/abc/...%2F", link, "/...%2F"}, // three dots are a name
		// Separators a service decodes before routing count too: a%2F..%2Fb
		// is a/../b to it (FuzzRawPath found the first).
		{"/shared/abc/a%2f%2e%2e", link, ""},
		{"/shared/abc/admin%2F..%2Fpublic/x", link, ""},
		{"/shared/abc/a%2F%2Fb", link, ""},
		{"/shared/abc/%2Fb", link, ""},
	} {
		got := string(rawPath([]byte(c.orig), []byte(c.prefix)))
		if got != c.want {
			t.Errorf("rawPath(%q, %q) = %q, want %q", c.orig, c.prefix, got, c.want)
		}
	}
}
