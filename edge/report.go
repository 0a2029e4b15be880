package edge

import (
	"context"
	"errors"
	"math/rand/v2"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/privateconnect/pc/edge/configsync"
	"github.com/privateconnect/pc/internal/config"
	"github.com/privateconnect/pc/internal/tunnel"
)

// Bounds of the report buffers: the request path never blocks on them.
const (
	maxPendingLogs   = 10000 // at least; twice the access log rate when that is more
	maxPendingEvents = 10000
	maxPendingStats  = 200000 // share-minutes with requests not yet reported
	maxReportItems   = 1000   // events, command results and share-minutes in one report
	// maxReportLogs bounds the access logs of one report: at most ≈ 2.8 KB
	// each (path and user agent cut to config.MaxLogPath and
	// MaxLogUserAgent), so a report stays under the control plane's 16 MiB
	// body limit whatever the access log rate.
	maxReportLogs = 5000
	// maxReportResultBytes bounds the command results of one report (each
	// up to 1 MiB; one goes whatever its size): with the logs, a report
	// stays under the control plane's 16 MiB body limit.
	maxReportResultBytes = 1 << 20
)

// reporter batches agent events and access logs to the control plane.
type reporter struct {
	s       *Server
	mu      sync.Mutex
	events  []config.AgentEvent
	logs    []config.AccessLog
	spare   []config.AccessLog // the last report's logs, emptied, for the next one
	results []config.CommandDone
	// stats counts every request, logged or not; a report's share uses
	// (accessCount) are derived from the share-minutes it carries.
	stats   map[statsKey]*config.ShareStats
	sample  sampler
	start   time.Time // the sampler's seconds count from it (monotonic)
	maxLogs int
	// maxStats bounds stats (maxPendingStats; tests lower it).
	maxStats int
	fails    map[[2]string]*config.PluginFailure
	dropped  atomic.Int64
	kick     chan struct{}
	// stopping marks the reports sent once the edge has drained
	// (config.Report.Stopping): the control plane takes it offline at once.
	stopping atomic.Bool
	// unacked is the last report when the control plane did not answer
	// it: sent again, with its id and what it counts, before anything
	// newer, so that the control plane counts it once (config.Report.ID).
	// unackedSince is when it was first sent. Only flush touches them
	// (one at a time).
	unacked      *config.Report
	unackedSince time.Time
	lastErr      error // of the last report sent, nil when taken
	// lastFor bounds the reports sent as the edge stops (last); tests
	// shorten it.
	lastFor time.Duration
}

// retryFor is how long a report the control plane does not answer is sent
// again, the same, before its counts go back to the pending ones under a
// new id (requeue): long enough for a control plane's restart or upgrade,
// short enough that a report it can never take does not hold the edge's
// reports back for long.
const retryFor = 5 * time.Minute

func newReporter(s *Server) *reporter {
	rate := max(s.cfg.AccessLogRate, 0)
	return &reporter{s: s, kick: make(chan struct{}, 1), sample: sampler{rate: int64(rate)}, start: time.Now(),
		maxLogs: max(maxPendingLogs, 2*rate), maxStats: maxPendingStats, lastFor: 10 * time.Second}
}

type statsKey struct {
	share  string
	minute int64
}

// sampler chooses the access logs an edge sends: all of them while it
// serves fewer than rate requests a second, then a uniform sample of about
// rate a second (each kept with probability rate/n, n the requests of the
// busier of this second and the last).
type sampler struct {
	rate    int64 // logs per second; 0 keeps none
	sec     int64 // the current second
	n, last int64 // requests in it and in the second before
}

// keep counts a request of second now and tells whether its log is kept.
// Any other second than the current one starts a new second, an earlier
// one too (a clock stepped back): otherwise every request until the clock
// caught up would count in one second, and almost none would be kept.
func (s *sampler) keep(now int64) bool {
	if now != s.sec {
		s.last = 0
		if now == s.sec+1 {
			s.last = s.n
		}
		s.sec, s.n = now, 0
	}
	s.n++
	n := max(s.n, s.last)
	return n <= s.rate || rand.Int64N(n) < s.rate
}

