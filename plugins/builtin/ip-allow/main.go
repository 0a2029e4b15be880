// Command ip-allow is the built-in plugin module ip-allow; its policy is package
// [github.com/privateconnect/pc/plugins/builtin/internal/ipallow] (documented there), which the
// edge also runs as a step of the bundle module (plugins/builtin/bundle).
package main

import (
	"github.com/privateconnect/pc/plugins/builtin/internal/ipallow"
	"github.com/privateconnect/pc/sdk/plugin"
)

func init() {
	plugin.Handle(ipallow.Handle)
	plugin.ValidateConfig(ipallow.Validate)
}

func main() {}
