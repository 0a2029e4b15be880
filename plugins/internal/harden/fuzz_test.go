package harden

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/privateconnect/pc/plugins/internal/wasmbuild"
	"github.com/stretchr/testify/require"
)

// FuzzModule feeds arbitrary bytes to the rewrite, which reads untrusted
// uploads before wazero does. It must never panic; what it accepts, wazero
// must be able to decode without a runaway allocation (the fuzzer's process
// dies otherwise); and it must not break a module: when the module with
// only its custom sections dropped compiles, so must the rewritten one, with
// the same exported functions. (wazero is never given bytes the rewrite
// refused: its decoder trusts declared counts.) In normal test runs only
// the seed corpus runs.
func FuzzModule(f *testing.F) {
	f.Add(recurseWasm(f))
	paths, err := filepath.Glob("../../testdata/wat/*.wat")
	require.NoError(f, err)
	for _, p := range paths {
		f.Add(wasmbuild.MustWAT(f, p))
	}
	for _, code := range [][]byte{
		{0x0b},
		{0x10, 0x00, 0x0b}, // call 0: recursion
		{0x02, 0x40, 0x10, 0x00, 0x0f, 0x0b, 0x0b}, // block, call, return
		{0x0f, 0x0b},
	} {
		f.Add(codeModule(code...))
	}
	rt := newRuntime(f)
	ctx := context.Background()
	f.Fuzz(func(t *testing.T, wasm []byte) {
		res, err := module(wasm, testBudget)
		if err != nil {
			return
		}
		cm, err := rt.CompileModule(ctx, res.Wasm)
		if err == nil {
			defer cm.Close(ctx)
		}
		p, perr := parse(wasm)
		require.NoError(t, perr)
		orig, oerr := rt.CompileModule(ctx, p.encode())
		if oerr != nil {
			return
		}
		defer orig.Close(ctx)
		require.NoError(t, err, "the rewritten module of one that compiles")
		want, got := orig.ExportedFunctions(), cm.ExportedFunctions()
		require.Equal(t, len(want), len(got))
		for name := range want {
			require.Contains(t, got, name)
		}
	})
}
