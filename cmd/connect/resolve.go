package main

import (
	"context"
	"fmt"
	"strings"

	"github.com/google/uuid"

	"github.com/privateconnect/pc/sdk/client"
)

// resolveService finds a service by id or by name. The API has no name
// filter, so names are matched over the listing.
func resolveService(ctx context.Context, c *client.Client, nameOrID string) (*client.Service, error) {
	if _, err := uuid.Parse(nameOrID); err == nil {
		svc, err := c.GetService(ctx, nameOrID)
		if err == nil || !client.IsNotFound(err) {
			return svc, err
		}
	}
	lo := client.ListOptions{Limit: 500}
	for {
		items, next, err := c.ListServices(ctx, lo, client.ServiceFilter{})
		if err != nil {
			return nil, err
		}
		for i := range items {
			if items[i].Name == nameOrID {
				return &items[i], nil
			}
		}
		if next == "" || next == lo.Cursor {
			return nil, fmt.Errorf("no service named %q (see 'connect services ls')", nameOrID)
		}
		lo.Cursor = next
	}
}

// resolvePlugin finds a plugin by id (a UUID or builtin:<name>), by name, or
// by name@version. A name matches uploaded plugins first, then built-ins;
// of several versions the one uploaded last wins.
func resolvePlugin(ctx context.Context, c *client.Client, ref string) (*client.Plugin, error) {
	if isPluginID(ref) {
		return c.GetPlugin(ctx, ref)
	}
	name, version, _ := strings.Cut(ref, "@")
	all, err := client.All(ctx, c.ListPlugins)
	if err != nil {
		return nil, err
	}
	var best *client.Plugin
	for i := range all {
		p := &all[i]
		if p.Name != name || (version != "" && p.Version != version) {
			continue
		}
		switch {
		case best == nil,
			best.Builtin && !p.Builtin,
			best.Builtin == p.Builtin && p.CreatedAt != nil && (best.CreatedAt == nil || p.CreatedAt.After(*best.CreatedAt)):
			best = p
		}
	}
	if best == nil {
		return nil, fmt.Errorf("no plugin named %q (see 'connect plugins ls')", ref)
	}
	return best, nil
}

// resolvePluginRefs replaces the names in refs by plugin ids.
func resolvePluginRefs(ctx context.Context, c *client.Client, refs []client.SharePlugin) error {
	for i := range refs {
		if isPluginID(refs[i].PluginID) {
			continue // the API checks it
		}
		p, err := resolvePlugin(ctx, c, refs[i].PluginID)
		if err != nil {
			return fmt.Errorf("--plugin %s: %w", refs[i].PluginID, err)
		}
		refs[i].PluginID = p.ID
	}
	return nil
}

// isPluginID: ref is a plugin id (a UUID, or builtin:<name>), not a name.
func isPluginID(ref string) bool {
	_, err := uuid.Parse(ref)
	return err == nil || strings.HasPrefix(ref, "builtin:")
}
