package proxy

import (
	"time"

	"github.com/valyala/fasthttp"
)

// Expect decides a request that asks `Expect: 100-continue` from its head
// alone, before the visitor sends the body (fasthttp.Server.ExpectHandler):
// it runs Handler's checks that need nothing but the head, the routing
// table and the agent sessions (admit, then the share's uses) and returns
// 100 when they pass. Otherwise it writes the answer Handler would give
// (the error envelope, or the redirect of /shared/<token>), records the
// access as Handler does, and returns its status: fasthttp then sends it
// instead of 100 Continue and closes the connection, so no body is
// uploaded for nothing. TestExpectAnswersAsHandler keeps the two alike.
//
// The per-share rate limit and the policy chain are left to Handler, after
// the 100: each counts the request it sees (a rate-limited request, a
// plugin's own limit), and a password or IP check would have to run twice.
// A request they refuse is answered without its body being read, and
// fasthttp closes the connection when more than 256 KiB of it is left.
func (p *Proxy) Expect(ctx *fasthttp.RequestCtx) int {
	start := time.Now()
	clientIP := p.clientIP(ctx)
	tg, _, ok := p.admit(ctx, p.cfg.Table(), start, clientIP, nil)
	if !ok {
		return ctx.Response.StatusCode()
	}
	if share := tg.share; share != nil {
		if _, spent := p.spent(share); spent {
			p.usedUp(ctx, share, start, clientIP)
			return fasthttp.StatusGone
		}
	}
	return fasthttp.StatusContinue
}
