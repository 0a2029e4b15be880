package plugin_test

import (
	"errors"
	"os/exec"
	"strings"
	"testing"

	"github.com/privateconnect/pc/plugins/abi"
	"github.com/privateconnect/pc/sdk/plugin"
	"github.com/privateconnect/pc/sdk/plugin/plugintest"
)

func TestABIVersion(t *testing.T) {
	if plugin.ABIVersion != abi.Version {
		t.Fatalf("SDK implements ABI %d, host %d", plugin.ABIVersion, abi.Version)
	}
}

// The SDK is what outsiders import: the standard library only.
func TestStdlibOnly(t *testing.T) {
	for _, goos := range []string{"", "wasip1"} {
		cmd := exec.Command("go", "list", "-deps", "-f", "{{if not .Standard}}{{.ImportPath}}{{end}}", "./...")
		if goos != "" {
			cmd.Env = append(cmd.Environ(), "GOOS=wasip1", "GOARCH=wasm")
		}
		out, err := cmd.Output()
		if err != nil {
			t.Skipf("go list: %v", err)
		}
		for _, p := range strings.Fields(string(out)) {
			if !strings.HasPrefix(p, "github.com/privateconnect/pc/sdk/plugin") {
				t.Errorf("GOOS=%s: sdk/plugin depends on %s", goos, p)
			}
		}
	}
}

type cfg struct {
	Name string `json:"name"`
}

func TestDispatch(t *testing.T) {
	handler := func(r *plugin.Request) plugin.Result {
		c, err := plugin.ParseConfig(r, plugin.DecodeJSON[*cfg])
		if err != nil {
			return plugin.Error(err)
		}
		switch r.Path() {
		case "/deny":
			return plugin.Deny(403, "no")
		case "/redirect":
			return plugin.Redirect("/login")
		case "/panic":
			panic("boom")
		case "/continue":
			return plugin.Respond(100, nil)
		case "/bad-header":
			r.SetRequestHeader("Bad Name", "x")
			return plugin.Allow()
		}
		r.SetRequestHeader("X-Name", c.Name)
		return plugin.Allow().WithHeader("X-Seen", "1")
	}
	res := plugintest.Run(handler, `{"name":"n"}`, plugintest.Request{Path: "/"})
	if res.Action != plugintest.Allow {
		t.Fatal(res)
	}
	if v, _ := res.RequestHeader("X-Name"); v != "n" {
		t.Fatal(res)
	}
	if v, _ := res.ResponseHeader("X-Seen"); v != "1" {
		t.Fatal(res)
	}
	if res := plugintest.Run(handler, `{"name":"n"}`, plugintest.Request{Path: "/deny"}); res.Status != 403 || res.Body != "no" {
		t.Fatal(res)
	}
	if res := plugintest.Run(handler, `{"name":"n"}`, plugintest.Request{Path: "/redirect"}); res.Status != 302 {
		t.Fatal(res)
	}
	if res := plugintest.Run(handler, `{"name":"n"}`, plugintest.Request{Path: "/panic"}); res.Action != plugintest.Error || !strings.Contains(res.Err, "boom") {
		t.Fatal(res)
	}
	if res := plugintest.Run(handler, `{"name":"n"}`, plugintest.Request{Path: "/bad-header"}); res.Action != plugintest.Error {
		t.Fatal(res)
	}
	// As on the host: RESPOND must answer with a final status, a 1xx is an ERROR (500).
	if res := plugintest.Run(handler, `{"name":"n"}`, plugintest.Request{Path: "/continue"}); res.Action != plugintest.Error || res.Status != 500 ||
		!strings.Contains(res.Err, "informational") {
		t.Fatal(res)
	}
	if res := plugintest.Run(handler, `{"nope":1}`, plugintest.Request{Path: "/"}); res.Action != plugintest.Error || !strings.Contains(res.Err, "unknown field") {
		t.Fatal(res)
	}
	err := plugintest.Validate(func([]byte) error { return errors.New("bad") }, `{}`)
	if err == nil || err.Error() != "bad" {
		t.Fatal(err)
	}
}
