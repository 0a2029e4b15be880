// Package abi is the normative definition of the Private Connect access-control plugin ABI,
// version 1. It is a public contract: third parties write plugins against it in any language
// that compiles to WebAssembly. The host (package plugins), the Go SDK (sdk/plugin) and the
// conformance tests share the constants declared here. The package uses the standard library
// only.
//
// # Model
//
// A plugin is a WebAssembly module that decides, for one HTTP request arriving at a share link,
// whether the request goes through (possibly with changed headers) or gets a response from the
// edge (deny, redirect, login challenge). The host keeps a bounded, pre-warmed pool of
// instances per module; an instance serves many shares with different configs, one call at a
// time. A call sees exactly one request and one attachment config; nothing the guest keeps in
// memory between calls may be trusted to belong to the same share, except data it caches by
// [ImportGetConfigID].
//
// # Guest exports
//
//	export               signature       meaning
//	memory               memory          the guest's linear memory (exactly one, exported as "memory")
//	policy_abi_version   () -> i32       must return 1 (Version)
//	handle_request       () -> i32       0 = ALLOW, 1 = RESPOND, anything else = ERROR
//	validate_config      () -> i32       optional: 0 = config valid; non-zero = invalid, reason via set_error
//	_initialize          ()              optional: WASI reactor initialisation (Go -buildmode=c-shared);
//	                                     the host calls it once per instance before anything else
//
// Other exports are ignored. handle_request and validate_config take no arguments: the request
// and the config are pulled through the getters below.
//
// # Host imports, module "policy"
//
// All integers are i32 unless noted. Strings and byte ranges are (ptr, len) pairs in the
// guest's memory. Getters follow one convention: the guest passes a buffer (buf, limit); the
// host returns the full length of the value and writes it at buf only if it fits
// (len <= limit); a guest can therefore call with limit = 0 to learn the size first. A missing
// value returns -1 ([Missing]). Nothing is NUL-terminated.
//
//	import                 signature                                                 meaning
//	get_config             (buf, limit) -> i32                                       this attachment's config, JSON ("{}" when none)
//	get_config_id          () -> i64                                                 id of (plugin, config): equal configs give equal ids
//	get_method             (buf, limit) -> i32                                       request method
//	get_path               (buf, limit) -> i32                                       path as the service sees it (after the share token), no query
//	get_query              (buf, limit) -> i32                                       raw query string without "?" ("" when none)
//	get_host               (buf, limit) -> i32                                       Host header
//	get_client_ip          (buf, limit) -> i32                                       visitor IP, text form (IPv4 or IPv6)
//	get_header             (name, name_len, buf, limit) -> i32                       header value, case-insensitive name; several values joined by ", "
//	get_share_id           (buf, limit) -> i32                                       the share's id
//	now_unix_ms            () -> i64                                                 wall clock, milliseconds since the Unix epoch
//	set_request_header     (name, name_len, value, value_len)                        set a header on the request forwarded to the service
//	remove_request_header  (name, name_len)                                          remove a header from the forwarded request
//	set_response_header    (name, name_len, value, value_len)                        set a header on the visitor's response (ALLOW and RESPOND)
//	respond                (status, body, body_len)                                  the response for RESPOND; status 100-599, final 200-599
//	rate_limit             (key, key_len, limit, window_ms) -> i32                   shared counter: 1 = within the limit (counted), 0 = over
//	hmac_sha256            (key, key_len, msg, msg_len, out)                         writes the 32-byte HMAC-SHA256 at out
//	verify_signature       (alg, alg_len, key, key_len, msg, msg_len, sig, sig_len) -> i32   1 = valid, 0 = anything else
//	set_error              (msg, msg_len)                                            reason for ERROR or an invalid config (logged, never shown to visitors)
//	log                    (level, msg, msg_len)                                     0 debug, 1 info, 2 warn, 3 error; rate-limited
//
// Details that are part of the contract:
//
//   - get_config_id is unique per host process for a (plugin id, config bytes) pair and stable
//     for the life of the process; it is a keyed hash, so ids cannot be forged by choosing a
//     config. It is not stable across host restarts; guests must not persist it.
//   - Header edits accumulate over the whole policy chain. A later set of the same name
//     (case-insensitive) replaces an earlier one; remove_request_header cancels earlier sets of
//     that name and set_request_header cancels earlier removals, so the result does not depend
//     on the order in which the edge applies them. Edits made by a call that ends in ERROR are
//     dropped.
//   - On the edge, get_path and get_header describe the request the service gets. A path with a
//     NUL or a "." or ".." segment with path parameters ("..;") never reaches a plugin (the edge
//     answers 400). get_header answers [Missing] for a header the service never gets from the
//     visitor: hop-by-hop headers (Connection, Upgrade but on a WebSocket upgrade, Keep-Alive,
//     TE, Trailer, Transfer-Encoding, every Proxy-*, those Connection names) and those the edge
//     sets itself or refuses from visitors (X-Forwarded-*, Forwarded, X-Real-Ip, X-Share-Id,
//     X-Original-Url, ...; get_client_ip, get_host and get_share_id give the edge's values).
//   - Header names must be HTTP tokens of at most [MaxHeaderNameLen] bytes, values at most
//     [MaxHeaderValueLen] bytes without CR, LF or NUL; at most [MaxHeaderEdits] edits per call.
//     Editing a connection-level header ([ForbiddenHeaders]) is not allowed. Any violation, a
//     body larger than [MaxBodyLen], a status outside 100-599, returning RESPOND without calling
//     respond, or a return code other than 0 and 1 makes the call an ERROR.
//   - respond accepts 100-599, but the status RESPOND answers with must be a final one
//     ([MinFinalStatus]-599): returning RESPOND while the last respond set an informational
//     status (1xx: 100 Continue, 101 Switching Protocols...) makes the call an ERROR, so the
//     visitor gets 500, not an interim response that no final one would follow.
//   - rate_limit keys are scoped by plugin id and window on the host, so plugins cannot touch
//     each other's counters; a key is at most [MaxRateLimitKeyLen] bytes, window_ms is
//     1..[MaxRateLimitWindowMs], limit <= 0 always answers 0. The window is sliding,
//     approximated from two fixed windows aligned to multiples of window_ms since the Unix
//     epoch (so a guest can compute a Retry-After).
//   - verify_signature: alg is one of [AlgHS256], [AlgRS256], [AlgES256], [AlgEdDSA]. For HS256
//     key is the raw secret; otherwise a PEM block ("PUBLIC KEY", or "RSA PUBLIC KEY", or a
//     "CERTIFICATE" whose public key is used). sig is the raw signature as carried in a JWS
//     (base64url-decoded): 32-byte MAC, PKCS#1 v1.5 RSA signature over SHA-256, ES256 as r||s
//     (64 bytes; ASN.1 DER is also accepted), Ed25519 64 bytes over msg itself.
//   - set_error messages are truncated to [MaxErrorLen] bytes and log messages to [MaxLogLen].
//   - A pointer/length pair outside the guest's memory traps the call (ERROR).
//
// # WASI
//
// Module "wasi_snapshot_preview1" is offered only as far as the Go runtime needs it
// ([AllowedWASI]): clocks, random_get, fd_write to stdout/stderr (into the host's rate-limited
// logs), proc_exit, sched_yield, poll_oneoff (clock subscriptions only, no real sleep), and
// stubs that report no arguments, no environment, no preopened directories and no readable
// stdin. There is no file system, no environment, no arguments and no sockets. A module that
// imports any other function, or imports a memory, table or global, is rejected at upload and
// at load.
//
// # Host behaviour
//
//   - Compile once per module (keyed by sha256) with an on-disk compilation cache; validate
//     imports and exports at upload and at load; never compile on the request path.
//   - Limits per call: a time budget ([DefaultTimeout], per plugin up to [MaxTimeout]) and a
//     memory cap ([DefaultMemoryLimitBytes], per plugin configurable). Exceeding either is an
//     ERROR.
//   - ERROR, trap, timeout or out-of-memory: the instance is discarded, the visitor gets 500
//     (503 when no instance can be had in time or the plugin's circuit breaker is open), the
//     failure is counted and logged with the plugin id. Plugins fail closed unless the admin
//     marks them failOpen.
//
// # Version history
//
//	1  initial version.
package abi

