package plugins

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"runtime"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tetratelabs/wazero"

	"github.com/privateconnect/pc/plugins/abi"
)

// Config configures a [Host]. The zero value is usable: every zero field takes the default
// documented beside it (set in one place, [Config.withDefaults]).
type Config struct {
	// CacheDir is the on-disk compilation cache shared by every module (keyed by the module's
	// hash and the wazero version). Empty: no cache, every Load compiles from scratch.
	CacheDir string
	// Logger receives guest logs (log import and stdout/stderr, rate-limited per plugin) and
	// failures. Nil discards.
	Logger *slog.Logger
	// DefaultTimeout is the per-call time budget of a plugin without its own (default 5 ms,
	// at most 50 ms).
	DefaultTimeout time.Duration
	// DefaultMemoryLimitBytes caps each instance's linear memory (default 16 MiB; rounded up to
	// whole 64 KiB pages).
	DefaultMemoryLimitBytes uint64
	// PoolSize bounds the instances per module (default GOMAXPROCS, at least 2). The pool
	// never grows beyond it: a call waits up to AcquireTimeout for a free instance, then
	// answers 503.
	PoolSize int
	// PoolWarm is how many instances of each module are made at load (default 2, at most
	// PoolSize). When a call finds every instance busy, one more is made in the background,
	// up to PoolSize. A Go guest instance costs ~5 MiB, so on a many-core edge a full pool of
	// every built-in would hold hundreds of MiB for plugins that are rarely used at once.
	PoolWarm int
	// BreakerThreshold is the number of failures within a minute that trips a plugin's
	// circuit breaker (default 20).
	BreakerThreshold int
	// BreakerBackoff is how long a tripped plugin stays open before one trial call (default
	// 30 s; doubles on each failed trial, up to 10 minutes).
	BreakerBackoff time.Duration

	// AcquireTimeout bounds the wait for a free instance (default 50 ms).
	AcquireTimeout time.Duration
	// InitTimeout bounds an instance's _initialize (default 2 s).
	InitTimeout time.Duration
	// ValidateConfigTimeout is the budget of one validate_config call (default 100 ms).
	ValidateConfigTimeout time.Duration
	// MaxConcurrentCalls bounds the guest calls running at once across all plugins (default
	// GOMAXPROCS-1, at least 1). Guest code cannot be preempted by Go's scheduler; keeping a
	// P free of guests lets the watchdog (and the rest of the process) run even when every
	// running guest spins. Calls wait up to AcquireTimeout for a slot, then answer 503.
	MaxConcurrentCalls int
	// RateLimitMaxKeys bounds the shared rate_limit counters (default 262144 keys).
	RateLimitMaxKeys int
	// OnFailure, when set, is called (in its own goroutine, at most once per plugin every
	// 10 s) when a plugin call fails; the control plane turns it into the plugin.failed
	// webhook.
	OnFailure func(pluginID string, err error)
	// FailOpenUnloaded, when set, tells whether a plugin that is not loaded (its load failed,
	// or is still under way) is marked failOpen: the chain then skips it, as it skips a
	// loaded failOpen plugin that fails, instead of answering 503. The host learns a
	// plugin's options only when it loads it; the caller knows them from its configuration.
	FailOpenUnloaded func(pluginID string) bool
}

func (c Config) withDefaults() (Config, error) {
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.DefaultTimeout == 0 {
		c.DefaultTimeout = abi.DefaultTimeout
	}
	if c.DefaultTimeout < 0 || c.DefaultTimeout > abi.MaxTimeout {
		return c, fmt.Errorf("plugins: DefaultTimeout %v out of range (0, %v]", c.DefaultTimeout, abi.MaxTimeout)
	}
	if c.DefaultMemoryLimitBytes == 0 {
		c.DefaultMemoryLimitBytes = abi.DefaultMemoryLimitBytes
	}
	if c.PoolSize == 0 {
		c.PoolSize = max(2, runtime.GOMAXPROCS(0))
	}
	if c.PoolSize < 0 || c.PoolSize > 1024 {
		return c, fmt.Errorf("plugins: PoolSize %d out of range", c.PoolSize)
	}
	if c.PoolWarm == 0 {
		c.PoolWarm = 2
	}
	if c.PoolWarm < 0 {
		return c, fmt.Errorf("plugins: PoolWarm %d out of range", c.PoolWarm)
	}
	if c.BreakerThreshold == 0 {
		c.BreakerThreshold = 20
	}
	if c.BreakerBackoff == 0 {
		c.BreakerBackoff = 30 * time.Second
	}
	if c.AcquireTimeout == 0 {
		c.AcquireTimeout = 50 * time.Millisecond
	}
	if c.InitTimeout == 0 {
		c.InitTimeout = 2 * time.Second
	}
	if c.ValidateConfigTimeout == 0 {
		c.ValidateConfigTimeout = 100 * time.Millisecond
	}
	if c.MaxConcurrentCalls == 0 {
		c.MaxConcurrentCalls = max(1, runtime.GOMAXPROCS(0)-1)
	}
	if c.RateLimitMaxKeys == 0 {
		c.RateLimitMaxKeys = 1 << 18
	}
	if c.BreakerThreshold < 0 || c.BreakerBackoff < 0 || c.AcquireTimeout < 0 || c.InitTimeout < 0 ||
		c.ValidateConfigTimeout < 0 || c.RateLimitMaxKeys < 0 || c.MaxConcurrentCalls < 0 {
		return c, errors.New("plugins: negative limit in Config")
	}
	return c, nil
}

