package main

import (
	"context"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/privateconnect/pc/sdk/client"
)

var webhookCols = []col[client.Webhook]{
	{"ID", func(x client.Webhook) string { return x.ID }},
	{"URL", func(x client.Webhook) string { return x.URL }},
	{"EVENTS", func(x client.Webhook) string { return strings.Join(x.Events, ",") }},
	{"ACTIVE", func(x client.Webhook) string { return yesNo(x.IsActive) }},
	{"CREATED", func(x client.Webhook) string { return fmtTime(x.CreatedAt) }},
}

var deliveryCols = []col[client.WebhookDelivery]{
	{"ID", func(x client.WebhookDelivery) string { return x.ID }},
	{"EVENT", func(x client.WebhookDelivery) string { return x.Event }},
	{"STATUS", func(x client.WebhookDelivery) string { return x.Status }},
	{"ATTEMPTS", func(x client.WebhookDelivery) string { return itoa(x.Attempts) }},
	{"LAST CODE", func(x client.WebhookDelivery) string {
		if x.LastStatusCode == 0 {
			return "-"
		}
		return itoa(x.LastStatusCode)
	}},
	{"LAST ERROR", func(x client.WebhookDelivery) string { return orDash(x.LastError) }},
	{"NEXT ATTEMPT", func(x client.WebhookDelivery) string { return fmtTimePtr(x.NextAttemptAt) }},
	{"CREATED", func(x client.WebhookDelivery) string { return fmtTime(x.CreatedAt) }},
}

func (a *app) webhooksCmd() *cobra.Command {
	ls := listCmd(a, "ls", "List webhooks (admin)", "  connect webhooks ls", 0,
		func(ctx context.Context, c *client.Client, _ []string, lo client.ListOptions) ([]client.Webhook, string, error) {
			return c.ListWebhooks(ctx, lo)
		}, webhookCols)

	var req client.CreateWebhookRequest
	add := getCmd(a, "add URL --events EVENT,...", "Subscribe a URL to events; prints the signing secret once (admin)",
		"  connect webhooks add https://hooks.example.com/pc --events share.created,share.denied,agent.disconnected", 1,
		func(ctx context.Context, c *client.Client, args []string) (*client.Webhook, error) {
			r := req
			r.URL = args[0]
			if len(r.Events) == 0 {
				return nil, usageErrorf("--events is required (see 'connect webhooks events')")
			}
			w, err := c.CreateWebhook(ctx, r)
			if err == nil && !a.jsonOut {
				fmt.Fprintln(a.stderr, "Store the secret now: it is shown only once.")
			}
			return w, err
		})
	add.Flags().StringSliceVar(&req.Events, "events", nil, "events to deliver, e.g. share.created,agent.connected")
	add.Flags().StringVar(&req.Description, "description", "", "description")

	get := getCmd(a, "get WEBHOOK_ID", "Show a webhook with its recent deliveries (admin)", "  connect webhooks get 6f1c…", 1,
		func(ctx context.Context, c *client.Client, args []string) (*client.Webhook, error) {
			return c.GetWebhook(ctx, args[0])
		})

	var (
		upd    client.UpdateWebhookRequest
		url    string
		events []string
		desc   string
		active bool
		updCmd *cobra.Command
	)
	updCmd = getCmd(a, "update WEBHOOK_ID", "Change a webhook's URL, events, description or state (admin)",
		"  connect webhooks update 6f1c… --active=false\n  connect webhooks update 6f1c… --events share.created", 1,
		func(ctx context.Context, c *client.Client, args []string) (*client.Webhook, error) {
			r := upd
			fl := updCmd.Flags()
			if fl.Changed("url") {
				r.URL = &url
			}
			if fl.Changed("events") {
				r.Events = &events
			}
			if fl.Changed("description") {
				r.Description = &desc
			}
			if fl.Changed("active") {
				r.IsActive = &active
			}
			if r == (client.UpdateWebhookRequest{}) {
				return nil, usageErrorf("nothing to change: give --url, --events, --description or --active")
			}
			return c.UpdateWebhook(ctx, args[0], r)
		})
	updCmd.Flags().StringVar(&url, "url", "", "new URL")
	updCmd.Flags().StringSliceVar(&events, "events", nil, "new event list")
	updCmd.Flags().StringVar(&desc, "description", "", "new description")
	updCmd.Flags().BoolVar(&active, "active", true, "enable (true) or disable (false) deliveries")

	rm := actionCmd(a, "rm WEBHOOK_ID", "Delete a webhook (admin)", "  connect webhooks rm 6f1c…", 1,
		func(ctx context.Context, c *client.Client, args []string) (string, error) {
			if err := c.DeleteWebhook(ctx, args[0]); err != nil {
				return "", err
			}
			return fmt.Sprintf("Deleted webhook %s.", args[0]), nil
		})
	test := getCmd(a, "test WEBHOOK_ID", "Send a test event to a webhook now (admin)", "  connect webhooks test 6f1c…", 1,
		func(ctx context.Context, c *client.Client, args []string) (*client.WebhookTestResult, error) {
			return c.TestWebhook(ctx, args[0])
		})
	rotate := leaf("rotate-secret WEBHOOK_ID", "Replace a webhook's signing secret; prints the new one (admin)",
		"  connect webhooks rotate-secret 6f1c…", 1, 1, func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			secret, err := c.RotateWebhookSecret(a.ctx(cmd), args[0])
			if err != nil {
				return err
			}
			if a.jsonOut {
				return a.printJSON(map[string]string{"secret": secret})
			}
			_, err = fmt.Fprintln(a.stdout, secret)
			return err
		})
	var status string
	deliveries := listCmd(a, "deliveries WEBHOOK_ID", "List a webhook's deliveries (admin)", "  connect webhooks deliveries 6f1c… --status failed", 1,
		func(ctx context.Context, c *client.Client, args []string, lo client.ListOptions) ([]client.WebhookDelivery, string, error) {
			return c.ListWebhookDeliveries(ctx, args[0], lo, status)
		}, deliveryCols)
	deliveries.Flags().StringVar(&status, "status", "", "pending, succeeded or failed")
	redeliver := actionCmd(a, "redeliver WEBHOOK_ID DELIVERY_ID", "Deliver an event again (admin)", "  connect webhooks redeliver 6f1c… 9a0b…", 2,
		func(ctx context.Context, c *client.Client, args []string) (string, error) {
			if err := c.RedeliverWebhook(ctx, args[0], args[1]); err != nil {
				return "", err
			}
			return fmt.Sprintf("Redelivery of %s queued.", args[1]), nil
		})
	eventsCmd := leaf("events", "List the events webhooks can subscribe to", "  connect webhooks events", 0, 0,
		func(cmd *cobra.Command, _ []string) error {
			ev, err := a.newClient(a.apiKey).ListWebhookEvents(a.ctx(cmd))
			if err != nil {
				return err
			}
			return printList(a, ev, "", []col[client.WebhookEvent]{
				{"EVENT", func(x client.WebhookEvent) string { return x.Name }},
				{"DESCRIPTION", func(x client.WebhookEvent) string { return x.Description }},
			})
		})
	return group("webhooks", "Manage webhooks (admin)", ls, add, get, updCmd, rm, test, rotate, deliveries, redeliver, eventsCmd)
}
