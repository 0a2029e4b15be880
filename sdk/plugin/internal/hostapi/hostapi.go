// Package hostapi is the seam between the SDK's plugin logic and the host it runs on: the
// ABI v1 imports when compiled to wasip1, or plugintest's in-process fake for unit tests.
package hostapi

// Host is ABI v1 ("policy" imports) in Go terms. Getters return ok=false for a missing value.
type Host interface {
	// AppendField appends a request field (or the config) to dst.
	AppendField(dst []byte, f Field) ([]byte, bool)
	// AppendHeader appends a header's value to dst.
	AppendHeader(dst []byte, name string) ([]byte, bool)
	ConfigID() uint64
	NowUnixMs() int64
	SetRequestHeader(name, value string)
	RemoveRequestHeader(name string)
	SetResponseHeader(name, value string)
	Respond(status int, body []byte)
	RateLimit(key []byte, limit, windowMs int32) bool
	HMACSHA256(key, msg []byte) [32]byte
	VerifySignature(alg string, key, msg, sig []byte) bool
	SetError(msg string)
	Log(level int32, msg string)
}

// Field names a getter.
type Field int

const (
	FieldConfig Field = iota
	FieldMethod
	FieldPath
	FieldQuery
	FieldHost
	FieldClientIP
	FieldShareID
)

// Hooks are set by package plugin's init so that plugintest can drive the same dispatch code
// the Wasm exports use.
var (
	// HandleRequest runs handler (a func(*plugin.Request) plugin.Result, or nil for the one
	// registered with plugin.Handle) against h and returns the ABI decision code.
	HandleRequest func(h Host, handler any) int32
	// ValidateConfig runs validator (a func([]byte) error, or nil for the registered one)
	// and returns validate_config's code.
	ValidateConfig func(h Host, validator any) int32
)