// ModuleOptions are per-plugin settings given at Load. Zero fields take the Host's defaults.
type ModuleOptions struct {
	Timeout          time.Duration // per-call budget, at most 50 ms
	MemoryLimitBytes uint64        // linear memory cap per instance
	FailOpen         bool          // on failure, skip the plugin instead of answering 500/503
	PoolSize         int           // instances in this plugin's pool
	// Trusted compiles the module without wazero's termination checks: a check is a call
	// out of the guest at every loop iteration, and Go's wasm code loops at every branch,
	// which makes a Go guest's computation ~25 times slower. A trusted guest cannot be
	// stopped: a call that overruns its budget completes, and is logged. Only for modules
	// shipped with the binary (the built-ins); never for uploaded plugins.
	Trusted bool
}

func (h *Host) normalize(o ModuleOptions) (ModuleOptions, error) {
	if o.Timeout == 0 {
		o.Timeout = h.cfg.DefaultTimeout
	}
	if o.Timeout < 0 || o.Timeout > abi.MaxTimeout {
		return o, fmt.Errorf("timeout %v out of range (0, %v]", o.Timeout, abi.MaxTimeout)
	}
	if o.MemoryLimitBytes == 0 {
		o.MemoryLimitBytes = h.cfg.DefaultMemoryLimitBytes
	}
	if o.MemoryLimitBytes > 4<<30 {
		return o, fmt.Errorf("memory limit %d above 4 GiB", o.MemoryLimitBytes)
	}
	if o.PoolSize == 0 {
		o.PoolSize = h.cfg.PoolSize
	}
	if o.PoolSize < 0 || o.PoolSize > 1024 {
		return o, fmt.Errorf("pool size %d out of range", o.PoolSize)
	}
	return o, nil
}

// Host runs plugins. It is safe for concurrent use.
type Host struct {
	cfg   Config
	log   *slog.Logger
	cache wazero.CompilationCache
	seed  maphash.Seed
	epoch time.Time

	plugins atomic.Pointer[map[string]*plugin] // copy on write; read on every request
	pools   atomic.Pointer[[]*pool]            // every pool with live instances, for the watchdog
	mu      sync.Mutex                         // guards writes of plugins and pools
	closeMu sync.RWMutex                       // Load holds it shared; Close waits for them
	loadMu  sync.Mutex                         // guards loading
	loading map[string]*keyedLock              // see lock: per plugin id and per module, while held
	closed  atomic.Bool

	limiter *rateLimiter
	keys    keyCache

	// watchdog
	vclock   atomic.Int64 // virtual ns, advanced by the watchdog; call deadlines use it
	cpuclock atomic.Int64 // process CPU ns, sampled by the watchdog
	inflight atomic.Int64
	parked   atomic.Bool
	wake     chan struct{}
	slots    chan struct{} // guest calls in progress (MaxConcurrentCalls)
	done     chan struct{}
	wg       sync.WaitGroup

	liveInstances atomic.Int64
	liveRuntimes  atomic.Int64
}

// NewHost creates a host. It starts two goroutines (the call watchdog and the rate-limit
// janitor) that Close stops.
func NewHost(ctx context.Context, cfg Config) (*Host, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	h := &Host{
		cfg:     cfg,
		log:     cfg.Logger,
		seed:    maphash.MakeSeed(),
		epoch:   time.Now(),
		loading: map[string]*keyedLock{},
		wake:    make(chan struct{}, 1),
		slots:   make(chan struct{}, cfg.MaxConcurrentCalls),
		done:    make(chan struct{}),
	}
	if cfg.CacheDir != "" {
		c, err := wazero.NewCompilationCacheWithDir(cfg.CacheDir)
		if err != nil {
			return nil, fmt.Errorf("plugins: compilation cache: %w", err)
		}
		h.cache = c
	}
	h.limiter = newRateLimiter(cfg.RateLimitMaxKeys)
	empty := map[string]*plugin{}
	h.plugins.Store(&empty)
	h.pools.Store(&[]*pool{})
	h.sampleCPU()
	h.wg.Add(2)
	go h.watchdog()
	go h.janitor()
	return h, nil
}

