package edge

import (
	"encoding/json"
	"time"

	"github.com/valyala/fasthttp"
)

// adminHandler serves /health on the admin listener. Its activeRequests
// are the share requests in flight, those whose answer is still streaming
// included (proxy.Proxy.Active).
func (s *Server) adminHandler(ctx *fasthttp.RequestCtx) {
	switch string(ctx.Path()) {
	case "/health":
		t := s.sync.Table()
		shares, services, agents := t.Counts()
		status := "ok"
		code := fasthttp.StatusOK
		switch {
		case s.sync.Refused():
			// Deleted: out of every load balancer.
			status, code = "refused", fasthttp.StatusServiceUnavailable
		case s.sync.ReplacedBy() != "":
			// Another process serves this edge; this one drains.
			status, code = "replaced", fasthttp.StatusServiceUnavailable
		case s.draining.Load():
			// Stopping: out of the load balancers while what is in flight
			// finishes (new connections are refused already).
			status, code = "draining", fasthttp.StatusServiceUnavailable
		case t.Version == 0 && t.Epoch == "":
			status, code = "starting", fasthttp.StatusServiceUnavailable
		}
		body, _ := json.Marshal(map[string]any{"success": code == 200, "data": map[string]any{
			"status": status, "version": Version, "edgeId": s.sync.EdgeID(),
			"configVersion": t.Version, "configConnected": s.sync.Connected(), "tokenRefused": s.sync.TokenRefused(),
			"shares": shares, "services": services, "agents": agents,
			"connectedAgents": len(s.registry.Connected()), "activeRequests": s.proxy.Active(),
			"uptimeSeconds": int(time.Since(s.start).Seconds()),
		}})
		ctx.SetStatusCode(code)
		ctx.SetContentType("application/json")
		ctx.SetBody(body)
	case "/metrics":
		s.metrics.handler(ctx)
	default:
		ctx.SetStatusCode(fasthttp.StatusNotFound)
		ctx.SetContentType("application/json")
		ctx.SetBodyString(`{"error":"Not Found","message":"Not found","statusCode":404}`)
	}
}
