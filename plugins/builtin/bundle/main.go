// Command bundle is every built-in policy in one module: the edge loads it instead of the
// seven built-in modules and runs a share's run of consecutive built-in attachments as one call
// of it (sdk/plugin.HandleSteps). The policies are those of the standalone built-in modules
// (plugins/builtin/internal/*), so a built-in decides the same whichever module runs it.
package main

import (
	"github.com/privateconnect/pc/plugins/builtin/internal/allowpaths"
	"github.com/privateconnect/pc/plugins/builtin/internal/headers"
	"github.com/privateconnect/pc/plugins/builtin/internal/ipallow"
	"github.com/privateconnect/pc/plugins/builtin/internal/jwt"
	"github.com/privateconnect/pc/plugins/builtin/internal/password"
	"github.com/privateconnect/pc/plugins/builtin/internal/ratelimit"
	"github.com/privateconnect/pc/plugins/builtin/internal/signedlink"
	"github.com/privateconnect/pc/sdk/plugin"
)

func init() {
	plugin.HandleSteps(map[string]plugin.Handler{
		"allow-paths": allowpaths.Handle,
		"headers":     headers.Handle,
		"ip-allow":    ipallow.Handle,
		"jwt":         jwt.Handle,
		"password":    password.Handle,
		"rate-limit":  ratelimit.Handle,
		"signed-link": signedlink.Handle,
	}, map[string]plugin.ConfigValidator{
		"allow-paths": allowpaths.Validate,
		"headers":     headers.Validate,
		"ip-allow":    ipallow.Validate,
		"jwt":         jwt.Validate,
		"password":    password.Validate,
		"rate-limit":  ratelimit.Validate,
		"signed-link": signedlink.Validate,
	})
}

func main() {}
