// Command jwt is the built-in plugin module jwt; its policy is package
// [github.com/privateconnect/pc/plugins/builtin/internal/jwt] (documented there), which the
// edge also runs as a step of the bundle module (plugins/builtin/bundle).
package main

import (
	"github.com/privateconnect/pc/plugins/builtin/internal/jwt"
	"github.com/privateconnect/pc/sdk/plugin"
)

func init() {
	plugin.Handle(jwt.Handle)
	plugin.ValidateConfig(jwt.Validate)
}

func main() {}
