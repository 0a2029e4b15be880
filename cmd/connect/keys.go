package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/privateconnect/pc/sdk/client"
)

var keyCols = []col[client.APIKey]{
	{"ID", func(x client.APIKey) string { return x.ID }},
	{"NAME", func(x client.APIKey) string { return x.Name }},
	{"PREFIX", func(x client.APIKey) string { return x.KeyPrefix }},
	{"SCOPES", func(x client.APIKey) string { return strings.Join(x.Scopes, ",") }},
	{"ALLOWED IPS", func(x client.APIKey) string { return orDash(strings.Join(x.AllowedIPRanges, ",")) }},
	{"LAST USED", func(x client.APIKey) string { return fmtTimePtr(x.LastUsedAt) }},
	{"EXPIRES", func(x client.APIKey) string { return fmtTimePtr(x.ExpiresAt) }},
}

func (a *app) keysCmd() *cobra.Command {
	ls := listCmd(a, "ls", "List active API keys (admin)", "  connect keys ls", 0,
		func(ctx context.Context, c *client.Client, _ []string, lo client.ListOptions) ([]client.APIKey, string, error) {
			return c.ListAPIKeys(ctx, lo)
		}, keyCols)
	get := getCmd(a, "get KEY_ID", "Show an API key (admin)", "  connect keys get 6f1c…", 1,
		func(ctx context.Context, c *client.Client, args []string) (*client.APIKey, error) {
			return c.GetAPIKey(ctx, args[0])
		})

	var (
		req     client.CreateAPIKeyRequest
		expires string
	)
	create := getCmd(a, "create NAME", "Create an API key; the key is printed only once (admin)",
		`  connect keys create ci --scopes read,write --expires 720h
  export PC_API_KEY=$(connect keys create deploy --json | jq -r .key)`, 1,
		func(ctx context.Context, c *client.Client, args []string) (*client.APIKey, error) {
			r := req
			r.Name = args[0]
			if expires != "" {
				t, err := parseExpiry(expires, a.now())
				if err != nil {
					return nil, err
				}
				r.ExpiresAt = &t
			}
			k, err := c.CreateAPIKey(ctx, r)
			if err == nil && !a.jsonOut {
				fmt.Fprintln(a.stderr, "Store the key now: it is shown only once.")
			}
			return k, err
		})
	create.Flags().StringSliceVar(&req.Scopes, "scopes", nil, "read, write and/or admin (server default write)")
	create.Flags().StringSliceVar(&req.AllowedIPRanges, "allow-ip", nil, "client networks allowed to use the key (CIDR), repeatable")
	create.Flags().StringVar(&expires, "expires", "", "expiry: a duration (720h) or an RFC 3339 time (default never)")
	checkNotEmpty(create, "expires")

	rm := actionCmd(a, "rm KEY_ID", "Revoke an API key at once (admin)", "  connect keys rm 6f1c…", 1,
		func(ctx context.Context, c *client.Client, args []string) (string, error) {
			if err := c.DeleteAPIKey(ctx, args[0]); err != nil {
				return "", err
			}
			return fmt.Sprintf("Revoked key %s.", args[0]), nil
		})

	var none bool
	ipr := getCmd(a, "ip-restrictions KEY_ID [CIDR...]", "Set the networks an API key may be used from (admin)",
		"  connect keys ip-restrictions 6f1c… 10.0.0.0/8 2001:db8::/32\n  connect keys ip-restrictions 6f1c… --none", -1,
		func(ctx context.Context, c *client.Client, args []string) (*client.APIKey, error) {
			if len(args) == 1 && !none {
				return nil, usageErrorf("give CIDRs, or --none to remove every restriction")
			}
			if len(args) > 1 && none {
				return nil, usageErrorf("--none takes no CIDR")
			}
			return c.SetAPIKeyIPRestrictions(ctx, args[0], args[1:])
		})
	ipr.Flags().BoolVar(&none, "none", false, "remove every IP restriction")

	return group("keys", "Manage API keys (admin)", ls, get, create, rm, ipr)
}

// parseExpiry accepts a duration from now or an RFC 3339 time.
func parseExpiry(s string, now time.Time) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	if d, err := time.ParseDuration(s); err == nil && d > 0 {
		return now.Add(d).UTC().Truncate(time.Second), nil
	}
	return time.Time{}, usageErrorf("--expires %q: want a duration such as 720h or an RFC 3339 time", s)
}
