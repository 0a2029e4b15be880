// Package harden rewrites an untrusted Wasm module before wazero sees it, so
// that neither decoding it nor running it can take the host's memory.
//
// Four holes, all opened by modules of a few dozen bytes to a few dozen KB:
//
//   - wazero's decoder sizes its slices and maps from the counts a module
//     declares, before reading the entries: an import section claiming four
//     billion imports made it allocate 26 GB, and the process died ("fatal
//     error: out of memory", which no recover catches). The same holds for
//     functions, tables, globals, exports, elements, code, data, locals and
//     the name section. Module checks every count against the bytes left in
//     its section, at least one byte per entry, caps a function's locals at
//     [MaxLocals], and drops custom sections (names and debug information,
//     which the host never shows) instead of decoding them.
//   - A table is memory outside the memory cap: 8 bytes an element, declared
//     up to 2^27 elements (1 GB) or grown at run time by table.grow. Module
//     refuses tables declared over [MaxTableElements] and sets every table's
//     maximum to at most that, so table.grow fails (-1) beyond it, as
//     memory.grow does at the memory cap. At most [MaxTables] tables.
//   - wazero's compiler does work that grows faster than the code: a 52 KB
//     function took 142 s and 1.8 GB to compile. compileCost bounds it.
//   - wazero grows a guest's call stack in Go memory, doubling it up to a
//     ceiling of about 400 MB, and the watchdog cannot stop a guest between
//     two growths: a plugin recursing without end took 160 MB and 260-350 ms
//     (its budget: 5 ms) per call. Module adds a stack guard (stack.go) that
//     traps once an upper bound of the call stack passes [StackBudget].
//
// Every immediate is read as wazero reads it, or the module is refused:
// where the two readings differ, wazero would run instructions harden never
// saw. Counts wazero pays for per item (types, functions, imports, globals,
// exports, segments and their entries) are capped far above what compilers
// emit.
//
// The rewrite keeps every index of the module (functions, types, globals,
// locals, labels), so exports, tables and element segments stay valid. Only
// the instruction set of wazero's CoreFeaturesV2 (WebAssembly 2.0) is
// understood; other modules are refused, as wazero refuses them.
package harden

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"strconv"
)

const (
	// StackBudget is the estimated call stack an untrusted call may use:
	// about the default stack of a native thread, 50 times less than
	// wazero's ceiling. Frame estimates are conservative (stack.go): the Go
	// guest of the plugin tests needs between 1 and 2 MiB of the budget on
	// its deepest path (a panic printed with its traceback by Go's wasip1
	// runtime), and its real stack is smaller still.
	StackBudget = 8 << 20
	// MaxTableElements bounds each table (8 bytes an element: 2 MiB). A Go
	// guest's table holds one entry per function, a few thousand.
	MaxTableElements = 1 << 18
	// MaxTables bounds the tables of a module, imported ones included.
	MaxTables = 4
	// MaxLocals bounds a function's params and locals, as browsers do.
	MaxLocals = 50_000
	// MaxParams bounds a function type's params, and its results, as
	// browsers do: wazero's work on a type grows with its length squared.
	MaxParams = 1_000
	// Counts of what wazero builds per item, at compile time or in every
	// instance (≈ 90 bytes for each global or element entry), far above what
	// compilers emit (the Go guest: 2,231 functions, 18 types, 8 globals,
	// 36 imports, one element segment of ~2,000 entries).
	MaxTypes          = 50_000
	MaxFunctions      = 100_000
	MaxImports        = 1_000
	MaxGlobals        = 10_000
	MaxExports        = 10_000
	MaxElemSegments   = 10_000
	MaxDataSegments   = 500_000 // Go's linker writes one a symbol: 38,445 in the Go guest
	MaxElementEntries = 65_536
	// MaxFunctionBytes bounds one function's code: wazero's compiler holds
	// 50-70 bytes per byte of the function it compiles (a 16 MB function:
	// 1 GB).
	MaxFunctionBytes = 1 << 20
)

// Tripped is the stack counter's value after the guard stopped a call.
const Tripped = 1<<32 - 1

