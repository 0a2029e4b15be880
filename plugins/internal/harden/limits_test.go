package harden

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
)

// funcsModule is a module of count functions (param i32) with body each
// (its final end included) and locals i32 locals.
func funcsModule(count int, locals uint32, body []byte) []byte {
	b := appendU32([]byte{0x01}, locals)
	b = append(b, 0x7f)
	b = append(b, body...)
	fsec := appendU32(nil, uint32(count))
	csec := appendU32(nil, uint32(count))
	for range count {
		fsec = append(fsec, 0x00)
		csec = appendU32(csec, uint32(len(b)))
		csec = append(csec, b...)
	}
	return wasmOf(sec(1, 0x01, 0x60, 0x01, 0x7f, 0x00), sec(3, fsec...), sec(10, csec...))
}

// nested is n nested blocks.
func nested(n int) []byte {
	var b []byte
	for range n {
		b = append(b, 0x02, 0x40)
	}
	for range n {
		b = append(b, 0x0b)
	}
	return append(b, 0x0b)
}

// diamonds is d (if (local 0) (local 1 = local 0)) in a row, then a read of
// locals 0 to u-1: u locals live across d merges.
func diamonds(d, u int) []byte {
	var b []byte
	for range d {
		b = append(b, 0x20, 0x00, 0x04, 0x40, 0x20, 0x00, 0x21, 0x01, 0x0b)
	}
	for i := range u {
		b = append(appendU32(append(b, 0x20), uint32(i)), 0x1a)
	}
	return append(b, 0x0b)
}

// Modules that would cost wazero's compiler minutes and gigabytes are
// refused before it sees them; modules just inside the limits are kept.
func TestCompileLimits(t *testing.T) {
	cases := []struct {
		name string
		wasm []byte
		ok   bool
	}{
		// 52 KB: wazero took 142 s and 1.8 GB of memory to compile it.
		{"4,000 locals across 4,000 merges", funcsModule(1, 4000, diamonds(4000, 4000)), false},
		{"400 locals across 250 merges", funcsModule(1, 400, diamonds(250, 400)), true},
		{"400 locals across 251 merges", funcsModule(1, 400, diamonds(251, 400)), false},
		{"100 functions at the product limit", funcsModule(100, 400, diamonds(250, 400)), true},
		{"101 functions at the product limit", funcsModule(101, 400, diamonds(250, 400)), false},
		// 131 KB: wazero took 26 s.
		{"43,690 nested blocks", funcsModule(1, 0, nested(43690)), false},
		{"20,000 nested blocks", funcsModule(1, 0, nested(20000)), true},
		{"20,001 nested blocks", funcsModule(1, 0, nested(20001)), false},
		{"4 functions of 10,000 nested blocks", funcsModule(4, 0, nested(10000)), true},
		{"5 functions of 10,000 nested blocks", funcsModule(5, 0, nested(10000)), false},
	}
	for _, tc := range cases {
		_, err := Module(tc.wasm)
		if tc.ok {
			assert.NoError(t, err, tc.name)
		} else {
			assert.ErrorIs(t, err, ErrTooComplex, tc.name)
		}
	}
}

// BenchmarkCompileAtLimits compiles, as the plugin host does, the costliest
// shapes harden accepts: one function of 20,000 nested blocks (Σn² at its
// limit), and 100 functions with 400 locals live across 250 merges each
// (Σu·n at its limit).
func BenchmarkCompileAtLimits(b *testing.B) {
	for _, bc := range []struct {
		name string
		wasm []byte
	}{
		{"nested", funcsModule(1, 0, nested(20000))},
		{"locals", funcsModule(100, 400, diamonds(250, 400))},
		{"locals-square", funcsModule(100, 316, diamonds(316, 316))},
	} {
		b.Run(bc.name, func(b *testing.B) {
			res, err := Module(bc.wasm)
			require.NoError(b, err)
			ctx := context.Background()
			for b.Loop() {
				rt := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfig().WithCoreFeatures(api.CoreFeaturesV2).WithCloseOnContextDone(true))
				_, err := rt.CompileModule(ctx, res.Wasm)
				require.NoError(b, err)
				_ = rt.Close(ctx)
			}
		})
	}
}
