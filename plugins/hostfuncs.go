package plugins

import (
	"context"
	"crypto/sha256"
	"fmt"
	"log/slog"
	"sync"
	"time"
	"unsafe"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"

	"github.com/privateconnect/pc/plugins/abi"
)

// Violations trap the call: the host function panics with an error wrapping ErrABIViolation,
// wazero turns the panic into the call's error, and the instance is discarded.
var (
	errOutOfBounds   = fmt.Errorf("%w: pointer/length out of guest memory", ErrABIViolation)
	errHeaderName    = fmt.Errorf("%w: invalid header name", ErrABIViolation)
	errHeaderValue   = fmt.Errorf("%w: invalid header value", ErrABIViolation)
	errHeaderBanned  = fmt.Errorf("%w: connection-level header may not be edited", ErrABIViolation)
	errTooManyEdits  = fmt.Errorf("%w: more than %d header edits in one call", ErrABIViolation, abi.MaxHeaderEdits)
	errStatus        = fmt.Errorf("%w: respond status outside 100-599", ErrABIViolation)
	errBodyTooLarge  = fmt.Errorf("%w: respond body larger than %d bytes", ErrABIViolation, abi.MaxBodyLen)
	errRateKey       = fmt.Errorf("%w: rate_limit key empty or longer than %d bytes", ErrABIViolation, abi.MaxRateLimitKeyLen)
	errRateWindow    = fmt.Errorf("%w: rate_limit window_ms outside 1..%d", ErrABIViolation, abi.MaxRateLimitWindowMs)
	errNoRespond     = fmt.Errorf("%w: RESPOND without respond", ErrABIViolation)
	errInterim       = fmt.Errorf("%w: RESPOND with an informational status, not a final response", ErrABIViolation)
	errSignatureSize = fmt.Errorf("%w: verify_signature key longer than %d bytes", ErrABIViolation, abi.MaxSignatureKeyLen)
)

type editKind uint8

const (
	editSetRequest editKind = iota
	editRemoveRequest
	editSetResponse
)

type headerEdit struct {
	kind  editKind
	name  string
	value string
}

// mem returns guest memory [ptr, ptr+n) or traps.
func mem(mod api.Module, ptr, n uint64) []byte {
	b, ok := mod.Memory().Read(uint32(ptr), uint32(n))
	if !ok {
		panic(errOutOfBounds)
	}
	return b
}

// put implements the getter convention: write v at (buf, limit) if it fits, return len(v).
func put(mod api.Module, buf, limit uint64, v string) uint64 {
	n := len(v)
	if n > 0 && int64(int32(limit)) >= int64(n) {
		copy(mem(mod, buf, uint64(n)), v)
	}
	return api.EncodeI32(int32(n))
}

func putBytes(mod api.Module, buf, limit uint64, v []byte) uint64 {
	n := len(v)
	if n > 0 && int64(int32(limit)) >= int64(n) {
		copy(mem(mod, buf, uint64(n)), v)
	}
	return api.EncodeI32(int32(n))
}

var missing = api.EncodeI32(abi.Missing)

type hostFunc struct {
	name string
	fn   api.GoModuleFunc
}

func i32(n int) []api.ValueType {
	p := make([]api.ValueType, n)
	for i := range p {
		p[i] = api.ValueTypeI32
	}
	return p
}

func valueTypes(v []abi.ValType) []api.ValueType {
	out := make([]api.ValueType, len(v))
	for i, t := range v {
		if t == abi.I64 {
			out[i] = api.ValueTypeI64
		} else {
			out[i] = api.ValueTypeI32
		}
	}
	return out
}

func requestGetter(field func(r *Request) string) api.GoModuleFunc {
	return func(ctx context.Context, mod api.Module, stack []uint64) {
		in := instOf(ctx)
		stack[0] = put(mod, stack[0], stack[1], field(in.req))
	}
}

