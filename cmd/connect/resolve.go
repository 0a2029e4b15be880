package main

import (
	"context"
	"fmt"

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
