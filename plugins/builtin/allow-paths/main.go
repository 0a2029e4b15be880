// Command allow-paths is the built-in plugin module allow-paths; its policy is package
// [github.com/privateconnect/pc/plugins/builtin/internal/allowpaths] (documented there), which the
// edge also runs as a step of the bundle module (plugins/builtin/bundle).
package main

import (
	"github.com/privateconnect/pc/plugins/builtin/internal/allowpaths"
	"github.com/privateconnect/pc/sdk/plugin"
)

func init() {
	plugin.Handle(allowpaths.Handle)
	plugin.ValidateConfig(allowpaths.Validate)
}

func main() {}
