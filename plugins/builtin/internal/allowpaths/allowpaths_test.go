package allowpaths

import (
	"math/rand/v2"
	"testing"

	"github.com/privateconnect/pc/sdk/plugin/plugintest"
)

func TestMatch(t *testing.T) {
	for _, tc := range []struct {
		pat, path string
		want      bool
	}{
		{"/api/*", "/api/x", true},
		{"/api/*", "/api/x/y", false},
		{"/api/*", "/api/", true},
		{"/api/**", "/api/x/y", true},
		{"/api/**", "/api", true},
		{"/api/**", "/apix", false},
		{"/**", "/anything/at/all", true},
		{"/docs/*.html", "/docs/a.html", true},
		{"/docs/*.html", "/docs/a/b.html", false},
		{"/docs/**/*.png", "/docs/a/b/c.png", true},
		{"/exact", "/exact", true},
		{"/exact", "/exact/", false},
		{"/a*b*c", "/aXbYc", true},
		{"/a*b*c", "/aXbY/c", false},
	} {
		if got := match(tc.pat, []byte(tc.path)); got != tc.want {
			t.Errorf("match(%q, %q) = %v, want %v", tc.pat, tc.path, got, tc.want)
		}
	}
}

func TestHandle(t *testing.T) {
	cfg := `{"paths":["/api/**","/public/*"],"methods":["get","POST"]}`
	for _, tc := range []struct {
		method, path string
		allow        bool
	}{
		{"GET", "/api/v1/items", true},
		{"HEAD", "/api/v1/items", true},
		{"POST", "/public/x", true},
		{"DELETE", "/api/v1/items", false},
		{"GET", "/admin", false},
		{"GET", "/api/../admin", false},
		{"GET", "/api/%2e%2e/admin", false},
		{"GET", "/api/..%2fadmin", false},
	} {
		res := plugintest.Run(Handle, cfg, plugintest.Request{Method: tc.method, Path: tc.path})
		if (res.Action == plugintest.Allow) != tc.allow || (!tc.allow && res.Status != 403) {
			t.Errorf("%s %s: %+v", tc.method, tc.path, res)
		}
	}
	// A pattern without a star is a prefix of whole segments.
	for _, tc := range []struct {
		path  string
		allow bool
	}{
		{"/api", true},
		{"/api/", true},
		{"/api/v1/items", true},
		{"/apiary", false},
		{"/ap", false},
		{"/docs", true},
		{"/docs/a/b", true},
		{"/doc", false},
		{"/other", false},
		{"/api/../admin", false},
	} {
		res := plugintest.Run(Handle, `{"paths":["/api","/docs/"]}`, plugintest.Request{Method: "GET", Path: tc.path})
		if (res.Action == plugintest.Allow) != tc.allow || (!tc.allow && res.Status != 403) {
			t.Errorf("prefix patterns, GET %s: %+v", tc.path, res)
		}
	}
	// A method override must name an allowed method too.
	for _, tc := range []struct {
		query   string
		headers map[string]string
		allow   bool
	}{
		{"", map[string]string{"X-HTTP-Method-Override": "DELETE"}, false},
		{"", map[string]string{"x-http-method": "put"}, false},
		{"", map[string]string{"X-Method-Override": "DELETE, POST"}, false},
		{"", map[string]string{"X-HTTP-Method-Override": "post"}, true},
		{"_method=DELETE", nil, false},
		{"a=1&%5Fmethod=delete", nil, false},
		{".method=PUT", nil, false},
		{"_METHOD=PUT", nil, false},
		{"_method=GET&x=y", nil, true},
		{"methods=DELETE&my_method=DELETE", nil, true},
	} {
		for _, m := range []string{"POST", "PATCH"} {
			res := plugintest.Run(Handle, `{"paths":["/public/**"],"methods":["GET","POST","PATCH"]}`,
				plugintest.Request{Method: m, Path: "/public/x", Query: tc.query, Headers: tc.headers})
			if (res.Action == plugintest.Allow) != tc.allow {
				t.Errorf("%s ?%s %v: %+v, want allowed %v", m, tc.query, tc.headers, res, tc.allow)
			}
		}
		// GET and HEAD are never overridden by the frameworks (a GET acted on as a
		// DELETE would make every link a cross-site DELETE): not read, so not refused.
		for _, m := range []string{"GET", "HEAD"} {
			res := plugintest.Run(Handle, `{"paths":["/public/**"],"methods":["GET","POST","PATCH"]}`,
				plugintest.Request{Method: m, Path: "/public/x", Query: tc.query, Headers: tc.headers})
			if res.Action != plugintest.Allow {
				t.Errorf("%s ?%s %v: %+v, want allowed (overrides of %s are not read)", m, tc.query, tc.headers, res, m)
			}
		}
	}
	// Dot segments with path parameters: Tomcat, Jetty and Spring drop
	// ";..." from each segment before resolving dots, so /api/..;/admin is
	// /admin to them (fasthttp keeps "..;" as a name). A NUL ends the path
	// for services in C (and old PHP): /api/x%00/../../admin.
	for _, p := range []string{"/api/..;/admin", "/api/..;x=1/admin", "/api/.;/x", "/api/..;", "/api/x\x00.html", "/api/x\x00"} {
		res := plugintest.Run(Handle, `{"paths":["/api","/docs/**","/api/*.html"]}`, plugintest.Request{Method: "GET", Path: p})
		if res.Action == plugintest.Allow {
			t.Errorf("GET %q allowed: a service may resolve it outside the pattern", p)
		}
	}
	// A path must match as sent and also with its path parameters dropped,
	// as servlet containers route it: "/docs/secret.json;.html" is
	// /docs/secret.json to them.
	for _, tc := range []struct {
		path  string
		allow bool
	}{
		{"/docs/secret.json;.html", false},
		{"/docs/a.html;jsessionid=1", false}, // no match as sent (as before)
		{"/docs/a;v=2.html", false},          // /docs/a to a servlet container
		{"/docs;x/a.html", false},
		{"/other;/docs/a.html", false},
		{"/pub/a;b/c", true},
		{"/pub/a.html;x", true},
	} {
		res := plugintest.Run(Handle, `{"paths":["/docs/*.html","/pub"]}`, plugintest.Request{Method: "GET", Path: tc.path})
		if (res.Action == plugintest.Allow) != tc.allow {
			t.Errorf("GET %q: %+v, want allowed %v", tc.path, res, tc.allow)
		}
	}
	for _, p := range []string{"/api/a;b", "/api/...;/x", "/api/x;.."} {
		if res := plugintest.Run(Handle, `{"paths":["/api"]}`, plugintest.Request{Method: "GET", Path: p}); res.Action != plugintest.Allow {
			t.Errorf("GET %q refused: %+v", p, res)
		}
	}
	// "/" alone is the root page, as it always was: read as a prefix it
	// would open every path of the links made with it.
	if res := plugintest.Run(Handle, `{"paths":["/"]}`, plugintest.Request{Method: "GET", Path: "/"}); res.Action != plugintest.Allow {
		t.Errorf(`"/" allows the root: %+v`, res)
	}
	if res := plugintest.Run(Handle, `{"paths":["/"]}`, plugintest.Request{Method: "GET", Path: "/any/thing"}); res.Action == plugintest.Allow {
		t.Errorf(`"/" allows only the root: %+v`, res)
	}
	if err := plugintest.Validate(Validate, `{"paths":["nope"]}`); err == nil {
		t.Error("relative pattern accepted")
	}
}

// reference is an obviously correct (exponential) matcher.
func reference(pat string, s []byte) bool {
	if pat == "" {
		return len(s) == 0
	}
	if len(pat) >= 2 && pat[:2] == "**" {
		for i := 0; i <= len(s); i++ {
			if reference(pat[2:], s[i:]) {
				return true
			}
		}
		return false
	}
	if pat[0] == '*' {
		for i := 0; i <= len(s); i++ {
			if reference(pat[1:], s[i:]) {
				return true
			}
			if i < len(s) && s[i] == '/' {
				break
			}
		}
		return false
	}
	return len(s) > 0 && s[0] == pat[0] && reference(pat[1:], s[1:])
}

func TestGlobAgainstReference(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	pick := func(alphabet []string, n int) string {
		out := ""
		for range n {
			out += alphabet[r.IntN(len(alphabet))]
		}
		return out
	}
	for range 20000 {
		pat := pick([]string{"a", "b", "/", "*", "**"}, 1+r.IntN(6))
		s := pick([]string{"a", "b", "/"}, r.IntN(8))
		if got, want := globMatch(pat, []byte(s)), reference(pat, []byte(s)); got != want {
			t.Fatalf("globMatch(%q, %q) = %v, want %v", pat, s, got, want)
		}
	}
}
