package proxy

import (
	"bufio"
	"bytes"
	"net"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/valyala/fasthttp"

	"github.com/privateconnect/pc/edge/routes"
	"github.com/privateconnect/pc/internal/config"
)

// The policy chain's view of the visitor's headers (Edits.Hidden, behind
// get_header) is the request the service gets: a header is hidden exactly
// when none of the visitor's lines of it reaches the service, and a header
// not hidden reaches it with the visitor's lines unchanged. Checked on a
// head full of hop-by-hop, edge-set and underscore names, as a plain request
// and as a WebSocket upgrade (Upgrade is seen there, Connection never), with the head read in admit's pass (Handler)
// and without (read on the first lookup).
func TestHiddenMatchesForwarded(t *testing.T) {
	const head = "Host: edge.example\r\n" +
		"X-Forwarded-For: 6.6.6.6\r\nx-forwarded-for: 7.7.7.7\r\nX-Real-Ip: 6.6.6.6\r\nForwarded: for=6.6.6.6\r\n" +
		"X-Share-Id: other\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Host: evil.example\r\nX-Forwarded-Prefix: /x\r\n" +
		"X-Original-Url: /admin\r\nX-Forwarded-Ssl: on\r\nX_Forwarded_For: 6.6.6.6\r\nX_Http_Method_Override: DELETE\r\n" +
		"X-Secret: s\r\nX-Secret: t\r\nKeep-Alive: timeout=5\r\nProxy-Authorization: Basic x\r\nProxy-Foo: 1\r\nTE: trailers\r\n" +
		"Trailer: X-T\r\nX_User: admin\r\nX-User: alice\r\nAuthorization: Bearer t\r\nX-Other: 1\r\nX-Other: 2\r\n" +
		"X_Custom: c\r\nCookie: a=1\r\nX-Http-Method-Override: PUT\r\n"
	for _, tc := range []struct {
		name, conn string
		upgrade    bool
	}{
		{"plain", "Connection: X-Secret, keep-alive\r\nUpgrade: h2c\r\n", false},
		{"websocket", "Connection: Upgrade, X-Secret\r\nUpgrade: websocket\r\n", true},
	} {
		for _, read := range []bool{true, false} {
			raw := "GET /shared/tok/public/x HTTP/1.1\r\n" + tc.conn + head + "\r\n"
			var req fasthttp.Request
			if err := req.Read(bufio.NewReader(strings.NewReader(raw))); err != nil {
				t.Fatal(err)
			}
			var ctx fasthttp.RequestCtx
			ctx.Init(&req, &net.TCPAddr{IP: net.IPv4(192, 0, 2, 1), Port: 4242}, nil)
			edits := &Edits{}
			if read && !tokenNames(&ctx.Request.Header, &edits.head) {
				t.Fatal("names")
			}
			if read && edits.head.upgrade != tc.upgrade {
				t.Fatalf("%s: upgrade %v", tc.name, edits.head.upgrade)
			}
			// Hidden before the forward, as the chain asks.
			hidden := map[string]bool{}
			visitor := map[string][]string{}
			for k, v := range ctx.Request.Header.All() {
				n := strings.ToLower(string(k))
				hidden[n] = edits.Hidden(&ctx.Request.Header, string(k))
				visitor[n] = append(visitor[n], string(v))
			}
			hidden["transfer-encoding"] = edits.Hidden(&ctx.Request.Header, "Transfer-Encoding")
			got := forwardHead(t, &ctx, edits, tc.upgrade)
			for n, vs := range visitor {
				fw := got[n]
				switch {
				case hidden[n]:
					for _, v := range vs {
						if slices.Contains(fw, v) {
							t.Errorf("%s (head read %v): %s hidden from the chain, but the visitor's %q reached the service (%q)", tc.name, read, n, v, fw)
						}
					}
				case n != "host" && !slices.Equal(slices.Sorted(slices.Values(fw)), slices.Sorted(slices.Values(vs))):
					// (Sorted: fasthttp's Del moves the last header line into
					// the deleted one's place, so the lines of a header sent
					// twice may reach the service in another order.)
					t.Errorf("%s (head read %v): %s shown to the chain as %q, the service got %q", tc.name, read, n, vs, fw)
				}
			}
			for _, n := range []string{"x-forwarded-for", "x-share-id", "x-forwarded-proto", "x-forwarded-host", "x-secret",
				"keep-alive", "proxy-authorization", "te", "x_user", "x_forwarded_for", "x_http_method_override", "transfer-encoding"} {
				if !hidden[n] {
					t.Errorf("%s (head read %v): %s not hidden", tc.name, read, n)
				}
			}
			for _, n := range []string{"x-user", "authorization", "x-other", "x_custom", "cookie", "x-http-method-override"} {
				if hidden[n] {
					t.Errorf("%s (head read %v): %s hidden", tc.name, read, n)
				}
			}
			if !hidden["connection"] || hidden["upgrade"] == tc.upgrade {
				t.Errorf("%s (head read %v): Connection hidden %v, Upgrade hidden %v", tc.name, read, hidden["connection"], hidden["upgrade"])
			}
		}
	}
}

// forwardHead is the head prepareRequest makes of ctx's request for the
// service, names lower-cased, read back as net/http reads it.
func forwardHead(t *testing.T, ctx *fasthttp.RequestCtx, edits *Edits, upgrade bool) map[string][]string {
	t.Helper()
	const link = "/shared/tok"
	tg := target{share: &routes.Share{Share: config.Share{ID: "share-1"}}, path: ctx.Path()[len(link):], prefix: []byte(link),
		svc: &config.Service{ID: "11111111-1111-4111-8111-111111111111", TargetHost: "127.0.0.1", TargetPort: 80}}
	var out fasthttp.Request
	New(Config{}).prepareRequest(ctx, &out, tg, "192.0.2.1", edits, upgrade)
	if upgrade {
		upgradeOnly(&out.Header) // as Proxy.websocket does
	}
	var b bytes.Buffer
	bw := bufio.NewWriter(&b)
	if err := out.Write(bw); err != nil {
		t.Fatal(err)
	}
	_ = bw.Flush()
	r, err := http.ReadRequest(bufio.NewReader(&b))
	if err != nil {
		t.Fatalf("the forwarded request does not parse: %v\n%s", err, b.String())
	}
	m := map[string][]string{}
	for k, vs := range r.Header {
		m[strings.ToLower(k)] = append(m[strings.ToLower(k)], vs...)
	}
	if len(r.TransferEncoding) > 0 {
		m["transfer-encoding"] = r.TransferEncoding
	}
	return m
}

// The chain's view costs no allocation: get_header runs it on every lookup.
func TestHiddenAllocations(t *testing.T) {
	raw := "GET /x HTTP/1.1\r\nHost: h\r\nConnection: X-Secret\r\nX-Secret: s\r\nX-User: a\r\nX_Custom: c\r\n\r\n"
	var req fasthttp.Request
	if err := req.Read(bufio.NewReader(strings.NewReader(raw))); err != nil {
		t.Fatal(err)
	}
	var edits Edits
	names := []string{"X-Forwarded-For", "X-Secret", "X-User", "X_Custom", "X_User", "Proxy-Foo", "Connection", "authorization"}
	if n := testing.AllocsPerRun(100, func() {
		edits.Reset()
		for _, name := range names {
			edits.Hidden(&req.Header, name)
		}
	}); n != 0 {
		t.Fatalf("%v allocations", n)
	}
}
