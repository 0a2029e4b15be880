package proxy

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/privateconnect/pc/edge/routes"
	"github.com/privateconnect/pc/edge/tunnels"
	"github.com/privateconnect/pc/internal/config"
)

func tokenHash(tok string) string {
	h := sha256.Sum256([]byte(tok))
	return hex.EncodeToString(h[:])
}

// fuzzProxy is an edge proxy over a table with a live, a revoked, an
// expired and a paused share and a public service, and no agent online.
func fuzzProxy(tb testing.TB) *Proxy {
	past := time.Now().Add(-time.Hour)
	snap := &config.Snapshot{Epoch: "e", Version: 1,
		Settings: config.Settings{ShareDomain: "s.example", PublicDomain: "p.example", ShareRateLimitPerMin: -1},
		Services: []config.Service{
			{ID: "11111111-1111-4111-8111-111111111111", AgentID: "a1", Name: "web", TargetHost: "127.0.0.1", TargetPort: 80, IsPublic: true, Subdomain: "pub"},
			{ID: "22222222-2222-4222-8222-222222222222", AgentID: "a1", Name: "paused", TargetHost: "127.0.0.1", TargetPort: 81, Paused: true},
		},
		Shares: []config.Share{
			{ID: "live", ServiceID: "11111111-1111-4111-8111-111111111111", TokenHash: tokenHash("tok-live")},
			{ID: "revoked", ServiceID: "11111111-1111-4111-8111-111111111111", TokenHash: tokenHash("tok-revoked"), Revoked: true},
			{ID: "expired", ServiceID: "11111111-1111-4111-8111-111111111111", TokenHash: tokenHash("tok-expired"), ExpiresAt: &past},
			{ID: "paused", ServiceID: "22222222-2222-4222-8222-222222222222", TokenHash: tokenHash("tok-paused")},
		},
	}
	t, err := routes.Build(snap)
	if err != nil {
		tb.Fatal(err)
	}
	reg := tunnels.New(tunnels.Config{EdgeID: func() string { return "e" }, Table: func() *routes.Table { return t }})
	return New(Config{Table: func() *routes.Table { return t }, Sessions: reg})
}

// FuzzShareRequest sends arbitrary request targets and Host headers through
// the edge's share handler: nothing panics; a request reaches the live share
// only when its normalized path is under /shared/tok-live/ or its host is
// tok-live.<share domain> (or the public service's host), so no path or
// host trick escapes a share or reaches another; revoked and expired shares
// always answer 410; redirects stay on /shared/ and no response header
// carries CR, LF or other control bytes.
func FuzzShareRequest(f *testing.F) {
	for _, s := range [][2]string{
		{"/shared/tok-live/", "edge"}, {"/shared/tok-live", "edge"}, {"/shared/tok-live?x=1", "edge"},
		{"/shared/tok-revoked/../tok-live/x", "edge"}, {"/shared/tok-live/../tok-revoked/", "edge"},
		{"/shared/tok-live/%2e%2e/%2e%2e/x", "edge"}, {"/shared/tok-live%2f..%2f/x", "edge"},
		{"/shared//tok-live/", "edge"}, {"/shared/./tok-live/a", "edge"}, {"//shared/tok-live/", "edge"},
		{"/x", "tok-live.s.example"}, {"/x", "TOK-LIVE.S.EXAMPLE:8080"}, {"/x", "a.tok-live.s.example"},
		{"/", "pub.p.example"}, {"/", "[::1]:80"}, {"/", "s.example"}, {"/shared/tok-paused/", "edge"},
		{"/shared/tok-expired/", "edge"}, {"http://tok-live.s.example/y", "edge"}, {"*", ""},
		{"/shared/tok-live\r\nX: y", "edge"}, {"/shared/tok-live/\x00", "h\r\nx"}, {"/shared/%74ok-live/", "edge"},
	} {
		f.Add([]byte(s[0]), []byte(s[1]))
	}
	p := fuzzProxy(f)
	peer := &net.TCPAddr{IP: net.IPv4(192, 0, 2, 1), Port: 4242}
	f.Fuzz(func(t *testing.T, uri, host []byte) {
		var req fasthttp.Request
		req.SetRequestURIBytes(uri)
		req.Header.SetHostBytes(host)
		var ctx fasthttp.RequestCtx
		ctx.Init(&req, peer, nil)
		p.Handler(&ctx)

		status := ctx.Response.StatusCode()
		body := string(ctx.Response.Body())
		path := string(ctx.Path())
		h := strings.ToLower(string(hostWithoutPort(ctx.Host())))
		for k, v := range ctx.Response.Header.All() {
			if bytes.ContainsAny(k, "\r\n\x00") || bytes.ContainsAny(v, "\r\n\x00") {
				t.Fatalf("control byte in response header %q: %q", k, v)
			}
		}
		viaHost := h == "tok-live.s.example" || h == "pub.p.example"
		live := strings.Contains(body, "its agent is not connected")
		switch {
		case live && !viaHost && !strings.HasPrefix(path, "/shared/tok-live/"):
			t.Fatalf("%q (host %q) reached the live share via path %q", uri, host, path)
		case !live && !viaHost && strings.HasPrefix(path, "/shared/tok-live/") &&
			!strings.HasSuffix(h, ".s.example") && !strings.HasSuffix(h, ".p.example"):
			t.Fatalf("%q (host %q, path %q) should reach the live share, got %d %s", uri, host, path, status, body)
		}
		if strings.HasPrefix(path, "/shared/tok-revoked/") || strings.HasPrefix(path, "/shared/tok-expired/") {
			if !strings.HasSuffix(h, ".s.example") && !strings.HasSuffix(h, ".p.example") && status != fasthttp.StatusGone {
				t.Fatalf("%q: a revoked or expired share answered %d", path, status)
			}
		}
		switch status {
		case fasthttp.StatusPermanentRedirect:
			loc := string(ctx.Response.Header.Peek("Location"))
			if !strings.HasPrefix(loc, "/shared/") && !strings.Contains(loc, "://") {
				t.Fatalf("redirect off the share prefix: %q", loc)
			}
		case fasthttp.StatusNotFound, fasthttp.StatusGone, fasthttp.StatusServiceUnavailable:
		default:
			t.Fatalf("%q host %q: unexpected status %d %s", uri, host, status, body)
		}
	})
}
