package proxy

import (
	"net"
	"testing"

	"github.com/valyala/fasthttp"

	"github.com/privateconnect/pc/internal/config"
)

// TestExpectAnswersAsHandler: a request that Expect refuses from its head
// gets the answer Handler gives the whole request (status, Location, body)
// and the same access record. The table of fuzzProxy has no agent online,
// so every request is refused: by the share checks, or as offline.
func TestExpectAnswersAsHandler(t *testing.T) {
	p := fuzzProxy(t)
	var logs []config.AccessLog
	p.cfg.OnAccess = func(a config.AccessLog) { logs = append(logs, a) }
	peer := &net.TCPAddr{IP: net.IPv4(192, 0, 2, 1), Port: 4242}
	recorded := 0
	var cases [][3]string
	for _, m := range []string{"POST", "PUT", "TRACE", "CONNECT"} {
		for _, tc := range [][2]string{
			{"/shared/tok-live/upload", "edge"}, {"/shared/tok-live", "edge"}, {"/shared/tok-revoked/x", "edge"},
			{"/shared/tok-expired/x", "edge"}, {"/shared/tok-paused/x", "edge"}, {"/shared/nope/x", "edge"},
			{"/elsewhere", "edge"}, {"/x", "tok-live.s.example"}, {"/x", "tok-revoked.s.example"},
			{"/", "pub.p.example"}, {"/", "nope.p.example"},
		} {
			cases = append(cases, [3]string{tc[0], tc[1], m})
		}
	}
	for _, tc := range cases {
		run := func(f func(*fasthttp.RequestCtx)) (*fasthttp.RequestCtx, []config.AccessLog) {
			logs = nil
			var req fasthttp.Request
			req.Header.SetMethod(tc[2])
			req.SetRequestURI(tc[0])
			req.Header.SetHost(tc[1])
			req.Header.Set("Expect", "100-continue")
			var ctx fasthttp.RequestCtx
			ctx.Init(&req, peer, nil)
			f(&ctx)
			return &ctx, logs
		}
		var expected int
		e, elogs := run(func(ctx *fasthttp.RequestCtx) { expected = p.Expect(ctx) })
		h, hlogs := run(p.Handler)
		if expected == fasthttp.StatusContinue {
			t.Fatalf("%s %s (host %s): Expect let a refused request send its body (Handler: %d %s)",
				tc[2], tc[0], tc[1], h.Response.StatusCode(), h.Response.Body())
		}
		if expected != h.Response.StatusCode() || expected != e.Response.StatusCode() ||
			string(e.Response.Body()) != string(h.Response.Body()) ||
			string(e.Response.Header.Peek("Location")) != string(h.Response.Header.Peek("Location")) ||
			string(e.Response.Header.Peek("Allow")) != string(h.Response.Header.Peek("Allow")) ||
			string(e.Response.Header.ContentType()) != string(h.Response.Header.ContentType()) {
			t.Fatalf("%s %s (host %s): Expect answered %d %q, Handler %d %q", tc[2], tc[0], tc[1],
				expected, e.Response.Body(), h.Response.StatusCode(), h.Response.Body())
		}
		if len(elogs) != len(hlogs) {
			t.Fatalf("%s: %d access records from Expect, %d from Handler", tc[0], len(elogs), len(hlogs))
		}
		recorded += len(elogs)
		for i := range elogs {
			a, b := elogs[i], hlogs[i]
			a.At, a.LatencyMs, b.LatencyMs = b.At, 0, 0
			if a != b {
				t.Fatalf("%s: Expect recorded %+v, Handler %+v", tc[0], a, b)
			}
		}
	}
	if recorded == 0 {
		t.Fatal("no access record to compare")
	}
}
