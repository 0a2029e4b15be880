package harden

import (
	"errors"
	"fmt"
)

var errEOF = errors.New("unexpected end")

// reader decodes the binary format's primitives, refusing what a valid
// module cannot hold.
type reader struct {
	b   []byte
	off int
}

func (r *reader) done() bool { return r.off >= len(r.b) }

func (r *reader) byte() (byte, error) {
	if r.off >= len(r.b) {
		return 0, errEOF
	}
	c := r.b[r.off]
	r.off++
	return c, nil
}

func (r *reader) bytes(n int) ([]byte, error) {
	if n < 0 || n > len(r.b)-r.off {
		return nil, errEOF
	}
	s := r.b[r.off : r.off+n]
	r.off += n
	return s, nil
}

// uleb reads an unsigned LEB128 of at most bits bits.
func (r *reader) uleb(bits uint) (uint64, error) {
	var v uint64
	for shift := uint(0); ; shift += 7 {
		c, err := r.byte()
		if err != nil {
			return 0, err
		}
		if shift+7 > bits && c&0x7f>>(bits-shift) != 0 {
			return 0, fmt.Errorf("integer too large")
		}
		v |= uint64(c&0x7f) << shift
		if c&0x80 == 0 {
			return v, nil
		}
		if shift+7 >= bits {
			return 0, fmt.Errorf("integer representation too long")
		}
	}
}

// sleb skips a signed LEB128 of at most bits bits.
func (r *reader) sleb(bits uint) error {
	for n := uint(0); ; n++ {
		c, err := r.byte()
		if err != nil {
			return err
		}
		if c&0x80 == 0 {
			return nil
		}
		if (n+1)*7 >= bits {
			return fmt.Errorf("integer representation too long")
		}
	}
}

// skipU32s skips n u32 immediates.
func (r *reader) skipU32s(n int) error {
	for range n {
		if _, err := r.u32(); err != nil {
			return err
		}
	}
	return nil
}

func (r *reader) u32() (uint32, error) {
	v, err := r.uleb(32)
	return uint32(v), err
}

// count reads a vector length whose elements take at least min bytes each.
func (r *reader) count(min int) (uint32, error) {
	n, err := r.u32()
	if err != nil {
		return 0, err
	}
	if uint64(n)*uint64(min) > uint64(len(r.b)-r.off) {
		return 0, fmt.Errorf("vector of %d longer than its section", n)
	}
	return n, nil
}

func (r *reader) name() (string, error) {
	n, err := r.u32()
	if err != nil {
		return "", err
	}
	b, err := r.bytes(int(n))
	return string(b), err
}

func (r *reader) valType() (byte, error) {
	t, err := r.byte()
	if err != nil {
		return 0, err
	}
	switch t {
	case 0x7f, 0x7e, 0x7d, 0x7c, 0x7b, 0x70, 0x6f:
		return t, nil
	}
	return 0, fmt.Errorf("unknown value type 0x%02x", t)
}

func (r *reader) valTypes() ([]byte, error) {
	n, err := r.count(1)
	if err != nil {
		return nil, err
	}
	ts := make([]byte, n)
	for i := range ts {
		if ts[i], err = r.valType(); err != nil {
			return nil, err
		}
	}
	return ts, nil
}

// blockType reads a block type as wazero does and returns how many values
// the block takes and gives: the empty type, a value type, or the index of
// a function type of the module. (wazero also reads the 0x63/0x64 typed
// references of later proposals, which are refused here.)
func (r *reader) blockType(m *parsed) (params, results int, err error) {
	if r.off >= len(r.b) {
		return 0, 0, errEOF
	}
	switch b := r.b[r.off]; b {
	case 0x40:
		r.off++
		return 0, 0, nil
	case 0x7f, 0x7e, 0x7d, 0x7c, 0x7b, 0x70, 0x6f:
		r.off++
		return 0, 1, nil
	}
	v, err := r.s33()
	if err != nil {
		return 0, 0, err
	}
	if v < 0 || v >= int64(m.moduleTypes) {
		return 0, 0, fmt.Errorf("block type %d out of range", v)
	}
	t := m.types[v]
	return t.params, len(t.results), nil
}

// s33 reads a signed LEB128 of at most 33 bits.
func (r *reader) s33() (int64, error) {
	var v int64
	var shift uint
	for {
		c, err := r.byte()
		if err != nil {
			return 0, err
		}
		v |= int64(c&0x7f) << shift
		shift += 7
		if c&0x80 == 0 {
			if c&0x40 != 0 {
				v |= -1 << shift
			}
			return v, nil
		}
		if shift >= 35 {
			return 0, fmt.Errorf("integer representation too long")
		}
	}
}

func (r *reader) refType() (byte, error) {
	t, err := r.byte()
	if err == nil && t != 0x70 && t != 0x6f {
		err = fmt.Errorf("unknown reference type 0x%02x", t)
	}
	return t, err
}

