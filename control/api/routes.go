package api

import (
	"github.com/valyala/fasthttp"

	"github.com/privateconnect/pc/internal/config"
)

// configMessage documents the config stream's lines.
type configMessage = config.Message

// route is one entry of the route table. The table drives the router, the
// authentication and rate-limit tier of each route, and the OpenAPI document.
type route struct {
	Name    string // operation id and audit type, e.g. "shares.create"
	Method  string
	Path    string // router syntax: /v1/shares/{id}
	Access  access
	Created bool // 201 on success
	Summary string
	Req     any      // request body type (nil: none)
	Resp    any      // response data type
	List    bool     // paginated list
	Query   []string // query parameters besides limit/cursor
	h       handler
	raw     fasthttp.RequestHandler
}

// publicLimited reports whether a public route counts against the client
// IP's public rate limit: all but /health, which load balancers and probes
// poll (docs/architecture.md).
func (r *route) publicLimited() bool {
	return r.Access == accessPublic && r.Path != "/health"
}

func (r *route) mutation() bool {
	return r.Method != fasthttp.MethodGet && r.Method != fasthttp.MethodHead
}

// table lists every route of the API.
func (a *API) table() []*route {
	return append([]*route{
		{Name: "openapi", Method: "GET", Path: "/openapi.json", Access: accessPublic, Summary: "This OpenAPI 3.1 document", raw: a.serveOpenAPI},
		{Name: "docs", Method: "GET", Path: "/docs", Access: accessPublic, Summary: "Swagger UI for this API", raw: a.serveDocs},
		{Name: "docsAsset", Method: "GET", Path: "/docs/{file}", Access: accessPublic, Summary: "Swagger UI assets", raw: a.serveDocsAsset},
		{Name: "metrics", Method: "GET", Path: "/metrics", Access: accessPublic, Summary: "Prometheus metrics", raw: a.serveMetrics},
		{Name: "health", Method: "GET", Path: "/health", Access: accessPublic, Summary: "Liveness and storage health", Resp: healthView{}, raw: a.health},

		{Name: "agents.provision", Method: "POST", Path: "/v1/agents/provision", Access: accessWrite, Created: true, Summary: "Create an agent identity and token",
			Req: provisionRequest{}, Resp: provisionResponse{}, h: a.provisionAgent},
		{Name: "agents.register", Method: "POST", Path: "/v1/agents/register", Access: accessWrite, Created: true, Summary: "Register (upsert) an agent by id",
			Req: registerAgentRequest{}, Resp: registerAgentResponse{}, h: a.registerAgent},
		{Name: "agents.list", Method: "GET", Path: "/v1/agents", Access: accessRead, List: true, Query: []string{"online", "label", "capability"},
			Summary: "List agents", Resp: agentView{}, h: a.listAgents},
		{Name: "agents.get", Method: "GET", Path: "/v1/agents/{id}", Access: accessRead, Summary: "Get an agent with its services",
			Resp: agentDetailView{}, h: a.getAgent},
		{Name: "agents.delete", Method: "DELETE", Path: "/v1/agents/{id}", Access: accessWrite, Summary: "Delete an agent, its services and their shares",
			Resp: deleteAgentResponse{}, h: a.deleteAgent},

		{Name: "services.register", Method: "POST", Path: "/v1/services/register", Access: accessWrite, Created: true, Summary: "Register (upsert by name) a service",
			Req: registerServiceRequest{}, Resp: serviceView{}, h: a.registerService},
		{Name: "services.list", Method: "GET", Path: "/v1/services", Access: accessRead, List: true, Query: []string{"agentId", "status", "protocol"},
			Summary: "List services", Resp: serviceView{}, h: a.listServices},
		{Name: "services.get", Method: "GET", Path: "/v1/services/{id}", Access: accessRead, Summary: "Get a service",
			Resp: serviceDetailView{}, h: a.getService},
		{Name: "services.delete", Method: "DELETE", Path: "/v1/services/{id}", Access: accessWrite, Summary: "Delete a service, revoke its shares, free its port",
			Resp: deleteServiceResponse{}, h: a.deleteService},

		{Name: "shares.create", Method: "POST", Path: "/v1/services/{id}/shares", Access: accessWrite, Created: true, Summary: "Create a share link",
			Req: createShareRequest{}, Resp: shareCreatedView{}, h: a.createShare},
		{Name: "shares.listByService", Method: "GET", Path: "/v1/services/{id}/shares", Access: accessRead, List: true, Summary: "List a service's shares",
			Resp: shareView{}, h: a.listServiceShares},
		{Name: "shares.get", Method: "GET", Path: "/v1/shares/{id}", Access: accessRead, Summary: "Get a share", Resp: shareView{}, h: a.getShare},
		{Name: "shares.update", Method: "PATCH", Path: "/v1/shares/{id}", Access: accessWrite, Summary: "Change a share's policy",
			Req: shareRequest{}, Resp: shareView{}, h: a.patchShare},
		{Name: "shares.revoke", Method: "DELETE", Path: "/v1/shares/{id}", Access: accessWrite, Summary: "Revoke a share", Resp: shareView{}, h: a.deleteShare},
		{Name: "shared.info", Method: "GET", Path: "/v1/shared/{token}/info", Access: accessPublic, Summary: "Describe a share link to its visitor",
			Resp: sharedInfoView{}, h: a.sharedInfo},

		{Name: "agents.heartbeat", Method: "POST", Path: "/v1/agents/heartbeat", Access: accessAgent, Summary: "Agent heartbeat (agent token)",
			Req: heartbeatRequest{}, Resp: heartbeatResponse{}, h: a.heartbeat},
		{Name: "agents.rotateToken", Method: "POST", Path: "/v1/agents/rotate-token", Access: accessAgent, Summary: "Rotate an agent's token (agent token)",
			Req: rotateRequest{}, Resp: rotateResponse{}, h: a.rotateToken},
		{Name: "agents.orchestration", Method: "GET", Path: "/v1/agents/orchestration", Access: accessRead, List: true, Summary: "Agents with capabilities and services, online first",
			Resp: orchestrationView{}, h: a.orchestration},
		{Name: "agents.auditLogs", Method: "GET", Path: "/v1/agents/{id}/audit-logs", Access: accessRead, List: true, Summary: "An agent's connection and credential events",
			Resp: agentAuditView{}, h: a.agentAuditLogs},
		{Name: "agents.capabilities", Method: "POST", Path: "/v1/agents/{id}/capabilities", Access: accessWrite, Summary: "Upsert an agent's capabilities by name",
			Req: capabilitiesRequest{}, Resp: []capabilityView{}, h: a.setCapabilities},
		{Name: "messages.send", Method: "POST", Path: "/v1/agents/{id}/messages/send", Access: accessWrite, Created: true, Summary: "Send a durable message to another agent",
			Req: sendMessageRequest{}, Resp: sendMessageResponse{}, h: a.sendMessage},
		{Name: "messages.broadcast", Method: "POST", Path: "/v1/agents/{id}/messages/broadcast", Access: accessWrite, Created: true, Summary: "Send an event to every other agent",
			Req: broadcastRequest{}, Resp: map[string]int{}, h: a.broadcast},
		{Name: "messages.list", Method: "GET", Path: "/v1/agents/{id}/messages", Access: accessRead, List: true, Query: []string{"channel", "unreadOnly"},
			Summary: "An agent's messages, newest first", Resp: messageView{}, h: a.listMessages},
		{Name: "messages.read", Method: "POST", Path: "/v1/agents/{id}/messages/read", Access: accessWrite, Summary: "Mark messages read",
			Req: readMessagesRequest{}, Resp: map[string]int{}, h: a.readMessages},
		{Name: "commands.create", Method: "POST", Path: "/v1/agents/{id}/command", Access: accessWrite, Created: true, Summary: "Send a command to an agent (queued while offline)",
			Req: commandRequest{}, Resp: commandCreatedView{}, h: a.createCommand},
		{Name: "commands.get", Method: "GET", Path: "/v1/agents/{id}/commands/{commandId}", Access: accessRead, Summary: "A command's status and result",
			Resp: commandView{}, h: a.getCommand},

		{Name: "services.update", Method: "PATCH", Path: "/v1/services/{id}", Access: accessWrite, Summary: "Change a service",
			Req: patchServiceRequest{}, Resp: serviceView{}, h: a.patchService},
		{Name: "services.check", Method: "POST", Path: "/v1/services/{id}/check", Access: accessWrite, Summary: "Run a diagnostic from the service's agent",
			Resp: diagnosticView{}, h: a.checkService},
		{Name: "services.diagnostics", Method: "GET", Path: "/v1/services/{id}/diagnostics", Access: accessRead, List: true, Summary: "Diagnostic history, newest first",
			Resp: diagnosticView{}, h: a.listDiagnostics},
		{Name: "services.reach", Method: "POST", Path: "/v1/services/{id}/reach", Access: accessWrite, Summary: "Check the service from another agent through the edge",
			Req: reachRequest{}, Resp: diagnosticView{}, h: a.reachService},
		{Name: "services.healthConfig", Method: "PATCH", Path: "/v1/services/{id}/health-config", Access: accessWrite, Summary: "Configure health monitoring",
			Req: healthConfigRequest{}, Resp: healthConfigView{}, h: a.patchHealthConfig},
		{Name: "services.public", Method: "PATCH", Path: "/v1/services/{id}/public", Access: accessWrite, Summary: "Toggle public access (subdomain)",
			Req: publicRequest{}, Resp: publicView{}, h: a.setPublic},

		{Name: "tunnels.list", Method: "GET", Path: "/v1/tunnels", Access: accessRead, List: true, Summary: "List tunnels", Resp: tunnelView{}, h: a.listTunnels},
		{Name: "tunnels.get", Method: "GET", Path: "/v1/tunnels/{id}", Access: accessRead, Summary: "Get a tunnel", Resp: tunnelView{}, h: a.getTunnel},
		{Name: "tunnels.create", Method: "POST", Path: "/v1/tunnels", Access: accessWrite, Created: true, Summary: "Create a tunnel from host:port",
			Req: createTunnelRequest{}, Resp: tunnelView{}, h: a.createTunnel},
		{Name: "tunnels.update", Method: "PATCH", Path: "/v1/tunnels/{id}", Access: accessWrite, Summary: "Rename, pause or resume a tunnel",
			Req: patchTunnelRequest{}, Resp: tunnelView{}, h: a.patchTunnel},
		{Name: "tunnels.delete", Method: "DELETE", Path: "/v1/tunnels/{id}", Access: accessWrite, Summary: "Delete a tunnel (its service)",
			Resp: deleteServiceResponse{}, h: a.deleteService},
		{Name: "tunnels.share", Method: "POST", Path: "/v1/tunnels/{id}/share", Access: accessWrite, Created: true, Summary: "Create a share link for a tunnel",
			Req: createShareRequest{}, Resp: shareCreatedView{}, h: a.shareTunnel},
		{Name: "tunnels.connections", Method: "GET", Path: "/v1/tunnels/{id}/connections", Access: accessRead, List: true, Summary: "Live connections through a tunnel",
			Resp: connectionView{}, h: a.tunnelConnections},

		{Name: "apiKeys.create", Method: "POST", Path: "/v1/api-keys", Access: accessAdmin, Created: true, Summary: "Create an API key (shown once)",
			Req: createKeyRequest{}, Resp: apiKeyCreatedView{}, h: a.createKey},
		{Name: "apiKeys.list", Method: "GET", Path: "/v1/api-keys", Access: accessAdmin, List: true, Summary: "List active API keys", Resp: apiKeyView{}, h: a.listKeys},
		{Name: "apiKeys.get", Method: "GET", Path: "/v1/api-keys/{id}", Access: accessAdmin, Summary: "Get an API key", Resp: apiKeyView{}, h: a.getKey},
		{Name: "apiKeys.ipRestrictions", Method: "PUT", Path: "/v1/api-keys/{id}/ip-restrictions", Access: accessAdmin, Summary: "Set a key's allowed IP ranges",
			Req: ipRestrictionsRequest{}, Resp: apiKeyView{}, h: a.setKeyIPs},
		{Name: "apiKeys.revoke", Method: "DELETE", Path: "/v1/api-keys/{id}", Access: accessAdmin, Summary: "Revoke an API key", Resp: map[string]any{}, h: a.revokeKey},

		{Name: "workspace.get", Method: "GET", Path: "/v1/workspace", Access: accessRead, Summary: "The key's workspace, usage and limits", Resp: workspaceView{}, h: a.getWorkspace},
		{Name: "workspaces.create", Method: "POST", Path: "/v1/workspaces", Access: accessAdmin, Created: true, Summary: "Create a tenant with its first admin key (default workspace admins)",
			Req: createWorkspaceRequest{}, Resp: workspaceCreatedView{}, h: a.createWorkspace},
		{Name: "status", Method: "GET", Path: "/v1/status", Access: accessRead, Summary: "Counts of agents, services, shares, edges", Resp: statusView{}, h: a.status},
		{Name: "audit.list", Method: "GET", Path: "/v1/audit", Access: accessRead, List: true, Query: []string{"type", "since"}, Summary: "Audit log, newest first",
			Resp: auditView{}, h: a.listAudit},

		{Name: "edges.create", Method: "POST", Path: "/v1/edges", Access: accessAdmin, Created: true, Summary: "Register an edge node (default workspace admins)",
			Req: createEdgeRequest{}, Resp: edgeCreatedView{}, h: a.createEdge},
		{Name: "edges.list", Method: "GET", Path: "/v1/edges", Access: accessAdmin, List: true, Summary: "List edge nodes", Resp: edgeView{}, h: a.listEdges},
		{Name: "edges.delete", Method: "DELETE", Path: "/v1/edges/{id}", Access: accessAdmin, Summary: "Delete an edge node (default workspace admins)",
			Resp: map[string]any{}, h: a.deleteEdge},
		{Name: "edges.config", Method: "GET", Path: "/v1/edges/config", Access: accessEdge, Summary: "Config stream (NDJSON) for an edge",
			Query: []string{"epoch", "version", "instance"}, raw: a.edgeConfig},
		{Name: "edges.agentInbox", Method: "GET", Path: "/v1/edges/agent-inbox", Access: accessEdge, Query: []string{"agentId"},
			Summary: "Pending commands and messages of a connected agent (marks them delivered)", Resp: config.AgentInbox{}, h: a.edgeInbox},
		{Name: "edges.report", Method: "POST", Path: "/v1/edges/report", Access: accessEdge, Summary: "Edge report: applied version, agents, access logs",
			Resp: reportResponse{}, h: a.edgeReport},
	}, append(a.pluginRoutes(), a.monitoringRoutes()...)...)
}
