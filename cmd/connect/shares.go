package main

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/privateconnect/pc/sdk/client"
)

var shareCols = []col[client.Share]{
	{"ID", func(x client.Share) string { return x.ID }},
	{"NAME", func(x client.Share) string { return x.Name }},
	{"TOKEN", func(x client.Share) string { return orDash(x.TokenPreview) + "…" }},
	{"ACTIVE", func(x client.Share) string { return yesNo(x.IsActive) }},
	{"EXPIRES", func(x client.Share) string { return fmtTimePtr(x.ExpiresAt) }},
	{"USES", func(x client.Share) string { return itoa(x.AccessCount) }},
	{"LAST ACCESS", func(x client.Share) string { return fmtTimePtr(x.LastAccessedAt) }},
	{"POLICY", func(x client.Share) string { return policySummary(x) }},
}

// policySummary is a one-line description of a share's policy.
func policySummary(s client.Share) string {
	var parts []string
	if len(s.AllowedMethods) > 0 {
		parts = append(parts, strings.Join(s.AllowedMethods, ","))
	}
	if len(s.AllowedPaths) > 0 {
		parts = append(parts, strings.Join(s.AllowedPaths, ","))
	}
	if len(s.AllowedIPs) > 0 {
		parts = append(parts, "ip:"+strings.Join(s.AllowedIPs, ","))
	}
	if s.RequiresPassword {
		parts = append(parts, "password")
	}
	if s.RateLimitPerMin != nil && *s.RateLimitPerMin > 0 {
		parts = append(parts, fmt.Sprintf("%d/min per IP", *s.RateLimitPerMin))
	}
	if s.MaxUses != nil && *s.MaxUses > 0 {
		parts = append(parts, fmt.Sprintf("max %d uses", *s.MaxUses))
	}
	for _, p := range s.Plugins {
		parts = append(parts, "plugin:"+p.PluginID)
	}
	return orDash(strings.Join(parts, " "))
}

var shareLogCols = []col[client.ShareLog]{
	{"TIME", func(x client.ShareLog) string { return fmtTime(x.AccessedAt) }},
	{"CLIENT", func(x client.ShareLog) string { return x.IPAddress }},
	{"METHOD", func(x client.ShareLog) string { return x.Method }},
	{"PATH", func(x client.ShareLog) string { return x.Path }},
	{"STATUS", func(x client.ShareLog) string { return itoa(x.StatusCode) }},
	{"DECISION", func(x client.ShareLog) string {
		if x.DeniedBy != "" {
			return x.Decision + " by " + x.DeniedBy
		}
		return x.Decision
	}},
	{"LATENCY", func(x client.ShareLog) string { return fmt.Sprintf("%.1fms", x.LatencyMs) }},
	{"BYTES", func(x client.ShareLog) string { return humanBytes(x.BytesOut) }},
	{"EDGE", func(x client.ShareLog) string { return x.EdgeID }},
}

func (a *app) sharesCmd() *cobra.Command {
	ls := listCmd(a, "ls SERVICE", "List the shares of a service (by name or id)", "  connect shares ls web", 1, sharePage, shareCols)
	get := getCmd(a, "get SHARE_ID", "Show a share", "  connect shares get 6f1c…", 1,
		func(ctx context.Context, c *client.Client, args []string) (*client.Share, error) {
			return c.GetShare(ctx, args[0])
		})
	revoke := actionCmd(a, "revoke SHARE_ID", "Revoke a share: its link stops working on every edge", "  connect shares revoke 6f1c…", 1,
		func(ctx context.Context, c *client.Client, args []string) (string, error) {
			if err := c.RevokeShare(ctx, args[0]); err != nil {
				return "", err
			}
			return fmt.Sprintf("Revoked share %s.", args[0]), nil
		})
	stats := getCmd(a, "stats SHARE_ID", "Show a share's counters over the last 24 hours", "  connect shares stats 6f1c…", 1,
		func(ctx context.Context, c *client.Client, args []string) (*client.ShareStats, error) {
			return c.ShareStats(ctx, args[0])
		})
	info := leaf("info TOKEN", "Show the public description of a share link (no API key needed)",
		"  connect shares info Zm9vYmFy…", 1, 1, func(cmd *cobra.Command, args []string) error {
			token := args[0]
			if i := strings.LastIndex(token, "/shared/"); i >= 0 { // a whole URL
				token = strings.SplitN(token[i+len("/shared/"):], "/", 2)[0]
			}
			v, err := a.publicClient().SharedInfo(a.ctx(cmd), token)
			if err != nil {
				return err
			}
			return a.show(v)
		})
	return group("shares", "Manage share links", ls, get, revoke, a.shareUpdateCmd(), a.shareLogsCmd(), stats, info)
}

