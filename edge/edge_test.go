package edge

import (
	"crypto/tls"
	"strings"
	"testing"
)

func TestPlaintextTunnelListenerOffLoopbackNeedsAnOptIn(t *testing.T) {
	for _, tc := range []struct {
		addr     string
		tls      bool
		insecure bool
		ok       bool
	}{
		{"127.0.0.1:7070", false, false, true},
		{"[::1]:7070", false, false, true},
		{"localhost:7070", false, false, true},
		{":7070", false, false, false},
		{"0.0.0.0:7070", false, false, false},
		{"10.0.0.5:7070", false, false, false},
		{"0.0.0.0:7070", false, true, true},
		{"0.0.0.0:7070", true, false, true},
	} {
		cfg := Config{Token: "edge-token", TunnelAddr: tc.addr, InsecureTunnel: tc.insecure}
		if tc.tls {
			cfg.TunnelTLS = &tls.Config{MinVersion: tls.VersionTLS12}
		}
		cfg.setDefaults()
		_, err := cfg.validate() // what New checks first
		if tc.ok && err != nil {
			t.Errorf("%s tls=%v insecure=%v: %v", tc.addr, tc.tls, tc.insecure, err)
		}
		if !tc.ok && (err == nil || !strings.Contains(err.Error(), "--insecure-tunnel")) {
			t.Errorf("%s: err = %v, want the plain-TCP refusal", tc.addr, err)
		}
	}
}
