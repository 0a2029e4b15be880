package pathguard

import (
	"strings"
	"testing"
)

func TestExploit(t *testing.T) {
	for _, tc := range []struct {
		path string
		want bool
	}{
		{"/", false},
		{"/api/v1/items", false},
		{"/a/..;/b", true},
		{"/a/..;x=1/b", true},
		{"/a/.;/b", true},
		{"/a/..;", true},
		{"..;/a", true},
		{"/..;", true},
		{"/a/x\x00y", true},
		{"\x00", true},
		{"/a;v=1/b;w=2/..;/c", true},
		{"/a;x/..;y", true},
		{"/a/...;/b", false},
		{"/a/x;..", false},
		{"/a/x..;/b", false},
		{"/a/..x;/b", false},
		{"/a;b", false},
		{"/a;b/c;d", false},
		{"/a;/b;/c", false},
		{"/a/;/b", false},
		{"/a/%2e%2e;/b", false}, // not decoded: a service decoding once reads "%2e%2e;" as a name
		{"/a/../b", false},      // plain dot segments are fasthttp's normalisation's to resolve
		{"/docs/secret.json;.html", false},
	} {
		if got := Exploit([]byte(tc.path)); got != tc.want {
			t.Errorf("Exploit(%q) = %v, want %v", tc.path, got, tc.want)
		}
	}
}

func TestExploitAllocs(t *testing.T) {
	p := []byte("/" + strings.Repeat("a;b/", 100) + "..;/c")
	if n := testing.AllocsPerRun(100, func() {
		if !Exploit(p) {
			t.Fatal("not found")
		}
	}); n != 0 {
		t.Fatalf("%v allocations", n)
	}
}

func FuzzExploit(f *testing.F) {
	for _, s := range []string{"/a/..;/b", "/a;b/c", "/.;", "/x\x00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		// The reference: any segment whose name before ';' is "." or "..".
		want := strings.IndexByte(p, 0) >= 0
		for _, seg := range strings.Split(p, "/") {
			name, _, params := strings.Cut(seg, ";")
			want = want || (params && (name == "." || name == ".."))
		}
		if got := Exploit([]byte(p)); got != want {
			t.Fatalf("Exploit(%q) = %v, want %v", p, got, want)
		}
	})
}
