package main

import (
	"context"
	"fmt"
	"slices"
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
	all, err := findPlugins(ctx, c, ref)
	if err != nil {
		return nil, err
	}
	return &all[0], nil
}

// findPlugins lists the plugins ref names, best first (see resolvePlugin):
// the one plugin of an id, or every version of a name. None is an error.
func findPlugins(ctx context.Context, c *client.Client, ref string) ([]client.Plugin, error) {
	if isPluginID(ref) {
		p, err := c.GetPlugin(ctx, ref)
		if err != nil {
			return nil, err
		}
		return []client.Plugin{*p}, nil
	}
	all, err := client.All(ctx, c.ListPlugins)
	if err != nil {
		return nil, err
	}
	return matchPlugins(all, ref)
}

// matchPlugins picks the plugins of all that a name or name@version names,
// best first (see resolvePlugin). None is an error.
func matchPlugins(all []client.Plugin, ref string) ([]client.Plugin, error) {
	name, version, _ := strings.Cut(ref, "@")
	var out []client.Plugin
	for _, p := range all {
		if p.Name == name && (version == "" || p.Version == version) {
			out = append(out, p)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no plugin named %q (see 'connect plugins ls')", ref)
	}
	slices.SortStableFunc(out, func(a, b client.Plugin) int {
		switch {
		case a.Builtin != b.Builtin:
			if a.Builtin {
				return 1
			}
			return -1
		case a.CreatedAt == nil || b.CreatedAt == nil:
			return 0
		default:
			return b.CreatedAt.Compare(*a.CreatedAt) // the last uploaded first
		}
	})
	return out, nil
}

// resolvePluginRefs replaces the names in refs by plugin ids.
// The plugins are listed once, however many names there are.
func resolvePluginRefs(ctx context.Context, c *client.Client, refs []client.SharePlugin) error {
	var all []client.Plugin
	for i := range refs {
		if isPluginID(refs[i].PluginID) {
			continue // the API checks it
		}
		if all == nil {
			var err error
			if all, err = client.All(ctx, c.ListPlugins); err != nil {
				return fmt.Errorf("--plugin %s: %w", refs[i].PluginID, err)
			}
		}
		ps, err := matchPlugins(all, refs[i].PluginID)
		if err != nil {
			return fmt.Errorf("--plugin %s: %w", refs[i].PluginID, err)
		}
		refs[i].PluginID = ps[0].ID
	}
	return nil
}

// isPluginID: ref is a plugin id (a UUID, or builtin:<name>), not a name.
func isPluginID(ref string) bool {
	_, err := uuid.Parse(ref)
	return err == nil || strings.HasPrefix(ref, "builtin:")
}