// hostFuncs are the "policy" imports, registered stack-based (api.GoModuleFunc).
func (h *Host) hostFuncs() []hostFunc {
	return []hostFunc{
		{abi.ImportGetConfig, func(ctx context.Context, mod api.Module, stack []uint64) {
			in := instOf(ctx)
			cfg := in.config
			if len(cfg) == 0 {
				cfg = emptyConfig
			}
			stack[0] = putBytes(mod, stack[0], stack[1], cfg)
		}},
		{abi.ImportGetConfigID, func(ctx context.Context, _ api.Module, stack []uint64) {
			stack[0] = instOf(ctx).configID
		}},
		{abi.ImportGetMethod, requestGetter(func(r *Request) string { return r.Method })},
		{abi.ImportGetPath, requestGetter(func(r *Request) string { return r.Path })},
		{abi.ImportGetQuery, requestGetter(func(r *Request) string { return r.Query })},
		{abi.ImportGetHost, requestGetter(func(r *Request) string { return r.Host })},
		{abi.ImportGetClientIP, requestGetter(func(r *Request) string { return r.ClientIP })},
		{abi.ImportGetShareID, requestGetter(func(r *Request) string { return r.ShareID })},
		{abi.ImportGetHeader, func(ctx context.Context, mod api.Module, stack []uint64) {
			in := instOf(ctx)
			nameLen := uint32(stack[1])
			name := mem(mod, stack[0], uint64(nameLen))
			if in.req.Header == nil || len(name) == 0 || len(name) > abi.MaxHeaderNameLen {
				stack[0] = missing
				return
			}
			// A view of the guest's bytes, not a copy: Header keeps no name
			// (Request.Header), and the guest does not run during the call.
			v, ok := in.req.Header(unsafe.String(unsafe.SliceData(name), len(name)))
			if !ok {
				stack[0] = missing
				return
			}
			stack[0] = put(mod, stack[2], stack[3], v)
		}},
		{abi.ImportNowUnixMs, func(_ context.Context, _ api.Module, stack []uint64) {
			stack[0] = api.EncodeI64(time.Now().UnixMilli())
		}},
		{abi.ImportSetRequestHeader, func(ctx context.Context, mod api.Module, stack []uint64) {
			instOf(ctx).edit(mod, editSetRequest, stack)
		}},
		{abi.ImportRemoveRequestHeader, func(ctx context.Context, mod api.Module, stack []uint64) {
			instOf(ctx).edit(mod, editRemoveRequest, stack)
		}},
		{abi.ImportSetResponseHeader, func(ctx context.Context, mod api.Module, stack []uint64) {
			instOf(ctx).edit(mod, editSetResponse, stack)
		}},
		{abi.ImportRespond, func(ctx context.Context, mod api.Module, stack []uint64) {
			in := instOf(ctx)
			status := int32(stack[0])
			if status < abi.MinStatus || status > abi.MaxStatus {
				panic(errStatus)
			}
			n := uint32(stack[2])
			if n > abi.MaxBodyLen {
				panic(errBodyTooLarge)
			}
			in.body = append(in.body[:0], mem(mod, stack[1], uint64(n))...)
			in.status = int(status)
			in.responded = true
		}},
		{abi.ImportRateLimit, func(ctx context.Context, mod api.Module, stack []uint64) {
			in := instOf(ctx)
			n := uint32(stack[1])
			if n == 0 || n > abi.MaxRateLimitKeyLen {
				panic(errRateKey)
			}
			key := mem(mod, stack[0], uint64(n))
			limit := int32(stack[2])
			window := int32(stack[3])
			if window <= 0 || window > abi.MaxRateLimitWindowMs {
				panic(errRateWindow)
			}
			ok := h.limiter.allow(h.seed, in.p.pl.id, in.req.Tenant, key, int64(limit), int64(window), time.Now().UnixMilli())
			if ok {
				stack[0] = 1
			} else {
				stack[0] = 0
			}
		}},
		{abi.ImportHMACSHA256, func(_ context.Context, mod api.Module, stack []uint64) {
			key := mem(mod, stack[0], uint64(uint32(stack[1])))
			msg := mem(mod, stack[2], uint64(uint32(stack[3])))
			out := mem(mod, stack[4], abi.HMACSize)
			sum := hmacSHA256(key, msg)
			copy(out, sum[:])
		}},
		{abi.ImportVerifySignature, func(_ context.Context, mod api.Module, stack []uint64) {
			alg := mem(mod, stack[0], uint64(uint32(stack[1])))
			if uint32(stack[3]) > abi.MaxSignatureKeyLen {
				panic(errSignatureSize)
			}
			key := mem(mod, stack[2], uint64(uint32(stack[3])))
			msg := mem(mod, stack[4], uint64(uint32(stack[5])))
			sig := mem(mod, stack[6], uint64(uint32(stack[7])))
			if h.keys.verify(alg, key, msg, sig) {
				stack[0] = 1
			} else {
				stack[0] = 0
			}
		}},
		{abi.ImportSetError, func(ctx context.Context, mod api.Module, stack []uint64) {
			in := instOf(ctx)
			n := min(uint32(stack[1]), abi.MaxErrorLen)
			in.errMsg = append(in.errMsg[:0], mem(mod, stack[0], uint64(n))...)
		}},
		{abi.ImportLog, func(ctx context.Context, mod api.Module, stack []uint64) {
			in := instOf(ctx)
			n := min(uint32(stack[2]), abi.MaxLogLen)
			msg := mem(mod, stack[1], uint64(n))
			in.p.pl.guestLog(int32(stack[0]), msg)
		}},
	}
}

var emptyConfig = []byte("{}")