func (a *app) shareUpdateCmd() *cobra.Command {
	var (
		pf    policyFlags
		clear []string
		cmd   *cobra.Command
	)
	cmd = getCmd(a, "update SHARE_ID", "Change a share's policy, name or description",
		`  connect shares update 6f1c… --methods GET,HEAD --rate-limit 120
  connect shares update 6f1c… --clear allow-ip,rate-limit`, 1,
		func(ctx context.Context, c *client.Client, args []string) (*client.Share, error) {
			if err := pf.check(cmd); err != nil {
				return nil, err
			}
			set := cmd.Flags().Changed
			// A setting both cleared and given: which one was meant is
			// not for the CLI to guess (the clear used to win silently).
			for _, f := range clear {
				flag := f
				if f == "plugins" {
					flag = "plugin"
				}
				if cmd.Flags().Lookup(flag) != nil && set(flag) {
					return nil, usageErrorf("--clear %s and --%s contradict each other: give one of them", f, flag)
				}
			}
			var req client.UpdateShareRequest
			if set("name") {
				req.Name = &pf.name
			}
			if set("description") {
				req.Description = &pf.description
			}
			if set("expires") {
				req.ExpiresIn = &pf.expires
			}
			if set("password") {
				req.Password = &pf.password
			}
			if set("rate-limit") {
				req.RateLimitPerMin = &pf.rateLimit
			}
			if set("max-uses") {
				req.MaxUses = &pf.maxUses
			}
			if set("methods") {
				m := upperAll(pf.methods)
				req.AllowedMethods = &m
			}
			if set("paths") {
				req.AllowedPaths = &pf.paths
			}
			if set("allow-ip") {
				req.AllowedIPs = &pf.allowIPs
			}
			if set("plugin") {
				pl, err := parsePlugins(pf.plugins)
				if err == nil {
					err = resolvePluginRefs(ctx, c, pl)
				}
				if err != nil {
					return nil, err
				}
				req.Plugins = &pl
			}
			empty := []string{}
			for _, f := range clear {
				switch f {
				case "methods":
					req.AllowedMethods = &empty
				case "paths":
					req.AllowedPaths = &empty
				case "allow-ip":
					req.AllowedIPs = &empty
				case "plugin", "plugins":
					req.Plugins = &[]client.SharePlugin{}
				case "rate-limit":
					req.Null = append(req.Null, "rateLimitPerMin")
				case "max-uses":
					req.Null = append(req.Null, "maxUses")
				case "password":
					req.Null = append(req.Null, "password")
				default:
					return nil, usageErrorf("--clear takes methods, paths, allow-ip, plugins, rate-limit, max-uses or password, not %q", f)
				}
			}
			if b, _ := json.Marshal(req); string(b) == "{}" {
				return nil, usageErrorf("nothing to change: give at least one policy flag")
			}
			return c.UpdateShare(ctx, args[0], req)
		})
	addPolicyFlags(cmd, &pf)
	cmd.Flags().StringSliceVar(&clear, "clear", nil, "policy settings to remove: methods, paths, allow-ip, plugins, rate-limit, max-uses, password (not with the same setting's flag)")
	return cmd
}

func (a *app) shareLogsCmd() *cobra.Command {
	var (
		follow bool
		since  string
	)
	var lf *listFlags
	cmd := leaf("logs SHARE_ID", "Show a share's access logs",
		"  connect shares logs 6f1c… --since 1h\n  connect shares logs 6f1c… --follow", 1, 1,
		func(cmd *cobra.Command, args []string) error {
			var f client.ShareLogFilter
			if since != "" {
				t, err := parseSince(since, a.now())
				if err != nil {
					return err
				}
				f.Since = t
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			if !follow {
				items, next, err := fetch(a, cmd, lf, func(ctx context.Context, lo client.ListOptions) ([]client.ShareLog, string, error) {
					return c.ListShareLogs(ctx, args[0], lo, f)
				})
				if err != nil {
					return err
				}
				return printList(a, items, next, shareLogCols)
			}
			return a.followLogs(cmd.Context(), c, args[0], f)
		})
	lf = addListFlags(cmd)
	cmd.Flags().BoolVarP(&follow, "follow", "f", false, "keep polling for new accesses until Ctrl-C")
	cmd.Flags().StringVar(&since, "since", "", "only accesses after this time (RFC 3339) or this long ago (e.g. 15m)")
	return cmd
}

// followLogs polls a share's logs and prints each new access once, oldest
// first (a JSON line per access with --json).
func (a *app) followLogs(ctx context.Context, c *client.Client, id string, f client.ShareLogFilter) error {
	seen := map[string]bool{}
	header := true
	for {
		var fresh []client.ShareLog
		lo := client.ListOptions{Limit: 500}
		for {
			items, next, err := c.ListShareLogs(ctx, id, lo, f)
			if err != nil {
				if ctx.Err() != nil {
					return nil
				}
				return err
			}
			for _, l := range items {
				if !seen[l.ID] {
					seen[l.ID] = true
					fresh = append(fresh, l)
				}
			}
			if next == "" || next == lo.Cursor {
				break
			}
			lo.Cursor = next
		}
		slices.SortStableFunc(fresh, func(x, y client.ShareLog) int { return x.AccessedAt.Compare(y.AccessedAt) })
		for _, l := range fresh {
			if l.AccessedAt.After(f.Since) {
				f.Since = l.AccessedAt.Add(-time.Second) // overlap; duplicates are skipped by id
			}
		}
		if a.jsonOut {
			for _, l := range fresh {
				b, _ := json.Marshal(l)
				fmt.Fprintln(a.stdout, string(b))
			}
		} else if len(fresh) > 0 || header {
			if err := printTableRows(a, fresh, shareLogCols, header); err != nil {
				return err
			}
			header = false
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(a.pollInterval):
		}
	}
}

// parseSince accepts an RFC 3339 time or a duration ago.
func parseSince(s string, now time.Time) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	if d, err := time.ParseDuration(s); err == nil && d > 0 {
		return now.Add(-d), nil
	}
	return time.Time{}, usageErrorf("--since %q: want an RFC 3339 time or a duration such as 15m", s)
}
