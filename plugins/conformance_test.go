package plugins

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/binary"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// op is an attachment of echo.wat selecting one behaviour.
func op(c string) Attachment { return Attachment{PluginID: "echo", Config: []byte(`"` + c + `"`)} }

func loadEcho(t *testing.T, cfg Config) (*Host, *logBuffer) {
	h, logs := newTestHost(t, cfg)
	require.NoError(t, h.Load(context.Background(), "echo", wat(t, "echo"), ModuleOptions{}))
	return h, logs
}

func testRequest() *Request {
	return &Request{
		Method: "POST", Path: "/api/items", Query: "X-Token", Host: "share.example.com",
		ClientIP: "2001:db8::1", ShareID: "shr_123",
		Header: headers("x-token", "secret-value", "Accept", "text/html"),
	}
}

func TestConformanceGetters(t *testing.T) {
	h, _ := loadEcho(t, Config{})
	req := testRequest()
	ctx := context.Background()
	for _, tc := range []struct {
		op, want string
		status   int
	}{
		{"m", "POST", 200},
		{"p", "/api/items", 200},
		{"q", "X-Token", 200},
		{"h", "share.example.com", 200},
		{"i", "2001:db8::1", 200},
		{"s", "shr_123", 200},
		{"c", `"c"`, 200},
		{"H", "secret-value", 200}, // header named by the query, case-insensitive
		{"P", "zzzz", 200},         // limit 0 and limit len-1 write nothing
	} {
		t.Run(tc.op, func(t *testing.T) {
			d := h.Evaluate(ctx, []Attachment{op(tc.op)}, req)
			require.Equal(t, Respond, d.Action, "err: %v", d.Err)
			assert.Equal(t, tc.status, d.Status)
			assert.Equal(t, tc.want, string(d.Body))
			assert.Equal(t, "echo", d.PluginID)
		})
	}
	t.Run("missing header is -1", func(t *testing.T) {
		r := *req
		r.Query = "X-Absent"
		d := h.Evaluate(ctx, []Attachment{op("H")}, &r)
		assert.Equal(t, 404, d.Status)
		assert.Equal(t, "missing", string(d.Body))
		r.Header = nil
		r.Query = "x-token"
		d = h.Evaluate(ctx, []Attachment{op("H")}, &r)
		assert.Equal(t, 404, d.Status)
	})
	t.Run("empty config is {}", func(t *testing.T) {
		d := h.Evaluate(ctx, []Attachment{{PluginID: "echo"}}, req)
		// config "{}": op byte is '}', unknown, so the guest allows.
		assert.Equal(t, Allow, d.Action)
	})
	t.Run("nil request", func(t *testing.T) {
		d := h.Evaluate(ctx, []Attachment{op("p")}, nil)
		assert.Equal(t, Respond, d.Action)
		assert.Equal(t, "", string(d.Body))
	})
	t.Run("now_unix_ms", func(t *testing.T) {
		d := h.Evaluate(ctx, []Attachment{op("n")}, req)
		require.Len(t, d.Body, 8)
		ms := int64(binary.LittleEndian.Uint64(d.Body))
		assert.InDelta(t, time.Now().UnixMilli(), ms, 5000)
	})
}

func TestConformanceConfigID(t *testing.T) {
	h, _ := loadEcho(t, Config{})
	ctx := context.Background()
	id := func(cfg string) uint64 {
		d := h.Evaluate(ctx, []Attachment{{PluginID: "echo", Config: []byte(cfg)}}, testRequest())
		require.Equal(t, Respond, d.Action, "%v", d.Err)
		require.Len(t, d.Body, 8)
		return binary.LittleEndian.Uint64(d.Body)
	}
	a1, a2 := id(`"I"`), id(`"I"`)
	b := id(`"I "`)
	assert.Equal(t, a1, a2, "same config, same id")
	assert.NotEqual(t, a1, b, "different config, different id")
	assert.Equal(t, h.configID("echo", []byte(`"I"`)), a1)
	assert.NotEqual(t, h.configID("other", []byte(`"I"`)), a1, "id depends on the plugin")
	assert.Equal(t, h.configID("echo", nil), h.configID("echo", []byte("{}")))
}

