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

// brTable is a block of type 1 (() -> (r × i32)) that branches to itself
// through a br_table of t+1 labels, passing r values on each edge.
func brTable(r, t int) []byte {
	b := []byte{0x02, 0x01}
	for range r {
		b = append(b, 0x20, 0x00)
	}
	b = append(b, 0x20, 0x00, 0x0e)
	b = appendU32(b, uint32(t))
	b = append(b, make([]byte, t+1)...)
	b = append(b, 0x0b)
	for range r {
		b = append(b, 0x1a)
	}
	return append(b, 0x0b)
}

// resultsModule is funcsModule with a second type, () -> (r × i32), for
// the blocks of brTable.
func resultsModule(count, r int, body []byte) []byte {
	m := funcsModule(count, 0, body)
	results := append([]byte{0x02, 0x60, 0x01, 0x7f, 0x00, 0x60, 0x00}, appendU32(nil, uint32(r))...)
	for range r {
		results = append(results, 0x7f)
	}
	old := sec(1, 0x01, 0x60, 0x01, 0x7f, 0x00)
	return append(wasmOf(sec(1, results...)), m[8+len(old):]...)
}

// Every branch edge passes its target's values, which wazero copies per
// edge: a 23 KB br_table of 19,001 labels passing 1,000 values took 37 s.
func TestBranchValuesCount(t *testing.T) {
	_, err := Module(resultsModule(1, 1000, brTable(1000, 19000)))
	assert.ErrorIs(t, err, ErrTooComplex)
	_, err = Module(resultsModule(1, 100, brTable(100, 900)))
	assert.NoError(t, err)
	_, err = Module(codeModule(0x0c, 0x01, 0x0b)) // br 1: no such label
	assert.ErrorIs(t, err, ErrMalformed)
	// One function's code is at most MaxFunctionBytes.
	big := make([]byte, MaxFunctionBytes)
	for i := range big {
		big[i] = 0x01 // nop
	}
	_, err = Module(codeModule(append(big, 0x0b)...))
	assert.ErrorIs(t, err, ErrTooComplex)
	_, err = Module(codeModule(append(big[1:], 0x0b)...))
	assert.NoError(t, err)
}

// BenchmarkCompileAtLimits compiles, as the plugin host does, the costliest
// shapes harden accepts: one function of 20,000 nested blocks (Σn² at its
// limit), 100 functions with 400 locals live across 250 merges each
// (Σu·n at its limit), and 100 br_tables of 981 labels passing 100 values.
func BenchmarkCompileAtLimits(b *testing.B) {
	for _, bc := range []struct {
		name string
		wasm []byte
	}{
		{"nested", funcsModule(1, 0, nested(20000))},
		{"locals", funcsModule(100, 400, diamonds(250, 400))},
		{"locals-square", funcsModule(100, 316, diamonds(316, 316))},
		{"br_table", resultsModule(100, 100, brTable(100, 980))},
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
