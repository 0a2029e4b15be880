package harden

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/privateconnect/pc/plugins/internal/wasmbuild"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
)

const testBudget = 8 << 20

func newRuntime(t testing.TB) wazero.Runtime {
	ctx := context.Background()
	rt := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfig().WithCoreFeatures(api.CoreFeaturesV2).WithCloseOnContextDone(true))
	t.Cleanup(func() { _ = rt.Close(ctx) })
	return rt
}

type guarded struct {
	mod     api.Module
	counter api.Global
}

func instantiate(t *testing.T, wasm []byte) guarded {
	t.Helper()
	res, err := module(wasm, testBudget)
	require.NoError(t, err)
	require.NotZero(t, res.Guarded)
	mod, err := newRuntime(t).Instantiate(context.Background(), res.Wasm)
	require.NoError(t, err)
	g := mod.ExportedGlobal(res.Export)
	require.NotNil(t, g, "the counter is exported as %q", res.Export)
	return guarded{mod, g}
}

func recurseWasm(t testing.TB) []byte {
	return wasmbuild.MustWAT(t, "testdata/recurse.wat")
}

// Every way out of a guarded function gives its frame back: a million
// calls through return, br and br_table to the function's label, the end,
// and call_indirect leave the counter at zero.
func TestReleasedOnEveryExit(t *testing.T) {
	g := instantiate(t, recurseWasm(t))
	down := g.mod.ExportedFunction("down")
	ctx := context.Background()
	for range 200 {
		for n := range uint64(50) {
			out, err := down.Call(ctx, n)
			require.NoError(t, err)
			require.Equal(t, n, out[0])
			require.Zero(t, g.counter.Get(), "counter after down(%d)", n)
		}
	}
	pair, err := g.mod.ExportedFunction("pair").Call(ctx, 30)
	require.NoError(t, err)
	assert.Equal(t, []uint64{30, 60}, pair, "two results through the added block type")
	assert.Zero(t, g.counter.Get())
	leaf, err := g.mod.ExportedFunction("leaf").Call(ctx, 21)
	require.NoError(t, err)
	assert.Equal(t, uint64(42), leaf[0])
}

// Recursion without end stops at the budget, with the counter at Tripped,
// before wazero's stack grows far: the Go memory it allocates stays within
// a few budgets (wazero alone grows it to about 400 MB, allocating 200 MB
// more on the way).
func TestUnboundedRecursionStops(t *testing.T) {
	cases := []struct {
		name     string
		wasm     []byte
		minDepth uint32
	}{
		{"direct", recurseWasm(t), 10_000},
		{"indirect", recurseWasm(t), 10_000},
		{"mutual", recurseWasm(t), 5_000},
		// 500 values live across the call: a 4 KiB native frame.
		{"wide", wideWasm(t, "i64", 500), 50},
		{"wide v128", wideWasm(t, "v128", 300), 50},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			g := instantiate(t, tc.wasm)
			name := map[string]string{"direct": "forever", "indirect": "indirect", "mutual": "ping"}[tc.name]
			if name == "" {
				name = "wide"
			}
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			_, err := g.mod.ExportedFunction(name).Call(context.Background(), 0)
			runtime.ReadMemStats(&after)
			require.Error(t, err)
			assert.Contains(t, err.Error(), "unreachable")
			assert.Equal(t, uint64(Tripped), g.counter.Get())
			depth, ok := g.mod.Memory().ReadUint32Le(0)
			require.True(t, ok)
			assert.GreaterOrEqual(t, depth, tc.minDepth, "legitimate depths still run")
			grown := after.TotalAlloc - before.TotalAlloc
			t.Logf("stopped at depth %d; %.1f MiB allocated during the call", depth, float64(grown)/(1<<20))
			assert.Less(t, grown, uint64(4*testBudget), "Go memory allocated while the stack grew")
		})
	}
}

// wideWasm is a function that keeps n values of type typ on the operand
// stack across its recursive call, so that each frame spills them.
func wideWasm(t testing.TB, typ string, n int) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "(module (memory (export \"memory\") 1)\n(func $wide (export \"wide\") (param $n i32) (result i32)\n")
	b.WriteString("(i32.store (i32.const 0) (local.get $n))\n")
	for i := range n {
		fmt.Fprintf(&b, "(%s.load (i32.const %d))\n", typ, 16+i%64)
	}
	b.WriteString("(drop (call $wide (i32.add (local.get $n) (i32.const 1))))\n")
	for range n {
		b.WriteString("(drop)\n")
	}
	b.WriteString("(i32.const 0)))\n")
	return watModule(t, b.String())
}