func TestConformanceDecisions(t *testing.T) {
	h, _ := loadEcho(t, Config{})
	ctx := context.Background()
	req := testRequest()

	t.Run("allow with header edits", func(t *testing.T) {
		d := h.Evaluate(ctx, []Attachment{op("A")}, req)
		require.Equal(t, Allow, d.Action, "%v", d.Err)
		assert.Equal(t, [][2]string{{"X-A", "1"}}, d.SetRequestHeaders)
		assert.Equal(t, []string{"X-Remove"}, d.RemoveRequestHeaders)
		assert.Equal(t, [][2]string{{"X-R", "2"}}, d.SetResponseHeaders)
		assert.Empty(t, d.PluginID)
	})
	t.Run("respond", func(t *testing.T) {
		d := h.Evaluate(ctx, []Attachment{op("R")}, req)
		require.Equal(t, Respond, d.Action)
		assert.Equal(t, 418, d.Status)
		assert.Equal(t, "teapot", string(d.Body))
		assert.Equal(t, [][2]string{{"X-R", "2"}}, d.SetResponseHeaders)
	})
	t.Run("chain accumulates edits and stops at respond", func(t *testing.T) {
		d := h.Evaluate(ctx, []Attachment{op("A"), op("R"), op("E")}, req)
		require.Equal(t, Respond, d.Action)
		assert.Equal(t, 418, d.Status)
		assert.Equal(t, [][2]string{{"X-A", "1"}}, d.SetRequestHeaders)
		assert.Equal(t, [][2]string{{"X-R", "2"}}, d.SetResponseHeaders, "same name set twice is replaced")
	})
	t.Run("error with set_error", func(t *testing.T) {
		d := h.Evaluate(ctx, []Attachment{op("A"), op("E")}, req)
		require.Equal(t, Error, d.Action)
		assert.Equal(t, 500, d.Status)
		assert.Equal(t, "echo", d.PluginID)
		assert.ErrorIs(t, d.Err, ErrGuestError)
		assert.Contains(t, d.Err.Error(), "boom")
		assert.Empty(t, d.SetRequestHeaders, "an Error drops edits")
	})
	for _, c := range []struct {
		op   string
		kind error
	}{
		{"G", ErrGuestError},   // garbage decision code
		{"N", ErrABIViolation}, // RESPOND without respond
		{"T", ErrTrap},
		{"O", ErrABIViolation}, // out-of-bounds getter buffer
		{"o", ErrABIViolation}, // out-of-bounds header value
		{"B", ErrABIViolation},
		{"F", ErrABIViolation},
		{"S", ErrABIViolation},
		{"Z", ErrABIViolation},
		{"D", ErrABIViolation},
		{"k", ErrABIViolation},
	} {
		t.Run("fails closed "+c.op, func(t *testing.T) {
			d := h.Evaluate(ctx, []Attachment{op(c.op)}, req)
			require.Equal(t, Error, d.Action)
			assert.Equal(t, 500, d.Status)
			assert.ErrorIs(t, d.Err, c.kind, "%v", d.Err)
			var pe *PluginError
			require.True(t, errors.As(d.Err, &pe))
			assert.Equal(t, "echo", pe.PluginID)
			// One kind, one detail: not "ABI violation: ABI violation: ...
			// (recovered by wazero)".
			assert.Equal(t, 1, strings.Count(d.Err.Error(), c.kind.Error()), "%v", d.Err)
			assert.NotContains(t, d.Err.Error(), "recovered by wazero")
			// The host keeps serving.
			d = h.Evaluate(ctx, []Attachment{op("m")}, req)
			require.Equal(t, Respond, d.Action, "%v", d.Err)
			assert.Equal(t, "POST", string(d.Body))
		})
	}
}

