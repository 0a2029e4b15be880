package plugins

import (
	"context"
	"fmt"
	"hash/maphash"
	"strconv"
	"strings"
	"time"

	"github.com/privateconnect/pc/plugins/abi"
)

// Request is what a plugin sees of a visitor's request. The host copies every value into guest
// memory; it never hands the caller's buffers to a guest, and keeps no reference after the
// call.
type Request struct {
	Method   string
	Path     string // as the service sees it (after the share token), without query
	Query    string // raw, without "?"
	Host     string
	ClientIP string // text form, IPv4 or IPv6
	ShareID  string
	// Tenant is the share's workspace: the rate_limit store accounts its
	// counters to it and the plugin, so that one workspace's keys never
	// evict another's (the built-ins are one plugin for all).
	Tenant string
	// Header looks a request header up, case-insensitively; several values joined by ", ".
	// Nil means no headers. name is valid during the call only (it is a view of the guest's
	// memory): Header must not keep it.
	Header func(name string) (string, bool)
}

// Attachment is one plugin in a share's chain, with this share's config (JSON; empty means
// "{}").
type Attachment struct {
	PluginID string
	Config   []byte
	// StepIDs, for a module that runs several policies in one call (sdk/plugin.HandleSteps,
	// such as the built-in bundle), names the plugin each step stands for: the step that
	// answers RESPOND or ERROR reports its index, and the Decision (PluginID, Err) names
	// StepIDs[index] instead of PluginID. A step's ERROR does not count against the module's
	// circuit breaker (it is that step's config, not the instance, that failed); traps and
	// timeouts do.
	StepIDs []string
}

// Action is what the edge does with a request.
type Action int

const (
	// Allow forwards the request with the Decision's header edits.
	Allow Action = iota
	// Respond answers the visitor with Status, Body and SetResponseHeaders.
	Respond
	// Error answers the visitor with Status (500, or 503 when no instance could be had, the
	// plugin is not loaded or its circuit breaker is open) and a generic Body; Err says why.
	Error
)

func (a Action) String() string {
	switch a {
	case Allow:
		return "allow"
	case Respond:
		return "respond"
	case Error:
		return "error"
	}
	return fmt.Sprintf("Action(%d)", int(a))
}

// Decision is the outcome of a policy chain.
type Decision struct {
	Action Action
	Status int    // Respond and Error
	Body   []byte // Respond (the guest's body) and Error (a generic text)
	// Header edits accumulated over the chain (see package abi for their normalisation: the
	// lists never name the same header twice, and a removed header is not also set).
	SetRequestHeaders    [][2]string
	RemoveRequestHeaders []string
	SetResponseHeaders   [][2]string // applied to the visitor's response for Allow and Respond
	PluginID             string      // the plugin that decided Respond or Error
	Err                  error       // Error: a *PluginError for logs, never for visitors
}

var (
	bodyInternalError = []byte("Internal Server Error\n")
	bodyUnavailable   = []byte("Service Unavailable\n")
)

func (d *Decision) reset() {
	d.Action = Allow
	d.Status = 0
	d.Body = d.Body[:0]
	d.SetRequestHeaders = d.SetRequestHeaders[:0]
	d.RemoveRequestHeaders = d.RemoveRequestHeaders[:0]
	d.SetResponseHeaders = d.SetResponseHeaders[:0]
	d.PluginID = ""
	d.Err = nil
}

func (d *Decision) fail(status int, err *PluginError) {
	d.Action = Error
	d.Status = status
	if status == 503 {
		d.Body = append(d.Body[:0], bodyUnavailable...)
	} else {
		d.Body = append(d.Body[:0], bodyInternalError...)
	}
	d.SetRequestHeaders = d.SetRequestHeaders[:0]
	d.RemoveRequestHeaders = d.RemoveRequestHeaders[:0]
	d.SetResponseHeaders = d.SetResponseHeaders[:0]
	d.PluginID = err.PluginID
	d.Err = err
}

// Evaluate runs chain in order for req. It stops at the first plugin that answers RESPOND or
// fails (a failOpen plugin that fails is skipped); header edits accumulate. It never panics.
func (h *Host) Evaluate(ctx context.Context, chain []Attachment, req *Request) Decision {
	var d Decision
	h.EvaluateInto(ctx, chain, req, &d)
	return d
}

