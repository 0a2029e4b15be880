package push

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"time"

	"github.com/google/uuid"

	"github.com/privateconnect/pc/control/store"
	"github.com/privateconnect/pc/internal/config"
)

// ReportHooks receive the parts of edge reports that other subsystems own.
// Each is optional and is called after the report is applied.
type ReportHooks struct {
	// AccessLogs receives each report's access logs (share logs and stats);
	// a report an edge sends again (its answer lost) hands them again.
	AccessLogs func(edgeID string, logs []config.AccessLog)
	// AgentEvent is called for every stored agent connection event, after
	// the report's transaction committed.
	AgentEvent func(ev store.AuditEvent)
	// AgentEventsTx is called with the agent connection events stored by a
	// transaction, inside it (webhooks: agent.connected /
	// agent.disconnected are enqueued in it); an error aborts the report.
	// A report's events are stored in chunks, one call per chunk.
	AgentEventsTx func(tx store.Tx, evs []store.AuditEvent) error
	// CommandDone is called for every command a report completed.
	CommandDone func(cmd store.Command)
	// Repeated is called for every part of a report skipped because an
	// earlier sending of it was applied (its answer was lost).
	Repeated func()
}

// Report applies an edge report: the edge's liveness and applied version,
// agent connection events (audit CONNECTED/DISCONNECTED/REJECTED/IP_CHANGED,
// the agent's lastSeenAt/lastSeenIp), share access counters and command
// results. Events for unknown agents are ignored.
func (h *Hub) Report(ctx context.Context, edgeID string, r *config.Report, hooks ReportHooks) error {
	// A replaced process draining (config.MsgReplaced) still reports its
	// access logs and uses, but its agents are not the edge's.
	appeared, gone, current := h.Presence.Report(edgeID, r)
	events := r.Events
	if !current {
		events = nil
	}
	// An agent that appeared or vanished without an explicit event (a report
	// was lost) still gets a trace in its log.
	seen := map[string]bool{}
	for _, ev := range events {
		seen[ev.AgentID] = true
	}
	// The API gives times to the millisecond (edges send theirs to the
	// nanosecond).
	now := time.Now().UTC().Truncate(time.Millisecond)
	var traces []config.AgentEvent // not the edge's: no part of its report
	for _, a := range appeared {
		if !seen[a] {
			traces = append(traces, config.AgentEvent{AgentID: a, Event: config.EventConnected, At: now})
		}
	}
	for _, a := range gone {
		if !seen[a] {
			traces = append(traces, config.AgentEvent{AgentID: a, Event: config.EventDisconnected, At: now})
		}
	}
	counts := map[string]*shareCount{}
	count := func(share string, n int64, at time.Time) {
		if n <= 0 {
			return
		}
		c := counts[share]
		if c == nil {
			c = &shareCount{}
			counts[share] = c
		}
		c.n += n
		at = at.UTC().Truncate(time.Millisecond)
		if at.After(c.last) {
			c.last = at
		}
	}
	if r.Uses != nil {
		// Every allowed request, logged or not (the logs are bounded).
		for _, u := range r.Uses {
			count(u.ShareID, u.Allowed, u.Last)
		}
	} else {
		for _, l := range r.AccessLogs { // an edge that does not send uses
			if l.Decision == "allowed" {
				count(l.ShareID, 1, l.At)
			}
		}
	}
	// Each part is stored in transactions of at most reportChunk items:
	// Badger bounds a transaction's size, and a burst of agent events (an
	// edge whose thousands of agents reconnect) must not fail every report.
	// A report that fails part-way has its earlier chunks committed; the
	// edge sends it again with the same id, and each chunk is applied
	// once (store.ClaimReportPart).
	once := NewReportOnce(edgeID, r.ID, hooks.Repeated)
	applyEvents := func(tx store.Tx, chunk []config.AgentEvent) ([]store.AuditEvent, error) {
		return applyAgentEvents(tx, edgeID, chunk, now, hooks)
	}
	stored, err := inChunks(ctx, h.kv, once.part("events"), events, applyEvents)
	if err == nil {
		var more []store.AuditEvent
		more, err = inChunks(ctx, h.kv, ReportOnce{}.part(""), traces, applyEvents)
		stored = append(stored, more...)
	}
	var usedUp []Ref
	var done []store.Command
	if err == nil {
		usedUp, err = inChunks(ctx, h.kv, once.part("uses"), slices.Sorted(maps.Keys(counts)), func(tx store.Tx, chunk []string) ([]Ref, error) {
			return h.countAccess(tx, chunk, counts)
		})
	}
	if err == nil {
		done, err = inChunks(ctx, h.kv, once.part("results").alone(), r.CommandResult, func(tx store.Tx, chunk []config.CommandDone) ([]store.Command, error) {
			return applyCommandResults(tx, chunk, now)
		})
	}
	// What committed is announced, even when a later chunk failed.
	// A share whose uses ran out on the edges' count goes out used up to
	// every edge: each stops serving it though it counted fewer uses itself.
	if perr := h.Publish(ctx, usedUp...); perr != nil {
		h.log.Warn("used-up shares not published", "err", perr)
	}
	if hooks.AgentEvent != nil {
		for _, ev := range stored {
			hooks.AgentEvent(ev)
		}
	}
	if hooks.CommandDone != nil {
		for _, c := range done {
			hooks.CommandDone(c)
		}
	}
	if err != nil {
		return fmt.Errorf("push: report: %w", err)
	}
	if hooks.AccessLogs != nil && len(r.AccessLogs) > 0 {
		hooks.AccessLogs(edgeID, r.AccessLogs)
	}
	return nil
}

