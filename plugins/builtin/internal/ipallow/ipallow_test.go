package ipallow

import (
	"testing"

	"github.com/privateconnect/pc/sdk/plugin/plugintest"
)

func TestHandle(t *testing.T) {
	cfg := `{"allow":["10.0.0.0/8","2001:db8::/32","192.0.2.7","::ffff:198.51.100.0/120"],"deny":["10.6.0.0/16"]}`
	for ip, want := range map[string]bool{
		"10.1.2.3":        true,
		"10.6.1.1":        false,
		"192.0.2.7":       true,
		"192.0.2.8":       false,
		"2001:db8::1":     true,
		"2001:db9::1":     false,
		"::ffff:10.1.2.3": true,
		"198.51.100.9":    true,
		"":                false,
		"garbage":         false,
		"fe80::1%eth0":    false,
	} {
		res := plugintest.Run(Handle, cfg, plugintest.Request{ClientIP: ip})
		if (res.Action == plugintest.Allow) != want {
			t.Errorf("%q: %+v", ip, res)
		}
	}
	res := plugintest.Run(Handle, `{"deny":["0.0.0.0/0"]}`, plugintest.Request{ClientIP: "2001:db8::1"})
	if res.Action != plugintest.Allow {
		t.Errorf("deny-only v4 blocked v6: %+v", res)
	}
	if plugintest.Validate(Validate, `{"allow":["10.0.0.0/33"]}`) == nil {
		t.Error("invalid CIDR accepted")
	}
}
