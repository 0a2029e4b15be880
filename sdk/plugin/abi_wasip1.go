//go:build wasip1

package plugin

import (
	"unsafe"

	"github.com/privateconnect/pc/sdk/plugin/internal/hostapi"
)

// The ABI v1 imports (module "policy"). Lengths are i32; getters return the full length of
// the value, or -1 when it is missing, and write it only when it fits.

//go:wasmimport policy get_config
func abiGetConfig(buf unsafe.Pointer, limit int32) int32

//go:wasmimport policy get_config_id
func abiGetConfigID() int64

//go:wasmimport policy get_method
func abiGetMethod(buf unsafe.Pointer, limit int32) int32

//go:wasmimport policy get_path
func abiGetPath(buf unsafe.Pointer, limit int32) int32

//go:wasmimport policy get_query
func abiGetQuery(buf unsafe.Pointer, limit int32) int32

//go:wasmimport policy get_host
func abiGetHost(buf unsafe.Pointer, limit int32) int32

//go:wasmimport policy get_client_ip
func abiGetClientIP(buf unsafe.Pointer, limit int32) int32

//go:wasmimport policy get_header
func abiGetHeader(name unsafe.Pointer, nameLen int32, buf unsafe.Pointer, limit int32) int32

//go:wasmimport policy get_share_id
func abiGetShareID(buf unsafe.Pointer, limit int32) int32

//go:wasmimport policy now_unix_ms
func abiNowUnixMs() int64

//go:wasmimport policy set_request_header
func abiSetRequestHeader(name unsafe.Pointer, nameLen int32, value unsafe.Pointer, valueLen int32)

//go:wasmimport policy remove_request_header
func abiRemoveRequestHeader(name unsafe.Pointer, nameLen int32)

//go:wasmimport policy set_response_header
func abiSetResponseHeader(name unsafe.Pointer, nameLen int32, value unsafe.Pointer, valueLen int32)

//go:wasmimport policy respond
func abiRespond(status int32, body unsafe.Pointer, bodyLen int32)

//go:wasmimport policy rate_limit
func abiRateLimit(key unsafe.Pointer, keyLen int32, limit int32, windowMs int32) int32

//go:wasmimport policy hmac_sha256
func abiHMACSHA256(key unsafe.Pointer, keyLen int32, msg unsafe.Pointer, msgLen int32, out unsafe.Pointer)

//go:wasmimport policy verify_signature
func abiVerifySignature(alg unsafe.Pointer, algLen int32, key unsafe.Pointer, keyLen int32, msg unsafe.Pointer, msgLen int32, sig unsafe.Pointer, sigLen int32) int32

//go:wasmimport policy set_error
func abiSetError(msg unsafe.Pointer, msgLen int32)

//go:wasmimport policy log
func abiLog(level int32, msg unsafe.Pointer, msgLen int32)

// The guest exports.

//go:wasmexport policy_abi_version
func exportABIVersion() int32 { return ABIVersion }

//go:wasmexport handle_request
func exportHandleRequest() int32 { return handleRequest(wasmHost{}, handler) }

//go:wasmexport validate_config
func exportValidateConfig() int32 { return validateConfig(wasmHost{}, validator) }

// wasmHost implements hostapi.Host with the imports. Wasm is single-threaded and a call never
// yields inside an import, so one scratch buffer serves every getter.
type wasmHost struct{}

var _ hostapi.Host = wasmHost{}

var scratch [2048]byte

func sp(s string) (unsafe.Pointer, int32) { return unsafe.Pointer(unsafe.StringData(s)), int32(len(s)) }

func bp(b []byte) (unsafe.Pointer, int32) {
	if len(b) == 0 {
		return nil, 0
	}
	return unsafe.Pointer(&b[0]), int32(len(b))
}

// get runs a getter with the scratch buffer, retrying with an exact-size buffer when the
// value is larger.
func get(f func(unsafe.Pointer, int32) int32) ([]byte, bool) {
	n := f(unsafe.Pointer(&scratch[0]), int32(len(scratch)))
	if n < 0 {
		return nil, false
	}
	if int(n) <= len(scratch) {
		return scratch[:n], true
	}
	buf := make([]byte, n)
	if m := f(unsafe.Pointer(&buf[0]), n); m < 0 || m > n {
		return nil, m >= 0
	}
	return buf, true
}

func getString(f func(unsafe.Pointer, int32) int32) string {
	b, _ := get(f)
	return string(b)
}

func (wasmHost) Config() []byte {
	b, ok := get(abiGetConfig)
	if !ok || len(b) == 0 {
		return []byte("{}")
	}
	return append([]byte(nil), b...)
}

func (wasmHost) ConfigID() uint64      { return uint64(abiGetConfigID()) }
func (wasmHost) Method() string        { return getString(abiGetMethod) }
func (wasmHost) Path() string          { return getString(abiGetPath) }
func (wasmHost) Query() string         { return getString(abiGetQuery) }
func (wasmHost) Host() string          { return getString(abiGetHost) }
func (wasmHost) ClientIP() string      { return getString(abiGetClientIP) }
func (wasmHost) ShareID() string       { return getString(abiGetShareID) }
func (wasmHost) NowUnixMs() int64      { return abiNowUnixMs() }
func (wasmHost) SetError(m string)     { p, n := sp(m); abiSetError(p, n) }
func (wasmHost) Log(l int32, m string) { p, n := sp(m); abiLog(l, p, n) }

func (wasmHost) Header(name string) (string, bool) {
	np, nn := sp(name)
	n := abiGetHeader(np, nn, unsafe.Pointer(&scratch[0]), int32(len(scratch)))
	if n < 0 {
		return "", false
	}
	if int(n) <= len(scratch) {
		return string(scratch[:n]), true
	}
	buf := make([]byte, n)
	if m := abiGetHeader(np, nn, unsafe.Pointer(&buf[0]), n); m != n {
		return "", false
	}
	return unsafe.String(&buf[0], n), true
}

func (wasmHost) SetRequestHeader(name, value string) {
	np, nn := sp(name)
	vp, vn := sp(value)
	abiSetRequestHeader(np, nn, vp, vn)
}

func (wasmHost) RemoveRequestHeader(name string) {
	np, nn := sp(name)
	abiRemoveRequestHeader(np, nn)
}

func (wasmHost) SetResponseHeader(name, value string) {
	np, nn := sp(name)
	vp, vn := sp(value)
	abiSetResponseHeader(np, nn, vp, vn)
}

func (wasmHost) Respond(status int, body []byte) {
	p, n := bp(body)
	abiRespond(int32(status), p, n)
}

func (wasmHost) RateLimit(key string, limit, windowMs int32) bool {
	p, n := sp(key)
	return abiRateLimit(p, n, limit, windowMs) == 1
}

func (wasmHost) HMACSHA256(key, msg []byte) (out [32]byte) {
	kp, kn := bp(key)
	mp, mn := bp(msg)
	abiHMACSHA256(kp, kn, mp, mn, unsafe.Pointer(&out[0]))
	return out
}

func (wasmHost) VerifySignature(alg string, key, msg, sig []byte) bool {
	ap, an := sp(alg)
	kp, kn := bp(key)
	mp, mn := bp(msg)
	sgp, sgn := bp(sig)
	return abiVerifySignature(ap, an, kp, kn, mp, mn, sgp, sgn) == 1
}
