package plugins

import (
	"os"
	"testing"
)

func BenchmarkDebugWasm(b *testing.B) {
	wasm, err := os.ReadFile(os.Getenv("WASM"))
	if err != nil {
		b.Skip(err)
	}
	h := benchHost(b, "x", wasm)
	benchChain(b, h, []Attachment{{PluginID: "x"}}, testRequest())
}
