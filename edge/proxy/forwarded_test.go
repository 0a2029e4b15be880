package proxy

import (
	"bufio"
	"bytes"
	"net"
	"net/http"
	"strings"
	"testing"

	"github.com/valyala/fasthttp"

	"github.com/privateconnect/pc/edge/routes"
	"github.com/privateconnect/pc/internal/config"
)

// forwardRaw parses a visitor's raw request as the share listener does,
// prepares the request the edge sends the service (with the policy chain's
// edits), and returns it as a service's net/http reads it.
func forwardRaw(t *testing.T, raw string, edits *Edits) *http.Request {
	t.Helper()
	var req fasthttp.Request
	if err := req.Read(bufio.NewReader(strings.NewReader(raw))); err != nil {
		t.Fatalf("the visitor's request does not parse: %v", err)
	}
	var ctx fasthttp.RequestCtx
	ctx.Init(&req, &net.TCPAddr{IP: net.IPv4(192, 0, 2, 1), Port: 4242}, nil)
	const link = "/shared/tok"
	tg := target{share: &routes.Share{Share: config.Share{ID: "share-1"}}, path: ctx.Path()[len(link):], prefix: []byte(link),
		svc: &config.Service{ID: "11111111-1111-4111-8111-111111111111", TargetHost: "127.0.0.1", TargetPort: 80}}
	var out fasthttp.Request
	New(Config{}).prepareRequest(&ctx, &out, tg, "192.0.2.1", edits, false)
	var b bytes.Buffer
	bw := bufio.NewWriter(&b)
	if err := out.Write(bw); err != nil {
		t.Fatal(err)
	}
	_ = bw.Flush()
	got, err := http.ReadRequest(bufio.NewReader(&b))
	if err != nil {
		t.Fatalf("the forwarded request does not parse: %v\n%s", err, b.String())
	}
	return got
}

// A header the edge or the policy chain sets reaches the service once,
// with the edge's value, however many lines of it the visitor sent: a
// Set replaced only the first line, and the second went on (Rails, Werkzeug's
// ProxyFix and Node read the last or the joined value).
func TestForwardedHeadersReplaceEveryVisitorLine(t *testing.T) {
	raw := "GET /shared/tok/public/x HTTP/1.1\r\nHost: edge.example\r\n" +
		"X-Share-Id: a\r\nX-Share-Id: someone-else\r\n" +
		"X-Forwarded-Proto: http\r\nX-Forwarded-Proto: https\r\n" +
		"X-Forwarded-Host: a\r\nX-Forwarded-Host: evil.example\r\n" +
		"X-Forwarded-For: 6.6.6.6\r\nX-Forwarded-For: 7.7.7.7\r\n" +
		"X-User: a\r\nX-User: admin\r\n\r\n"
	got := forwardRaw(t, raw, &Edits{SetRequest: [][2]string{{"X-User", "bob"}}})
	for name, want := range map[string]string{
		"X-Share-Id": "share-1", "X-Forwarded-Proto": "http", "X-Forwarded-Host": "edge.example",
		"X-Forwarded-For": "192.0.2.1", "X-User": "bob",
	} {
		if v := got.Header.Values(name); len(v) != 1 || v[0] != want {
			t.Errorf("%s reached the service as %q, want only %q", name, v, want)
		}
	}
}