// instantiatePolicyModule registers the "policy" host module in rt.
func (h *Host) instantiatePolicyModule(ctx context.Context, rt wazero.Runtime) error {
	b := rt.NewHostModuleBuilder(abi.ModuleName)
	for _, f := range h.hostFuncs() {
		sig, ok := abi.LookupImport(f.name)
		if !ok {
			return fmt.Errorf("host function %s not in the ABI", f.name)
		}
		b = b.NewFunctionBuilder().
			WithGoModuleFunction(f.fn, valueTypes(sig.Params), valueTypes(sig.Results)).
			WithName(f.name).
			Export(f.name)
	}
	_, err := b.Instantiate(ctx)
	return err
}

// edit validates and records a header edit of the current call.
func (in *instance) edit(mod api.Module, kind editKind, stack []uint64) {
	name := mem(mod, stack[0], uint64(uint32(stack[1])))
	if !abi.ValidHeaderName(name) {
		panic(errHeaderName)
	}
	var value []byte
	if kind != editRemoveRequest {
		n := uint32(stack[3])
		if n > abi.MaxHeaderValueLen {
			panic(errHeaderValue)
		}
		value = mem(mod, stack[2], uint64(n))
		if !abi.ValidHeaderValue(value) {
			panic(errHeaderValue)
		}
	}
	if len(in.edits) >= abi.MaxHeaderEdits {
		panic(errTooManyEdits)
	}
	ns := headerName(name)
	if abi.HeaderForbidden(ns) {
		panic(errHeaderBanned)
	}
	in.edits = append(in.edits, headerEdit{kind: kind, name: ns, value: string(value)})
}

// headerName returns name as a string to keep (a header edit's), without allocating for
// common header names.
func headerName(b []byte) string {
	if s, ok := commonHeaders[string(b)]; ok {
		return s
	}
	return string(b)
}

var commonHeaders = func() map[string]string {
	m := map[string]string{}
	for _, s := range []string{
		"Accept", "Accept-Encoding", "Accept-Language", "Authorization", "Cache-Control",
		"Content-Type", "Cookie", "Location", "Origin", "Referer", "Retry-After", "Set-Cookie",
		"User-Agent", "WWW-Authenticate", "X-Api-Key", "X-Forwarded-For", "X-Forwarded-Host",
		"X-Forwarded-Proto", "X-Real-Ip", "X-Request-Id", "X-Share-Id", "X-User",
		"Content-Security-Policy", "X-Frame-Options", "X-Content-Type-Options",
		"Strict-Transport-Security", "Referrer-Policy", "Vary",
	} {
		m[s] = s
		lower := []byte(s)
		for i, c := range lower {
			if 'A' <= c && c <= 'Z' {
				lower[i] = c + 'a' - 'A'
			}
		}
		m[string(lower)] = string(lower)
	}
	return m
}()

// guestLog writes a guest log line (log import) if the plugin's log budget allows.
func (pl *plugin) guestLog(level int32, msg []byte) {
	if !pl.guestLogs.allow() {
		return
	}
	var l slog.Level
	switch level {
	case abi.LogDebug:
		l = slog.LevelDebug
	case abi.LogInfo:
		l = slog.LevelInfo
	case abi.LogWarn:
		l = slog.LevelWarn
	default:
		l = slog.LevelError
	}
	log := pl.host.log
	if !log.Enabled(context.Background(), l) {
		return
	}
	attrs := []slog.Attr{slog.String("plugin", pl.id), slog.String("source", "guest")}
	if d := pl.guestLogs.takeDropped(); d > 0 {
		attrs = append(attrs, slog.Int64("dropped", d))
	}
	log.LogAttrs(context.Background(), l, string(msg), attrs...)
}

var hmacBufPool = sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}

// hmacSHA256 is HMAC-SHA256 (RFC 2104) without the allocations of
// crypto/hmac.New: guests such as the password built-in call it on every
// request. sha256.Sum256 over pooled buffers keeps it allocation-free.
func hmacSHA256(key, msg []byte) [sha256.Size]byte {
	const block = 64
	if len(key) > block {
		k := sha256.Sum256(key)
		key = k[:]
	}
	var pad [block]byte
	copy(pad[:], key)
	for i := range pad {
		pad[i] ^= 0x36
	}
	bp := hmacBufPool.Get().(*[]byte)
	buf := append(append((*bp)[:0], pad[:]...), msg...)
	inner := sha256.Sum256(buf)
	if cap(buf) <= 64<<10 {
		*bp = buf[:0]
		hmacBufPool.Put(bp)
	}
	var outer [block + sha256.Size]byte
	for i := range pad {
		outer[i] = pad[i] ^ 0x36 ^ 0x5c
	}
	copy(outer[block:], inner[:])
	return sha256.Sum256(outer[:])
}
