package edge

import (
	"crypto/tls"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/valyala/fasthttp"
)

func TestPlaintextTunnelListenerOffLoopbackNeedsAnOptIn(t *testing.T) {
	for _, tc := range []struct {
		addr     string
		tls      bool
		insecure bool
		ok       bool
	}{
		{"127.0.0.1:7070", false, false, true},
		{"[::1]:7070", false, false, true},
		{"localhost:7070", false, false, true},
		{":7070", false, false, false},
		{"0.0.0.0:7070", false, false, false},
		{"10.0.0.5:7070", false, false, false},
		{"0.0.0.0:7070", false, true, true},
		{"0.0.0.0:7070", true, false, true},
	} {
		cfg := Config{Token: "edge-token", TunnelAddr: tc.addr, InsecureTunnel: tc.insecure}
		if tc.tls {
			cfg.TunnelTLS = &tls.Config{MinVersion: tls.VersionTLS12}
		}
		cfg.setDefaults()
		_, err := cfg.validate() // what New checks first
		if tc.ok && err != nil {
			t.Errorf("%s tls=%v insecure=%v: %v", tc.addr, tc.tls, tc.insecure, err)
		}
		if !tc.ok && (err == nil || !strings.Contains(err.Error(), "--insecure-tunnel")) {
			t.Errorf("%s: err = %v, want the plain-TCP refusal", tc.addr, err)
		}
	}
}

// requestError maps what fasthttp could not read to the status of the
// answer, in the error envelope. (A head past the read buffer, 431, is
// TestEdgeParseErrorsAreEnvelopes's: fasthttp's ErrSmallBuffer cannot be
// made outside fasthttp.)
func TestRequestErrorStatuses(t *testing.T) {
	s := &Server{log: slog.New(slog.DiscardHandler)}
	timeout := &net.OpError{Op: "read", Net: "tcp", Err: os.ErrDeadlineExceeded}
	for _, tc := range []struct {
		err    error
		status int
	}{
		{errors.New("cannot find http request method"), 400},
		{io.ErrUnexpectedEOF, 400},
		{fasthttp.ErrBodyTooLarge, 413},
		{timeout, 408},
	} {
		var ctx fasthttp.RequestCtx
		ctx.Response.SetBodyString("left over")
		s.requestError(&ctx, tc.err)
		require.Equal(t, tc.status, ctx.Response.StatusCode(), "%v", tc.err)
		require.Equal(t, "application/json", string(ctx.Response.Header.ContentType()))
		var env map[string]any
		require.NoError(t, json.Unmarshal(ctx.Response.Body(), &env), "%s", ctx.Response.Body())
		require.Equal(t, float64(tc.status), env["statusCode"])
		require.Equal(t, fasthttp.StatusMessage(tc.status), env["error"])
		require.NotContains(t, string(ctx.Response.Body()), tc.err.Error(), "causes are logged, not shown")
	}
}

func TestNegativeBodyLimitIsRefused(t *testing.T) {
	cfg := Config{Token: "edge-token", MaxBodyBytes: -1}
	cfg.setDefaults()
	_, err := cfg.validate()
	require.ErrorContains(t, err, "negative")
}

// A control URL the edge cannot use is refused by New, before anything
// starts: without a scheme it looped for ever on a parse error.
func TestControlURLIsValidated(t *testing.T) {
	for url, ok := range map[string]bool{
		"http://127.0.0.1:3001":          true,
		"https://control.example.com":    true,
		"https://control.example.com/pc": true,
		"127.0.0.1:41731":                false,
		"localhost:3001":                 false,
		"ftp://127.0.0.1:3001":           false,
		"http://":                        false,
		"http://127.0.0.1:":              false,
		"http://user:pw@127.0.0.1:3001":  false,
		"http://127.0.0.1:3001/?x=1":     false,
	} {
		cfg := Config{Token: "edge-token", ControlURL: url}
		cfg.setDefaults()
		_, err := cfg.validate()
		if ok && err != nil {
			t.Errorf("%s: %v", url, err)
		}
		if !ok && (err == nil || !strings.Contains(err.Error(), "control URL")) {
			t.Errorf("%s: err = %v, want a control URL refusal", url, err)
		}
	}
	cfg := Config{Token: "edge-token", ControlURL: "http://127.0.0.1:3001", ControlTLS: &tls.Config{MinVersion: tls.VersionTLS12}}
	cfg.setDefaults()
	_, err := cfg.validate()
	require.ErrorContains(t, err, "not https://", "a CA for a plain-HTTP control plane is a mistake")
}