import "time"

// Version is the ABI version a guest's policy_abi_version export must return.
const Version = 1

// Module names.
const (
	// ModuleName is the import module of the host functions.
	ModuleName = "policy"
	// WASIModuleName is the only other import module a guest may use.
	WASIModuleName = "wasi_snapshot_preview1"
)

// Guest export names.
const (
	ExportMemory         = "memory"
	ExportABIVersion     = "policy_abi_version" // () -> i32, returns Version
	ExportHandleRequest  = "handle_request"     // () -> i32, a Decision code
	ExportValidateConfig = "validate_config"    // () -> i32, optional, 0 = valid
	ExportInitialize     = "_initialize"        // (), optional, WASI reactor init
)

// Decision codes returned by handle_request. Any other value is an ERROR.
const (
	DecisionAllow   = 0 // forward the request, with the header edits made
	DecisionRespond = 1 // answer with what respond set
)

// ConfigValid is what validate_config returns for a valid config.
const ConfigValid = 0

// Missing is what a getter returns when the value does not exist (e.g. an absent header).
const Missing = -1

// Log levels for the log import.
const (
	LogDebug = 0
	LogInfo  = 1
	LogWarn  = 2
	LogError = 3
)

// Signature algorithms accepted by verify_signature.
const (
	AlgHS256 = "HS256"
	AlgRS256 = "RS256"
	AlgES256 = "ES256"
	AlgEdDSA = "EdDSA"
)

