package signedlink

import (
	"strings"
	"testing"
	"time"

	"github.com/privateconnect/pc/plugins"
	"github.com/privateconnect/pc/sdk/plugin/plugintest"
)

func TestHandle(t *testing.T) {
	secret := "0123456789abcdef-secret"
	cfg := map[string]string{"secret": secret}
	link, err := plugins.SignLink(secret, "/files/a.pdf?v=2", time.Now().Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	path, query, _ := strings.Cut(link, "?")
	run := func(path, query string) plugintest.Result {
		return plugintest.Run(Handle, cfg, plugintest.Request{Path: path, Query: query})
	}
	if res := run(path, query); res.Action != plugintest.Allow {
		t.Fatalf("valid link: %+v", res)
	}
	if res := run("/files/b.pdf", query); res.Status != 403 {
		t.Fatalf("other path: %+v", res)
	}
	if res := run(path, strings.Replace(query, "exp=", "exp=1", 1)); res.Status != 403 {
		t.Fatalf("changed expiry: %+v", res)
	}
	old, _ := plugins.SignLink(secret, "/files/a.pdf", time.Now().Add(-time.Minute))
	p2, q2, _ := strings.Cut(old, "?")
	if res := run(p2, q2); res.Status != 403 {
		t.Fatalf("expired: %+v", res)
	}
	if res := run(path, ""); res.Status != 403 {
		t.Fatalf("unsigned: %+v", res)
	}
	if plugintest.Validate(Validate, `{"secret":"short"}`) == nil {
		t.Fatal("short secret accepted")
	}
}