// event records an agent connection event and asks for a prompt report.
func (r *reporter) event(e config.AgentEvent) {
	r.mu.Lock()
	if len(r.events) < maxPendingEvents {
		r.events = append(r.events, e)
	} else {
		r.dropped.Add(1)
	}
	r.mu.Unlock()
	select {
	case r.kick <- struct{}{}:
	default:
	}
}

// pluginFailed aggregates a plugin failure per plugin and share until the
// next report (webhook plugin.failed).
func (r *reporter) pluginFailed(pluginID, shareID string, err error) {
	msg := "plugin failed"
	if err != nil {
		msg = err.Error()
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.fails == nil {
		r.fails = map[[2]string]*config.PluginFailure{}
	}
	k := [2]string{pluginID, shareID}
	f := r.fails[k]
	if f == nil {
		if len(r.fails) >= 1000 {
			return
		}
		f = &config.PluginFailure{PluginID: pluginID, ShareID: shareID}
		r.fails[k] = f
	}
	f.Count++
	f.Error = msg
	f.At = time.Now().UTC()
}

// commandDone queues a command result and asks for a prompt report.
func (r *reporter) commandDone(c config.CommandDone) {
	r.mu.Lock()
	if len(r.results) < maxPendingEvents {
		r.results = append(r.results, c)
	}
	r.mu.Unlock()
	select {
	case r.kick <- struct{}{}:
	default:
	}
}

// access counts one request and queues its access log, if the sample takes
// it; it never blocks.
func (r *reporter) access(a config.AccessLog) {
	now := int64(time.Since(r.start) / time.Second) // monotonic: a clock step is no burst
	r.mu.Lock()
	if st := r.shareStats(a.ShareID, config.Minute(a.At), 1); st != nil {
		st.Add(&a)
	}
	keep := r.sample.keep(now)
	if keep && len(r.logs) < r.maxLogs {
		r.logs = append(r.logs, a)
	} else if keep {
		r.dropped.Add(1)
		r.s.metrics.dropped.Inc()
	}
	r.mu.Unlock()
	if !keep {
		r.s.metrics.sampledOut.Inc()
	}
}

// shareStats is the pending statistics of a share's minute, nil when
// maxPendingStats share-minutes are already waiting (the n requests the
// caller would add are then counted as left out); r.mu is held.
func (r *reporter) shareStats(share string, minute int64, n int64) *config.ShareStats {
	k := statsKey{share, minute}
	st := r.stats[k]
	if st == nil {
		if len(r.stats) >= r.maxStats {
			r.s.metrics.statsDropped.Add(float64(n))
			return nil
		}
		if r.stats == nil {
			r.stats = map[statsKey]*config.ShareStats{}
		}
		st = &config.ShareStats{ShareID: share, Minute: minute}
		r.stats[k] = st
	}
	return st
}

func (r *reporter) run(ctx context.Context) {
	t := time.NewTicker(r.s.cfg.ReportInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			// Shares expire with time, not with a config change: their
			// open streams end on this tick.
			if r.s.proxy != nil {
				r.s.proxy.CutInactive(r.s.Table())
			}
			r.s.tcp.retry()
			if r.s.registry != nil {
				r.s.registry.CloseExpired(r.s.Table(), time.Now())
			}
		case <-r.kick:
		}
		r.flush(ctx)
	}
}

// last sends what is pending as the edge stops: the backlog first, in as
// many reports as it takes (each carries at most maxReportItems events,
// command results, share uses and share-minutes) while the control plane
// takes them, for lastFor (10 s) at most, a report not answered by a busy
// control plane sent again meanwhile; then the report that says the edge
// stops.
func (r *reporter) last() {
	ctx, cancel := context.WithTimeout(context.Background(), r.lastFor)
	for ctx.Err() == nil {
		if r.flush(ctx) {
			continue
		}
		if r.unacked == nil || failureOf(r.lastErr) != failBusy {
			break
		}
		select { // not answered by a busy control plane: again, until the deadline
		case <-ctx.Done():
		case <-time.After(200 * time.Millisecond):
		}
	}
	cancel()
	r.stopping.Store(true)
	r.flush(context.Background())
}

