package plugins

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/sys"

	"github.com/privateconnect/pc/plugins/abi"
)

// The host's own wasi_snapshot_preview1: exactly abi.AllowedWASI, stateless, and never
// touching wazero's per-module sys context. The latter matters: the watchdog stops an
// overrunning guest with Module.CloseWithExitCode from its own goroutine, which releases that
// context while the guest may be inside a WASI call; wazero's WASI reads it, ours does not.

const (
	errnoSuccess = 0
	errnoBadf    = 8
	errnoFault   = 21
	errnoInval   = 28
)

const (
	filetypeCharacterDevice = 2
	rightFdRead             = 1 << 1
	rightFdWrite            = 1 << 6
	rightPollFdReadwrite    = 1 << 27
)

// maxWASIVec bounds iovec and subscription counts (so sizes cannot overflow 32 bits).
const maxWASIVec = 1024

type wasiFunc struct {
	name    string
	params  []api.ValueType
	results []api.ValueType
	fn      api.GoModuleFunc
}

var i32r = []api.ValueType{api.ValueTypeI32}

func errno(stack []uint64, e uint32) { stack[0] = uint64(e) }

// wmem is mem for WASI: out-of-bounds is EFAULT rather than a trap.
func wmem(mod api.Module, ptr, n uint32) ([]byte, bool) { return mod.Memory().Read(ptr, n) }

func writeZeros(mod api.Module, stack []uint64, ptrs ...uint64) {
	for _, p := range ptrs {
		if !mod.Memory().WriteUint32Le(uint32(p), 0) {
			errno(stack, errnoFault)
			return
		}
	}
	errno(stack, errnoSuccess)
}