// EvaluateInto is Evaluate writing into d, reusing the capacity of d's slices: a caller that
// keeps one Decision per worker evaluates without allocating when no header is edited.
func (h *Host) EvaluateInto(ctx context.Context, chain []Attachment, req *Request, d *Decision) {
	d.reset()
	defer func() {
		if r := recover(); r != nil {
			d.fail(500, &PluginError{Kind: ErrTrap, Detail: fmt.Sprint("host panic: ", r)})
		}
	}()
	if req == nil {
		req = emptyRequest
	}
	if h.closed.Load() && len(chain) > 0 {
		d.fail(503, &PluginError{PluginID: chain[0].PluginID, Kind: ErrClosed})
		return
	}
	for i := range chain {
		a := &chain[i]
		if ctx.Err() != nil {
			d.fail(503, &PluginError{PluginID: a.PluginID, Kind: ErrCanceled})
			return
		}
		pl := h.lookup(a.PluginID)
		if pl == nil {
			if f := h.cfg.FailOpenUnloaded; f != nil && f(a.PluginID) {
				continue
			}
			d.fail(503, &PluginError{PluginID: a.PluginID, Kind: ErrNotLoaded})
			return
		}
		t0 := time.Now()
		goOn := pl.run(a, req, d)
		took := time.Since(t0)
		pl.durations.observe(took)
		if pl.pool.trusted && int64(took) > pl.budget && pl.failLogs.allow() {
			// Trusted guests cannot be stopped: the call completed, its result stands.
			h.log.Warn("trusted plugin overran its time budget", "plugin", pl.id, "budget", time.Duration(pl.budget), "took", took)
		}
		if !goOn {
			return
		}
	}
	d.Action = Allow
}

// configID is get_config_id: a keyed hash of (plugin id, config).
func (h *Host) configID(pluginID string, cfg []byte) uint64 {
	if len(cfg) == 0 {
		cfg = emptyConfig
	}
	var m maphash.Hash
	m.SetSeed(h.seed)
	m.WriteString(pluginID)
	m.WriteByte(0)
	m.Write(cfg)
	return m.Sum64()
}

// run calls the plugin for one request and reports whether the chain goes on.
func (pl *plugin) run(a *Attachment, req *Request, d *Decision) bool {
	config := a.Config
	h := pl.host
	pl.calls.Add(1)
	if !pl.breaker.allow() {
		if pl.opts.FailOpen {
			return true
		}
		d.fail(503, &PluginError{PluginID: pl.id, Kind: ErrBreakerOpen})
		return false
	}
	p := pl.pool
	in, err := p.acquire()
	if err != nil {
		pl.breaker.abort()
		// A reload may have swapped the pool while we waited: try the current version once.
		if cur := h.lookup(pl.id); cur != nil && cur != pl && !cur.pool.draining.Load() {
			return cur.run(a, req, d)
		}
		if pl.opts.FailOpen {
			return true
		}
		d.fail(503, &PluginError{PluginID: pl.id, Kind: ErrNoInstance})
		return false
	}
	in.begin(req, config, h.configID(pl.id, config))
	err = in.call(in.handle, pl.budget, true)
	if err == ErrNoInstance {
		// No execution slot in time: the guest never ran, the instance is
		// intact. Busy, not broken: 503 without a breaker strike.
		p.release(in)
		pl.breaker.abort()
		if pl.opts.FailOpen {
			return true
		}
		d.fail(503, &PluginError{PluginID: pl.id, Kind: ErrNoInstance})
		return false
	}
	code := int32(in.stack[0])
	if err == nil && code != abi.DecisionAllow && code != abi.DecisionRespond {
		detail := string(in.errMsg)
		id, strike := pl.id, true
		if len(a.StepIDs) > 0 {
			id, detail = a.decider(detail, pl.id)
			strike = false
		}
		if detail == "" {
			detail = fmt.Sprintf("handle_request returned %d", code)
		}
		return pl.failed(in, d, &PluginError{PluginID: id, Kind: ErrGuestError, Detail: detail}, strike)
	}
	if err == nil && code == abi.DecisionRespond {
		switch {
		case !in.responded:
			err = errNoRespond
		case in.status < abi.MinFinalStatus:
			// A 1xx written as the answer leaves the visitor waiting for a
			// final response that never comes: fail closed instead.
			err = fmt.Errorf("%w: %d", errInterim, in.status)
		}
	}
	if err != nil {
		return pl.failed(in, d, &PluginError{PluginID: pl.id, Kind: in.classify(err), Detail: describe(err, in)}, true)
	}
	d.merge(in.edits)
	if code == abi.DecisionRespond {
		d.Action = Respond
		d.Status = in.status
		d.Body = append(d.Body[:0], in.body...)
		d.PluginID = pl.id
		if len(a.StepIDs) > 0 {
			d.PluginID, _ = a.decider(string(in.errMsg), pl.id)
		}
	}
	p.release(in)
	pl.breaker.success()
	return code == abi.DecisionAllow
}

