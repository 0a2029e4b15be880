// Command rate-limit is the built-in plugin module rate-limit; its policy is package
// [github.com/privateconnect/pc/plugins/builtin/internal/ratelimit] (documented there), which the
// edge also runs as a step of the bundle module (plugins/builtin/bundle).
package main

import (
	"github.com/privateconnect/pc/plugins/builtin/internal/ratelimit"
	"github.com/privateconnect/pc/sdk/plugin"
)

func init() {
	plugin.Handle(ratelimit.Handle)
	plugin.ValidateConfig(ratelimit.Validate)
}

func main() {}
