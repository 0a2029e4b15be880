package headers

import (
	"testing"

	"github.com/privateconnect/pc/sdk/plugin/plugintest"
)

func TestHandle(t *testing.T) {
	res := plugintest.Run(Handle, `{"setRequest":{"X-From":"share"},"removeRequest":["Cookie"],"setResponse":{"X-Frame-Options":"DENY"}}`, plugintest.Request{})
	if res.Action != plugintest.Allow {
		t.Fatal(res)
	}
	if v, _ := res.RequestHeader("X-From"); v != "share" {
		t.Fatal(res)
	}
	if v, _ := res.ResponseHeader("X-Frame-Options"); v != "DENY" {
		t.Fatal(res)
	}
	if len(res.RemoveRequestHeaders) != 1 || res.RemoveRequestHeaders[0] != "Cookie" {
		t.Fatal(res)
	}
	for _, bad := range []string{`{"setRequest":{"Host":"x"}}`, `{"setResponse":{"X":"a\nb"}}`, `{"removeRequest":["bad name"]}`, `{"other":1}`} {
		if plugintest.Validate(Validate, bad) == nil {
			t.Errorf("accepted %s", bad)
		}
	}
}