func (h *Host) wasiFuncs() []wasiFunc {
	noArgs := func(_ context.Context, _ api.Module, stack []uint64) { errno(stack, errnoSuccess) }
	sizes := func(_ context.Context, mod api.Module, stack []uint64) { writeZeros(mod, stack, stack[0], stack[1]) }
	return []wasiFunc{
		{"args_get", i32(2), i32r, noArgs},
		{"args_sizes_get", i32(2), i32r, sizes},
		{"environ_get", i32(2), i32r, noArgs},
		{"environ_sizes_get", i32(2), i32r, sizes},
		{"clock_res_get", i32(2), i32r, func(_ context.Context, mod api.Module, stack []uint64) {
			if id := uint32(stack[0]); id > 1 {
				errno(stack, errnoInval)
				return
			}
			if !mod.Memory().WriteUint64Le(uint32(stack[1]), 1000) {
				errno(stack, errnoFault)
				return
			}
			errno(stack, errnoSuccess)
		}},
		{"clock_time_get", []api.ValueType{api.ValueTypeI32, api.ValueTypeI64, api.ValueTypeI32}, i32r,
			func(_ context.Context, mod api.Module, stack []uint64) {
				var t int64
				switch uint32(stack[0]) {
				case 0: // realtime
					t = time.Now().UnixNano()
				case 1: // monotonic
					t = h.nanotime()
				default:
					errno(stack, errnoInval)
					return
				}
				if !mod.Memory().WriteUint64Le(uint32(stack[2]), uint64(t)) {
					errno(stack, errnoFault)
					return
				}
				errno(stack, errnoSuccess)
			}},
		{"random_get", i32(2), i32r, func(_ context.Context, mod api.Module, stack []uint64) {
			b, ok := wmem(mod, uint32(stack[0]), uint32(stack[1]))
			if !ok {
				errno(stack, errnoFault)
				return
			}
			_, _ = rand.Read(b)
			errno(stack, errnoSuccess)
		}},
		{"fd_write", i32(4), i32r, func(ctx context.Context, mod api.Module, stack []uint64) {
			fd := uint32(stack[0])
			if fd != 1 && fd != 2 {
				errno(stack, errnoBadf)
				return
			}
			if uint32(stack[2]) > maxWASIVec {
				errno(stack, errnoInval)
				return
			}
			iovs, ok := wmem(mod, uint32(stack[1]), uint32(stack[2])*8)
			if !ok {
				errno(stack, errnoFault)
				return
			}
			in := instOf(ctx)
			var total uint32
			var line []byte
			for i := 0; i+8 <= len(iovs); i += 8 {
				p := binary.LittleEndian.Uint32(iovs[i:])
				n := binary.LittleEndian.Uint32(iovs[i+4:])
				b, ok := wmem(mod, p, n)
				if !ok {
					errno(stack, errnoFault)
					return
				}
				total += n
				if room := abi.MaxLogLen - len(line); room > 0 {
					line = append(line, b[:min(len(b), room)]...)
				}
			}
			for len(line) > 0 && (line[len(line)-1] == '\n' || line[len(line)-1] == '\r') {
				line = line[:len(line)-1]
			}
			if len(line) > 0 {
				level := int32(abi.LogInfo)
				if fd == 2 {
					level = abi.LogWarn
				}
				in.p.pl.guestLog(level, line)
			}
			if !mod.Memory().WriteUint32Le(uint32(stack[3]), total) {
				errno(stack, errnoFault)
				return
			}
			errno(stack, errnoSuccess)
		}},
		{"fd_read", i32(4), i32r, func(_ context.Context, mod api.Module, stack []uint64) {
			if uint32(stack[0]) != 0 {
				errno(stack, errnoBadf)
				return
			}
			writeZeros(mod, stack, stack[3]) // stdin is empty: EOF
		}},
		{"fd_close", i32(1), i32r, func(_ context.Context, _ api.Module, stack []uint64) {
			if uint32(stack[0]) > 2 {
				errno(stack, errnoBadf)
				return
			}
			errno(stack, errnoSuccess)
		}},
		{"fd_fdstat_get", i32(2), i32r, func(_ context.Context, mod api.Module, stack []uint64) {
			fd := uint32(stack[0])
			if fd > 2 {
				errno(stack, errnoBadf)
				return
			}
			b, ok := wmem(mod, uint32(stack[1]), 24)
			if !ok {
				errno(stack, errnoFault)
				return
			}
			clear(b)
			b[0] = filetypeCharacterDevice
			rights := uint64(rightFdWrite | rightPollFdReadwrite)
			if fd == 0 {
				rights = rightFdRead | rightPollFdReadwrite
			}
			binary.LittleEndian.PutUint64(b[8:], rights)
			errno(stack, errnoSuccess)
		}},
		{"fd_fdstat_set_flags", i32(2), i32r, func(_ context.Context, _ api.Module, stack []uint64) {
			if uint32(stack[0]) > 2 {
				errno(stack, errnoBadf)
				return
			}
			errno(stack, errnoSuccess) // accepted and ignored: stdio stays blocking
		}},
		{"fd_prestat_get", i32(2), i32r, func(_ context.Context, _ api.Module, stack []uint64) {
			errno(stack, errnoBadf) // no preopened directories
		}},
		{"fd_prestat_dir_name", i32(3), i32r, func(_ context.Context, _ api.Module, stack []uint64) {
			errno(stack, errnoBadf)
		}},
		{"poll_oneoff", i32(4), i32r, func(_ context.Context, mod api.Module, stack []uint64) {
			// Every subscription fires at once: clocks without sleeping (a guest that
			// sleeps spins, and the watchdog stops it), fds with EBADF.
			n := uint32(stack[2])
			if n == 0 || n > maxWASIVec {
				errno(stack, errnoInval)
				return
			}
			subs, ok := wmem(mod, uint32(stack[0]), n*48)
			if !ok {
				errno(stack, errnoFault)
				return
			}
			events, ok := wmem(mod, uint32(stack[1]), n*32)
			if !ok {
				errno(stack, errnoFault)
				return
			}
			for i := uint32(0); i < n; i++ {
				s, e := subs[i*48:], events[i*32:(i+1)*32]
				tag := s[8]
				var userdata [8]byte
				copy(userdata[:], s[:8])
				clear(e)
				copy(e[:8], userdata[:])
				if tag != 0 {
					binary.LittleEndian.PutUint16(e[8:], errnoBadf)
				}
				e[10] = tag
			}
			if !mod.Memory().WriteUint32Le(uint32(stack[3]), n) {
				errno(stack, errnoFault)
				return
			}
			errno(stack, errnoSuccess)
		}},
		{"sched_yield", nil, i32r, func(_ context.Context, _ api.Module, stack []uint64) {
			errno(stack, errnoSuccess)
		}},
		{"proc_exit", i32(1), nil, func(_ context.Context, _ api.Module, stack []uint64) {
			panic(sys.NewExitError(uint32(stack[0])))
		}},
	}
}

// instantiateWASI registers the WASI subset in rt.
func (h *Host) instantiateWASI(ctx context.Context, rt wazero.Runtime) error {
	b := rt.NewHostModuleBuilder(abi.WASIModuleName)
	for _, f := range h.wasiFuncs() {
		if !abi.WASIAllowed(f.name) {
			panic("plugins: WASI function outside abi.AllowedWASI: " + f.name)
		}
		b = b.NewFunctionBuilder().WithGoModuleFunction(f.fn, f.params, f.results).WithName(f.name).Export(f.name)
	}
	_, err := b.Instantiate(ctx)
	return err
}
