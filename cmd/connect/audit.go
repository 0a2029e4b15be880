package main

import (
	"context"
	"strings"

	"github.com/spf13/cobra"

	"github.com/privateconnect/pc/sdk/client"
)

func (a *app) auditCmd() *cobra.Command {
	var (
		f     client.AuditFilter
		since string
	)
	cmd := listCmd(a, "audit", "Show who did what: API mutations and agent and edge connection events",
		"  connect audit --since 24h --type share.create", 0,
		func(ctx context.Context, c *client.Client, _ []string, lo client.ListOptions) ([]client.AuditEntry, string, error) {
			if since != "" {
				t, err := parseSince(since, a.now())
				if err != nil {
					return nil, "", err
				}
				f.Since = t
			}
			return c.ListAudit(ctx, lo, f)
		}, []col[client.AuditEntry]{
			{"TIME", func(x client.AuditEntry) string { return fmtTime(x.CreatedAt) }},
			{"TYPE", func(x client.AuditEntry) string { return x.Type }},
			{"ACTOR", func(x client.AuditEntry) string {
				switch {
				case x.KeyID != "":
					return "key " + x.KeyID
				case x.AgentID != "":
					return "agent " + x.AgentID
				case x.EdgeID != "":
					return "edge " + x.EdgeID
				}
				return "-"
			}},
			{"ROUTE", func(x client.AuditEntry) string { return orDash(strings.TrimSpace(x.Method + " " + x.Route)) }},
			{"RESOURCE", func(x client.AuditEntry) string { return orDash(x.ResourceID) }},
			{"RESULT", func(x client.AuditEntry) string { return orDash(compactJSON(x.Result)) }},
			{"IP", func(x client.AuditEntry) string { return orDash(x.IPAddress) }},
		})
	cmd.Flags().StringVar(&f.Type, "type", "", "only entries of this type")
	cmd.Flags().StringVar(&since, "since", "", "only entries after this time (RFC 3339) or this long ago (e.g. 24h)")
	return cmd
}
