// Package plugins is the WebAssembly host for access-control plugins (ABI v1, package abi):
// it compiles, validates, pools and runs guests with wazero, and evaluates a share's policy
// chain on the request path.
//
// # API
//
//	h, err := plugins.NewHost(ctx, plugins.Config{CacheDir: dir, Logger: log})
//	err = h.Load(ctx, "builtin:ip-allow", wasm, plugins.ModuleOptions{})   // compile, validate, warm; hot reload
//	err = h.ValidateConfig(ctx, "builtin:ip-allow", []byte(`{"allow":["10.0.0.0/8"]}`))
//	d := h.Evaluate(ctx, chain, &plugins.Request{Method: "GET", Path: "/x", ClientIP: ip, Header: lookup})
//	switch d.Action { case plugins.Allow: ...; case plugins.Respond: ...; case plugins.Error: ... }
//
// Besides the API agreed for the edge and control plane, the package has: [Host.EvaluateInto]
// (Evaluate into a caller-owned Decision, reusing its slices: no allocation by the host when
// nothing is edited), [Host.Validate] (Validate with the host's compilation cache),
// [Host.Info], [Host.Stats] (for metrics and leak tests), Config fields AcquireTimeout,
// InitTimeout, ValidateConfigTimeout, MaxConcurrentCalls, RateLimitMaxKeys and OnFailure (the
// hook behind the plugin.failed webhook), [PluginError] with sentinel kinds, and helpers for
// the built-ins: [HashSharePassword], [VerifySharePassword], [SignLink],
// [SignLinkSignature]. Package builtin embeds the built-in modules and maps share fields to
// the built-in chain.
//
// # Design
//
// Runtimes. One wazero runtime per loaded module version (memory limits are per runtime),
// sharing one on-disk compilation cache; the runtime holds the "policy" host module
// (stack-based api.GoModuleFunc functions) and the host's own minimal WASI (abi.AllowedWASI,
// stateless). Imports and exports are checked against the ABI at upload (Validate) and at
// every Load.
//
// Pools. Instances are pooled per module version, not per config: the pool is pre-warmed with
// PoolWarm instances (default 2) at Load; a call that finds them all busy makes one more in the
// background, up to PoolSize (default GOMAXPROCS, at least 2), and takes whichever instance is
// free first; it waits up to AcquireTimeout for one, then answers 503. A request is pinned to one instance
// for its call; the config and request are pulled by the guest through the getters, and
// get_config_id (a keyed hash of plugin id and config) lets it cache parsed configs. A failed
// instance (error, trap, timeout, out of memory, ABI violation) is closed, never returned,
// and replaced in the background.
//
// Time budget. No context per call: one watchdog goroutine per host ticks every millisecond
// while calls are in flight (and parks otherwise) and closes the module of an instance whose
// call overran; wazero (WithCloseOnContextDone) then stops the guest at its next function
// entry or loop back-edge. A call counts as overrun only when both a virtual clock (advanced
// by the watchdog, at most two ticks per tick, so a stalled process is not charged to guests)
// and the process CPU clock say so: a goroutine descheduled while the machine is busy with
// other work is not a guest computing. Because guest code cannot be preempted by Go's
// scheduler, at most MaxConcurrentCalls (default GOMAXPROCS-1) guest calls run at once, so a P
// always remains for the watchdog and the rest of the process even if every running guest
// spins. The host's WASI never reads wazero's per-module state, which the watchdog's close
// releases concurrently. Trusted modules (ModuleOptions.Trusted: the built-ins) have no
// termination checks, so the watchdog is neither armed nor woken for them and they skip the
// execution slots; a call that overran its budget completes and is logged.
//
// Failures. Plugins fail closed: Error with 500, or 503 when no instance could be had, the
// plugin is not loaded or its breaker is open. ModuleOptions.FailOpen skips a failing plugin
// instead (Config.FailOpenUnloaded, one that is not loaded). Each plugin version has a
// circuit breaker: BreakerThreshold failures within a minute open it for BreakerBackoff, then
// one trial call; a failed trial doubles the backoff (up to 10 minutes); a reload resets it.
// Failures are logged with the plugin id (rate-limited) and reported through
// Config.OnFailure at most every 10 s per plugin.
//
// Hot reload. Load of another module (or other options) for a loaded id builds and warms the
// complete new pool first, then swaps it in atomically; the old pool drains (idle instances
// close at once, busy ones when their call returns) and its runtime closes with its last
// instance. A failed Load leaves the old version serving.
//
// Shared services. rate_limit counters are shared by every instance of the host, scoped by
// plugin id and window, stored under 64-bit keyed hashes in 64 locked shards, bounded
// (RateLimitMaxKeys) and expired by a janitor. verify_signature caches parsed PEM keys.
// Guest logs (the log import and stdout/stderr) go to Config.Logger, rate-limited per plugin.
package plugins
