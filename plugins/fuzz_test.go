package plugins

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/sys"
)

// FuzzHostFunctions calls every host function (policy and WASI) directly with arbitrary
// arguments against a real instance's memory: pointers and lengths come from the guest, so
// decoding them must never crash the host. The only panics allowed are the host's own ABI
// violations (a trap for the guest) and proc_exit's exit error. In normal test runs only the
// seed corpus runs.
func FuzzHostFunctions(f *testing.F) {
	h, _ := newTestHost(f, Config{PoolSize: 1})
	require.NoError(f, h.Load(context.Background(), "echo", wat(f, "echo"), ModuleOptions{}))
	pl := h.lookup("echo")
	in := <-pl.pool.idle
	f.Cleanup(func() { pl.pool.release(in) })

	type fn struct {
		name string
		call api.GoModuleFunc
	}
	var fns []fn
	for _, hf := range h.hostFuncs() {
		fns = append(fns, fn{hf.name, hf.fn})
	}
	for _, wf := range h.wasiFuncs() {
		fns = append(fns, fn{"wasi." + wf.name, wf.fn})
	}
	memSize := uint64(in.mod.Memory().Size())

	seed := func(idx byte, args ...uint64) {
		b := []byte{idx}
		for _, a := range args {
			b = binary.LittleEndian.AppendUint64(b, a)
		}
		f.Add(b)
	}
	for i := range fns {
		seed(byte(i), 0, 0, 0, 0, 0, 0, 0, 0)
		seed(byte(i), 8192, 16, 8192, 4096, 100, 10, 200, 32)
		seed(byte(i), memSize-4, 100, memSize, 1, 1<<32-1, 1<<31, 0, 5)
		seed(byte(i), 1<<32-1, 1<<32-1, 1<<32-1, 1<<32-1, 1<<32-1, 1<<32-1, 1<<32-1, 1<<32-1)
	}

	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) < 1 {
			return
		}
		target := fns[int(data[0])%len(fns)]
		stack := make([]uint64, 8)
		for i := range stack {
			if off := 1 + i*8; off+8 <= len(data) {
				stack[i] = binary.LittleEndian.Uint64(data[off:])
			}
			// i32 parameters arrive zero-extended.
			if i != 1 || target.name != "wasi.clock_time_get" {
				stack[i] = uint64(uint32(stack[i]))
			}
		}
		in.begin(testRequest(), []byte(`{"a":1}`), 42)
		defer func() {
			if r := recover(); r != nil {
				err, ok := r.(error)
				var exit *sys.ExitError
				if ok && (errors.Is(err, ErrABIViolation) || errors.As(err, &exit)) {
					return
				}
				panic(fmt.Sprintf("%s(%v) panicked: %v", target.name, stack, r))
			}
		}()
		target.call(in.ctx, in.mod, stack)
	})
}
