// Command signed-link is the built-in plugin module signed-link; its policy is package
// [github.com/privateconnect/pc/plugins/builtin/internal/signedlink] (documented there), which the
// edge also runs as a step of the bundle module (plugins/builtin/bundle).
package main

import (
	"github.com/privateconnect/pc/plugins/builtin/internal/signedlink"
	"github.com/privateconnect/pc/sdk/plugin"
)

func init() {
	plugin.Handle(signedlink.Handle)
	plugin.ValidateConfig(signedlink.Validate)
}

func main() {}
