// Package api serves the control plane's REST API (/v1, see
// shared/spec/api-v1.md) on fasthttp and fasthttp/router.
//
// One route table (routes.go) drives the router, each route's credentials
// and rate-limit tier, and the OpenAPI document. Every handler returns
// (data, error): [toError] is the one place that turns errors into a status
// and the error envelope (internal causes are logged, never sent), and the
// wrapper writes the success envelope, X-Next-Cursor, and the audit event of
// each mutation.
//
// # Credentials
//
//   - API keys (x-api-key: pc_<48 hex>), stored as SHA-256, scopes
//     read < write < admin, optional allowedIpRanges. Authenticated keys are
//     cached for 30 s; every change of a key through the API drops its cache
//     entry at once, so a revoked key fails with 401 on the next request.
//   - Edge tokens (Authorization: Bearer) on /v1/edges/config and
//     /v1/edges/report.
//   - Agent tokens in the body of the agent-token routes.
//
// # Edges are platform-level
//
// Edges are not owned by a workspace: every workspace's agents dial every
// edge. Admin keys of workspace "default" (the operator's workspace created
// on first start) may create and delete edges, and create workspaces; admin
// keys of any workspace may list edges (their agents connect to them). A
// tenant admin trying to create or delete an edge gets 403.
//
// # Rate limits
//
// Fixed one-minute windows in memory: public routes per client IP,
// API-key routes per key, agent-token routes per client IP at the
// authenticated tier. /health and the edge routes are not limited.
//
// # Commands, messages and diagnostics
//
// Commands (POST /v1/agents/:id/command) and messages between agents are
// stored first (commands for 24 h, messages for their TTL). Delivery to a
// connected agent goes through its edge: the config hub sends an "inbox"
// message naming the agent on every edge stream (at once when an item is
// stored, and again when an edge reports the agent CONNECTED with items
// pending), and the edge fetches the items with GET /v1/edges/agent-inbox,
// which marks commands "delivered" and messages handed over (see
// internal/config/inbox.go). Results come back in edge reports
// (Report.CommandResult). Creating a command for an online agent waits up to
// 2 s for an edge to take it, so the answer says "delivered" or "queued". A
// queued command expires after 24 h, a delivered one when its timeout (plus
// 30 s) passes without a result. Hooks.AgentInbox is also called, for a
// delivery path other than the edge pull.
//
// Service checks (POST /v1/services/:id/check and /reach) are "diagnose" and
// "reach" commands whose result is {dns, tcp, tls, http, status, message};
// the handler waits up to 30 s (503 when the agent is offline, 504 when it
// does not answer). Results are kept 30 days as the service's diagnostic
// history; a diagnose result sets the service's status, and a change between
// healthy (ok) and not raises service.healthy / service.unhealthy (see
// Webhooks). Health monitoring schedules a diagnose command every
// intervalSeconds for services with it enabled whose agent is online.
//
// # Webhooks and share monitoring
//
// Every event is raised with [API.emit] inside the store transaction of the
// change that caused it: the webhook outbox (package control/webhooks)
// writes the event's deliveries in that transaction, so an event exists
// exactly when its change committed, before the call returns; Hooks.Event
// observes it after the commit. Mutations raise tunnel.created/deleted,
// share.created/revoked (also for shares revoked with their service or
// agent), agent.registered (first registration) and agent.deleted; edge
// reports raise agent.connected/disconnected and tunnel.connected/
// disconnected (push.ReportHooks.AgentEventsTx, in the transactions that
// store the connection events), plugin.failed (Report.PluginFailures) and, through the
// access logs they carry, share.accessed/denied (aggregated per share per
// minute); health results raise service.healthy/unhealthy; the outbox's
// edge watcher raises edge.connected/disconnected. Access logs are stored
// with a TTL together with per-minute statistics (sharelogs.go) before the
// report is answered. See webhooks.go and docs/monitoring.md.
//
// # OpenAPI, docs, metrics
//
// /openapi.json is generated from the route table at start-up (schemas by
// reflection from the request and response types); tests check it against
// the router's own route list, validate it with kin-openapi (OpenAPI 3.1),
// and validate the answers of the bad-input matrix and of the success paths
// against it. /docs serves Swagger UI from embedded assets; /metrics serves
// Prometheus metrics.
//
// # Request bodies
//
// POST/PATCH/PUT bodies must be application/json (415), at most 1 MiB (413;
// edge reports up to 16 MiB), and are decoded strictly: unknown fields,
// trailing data and wrong types are 400 naming the field. An empty body is
// treated as {}. The one exception is the plugin upload (POST /v1/plugins):
// a request type implementing customBody sets its own rules, here
// application/wasm, JSON or multipart/form-data, with a module of up to
// 16 MiB (MaxPluginBytes; the body up to MaxPluginUploadBytes, for the
// base64 form).
//
// # Plugins
//
// Uploaded Wasm plugins are validated, loaded and dry-run by the control
// plane's own plugins.Host (created at first use, compilation cache in
// Options.PluginCacheDir, modules loaded on demand from the store, the
// least recently used unloaded beyond 16). Plugins are immutable and
// workspace-scoped; their modules are stored once per SHA-256 and served
// to edges by that sum (GET /v1/edges/plugins/:sha256), and their metadata
// is pushed on the config stream. A share's plugins must be plugins of its
// workspace or built-ins ("builtin:<name>"), and their configs must pass
// the plugin's validate_config (400 with the plugin's reason in details).
// Deleting a plugin attached to a share that is not revoked is 409;
// deleting a built-in is 400 (it can never succeed). See plugins.go.
package api