// Host import names (module "policy").
const (
	ImportGetConfig           = "get_config"
	ImportGetConfigID         = "get_config_id"
	ImportGetMethod           = "get_method"
	ImportGetPath             = "get_path"
	ImportGetQuery            = "get_query"
	ImportGetHost             = "get_host"
	ImportGetClientIP         = "get_client_ip"
	ImportGetHeader           = "get_header"
	ImportGetShareID          = "get_share_id"
	ImportNowUnixMs           = "now_unix_ms"
	ImportSetRequestHeader    = "set_request_header"
	ImportRemoveRequestHeader = "remove_request_header"
	ImportSetResponseHeader   = "set_response_header"
	ImportRespond             = "respond"
	ImportRateLimit           = "rate_limit"
	ImportHMACSHA256          = "hmac_sha256"
	ImportVerifySignature     = "verify_signature"
	ImportSetError            = "set_error"
	ImportLog                 = "log"
)

// Limits enforced by the host.
const (
	MaxHeaderNameLen     = 256
	MaxHeaderValueLen    = 8 << 10
	MaxHeaderEdits       = 64 // per call
	MaxBodyLen           = 64 << 10
	MaxConfigLen         = 64 << 10
	MaxRateLimitKeyLen   = 1024
	MaxRateLimitWindowMs = 24 * 60 * 60 * 1000
	MaxSignatureKeyLen   = 16 << 10
	MaxErrorLen          = 1024
	MaxLogLen            = 2048
	MinStatus            = 100
	MaxStatus            = 599
	MinFinalStatus       = 200 // the lowest status RESPOND may answer with (1xx is not final)
	HMACSize             = 32

	DefaultTimeout          = 5 * time.Millisecond
	MaxTimeout              = 50 * time.Millisecond
	DefaultMemoryLimitBytes = 16 << 20
	PageSize                = 65536 // Wasm page
)

// ForbiddenHeaders lists the (lower-case) header names plugins may not set or remove: they
// belong to the connection or to the edge's framing.
var ForbiddenHeaders = []string{
	"connection", "content-length", "host", "keep-alive", "proxy-connection",
	"te", "trailer", "transfer-encoding", "upgrade",
}

// ValType is a WebAssembly value type in a signature.
type ValType byte

const (
	I32 ValType = 0x7f
	I64 ValType = 0x7e
)

func (v ValType) String() string {
	switch v {
	case I32:
		return "i32"
	case I64:
		return "i64"
	}
	return "?"
}

// Func is a function signature in the ABI.
type Func struct {
	Name    string
	Params  []ValType
	Results []ValType
}

func sig(name string, params []ValType, results ...ValType) Func {
	return Func{Name: name, Params: params, Results: results}
}

func i32s(n int) []ValType {
	p := make([]ValType, n)
	for i := range p {
		p[i] = I32
	}
	return p
}

