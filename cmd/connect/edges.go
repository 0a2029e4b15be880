package main

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/privateconnect/pc/sdk/client"
)

var edgeCols = []col[client.Edge]{
	{"ID", func(x client.Edge) string { return x.ID }},
	{"NAME", func(x client.Edge) string { return x.Name }},
	{"REGION", func(x client.Edge) string { return orDash(x.Region) }},
	{"ONLINE", func(x client.Edge) string { return yesNo(x.IsOnline) }},
	{"PUBLIC URL", func(x client.Edge) string { return x.PublicURL }},
	{"TUNNEL", func(x client.Edge) string { return x.TunnelAddr }},
	{"AGENTS", func(x client.Edge) string { return itoa(x.ConnectedAgents) }},
	{"CONFIG", func(x client.Edge) string { return fmt.Sprintf("v%d (lag %d)", x.ConfigVersion, x.Lag) }},
	{"LAST SEEN", func(x client.Edge) string { return fmtTimePtr(x.LastSeenAt) }},
}

func (a *app) edgesCmd() *cobra.Command {
	ls := listCmd(a, "ls", "List edge nodes (admin)", "  connect edges ls", 0,
		func(ctx context.Context, c *client.Client, _ []string, lo client.ListOptions) ([]client.Edge, string, error) {
			return c.ListEdges(ctx, lo)
		}, edgeCols)

	var req client.CreateEdgeRequest
	add := getCmd(a, "add NAME --public-url URL --tunnel-addr HOST:PORT", "Register an edge node; prints its token once (admin)",
		`  connect edges add eu-1 --public-url https://eu1.share.example.com --tunnel-addr eu1.example.com:7070 --region eu
  PC_TOKEN="$(connect edges add local --public-url http://127.0.0.1:8080 --tunnel-addr 127.0.0.1:7070 --json | jq -r .token)" pcd edge`, 1,
		func(ctx context.Context, c *client.Client, args []string) (*client.Edge, error) {
			r := req
			r.Name = args[0]
			if r.PublicURL == "" || r.TunnelAddr == "" {
				return nil, usageErrorf("--public-url and --tunnel-addr are required")
			}
			e, err := c.CreateEdge(ctx, r)
			if err == nil && !a.jsonOut {
				fmt.Fprintln(a.stderr, "Store the edge token now: it is shown only once. Give it to pcd edge in its environment (PC_TOKEN) or --config file, not --token, which every local user can read in the process list.")
			}
			return e, err
		})
	add.Flags().StringVar(&req.PublicURL, "public-url", "", "base URL of share links served by this edge")
	add.Flags().StringVar(&req.TunnelAddr, "tunnel-addr", "", "host:port agents dial")
	add.Flags().StringVar(&req.Region, "region", "", "region label")

	rm := actionCmd(a, "rm EDGE_ID", "Remove an edge node (admin)", "  connect edges rm 6f1c…", 1,
		func(ctx context.Context, c *client.Client, args []string) (string, error) {
			if err := c.DeleteEdge(ctx, args[0]); err != nil {
				return "", err
			}
			return fmt.Sprintf("Removed edge %s.", args[0]), nil
		})
	return group("edges", "Manage edge nodes (admin)", ls, add, rm)
}
