package plugins

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/privateconnect/pc/plugins/internal/wasmbuild"
)

// The same ABI behaviours as conformance_test.go, through a guest written with the Go SDK.

func goGuest(t testing.TB) []byte { return wasmbuild.MustGoPrecompiled(t, "testdata/guest", false) }

func gop(op string) Attachment {
	return Attachment{PluginID: "guest", Config: []byte(`{"op":"` + op + `","header":"X-Token"}`)}
}

func loadGuest(t *testing.T, cfg Config, opts ModuleOptions) (*Host, *logBuffer) {
	t.Helper()
	h, logs := newTestHost(t, cfg)
	require.NoError(t, h.Load(context.Background(), "guest", goGuest(t), opts))
	return h, logs
}

func TestSDKGuest(t *testing.T) {
	// Failed calls discard the instance; refilling a Go guest takes tens of ms (more under -race).
	h, logs := loadGuest(t, Config{PoolSize: 1, AcquireTimeout: 5 * time.Second}, ModuleOptions{})
	ctx := context.Background()
	req := testRequest()
	eval := func(op string) Decision { return h.Evaluate(ctx, []Attachment{gop(op)}, req) }

	t.Run("getters", func(t *testing.T) {
		d := eval("echo")
		require.Equal(t, Respond, d.Action, "%v", d.Err)
		var got map[string]any
		require.NoError(t, json.Unmarshal(d.Body, &got))
		assert.Equal(t, "POST", got["method"])
		assert.Equal(t, "/api/items", got["path"])
		assert.Equal(t, "X-Token", got["query"])
		assert.Equal(t, "share.example.com", got["host"])
		assert.Equal(t, "2001:db8::1", got["clientIp"])
		assert.Equal(t, "shr_123", got["shareId"])
		assert.Equal(t, "secret-value", got["header"])
		assert.Equal(t, true, got["hasHeader"])
		id := h.configID("guest", gop("echo").Config)
		assert.Equal(t, strconv.FormatUint(id, 10), got["configId"])
		ct, _ := lookupPair(d.SetResponseHeaders, "Content-Type")
		assert.Equal(t, "application/json", ct)
	})
	t.Run("missing header", func(t *testing.T) {
		r := *req
		r.Header = nil
		d := h.Evaluate(ctx, []Attachment{gop("echo")}, &r)
		assert.Contains(t, string(d.Body), `"hasHeader":false`)
	})
	t.Run("header larger than the SDK scratch buffer", func(t *testing.T) {
		r := *req
		big := strings.Repeat("b", 5000)
		r.Header = headers("X-Big", big)
		d := h.Evaluate(ctx, []Attachment{gop("bigheader")}, &r)
		assert.Equal(t, "5000", string(d.Body))
	})
	t.Run("config", func(t *testing.T) {
		d := eval("config")
		assert.Equal(t, string(gop("config").Config), string(d.Body))
	})
	t.Run("now", func(t *testing.T) {
		d := eval("now")
		ms, err := strconv.ParseInt(string(d.Body), 10, 64)
		require.NoError(t, err)
		assert.InDelta(t, time.Now().UnixMilli(), ms, 5000)
	})
	t.Run("allow with edits", func(t *testing.T) {
		d := eval("allow-edits")
		require.Equal(t, Allow, d.Action, "%v", d.Err)
		assert.Equal(t, [][2]string{{"X-A", "1"}}, d.SetRequestHeaders)
		assert.Equal(t, []string{"X-Remove"}, d.RemoveRequestHeaders)
		assert.Equal(t, [][2]string{{"X-R", "2"}}, d.SetResponseHeaders)
	})
	t.Run("deny", func(t *testing.T) {
		d := eval("deny")
		assert.Equal(t, Respond, d.Action)
		assert.Equal(t, 403, d.Status)
		assert.Equal(t, "nope", string(d.Body))
	})
	t.Run("redirect", func(t *testing.T) {
		d := eval("redirect")
		assert.Equal(t, 302, d.Status)
		loc, _ := lookupPair(d.SetResponseHeaders, "Location")
		assert.Equal(t, "https://example.com/login", loc)
	})
	t.Run("error", func(t *testing.T) {
		d := eval("error")
		assert.Equal(t, Error, d.Action)
		assert.ErrorIs(t, d.Err, ErrGuestError)
		assert.Contains(t, d.Err.Error(), "boom 42")
	})
	t.Run("panic is an error", func(t *testing.T) {
		d := eval("panic")
		assert.Equal(t, Error, d.Action)
		assert.Contains(t, d.Err.Error(), "kaboom")
	})
	t.Run("invalid config is an error", func(t *testing.T) {
		d := h.Evaluate(ctx, []Attachment{{PluginID: "guest", Config: []byte(`{"op":"nope"}`)}}, req)
		assert.Equal(t, Error, d.Action)
		assert.Contains(t, d.Err.Error(), `unknown op "nope"`)
	})
	t.Run("rate limit", func(t *testing.T) {
		r := *req
		r.Path = "/sdk-rl"
		var got []string
		for range 5 {
			got = append(got, string(h.Evaluate(ctx, []Attachment{gop("ratelimit")}, &r).Body))
		}
		assert.Equal(t, []string{"1", "1", "1", "0", "0"}, got)
	})
	t.Run("hmac", func(t *testing.T) {
		m := hmac.New(sha256.New, []byte("key"))
		m.Write([]byte(req.Path))
		assert.Equal(t, hex.EncodeToString(m.Sum(nil)), string(eval("hmac").Body))
	})
	t.Run("verify", func(t *testing.T) {
		keys := testKeys(t)
		msg := "/signed"
		for alg, tc := range map[string]struct {
			key string
			sig []byte
		}{
			"HS256": {"secret", keys.hs256(msg)},
			"RS256": {keys.rsaPEM, keys.rs256(msg)},
			"ES256": {keys.ecPEM, keys.es256(msg, false)},
			"EdDSA": {keys.edPEM, keys.eddsa(msg)},
		} {
			r := &Request{Path: msg, Header: headers("X-Alg", alg, "X-Key", tc.key, "X-Sig", base64.RawURLEncoding.EncodeToString(tc.sig))}
			assert.Equal(t, "1", string(h.Evaluate(ctx, []Attachment{gop("verify")}, r).Body), alg)
			r.Path = "/tampered"
			assert.Equal(t, "0", string(h.Evaluate(ctx, []Attachment{gop("verify")}, r).Body), alg)
		}
	})
	t.Run("logs", func(t *testing.T) {
		require.Equal(t, Allow, eval("log").Action)
		assert.True(t, logs.contains("hello from go"))
		assert.True(t, logs.contains("stdout from go"))
	})
	t.Run("validate_config", func(t *testing.T) {
		require.NoError(t, h.ValidateConfig(ctx, "guest", []byte(`{"op":"deny"}`)))
		err := h.ValidateConfig(ctx, "guest", []byte(`{"op":"deny","extra":1}`))
		require.ErrorIs(t, err, ErrInvalidConfig)
		assert.Contains(t, err.Error(), "unknown field")
		err = h.ValidateConfig(ctx, "guest", []byte(`{"op":"nope"}`))
		assert.Contains(t, err.Error(), `unknown op "nope"`)
	})
	t.Run("info", func(t *testing.T) {
		info, ok := h.Info("guest")
		require.True(t, ok)
		assert.True(t, info.HasValidateConfig)
		assert.Contains(t, info.Exports, "_initialize")
	})
}

