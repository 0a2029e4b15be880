// Command password is the built-in plugin module password; its policy is package
// [github.com/privateconnect/pc/plugins/builtin/internal/password] (documented there), which the
// edge also runs as a step of the bundle module (plugins/builtin/bundle).
package main

import (
	"github.com/privateconnect/pc/plugins/builtin/internal/password"
	"github.com/privateconnect/pc/sdk/plugin"
)

func init() {
	plugin.Handle(password.Handle)
	plugin.ValidateConfig(password.Validate)
}

func main() {}