// decider reads the "step <i>[: reason]" a steps module set (sdk/plugin.StepTag) and returns
// the plugin id of step i and the reason; fallback when the tag is missing or out of range.
func (a *Attachment) decider(msg, fallback string) (id, reason string) {
	rest, ok := strings.CutPrefix(msg, stepTag)
	if !ok {
		return fallback, msg
	}
	num, reason, _ := strings.Cut(rest, ": ")
	i, err := strconv.Atoi(num)
	if err != nil || i < 0 || i >= len(a.StepIDs) {
		return fallback, msg
	}
	return a.StepIDs[i], reason
}

// stepTag is sdk/plugin.StepTag (the host does not import the SDK).
const stepTag = "step "

// failed discards the instance, counts, logs and reports the failure, and fills d unless the
// plugin fails open; strike says whether the failure counts against the circuit breaker.
func (pl *plugin) failed(in *instance, d *Decision, perr *PluginError, strike bool) bool {
	h := pl.host
	pl.failures.Add(1)
	pl.pool.discard(in, true)
	tripped := false
	if strike {
		tripped = pl.breaker.failure(time.Now())
	} else {
		pl.breaker.abort()
	}
	if pl.failLogs.allow() {
		h.log.Warn("plugin call failed", "plugin", pl.id, "err", perr.Error(), "failOpen", pl.opts.FailOpen,
			"dropped", pl.failLogs.takeDropped())
	}
	if tripped {
		h.log.Error("plugin circuit breaker open", "plugin", pl.id, "threshold", h.cfg.BreakerThreshold)
	}
	if cb := h.cfg.OnFailure; cb != nil {
		now := h.nanotime()
		last := pl.lastNotify.Load()
		if (last == 0 || now-last >= int64(10*time.Second)) && pl.lastNotify.CompareAndSwap(last, now) {
			go cb(pl.id, perr)
		}
	}
	if pl.opts.FailOpen {
		return true
	}
	d.fail(500, perr)
	return false
}

// merge applies one call's header edits to the chain's accumulated edits.
func (d *Decision) merge(edits []headerEdit) {
	for _, e := range edits {
		switch e.kind {
		case editSetRequest:
			d.RemoveRequestHeaders = removeName(d.RemoveRequestHeaders, e.name)
			d.SetRequestHeaders = setPair(d.SetRequestHeaders, e.name, e.value)
		case editRemoveRequest:
			d.SetRequestHeaders = removePair(d.SetRequestHeaders, e.name)
			if !containsName(d.RemoveRequestHeaders, e.name) {
				d.RemoveRequestHeaders = append(d.RemoveRequestHeaders, e.name)
			}
		case editSetResponse:
			d.SetResponseHeaders = setPair(d.SetResponseHeaders, e.name, e.value)
		}
	}
}

func setPair(l [][2]string, name, value string) [][2]string {
	for i := range l {
		if strings.EqualFold(l[i][0], name) {
			l[i] = [2]string{name, value}
			return l
		}
	}
	return append(l, [2]string{name, value})
}

func removePair(l [][2]string, name string) [][2]string {
	out := l[:0]
	for _, p := range l {
		if !strings.EqualFold(p[0], name) {
			out = append(out, p)
		}
	}
	return out
}

func removeName(l []string, name string) []string {
	out := l[:0]
	for _, n := range l {
		if !strings.EqualFold(n, name) {
			out = append(out, n)
		}
	}
	return out
}

func containsName(l []string, name string) bool {
	for _, n := range l {
		if strings.EqualFold(n, name) {
			return true
		}
	}
	return false
}
