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
func exportHandleRequest() int32 { return handleRequestWith(&wasmRequest, wasmHost{}, handler) }

var wasmRequest = Request{h: wasmHost{}}

//go:wasmexport validate_config
func exportValidateConfig() int32 { return validateConfig(wasmHost{}, validator) }

// wasmHost implements hostapi.Host with the imports.
type wasmHost struct{}

var _ hostapi.Host = wasmHost{}

func sp(s string) (unsafe.Pointer, int32) { return unsafe.Pointer(unsafe.StringData(s)), int32(len(s)) }

func bp(b []byte) (unsafe.Pointer, int32) {
	if len(b) == 0 {
		return nil, 0
	}
	return unsafe.Pointer(&b[0]), int32(len(b))
}

var getters = [...]func(unsafe.Pointer, int32) int32{
	hostapi.FieldConfig:   abiGetConfig,
	hostapi.FieldMethod:   abiGetMethod,
	hostapi.FieldPath:     abiGetPath,
	hostapi.FieldQuery:    abiGetQuery,
	hostapi.FieldHost:     abiGetHost,
	hostapi.FieldClientIP: abiGetClientIP,
	hostapi.FieldShareID:  abiGetShareID,
}

// appendGet appends a getter's value to dst, using dst's spare capacity first and growing it
// (one more host call) only when the value does not fit.
func appendGet(dst []byte, get func(buf unsafe.Pointer, limit int32) int32) ([]byte, bool) {
	free := dst[len(dst):cap(dst)]
	var p unsafe.Pointer
	if len(free) > 0 {
		p = unsafe.Pointer(&free[0])
	}
	n := get(p, int32(len(free)))
	if n < 0 {
		return dst, false
	}
	if int(n) <= len(free) {
		return dst[:len(dst)+int(n)], true
	}
	grown := make([]byte, len(dst), len(dst)+int(n))
	copy(grown, dst)
	free = grown[len(dst):cap(grown)]
	if m := get(unsafe.Pointer(&free[0]), n); m != n {
		return dst, false
	}
	return grown[:len(dst)+int(n)], true
}

func (wasmHost) AppendField(dst []byte, f hostapi.Field) ([]byte, bool) {
	return appendGet(dst, getters[f])
}

func (wasmHost) AppendHeader(dst []byte, name string) ([]byte, bool) {
	np, nn := sp(name)
	return appendGet(dst, func(buf unsafe.Pointer, limit int32) int32 { return abiGetHeader(np, nn, buf, limit) })
}

func (wasmHost) ConfigID() uint64      { return uint64(abiGetConfigID()) }
func (wasmHost) NowUnixMs() int64      { return abiNowUnixMs() }
func (wasmHost) SetError(m string)     { p, n := sp(m); abiSetError(p, n) }
func (wasmHost) Log(l int32, m string) { p, n := sp(m); abiLog(l, p, n) }

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

func (wasmHost) RateLimit(key []byte, limit, windowMs int32) bool {
	p, n := bp(key)
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
