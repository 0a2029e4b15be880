package client

import (
	"context"
	"net/http"
	"net/url"
	"time"
)

// WebhookEvent describes one event a webhook can subscribe to.
type WebhookEvent struct {
	Name        string `json:"name"`
	Description string `json:"description"`
}

// Webhook is a webhook subscription. Secret is set only at creation.
type Webhook struct {
	ID               string            `json:"id"`
	URL              string            `json:"url"`
	Events           []string          `json:"events"`
	Description      string            `json:"description,omitempty"`
	IsActive         bool              `json:"isActive"`
	Secret           string            `json:"secret,omitempty"`
	CreatedAt        time.Time         `json:"createdAt"`
	RecentDeliveries []WebhookDelivery `json:"recentDeliveries,omitempty"`
}

// CreateWebhookRequest is the body of POST /v1/webhooks.
type CreateWebhookRequest struct {
	URL         string   `json:"url"`
	Events      []string `json:"events"`
	Description string   `json:"description,omitempty"`
}

// UpdateWebhookRequest is the body of PATCH /v1/webhooks/:id.
type UpdateWebhookRequest struct {
	URL         *string   `json:"url,omitempty"`
	Events      *[]string `json:"events,omitempty"`
	Description *string   `json:"description,omitempty"`
	IsActive    *bool     `json:"isActive,omitempty"`
}

// WebhookDelivery is one delivery of an event to a webhook.
type WebhookDelivery struct {
	ID             string     `json:"id"`
	Event          string     `json:"event"`
	Status         string     `json:"status"` // pending|succeeded|failed
	Attempts       int        `json:"attempts"`
	LastStatusCode int        `json:"lastStatusCode,omitempty"`
	LastError      string     `json:"lastError,omitempty"`
	NextAttemptAt  *time.Time `json:"nextAttemptAt,omitempty"`
	CreatedAt      time.Time  `json:"createdAt"`
}

// WebhookTestResult is the answer of POST /v1/webhooks/:id/test.
type WebhookTestResult struct {
	Delivered  bool    `json:"delivered"`
	StatusCode int     `json:"statusCode"`
	Error      string  `json:"error,omitempty"`
	DurationMs float64 `json:"durationMs"`
}

// ListWebhookEvents calls GET /v1/webhooks/events (public), every page.
func (c *Client) ListWebhookEvents(ctx context.Context) ([]WebhookEvent, error) {
	return All(ctx, func(ctx context.Context, lo ListOptions) ([]WebhookEvent, string, error) {
		return list[WebhookEvent](ctx, c, p("webhooks", "events"), lo, nil)
	})
}

// CreateWebhook calls POST /v1/webhooks (admin). The secret is shown once.
func (c *Client) CreateWebhook(ctx context.Context, req CreateWebhookRequest) (*Webhook, error) {
	var w Webhook
	if err := c.call(ctx, http.MethodPost, p("webhooks"), req, &w); err != nil {
		return nil, err
	}
	return &w, nil
}

// ListWebhooks calls GET /v1/webhooks (admin).
func (c *Client) ListWebhooks(ctx context.Context, lo ListOptions) ([]Webhook, string, error) {
	return list[Webhook](ctx, c, p("webhooks"), lo, nil)
}

// GetWebhook calls GET /v1/webhooks/:id (admin), with recent deliveries.
func (c *Client) GetWebhook(ctx context.Context, id string) (*Webhook, error) {
	var w Webhook
	if err := c.get(ctx, p("webhooks", id), nil, &w); err != nil {
		return nil, err
	}
	return &w, nil
}

// UpdateWebhook calls PATCH /v1/webhooks/:id (admin).
func (c *Client) UpdateWebhook(ctx context.Context, id string, req UpdateWebhookRequest) (*Webhook, error) {
	var w Webhook
	if err := c.call(ctx, http.MethodPatch, p("webhooks", id), req, &w); err != nil {
		return nil, err
	}
	return &w, nil
}

// DeleteWebhook calls DELETE /v1/webhooks/:id (admin).
func (c *Client) DeleteWebhook(ctx context.Context, id string) error {
	return c.call(ctx, http.MethodDelete, p("webhooks", id), nil, nil)
}

// RotateWebhookSecret calls POST /v1/webhooks/:id/rotate-secret (admin) and
// returns the new secret.
func (c *Client) RotateWebhookSecret(ctx context.Context, id string) (string, error) {
	var out struct {
		Secret string `json:"secret"`
	}
	if err := c.call(ctx, http.MethodPost, p("webhooks", id, "rotate-secret"), nil, &out); err != nil {
		return "", err
	}
	return out.Secret, nil
}

// TestWebhook calls POST /v1/webhooks/:id/test (admin): sends a test event now.
func (c *Client) TestWebhook(ctx context.Context, id string) (*WebhookTestResult, error) {
	var r WebhookTestResult
	if err := c.call(ctx, http.MethodPost, p("webhooks", id, "test"), nil, &r); err != nil {
		return nil, err
	}
	return &r, nil
}

// ListWebhookDeliveries calls GET /v1/webhooks/:id/deliveries (admin);
// status filters by pending|succeeded|failed when non-empty.
func (c *Client) ListWebhookDeliveries(ctx context.Context, id string, lo ListOptions, status string) ([]WebhookDelivery, string, error) {
	return list[WebhookDelivery](ctx, c, p("webhooks", id, "deliveries"), lo, url.Values{"status": {status}})
}

// RedeliverWebhook calls POST /v1/webhooks/:id/deliveries/:deliveryId/redeliver (admin).
func (c *Client) RedeliverWebhook(ctx context.Context, id, deliveryID string) error {
	return c.call(ctx, http.MethodPost, p("webhooks", id, "deliveries", deliveryID, "redeliver"), nil, nil)
}
