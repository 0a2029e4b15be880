package plugins

import (
	"context"
	"runtime"
	"testing"

	"github.com/privateconnect/pc/plugins/internal/wasmbuild"
)

func benchHost(b *testing.B, id string, wasm []byte) *Host {
	b.Helper()
	// The budget does not change what a call costs; 50 ms keeps a rare stall from failing a
	// run: these loops allocate (wazero: 3 small objects per call) at hundreds of MB/s on two
	// cores, so a goroutine can be parked in a GC assist for milliseconds between arming its
	// deadline and entering the guest, while the process is busy (see the watchdog's doc).
	h, _ := newTestHost(b, Config{DefaultTimeout: 50_000_000})
	if err := h.Load(context.Background(), id, wasm, ModuleOptions{}); err != nil {
		b.Fatal(err)
	}
	return h
}

func benchChain(b *testing.B, h *Host, chain []Attachment, req *Request) {
	b.Helper()
	ctx := context.Background()
	var d Decision
	h.EvaluateInto(ctx, chain, req, &d)
	if d.Action == Error {
		b.Fatal(d.Err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	n := 0
	for b.Loop() {
		h.EvaluateInto(ctx, chain, req, &d)
		if n++; n%64 == 0 {
			// wazero starts a goroutine per call (to watch the call's context); a loop that
			// never blocks would pile them up and then stall for milliseconds when preempted.
			// Real callers block on I/O; yield now and then like they do.
			runtime.Gosched()
		}
	}
	b.StopTimer()
	if d.Action == Error {
		b.Fatal(d.Err)
	}
}

// BenchmarkMinimalWAT is one call of the smallest guest on a pooled instance (target ≤ 1 µs).
func BenchmarkMinimalWAT(b *testing.B) {
	h := benchHost(b, "min", wat(b, "minimal"))
	benchChain(b, h, []Attachment{{PluginID: "min"}}, testRequest())
}

// BenchmarkReaderWAT reads the path and one header (target ≤ 1 µs).
func BenchmarkReaderWAT(b *testing.B) {
	h := benchHost(b, "reader", wat(b, "reader"))
	benchChain(b, h, []Attachment{{PluginID: "reader"}}, testRequest())
}

// BenchmarkSDKGuestAllow is the Go SDK's fixed cost: config cache lookup + Allow.
func BenchmarkSDKGuestAllow(b *testing.B) {
	h := benchHost(b, "guest", goGuest(b))
	benchChain(b, h, []Attachment{{PluginID: "guest", Config: []byte(`{"op":"allow"}`)}}, testRequest())
}

func BenchmarkMinimalWATParallel(b *testing.B) {
	h := benchHost(b, "min", wat(b, "minimal"))
	chain := []Attachment{{PluginID: "min"}}
	req := testRequest()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		var d Decision
		n := 0
		for pb.Next() {
			if n++; n%64 == 0 {
				runtime.Gosched()
			}
			h.EvaluateInto(context.Background(), chain, req, &d)
			if d.Action == Error {
				b.Fatal(d.Err)
			}
		}
	})
}

// BenchmarkRawGoGuest is a Go c-shared guest that returns ALLOW without the SDK: the fixed
// cost of entering Go's runtime through a wasmexport.
func BenchmarkRawGoGuest(b *testing.B) {
	h := benchHost(b, "raw", wasmbuild.MustGo(b, "testdata/rawgo"))
	benchChain(b, h, []Attachment{{PluginID: "raw"}}, testRequest())
}

// BenchmarkSDKGuestAllowTrusted is BenchmarkSDKGuestAllow compiled without termination checks
// (ModuleOptions.Trusted, as the built-ins are loaded).
func BenchmarkSDKGuestAllowTrusted(b *testing.B) {
	h, _ := newTestHost(b, Config{DefaultTimeout: 50_000_000})
	if err := h.Load(context.Background(), "guest", goGuest(b), ModuleOptions{Trusted: true}); err != nil {
		b.Fatal(err)
	}
	benchChain(b, h, []Attachment{{PluginID: "guest", Config: []byte(`{"op":"allow"}`)}}, testRequest())
}
