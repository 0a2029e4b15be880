package api

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/google/uuid"
	"github.com/valyala/fasthttp"

	"github.com/privateconnect/pc/control/push"
	"github.com/privateconnect/pc/control/store"
	"github.com/privateconnect/pc/control/webhooks"
	"github.com/privateconnect/pc/internal/config"
)

// MonitoringOptions configure webhooks and share monitoring.
type MonitoringOptions struct {
	// Webhooks configure the outbox and its delivery worker (OnlineEdges is
	// set by the API).
	Webhooks webhooks.Options
	// AccessLogRetention is how long share access logs are kept (default
	// 7 days; Badger TTL). Per-minute statistics are kept 25 hours.
	AccessLogRetention time.Duration
}

// maxWebhooks bounds the webhooks of one workspace.
const maxWebhooks = 100

// startMonitoring builds and starts the webhook dispatcher.
func (a *API) startMonitoring() error {
	if a.opts.Monitoring.AccessLogRetention <= 0 {
		a.opts.Monitoring.AccessLogRetention = 7 * 24 * time.Hour
	}
	wo := a.opts.Monitoring.Webhooks
	if wo.Logger == nil {
		wo.Logger = a.log
	}
	wo.OnlineEdges = a.hub.Presence.OnlineEdges
	wo.EdgeAuditWorkspace = a.opts.DefaultWorkspaceID
	d, err := webhooks.New(a.kv, wo)
	if err != nil {
		return err
	}
	a.webhooks = d
	d.Start()
	return nil
}

// dispatcher is the webhook outbox (a field of API).
type dispatcher = webhooks.Dispatcher

// Webhooks returns the webhook dispatcher (tests and the control plane).
func (a *API) Webhooks() *webhooks.Dispatcher { return a.webhooks }

// monitoringRoutes are the routes of webhooks and share monitoring.
func (a *API) monitoringRoutes() []*route {
	return []*route{
		{Name: "webhooks.events", Method: "GET", Path: "/v1/webhooks/events", Access: accessPublic, List: true, Summary: "Events a webhook can subscribe to",
			Resp: webhooks.EventType{}, h: a.webhookEvents},
		{Name: "webhooks.create", Method: "POST", Path: "/v1/webhooks", Access: accessAdmin, Created: true, Summary: "Create a webhook (the secret is shown once)",
			Req: createWebhookRequest{}, Resp: webhookCreatedView{}, h: a.createWebhook},
		{Name: "webhooks.list", Method: "GET", Path: "/v1/webhooks", Access: accessAdmin, List: true, Summary: "List webhooks", Resp: webhookView{}, h: a.listWebhooks},
		{Name: "webhooks.get", Method: "GET", Path: "/v1/webhooks/{id}", Access: accessAdmin, Summary: "Get a webhook with its recent deliveries",
			Resp: webhookDetailView{}, h: a.getWebhook},
		{Name: "webhooks.update", Method: "PATCH", Path: "/v1/webhooks/{id}", Access: accessAdmin, Summary: "Change a webhook's URL, events, description or state",
			Req: patchWebhookRequest{}, Resp: webhookView{}, h: a.patchWebhook},
		{Name: "webhooks.delete", Method: "DELETE", Path: "/v1/webhooks/{id}", Access: accessAdmin, Summary: "Delete a webhook and its pending deliveries",
			Resp: deletedView{}, h: a.deleteWebhook},
		{Name: "webhooks.rotateSecret", Method: "POST", Path: "/v1/webhooks/{id}/rotate-secret", Access: accessAdmin, Summary: "Replace a webhook's signing secret (shown once)",
			Resp: secretView{}, h: a.rotateWebhookSecret},
		{Name: "webhooks.test", Method: "POST", Path: "/v1/webhooks/{id}/test", Access: accessAdmin, Summary: "Send a signed webhook.test event now and report the answer",
			Resp: webhooks.TestResult{}, h: a.testWebhook},
		{Name: "webhooks.deliveries", Method: "GET", Path: "/v1/webhooks/{id}/deliveries", Access: accessAdmin, List: true, Query: []string{"status"},
			Summary: "A webhook's deliveries, newest first", Resp: deliveryView{}, h: a.listDeliveries},
		{Name: "webhooks.redeliver", Method: "POST", Path: "/v1/webhooks/{id}/deliveries/{deliveryId}/redeliver", Access: accessAdmin,
			Summary: "Queue a delivery again (same event id), with a fresh retry schedule", Resp: deliveryView{}, h: a.redeliver},

		{Name: "shares.logs", Method: "GET", Path: "/v1/shares/{id}/logs", Access: accessRead, List: true, Query: []string{"since"},
			Summary: "A share's access logs, newest first", Resp: accessLogView{}, h: a.shareLogs},
		{Name: "shares.stats", Method: "GET", Path: "/v1/shares/{id}/stats", Access: accessRead, Summary: "A share's request statistics over the last 24 hours",
			Resp: shareStatsView{}, h: a.shareStats},
	}
}

