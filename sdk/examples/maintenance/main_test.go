package main

import (
	"testing"
	"time"

	"github.com/privateconnect/pc/sdk/plugin/plugintest"
)

func TestMaintenance(t *testing.T) {
	start := time.Date(2025, 6, 1, 22, 0, 0, 0, time.UTC)
	cfg := map[string]any{
		"windows":      []map[string]any{{"start": start, "end": start.Add(4 * time.Hour)}},
		"bypassHeader": "X-Maintenance-Bypass", "bypassToken": "let-me-in",
	}
	h := plugintest.New()
	at := func(ts time.Time, headers map[string]string) plugintest.Result {
		h.Now = func() time.Time { return ts }
		return h.Run(handle, cfg, plugintest.Request{Method: "GET", Path: "/", Headers: headers})
	}
	if res := at(start.Add(-time.Minute), nil); res.Action != plugintest.Allow {
		t.Fatalf("before the window: %+v", res)
	}
	res := at(start.Add(time.Hour), nil)
	if res.Action != plugintest.Respond || res.Status != 503 {
		t.Fatalf("during the window: %+v", res)
	}
	if v, _ := res.ResponseHeader("Retry-After"); v != "10801" {
		t.Fatalf("Retry-After %q", v)
	}
	res = at(start.Add(time.Hour), map[string]string{"x-maintenance-bypass": "let-me-in"})
	if res.Action != plugintest.Allow || len(res.RemoveRequestHeaders) != 1 {
		t.Fatalf("bypass: %+v", res)
	}
	if res := at(start.Add(time.Hour), map[string]string{"X-Maintenance-Bypass": "nope"}); res.Status != 503 {
		t.Fatalf("wrong token: %+v", res)
	}
	if res := at(start.Add(4*time.Hour), nil); res.Action != plugintest.Allow {
		t.Fatalf("after the window: %+v", res)
	}
	if plugintest.Validate(nil, `{"windows":[{"start":"2025-01-02T00:00:00Z","end":"2025-01-01T00:00:00Z"}]}`) == nil {
		t.Fatal("inverted window accepted")
	}
}