// reportChunk is the most agent events, shares or command results of a
// report stored in one transaction.
const reportChunk = 200

// ReportOnce claims the parts of one edge report (config.Report.ID) in the
// transactions that apply them, so that a report sent again is applied
// once: a part an earlier sending committed is skipped. Without an id every
// part is applied.
type ReportOnce struct {
	edge, id string
	repeated func()
}

// NewReportOnce is the claims of edge's report id; repeated (optional) is
// called for every part skipped.
func NewReportOnce(edgeID, reportID string, repeated func()) ReportOnce {
	return ReportOnce{edge: edgeID, id: reportID, repeated: repeated}
}

// Identified reports whether the report has an id: sending it again is
// then safe.
func (o ReportOnce) Identified() bool { return o.id != "" }

// Do applies one part of the report in one transaction with its claim
// (store.ClaimReportPart): apply (nil: nothing but the claim) runs only
// when no earlier sending applied the part. It reports whether apply ran
// and committed; a part skipped is counted (repeated) once committed.
func (o ReportOnce) Do(ctx context.Context, kv store.KV, part string, apply func(tx store.Tx) error) (applied bool, err error) {
	err = kv.Update(ctx, func(tx store.Tx) error {
		first, err := store.ClaimReportPart(tx, o.edge, o.id, part)
		if applied = first; err != nil || !first || apply == nil {
			return err
		}
		return apply(tx)
	})
	if err != nil {
		return false, err
	}
	if !applied && o.repeated != nil {
		o.repeated()
	}
	return applied, nil
}

// chunked names the parts of one list of a report: its chunk n is
// part "<name>/<n>". max, when set, is the most items of a chunk instead of
// reportChunk.
type chunked struct {
	once ReportOnce
	name string
	max  int
}

func (o ReportOnce) part(name string) chunked { return chunked{once: o, name: name} }

// alone is c with one item a transaction: command results (an agent answers
// with up to 1 MiB, the command's params are up to 4 MiB, and JSON escaping
// grows both) do not fit several in one Badger transaction (at most 15% of
// the 8 MiB memtable; two of 700 KB failed their report for ever), while
// one always does (a value of 1 MiB or more is stored in the value log).
// Results are few: a transaction each costs nothing.
func (c chunked) alone() chunked { c.max = 1; return c }

// inChunks applies items in transactions of at most reportChunk, in order,
// until one fails, and returns what the committed ones returned. A chunk
// that an earlier sending of the report applied is skipped.
func inChunks[T, R any](ctx context.Context, kv store.KV, part chunked, items []T, apply func(tx store.Tx, chunk []T) ([]R, error)) ([]R, error) {
	var out []R
	size := reportChunk
	if part.max > 0 {
		size = part.max
	}
	for n, start := 0, 0; start < len(items); n++ {
		end := min(start+size, len(items))
		chunk := items[start:end]
		start = end
		var got []R
		applied, err := part.once.Do(ctx, kv, part.name+"/"+strconv.Itoa(n), func(tx store.Tx) error {
			var err error
			got, err = apply(tx, chunk)
			return err
		})
		if err != nil {
			return out, err
		}
		if applied { // else got may hold an attempt a conflict undid
			out = append(out, got...)
		}
	}
	return out, nil
}