// ErrMalformed wraps every decoding error.
var ErrMalformed = errors.New("malformed module")

// Result is a hardened module.
type Result struct {
	Wasm []byte
	// Export names the exported global holding the stack counter, "" when
	// no function calls another.
	Export string
	// Guarded is how many functions got the stack guard (those that call).
	Guarded int
}

// Module checks and rewrites an untrusted module (see the package doc).
// Every error wraps [ErrMalformed] or says which limit the module passes.
func Module(wasm []byte) (Result, error) {
	return module(wasm, StackBudget)
}

func module(wasm []byte, budget uint32) (Result, error) {
	if budget == 0 || budget >= 1<<31 {
		return Result{}, fmt.Errorf("harden: stack budget %d out of range", budget)
	}
	m, err := parse(wasm)
	if err != nil {
		return Result{}, err
	}
	return m.rewrite(budget)
}

type funcType struct {
	params  int
	results []byte
}

type section struct {
	id   byte
	body []byte // contents, without id and size
}

type parsed struct {
	sections       []section // custom sections dropped
	types          []funcType
	moduleTypes    int            // the module's own types (the rewrite may add some)
	added          []funcType     // types the rewrite adds, for multi-value blocks
	resultTypes    map[string]int // a type () -> results, by results
	importedFuncs  int
	importedGlobal int
	definedGlobals int
	tables         int
	funcTypeIdx    []uint32 // type index of every function, imported ones first
	exports        map[string]bool
	codeIndex      int // index in sections of the code section, or -1
}

// globals is the module's own global count: the counter's index.
func (m *parsed) globals() uint32 { return uint32(m.importedGlobal + m.definedGlobals) }

func malformed(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrMalformed, fmt.Sprintf(format, args...))
}

var sectionNames = [...]string{"custom", "type", "import", "function", "table", "memory", "global",
	"export", "start", "element", "code", "data", "data count"}

func parse(wasm []byte) (*parsed, error) {
	if len(wasm) < 8 || string(wasm[:4]) != "\x00asm" {
		return nil, malformed("no wasm magic number")
	}
	if binary.LittleEndian.Uint32(wasm[4:8]) != 1 {
		return nil, malformed("binary format version %d, want 1", binary.LittleEndian.Uint32(wasm[4:8]))
	}
	m := &parsed{exports: map[string]bool{}, codeIndex: -1}
	r := &reader{b: wasm, off: 8}
	last := 0
	for !r.done() {
		id, _ := r.byte()
		if int(id) >= len(sectionNames) {
			return nil, malformed("unknown section id %d", id)
		}
		name := sectionNames[id]
		size, err := r.u32()
		if err != nil {
			return nil, malformed("%s section: size: %v", name, err)
		}
		body, err := r.bytes(int(size))
		if err != nil {
			return nil, malformed("%s section: size %d past the end of the module", name, size)
		}
		if id == 0 {
			continue
		}
		if sectionOrder[id] <= last { // each id has its own place: this refuses duplicates too
			return nil, malformed("%s section repeated or out of order", name)
		}
		last = sectionOrder[id]
		s := section{id: id, body: body}
		sr := &reader{b: body}
		switch id {
		case 1:
			err = m.parseTypes(sr)
		case 2:
			err = m.parseImports(sr)
		case 3:
			err = m.parseFunctions(sr)
		case 4:
			s.body, err = m.parseTables(sr)
		case 5:
			err = vector(sr, 2, func() error { return sr.limits() })
		case 6:
			err = m.parseGlobals(sr)
		case 7:
			err = m.parseExports(sr)
		case 8, 12: // start function, data count
			_, err = sr.u32()
		case 9:
			err = m.parseElements(sr)
		case 10:
			m.codeIndex = len(m.sections)
			_, err = sr.count(2)
			sr.off = len(body) // the bodies are read by rewrite
		case 11:
			err = m.parseData(sr)
		}
		if err == nil && !sr.done() {
			err = fmt.Errorf("%d bytes after its last entry", len(body)-sr.off)
		}
		if errors.Is(err, ErrTooComplex) {
			return nil, fmt.Errorf("%s section: %w", name, err)
		}
		if err != nil {
			return nil, malformed("%s section: %v", name, err)
		}
		m.sections = append(m.sections, s)
	}
	return m, nil
}

