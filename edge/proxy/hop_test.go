package proxy

import (
	"fmt"
	"strings"
	"testing"

	"github.com/valyala/fasthttp"
)

// hostileHead is a request head made to cost a hop-by-hop scan the most:
// 600 headers, four Connection lines of 800 tokens, 64 Proxy-* headers.
func hostileHead() *fasthttp.RequestHeader {
	var h fasthttp.RequestHeader
	for i := range 600 {
		h.Add(fmt.Sprintf("a%d", i), "b")
	}
	toks := strings.TrimSuffix(strings.Repeat("z,", 800), ",")
	for range 4 {
		h.Add("Connection", toks)
	}
	for i := range 64 {
		h.Add(fmt.Sprintf("Proxy-%d", i), "v")
	}
	return &h
}

// Every Proxy-* header goes, whatever their number; the rest stays. (The
// scan is linear: BenchmarkStripHopHostile; it took 400 ms on this head
// when each pass re-read every Connection token for every header.)
func TestStripHopHostileHead(t *testing.T) {
	h := hostileHead()
	stripHop(h, false, nil)
	n := 0
	for k := range h.All() {
		if strings.HasPrefix(strings.ToLower(string(k)), "proxy-") {
			t.Fatalf("%s left", k)
		}
		n++
	}
	if n < 600 {
		t.Fatalf("%d headers left, want the 600 others", n)
	}
	// Names in any case, named or fixed.
	var r fasthttp.ResponseHeader
	r.DisableNormalizing()
	r.Set("keep-alive", "timeout=5")
	r.Set("upgrade", "h2c")
	r.Set("te", "trailers")
	r.Set("connection", "x-secret")
	r.Set("x-secret", "s3")
	r.Set("X-Kept", "1")
	stripHopResponse(&r)
	for k := range r.All() {
		if s := strings.ToLower(string(k)); s != "x-kept" && s != "connection" && s != "content-type" && s != "content-length" {
			t.Errorf("%s left", k)
		}
	}
}

func BenchmarkStripHopHostile(b *testing.B) {
	for b.Loop() {
		b.StopTimer()
		h := hostileHead()
		b.StartTimer()
		stripHop(h, false, nil)
	}
}
