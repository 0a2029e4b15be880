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
// # Request bodies
//
// POST/PATCH/PUT bodies must be application/json (415), at most 1 MiB (413;
// edge reports up to 16 MiB), and are decoded strictly: unknown fields,
// trailing data and wrong types are 400 naming the field. An empty body is
// treated as {}.
package api