func TestConformanceRateLimit(t *testing.T) {
	h, _ := loadEcho(t, Config{})
	ctx := context.Background()
	req := testRequest()
	req.Path = "/rl-" + t.Name()
	var got []string
	for range 5 {
		d := h.Evaluate(ctx, []Attachment{op("L")}, req)
		require.Equal(t, Respond, d.Action, "%v", d.Err)
		got = append(got, string(d.Body))
	}
	assert.Equal(t, []string{"1", "1", "1", "0", "0"}, got)
	// Another key has its own counter.
	req.Path = "/other"
	d := h.Evaluate(ctx, []Attachment{op("L")}, req)
	assert.Equal(t, "1", string(d.Body))
}

func TestConformanceHMAC(t *testing.T) {
	h, _ := loadEcho(t, Config{})
	req := testRequest()
	d := h.Evaluate(context.Background(), []Attachment{op("M")}, req)
	require.Equal(t, Respond, d.Action, "%v", d.Err)
	m := hmac.New(sha256.New, []byte("key"))
	m.Write([]byte(req.Path))
	assert.Equal(t, m.Sum(nil), d.Body)
}

func TestConformanceVerifySignature(t *testing.T) {
	h, _ := loadEcho(t, Config{})
	msg := "/signed/message"
	keys := testKeys(t)
	for _, tc := range []struct {
		name, alg, key string
		sig            []byte
		want           string
	}{
		{"HS256", "HS256", "secret", keys.hs256(msg), "1"},
		{"HS256 wrong secret", "HS256", "other", keys.hs256(msg), "0"},
		{"RS256", "RS256", keys.rsaPEM, keys.rs256(msg), "1"},
		{"RS256 pkcs1 pem", "RS256", keys.rsaPKCS1PEM, keys.rs256(msg), "1"},
		{"ES256 raw", "ES256", keys.ecPEM, keys.es256(msg, false), "1"},
		{"ES256 der", "ES256", keys.ecPEM, keys.es256(msg, true), "1"},
		{"EdDSA", "EdDSA", keys.edPEM, keys.eddsa(msg), "1"},
		{"EdDSA tampered", "EdDSA", keys.edPEM, keys.eddsa(msg + "x"), "0"},
		{"alg/key mismatch", "RS256", keys.edPEM, keys.eddsa(msg), "0"},
		{"unknown alg", "none", "", nil, "0"},
		{"garbage key", "ES256", "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n", keys.es256(msg, false), "0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := &Request{Path: msg, Header: headers("X-Alg", tc.alg, "X-Key", tc.key, "X-Sig", string(tc.sig))}
			d := h.Evaluate(context.Background(), []Attachment{op("V")}, req)
			require.Equal(t, Respond, d.Action, "%v", d.Err)
			assert.Equal(t, tc.want, string(d.Body))
		})
	}
}

func TestConformanceLogs(t *testing.T) {
	h, logs := loadEcho(t, Config{})
	d := h.Evaluate(context.Background(), []Attachment{op("l")}, testRequest())
	require.Equal(t, Allow, d.Action, "%v", d.Err)
	assert.True(t, logs.contains("hello from wat"), "log import")
	assert.True(t, logs.contains("stdout line"), "fd_write")
	assert.True(t, logs.contains("plugin=echo"))
	// Logs are rate-limited: a flood does not all get through.
	for range 200 {
		h.Evaluate(context.Background(), []Attachment{op("l")}, testRequest())
	}
	logs.mu.Lock()
	n := len(logs.lines)
	logs.mu.Unlock()
	assert.Less(t, n, 100)
}

func TestConformanceValidateConfig(t *testing.T) {
	h, _ := loadEcho(t, Config{})
	ctx := context.Background()
	require.NoError(t, h.ValidateConfig(ctx, "echo", []byte(`"ok"`)))
	require.NoError(t, h.ValidateConfig(ctx, "echo", nil))
	err := h.ValidateConfig(ctx, "echo", []byte(`"bad"`))
	require.ErrorIs(t, err, ErrInvalidConfig)
	assert.Contains(t, err.Error(), "boom")
	require.ErrorIs(t, h.ValidateConfig(ctx, "echo", []byte(`{`)), ErrInvalidConfig)
	require.ErrorIs(t, h.ValidateConfig(ctx, "nope", []byte(`{}`)), ErrNotLoaded)
	// A plugin without validate_config accepts any JSON.
	require.NoError(t, h.Load(ctx, "min", wat(t, "minimal"), ModuleOptions{}))
	require.NoError(t, h.ValidateConfig(ctx, "min", []byte(`{"x":1}`)))
}

