package harden

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Bytes that harden and wazero would read differently are refused: wazero
// would run instructions harden never saw (an unguarded call, a reset of
// the stack counter) or allocate for a count harden took for code.
func TestReadLikeWazero(t *testing.T) {
	cases := map[string][]byte{
		// wazero reads 0x63 as a typed reference then a heap type, and the
		// expression bytes after it as an entry count of 4.17e9 (a 20-byte
		// module that killed the process).
		"element reference type": wasmOf(sec(9, 0x01, 0x05, 0x63, 0x01, 0xc4, 0xc4, 0xc4, 0xc4, 0x0f, 0x0b)),
		"element kind":           wasmOf(sec(9, 0x01, 0x01, 0x70, 0x00)),
		// wazero reads the SIMD sub-opcode as one byte: 0x80 then 0x00
		// would be v128.load with its memarg for a LEB reader, and
		// i16x8.abs then unreachable for wazero.
		"SIMD sub-opcode": codeModule(0xfd, 0x80, 0x00, 0x0b),
		// wazero reads a typed-reference block type (0x63 then a heap type).
		"block type 0x63":  codeModule(0x02, 0x63, 0x21, 0x10, 0x00, 0x00, 0x0b, 0x0b),
		"block type index": codeModule(0x02, 0x05, 0x0b, 0x0b),
		"call index":       codeModule(0x10, 0x05, 0x0b),
		"ref.func in code": codeModule(0xd2, 0x00, 0x1a, 0x0b),
	}
	for name, wasm := range cases {
		_, err := module(wasm, testBudget)
		assert.ErrorIs(t, err, ErrMalformed, name)
	}
	// The canonical two-byte sub-opcode (0x80 0x01, i16x8.abs) is kept, and
	// ref.func in an element segment.
	v128 := append([]byte{0xfd, 0x0c}, make([]byte, 16)...)
	for name, wasm := range map[string][]byte{
		"i16x8.abs": codeModule(append(v128, 0xfd, 0x80, 0x01, 0x1a, 0x0b)...),
		"element ref.func": wasmOf(sec(1, 0x01, 0x60, 0x00, 0x00), sec(3, 0x01, 0x00), sec(4, 0x01, 0x70, 0x00, 0x01),
			sec(9, 0x01, 0x04, 0x41, 0x00, 0x0b, 0x01, 0xd2, 0x00, 0x0b), sec(10, 0x01, 0x02, 0x00, 0x0b)),
	} {
		res, err := module(wasm, testBudget)
		require.NoError(t, err, name)
		_, err = newRuntime(t).CompileModule(context.Background(), res.Wasm)
		require.NoError(t, err, name)
	}
}

// vec appends to prefix a vector of n copies of entry.
func vec(prefix []byte, n int, entry ...byte) []byte {
	b := appendU32(prefix, uint32(n))
	for range n {
		b = append(b, entry...)
	}
	return b
}

// Counts wazero pays for per item, at compile time or in every instance,
// are capped.
func TestCounts(t *testing.T) {
	manyParams := append(vec([]byte{0x01, 0x60}, MaxParams+1, 0x7e), 0x00)
	manyResults := vec([]byte{0x01, 0x60, 0x00}, MaxParams+1, 0x7e)
	types := vec(nil, MaxTypes+1, 0x60, 0x00, 0x00)
	funcs := vec(nil, MaxFunctions+1, 0x00)
	globals := vec(nil, MaxGlobals+1, 0x7f, 0x00, 0x41, 0x00, 0x0b)
	entries := vec([]byte{0x01, 0x05, 0x70}, MaxElementEntries+1, 0xd0, 0x70, 0x0b)
	imports := vec(nil, MaxImports+1, 0x01, 'a', 0x01, 'b', 0x00, 0x00)
	// Duplicate names too: wazero allocates for the declared count.
	exports := vec(nil, MaxExports+1, 0x00, 0x02, 0x00)
	elemSegments := vec(nil, MaxElemSegments+1, 0x01, 0x00, 0x00) // passive, funcref, no entries
	dataSegments := vec(nil, MaxDataSegments+1, 0x01, 0x00)       // passive, empty
	cases := map[string][]byte{
		"params":           wasmOf(sec(1, manyParams...)),
		"results":          wasmOf(sec(1, manyResults...)),
		"exports":          wasmOf(sec(5, 0x01, 0x00, 0x01), sec(7, exports...)),
		"element segments": wasmOf(sec(9, elemSegments...)),
		"data segments":    wasmOf(sec(11, dataSegments...)),
		"types":            wasmOf(sec(1, types...)),
		"functions":        wasmOf(sec(1, 0x01, 0x60, 0x00, 0x00), sec(3, funcs...)),
		"globals":          wasmOf(sec(6, globals...)),
		"element entries":  wasmOf(sec(9, entries...)),
		"imports":          wasmOf(sec(1, 0x01, 0x60, 0x00, 0x00), sec(2, imports...)),
	}
	for name, wasm := range cases {
		_, err := module(wasm, testBudget)
		assert.ErrorIs(t, err, ErrTooComplex, name)
	}
}

// Values carried through blocks count like locals across merges: 1,000
// nested loops each taking and giving 1,000 values compiled in 4.2 s (a
// 6 KB module); 3,000 of them in 14 s and 483 MB.
func TestCarriedValuesCount(t *testing.T) {
	const r, b = 1000, 1000
	var src strings.Builder
	src.WriteString("(module (type $t (func (param" + strings.Repeat(" i64", r) + ") (result" + strings.Repeat(" i64", r) + ")))\n")
	src.WriteString("(func $f (result" + strings.Repeat(" i64", r) + ") (call $f)")
	for range b {
		src.WriteString(" (loop (type $t) (param" + strings.Repeat(" i64", r) + ") (result" + strings.Repeat(" i64", r) + ")")
	}
	src.WriteString(strings.Repeat(")", b) + "))")
	_, err := module(watModule(t, src.String()), testBudget)
	assert.ErrorIs(t, err, ErrTooComplex)
}

// A function's results and its calls' values count in its frame: a
// recursion returning 1,000 values used to reach wazero's own stack
// overflow (4,122 deep, 125 MiB) with the counter at a quarter of its
// budget.
func TestFrameCountsValues(t *testing.T) {
	results := strings.Repeat(" i64", 1000)
	g := instantiate(t, watModule(t, fmt.Sprintf(`(module (memory (export "memory") 1)
	  (func $f (export "f") (param $n i32) (result%s)
	    (i32.store (i32.const 0) (local.get $n))
	    (call $f (i32.add (local.get $n) (i32.const 1)))))`, results)))
	_, err := g.mod.ExportedFunction("f").Call(context.Background(), 0)
	require.Error(t, err)
	assert.Equal(t, uint64(Tripped), g.counter.Get(), "stopped by the guard: %v", err)
}
