package plugins

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/sys"

	"github.com/privateconnect/pc/plugins/abi"
	"github.com/privateconnect/pc/plugins/internal/harden"
)

const watchdogTick = time.Millisecond

// Exit codes of instances the host closes itself.
const (
	exitTimeout = 0xdead0001 // the watchdog stopped an overrunning call
	exitDrop    = 0xdead0002 // discarded after a failure, or its pool drained
)

// plugin is one loaded version of a plugin id: its options, pool, breaker and counters. A
// reload creates a new plugin value (fresh breaker) and swaps it in.
type plugin struct {
	host    *Host
	id      string
	sha     string
	opts    ModuleOptions
	budget  int64 // ns
	pool    *pool
	info    Info
	breaker *breaker

	calls     atomic.Uint64
	failures  atomic.Uint64
	durations callTimes

	guestLogs  tokenBucket
	failLogs   tokenBucket
	lastNotify atomic.Int64 // nanotime of the last OnFailure
}

// pool is the bounded, pre-warmed set of instances of one module version. It owns a wazero
// runtime (memory limits are per runtime) with the policy and WASI host modules instantiated.
type pool struct {
	host     *Host
	pl       *plugin
	rt       wazero.Runtime
	compiled wazero.CompiledModule
	modCfg   wazero.ModuleConfig
	size     int    // instances at most
	warm     int    // instances made at load and kept by refill; more on demand
	memLimit uint32 // bytes, rounded to pages
	trusted  bool   // compiled without termination checks (ModuleOptions.Trusted)
	guard    string // the exported stack-guard counter of an untrusted module ("" if none)

	idle chan *instance // free instances; capacity size

	mu        sync.Mutex // guards all, pending, draining transitions and runtime close
	all       []*instance
	pending   int // instances being created (counted against size)
	live      atomic.Int32
	draining  atomic.Bool
	closed    bool
	refilling atomic.Bool
}

// instance is one guest instance plus the state of the call it is serving. Only the goroutine
// that acquired it touches the call state; the watchdog touches only deadline and mod.
type instance struct {
	p        *pool
	mod      api.Module
	handle   api.Function
	validate api.Function
	ctx      context.Context // carries the *instance to host functions
	stack    [1]uint64
	deadline atomic.Int64 // 0 idle, >0 virtual-clock deadline of the running call, -1 killed
	budget   int64        // of the running call, ns
	cpuArm   int64        // process CPU time when the call was armed (Host.cpuclock)

	// call state, reset by begin
	req       *Request
	config    []byte
	configID  uint64
	edits     []headerEdit
	responded bool
	status    int
	body      []byte
	errMsg    []byte
	killed    bool // the watchdog closed the module: discard, never reuse
}

type instKey struct{}

var emptyRequest = &Request{}

func instOf(ctx context.Context) *instance { return ctx.Value(instKey{}).(*instance) }

// newPool builds the runtime, compiles and checks the module, and warms size instances.
func (h *Host) newPool(ctx context.Context, pl *plugin, wasm []byte, memLimit uint64, size int, trusted bool) (*pool, Info, error) {
	pages := uint32((memLimit + abi.PageSize - 1) / abi.PageSize)
	if pages == 0 || pages > 65536 {
		return nil, Info{}, fmt.Errorf("memory limit %d out of range", memLimit)
	}
	rc := wazero.NewRuntimeConfig().
		WithCloseOnContextDone(!trusted).
		WithMemoryLimitPages(pages).
		WithCoreFeatures(api.CoreFeaturesV2)
	if h.cache != nil {
		rc = rc.WithCompilationCache(h.cache)
	}
	rt := wazero.NewRuntimeWithConfig(ctx, rc)
	h.liveRuntimes.Add(1)
	p := &pool{
		host:     h,
		pl:       pl,
		rt:       rt,
		size:     size,
		warm:     min(size, h.cfg.PoolWarm),
		memLimit: pages * abi.PageSize,
		idle:     make(chan *instance, size),
		trusted:  trusted,
	}
	fail := func(err error) (*pool, Info, error) {
		p.mu.Lock()
		p.draining.Store(true)
		p.mu.Unlock()
		for _, in := range append([]*instance(nil), p.all...) {
			p.discard(in, false)
		}
		p.closeRuntime()
		return nil, Info{}, err
	}
	if err := h.instantiateWASI(ctx, rt); err != nil {
		return fail(fmt.Errorf("wasi: %w", err))
	}
	if err := h.instantiatePolicyModule(ctx, rt); err != nil {
		return fail(fmt.Errorf("host module: %w", err))
	}
	cm, err := p.compile(ctx, wasm)
	if err != nil {
		return fail(err)
	}
	p.compiled = cm
	info, err := checkModule(cm)
	if err != nil {
		return fail(err)
	}
	info.SizeBytes = len(wasm)
	p.modCfg = wazero.NewModuleConfig().WithName("").WithStartFunctions()
	h.addPool(p)
	for range p.warm {
		in, err := p.newInstance(ctx)
		if err != nil {
			return fail(err)
		}
		p.idle <- in
	}
	return p, info, nil
}

