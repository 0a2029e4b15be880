package plugin_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/privateconnect/pc/sdk/plugin"
	"github.com/privateconnect/pc/sdk/plugin/plugintest"
)

// HandleSteps on the host (plugintest), as a Wasm module would run it: each step sees its own
// config, response headers of earlier steps accumulate, the first step that answers ends the
// call and names itself, a step's panic is that step's ERROR, and validation checks every
// step's config.
func TestHandleSteps(t *testing.T) {
	type tagConfig struct {
		V string `json:"v"`
	}
	parseTag := func(b []byte) (*tagConfig, error) {
		c, err := plugin.DecodeJSON[*tagConfig](b)
		if err == nil && c.V == "" {
			err = errors.New("v is required")
		}
		return c, err
	}
	plugin.HandleSteps(map[string]plugin.Handler{
		"tag": func(r *plugin.Request) plugin.Result {
			c, err := plugin.ParseConfig(r, parseTag)
			if err != nil {
				return plugin.Error(err)
			}
			return plugin.Allow().WithHeader("X-Tag-"+c.V, c.V)
		},
		"deny-admin": func(r *plugin.Request) plugin.Result {
			if strings.HasPrefix(r.Path(), "/admin") {
				return plugin.Deny(403, "no")
			}
			return plugin.Allow()
		},
		"boom": func(*plugin.Request) plugin.Result { panic("boom") },
	}, map[string]plugin.ConfigValidator{
		"tag": func(b []byte) error { _, err := parseTag(b); return err },
	})
	chain := `{"steps":[{"policy":"tag","config":{"v":"a"}},{"policy":"tag","config":{"v":"b"}},{"policy":"deny-admin"}]}`

	res := plugintest.Run(nil, chain, plugintest.Request{Path: "/x"})
	if res.Action != plugintest.Allow {
		t.Fatalf("allowed request: %+v", res)
	}
	if a, _ := res.ResponseHeader("X-Tag-a"); a != "a" {
		t.Errorf("first step's header: %q", a)
	}
	if b, _ := res.ResponseHeader("X-Tag-b"); b != "b" {
		t.Errorf("second step (same policy, its own config): %q", b)
	}

	res = plugintest.Run(nil, chain, plugintest.Request{Path: "/admin"})
	if res.Action != plugintest.Respond || res.Status != 403 || res.Err != plugin.StepTag+"2" {
		t.Fatalf("third step answers and names itself: %+v", res)
	}
	if _, ok := res.ResponseHeader("X-Tag-a"); !ok {
		t.Error("headers of the steps before the answer are kept")
	}

	res = plugintest.Run(nil, `{"steps":[{"policy":"tag","config":{"v":""}}]}`, plugintest.Request{})
	if res.Action != plugintest.Error || res.Err != plugin.StepTag+"0: v is required" {
		t.Errorf("a step's config error: %+v", res)
	}
	res = plugintest.Run(nil, `{"steps":[{"policy":"deny-admin"},{"policy":"boom"}]}`, plugintest.Request{Path: "/x"})
	if res.Action != plugintest.Error || !strings.HasPrefix(res.Err, plugin.StepTag+"1: plugin panic") {
		t.Errorf("a step's panic: %+v", res)
	}

	if err := plugintest.Validate(nil, chain); err != nil {
		t.Errorf("valid chain: %v", err)
	}
	for cfg, want := range map[string]string{
		`{"steps":[{"policy":"deny-admin"},{"policy":"tag","config":{}}]}`: "steps[1] (tag): v is required",
		`{"steps":[{"policy":"nope"}]}`:                                    `unknown policy "nope"`,
		`{"steps":[]}`:                                                     "between 1 and 16 steps",
		`{"steps":[` + strings.Repeat(`{"policy":"deny-admin"},`, plugin.MaxSteps) + `{"policy":"deny-admin"}]}`: "got 17",
	} {
		if err := plugintest.Validate(nil, cfg); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: err = %v, want %q", cfg, err, want)
		}
	}
}