// vector reads a vector's length, checks that its entries (at least min
// bytes each) fit in what is left, and reads each with entry.
func vector(r *reader, min int, entry func() error) error {
	return capped(r, min, math.MaxInt, "", entry)
}

// capped is vector for a vector of at most max entries (what they are).
func capped(r *reader, min, max int, what string, entry func() error) error {
	n, err := r.count(min)
	if err != nil {
		return err
	}
	if int(n) > max {
		return fmt.Errorf("%w: %d %s, more than %d", ErrTooComplex, n, what, max)
	}
	for i := range n {
		if err := entry(); err != nil {
			return fmt.Errorf("entry %d: %w", i, err)
		}
	}
	return nil
}

func (m *parsed) parseTypes(r *reader) error {
	return capped(r, 3, MaxTypes, "types", func() error {
		if b, err := r.byte(); err != nil || b != 0x60 {
			return fmt.Errorf("not a function type")
		}
		params, err := r.valTypes()
		if err != nil {
			return err
		}
		results, err := r.valTypes()
		if err != nil {
			return err
		}
		if len(params) > MaxParams || len(results) > MaxParams {
			return fmt.Errorf("%w: %d params and %d results, more than %d", ErrTooComplex, len(params), len(results), MaxParams)
		}
		m.types = append(m.types, funcType{params: len(params), results: results})
		m.moduleTypes = len(m.types)
		return nil
	})
}

func (m *parsed) parseImports(r *reader) error {
	return capped(r, 4, MaxImports, "imports", func() error {
		if _, err := r.name(); err != nil {
			return err
		}
		if _, err := r.name(); err != nil {
			return err
		}
		kind, err := r.byte()
		if err != nil {
			return err
		}
		switch kind {
		case 0: // function
			m.importedFuncs++
			var t uint32
			if t, err = m.typeIndex(r); err == nil {
				m.funcTypeIdx = append(m.funcTypeIdx, t)
			}
		case 1: // table
			m.tables++
			if _, err = r.refType(); err == nil {
				err = r.limits()
			}
		case 2: // memory
			err = r.limits()
		case 3: // global
			m.importedGlobal++
			err = r.globalType()
		default:
			err = fmt.Errorf("unknown import kind %d", kind)
		}
		return err
	})
}

func (m *parsed) parseFunctions(r *reader) error {
	// Imports are capped far below MaxFunctions.
	return capped(r, 1, MaxFunctions-m.importedFuncs, "functions", func() error {
		t, err := m.typeIndex(r)
		m.funcTypeIdx = append(m.funcTypeIdx, t)
		return err
	})
}

// typeIndex reads the type index of a function, which must exist.
func (m *parsed) typeIndex(r *reader) (uint32, error) {
	t, err := r.u32()
	if err == nil && int(t) >= len(m.types) {
		err = fmt.Errorf("type %d out of range", t)
	}
	return t, err
}

// parseTables returns the section with every table's maximum at most
// MaxTableElements.
func (m *parsed) parseTables(r *reader) ([]byte, error) {
	n, err := r.count(3)
	if err != nil {
		return nil, err
	}
	if m.tables+int(n) > MaxTables {
		return nil, fmt.Errorf("%d tables, more than %d", m.tables+int(n), MaxTables)
	}
	m.tables += int(n)
	out := appendU32(nil, n)
	for i := range n {
		t, err := r.refType()
		if err != nil {
			return nil, fmt.Errorf("table %d: %w", i, err)
		}
		flags, err := r.byte()
		if err != nil {
			return nil, err
		}
		if flags > 1 {
			return nil, fmt.Errorf("table %d: unsupported limits 0x%02x", i, flags)
		}
		lo, err := r.u32()
		if err != nil {
			return nil, err
		}
		hi := uint32(MaxTableElements)
		if flags == 1 {
			v, err := r.u32()
			if err != nil {
				return nil, err
			}
			hi = min(hi, v)
		}
		if lo > MaxTableElements {
			return nil, fmt.Errorf("table %d: %d elements, more than %d", i, lo, MaxTableElements)
		}
		if lo > hi {
			return nil, fmt.Errorf("table %d: minimum %d above maximum %d", i, lo, hi)
		}
		out = append(out, t, 0x01)
		out = appendU32(appendU32(out, lo), hi)
	}
	return out, nil
}