// compile compiles the module; an untrusted one is hardened first (see
// package harden), and wazero never sees a module harden refused: its
// decoder trusts the counts a module declares.
func (p *pool) compile(ctx context.Context, wasm []byte) (wazero.CompiledModule, error) {
	if !p.trusted {
		h, err := harden.Module(wasm)
		if err != nil {
			return nil, fmt.Errorf("%w: %s", ErrInvalidModule, err)
		}
		wasm = h.Wasm
		p.guard = h.Export
	}
	cm, err := p.rt.CompileModule(ctx, wasm)
	if err != nil {
		return nil, fmt.Errorf("%w: compile: %s", ErrInvalidModule, firstLine(err.Error()))
	}
	return cm, nil
}

// stackTripped reports whether the instance's last call was stopped by its
// stack guard.
func (in *instance) stackTripped() bool {
	if in.p.guard == "" || in.mod == nil {
		return false
	}
	g := in.mod.ExportedGlobal(in.p.guard)
	return g != nil && g.Get() == harden.Tripped
}

// newInstance instantiates the module, runs _initialize and checks policy_abi_version.
func (p *pool) newInstance(ctx context.Context) (*instance, error) {
	in := &instance{p: p}
	in.ctx = context.WithValue(context.Background(), instKey{}, in)
	in.begin(emptyRequest, nil, 0)
	// Instantiation runs the module's start section, guest code like any
	// other: it gets the init budget (the runtime closes the module when
	// the context ends; trusted modules are ours and have no checks).
	initTimeout := p.host.cfg.InitTimeout
	ictx, cancel := context.WithTimeout(in.ctx, initTimeout)
	mod, err := p.rt.InstantiateModule(ictx, p.compiled, p.modCfg)
	timedOut := ictx.Err() != nil
	cancel()
	if err != nil {
		if timedOut {
			return nil, fmt.Errorf("%w: its start function did not return within %s", ErrInvalidModule, initTimeout)
		}
		return nil, fmt.Errorf("%w: instantiate: %s", ErrInvalidModule, firstLine(err.Error()))
	}
	in.mod = mod
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		_ = mod.Close(context.Background())
		return nil, ErrClosed
	}
	p.all = append(p.all, in)
	p.live.Add(1)
	p.mu.Unlock()
	p.host.liveInstances.Add(1)

	initErr := func(name string, err error) error {
		p.discard(in, false)
		if errors.Is(err, ErrTimeout) || in.killed {
			return fmt.Errorf("%w: %s did not return within %s", ErrInvalidModule, name, initTimeout)
		}
		return fmt.Errorf("%w: %s: %s", ErrInvalidModule, name, describe(err, in))
	}
	if init := mod.ExportedFunction(abi.ExportInitialize); init != nil {
		if err := in.call(init, int64(initTimeout), false); err != nil {
			return nil, initErr(abi.ExportInitialize, err)
		}
	}
	ver := mod.ExportedFunction(abi.ExportABIVersion)
	if err := in.call(ver, int64(initTimeout), false); err != nil || in.killed {
		return nil, initErr(abi.ExportABIVersion, err)
	}
	if v := int32(in.stack[0]); v != abi.Version {
		p.discard(in, false)
		return nil, fmt.Errorf("%w: %s returned %d, want %d", ErrInvalidModule, abi.ExportABIVersion, v, abi.Version)
	}
	in.handle = mod.ExportedFunction(abi.ExportHandleRequest)
	in.validate = mod.ExportedFunction(abi.ExportValidateConfig)
	in.end()
	return in, nil
}