// flush sends what is pending. A report the control plane does not answer
// is sent again, the same (id, content, agents), until it does, newer
// events, logs and statistics waiting (bounded) behind it; after retryFor,
// or when the control plane refuses it as too big, its counts go back to
// the pending ones (requeue). It reports whether the control plane took
// the report and more is pending (a backlog beyond one report).
func (r *reporter) flush(ctx context.Context) (more bool) {
	rep := r.unacked
	// more: a backlog beyond this report, or (this report sent again)
	// whatever waited behind it.
	more = rep != nil
	if rep == nil {
		rep, more = r.take()
		r.unackedSince = time.Now()
	}
	// What describes the edge process is sent fresh each time; what the
	// report counts, and the agents its events lead to, are not.
	t := r.s.sync.Table()
	rep.EdgeVersion, rep.Instance, rep.ConfigEpoch, rep.ConfigVersion = Version, r.s.sync.Instance(), t.Epoch, t.Version
	rep.Stopping = r.stopping.Load()
	err := r.s.sync.Report(ctx, rep)
	r.unacked, r.lastErr = nil, err
	if err != nil {
		r.s.log.Debug("report failed", "err", err)
		switch failureOf(err) {
		case failTooBig:
			if len(rep.AccessLogs) == 0 && len(rep.CommandResult) > 0 {
				// Only the results (at most maxReportResultBytes) make it
				// too big for something in front of the control plane:
				// sending them again would be refused again.
				r.s.log.Warn("edge report refused as too big: its command results are dropped", "commandResults", len(rep.CommandResult))
				rep.CommandResult = nil
			}
			r.requeue(rep, "the control plane refused it as too big")
		case failRefused:
			r.drop(rep, err)
		default:
			if time.Since(r.unackedSince) < retryFor {
				r.unacked = rep
				return false
			}
			r.requeue(rep, "not answered for "+retryFor.String())
		}
		more = false
	}
	// The report is sent (or given up): its log buffer, grown to the
	// last second's traffic, takes the next second's logs instead of a
	// new slice growing again from nothing.
	logs := rep.AccessLogs
	clear(logs[:cap(logs)]) // a split's rest was copied out
	r.mu.Lock()
	if r.logs == nil {
		r.logs = logs[:0]
	} else {
		r.spare = logs[:0]
	}
	r.mu.Unlock()
	if more {
		select { // the rest of the backlog, at once
		case r.kick <- struct{}{}:
		default:
		}
	}
	return more
}

// take moves what is pending into a new report: at most maxReportLogs
// access logs and maxReportItems events, command results and share-minutes,
// with the agents connected now (the list the events lead to). more tells
// that some are left for the next report (a backlog). What arrives while
// the report is sent waits for the next tick: a busy edge reports once a
// second, not in a loop.
func (r *reporter) take() (rep *config.Report, more bool) {
	agents, conns := r.s.registry.Connected(), r.s.conns.list()
	r.mu.Lock()
	defer r.mu.Unlock()
	events, logs, results := r.events, r.logs, r.results
	r.events, r.logs, r.results = nil, r.spare, nil
	r.spare = nil
	split := len(logs) > maxReportLogs
	if split { // the rest goes in the next report, sent at once
		r.logs = append(r.logs, logs[maxReportLogs:]...)
		logs = logs[:maxReportLogs]
	}
	// A backlog (thousands of agents reconnecting at once) goes out in
	// reports of at most maxReportItems events, results and share uses,
	// sent one after the other.
	if len(events) > maxReportItems {
		events, r.events = events[:maxReportItems:maxReportItems], events[maxReportItems:]
	}
	n, size := 0, 0
	for n < len(results) && n < maxReportItems {
		if size += len(results[n].Result) + len(results[n].Error); size > maxReportResultBytes && n > 0 {
			break
		}
		n++
	}
	if n < len(results) {
		results, r.results = results[:n:n], results[n:]
	}
	var fails []config.PluginFailure
	for _, f := range r.fails {
		fails = append(fails, *f)
	}
	r.fails = nil
	stats := []config.ShareStats{} // [], not null: this edge counts requests
	for k, st := range r.stats {
		if len(stats) == maxReportItems {
			break
		}
		stats = append(stats, *st)
		delete(r.stats, k)
	}
	more = split || len(r.events) > 0 || len(r.results) > 0 || len(r.stats) > 0
	return &config.Report{ID: config.NewReportID(), Agents: agents, Connections: conns, Events: events, AccessLogs: logs,
		Dropped: r.dropped.Swap(0), CommandResult: results, PluginFailures: fails, Uses: usesOf(stats), Stats: stats}, more
}

