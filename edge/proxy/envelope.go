package proxy

import "github.com/valyala/fasthttp"

// WriteError answers ctx with status and the API's error envelope
// ({"error","message","statusCode"}) and the security headers of every
// answer the edge writes itself: the share handler's own errors, and those
// the edge's HTTP server answers before any handler runs (a malformed
// request, headers too large).
func WriteError(ctx *fasthttp.RequestCtx, status int, msg string) {
	writeError(ctx, status, msg)
}