// Close unloads every plugin, waits (until ctx is done) for in-flight calls to finish and
// their runtimes to close, and stops the host's goroutines. Calls made after Close answer
// Error with [ErrClosed].
func (h *Host) Close(ctx context.Context) error {
	if !h.closed.CompareAndSwap(false, true) {
		return nil
	}
	// A Load still compiling sees closed when it swaps (under mu) and drains its own pool;
	// wait for them all before anything is closed.
	h.closeMu.Lock()
	h.mu.Lock()
	old := *h.plugins.Load()
	empty := map[string]*plugin{}
	h.plugins.Store(&empty)
	h.mu.Unlock()
	h.closeMu.Unlock()
	for _, pl := range old {
		pl.pool.drain()
	}
	var err error
	for h.liveRuntimes.Load() > 0 {
		select {
		case <-ctx.Done():
			err = fmt.Errorf("plugins: close: %w", ctx.Err())
		case <-time.After(time.Millisecond):
			continue
		}
		break
	}
	close(h.done)
	h.wg.Wait()
	if h.cache != nil {
		if cerr := h.cache.Close(context.Background()); cerr != nil && err == nil {
			err = cerr
		}
	}
	return err
}

// Load compiles, validates and warms pluginID's module. When pluginID is already loaded with
// the same sha256 and options, Load does nothing; otherwise the new version's pool is fully
// warmed before it replaces the old one (hot reload), whose pool then drains and closes. On
// error the previously loaded version keeps serving.
func (h *Host) Load(ctx context.Context, pluginID string, wasm []byte, opts ModuleOptions) error {
	if pluginID == "" {
		return errors.New("plugins: load: empty plugin id")
	}
	opts, err := h.normalize(opts)
	if err != nil {
		return fmt.Errorf("plugins: load %s: %w", pluginID, err)
	}
	sum := sha256.Sum256(wasm)
	sha := hex.EncodeToString(sum[:])

	// Close waits for the loads under way (closing the compilation cache under a compiling
	// load panics in wazero) and they give up when they see it (below, at the swap).
	h.closeMu.RLock()
	defer h.closeMu.RUnlock()
	defer h.lock("id\x00" + pluginID)()
	if h.closed.Load() {
		return ErrClosed
	}
	if old := h.lookup(pluginID); old != nil && old.sha == sha && old.opts == opts {
		return nil
	}
	// wazero shares a compiled module between runtimes through the compilation cache, and
	// two compilations of the same bytes at once race on it (seen under -race): modules of
	// different ids compile at once, the same module's twice do not. (Lock order: id, then
	// module; a module lock is never held while an id lock is taken.)
	defer h.lock("module\x00" + sha)()
	pl := &plugin{
		host:    h,
		id:      pluginID,
		sha:     sha,
		opts:    opts,
		budget:  int64(opts.Timeout),
		breaker: newBreaker(h.cfg.BreakerThreshold, h.cfg.BreakerBackoff),
	}
	pl.guestLogs.init(10, 20)
	pl.failLogs.init(2, 5)
	p, info, err := h.newPool(ctx, pl, wasm, opts.MemoryLimitBytes, opts.PoolSize, opts.Trusted)
	if err != nil {
		return fmt.Errorf("plugins: load %s: %w", pluginID, err)
	}
	pl.pool = p
	pl.info = info
	pl.info.SHA256 = sha

	h.mu.Lock()
	if h.closed.Load() {
		h.mu.Unlock()
		p.drain()
		return ErrClosed
	}
	cur := *h.plugins.Load()
	next := make(map[string]*plugin, len(cur)+1)
	for k, v := range cur {
		next[k] = v
	}
	old := cur[pluginID]
	next[pluginID] = pl
	h.plugins.Store(&next)
	h.mu.Unlock()
	if old != nil {
		old.pool.drain()
		h.log.Info("plugin reloaded", "plugin", pluginID, "sha256", sha, "previous", old.sha)
	} else {
		h.log.Debug("plugin loaded", "plugin", pluginID, "sha256", sha)
	}
	return nil
}