func TestLeavesAndEmptyModulesUnchanged(t *testing.T) {
	for _, src := range []string{
		`(module)`,
		`(module (func (export "f") (param i32) (result i32) (i32.add (local.get 0) (i32.const 1))))`,
	} {
		wasm := watModule(t, src)
		res, err := module(wasm, testBudget)
		require.NoError(t, err)
		assert.Equal(t, wasm, res.Wasm, src)
		assert.Zero(t, res.Guarded)
		assert.Empty(t, res.Export)
	}
}

// A module that already exports the counter's name gets another one, and
// modules without a global or export section get them in the right place.
func TestSectionsAndNames(t *testing.T) {
	for _, src := range []string{
		`(module (func $f (call $f)))`,
		`(module (global (export "pc_stack_guard") i32 (i32.const 7)) (func $f (call $f)))`,
		`(module (import "env" "g" (global i32)) (func $f (export "f") (call $f)) (start $f) (data "x") (memory 1))`,
		`(module (func $f (result i32 i64 f32) (call $f)) (func (result i32 i64 f32) (call $f)))`,
	} {
		res, err := module(watModule(t, src), testBudget)
		require.NoError(t, err, src)
		_, err = newRuntime(t).CompileModule(context.Background(), res.Wasm)
		require.NoError(t, err, src)
		if strings.Contains(src, `"pc_stack_guard"`) {
			assert.Equal(t, "pc_stack_guard_1", res.Export)
		}
	}
}

// Real guests compile after the rewrite: the Go guest of the plugin tests
// (3.4 MB, Go's wasip1 port, bulk memory and sign extension) and every
// .wat fixture of the plugin host that wazero accepts as it is.
func TestRealModulesCompile(t *testing.T) {
	ctx := context.Background()
	cache, err := wazero.NewCompilationCacheWithDir(wasmbuild.CacheDir())
	require.NoError(t, err)
	// As the plugin host compiles untrusted modules, so that under -race the
	// Go guest comes from the cache wasmbuild fills out of process (compiling
	// it here would take a minute).
	rt := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfig().WithCoreFeatures(api.CoreFeaturesV2).
		WithCloseOnContextDone(true).WithCompilationCache(cache))
	t.Cleanup(func() { _ = rt.Close(ctx); _ = cache.Close(ctx) })

	goGuest := wasmbuild.MustGoPrecompiled(t, "../../testdata/guest", false)
	res, err := Module(goGuest)
	require.NoError(t, err)
	_, err = rt.CompileModule(ctx, res.Wasm)
	require.NoError(t, err, "go guest")
	t.Logf("go guest: %d functions guarded, %d -> %d bytes", res.Guarded, len(goGuest), len(res.Wasm))

	paths, err := filepath.Glob("../../testdata/wat/*.wat")
	require.NoError(t, err)
	require.NotEmpty(t, paths)
	for _, p := range paths {
		wasm := wasmbuild.MustWAT(t, p)
		if _, err := rt.CompileModule(ctx, wasm); err != nil {
			continue // a fixture that is invalid on purpose
		}
		res, err := Module(wasm)
		require.NoError(t, err, p)
		_, err = rt.CompileModule(ctx, res.Wasm)
		require.NoError(t, err, p)
	}
}