func (r *reader) globalType() error {
	if _, err := r.valType(); err != nil {
		return err
	}
	mut, err := r.byte()
	if err == nil && mut > 1 {
		err = fmt.Errorf("unknown mutability %d", mut)
	}
	return err
}

// skipExpr skips a constant expression, up to its end.
func skipExpr(r *reader, m *parsed) error {
	return scan(r, nil, m)
}

// shape is what scan learns of a function body.
type shape struct {
	returns []int // offsets of each `return`
	calls   bool  // whether it calls a function
	blocks  int   // block, loop and if instructions
	targets int   // branch targets: one for br and br_if, each of br_table's
	used    int   // distinct locals read or written
	// carried counts the values that blocks take and give (their types'
	// params and results) and calls give back: SSA block parameters, like
	// locals across merges.
	carried int
	// callArity is the most values (params and results) one call passes.
	callArity int
	// labels holds the values a branch to each open label passes, the
	// innermost last.
	labels []int
	seen   []uint64
}

// branch reads a branch's label and counts the values it passes: wazero
// copies them for every branch edge (a block of a br_table target).
func (s *shape) branch(r *reader) error {
	l, err := r.u32()
	if err != nil {
		return err
	}
	if int(l) >= len(s.labels) {
		return fmt.Errorf("label %d out of range", l)
	}
	s.targets++
	s.carried += s.labels[len(s.labels)-1-int(l)]
	return nil
}

func (s *shape) reset(locals int) {
	s.returns = s.returns[:0]
	s.calls = false
	s.blocks, s.targets, s.used, s.carried, s.callArity = 0, 0, 0, 0, 0
	s.labels = s.labels[:0]
	n := (locals + 63) / 64
	if cap(s.seen) < n {
		s.seen = make([]uint64, n)
	}
	s.seen = s.seen[:n]
	clear(s.seen)
}

// call records a call to a function of type t.
func (s *shape) call(m *parsed, t uint32) error {
	if int(t) >= m.moduleTypes {
		return fmt.Errorf("type %d out of range", t)
	}
	ft := m.types[t]
	s.carried += len(ft.results)
	s.callArity = max(s.callArity, ft.params+len(ft.results))
	return nil
}

func (s *shape) local(i uint32) {
	if int(i/64) < len(s.seen) && s.seen[i/64]&(1<<(i%64)) == 0 {
		s.seen[i/64] |= 1 << (i % 64)
		s.used++
	}
}

func (r *reader) limits() error {
	flags, err := r.byte()
	if err != nil {
		return err
	}
	if flags > 3 { // bit 0: has max; bit 1: shared
		return fmt.Errorf("unsupported limits 0x%02x", flags)
	}
	if _, err := r.u32(); err != nil {
		return err
	}
	if flags&1 != 0 {
		_, err = r.u32()
	}
	return err
}

// scan walks instructions to the end that closes them, recording a
// function body's shape in s (nil for a constant expression; for a body,
// s.labels holds the function's result count). It reads
// every immediate exactly as wazero does, or refuses the code: a different
// reading would let wazero run instructions harden never saw. Global
// indices must be below the module's own: the stack guard's counter comes
// after them, and code naming it before it exists could otherwise reset it.
func scan(r *reader, s *shape, m *parsed) error {
	expr := s == nil
	if expr {
		s = &shape{labels: []int{0}}
	}
	for {
		at := r.off
		op, err := r.byte()
		if err != nil {
			return err
		}
		switch {
		case op == 0x0b: // end
			s.labels = s.labels[:len(s.labels)-1]
			if len(s.labels) == 0 {
				return nil
			}
		case op == 0x02 || op == 0x03 || op == 0x04: // block, loop, if
			var params, results int
			params, results, err = r.blockType(m)
			s.blocks++
			s.carried += params + results
			if op == 0x03 {
				s.labels = append(s.labels, params) // a branch to a loop restarts it
			} else {
				s.labels = append(s.labels, results)
			}
		case op == 0x10: // call
			s.calls = true
			var f uint32
			if f, err = r.u32(); err == nil {
				if int(f) >= len(m.funcTypeIdx) {
					err = fmt.Errorf("function %d out of range", f)
				} else {
					err = s.call(m, m.funcTypeIdx[f])
				}
			}
		case op == 0x11: // call_indirect
			s.calls = true
			var t uint32
			if t, err = r.u32(); err == nil {
				if err = s.call(m, t); err == nil {
					_, err = r.u32()
				}
			}
		case op == 0xd2: // ref.func
			if !expr {
				// Each ref.func run in code makes wazero allocate a function
				// instance the module keeps until it closes: a plugin could
				// grow its pooled instance without bound. Tables are filled
				// by element segments, where it is allowed.
				return fmt.Errorf("ref.func at %d: not allowed in code (element segments only)", at)
			}
			_, err = r.u32()
		case op == 0x0f: // return
			s.returns = append(s.returns, at)
		case op == 0x0c || op == 0x0d: // br, br_if
			err = s.branch(r)
		case op == 0x0e: // br_table
			var n uint32
			if n, err = r.count(1); err == nil {
				for i := uint32(0); i <= n && err == nil; i++ {
					err = s.branch(r)
				}
			}
		case op >= 0x20 && op <= 0x22: // local.get, local.set, local.tee
			var l uint32
			if l, err = r.u32(); err == nil {
				s.local(l)
			}
		case op == 0x23 || op == 0x24: // global.get, global.set
			var g uint32
			if g, err = r.u32(); err == nil && g >= m.globals() {
				err = fmt.Errorf("global %d out of range", g)
			}
		case op == 0x1c: // select t*
			_, err = r.valTypes()
		case op == 0x41: // i32.const
			err = r.sleb(32)
		case op == 0x42: // i64.const
			err = r.sleb(64)
		case op == 0x43: // f32.const
			_, err = r.bytes(4)
		case op == 0x44: // f64.const
			_, err = r.bytes(8)
		case op == 0xd0: // ref.null t
			_, err = r.valType()
		case op == 0xfc:
			err = scanFC(r)
		case op == 0xfd:
			err = scanSIMD(r)
		default:
			err = skipImmediates(r, op)
		}
		if err != nil {
			return fmt.Errorf("instruction 0x%02x at %d: %w", op, at, err)
		}
	}
}