func TestSDKGuestHostile(t *testing.T) {
	h, _ := loadGuest(t, Config{PoolSize: 1}, ModuleOptions{Timeout: 50 * time.Millisecond, MemoryLimitBytes: 4 << 20})
	ctx := context.Background()
	start := time.Now()
	d := h.Evaluate(ctx, []Attachment{gop("loop")}, testRequest())
	assert.ErrorIs(t, d.Err, ErrTimeout)
	assert.Less(t, time.Since(start), 500*time.Millisecond)

	waitFor(t, func() bool { return h.Stats().Plugins[0].Idle == 1 }, "refilled after timeout")
	d = h.Evaluate(ctx, []Attachment{gop("alloc")}, testRequest())
	assert.Equal(t, Error, d.Action)
	assert.ErrorIs(t, d.Err, ErrMemoryLimit, "%v", d.Err)

	waitFor(t, func() bool { return h.Stats().Plugins[0].Idle == 1 }, "refilled after OOM")
	d = h.Evaluate(ctx, []Attachment{gop("deny")}, testRequest())
	assert.Equal(t, 403, d.Status, "%v", d.Err)
}

func TestValidateGoGuest(t *testing.T) {
	// Host.Validate: the package-level Validate compiles without a cache, which takes
	// seconds under -race (it is covered with WAT guests).
	h, _ := newTestHost(t, Config{})
	info, err := h.Validate(context.Background(), goGuest(t))
	require.NoError(t, err)
	assert.True(t, info.HasValidateConfig)
}

func lookupPair(l [][2]string, name string) (string, bool) {
	for _, kv := range l {
		if strings.EqualFold(kv[0], name) {
			return kv[1], true
		}
	}
	return "", false
}

// The SDK example builds and passes upload validation.
func TestValidateExample(t *testing.T) {
	h, _ := newTestHost(t, Config{})
	info, err := h.Validate(context.Background(), wasmbuild.MustGoPrecompiled(t, "../sdk/examples/maintenance", false))
	require.NoError(t, err)
	assert.True(t, info.HasValidateConfig)
}