type keySet struct {
	rsa                               *rsa.PrivateKey
	ec                                *ecdsa.PrivateKey
	ed                                ed25519.PrivateKey
	rsaPEM, rsaPKCS1PEM, ecPEM, edPEM string
}

func testKeys(t *testing.T) *keySet {
	t.Helper()
	k := &keySet{}
	var err error
	k.rsa, err = rsa.GenerateKey(rand.Reader, 2048)
	require.NoError(t, err)
	k.ec, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	var edPub ed25519.PublicKey
	edPub, k.ed, err = ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	pk := func(pub any) string {
		der, err := x509.MarshalPKIXPublicKey(pub)
		require.NoError(t, err)
		return string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
	}
	k.rsaPEM = pk(&k.rsa.PublicKey)
	k.rsaPKCS1PEM = string(pem.EncodeToMemory(&pem.Block{Type: "RSA PUBLIC KEY", Bytes: x509.MarshalPKCS1PublicKey(&k.rsa.PublicKey)}))
	k.ecPEM = pk(&k.ec.PublicKey)
	k.edPEM = pk(edPub)
	return k
}

func (k *keySet) hs256(msg string) []byte {
	m := hmac.New(sha256.New, []byte("secret"))
	m.Write([]byte(msg))
	return m.Sum(nil)
}

func (k *keySet) rs256(msg string) []byte {
	d := sha256.Sum256([]byte(msg))
	sig, err := rsa.SignPKCS1v15(rand.Reader, k.rsa, crypto.SHA256, d[:])
	if err != nil {
		panic(err)
	}
	return sig
}

func (k *keySet) es256(msg string, der bool) []byte {
	d := sha256.Sum256([]byte(msg))
	if der {
		sig, err := ecdsa.SignASN1(rand.Reader, k.ec, d[:])
		if err != nil {
			panic(err)
		}
		return sig
	}
	r, s, err := ecdsa.Sign(rand.Reader, k.ec, d[:])
	if err != nil {
		panic(err)
	}
	out := make([]byte, 64)
	r.FillBytes(out[:32])
	s.FillBytes(out[32:])
	return out
}

func (k *keySet) eddsa(msg string) []byte { return ed25519.Sign(k.ed, []byte(msg)) }

// TestRateLimitCountersStayWithTheirWorkspace: one plugin (as the built-ins
// are) attached to shares of two workspaces; the second floods the store
// with new keys, many times its size, and the first's counters, at their
// limit, stay there: the host accounts them to Request.Tenant.
func TestRateLimitCountersStayWithTheirWorkspace(t *testing.T) {
	const maxKeys = 64 * 16 // room for the victim's 64 keys in every shard
	h, _ := loadEcho(t, Config{RateLimitMaxKeys: maxKeys})
	ctx := context.Background()
	at := func(tenant, path string) string {
		req := testRequest()
		req.Tenant, req.Path = tenant, path
		d := h.Evaluate(ctx, []Attachment{op("L")}, req)
		require.Equal(t, Respond, d.Action, "%v", d.Err)
		return string(d.Body)
	}
	for i := range 64 {
		for range 3 {
			at("ws-a", fmt.Sprint("/victim-", i))
		}
	}
	for i := range 20 * maxKeys {
		at("ws-b", fmt.Sprint("/flood-", i))
	}
	reset := 0
	for i := range 64 {
		if at("ws-a", fmt.Sprint("/victim-", i)) == "1" {
			reset++
		}
	}
	assert.Zero(t, reset, "counters of ws-a reset by ws-b's keys")
}