// call runs fn with the watchdog armed for budget ns. The result, if any, is in in.stack[0].
// A request call (slot true) first takes one of the host's execution slots.
func (in *instance) call(fn api.Function, budget int64, slot bool) error {
	h := in.p.host
	if in.p.trusted {
		// A trusted guest has no termination checks: the watchdog could not stop it, so it is
		// not armed (nor woken, a futex call each time it was parked), and it cannot spin, so
		// it takes no execution slot and runs on every core. An overrun is logged by the
		// caller from the call's duration (plugin.run's caller, EvaluateInto).
		return fn.CallWithStack(in.ctx, in.stack[:])
	}
	if slot {
		if err := h.enterSlot(); err != nil {
			return err
		}
		defer h.leaveSlot()
	}
	// The virtual clock moves in ticks: add one so that a call gets at least its budget.
	dl := h.vclock.Load() + budget + int64(watchdogTick)
	in.budget = budget
	in.cpuArm = h.cpuclock.Load()
	in.deadline.Store(dl) // publishes budget and cpuArm to the watchdog
	if h.inflight.Add(1) == 1 && h.parked.Load() && h.parked.CompareAndSwap(true, false) {
		select {
		case h.wake <- struct{}{}:
		default:
		}
	}
	err := fn.CallWithStack(in.ctx, in.stack[:])
	h.inflight.Add(-1)
	if !in.deadline.CompareAndSwap(dl, 0) {
		// The watchdog closed the module. If the guest still returned normally it finished
		// before the stop took effect (typically this goroutine was descheduled right after
		// the guest returned): its result stands, but the instance is gone.
		in.killed = true
		if err == nil {
			return nil
		}
		return ErrTimeout
	}
	return err
}

// enterSlot bounds how many guest calls run at once on the host (Config.MaxConcurrentCalls):
// a goroutine executing guest code cannot be preempted by Go's scheduler, so if every P ran a
// spinning guest, the watchdog could not run to stop them.
func (h *Host) enterSlot() error {
	select {
	case h.slots <- struct{}{}:
		return nil
	default:
	}
	t := timerPool.Get().(*time.Timer)
	t.Reset(h.cfg.AcquireTimeout)
	defer func() { t.Stop(); timerPool.Put(t) }()
	select {
	case h.slots <- struct{}{}:
		return nil
	case <-t.C:
		return ErrNoInstance
	}
}

func (h *Host) leaveSlot() { <-h.slots }

// sampleCPU updates Host.cpuclock. Where process CPU time is unavailable it follows the
// virtual clock (wall-clock budgets).
func (h *Host) sampleCPU() int64 {
	if c, ok := processCPU(); ok {
		h.cpuclock.Store(c)
		return c
	}
	v := h.vclock.Load() + int64(watchdogTick)
	h.cpuclock.Store(v)
	return v
}

// describe turns a call error into a one-line detail. The detail follows
// the error's kind (PluginError), so an ABI violation's own "ABI violation: "
// and wazero's " (recovered by wazero)" (host functions report violations
// by panicking) are left out.
func describe(err error, in *instance) string {
	if err == nil || err == ErrTimeout {
		return ""
	}
	msg := firstLine(err.Error())
	if in != nil && in.stackTripped() {
		msg = fmt.Sprintf("call stack deeper than its %d MiB budget (unbounded recursion?)", harden.StackBudget>>20)
	}
	if errors.Is(err, ErrABIViolation) {
		msg = strings.TrimSuffix(msg, " (recovered by wazero)")
		msg = strings.TrimPrefix(msg, ErrABIViolation.Error()+": ")
	}
	if in != nil && len(in.errMsg) > 0 {
		return msg + " (" + string(in.errMsg) + ")"
	}
	return msg
}