// requeue gives a report up but what it counts: its events, command
// results, plugin failures, statistics and dropped count go back to the
// pending ones (bounded), for a new report with a new id; its access logs,
// the bulk of a report, are dropped (counted). Used when sending it again
// cannot work (too big) or has not for retryFor.
func (r *reporter) requeue(rep *config.Report, why string) {
	r.s.log.Warn("edge report given up: its counts go in the next report, its access logs are dropped", "why", why,
		"logs", len(rep.AccessLogs))
	r.mu.Lock()
	if len(r.events)+len(rep.Events) <= maxPendingEvents {
		r.events = append(rep.Events, r.events...)
	}
	if len(r.results)+len(rep.CommandResult) <= maxPendingEvents {
		r.results = append(rep.CommandResult, r.results...)
	}
	for _, f := range rep.PluginFailures {
		if r.fails == nil {
			r.fails = map[[2]string]*config.PluginFailure{}
		}
		if g := r.fails[[2]string{f.PluginID, f.ShareID}]; g != nil {
			g.Count += f.Count // g is the later: its error and time stay
		} else {
			r.fails[[2]string{f.PluginID, f.ShareID}] = &f
		}
	}
	for i := range rep.Stats {
		if st := r.shareStats(rep.Stats[i].ShareID, rep.Stats[i].Minute, rep.Stats[i].Allowed+rep.Stats[i].Denied); st != nil {
			st.Merge(&rep.Stats[i])
		}
	}
	r.mu.Unlock()
	r.dropLogs(rep)
}

// dropLogs counts a given-up report's access logs as dropped, and puts its
// dropped count back for the next report.
func (r *reporter) dropLogs(rep *config.Report) {
	r.dropped.Add(rep.Dropped + int64(len(rep.AccessLogs)))
	r.s.metrics.dropped.Add(float64(len(rep.AccessLogs)))
}

// drop gives a report up altogether (the control plane refused what it
// holds): everything it counts is lost, and counted.
func (r *reporter) drop(rep *config.Report, err error) {
	r.s.log.Warn("edge report refused by the control plane: dropped", "err", err, "logs", len(rep.AccessLogs),
		"events", len(rep.Events), "commandResults", len(rep.CommandResult), "shareMinutes", len(rep.Stats))
	r.dropLogs(rep)
	for i := range rep.Stats {
		r.s.metrics.statsDropped.Add(float64(rep.Stats[i].Allowed + rep.Stats[i].Denied))
	}
}

// Kinds of a failed report (failureOf).
const (
	failOther   = iota // unreachable, TLS, 401, a proxy's 404: worth a retry, not as the edge stops
	failBusy           // 5xx, 408, 429, a timeout: the control plane is there; worth a retry at any time
	failTooBig         // 413: its counts alone fit in a report
	failRefused        // 400, 422: the control plane will not take what it holds
)

// failureOf sorts a failed report's error: what sending the same report
// again can change (failOther, failBusy) from what it cannot.
func failureOf(err error) int {
	var se *configsync.StatusError
	if errors.As(err, &se) {
		switch code := se.Code; {
		case code == http.StatusRequestEntityTooLarge:
			return failTooBig
		case code == http.StatusBadRequest || code == http.StatusUnprocessableEntity:
			return failRefused
		case code >= 500 || code == http.StatusRequestTimeout || code == http.StatusTooManyRequests:
			return failBusy
		}
		return failOther
	}
	if tunnel.IsTimeout(err) { // the client's deadline, a network timeout
		return failBusy
	}
	return failOther
}

// usesOf sums a report's share-minutes into its share uses: the allowed
// requests of each share and the latest of them.
func usesOf(stats []config.ShareStats) []config.ShareUse {
	uses := []config.ShareUse{} // [], not null: this edge counts uses
	at := map[string]int{}      // share → index in uses
	for i := range stats {
		st := &stats[i]
		if st.Allowed == 0 {
			continue
		}
		j, ok := at[st.ShareID]
		if !ok {
			j = len(uses)
			at[st.ShareID] = j
			uses = append(uses, config.ShareUse{ShareID: st.ShareID})
		}
		uses[j].Allowed += st.Allowed
		if st.LastAllowed.After(uses[j].Last) {
			uses[j].Last = st.LastAllowed
		}
	}
	return uses
}