// applyAgentEvents stores agent connection events: the agents' last seen
// time and address, and audit events (with IP_CHANGED when an agent
// connects from a new address); it returns the audit events stored.
// Events of unknown agents are skipped.
func applyAgentEvents(tx store.Tx, edgeID string, events []config.AgentEvent, now time.Time, hooks ReportHooks) ([]store.AuditEvent, error) {
	var stored []store.AuditEvent
	for _, ev := range events {
		a, err := store.LookupAgent(tx, ev.AgentID)
		if errors.Is(err, store.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		at := ev.At.UTC().Truncate(time.Millisecond)
		if at.IsZero() {
			at = now
		}
		evs := []string{ev.Event}
		prevIP := a.LastSeenIP
		if ev.Event == config.EventConnected && ev.IP != "" && prevIP != "" && prevIP != ev.IP {
			evs = append(evs, "IP_CHANGED")
		}
		if ev.Event != config.EventRejected {
			a.LastSeenAt = &at
			if ev.IP != "" {
				a.LastSeenIP = ev.IP
			}
			if err := store.PutAgent(tx, a); err != nil {
				return nil, err
			}
		}
		for _, name := range evs {
			details := ev.Details
			if name == "IP_CHANGED" {
				details = "from " + prevIP + " to " + ev.IP
			}
			ae := store.AuditEvent{
				ID: uuid.NewString(), WorkspaceID: a.WorkspaceID, Type: "agent." + name, Event: name,
				AgentID: a.ID, EdgeID: edgeID, IP: ev.IP, Details: details, CreatedAt: at,
			}
			if err := store.AppendAudit(tx, &ae); err != nil {
				return nil, err
			}
			stored = append(stored, ae)
		}
	}
	if hooks.AgentEventsTx != nil && len(stored) > 0 {
		if err := hooks.AgentEventsTx(tx, stored); err != nil {
			return nil, err
		}
	}
	return stored, nil
}

// shareCount is a share's allowed requests in a report, and the last one's
// time.
type shareCount struct {
	n    int64
	last time.Time
}

// countAccess adds the allowed requests counted for shares to their
// counters; it returns the shares with maxUses that these requests used up.
func (h *Hub) countAccess(tx store.Tx, shares []string, counts map[string]*shareCount) ([]Ref, error) {
	var usedUp []Ref
	for _, id := range shares {
		c := counts[id]
		sh, err := store.LookupShare(tx, id)
		if errors.Is(err, store.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		if sh.MaxUses > 0 && sh.AccessCount < sh.MaxUses && sh.AccessCount+c.n >= sh.MaxUses {
			usedUp = append(usedUp, Share(sh.WorkspaceID, sh.ID))
		}
		sh.AccessCount += c.n
		last := c.last.UTC()
		if sh.LastAccessedAt == nil || last.After(*sh.LastAccessedAt) {
			sh.LastAccessedAt = &last
		}
		if err := store.PutShare(tx, sh); err != nil {
			return nil, err
		}
	}
	return usedUp, nil
}

func applyCommandResults(tx store.Tx, results []config.CommandDone, now time.Time) ([]store.Command, error) {
	var done []store.Command
	for _, r := range results {
		a, err := store.LookupAgent(tx, r.AgentID)
		if errors.Is(err, store.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		c, err := store.GetCommand(tx, a.WorkspaceID, r.CommandID)
		if errors.Is(err, store.ErrNotFound) || (err == nil && (c.AgentID != r.AgentID || c.CompletedAt != nil)) {
			continue
		}
		if err != nil {
			return nil, err
		}
		c.Status = store.CommandSucceeded
		if !r.OK {
			c.Status = store.CommandFailed
		}
		c.Result, c.Error = r.Result, r.Error
		c.CompletedAt = &now
		if c.DeliveredAt == nil {
			c.DeliveredAt = &now
		}
		if err := store.PutCommand(tx, c, now); err != nil {
			return nil, err
		}
		done = append(done, *c)
	}
	return done, nil
}

// NewToken returns n random bytes as lowercase hex.
func NewToken(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
