package ratelimit

import (
	"testing"

	"github.com/privateconnect/pc/sdk/plugin/plugintest"
)

func TestHandle(t *testing.T) {
	h := plugintest.New()
	cfg := `{"limit":2,"windowSeconds":60,"key":"ip"}`
	req := plugintest.Request{ShareID: "s1", ClientIP: "192.0.2.1"}
	for i, want := range []plugintest.Action{plugintest.Allow, plugintest.Allow, plugintest.Respond} {
		res := h.Run(Handle, cfg, req)
		if res.Action != want {
			t.Fatalf("call %d: %+v", i, res)
		}
		if want == plugintest.Respond {
			if res.Status != 429 {
				t.Fatalf("status %d", res.Status)
			}
			if v, ok := res.ResponseHeader("Retry-After"); !ok || v == "0" {
				t.Fatalf("Retry-After %q", v)
			}
		}
	}
	// Another IP, another share: own counters.
	if res := h.Run(Handle, cfg, plugintest.Request{ShareID: "s1", ClientIP: "192.0.2.2"}); res.Action != plugintest.Allow {
		t.Fatal(res)
	}
	if res := h.Run(Handle, cfg, plugintest.Request{ShareID: "s2", ClientIP: "192.0.2.1"}); res.Action != plugintest.Allow {
		t.Fatal(res)
	}
	if plugintest.Validate(Validate, `{"limit":0}`) == nil || plugintest.Validate(Validate, `{"limit":1,"key":"cookie"}`) == nil {
		t.Fatal("bad config accepted")
	}
}
