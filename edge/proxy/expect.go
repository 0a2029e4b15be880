package proxy

import (
	"time"

	"github.com/valyala/fasthttp"
)

// Expect decides a request that asks `Expect: 100-continue` from its head
// alone, before the visitor sends the body (fasthttp.Server.ExpectHandler):
// it runs the checks of Handler that need nothing but the routing table and
// the agent sessions (the share exists, is not revoked, expired or used up,
// its tunnel is not paused and its agent is online; a public service
// exists; the method is not CONNECT or TRACE) and returns 100 when they
// pass. TestExpectAnswersAsHandler keeps them Handler's. Otherwise it writes the answer
// Handler would give (the error envelope, or the redirect of
// /shared/<token>), records the access as Handler does, and returns its
// status: fasthttp then sends it instead of 100 Continue and closes the
// connection, so no body is uploaded for nothing.
//
// The per-share rate limit and the policy chain are left to Handler, after
// the 100: each counts the request it sees (a rate-limited request, a
// plugin's own limit), and a password or IP check would have to run twice.
// A request they refuse is answered without its body being read, and
// fasthttp closes the connection when more than 256 KiB of it is left.
func (p *Proxy) Expect(ctx *fasthttp.RequestCtx) int {
	start := time.Now()
	t := p.cfg.Table()
	tg, status, msg := p.resolve(ctx, t)
	if status == fasthttp.StatusPermanentRedirect {
		ctx.Redirect(msg, status)
		return status
	}
	if status != 0 {
		writeError(ctx, status, msg)
		p.logAccess(ctx, tg.share, start, p.clientIP(ctx), "denied", "", 0)
		return status
	}
	if m := ctx.Method(); string(m) == fasthttp.MethodConnect || string(m) == fasthttp.MethodTrace {
		ctx.Response.Header.Set("Allow", "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS")
		writeError(ctx, fasthttp.StatusMethodNotAllowed, "Method not allowed through a share link")
		p.logAccess(ctx, tg.share, start, p.clientIP(ctx), "denied", "method", 0)
		return fasthttp.StatusMethodNotAllowed
	}
	if _, ok := p.cfg.Sessions.Get(tg.svc.AgentID); !ok {
		writeError(ctx, fasthttp.StatusServiceUnavailable, "The service is offline: its agent is not connected")
		p.logAccess(ctx, tg.share, start, p.clientIP(ctx), "allowed", "", 0)
		return fasthttp.StatusServiceUnavailable
	}
	if share := tg.share; share != nil && share.MaxUses > 0 && p.uses(share).Load() >= share.MaxUses {
		p.usedUp(ctx, share, start, p.clientIP(ctx))
		return fasthttp.StatusGone
	}
	return fasthttp.StatusContinue
}
