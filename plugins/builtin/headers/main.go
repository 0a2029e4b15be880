// Command headers is the built-in plugin module headers; its policy is package
// [github.com/privateconnect/pc/plugins/builtin/internal/headers] (documented there), which the
// edge also runs as a step of the bundle module (plugins/builtin/bundle).
package main

import (
	"github.com/privateconnect/pc/plugins/builtin/internal/headers"
	"github.com/privateconnect/pc/sdk/plugin"
)

func init() {
	plugin.Handle(headers.Handle)
	plugin.ValidateConfig(headers.Validate)
}

func main() {}