func TestMalformed(t *testing.T) {
	valid := recurseWasm(t)
	typeSec := sec(1, 0x01, 0x60, 0x00, 0x00) // one type: () -> ()
	funcSec := sec(3, 0x01, 0x00)             // one function of type 0
	cases := map[string][]byte{
		"empty":         nil,
		"no magic":      []byte("\x01asm\x01\x00\x00\x00"),
		"version 2":     []byte("\x00asm\x02\x00\x00\x00"),
		"truncated":     valid[:len(valid)-3],
		"section size":  wasmOf([]byte{0x01, 0xff, 0xff, 0xff, 0xff, 0x0f}),
		"leb too long":  wasmOf([]byte{0x01, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00}),
		"leb too large": wasmOf(sec(8, 0xff, 0xff, 0xff, 0xff, 0x7f)),
		"unknown id":    wasmOf(sec(14)),
		"two types":     wasmOf(sec(1, 0x00), sec(1, 0x00)),
		"trailing":      wasmOf(sec(1, 0x00, 0x00)),
		"bad opcode":    codeModule(0x06),
		"body past end": codeModule(0x0b, 0x0b),
		"no end":        codeModule(0x01),
		"no bodies":     wasmOf(typeSec, funcSec),
		"out of order":  wasmOf(funcSec, typeSec),
		// Naming the global the stack counter will be, to reset it from guest code.
		"counter set":      codeModule(0x41, 0x00, 0x24, 0x00, 0x0b),
		"counter read":     codeModule(0x23, 0x00, 0x1a, 0x0b),
		"counter exported": wasmOf(sec(7, 0x01, 0x01, 'g', 0x03, 0x00)),
		"counter in init":  wasmOf(sec(6, 0x01, 0x7f, 0x00, 0x23, 0x01, 0x0b)),
		// Counts far beyond the bytes that follow: wazero's decoder allocates for the count
		// first (the first one, found by FuzzModule, made it allocate 26 GB and die).
		"imports":         []byte("\x00asm\x01\x00\x00\x00\x01\t\x02`\x01\x7f\x00`\x00\x01\x7f\x02o\xf3\xf3\xf3n\x00\x01\x0ehandle_request0"),
		"types":           wasmOf(sec(1, 0xff, 0xff, 0xff, 0xff, 0x0f)),
		"functions":       wasmOf(typeSec, sec(3, 0xff, 0xff, 0xff, 0xff, 0x0f, 0x00)),
		"tables":          wasmOf(sec(4, 0xff, 0xff, 0xff, 0xff, 0x0f, 0x70, 0x00, 0x00)),
		"globals":         wasmOf(sec(6, 0xff, 0xff, 0xff, 0xff, 0x0f, 0x7f, 0x00, 0x41, 0x00, 0x0b)),
		"exports":         wasmOf(sec(7, 0xff, 0xff, 0xff, 0xff, 0x0f)),
		"elements":        wasmOf(sec(9, 0xff, 0xff, 0xff, 0xff, 0x0f)),
		"element entries": wasmOf(sec(9, 0x01, 0x01, 0x00, 0xff, 0xff, 0xff, 0xff, 0x0f)),
		"data":            wasmOf(sec(11, 0xff, 0xff, 0xff, 0xff, 0x0f)),
		"data bytes":      wasmOf(sec(11, 0x01, 0x01, 0xff, 0xff, 0xff, 0xff, 0x0f)),
		"bodies":          wasmOf(typeSec, funcSec, sec(10, 0xff, 0xff, 0xff, 0xff, 0x0f)),
		"param types":     wasmOf(sec(1, 0x01, 0x60, 0xff, 0xff, 0xff, 0xff, 0x0f)),
		"select types":    codeModule(0x1c, 0xff, 0xff, 0xff, 0xff, 0x0f, 0x0b),
		"br_table":        codeModule(0x0e, 0xff, 0xff, 0xff, 0xff, 0x0f, 0x0b),
	}
	for name, wasm := range cases {
		_, err := module(wasm, testBudget)
		assert.ErrorIs(t, err, ErrMalformed, name)
	}
	_, err := module(valid, 0)
	assert.Error(t, err)
	_, err = module(valid, 1<<31)
	assert.Error(t, err)
}

// Locals are capped at MaxLocals: wazero allocates a byte for each declared
// local, up to four billion, before it validates the function.
func TestLocalsCap(t *testing.T) {
	typeSec := sec(1, 0x01, 0x60, 0x01, 0x7f, 0x00) // (param i32)
	funcSec := sec(3, 0x01, 0x00)
	body := func(n uint32) []byte {
		b := appendU32([]byte{0x01}, n) // one group of n
		b = append(b, 0x7f, 0x0b)
		return append(appendU32(nil, uint32(len(b))), b...)
	}
	ok := wasmOf(typeSec, funcSec, sec(10, append([]byte{0x01}, body(MaxLocals-1)...)...))
	_, err := module(ok, testBudget)
	require.NoError(t, err)
	for _, n := range []uint32{MaxLocals, 1<<32 - 1} {
		over := wasmOf(typeSec, funcSec, sec(10, append([]byte{0x01}, body(n)...)...))
		_, err = module(over, testBudget)
		assert.ErrorContains(t, err, "more than 50000 params and locals")
	}
}