// classify maps a call error to a sentinel Kind.
func (in *instance) classify(err error) error {
	var exit *sys.ExitError
	switch {
	case errors.Is(err, ErrTimeout):
		return ErrTimeout
	case errors.Is(err, ErrABIViolation):
		return ErrABIViolation
	case errors.As(err, &exit):
		if exit.ExitCode() == exitTimeout {
			return ErrTimeout
		}
		return ErrTrap
	}
	// A trap with memory near the cap is most likely a failed memory.grow (Go's runtime throws
	// "out of memory"; other guests trap on -1).
	if m := in.mod.Memory(); m != nil && uint64(m.Size())+max(abi.PageSize, uint64(in.p.memLimit)/4) > uint64(in.p.memLimit) {
		return ErrMemoryLimit
	}
	if strings.Contains(err.Error(), "out of memory") {
		return ErrMemoryLimit
	}
	return ErrTrap
}

func (in *instance) begin(req *Request, config []byte, id uint64) {
	in.req = req
	in.config = config
	in.configID = id
	in.edits = in.edits[:0]
	in.responded = false
	in.status = 0
	in.body = in.body[:0]
	in.errMsg = in.errMsg[:0]
}

// end drops references to the caller's request and config.
func (in *instance) end() {
	in.req = nil
	in.config = nil
	for i := range in.edits {
		in.edits[i] = headerEdit{}
	}
	in.edits = in.edits[:0]
	if cap(in.body) > 16<<10 {
		in.body = nil // don't keep a large login page around per instance
	}
}

// acquire returns a free instance, waiting up to the host's AcquireTimeout.
func (p *pool) acquire() (*instance, error) {
	select {
	case in := <-p.idle:
		return in, nil
	default:
	}
	if p.draining.Load() {
		return nil, ErrNoInstance
	}
	if int(p.live.Load()) < p.size && p.reserve(p.size) {
		// Every instance is busy and the pool may grow: one more is made in the background
		// (never on the request path: a Go guest takes tens of milliseconds to start). This
		// call takes whichever instance is free first.
		go func() { _ = p.makeOne() }()
	}
	t := timerPool.Get().(*time.Timer)
	t.Reset(p.host.cfg.AcquireTimeout)
	defer func() { t.Stop(); timerPool.Put(t) }()
	select {
	case in := <-p.idle:
		return in, nil
	case <-t.C:
		return nil, ErrNoInstance
	}
}

var timerPool = sync.Pool{New: func() any {
	t := time.NewTimer(time.Hour)
	t.Stop()
	return t
}}

// release returns a healthy instance to the pool (or closes it if the pool is draining).
func (p *pool) release(in *instance) {
	in.end()
	if in.killed {
		p.discard(in, true)
		return
	}
	if p.draining.Load() {
		p.discard(in, false)
		return
	}
	select {
	case p.idle <- in:
	default:
		p.discard(in, false) // cannot happen: live <= size
	}
	if p.draining.Load() {
		p.sweepIdle()
	}
}

// discard closes an instance that must not serve again, and refills the pool in the
// background.
func (p *pool) discard(in *instance, refill bool) {
	in.end()
	if in.mod != nil {
		_ = in.mod.CloseWithExitCode(context.Background(), exitDrop)
	}
	p.mu.Lock()
	found := false
	for i, x := range p.all {
		if x == in {
			last := len(p.all) - 1
			p.all[i] = p.all[last]
			p.all[last] = nil
			p.all = p.all[:last]
			found = true
			break
		}
	}
	var closeNow bool
	if found {
		p.live.Add(-1)
		p.host.liveInstances.Add(-1)
		closeNow = p.draining.Load() && len(p.all) == 0 && !p.closed
	}
	p.mu.Unlock()
	if closeNow {
		p.closeRuntime()
		return
	}
	if refill && found && !p.draining.Load() && p.refilling.CompareAndSwap(false, true) {
		go p.refill()
	}
}

// reserve counts an instance about to be created, if the pool (instances and creations
// in progress) holds fewer than limit.
func (p *pool) reserve(limit int) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed || len(p.all)+p.pending >= limit {
		return false
	}
	p.pending++
	return true
}