func (m *parsed) parseGlobals(r *reader) error {
	n, err := r.count(3)
	if err != nil {
		return err
	}
	if m.importedGlobal+int(n) > MaxGlobals {
		return fmt.Errorf("%w: more than %d globals", ErrTooComplex, MaxGlobals)
	}
	m.definedGlobals = int(n)
	for i := range n {
		if err := r.globalType(); err != nil {
			return fmt.Errorf("global %d: %w", i, err)
		}
		if err := skipExpr(r, m); err != nil {
			return fmt.Errorf("global %d: %w", i, err)
		}
	}
	return nil
}

func (m *parsed) parseExports(r *reader) error {
	// The declared count: wazero allocates for it, duplicate names included.
	return capped(r, 3, MaxExports, "exports", func() error {
		name, err := r.name()
		if err != nil {
			return err
		}
		m.exports[name] = true
		kind, err := r.byte()
		if err != nil {
			return err
		}
		idx, err := r.u32()
		if err == nil && kind == 3 && idx >= m.globals() {
			err = fmt.Errorf("global %d out of range", idx)
		}
		return err
	})
}

func (m *parsed) parseElements(r *reader) error {
	entries := 0
	return capped(r, 2, MaxElemSegments, "element segments", func() error { return m.parseElement(r, &entries) })
}