// Tables: declared sizes over MaxTableElements are refused, and every
// table's maximum is lowered to it, so that table.grow fails (-1) there
// instead of taking 8 bytes an element of the host's memory (up to 1 GB).
func TestTables(t *testing.T) {
	big := wasmOf(sec(4, append([]byte{0x01, 0x70, 0x00}, appendU32(nil, MaxTableElements+1)...)...))
	_, err := module(big, testBudget)
	assert.ErrorContains(t, err, "more than 262144")
	five := wasmOf(sec(4, 0x05, 0x70, 0x00, 0x00, 0x70, 0x00, 0x00, 0x70, 0x00, 0x00, 0x70, 0x00, 0x00, 0x70, 0x00, 0x00))
	_, err = module(five, testBudget)
	assert.ErrorContains(t, err, "5 tables, more than 4")
	_, err = module(wasmOf(sec(4, 0x01, 0x70, 0x01, 0x05, 0x02)), testBudget)
	assert.ErrorContains(t, err, "minimum 5 above maximum 2")

	grow := watModule(t, `(module (table $t 1 funcref) (table $u 1 100 funcref)
	  (func (export "grow") (param i32) (result i32) (table.grow $t (ref.null func) (local.get 0)))
	  (func (export "growU") (param i32) (result i32) (table.grow $u (ref.null func) (local.get 0))))`)
	res, err := module(grow, testBudget)
	require.NoError(t, err)
	mod, err := newRuntime(t).Instantiate(context.Background(), res.Wasm)
	require.NoError(t, err)
	call := func(fn string, n uint64) int32 {
		out, err := mod.ExportedFunction(fn).Call(context.Background(), n)
		require.NoError(t, err)
		return int32(out[0])
	}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	assert.Equal(t, int32(-1), call("grow", 1<<27), "grown past the cap")
	assert.Equal(t, int32(1), call("grow", MaxTableElements-1), "grown to the cap")
	assert.Equal(t, int32(-1), call("grow", 1))
	assert.Equal(t, int32(-1), call("growU", 100), "a smaller declared maximum stays")
	assert.Equal(t, int32(1), call("growU", 99))
	runtime.ReadMemStats(&after)
	assert.Less(t, after.TotalAlloc-before.TotalAlloc, uint64(16<<20))
}

// Custom sections are dropped unread: wazero decodes the name section by
// its declared counts (a map sized for four billion names).
func TestCustomSectionsDropped(t *testing.T) {
	name := append([]byte{0x04}, "name"...)
	names := append(name, 0x01, 0x05, 0xff, 0xff, 0xff, 0xff, 0x0f) // function names: 2^32-1 of them
	wasm := wasmOf(sec(0, names...), sec(0, append([]byte{0x01}, "x"...)...))
	res, err := module(wasm, testBudget)
	require.NoError(t, err)
	assert.Equal(t, []byte("\x00asm\x01\x00\x00\x00"), res.Wasm)
	_, err = newRuntime(t).CompileModule(context.Background(), res.Wasm)
	require.NoError(t, err)
}

func watModule(t testing.TB, src string) []byte {
	path := filepath.Join(t.TempDir(), "m.wat")
	require.NoError(t, os.WriteFile(path, []byte(src), 0o600))
	wasm, err := wasmbuild.WAT(path)
	require.NoError(t, err)
	return wasm
}

// sec is a section: its id, its size, its contents.
func sec(id byte, body ...byte) []byte {
	return append(appendU32([]byte{id}, uint32(len(body))), body...)
}

func wasmOf(sections ...[]byte) []byte {
	b := []byte("\x00asm\x01\x00\x00\x00")
	for _, s := range sections {
		b = append(b, s...)
	}
	return b
}

// codeModule is a module with one function () -> () whose instructions are
// code (its final end included).
func codeModule(code ...byte) []byte {
	body := append([]byte{0x00}, code...) // no locals
	return wasmOf(sec(1, 0x01, 0x60, 0x00, 0x00), sec(3, 0x01, 0x00),
		sec(10, append(appendU32([]byte{0x01}, uint32(len(body))), body...)...))
}

func TestLEB(t *testing.T) {
	for _, v := range []uint32{0, 1, 127, 128, 1 << 20, 1<<31 - 1, 1<<32 - 1} {
		r := &reader{b: appendU32(nil, v)}
		got, err := r.u32()
		require.NoError(t, err)
		assert.Equal(t, v, got)
		assert.True(t, r.done())
	}
	for _, v := range []int64{0, 1, -1, 63, 64, -64, -65, 1<<31 - 1, -1 << 31, 1<<32 + 5} {
		b := appendS33(nil, v)
		r := &reader{b: b}
		require.NoError(t, r.sleb(64), "%d", v)
		assert.True(t, r.done(), "%d encoded in %x", v, b)
		assert.Equal(t, v, decodeSLEB(b), "%x", b)
	}
}

func decodeSLEB(b []byte) int64 {
	var v int64
	var shift uint
	for _, c := range b {
		v |= int64(c&0x7f) << shift
		shift += 7
		if c&0x80 == 0 {
			if shift < 64 && c&0x40 != 0 {
				v |= -1 << shift
			}
			break
		}
	}
	return v
}
