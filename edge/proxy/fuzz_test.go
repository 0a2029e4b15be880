package proxy

import (
	"bufio"
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
	"github.com/privateconnect/pc/internal/pathguard"
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
		if pathguard.Exploit(ctx.Path()) {
			// A NUL or a dot segment with path parameters: refused, on a
			// share or service that exists, before anything else of it.
			if status != fasthttp.StatusBadRequest && status != fasthttp.StatusNotFound &&
				status != fasthttp.StatusPermanentRedirect && status != fasthttp.StatusGone && status != fasthttp.StatusServiceUnavailable {
				t.Fatalf("%q host %q: status %d %s, want 400 (or the share's own refusal)", uri, host, status, body)
			}
			if strings.Contains(body, "its agent is not connected") {
				t.Fatalf("%q host %q (path %q) reached the share", uri, host, path)
			}
			return
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

// FuzzRawPath: a path forwarded as the visitor sent it (rawPath) names what
// the policies checked. Its segments, each percent-decoded, are the
// normalized path after the link (fasthttp's, what policies see), and none
// is a dot segment: a service routing on the raw path, decoded or not,
// never reaches a segment outside that path.
func FuzzRawPath(f *testing.F) {
	for _, s := range []string{"/a%2Fb", "/files/a%20b.txt", "/a/%2e%2e/b%2F", "/a%2F..%2Fb", "/%2e", "/a//b%2F",
		"/a\\b%2F", "/x%zz", "/%2F%2F", "/a%2f%2e%2e", "/.%2e/x%2F", "/a%2Fb?c=%2F", "/%", "/a%2"} {
		f.Add([]byte(s))
	}
	const link = "/shared/abc"
	f.Fuzz(func(t *testing.T, suffix []byte) {
		var req fasthttp.Request
		req.SetRequestURIBytes(append([]byte(link), suffix...))
		norm, orig := string(req.URI().Path()), req.URI().PathOriginal()
		if !strings.HasPrefix(norm, link+"/") {
			return // another link, or none
		}
		raw := rawPath(orig, []byte(link))
		if raw == nil {
			return
		}
		segs := strings.Split(string(raw[1:]), "/")
		for i, s := range segs {
			segs[i] = percentDecode(s)
			if segs[i] == "." || segs[i] == ".." {
				t.Fatalf("%q: raw path %q has a dot segment", suffix, raw)
			}
		}
		if got := "/" + strings.Join(segs, "/"); got != norm[len(link):] {
			t.Fatalf("%q: raw path %q decodes to %q, policies saw %q", suffix, raw, got, norm[len(link):])
		}
	})
}

// percentDecode decodes %XY escapes and keeps any other '%' as it is, as
// fasthttp does.
func percentDecode(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '%' && i+2 < len(s) && isHex(s[i+1]) && isHex(s[i+2]) {
			b.WriteByte(unhex(s[i+1])<<4 | unhex(s[i+2]))
			i += 2
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func isHex(c byte) bool { return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F' }

func unhex(c byte) byte {
	switch {
	case c <= '9':
		return c - '0'
	case c >= 'a':
		return c - 'a' + 10
	default:
		return c - 'A' + 10
	}
}

// FuzzFirstByteConnSwitches: whatever the service sends and however it is
// split between two reads, the watch of a response's start catches every
// response the HTTP client would read as a 101 (which would leave the next
// answer unread in a pooled stream), and refuses no other response the
// client reads whole.
func FuzzFirstByteConnSwitches(f *testing.F) {
	for _, s := range []string{
		"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
		"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 101 X\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", "\r\n\nHTTP/1.0 101\r\n\r\n", "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n",
		"HTTP/1.1 101 X\n\n", "HTTP/1.1  101\r\n\r\n", "XYZ 101 ok\r\n\r\n",
	} {
		f.Add([]byte(s), uint16(len(s)/2))
	}
	f.Fuzz(func(t *testing.T, resp []byte, split uint16) {
		if len(resp) > maxInterimHead {
			return
		}
		var r fasthttp.Response
		err := r.Read(bufio.NewReader(bytes.NewReader(resp)))
		client101 := err == nil && r.StatusCode() == fasthttp.StatusSwitchingProtocols
		i := int(split) % (len(resp) + 1)
		c := &firstByteConn{sniff: true}
		got := false
		if i > 0 {
			got = c.switches(resp[:i])
		}
		if !got && c.sniff && i < len(resp) {
			got = c.switches(resp[i:])
		}
		if client101 && !got {
			t.Fatalf("%q split at %d: the client reads a 101 the watch let through", resp, i)
		}
		if got && err == nil && !client101 {
			t.Fatalf("%q split at %d: a %d the client reads whole was refused", resp, i, r.StatusCode())
		}
	})
}