// A header name that is not a token ("X A", "X(A)") is refused: the edge
// would forward it as sent, and Python's http.server (http.client's header
// parser) takes such a line for the end of the head, so every header after
// it, the edge's X-Forwarded-For and X-Share-Id and a plugin's set headers
// among them, never reached the service. Go's net/http refuses it too.
func TestHeaderNamesMustBeTokens(t *testing.T) {
	p := fuzzProxy(t)
	for _, name := range []string{"X A", "X(A)", "X\"A", "X,A", "X@A", "X/A", "X\x80A", "X{A}", "X[A]", "X=A", "X\\A", "X?A", "X\tA", "X\x7fA", "X\x01A"} {
		raw := "GET /shared/tok-live/x HTTP/1.1\r\nHost: edge\r\n" + name + ": b\r\n\r\n"
		var req fasthttp.Request
		if err := req.Read(bufio.NewReader(strings.NewReader(raw))); err != nil {
			continue // refused by the parser already
		}
		var ctx fasthttp.RequestCtx
		ctx.Init(&req, &net.TCPAddr{IP: net.IPv4(192, 0, 2, 1), Port: 4242}, nil)
		p.Handler(&ctx)
		if got := ctx.Response.StatusCode(); got != fasthttp.StatusBadRequest || !ctx.Response.ConnectionClose() {
			t.Errorf("header name %q: status %d (close %v), want 400 and the connection closed", name, got, ctx.Response.ConnectionClose())
		}
		ctx.Response.Reset()
		if got := p.Expect(&ctx); got != fasthttp.StatusBadRequest {
			t.Errorf("header name %q: Expect answered %d, want 400", name, got)
		}
	}
	// Tokens pass (no agent online: 503).
	raw := "GET /shared/tok-live/x HTTP/1.1\r\nHost: edge\r\nX_A.b~c!#$%&'*+^`|: b\r\n\r\n"
	var req fasthttp.Request
	if err := req.Read(bufio.NewReader(strings.NewReader(raw))); err != nil {
		t.Fatal(err)
	}
	var ctx fasthttp.RequestCtx
	ctx.Init(&req, &net.TCPAddr{IP: net.IPv4(192, 0, 2, 1), Port: 4242}, nil)
	p.Handler(&ctx)
	if got := ctx.Response.StatusCode(); got != fasthttp.StatusServiceUnavailable {
		t.Errorf("token header names: status %d, want 503", got)
	}
}

// CGI-style servers (Python's wsgiref, PHP, Rack, many WSGI servers) name
// both X-Share-Id and X_Share_Id HTTP_X_SHARE_ID and join or pick between
// them: a visitor's X_Forwarded_For reached a WSGI service as
// HTTP_X_FORWARDED_FOR "6.6.6.6,<the edge's>". A visitor header spelled with
// underscores is dropped when it aliases a header the edge or the policy
// chain sets or removes, or another header of the request (one a plugin
// checked); other underscore headers go on.
func TestUnderscoreAliasesDropped(t *testing.T) {
	raw := "GET /shared/tok/public/x HTTP/1.1\r\nHost: edge.example\r\n" +
		"X_Forwarded_For: 6.6.6.6\r\nX_Share_Id: evil\r\nx_forwarded_proto: https\r\nX-Forwarded_Host: evil.example\r\n" +
		"X_Real_Ip: 6.6.6.6\r\nX_User: admin\r\nX_Internal: 1\r\n" +
		"X_Api_Token: forged\r\nX-Api-Token: checked\r\n" +
		"X_HTTP_Method_Override: DELETE\r\nApi_Key: k\r\nX_Custom: 1\r\n\r\n"
	got := forwardRaw(t, raw, &Edits{SetRequest: [][2]string{{"X-User", "bob"}}, RemoveRequest: []string{"X-Internal"}})
	for _, name := range []string{"X_forwarded_for", "X_share_id", "X_forwarded_proto", "X-Forwarded_host",
		"X_real_ip", "X_user", "X_internal", "X_api_token", "X_http_method_override"} {
		if v := got.Header[name]; len(v) > 0 {
			t.Errorf("%s reached the service: %q", name, v)
		}
	}
	for name, want := range map[string]string{"Api_key": "k", "X_custom": "1", "X-Api-Token": "checked", "X-User": "bob"} {
		if v := got.Header[name]; len(v) != 1 || v[0] != want {
			t.Errorf("%s reached the service as %q, want %q", name, v, want)
		}
	}
}

// Claims of another scheme or another request URL are dropped: services
// behind IIS (and older Symfony, Zend) route X-Original-Url instead of the
// path the policy checked; Rack and Werkzeug take X-Forwarded-Ssl: on for
// https whatever the edge's X-Forwarded-Proto says.
func TestClaimsOfAnotherURLDropped(t *testing.T) {
	claims := []string{"X-Original-URL", "X-Rewrite-URL", "X-Original-URI", "X-Forwarded-Uri", "X-Forwarded-Path",
		"X-Forwarded-Ssl", "X-Forwarded-Scheme", "X-Url-Scheme", "Front-End-Https"}
	raw := "GET /shared/tok/public/x HTTP/1.1\r\nHost: edge.example\r\n"
	for _, c := range claims {
		raw += c + ": /admin\r\n" + c + ": on\r\n"
	}
	got := forwardRaw(t, raw+"\r\n", &Edits{})
	for _, c := range claims {
		if v := got.Header.Values(c); len(v) > 0 {
			t.Errorf("%s reached the service: %q", c, v)
		}
	}
	if got.URL.Path != "/public/x" {
		t.Errorf("path %q", got.URL.Path)
	}
}
