package api

import (
	"github.com/valyala/fasthttp"
)

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

func (r *route) mutation() bool {
	return r.Method != fasthttp.MethodGet && r.Method != fasthttp.MethodHead
}

// table lists every route of the API.
func (a *API) table() []*route {
	return []*route{
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
			Req: shareRequest{}, Resp: shareCreatedView{}, h: a.createShare},
		{Name: "shares.listByService", Method: "GET", Path: "/v1/services/{id}/shares", Access: accessRead, List: true, Summary: "List a service's shares",
			Resp: shareView{}, h: a.listServiceShares},
		{Name: "shares.get", Method: "GET", Path: "/v1/shares/{id}", Access: accessRead, Summary: "Get a share", Resp: shareView{}, h: a.getShare},
		{Name: "shares.update", Method: "PATCH", Path: "/v1/shares/{id}", Access: accessWrite, Summary: "Change a share's policy",
			Req: shareRequest{}, Resp: shareView{}, h: a.patchShare},
		{Name: "shares.revoke", Method: "DELETE", Path: "/v1/shares/{id}", Access: accessWrite, Summary: "Revoke a share", Resp: shareView{}, h: a.deleteShare},
		{Name: "shared.info", Method: "GET", Path: "/v1/shared/{token}/info", Access: accessPublic, Summary: "Describe a share link to its visitor",
			Resp: sharedInfoView{}, h: a.sharedInfo},

		{Name: "edges.create", Method: "POST", Path: "/v1/edges", Access: accessAdmin, Created: true, Summary: "Register an edge node (default workspace admins)",
			Req: createEdgeRequest{}, Resp: edgeCreatedView{}, h: a.createEdge},
		{Name: "edges.list", Method: "GET", Path: "/v1/edges", Access: accessAdmin, List: true, Summary: "List edge nodes", Resp: edgeView{}, h: a.listEdges},
		{Name: "edges.delete", Method: "DELETE", Path: "/v1/edges/{id}", Access: accessAdmin, Summary: "Delete an edge node (default workspace admins)",
			Resp: map[string]any{}, h: a.deleteEdge},
		{Name: "edges.config", Method: "GET", Path: "/v1/edges/config", Access: accessEdge, Summary: "Config stream (NDJSON) for an edge",
			Query: []string{"epoch", "version"}, raw: a.edgeConfig},
		{Name: "edges.report", Method: "POST", Path: "/v1/edges/report", Access: accessEdge, Summary: "Edge report: applied version, agents, access logs",
			Resp: reportResponse{}, h: a.edgeReport},
	}
}
