package api

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"

	"github.com/valyala/fasthttp"

	"github.com/privateconnect/pc/control/store"
)

// FieldError is one entry of a validation error's details.
type FieldError struct {
	Field   string `json:"field"`
	Message string `json:"message"`
}

// Error is an error with what the client is told. Every handler error goes
// through [toError], the one place that decides status and message.
type Error struct {
	Status     int
	Message    string
	Details    []FieldError
	RetryAfter int // seconds, for 429
	cause      error
}

func (e *Error) Error() string {
	if e.cause != nil {
		return e.Message + ": " + e.cause.Error()
	}
	return e.Message
}

func (e *Error) Unwrap() error { return e.cause }

func newError(status int, format string, args ...any) *Error {
	return &Error{Status: status, Message: fmt.Sprintf(format, args...)}
}

func badRequest(format string, args ...any) *Error {
	return newError(fasthttp.StatusBadRequest, format, args...)
}

func invalidField(field, msg string) *Error {
	return &Error{Status: fasthttp.StatusBadRequest, Message: "invalid request: " + field + " " + msg,
		Details: []FieldError{{Field: field, Message: msg}}}
}

func notFound(what string) *Error { return newError(fasthttp.StatusNotFound, "%s not found", what) }

func unauthorized(msg string) *Error { return newError(fasthttp.StatusUnauthorized, "%s", msg) }

func forbidden(msg string) *Error { return newError(fasthttp.StatusForbidden, "%s", msg) }

func unavailable(msg string) *Error { return newError(fasthttp.StatusServiceUnavailable, "%s", msg) }

// toError maps any error to what the client sees; internal causes are
// logged here and never sent.
func toError(err error, log *slog.Logger, route string) *Error {
	var e *Error
	var nf *store.NotFoundError
	var ce *store.ConflictError
	switch {
	case errors.As(err, &e):
		return e
	case errors.As(err, &nf):
		return notFound(nf.Kind)
	case errors.Is(err, store.ErrNotFound):
		return notFound("resource")
	case errors.As(err, &ce):
		return &Error{Status: fasthttp.StatusConflict, Message: ce.Message, Details: []FieldError{{Field: ce.Field, Message: "already taken"}}}
	case errors.Is(err, store.ErrExhausted):
		log.Warn("resource exhausted", "route", route, "err", err)
		return unavailable("no free tunnel port is left; delete a service or widen the port range")
	case errors.Is(err, store.ErrUnavailable):
		log.Error("storage unavailable", "route", route, "err", err)
		return unavailable("storage is not available; try again later")
	case errors.Is(err, context.DeadlineExceeded):
		log.Warn("deadline exceeded", "route", route, "err", err)
		return newError(fasthttp.StatusGatewayTimeout, "the operation timed out")
	case errors.Is(err, context.Canceled):
		return unavailable("the server is shutting down")
	default:
		log.Error("internal error", "route", route, "err", err)
		return newError(fasthttp.StatusInternalServerError, "an internal error occurred")
	}
}

// reason is the envelope's "error" value for a status.
func reason(status int) string {
	switch status {
	case fasthttp.StatusRequestEntityTooLarge:
		return "Payload Too Large"
	default:
		return fasthttp.StatusMessage(status)
	}
}

type errorBody struct {
	Error      string       `json:"error"`
	Message    string       `json:"message"`
	StatusCode int          `json:"statusCode"`
	Details    []FieldError `json:"details,omitempty"`
	RetryAfter *int         `json:"retryAfter,omitempty"`
}

// writeError writes the error envelope.
func writeError(ctx *fasthttp.RequestCtx, e *Error) {
	b := errorBody{Error: reason(e.Status), Message: e.Message, StatusCode: e.Status, Details: e.Details}
	if e.Status == fasthttp.StatusTooManyRequests {
		ra := e.RetryAfter
		b.RetryAfter = &ra
		ctx.Response.Header.Set("Retry-After", strconv.Itoa(ra))
	}
	writeJSON(ctx, e.Status, b)
	if e.Status == fasthttp.StatusRequestEntityTooLarge { // the one reason of its own
		// The status line says what the envelope says ("413 Payload Too
		// Large", api-v1.md, not fasthttp's "Request Entity Too Large").
		ctx.Response.Header.SetStatusMessage([]byte(b.Error))
	}
}