// emit raises a webhook event inside the transaction of the change that
// caused it: the outbox write commits or fails with the change. After the
// commit, Hooks.Event observes the event.
func (a *API) emit(tx store.Tx, ws, name string, data any) error {
	if err := a.webhooks.Enqueue(tx, ws, name, data); err != nil {
		return err
	}
	if h := a.opts.Hooks.Event; h != nil {
		store.OnCommit(tx, func() { h(ws, name, data) })
	}
	return nil
}

// emitSharesRevoked raises share.revoked for the shares of a deleted service
// or agent that were not revoked before.
func (a *API) emitSharesRevoked(tx store.Tx, ws string, shares []store.Share) error {
	for _, sh := range shares {
		if sh.RevokedAt != nil {
			continue
		}
		if err := a.emit(tx, ws, webhooks.ShareRevoked, shareRevokedData(&sh)); err != nil {
			return err
		}
	}
	return nil
}

func shareRevokedData(sh *store.Share) map[string]any {
	return map[string]any{"shareId": sh.ID, "serviceId": sh.ServiceID, "name": sh.Name}
}

// emitTunnelDeleted raises tunnel.deleted for a service.
func (a *API) emitTunnelDeleted(tx store.Tx, ws string, s *store.Service) error {
	return a.emit(tx, ws, webhooks.TunnelDeleted, map[string]any{"serviceId": s.ID, "name": s.Name, "agentId": s.AgentID})
}

// agentEventsTx raises agent.connected/disconnected and the tunnel events of
// the agents' services, in the transaction of an edge report that stores
// the connection events. A workspace's services are listed once per call,
// whatever the number of events (a reconnecting edge brings thousands).
func (a *API) agentEventsTx(tx store.Tx, evs []store.AuditEvent) error {
	type wsServices struct {
		wanted map[string]bool            // tunnel event → an active webhook wants it
		by     map[string][]store.Service // agent id → its services; nil until listed
	}
	workspaces := map[string]*wsServices{}
	for _, ev := range evs {
		agentEv, tunnelEv := "", ""
		switch ev.Event {
		case config.EventConnected:
			agentEv, tunnelEv = webhooks.AgentConnected, webhooks.TunnelConnected
		case config.EventDisconnected:
			agentEv, tunnelEv = webhooks.AgentDisconnected, webhooks.TunnelDisconnected
		default:
			continue
		}
		if err := a.emit(tx, ev.WorkspaceID, agentEv, map[string]any{"agentId": ev.AgentID, "edgeId": ev.EdgeID, "ipAddress": ev.IP}); err != nil {
			return err
		}
		w := workspaces[ev.WorkspaceID]
		if w == nil {
			w = &wsServices{wanted: map[string]bool{}}
			workspaces[ev.WorkspaceID] = w
		}
		if a.opts.Hooks.Event == nil { // nobody else observes events: list services only when a webhook wants them
			ok, seen := w.wanted[tunnelEv]
			if !seen {
				var err error
				if ok, err = a.webhooks.Wants(tx, ev.WorkspaceID, tunnelEv); err != nil {
					return err
				}
				w.wanted[tunnelEv] = ok
			}
			if !ok {
				continue
			}
		}
		if w.by == nil {
			svcs, _, err := store.ListServices(tx, ev.WorkspaceID, "", 0, nil)
			if err != nil {
				return err
			}
			w.by = map[string][]store.Service{}
			for _, s := range svcs {
				w.by[s.AgentID] = append(w.by[s.AgentID], s)
			}
		}
		for _, s := range w.by[ev.AgentID] {
			if err := a.emit(tx, ev.WorkspaceID, tunnelEv, map[string]any{"serviceId": s.ID, "name": s.Name, "agentId": s.AgentID, "edgeId": ev.EdgeID}); err != nil {
				return err
			}
		}
	}
	return nil
}

// maxPluginFailures bounds the plugin.failed events of one report.
const maxPluginFailures = 100

