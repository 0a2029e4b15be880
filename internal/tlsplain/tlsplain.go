// Package tlsplain answers plain HTTP sent to a TLS listener the way
// net/http does: "400 Bad Request" in clear, "Client sent an HTTP request to
// an HTTPS server.", instead of the empty reply a fasthttp server over a
// tls.Listener gives (its handshake fails, the connection closes).
package tlsplain

import (
	"crypto/tls"
	"errors"
	"io"
	"time"

	"github.com/valyala/fasthttp"
)

// Response is what a plain-HTTP client gets (net/http's words).
const Response = "HTTP/1.0 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\nClient sent an HTTP request to an HTTPS server.\n"

// Answer writes Response on the raw connection when err is a TLS handshake
// that received the start of a plain HTTP request, and reports whether it
// did. The connection is closed either way by its server.
func Answer(err error) bool {
	var rh tls.RecordHeaderError
	if !errors.As(err, &rh) || rh.Conn == nil || !looksLikeHTTP(rh.RecordHeader) {
		return false
	}
	_ = rh.Conn.SetWriteDeadline(time.Now().Add(time.Second))
	_, _ = io.WriteString(rh.Conn, Response)
	_ = rh.Conn.Close()
	return true
}

// ErrorHandler wraps a fasthttp.Server's ErrorHandler (nil: fasthttp's
// default) with Answer.
func ErrorHandler(next func(*fasthttp.RequestCtx, error)) func(*fasthttp.RequestCtx, error) {
	return func(ctx *fasthttp.RequestCtx, err error) {
		if Answer(err) {
			return
		}
		if next != nil {
			next(ctx, err)
			return
		}
		ctx.Error("Bad Request", fasthttp.StatusBadRequest)
	}
}

// looksLikeHTTP reports whether a TLS record header is the start of an
// HTTP/1 request (net/http's tlsRecordHeaderLooksLikeHTTP).
func looksLikeHTTP(hdr [5]byte) bool {
	switch string(hdr[:]) {
	case "GET /", "HEAD ", "POST ", "PUT /", "OPTIO", "DELET", "PATCH", "CONNE", "TRACE":
		return true
	}
	return false
}