// skipImmediates handles the one-byte opcodes with no immediate or only
// u32 immediates.
func skipImmediates(r *reader, op byte) error {
	var n int // u32 immediates
	switch {
	case op <= 0x01, op == 0x05, op == 0x1a, op == 0x1b, op == 0xd1,
		op >= 0x45 && op <= 0xc4:
	case op == 0x25, op == 0x26, // table.get, table.set
		op == 0x3f, op == 0x40: // memory.size/grow (a zero byte, read as a u32)
		n = 1
	case op >= 0x28 && op <= 0x3e: // loads and stores: align, offset
		n = 2
	default:
		return fmt.Errorf("unsupported opcode")
	}
	return r.skipU32s(n)
}

// scanFC skips a 0xFC-prefixed instruction (saturating conversions, bulk
// memory, tables).
func scanFC(r *reader) error {
	sub, err := r.u32()
	if err != nil {
		return err
	}
	var n int
	switch {
	case sub <= 7:
	case sub == 8 || sub == 10 || sub == 12 || sub == 14: // memory.init, memory.copy, table.init, table.copy
		n = 2
	case sub <= 17: // data.drop, memory.fill, elem.drop, table.grow/size/fill
		n = 1
	default:
		return fmt.Errorf("unsupported 0xfc %d", sub)
	}
	return r.skipU32s(n)
}

// scanSIMD skips a 0xFD-prefixed (SIMD) instruction.
//
// wazero reads the sub-opcode as one byte, where the format has a u32: its
// reading agrees with the format's for the single-byte encodings (0-127)
// and for the canonical two-byte ones (0x80-0xff then 0x01, which wazero
// runs as an instruction with no immediate, then nop). Anything else is
// refused.
func scanSIMD(r *reader) error {
	b, err := r.byte()
	if err != nil {
		return err
	}
	sub := uint32(b)
	if b >= 0x80 {
		if next, err := r.byte(); err != nil || next != 0x01 {
			return fmt.Errorf("0xfd sub-opcode not in its canonical encoding")
		}
	}
	memarg := func() error {
		if _, err := r.u32(); err != nil {
			return err
		}
		_, err := r.u32()
		return err
	}
	switch {
	case sub <= 11 || sub == 92 || sub == 93: // loads and stores
		return memarg()
	case sub == 12 || sub == 13: // v128.const, i8x16.shuffle
		_, err = r.bytes(16)
	case sub >= 21 && sub <= 34: // extract and replace lane
		_, err = r.bytes(1)
	case sub >= 84 && sub <= 91: // load and store lane
		if err = memarg(); err == nil {
			_, err = r.bytes(1)
		}
	case sub <= 255: // the rest have no immediate; wazero validates the opcode
	default:
		return fmt.Errorf("unsupported 0xfd %d", sub)
	}
	return err
}

func appendU32(b []byte, v uint32) []byte {
	for v >= 0x80 {
		b = append(b, byte(v)|0x80)
		v >>= 7
	}
	return append(b, byte(v))
}

func appendS32(b []byte, v int32) []byte { return appendS33(b, int64(v)) }

func appendS33(b []byte, v int64) []byte {
	for {
		c := byte(v & 0x7f)
		v >>= 7
		if (v == 0 && c&0x40 == 0) || (v == -1 && c&0x40 != 0) {
			return append(b, c)
		}
		b = append(b, c|0x80)
	}
}
