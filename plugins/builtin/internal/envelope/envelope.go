// Package envelope answers visitors in the edge's JSON error envelope: the
// built-ins are the edge's own policies, and dataplane.md has the errors the
// edge writes itself be small JSON bodies in the API's envelope
// ({"error", "message", "statusCode"}), as its 404, 410 and 503 are.
package envelope

import (
	"strconv"

	"github.com/privateconnect/pc/sdk/plugin"
)

// Deny answers status with message.
func Deny(status int, message string) plugin.Result {
	return plugin.Respond(status, body(status, message, "")).WithHeader("Content-Type", "application/json")
}

// TooMany answers 429 with Retry-After and the retryAfter field of the
// API's 429 body.
func TooMany(retryAfter int, message string) plugin.Result {
	s := strconv.Itoa(retryAfter)
	return plugin.Respond(429, body(429, message, `,"retryAfter":`+s)).
		WithHeader("Content-Type", "application/json").
		WithHeader("Retry-After", s)
}

func body(status int, message, extra string) []byte {
	b := make([]byte, 0, 96+len(message))
	b = append(b, `{"error":`...)
	b = strconv.AppendQuote(b, statusText(status))
	b = append(b, `,"message":`...)
	b = strconv.AppendQuote(b, message)
	b = append(b, `,"statusCode":`...)
	b = strconv.AppendInt(b, int64(status), 10)
	b = append(b, extra...)
	return append(b, '}')
}

func statusText(status int) string {
	switch status {
	case 400:
		return "Bad Request"
	case 401:
		return "Unauthorized"
	case 403:
		return "Forbidden"
	case 429:
		return "Too Many Requests"
	}
	return "Error"
}
