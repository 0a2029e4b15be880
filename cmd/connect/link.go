package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/privateconnect/pc/sdk/client"
)

// policyFlags are the share policy flags of `link` and `shares update`.
type policyFlags struct {
	name, description, expires, password string
	methods, paths, allowIPs, plugins    []string
	rateLimit, maxUses                   int
}

func addPolicyFlags(cmd *cobra.Command, pf *policyFlags) {
	f := cmd.Flags()
	f.StringVar(&pf.name, "name", "", "share name")
	f.StringVar(&pf.description, "description", "", "share description")
	f.StringVar(&pf.expires, "expires", "", "lifetime: 1h, 24h, 7d, 30d or never (server default 24h)")
	f.StringSliceVar(&pf.methods, "methods", nil, "allowed HTTP methods, e.g. GET,POST")
	f.StringSliceVar(&pf.paths, "paths", nil, "allowed paths: prefixes or globs, e.g. /api/*")
	f.StringVar(&pf.password, "password", "", "require this password (8-128 characters)")
	f.StringSliceVar(&pf.allowIPs, "allow-ip", nil, "allowed client networks (CIDR), repeatable")
	f.IntVar(&pf.rateLimit, "rate-limit", 0, "requests per minute per visitor IP, 1-100000 (default: no limit)")
	f.IntVar(&pf.maxUses, "max-uses", 0, "number of uses before the link stops working, at least 1 (default: no limit)")
	f.StringArrayVar(&pf.plugins, "plugin", nil, "extra Wasm policy: PLUGIN or PLUGIN:config.json (an id, builtin:<name>, a name or name@version), repeatable, run in order")
}

func validExpires(s string) error {
	switch s {
	case "", "1h", "24h", "7d", "30d", "never":
		return nil
	}
	return usageErrorf("--expires must be 1h, 24h, 7d, 30d or never, not %q", s)
}

// check refuses out-of-range policy flags before anything is sent. A flag
// given explicitly is checked whatever its value: 0 (or an empty --expires)
// would otherwise read as "not set" and make an unlimited link.
func (pf *policyFlags) check(cmd *cobra.Command) error {
	if cmd.Flags().Changed("expires") && pf.expires == "" {
		return usageErrorf("--expires must be 1h, 24h, 7d, 30d or never, not empty")
	}
	if err := validExpires(pf.expires); err != nil {
		return err
	}
	if err := intInRange(cmd, "rate-limit", pf.rateLimit, 1, 100000, "requests per minute"); err != nil {
		return err
	}
	if cmd.Flags().Changed("max-uses") || pf.maxUses != 0 {
		if pf.maxUses < 1 {
			return usageErrorf("--max-uses must be at least 1, not %d", pf.maxUses)
		}
	}
	return notEmpty(cmd, "password", pf.password)
}

// linkable refuses a share link to a service that does not speak HTTP: the
// edge would send HTTP requests into it, and every visit would fail.
func linkable(svc *client.Service) error {
	switch svc.Protocol {
	case "", "auto", "http", "https":
		return nil
	}
	hint := fmt.Sprintf("reach it with its own client through 'connect reach %s'", svc.Name)
	if svc.TunnelPort > 0 {
		hint += fmt.Sprintf(", or on port %d of every edge (tunnelPort)", svc.TunnelPort)
	}
	return fmt.Errorf("service %s speaks %s, not HTTP: a share link cannot reach it; %s", svc.Name, svc.Protocol, hint)
}

func upperAll(in []string) []string {
	out := make([]string, len(in))
	for i, s := range in {
		out[i] = strings.ToUpper(strings.TrimSpace(s))
	}
	return out
}

// parsePlugins turns PLUGIN[:config.json] flags into plugin references
// (PLUGIN: an id, builtin:<name>, a name or name@version; names are resolved
// with resolvePluginRefs).
func parsePlugins(specs []string) ([]client.SharePlugin, error) {
	var out []client.SharePlugin
	for _, spec := range specs {
		// A built-in's id has a colon of its own.
		rest, builtin := strings.CutPrefix(spec, "builtin:")
		id, file, hasFile := strings.Cut(rest, ":")
		if id == "" {
			return nil, usageErrorf("--plugin %q: want PLUGIN[:config.json]", spec)
		}
		if builtin {
			id = "builtin:" + id
		}
		sp := client.SharePlugin{PluginID: id}
		if hasFile {
			b, err := os.ReadFile(file)
			if err != nil {
				return nil, fmt.Errorf("--plugin %s: %w", id, err)
			}
			if !json.Valid(b) {
				return nil, fmt.Errorf("--plugin %s: %s is not valid JSON", id, file)
			}
			sp.Config = json.RawMessage(b)
		}
		out = append(out, sp)
	}
	return out, nil
}

func (a *app) linkCmd() *cobra.Command {
	var pf policyFlags
	cmd := leaf("link SERVICE", "Create a share link to a service and print its URL",
		`  connect link web --expires 1h
  curl "$(connect link api --methods GET --paths '/v1/*' --rate-limit 60)/v1/health"
  connect link web --password 's3cret-pass' --allow-ip 203.0.113.0/24 --plugin geo:geo.json`,
		1, 1, func(cmd *cobra.Command, args []string) error {
			if err := pf.check(cmd); err != nil {
				return err
			}
			plugins, err := parsePlugins(pf.plugins)
			if err != nil {
				return err
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			ctx := a.ctx(cmd)
			svc, err := resolveService(ctx, c, args[0])
			if err != nil {
				return err
			}
			if err := linkable(svc); err != nil {
				return err
			}
			if err := resolvePluginRefs(ctx, c, plugins); err != nil {
				return err
			}
			name := pf.name
			if name == "" {
				name = svc.Name + " " + a.now().UTC().Format("2006-01-02 15:04:05")
			}
			sh, err := c.CreateShare(ctx, svc.ID, client.CreateShareRequest{
				Name: name, Description: pf.description, ExpiresIn: pf.expires,
				AllowedPaths: pf.paths, AllowedMethods: upperAll(pf.methods), RateLimitPerMin: pf.rateLimit,
				Password: pf.password, AllowedIPs: pf.allowIPs, MaxUses: pf.maxUses, Plugins: plugins,
			})
			if err != nil {
				return err
			}
			if a.jsonOut {
				return a.printJSON(sh)
			}
			expires := "never"
			if sh.ExpiresAt != nil {
				expires = fmtTime(*sh.ExpiresAt)
			}
			fmt.Fprintf(a.stderr, "Share %q of %s (id %s), expires %s. The link is shown only once.\n", sh.Name, svc.Name, sh.ID, expires)
			_, err = fmt.Fprintln(a.stdout, sh.ShareURL)
			return err
		})
	addPolicyFlags(cmd, &pf)
	return cmd
}

// sharePage is ListShares bound to one service, for listCmd.
func sharePage(ctx context.Context, c *client.Client, args []string, lo client.ListOptions) ([]client.Share, string, error) {
	svc, err := resolveService(ctx, c, args[0])
	if err != nil {
		return nil, "", err
	}
	return c.ListShares(ctx, svc.ID, lo)
}