func (m *parsed) parseElement(r *reader, entries *int) error {
	flags, err := r.u32()
	if err != nil {
		return err
	}
	if flags > 7 {
		return fmt.Errorf("unknown element segment kind %d", flags)
	}
	if flags == 2 || flags == 6 { // explicit table
		if _, err := r.u32(); err != nil {
			return err
		}
	}
	if flags&1 == 0 { // active: offset
		if err := skipExpr(r, m); err != nil {
			return err
		}
	}
	if flags&3 != 0 {
		if flags&4 == 0 { // element kind: funcref
			if k, err := r.byte(); err != nil || k != 0x00 {
				return fmt.Errorf("unknown element kind")
			}
		} else if _, err := r.refType(); err != nil {
			return err
		}
	}
	count, err := r.count(1)
	if err != nil {
		return err
	}
	// wazero keeps ≈ 90 bytes per entry in every instance.
	if *entries += int(count); *entries > MaxElementEntries {
		return fmt.Errorf("%w: more than %d element segment entries", ErrTooComplex, MaxElementEntries)
	}
	for range count {
		if flags&4 == 0 {
			_, err = r.u32()
		} else {
			err = skipExpr(r, m)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func (m *parsed) parseData(r *reader) error {
	return capped(r, 2, MaxDataSegments, "data segments", func() error {
		flags, err := r.u32()
		if err != nil {
			return err
		}
		switch flags {
		case 2: // explicit memory
			if _, err := r.u32(); err != nil {
				return err
			}
			fallthrough
		case 0:
			if err := skipExpr(r, m); err != nil {
				return err
			}
		case 1: // passive
		default:
			return fmt.Errorf("unknown data segment kind %d", flags)
		}
		n, err := r.u32()
		if err != nil {
			return err
		}
		_, err = r.bytes(int(n))
		return err
	})
}

// blockType returns the block type of a block whose results are those of
// type ti, adding a type () -> results when there is more than one and the
// module has none.
func (m *parsed) blockType(ti uint32) []byte {
	res := m.types[ti].results
	switch len(res) {
	case 0:
		return []byte{0x40}
	case 1:
		return []byte{res[0]}
	}
	if m.resultTypes == nil {
		m.resultTypes = map[string]int{}
		for i, t := range m.types {
			if _, ok := m.resultTypes[string(t.results)]; !ok && t.params == 0 {
				m.resultTypes[string(t.results)] = i
			}
		}
	}
	i, ok := m.resultTypes[string(res)]
	if !ok {
		m.types = append(m.types, funcType{results: res})
		m.added = append(m.added, funcType{results: res})
		i = len(m.types) - 1
		m.resultTypes[string(res)] = i
	}
	return appendS33(nil, int64(i))
}

// rewriteFunc reads the next body of the code section and appends it,
// guarded if it calls, to body, adding its compile cost to cost.
func (m *parsed) rewriteFunc(code *reader, body []byte, typ, budget uint32, sh *shape, cost *compileCost) ([]byte, bool, error) {
	size, err := code.u32()
	if err != nil {
		return body, false, err
	}
	raw, err := code.bytes(int(size))
	if err != nil {
		return body, false, err
	}
	body, guarded, err := guard(body, raw, m, typ, budget, sh)
	if err != nil {
		return body, false, err
	}
	return body, guarded, cost.add(sh)
}

// funcError names function i in err: a limit passed stays ErrTooComplex,
// anything else makes the module malformed.
func funcError(i int, err error) error {
	if errors.Is(err, ErrTooComplex) {
		return fmt.Errorf("function %d: %w", i, err)
	}
	return malformed("code section: function %d: %v", i, err)
}

func (m *parsed) rewrite(budget uint32) (Result, error) {
	res := Result{}
	defined := m.funcTypeIdx[m.importedFuncs:] // the type of each function the module defines
	if m.codeIndex < 0 {
		if len(defined) > 0 {
			return res, malformed("%d functions without a code section", len(defined))
		}
		res.Wasm = m.encode()
		return res, nil
	}
	g := m.globals()
	code := &reader{b: m.sections[m.codeIndex].body}
	n, _ := code.u32() // checked by parse
	if int(n) != len(defined) {
		return res, malformed("%d function bodies for %d functions", n, len(defined))
	}
	out := appendU32(nil, n)
	var body []byte
	var sh shape
	var cost compileCost
	for i := range int(n) {
		var guarded bool
		var err error
		if body, guarded, err = m.rewriteFunc(code, body[:0], defined[i], budget, &sh, &cost); err != nil {
			return res, funcError(m.importedFuncs+i, err)
		}
		if guarded {
			res.Guarded++
		}
		out = appendU32(out, uint32(len(body)))
		out = append(out, body...)
	}
	if !code.done() {
		return res, malformed("code section: %d bytes after its last entry", len(code.b)-code.off)
	}
	m.sections[m.codeIndex].body = out
	if res.Guarded == 0 {
		res.Wasm = m.encode()
		return res, nil
	}
	if len(m.added) > 0 {
		m.appendToSection(1, func(b []byte) []byte {
			for _, t := range m.added {
				b = append(b, 0x60, 0)
				b = appendU32(b, uint32(len(t.results)))
				b = append(b, t.results...)
			}
			return b
		}, len(m.added))
	}
	// (global (mut i32) (i32.const 0))
	m.appendToSection(6, func(b []byte) []byte { return append(b, 0x7f, 0x01, 0x41, 0x00, 0x0b) }, 1)
	res.Export = "pc_stack_guard"
	for i := 1; m.exports[res.Export]; i++ {
		res.Export = "pc_stack_guard_" + strconv.Itoa(i)
	}
	m.appendToSection(7, func(b []byte) []byte {
		b = appendU32(b, uint32(len(res.Export)))
		b = append(b, res.Export...)
		b = append(b, 0x03)
		return appendU32(b, g)
	}, 1)
	res.Wasm = m.encode()
	return res, nil
}

// sectionOrder is the position of each section id in a module.
var sectionOrder = [...]int{1: 1, 2: 2, 3: 3, 4: 4, 5: 5, 6: 6, 7: 7, 8: 8, 9: 9, 12: 10, 10: 11, 11: 12}

// appendToSection adds n entries (written by add) to the vector of section
// id, creating the section where the order requires it.
func (m *parsed) appendToSection(id byte, add func([]byte) []byte, n int) {
	for i := range m.sections {
		s := &m.sections[i]
		if s.id != id {
			continue
		}
		r := &reader{b: s.body}
		count, _ := r.u32() // checked by parse
		b := appendU32(nil, count+uint32(n))
		b = append(b, s.body[r.off:]...)
		s.body = add(b)
		return
	}
	at := len(m.sections)
	for i, s := range m.sections {
		if sectionOrder[s.id] > sectionOrder[id] {
			at = i
			break
		}
	}
	s := section{id: id, body: add(appendU32(nil, uint32(n)))}
	m.sections = append(m.sections[:at], append([]section{s}, m.sections[at:]...)...)
	if m.codeIndex >= at {
		m.codeIndex++
	}
}

func (m *parsed) encode() []byte {
	size := 8
	for _, s := range m.sections {
		size += 6 + len(s.body)
	}
	b := make([]byte, 0, size)
	b = append(b, "\x00asm\x01\x00\x00\x00"...)
	for _, s := range m.sections {
		b = append(b, s.id)
		b = appendU32(b, uint32(len(s.body)))
		b = append(b, s.body...)
	}
	return b
}

// compileCost bounds the work wazero's compiler does on a module. Its SSA
// passes grow faster than the code they read, in two measured ways (on the
// 2-core machine of docs/benchmarks.md, wazero v1.12):
//
//   - with the branches of a function (blocks, loops, ifs and branch
//     targets: n): dominators and loop detection take time in n², 1.4e-8 s
//     per n² at worst (21,800 nested blocks, a 65 KB module: 5.2 s);
//   - with the locals a function uses (u) times its branches: SSA
//     construction adds a block parameter for each, 2-4 s and 200 MiB for
//     u·n = 10^6 (a 13 KB module), 19 s and 876 MiB for 4·10^6, and a 52 KB
//     module took 142 s and 1.8 GB.
//
// Both are capped per function and summed over the module. The module sums
// leave room for a Go guest of the 16 MiB upload limit: the Go guest of the
// plugin tests (3.4 MB) has at most 2,181 branches and 21 used locals in a
// function (u·n at most 31,464), Σn² = 5.7·10^7 and Σu·n = 1.5·10^6.
// BenchmarkCompileAtLimits measures the worst accepted cost.
type compileCost struct {
	branches2   uint64 // Σ n²
	localsTimes uint64 // Σ u·n
}

const (
	MaxFunctionBranches        = 20_000      // n of one function (n² = 4·10^8)
	MaxModuleBranches2         = 400_000_000 // Σ n²
	MaxFunctionLocalsXBranches = 100_000     // u·n of one function
	MaxModuleLocalsXBranches   = 10_000_000  // Σ u·n (plus values carried by blocks and calls)
)

// ErrTooComplex wraps the refusals of modules that would cost the compiler
// too much.
var ErrTooComplex = errors.New("too complex to compile safely")

func (c *compileCost) add(s *shape) error {
	n := uint64(s.blocks + s.targets)
	ln := uint64(s.used)*n + uint64(s.carried)
	if n > MaxFunctionBranches {
		return fmt.Errorf("%w: %d blocks and branch targets, more than %d in one function", ErrTooComplex, n, MaxFunctionBranches)
	}
	if ln > MaxFunctionLocalsXBranches {
		return fmt.Errorf("%w: %d locals used across %d blocks and branch targets, more than %d of their product in one function",
			ErrTooComplex, s.used, n, MaxFunctionLocalsXBranches)
	}
	c.branches2 += n * n
	c.localsTimes += ln
	if c.branches2 > MaxModuleBranches2 || c.localsTimes > MaxModuleLocalsXBranches {
		return fmt.Errorf("%w: its functions' branches (Σn² %d, at most %d) and locals times branches (%d, at most %d) are past the module's limits",
			ErrTooComplex, c.branches2, uint64(MaxModuleBranches2), c.localsTimes, uint64(MaxModuleLocalsXBranches))
	}
	return nil
}
