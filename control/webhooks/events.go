package webhooks

// EventType is one event a webhook can subscribe to.
type EventType struct {
	Name        string `json:"name"`
	Description string `json:"description"`
}

// Event names (shared/spec/api-v1.md, Webhooks).
const (
	TunnelCreated      = "tunnel.created"
	TunnelConnected    = "tunnel.connected"
	TunnelDisconnected = "tunnel.disconnected"
	TunnelDeleted      = "tunnel.deleted"
	ShareCreated       = "share.created"
	ShareAccessed      = "share.accessed"
	ShareDenied        = "share.denied"
	ShareRevoked       = "share.revoked"
	AgentRegistered    = "agent.registered"
	AgentConnected     = "agent.connected"
	AgentDisconnected  = "agent.disconnected"
	AgentDeleted       = "agent.deleted"
	ServiceHealthy     = "service.healthy"
	ServiceUnhealthy   = "service.unhealthy"
	EdgeConnected      = "edge.connected"
	EdgeDisconnected   = "edge.disconnected"
	PluginFailed       = "plugin.failed"

	// TestEvent is the event of POST /v1/webhooks/:id/test (never stored).
	TestEvent = "webhook.test"
)

// Events is the catalog served by GET /v1/webhooks/events, in the order of
// the spec.
var Events = []EventType{
	{TunnelCreated, "A tunnel (service) was created. data: serviceId, name, agentId, targetHost, targetPort, protocol."},
	{TunnelConnected, "The agent serving a tunnel opened a session to an edge, or the tunnel was created for an agent already connected to it: the tunnel is reachable through that edge. data: serviceId, name, agentId, edgeId."},
	{TunnelDisconnected, "The agent serving a tunnel lost its session to an edge. data: serviceId, name, agentId, edgeId."},
	{TunnelDeleted, "A tunnel (service) was deleted, directly or with its agent. data: serviceId, name, agentId."},
	{ShareCreated, "A share link was created. data: shareId, serviceId, name, expiresAt."},
	{ShareAccessed, "A share link was used. Aggregated: at most one event per share per minute, with counts. data: shareId, serviceId, windowStart, windowEnd, requests, bytesOut, byStatus, firstAccessAt, lastAccessAt."},
	{ShareDenied, "Requests through a share link were refused by its policy. Aggregated like share.accessed. data: shareId, serviceId, windowStart, windowEnd, requests, deniedBy (counts by check), byStatus, firstAccessAt, lastAccessAt."},
	{ShareRevoked, "A share link was revoked, directly or with its service or agent. data: shareId, serviceId, name."},
	{AgentRegistered, "An agent registered for the first time. data: agentId, name, label."},
	{AgentConnected, "An agent opened a tunnel session to an edge. data: agentId, edgeId, ipAddress."},
	{AgentDisconnected, "An agent's tunnel session to an edge ended. data: agentId, edgeId, ipAddress."},
	{AgentDeleted, "An agent was deleted with its services. data: agentId, name, services, shares."},
	{ServiceHealthy, "Health monitoring found a service healthy again. data: serviceId, status, previousStatus."},
	{ServiceUnhealthy, "Health monitoring found a service degraded or down. data: serviceId, status, previousStatus."},
	{EdgeConnected, "An edge node came online (config stream or report). Sent to every workspace subscribed. data: edgeId, name."},
	{EdgeDisconnected, "An edge node went offline (no stream and no report within the offline window). data: edgeId, name."},
	{PluginFailed, "A Wasm plugin of a share failed on an edge (error, trap or timeout). data: pluginId, shareId, edgeId, error, count, at."},
}

var known = func() map[string]bool {
	m := make(map[string]bool, len(Events))
	for _, e := range Events {
		m[e.Name] = true
	}
	return m
}()

// Known reports whether name is an event of the catalog.
func Known(name string) bool { return known[name] }
