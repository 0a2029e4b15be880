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
	create := leaf("create NAME", "Create an isolated workspace and its first admin key (admin key of workspace default)",
		"  connect workspaces create acme", 1, 1, func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			w, err := c.CreateWorkspace(a.ctx(cmd), args[0])
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
	return group("workspaces", "Manage workspaces (tenants)", create)
}
