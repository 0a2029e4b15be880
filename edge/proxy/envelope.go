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

// BodyTooLarge is the message of the 413 given to a request body over the
// edge's limit (Config.MaxBodyBytes).
const BodyTooLarge = "The request body is larger than this edge accepts"

// RequestTimeout is the message of the 408 given to a request whose head
// took longer than the edge allows, or whose body went too long without a
// byte.
const RequestTimeout = "The request was not received in time"