var imports = []Func{
	sig(ImportGetConfig, i32s(2), I32),
	sig(ImportGetConfigID, nil, I64),
	sig(ImportGetMethod, i32s(2), I32),
	sig(ImportGetPath, i32s(2), I32),
	sig(ImportGetQuery, i32s(2), I32),
	sig(ImportGetHost, i32s(2), I32),
	sig(ImportGetClientIP, i32s(2), I32),
	sig(ImportGetHeader, i32s(4), I32),
	sig(ImportGetShareID, i32s(2), I32),
	sig(ImportNowUnixMs, nil, I64),
	sig(ImportSetRequestHeader, i32s(4)),
	sig(ImportRemoveRequestHeader, i32s(2)),
	sig(ImportSetResponseHeader, i32s(4)),
	sig(ImportRespond, i32s(3)),
	sig(ImportRateLimit, i32s(4), I32),
	sig(ImportHMACSHA256, i32s(5)),
	sig(ImportVerifySignature, i32s(8), I32),
	sig(ImportSetError, i32s(2)),
	sig(ImportLog, i32s(3)),
}

var exports = []Func{
	sig(ExportABIVersion, nil, I32),
	sig(ExportHandleRequest, nil, I32),
	sig(ExportValidateConfig, nil, I32),
	sig(ExportInitialize, nil),
}

// Imports returns the host functions of module "policy", in the order of the table above.
func Imports() []Func { return append([]Func(nil), imports...) }

// LookupImport returns the signature of a "policy" import.
func LookupImport(name string) (Func, bool) {
	for _, f := range imports {
		if f.Name == name {
			return f, true
		}
	}
	return Func{}, false
}

// LookupExport returns the signature of a guest function export defined by the ABI.
func LookupExport(name string) (Func, bool) {
	for _, f := range exports {
		if f.Name == name {
			return f, true
		}
	}
	return Func{}, false
}

// RequiredExports are the function exports every guest must have (besides "memory").
var RequiredExports = []string{ExportABIVersion, ExportHandleRequest}

// AllowedWASI lists the wasi_snapshot_preview1 functions a guest may import: what Go's wasip1
// runtime (GOOS=wasip1 -buildmode=c-shared) links in, and nothing that reaches a file system,
// the environment or the network.
var AllowedWASI = []string{
	"args_get", "args_sizes_get", // report no arguments
	"environ_get", "environ_sizes_get", // report no environment
	"clock_res_get", "clock_time_get",
	"random_get",
	"fd_write",                                         // stdout/stderr into rate-limited logs
	"fd_read",                                          // stdin is empty
	"fd_close", "fd_fdstat_get", "fd_fdstat_set_flags", // stdio only
	"fd_prestat_get", "fd_prestat_dir_name", // no preopened directories
	"poll_oneoff", // clock subscriptions; no real sleep
	"sched_yield",
	"proc_exit", // ends the instance (ERROR)
}

// WASIAllowed reports whether a wasi_snapshot_preview1 function may be imported.
func WASIAllowed(name string) bool {
	for _, n := range AllowedWASI {
		if n == name {
			return true
		}
	}
	return false
}

// HeaderForbidden reports whether a header name (any case) may not be edited by a plugin.
func HeaderForbidden(name string) bool {
	for _, f := range ForbiddenHeaders {
		if len(f) == len(name) && equalFold(f, name) {
			return true
		}
	}
	return false
}

// ValidHeaderName reports whether name is a non-empty HTTP token within MaxHeaderNameLen.
func ValidHeaderName(name []byte) bool {
	if len(name) == 0 || len(name) > MaxHeaderNameLen {
		return false
	}
	for _, c := range name {
		if c >= 0x80 || !isTokenChar[c] {
			return false
		}
	}
	return true
}

// ValidHeaderValue reports whether value fits MaxHeaderValueLen and has no CR, LF or NUL.
func ValidHeaderValue(value []byte) bool {
	if len(value) > MaxHeaderValueLen {
		return false
	}
	for _, c := range value {
		if c == '\r' || c == '\n' || c == 0 {
			return false
		}
	}
	return true
}

// equalFold compares an ASCII lower-case string with s, ignoring s's case.
func equalFold(lower, s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != lower[i] {
			return false
		}
	}
	return true
}

var isTokenChar = func() (t [128]bool) {
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c] = true
		t[c-'a'+'A'] = true
	}
	for _, c := range "!#$%&'*+-.^_`|~" {
		t[c] = true
	}
	return t
}()
