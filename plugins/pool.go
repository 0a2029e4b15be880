package plugins

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"
	"github.com/tetratelabs/wazero/sys"

	"github.com/privateconnect/pc/plugins/abi"
)

// exitDrop is the exit code of an instance the host discards.
const exitDrop = 0xdead0002

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

	calls    atomic.Uint64
	failures atomic.Uint64

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
	handle   string
	size     int
	memLimit uint32 // bytes, rounded to pages

	idle chan *instance // free instances; capacity size

	mu        sync.Mutex // guards all, draining transitions and runtime close
	all       []*instance
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
	ctx      context.Context // carries the *instance to host functions; canceled by the watchdog
	cancel   context.CancelFunc
	stack    [1]uint64
	deadline atomic.Int64 // 0 idle, >0 nanotime deadline of the running call, -1 killed

	// call state, reset by begin
	req       *Request
	config    []byte
	configID  uint64
	edits     []headerEdit
	responded bool
	status    int
	body      []byte
	errMsg    []byte
	violation error
}

type instKey struct{}

var emptyRequest = &Request{}

func instOf(ctx context.Context) *instance { return ctx.Value(instKey{}).(*instance) }

// newPool builds the runtime, compiles and checks the module, and warms size instances.
func (h *Host) newPool(ctx context.Context, pl *plugin, wasm []byte, memLimit uint64, size int) (*pool, Info, error) {
	pages := uint32((memLimit + abi.PageSize - 1) / abi.PageSize)
	if pages == 0 || pages > 65536 {
		return nil, Info{}, fmt.Errorf("memory limit %d out of range", memLimit)
	}
	rc := wazero.NewRuntimeConfig().
		WithCloseOnContextDone(true).
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
		memLimit: pages * abi.PageSize,
		idle:     make(chan *instance, size),
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
	if _, err := wasi_snapshot_preview1.Instantiate(ctx, rt); err != nil {
		return fail(fmt.Errorf("wasi: %w", err))
	}
	if err := h.instantiatePolicyModule(ctx, rt); err != nil {
		return fail(fmt.Errorf("host module: %w", err))
	}
	cm, err := rt.CompileModule(ctx, wasm)
	if err != nil {
		return fail(fmt.Errorf("%w: compile: %s", ErrInvalidModule, firstLine(err.Error())))
	}
	p.compiled = cm
	info, err := checkModule(cm)
	if err != nil {
		return fail(err)
	}
	info.SizeBytes = len(wasm)
	out := &guestOutput{pl: pl, level: 1}
	errOut := &guestOutput{pl: pl, level: 2}
	p.modCfg = wazero.NewModuleConfig().
		WithName("").
		WithStartFunctions().
		WithSysWalltime().
		WithSysNanotime().
		WithRandSource(rand.Reader).
		WithStdout(out).
		WithStderr(errOut)
	h.addPool(p)
	for range size {
		in, err := p.newInstance(ctx)
		if err != nil {
			return fail(err)
		}
		p.idle <- in
	}
	return p, info, nil
}

// newInstance instantiates the module, runs _initialize and checks policy_abi_version.
func (p *pool) newInstance(ctx context.Context) (*instance, error) {
	in := &instance{p: p}
	cctx, cancel := context.WithCancel(context.Background())
	in.ctx = context.WithValue(cctx, instKey{}, in)
	in.cancel = cancel
	in.begin(emptyRequest, nil, 0)
	mod, err := p.rt.InstantiateModule(in.ctx, p.compiled, p.modCfg)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("%w: instantiate: %s", ErrInvalidModule, firstLine(err.Error()))
	}
	in.mod = mod
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		_ = mod.Close(context.Background())
		cancel()
		return nil, ErrClosed
	}
	p.all = append(p.all, in)
	p.live.Add(1)
	p.mu.Unlock()
	p.host.liveInstances.Add(1)

	if init := mod.ExportedFunction(abi.ExportInitialize); init != nil {
		if err := in.call(init, int64(p.host.cfg.InitTimeout)); err != nil {
			p.discard(in, false)
			return nil, fmt.Errorf("%w: _initialize: %s", ErrInvalidModule, describe(err, in))
		}
	}
	ver := mod.ExportedFunction(abi.ExportABIVersion)
	if err := in.call(ver, int64(p.host.cfg.InitTimeout)); err != nil {
		p.discard(in, false)
		return nil, fmt.Errorf("%w: %s: %s", ErrInvalidModule, abi.ExportABIVersion, describe(err, in))
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
func (in *instance) call(fn api.Function, budget int64) error {
	h := in.p.host
	dl := h.nanotime() + budget
	in.deadline.Store(dl)
	if h.inflight.Add(1) == 1 && h.parked.Load() && h.parked.CompareAndSwap(true, false) {
		select {
		case h.wake <- struct{}{}:
		default:
		}
	}
	err := fn.CallWithStack(in.ctx, in.stack[:])
	h.inflight.Add(-1)
	if !in.deadline.CompareAndSwap(dl, 0) {
		// The watchdog closed the instance: whatever the guest returned, it overran.
		return ErrTimeout
	}
	if err == nil && in.violation != nil {
		return in.violation
	}
	return err
}

// describe turns a call error into a one-line detail.
func describe(err error, in *instance) string {
	if err == nil || err == ErrTimeout {
		return ""
	}
	if in != nil && len(in.errMsg) > 0 {
		return firstLine(err.Error()) + " (" + string(in.errMsg) + ")"
	}
	return firstLine(err.Error())
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
		if exit.ExitCode() == sys.ExitCodeContextCanceled {
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
	in.violation = nil
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
	// The call (if any) has returned: closing here cannot race with the guest.
	if in.mod != nil {
		_ = in.mod.CloseWithExitCode(context.Background(), exitDrop)
	}
	in.cancel()
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

// refill creates instances until the pool is full again, backing off on errors.
func (p *pool) refill() {
	backoff := 50 * time.Millisecond
	for {
		if p.draining.Load() || int(p.live.Load()) >= p.size {
			p.refilling.Store(false)
			// A discard may have raced with the store above.
			if !p.draining.Load() && int(p.live.Load()) < p.size && p.refilling.CompareAndSwap(false, true) {
				continue
			}
			return
		}
		in, err := p.newInstance(context.Background())
		if err != nil {
			if p.pl != nil && p.pl.failLogs.allow() {
				p.host.log.Error("plugin instance creation failed", "plugin", p.pl.id, "err", err)
			}
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
		p.release(in)
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

// watchdog stops calls that overran their budget. It ticks every millisecond while
// calls are in flight and parks when there are none.
func (h *Host) watchdog() {
	defer h.wg.Done()
	const tick = time.Millisecond
	t := time.NewTimer(tick)
	defer t.Stop()
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
		}
		t.Reset(tick)
		select {
		case <-t.C:
		case <-h.done:
			return
		}
		now := h.nanotime()
		for _, p := range *h.pools.Load() {
			p.mu.Lock()
			for _, in := range p.all {
				if d := in.deadline.Load(); d > 0 && now > d && in.deadline.CompareAndSwap(d, -1) {
					// Canceling the instance's context makes wazero stop the guest at its next
					// check and release the module's resources on the calling goroutine
					// (Module.CloseWithExitCode from here would race with WASI functions).
					in.cancel()
				}
			}
			p.mu.Unlock()
		}
	}
}
