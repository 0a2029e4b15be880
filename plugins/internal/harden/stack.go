package harden

import "fmt"

// The stack guard. Every function that calls another charges an upper
// bound of its native frame to a global counter on entry, gives it back on
// exit, and traps (`unreachable`) before the counter would pass the budget.
// Leaf functions are left alone: they cannot recurse, and one frame of any
// size beyond the budget is bounded by the module's size. A guarded body
// becomes
//
//	locals                         ;; unchanged
//	(if (global.get $g) >u BUDGET-COST) (then (global.set $g -1) unreachable)
//	(global.set $g (global.get $g) + COST)
//	(block (result ...)            ;; the function's results
//	  body                         ;; each `return` preceded by the release
//	)
//	(global.set $g (global.get $g) - COST)
//
// A branch to the function's own label now lands on the block's end, so it
// releases the frame too. When the guard trips the counter is left at
// [Tripped], which the host reads through the export to tell a stack
// overflow from other traps; the instance is then discarded, as after every
// trap, so a counter left high by a trap is never seen again.

// Frame cost model: wazero's register allocator gives every spilled virtual
// register a slot of its own (8 or 16 bytes), and a function has no more
// virtual registers than a small multiple of its values: its params, its
// locals, the values its calls and results pass, and what its instructions
// produce, at most one per byte of code for all but a few instructions. Measured against real frames the estimate
// is 5-25 times too high, which is the side to err on.
const (
	frameBase      = 256 // return address, frame pointer, saved registers, call area
	bytesPerLocal  = 16  // a v128 spill slot
	bytesPerOpByte = 16
)

// guard appends to dst the body raw with the stack guard, or raw itself when
// the function makes no call, says which, and leaves the body's shape in s.
func guard(dst, raw []byte, m *parsed, ti uint32, budget uint32, s *shape) ([]byte, bool, error) {
	g := m.globals()
	params := m.types[ti].params
	r := &reader{b: raw}
	groups, err := r.count(2)
	if err != nil {
		return nil, false, err
	}
	locals := uint64(params)
	for range groups {
		c, err := r.u32()
		if err != nil {
			return nil, false, err
		}
		if _, err := r.valType(); err != nil {
			return nil, false, err
		}
		if locals += uint64(c); locals > MaxLocals {
			return nil, false, fmt.Errorf("more than %d params and locals", MaxLocals)
		}
	}
	if len(raw)-r.off > MaxFunctionBytes {
		return nil, false, fmt.Errorf("%w: %d bytes of code, more than %d in one function", ErrTooComplex, len(raw)-r.off, MaxFunctionBytes)
	}
	codeStart := r.off
	s.reset(int(locals))
	s.labels = append(s.labels, len(m.types[ti].results))
	if err := scan(r, s, m); err != nil {
		return nil, false, err
	}
	if !r.done() {
		return nil, false, fmt.Errorf("code after the function's end")
	}
	if !s.calls {
		return append(dst, raw...), false, nil
	}
	// Values passed on the stack: the function's results, and the most any
	// one of its calls passes (params and results).
	values := uint64(len(m.types[ti].results) + s.callArity)
	cost := frameBase + bytesPerLocal*(locals+values) + bytesPerOpByte*uint64(len(raw)-codeStart)
	// A frame bigger than the whole budget may still run once, from the top.
	cost = min(cost, uint64(budget))
	release := appendAdjust(nil, g, uint32(cost), 0x6b) // i32.sub

	dst = append(dst, raw[:codeStart]...)
	// (if (i32.gt_u (global.get $g) (i32.const budget-cost)) (then (global.set $g (i32.const -1)) unreachable))
	dst = appendGlobalGet(dst, g)
	dst = append(dst, 0x41)
	dst = appendS32(dst, int32(budget-uint32(cost)))
	dst = append(dst, 0x4b, 0x04, 0x40, 0x41, 0x7f, 0x24)
	dst = appendU32(dst, g)
	dst = append(dst, 0x00, 0x0b)
	dst = appendAdjust(dst, g, uint32(cost), 0x6a) // i32.add
	dst = append(dst, 0x02)
	dst = append(dst, m.blockType(ti)...)
	last := codeStart
	for _, at := range s.returns {
		dst = append(dst, raw[last:at]...)
		dst = append(dst, release...)
		last = at
	}
	// The body's final end closes the block; then release and end the function.
	dst = append(dst, raw[last:]...)
	dst = append(dst, release...)
	return append(dst, 0x0b), true, nil
}

func appendGlobalGet(b []byte, g uint32) []byte {
	return appendU32(append(b, 0x23), g)
}

// appendAdjust appends (global.set $g (op (global.get $g) (i32.const v))).
func appendAdjust(b []byte, g, v uint32, op byte) []byte {
	b = appendGlobalGet(b, g)
	b = append(b, 0x41)
	b = appendS32(b, int32(v))
	b = append(b, op, 0x24)
	return appendU32(b, g)
}