func (p *pool) unreserve() {
	p.mu.Lock()
	p.pending--
	p.mu.Unlock()
}

// makeOne makes the instance reserved by its caller and puts it in the pool; a failure is
// logged (rate-limited) and returned.
func (p *pool) makeOne() error {
	in, err := p.newInstance(context.Background())
	p.unreserve()
	if err != nil {
		if p.pl != nil && p.pl.failLogs.allow() {
			p.host.log.Error("plugin instance creation failed", "plugin", p.pl.id, "err", err)
		}
		return err
	}
	p.release(in)
	return nil
}

// refill creates instances until the pool holds its warm count again (instances discarded
// after a failure), backing off on errors.
func (p *pool) refill() {
	backoff := 50 * time.Millisecond
	for {
		if p.draining.Load() || !p.reserve(p.warm) {
			p.refilling.Store(false)
			// A discard may have raced with the store above.
			if !p.draining.Load() && int(p.live.Load()) < p.warm && p.refilling.CompareAndSwap(false, true) {
				continue
			}
			return
		}
		if err := p.makeOne(); err != nil {
			select {
			case <-time.After(backoff):
			case <-p.host.done:
				p.refilling.Store(false)
				return
			}
			backoff = min(backoff*2, 5*time.Second)
			continue
		}
		backoff = 50 * time.Millisecond
	}
}

// drain stops the pool from serving: idle instances close now, busy ones when released; the
// runtime closes with the last one.
func (p *pool) drain() {
	p.mu.Lock()
	p.draining.Store(true)
	empty := len(p.all) == 0 && !p.closed
	p.mu.Unlock()
	p.sweepIdle()
	if empty {
		p.closeRuntime()
	}
}

func (p *pool) sweepIdle() {
	for {
		select {
		case in := <-p.idle:
			p.discard(in, false)
		default:
			return
		}
	}
}

func (p *pool) closeRuntime() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.closed = true
	p.mu.Unlock()
	_ = p.rt.Close(context.Background())
	p.host.removePool(p)
	p.host.liveRuntimes.Add(-1)
}

// watchdog stops calls that overran their budget. A call is stopped when both clocks say it
// overran:
//
//   - the virtual clock (Host.vclock), which only the watchdog advances, by the real time
//     elapsed since its previous tick but never more than two ticks at once, so a stall of the
//     whole process (the watchdog included) is not charged to guests;
//   - the process CPU clock (Host.cpuclock, sampled each tick): a guest cannot have used its
//     budget if the whole process has not used that much CPU since the call started. This
//     keeps a guest from being stopped because its thread was descheduled (another process
//     on a shared machine, a preempted goroutine) rather than because it computed too long.
//
// A guest that really spins is stopped within its budget plus a tick or two. While no call is
// in flight the watchdog parks.
func (h *Host) watchdog() {
	defer h.wg.Done()
	const tick = watchdogTick
	t := time.NewTimer(tick)
	defer t.Stop()
	last := h.nanotime()
	for {
		if h.inflight.Load() == 0 {
			h.parked.Store(true)
			if h.inflight.Load() == 0 {
				select {
				case <-h.wake:
				case <-h.done:
					return
				}
			} else if !h.parked.CompareAndSwap(true, false) {
				<-h.wake // a caller unparked us and sent (or is sending) a wake-up
			}
			last = h.nanotime()
			h.sampleCPU()
		}
		t.Reset(tick)
		select {
		case <-t.C:
		case <-h.done:
			return
		}
		now := h.nanotime()
		v := h.vclock.Add(min(now-last, 2*int64(tick)))
		last = now
		cpu := h.sampleCPU()
		for _, p := range *h.pools.Load() {
			p.mu.Lock()
			for _, in := range p.all {
				d := in.deadline.Load()
				if d <= 0 || v <= d || cpu-in.cpuArm < in.budget {
					continue
				}
				if in.deadline.CompareAndSwap(d, -1) && !p.trusted {
					// The guest stops at its next check (function entry, loop back-edge).
					_ = in.mod.CloseWithExitCode(context.Background(), exitTimeout)
				}
			}
			p.mu.Unlock()
		}
	}
}