// pluginFailures raises plugin.failed for the failures an edge reported.
func (a *API) pluginFailures(ctx context.Context, once push.ReportOnce, edgeID string, fs []config.PluginFailure) {
	if len(fs) == 0 {
		return
	}
	if len(fs) > maxPluginFailures {
		a.log.Warn("edge report: plugin failures over the limit", "edge", edgeID, "dropped", len(fs)-maxPluginFailures)
		fs = fs[:maxPluginFailures]
	}
	_, err := once.Do(ctx, a.kv, "failures", func(tx store.Tx) error {
		for _, f := range fs {
			sh, err := store.LookupShare(tx, f.ShareID)
			if errors.Is(err, store.ErrNotFound) {
				continue
			}
			if err != nil {
				return err
			}
			at := apiTime(f.At)
			if at.IsZero() {
				at = apiTime(time.Now())
			}
			data := map[string]any{"pluginId": config.Cut(f.PluginID, 100), "shareId": sh.ID, "serviceId": sh.ServiceID, "edgeId": edgeID,
				"error": config.Cut(f.Error, 1000), "count": max(f.Count, 1), "at": at}
			if err := a.emit(tx, sh.WorkspaceID, webhooks.PluginFailed, data); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		a.log.Warn("plugin.failed events not stored", "edge", edgeID, "err", err)
	}
}

// Handlers.

type createWebhookRequest struct {
	URL         string   `json:"url" api:"required"`
	Events      []string `json:"events" api:"required"`
	Description *string  `json:"description"`
}

type patchWebhookRequest struct {
	URL         *string   `json:"url"`
	Events      *[]string `json:"events"`
	Description *string   `json:"description"`
	IsActive    *bool     `json:"isActive"`
}

type webhookView struct {
	ID          string    `json:"id"`
	URL         string    `json:"url"`
	Events      []string  `json:"events"`
	Description string    `json:"description"`
	IsActive    bool      `json:"isActive"`
	CreatedAt   time.Time `json:"createdAt"`
	UpdatedAt   time.Time `json:"updatedAt"`
}

type webhookCreatedView struct {
	webhookView
	Secret string `json:"secret"`
}

type webhookDetailView struct {
	webhookView
	RecentDeliveries []deliveryView `json:"recentDeliveries"`
}

type secretView struct {
	Secret string `json:"secret"`
}

type deletedView struct {
	ID      string `json:"id"`
	Deleted bool   `json:"deleted"`
}

type deliveryView struct {
	ID             string     `json:"id"`
	EventID        string     `json:"eventId"`
	Event          string     `json:"event"`
	Status         string     `json:"status"`
	Attempts       int        `json:"attempts"`
	LastStatusCode *int       `json:"lastStatusCode"`
	LastError      *string    `json:"lastError"`
	NextAttemptAt  *time.Time `json:"nextAttemptAt"`
	CreatedAt      time.Time  `json:"createdAt"`
	CompletedAt    *time.Time `json:"completedAt"`
}

func webhookViewOf(w *store.Webhook) webhookView {
	return webhookView{ID: w.ID, URL: w.URL, Events: slices.Clone(w.Events), Description: w.Description, IsActive: w.IsActive,
		CreatedAt: w.CreatedAt, UpdatedAt: w.UpdatedAt}
}

func deliveryViewOf(d *store.Delivery) deliveryView {
	v := deliveryView{ID: d.ID, EventID: d.EventID, Event: d.Event, Status: d.Status, Attempts: d.Attempts,
		NextAttemptAt: apiTimePtr(d.NextAttemptAt), CreatedAt: apiTime(d.CreatedAt), CompletedAt: apiTimePtr(d.CompletedAt)}
	if d.LastStatusCode != 0 {
		n := d.LastStatusCode
		v.LastStatusCode = &n
	}
	if d.LastError != "" {
		s := d.LastError
		v.LastError = &s
	}
	return v
}

func (a *API) webhookEvents(c *call) (any, error) {
	// In the catalog's order; the cursor is the last event's name, as the
	// built-ins' in listPlugins.
	after, limit, err := c.page()
	if err != nil {
		return nil, err
	}
	from := 0
	if after != "" {
		i := slices.IndexFunc(webhooks.Events, func(e webhooks.EventType) bool { return e.Name == after })
		if i < 0 {
			return nil, invalidField("cursor", "is not a cursor this API returned")
		}
		from = i + 1
	}
	page := webhooks.Events[from:min(from+limit, len(webhooks.Events))]
	if from+len(page) < len(webhooks.Events) {
		c.setNext(page[len(page)-1].Name)
	}
	return page, nil
}

// maxEventNames bounds the names of an events list before duplicates are
// removed (a list may name an event twice, not a thousand times).
const maxEventNames = 100

// webhookEventList validates a list of event names (≥ 1, from the catalog)
// and removes duplicates.
func webhookEventList(v *validator, in []string, field string) []string {
	if !v.check(len(in) >= 1 && len(in) <= maxEventNames, field, "must list 1-%d names of the %d events of GET /v1/webhooks/events", maxEventNames, len(webhooks.Events)) {
		return nil
	}
	out := make([]string, 0, len(in))
	for i, e := range in {
		if !webhooks.Known(e) {
			v.add(field+"["+strconv.Itoa(i)+"]", "must be an event of GET /v1/webhooks/events, e.g. share.created")
			continue
		}
		if !slices.Contains(out, e) {
			out = append(out, e)
		}
	}
	return out
}

func (a *API) checkWebhookURL(v *validator, u, field string) {
	if msg := a.webhooks.CheckURL(u); msg != "" {
		v.add(field, "%s", msg)
	}
}

func (a *API) createWebhook(c *call) (any, error) {
	var req createWebhookRequest
	if err := c.decode(&req); err != nil {
		return nil, err
	}
	var v validator
	a.checkWebhookURL(&v, req.URL, "url")
	events := webhookEventList(&v, req.Events, "events")
	v.optStrLen(req.Description, "description", 0, 500)
	if err := v.err(); err != nil {
		return nil, err
	}
	secret := webhooks.NewSecret()
	w := store.Webhook{ID: uuid.NewString(), WorkspaceID: c.ws, URL: req.URL, Events: events, IsActive: true, CreatedAt: c.now, UpdatedAt: c.now}
	if req.Description != nil {
		w.Description = *req.Description
	}
	w.Secret = a.webhooks.Seal(w.ID, secret)
	err := a.kv.Update(c.ctx, func(tx store.Tx) error {
		n, err := store.Count(tx, c.ws, "webhook")
		if err != nil {
			return err
		}
		if n >= maxWebhooks {
			return badRequest("a workspace may have at most %d webhooks; delete one first", maxWebhooks)
		}
		return store.CreateWebhook(tx, &w)
	})
	if err != nil {
		return nil, err
	}
	c.resource = w.ID
	return webhookCreatedView{webhookView: webhookViewOf(&w), Secret: secret}, nil
}

func (a *API) listWebhooks(c *call) (any, error) {
	after, limit, err := c.page()
	if err != nil {
		return nil, err
	}
	var hooks []store.Webhook
	var next string
	err = a.kv.View(c.ctx, func(tx store.Tx) error {
		var err error
		hooks, next, err = store.ListWebhooks(tx, c.ws, after, limit, nil)
		return err
	})
	if err != nil {
		return nil, err
	}
	c.setNext(next)
	out := make([]webhookView, 0, len(hooks))
	for i := range hooks {
		out = append(out, webhookViewOf(&hooks[i]))
	}
	return out, nil
}

// recentDeliveries is how many deliveries GET /v1/webhooks/:id shows.
const recentDeliveries = 10

func (a *API) getWebhook(c *call) (any, error) {
	var w *store.Webhook
	var dels []store.Delivery
	err := a.kv.View(c.ctx, func(tx store.Tx) error {
		var err error
		if w, err = store.GetWebhook(tx, c.ws, c.param("id")); err != nil {
			return err
		}
		dels, _, err = store.ListDeliveries(tx, c.ws, w.ID, "", recentDeliveries, nil)
		return err
	})
	if err != nil {
		return nil, err
	}
	out := webhookDetailView{webhookView: webhookViewOf(w), RecentDeliveries: make([]deliveryView, 0, len(dels))}
	for i := range dels {
		out.RecentDeliveries = append(out.RecentDeliveries, deliveryViewOf(&dels[i]))
	}
	return out, nil
}

func (a *API) patchWebhook(c *call) (any, error) {
	var req patchWebhookRequest
	if err := c.decode(&req); err != nil {
		return nil, err
	}
	var v validator
	if req.URL != nil {
		a.checkWebhookURL(&v, *req.URL, "url")
	}
	var events []string
	if req.Events != nil {
		events = webhookEventList(&v, *req.Events, "events")
	}
	v.optStrLen(req.Description, "description", 0, 500)
	if err := v.err(); err != nil {
		return nil, err
	}
	var w *store.Webhook
	err := a.kv.Update(c.ctx, func(tx store.Tx) error {
		var err error
		if w, err = store.GetWebhook(tx, c.ws, c.param("id")); err != nil {
			return err
		}
		if req.URL != nil {
			w.URL = *req.URL
		}
		if req.Events != nil {
			w.Events = events
		}
		if req.Description != nil {
			w.Description = *req.Description
		}
		if req.IsActive != nil {
			w.IsActive = *req.IsActive
		}
		w.UpdatedAt = c.now
		return store.PutWebhook(tx, w)
	})
	if err != nil {
		return nil, err
	}
	if w.IsActive {
		a.webhooks.Resume(w.ID) // deliveries held while it was disabled go now
	}
	c.resource = w.ID
	return webhookViewOf(w), nil
}

func (a *API) deleteWebhook(c *call) (any, error) {
	id := c.param("id")
	if err := a.kv.Update(c.ctx, func(tx store.Tx) error { return store.DeleteWebhook(tx, c.ws, id) }); err != nil {
		return nil, err
	}
	c.resource = id
	a.webhooks.Kick() // the worker drops the webhook's backlog
	return deletedView{ID: id, Deleted: true}, nil
}

func (a *API) rotateWebhookSecret(c *call) (any, error) {
	secret := webhooks.NewSecret()
	var w *store.Webhook
	err := a.kv.Update(c.ctx, func(tx store.Tx) error {
		var err error
		if w, err = store.GetWebhook(tx, c.ws, c.param("id")); err != nil {
			return err
		}
		w.Secret = a.webhooks.Seal(w.ID, secret)
		w.UpdatedAt = c.now
		return store.PutWebhook(tx, w)
	})
	if err != nil {
		return nil, err
	}
	c.resource = w.ID
	return secretView{Secret: secret}, nil
}

// testWebhook sends a webhook.test event at once and waits for the answer
// (up to the delivery timeout); nothing is stored or retried.
func (a *API) testWebhook(c *call) (any, error) {
	var w *store.Webhook
	err := a.kv.View(c.ctx, func(tx store.Tx) error {
		var err error
		w, err = store.GetWebhook(tx, c.ws, c.param("id"))
		return err
	})
	if err != nil {
		return nil, err
	}
	c.resource = w.ID
	ctx, cancel := context.WithCancel(a.baseCtx)
	defer cancel()
	res, err := a.webhooks.Test(ctx, w)
	if errors.Is(err, webhooks.ErrTestsBusy) {
		return nil, &Error{Status: fasthttp.StatusTooManyRequests, RetryAfter: 1, Message: fmt.Sprintf(
			"too many webhook tests in progress (at most %d per workspace at once, each up to the delivery timeout): retry when one has answered",
			webhooks.TestsPerWorkspace)}
	}
	if err != nil {
		return nil, err
	}
	return res, nil
}

var deliveryStatuses = []string{store.DeliveryPending, store.DeliverySucceeded, store.DeliveryFailed}

func (a *API) listDeliveries(c *call) (any, error) {
	after, limit, err := c.page()
	if err != nil {
		return nil, err
	}
	status := c.query("status")
	if status != "" {
		var v validator
		v.oneOf(status, "status", deliveryStatuses...)
		if err := v.err(); err != nil {
			return nil, err
		}
	}
	var dels []store.Delivery
	var next string
	err = a.kv.View(c.ctx, func(tx store.Tx) error {
		if _, err := store.GetWebhook(tx, c.ws, c.param("id")); err != nil {
			return err
		}
		var err error
		dels, next, err = store.ListDeliveries(tx, c.ws, c.param("id"), after, limit, func(d *store.Delivery) bool {
			return status == "" || d.Status == status
		})
		return err
	})
	if err != nil {
		return nil, err
	}
	c.setNext(next)
	out := make([]deliveryView, 0, len(dels))
	for i := range dels {
		out = append(out, deliveryViewOf(&dels[i]))
	}
	return out, nil
}

func (a *API) redeliver(c *call) (any, error) {
	var d *store.Delivery
	err := a.kv.Update(c.ctx, func(tx store.Tx) error {
		if _, err := store.GetWebhook(tx, c.ws, c.param("id")); err != nil {
			return err
		}
		var err error
		if d, err = store.GetDelivery(tx, c.ws, c.param("id"), c.param("deliveryId")); err != nil {
			return err
		}
		return a.webhooks.Redeliver(tx, d)
	})
	if err != nil {
		return nil, err
	}
	c.resource = d.ID
	return deliveryViewOf(d), nil
}
