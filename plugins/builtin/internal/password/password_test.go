package password

import (
	"encoding/base64"
	"strings"
	"testing"

	"github.com/privateconnect/pc/plugins"
	"github.com/privateconnect/pc/sdk/plugin/plugintest"
)

func TestHandle(t *testing.T) {
	hash := plugins.HashSharePassword("correct horse")
	cfg := map[string]any{"passwordHash": hash}
	h := plugintest.New()
	req := func(headers map[string]string) plugintest.Result {
		return h.Run(Handle, cfg, plugintest.Request{ShareID: "shr1", ClientIP: "192.0.2.1", Headers: headers})
	}
	basic := func(pw string) string { return "Basic " + base64.StdEncoding.EncodeToString([]byte("u:"+pw)) }

	res := req(nil)
	if res.Status != 401 || !strings.HasPrefix(must(res.ResponseHeader("WWW-Authenticate")), "Basic realm=") {
		t.Fatalf("no credentials: %+v", res)
	}
	res = req(map[string]string{"Accept": "text/html"})
	if res.Status != 401 || !strings.Contains(res.Body, "<form") {
		t.Fatalf("browser: %+v", res)
	}
	res = req(map[string]string{"Authorization": basic("correct horse")})
	if res.Action != plugintest.Allow || len(res.RemoveRequestHeaders) != 1 {
		t.Fatalf("basic: %+v", res)
	}
	if res = req(map[string]string{"Authorization": basic("wrong")}); res.Status != 401 || !strings.HasPrefix(must(res.ResponseHeader("WWW-Authenticate")), "Basic realm=") {
		t.Fatalf("wrong basic: %+v", res)
	}
	// Login through the form's header, then the cookie.
	res = req(map[string]string{"X-Share-Password": base64.StdEncoding.EncodeToString([]byte("correct horse"))})
	if res.Status != 204 {
		t.Fatalf("login: %+v", res)
	}
	setCookie := must(res.ResponseHeader("Set-Cookie"))
	if !strings.Contains(setCookie, "HttpOnly") || !strings.HasPrefix(setCookie, "pc_s_shr1=") {
		t.Fatalf("cookie %q", setCookie)
	}
	cookie := strings.SplitN(setCookie, ";", 2)[0]
	res = req(map[string]string{"Cookie": "a=1; " + cookie + "; b=2"})
	if res.Action != plugintest.Allow {
		t.Fatalf("cookie: %+v", res)
	}
	if v, _ := res.RequestHeader("Cookie"); v != "a=1; b=2" {
		t.Fatalf("forwarded cookie %q", v)
	}
	tampered := cookie[:len(cookie)-1] + "0"
	if tampered == cookie {
		tampered = cookie[:len(cookie)-1] + "1"
	}
	if res = req(map[string]string{"Cookie": tampered}); res.Status != 401 {
		t.Fatalf("tampered cookie: %+v", res)
	}
	// Guessing is limited (10 unverified attempts a minute per client).
	limited := false
	for range 12 {
		if req(map[string]string{"Authorization": basic("guess")}).Status == 429 {
			limited = true
		}
	}
	if !limited {
		t.Fatal("no limit on guesses")
	}
	// A throttled guesser learns nothing: the right password, though verified
	// before for another client, is limited like a wrong one.
	other := func(pw string) plugintest.Result {
		return h.Run(Handle, cfg, plugintest.Request{ShareID: "shr1", ClientIP: "198.51.100.7", Headers: map[string]string{"Authorization": basic(pw)}})
	}
	for range 10 {
		other("guess")
	}
	if res := other("correct horse"); res.Status != 429 {
		t.Fatalf("right password while throttled: %+v (must be 429 as a wrong one)", res)
	}
	// The client that proved it keeps getting through without the limit.
	for range 20 {
		if res := req(map[string]string{"Authorization": basic("correct horse")}); res.Action != plugintest.Allow {
			t.Fatalf("verified client: %+v", res)
		}
	}
	if plugintest.Validate(Validate, `{"passwordHash":"plain"}`) == nil {
		t.Fatal("bad hash accepted")
	}
	if !plugins.VerifySharePassword(hash, "correct horse") || plugins.VerifySharePassword(hash, "x") {
		t.Fatal("VerifySharePassword")
	}
}

func must(v string, _ bool) string { return v }