// Unload removes pluginID; its pool drains and closes. Chains that still name it answer 503.
func (h *Host) Unload(pluginID string) {
	defer h.lock("id\x00" + pluginID)()
	h.mu.Lock()
	cur := *h.plugins.Load()
	old, ok := cur[pluginID]
	if ok {
		next := make(map[string]*plugin, len(cur))
		for k, v := range cur {
			if k != pluginID {
				next[k] = v
			}
		}
		h.plugins.Store(&next)
	}
	h.mu.Unlock()
	if ok {
		old.pool.drain()
	}
}

// lock takes one of the locks of loading (by key: "id\x00<plugin id>" orders the loads
// and unloads of a plugin id, "module\x00<sha256>" the compilations of one module; different
// ids and modules load at the same time) and returns its unlock. A key's entry lives while a
// caller holds or waits for it, so the map does not grow with every plugin id and module
// version the host has seen.
func (h *Host) lock(key string) func() {
	h.loadMu.Lock()
	m := h.loading[key]
	if m == nil {
		m = new(keyedLock)
		h.loading[key] = m
	}
	m.refs++
	h.loadMu.Unlock()
	m.mu.Lock()
	return func() {
		m.mu.Unlock()
		h.loadMu.Lock()
		if m.refs--; m.refs == 0 {
			delete(h.loading, key)
		}
		h.loadMu.Unlock()
	}
}

// keyedLock is one lock of Host.loading; refs counts its holder and waiters (under loadMu).
type keyedLock struct {
	mu   sync.Mutex
	refs int
}

// Loaded reports the sha256 (hex) of the module loaded for pluginID.
func (h *Host) Loaded(pluginID string) (sha256 string, ok bool) {
	if pl := h.lookup(pluginID); pl != nil {
		return pl.sha, true
	}
	return "", false
}

// Info returns what validation learnt about pluginID's loaded module.
func (h *Host) Info(pluginID string) (Info, bool) {
	if pl := h.lookup(pluginID); pl != nil {
		return pl.info, true
	}
	return Info{}, false
}

func (h *Host) lookup(id string) *plugin {
	return (*h.plugins.Load())[id]
}

// Stats is a snapshot of the host's state, for metrics and leak tests.
type Stats struct {
	Runtimes  int64 // wazero runtimes not yet closed (one per loaded or draining module version)
	Instances int64 // live instances across all pools, including draining ones
	Plugins   []PluginStats
}

// PluginStats describes one loaded plugin.
type PluginStats struct {
	PluginID    string
	SHA256      string
	Instances   int // live instances of the current version
	Idle        int
	Calls       uint64
	Failures    uint64
	BreakerOpen bool
	// Durations is the histogram of call times (waiting for an instance
	// included), over DurationBuckets.
	Durations DurationHistogram
}

// Stats returns a snapshot of the host's counters.
func (h *Host) Stats() Stats {
	s := Stats{Runtimes: h.liveRuntimes.Load(), Instances: h.liveInstances.Load()}
	for id, pl := range *h.plugins.Load() {
		s.Plugins = append(s.Plugins, PluginStats{
			PluginID:    id,
			SHA256:      pl.sha,
			Instances:   int(pl.pool.live.Load()),
			Idle:        len(pl.pool.idle),
			Calls:       pl.calls.Load(),
			Failures:    pl.failures.Load(),
			BreakerOpen: pl.breaker.isOpen(time.Now()),
			Durations:   pl.durations.snapshot(),
		})
	}
	sort.Slice(s.Plugins, func(i, j int) bool { return s.Plugins[i].PluginID < s.Plugins[j].PluginID })
	return s
}

// nanotime is a monotonic clock in nanoseconds since the host started.
func (h *Host) nanotime() int64 { return int64(time.Since(h.epoch)) }

func (h *Host) addPool(p *pool) {
	h.mu.Lock()
	cur := *h.pools.Load()
	next := append(cur[:len(cur):len(cur)], p)
	h.pools.Store(&next)
	h.mu.Unlock()
}

func (h *Host) removePool(p *pool) {
	h.mu.Lock()
	cur := *h.pools.Load()
	next := make([]*pool, 0, len(cur))
	for _, q := range cur {
		if q != p {
			next = append(next, q)
		}
	}
	h.pools.Store(&next)
	h.mu.Unlock()
}

// janitor expires rate-limit counters.
func (h *Host) janitor() {
	defer h.wg.Done()
	t := time.NewTicker(10 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-h.done:
			return
		case now := <-t.C:
			h.limiter.sweep(now.UnixMilli())
		}
	}
}
