package main

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/privateconnect/pc/sdk/client"
)

func (a *app) workspaceCmd() *cobra.Command {
	return getCmd(a, "workspace", "Show the current workspace with its usage and limits", "  connect workspace", 0,
		func(ctx context.Context, c *client.Client, _ []string) (*client.Workspace, error) {
			return c.Workspace(ctx)
		})
}

func (a *app) workspacesCmd() *cobra.Command {
	var maxServices, maxShares int
	var create *cobra.Command
	create = leaf("create NAME", "Create an isolated workspace and its first admin key (admin key of workspace default)",
		"  connect workspaces create acme", 1, 1, func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			req := client.CreateWorkspaceRequest{Name: args[0]}
			if create.Flags().Changed("max-services") {
				req.MaxServices = &maxServices
			}
			if create.Flags().Changed("max-shares") {
				req.MaxShares = &maxShares
			}
			w, err := c.CreateWorkspaceWith(a.ctx(cmd), req)
			if err != nil {
				return err
			}
			if a.jsonOut {
				return a.printJSON(w)
			}
			fmt.Fprintf(a.stdout, "Workspace %s (%s) created.\nAdmin API key: %s\n", w.Workspace.Name, w.Workspace.ID, w.APIKey.Key)
			fmt.Fprintln(a.stderr, "Store the key now: it is shown only once.")
			return nil
		})
	create.Flags().IntVar(&maxServices, "max-services", 0, "at most this many services (0: no limit; default: the control plane's)")
	create.Flags().IntVar(&maxShares, "max-shares", 0, "at most this many active shares (0: no limit; default: the control plane's)")
	return group("workspaces", "Manage workspaces (tenants)", create)
}
