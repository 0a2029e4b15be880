package push

import (
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/privateconnect/pc/internal/config"
)

// Presence tracks edge liveness and which agents each edge holds. An edge is
// online while it has an open config stream or reported within the offline
// window (a stream lost to the network or a control-plane restart comes
// back within it, without the edge and its agents flapping offline); an
// edge that says it stops (config.Report.Stopping) is offline at once. An
// offline edge's agents no longer count as connected through it. State is
// in memory: after a restart edges re-report within seconds.
type Presence struct {
	mu      sync.RWMutex
	edges   map[string]*EdgeState
	deleted map[string]struct{} // Forget: their late signs of life are ignored
	offline time.Duration
	now     func() time.Time
	start   atomic.Int64 // unix ns: presence is rebuilt from the edges' reports from here (Serving)
}

// EdgeState is what the control plane knows of a live edge.
type EdgeState struct {
	Streams       int
	LastSeen      time.Time
	ConfigEpoch   string
	ConfigVersion int64
	Version       string // edge software version
	Agents        map[string]struct{}
	Connections   []config.Connection
	// Instance is the edge process whose stream opened last (see
	// config.MsgReplaced); reports of other processes do not move presence.
	Instance string
	// replaced are the processes told they were replaced (the last
	// maxReplaced): never the edge's again, even while no stream is open.
	replaced []string
	// stopped: the edge's process said it stops (config.Report.Stopping);
	// it is offline until a stream opens or another process reports.
	stopped   bool
	stoppedBy string // the process that said so
	// reported: a report came since the control plane started, so Agents
	// is the edge's word, not an empty guess.
	reported bool
}

const maxReplaced = 16

// NewPresence returns a tracker with the given offline window.
func NewPresence(offline time.Duration) *Presence {
	p := &Presence{edges: make(map[string]*EdgeState), deleted: make(map[string]struct{}), offline: offline, now: time.Now}
	p.start.Store(time.Now().UnixNano())
	return p
}

// Serving marks the moment the API starts serving: edges cannot report
// before it, so the window of Settling runs from there (a store that took
// long to open must not eat it).
func (p *Presence) Serving() { p.start.Store(p.now().UnixNano()) }

// Settling tells how long presence may still miss connected agents after
// the control plane's start, which it keeps no record of: until each of the
// registered edges (listed by edges, only asked during that time) has
// reported since, or until the offline window has passed (an edge that has
// not reported by then counts as offline in any case). 0 means settled.
func (p *Presence) Settling(edges func() ([]string, error)) (time.Duration, error) {
	left := p.offline - p.now().Sub(time.Unix(0, p.start.Load()))
	if left <= 0 {
		return 0, nil
	}
	ids, err := edges()
	if err != nil {
		return 0, err
	}
	p.mu.RLock()
	defer p.mu.RUnlock()
	for _, id := range ids {
		if e := p.edges[id]; e == nil || !e.reported {
			return left, nil
		}
	}
	return 0, nil
}

func (p *Presence) edge(id string) *EdgeState {
	e := p.edges[id]
	if e == nil {
		e = &EdgeState{Agents: map[string]struct{}{}}
		if _, gone := p.deleted[id]; !gone {
			p.edges[id] = e
		}
	}
	return e
}

// StreamOpened marks an edge's config stream open; instance is the edge
// process that opened it ("" for edges that send none).
func (p *Presence) StreamOpened(id, instance string) {
	p.mu.Lock()
	e := p.edge(id)
	e.Streams++
	if instance != "" {
		e.Instance = instance
	}
	e.LastSeen = p.now()
	e.stopped = false
	p.mu.Unlock()
}

// StreamClosed marks one of an edge's config streams closed.
func (p *Presence) StreamClosed(id string) {
	p.mu.Lock()
	if e := p.edges[id]; e != nil {
		e.Streams--
		e.LastSeen = p.now()
	}
	p.mu.Unlock()
}

// Current reports whether the edge process instance is the one that serves
// the edge: the last to open its stream, or unknown on either side. A
// replaced process still sends reports while it drains; its list of agents
// is not the edge's. While no stream of the edge is open, the process that
// reports is taken for the edge's (a restarted edge may report before its
// stream opens).
func (p *Presence) Current(id, instance string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.current(p.edges[id], instance)
}

// current is Current with p.mu held.
func (p *Presence) current(e *EdgeState, instance string) bool {
	if e == nil || instance == "" {
		return true
	}
	if slices.Contains(e.replaced, instance) {
		return false
	}
	if e.Instance == "" || e.Streams <= 0 {
		e.Instance = instance
		return true
	}
	return e.Instance == instance
}

// Replaced records that an edge process was told another replaced it: its
// reports, while it drains, never count as the edge's (a short gap in the
// new process's stream would otherwise hand presence back to it).
func (p *Presence) Replaced(id, instance string) {
	if instance == "" {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	e := p.edge(id)
	if !slices.Contains(e.replaced, instance) {
		if len(e.replaced) == maxReplaced {
			e.replaced = e.replaced[1:]
		}
		e.replaced = append(e.replaced, instance)
	}
}

// Touch records a sign of life from the edge.
func (p *Presence) Touch(id string) {
	p.mu.Lock()
	p.edge(id).LastSeen = p.now()
	p.mu.Unlock()
}

// Report applies an edge report: applied version and the full list of
// connected agents. It returns the agents that appeared and disappeared
// since the previous report.
//
// A report of a process that does not serve the edge (Current: one
// replaced, draining) moves nothing: current is false.
func (p *Presence) Report(id string, r *config.Report) (appeared, gone []string, current bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, deleted := p.deleted[id]; deleted {
		return nil, nil, true // a report in flight at the deletion: its agents did not appear
	}
	if !p.current(p.edges[id], r.Instance) {
		return nil, nil, false
	}
	e := p.edge(id)
	e.Connections = r.Connections
	e.LastSeen = p.now()
	e.reported = true
	// A report of the stopping process that overtook its last one does not
	// bring it back.
	e.stopped = r.Stopping || (e.stopped && r.Instance != "" && r.Instance == e.stoppedBy)
	if r.Stopping {
		e.stoppedBy = r.Instance
	}
	agents := r.Agents
	if e.stopped {
		// Its tunnels are closed: its agents go with it.
		agents, e.Connections = nil, nil
	}
	e.ConfigEpoch, e.ConfigVersion = r.ConfigEpoch, r.ConfigVersion
	if r.EdgeVersion != "" {
		e.Version = r.EdgeVersion
	}
	now := make(map[string]struct{}, len(agents))
	for _, a := range agents {
		now[a] = struct{}{}
		if _, ok := e.Agents[a]; !ok {
			appeared = append(appeared, a)
		}
	}
	for a := range e.Agents {
		if _, ok := now[a]; !ok {
			gone = append(gone, a)
		}
	}
	e.Agents = now
	return appeared, gone, true
}

// Forget drops a deleted edge for good: a ping or report of it still in
// flight does not bring it back (edge ids are never reused).
func (p *Presence) Forget(id string) {
	p.mu.Lock()
	delete(p.edges, id)
	p.deleted[id] = struct{}{}
	p.mu.Unlock()
}

func (p *Presence) online(e *EdgeState, now time.Time) bool {
	return !e.stopped && (e.Streams > 0 || now.Sub(e.LastSeen) < p.offline)
}

// Edge returns a copy of an edge's state and whether it is online.
func (p *Presence) Edge(id string) (st EdgeState, online bool) {
	p.mu.RLock()
	defer p.mu.RUnlock()
	e := p.edges[id]
	if e == nil {
		return EdgeState{}, false
	}
	st = *e
	st.Agents, st.Connections, st.replaced = nil, nil, nil
	return st, p.online(e, p.now())
}

// AgentCount returns how many agents an online edge holds: all of them
// when among is nil, else those in among.
func (p *Presence) AgentCount(id string, among map[string]bool) int {
	p.mu.RLock()
	defer p.mu.RUnlock()
	e := p.edges[id]
	if e == nil || !p.online(e, p.now()) {
		return 0
	}
	if among == nil {
		return len(e.Agents)
	}
	n := 0
	for a := range e.Agents {
		if among[a] {
			n++
		}
	}
	return n
}

// AgentEdges returns the online edges an agent is connected to, sorted.
func (p *Presence) AgentEdges(agentID string) []string {
	p.mu.RLock()
	defer p.mu.RUnlock()
	now := p.now()
	var out []string
	for id, e := range p.edges {
		if _, ok := e.Agents[agentID]; ok && p.online(e, now) {
			out = append(out, id)
		}
	}
	slices.Sort(out)
	return out
}

// AgentOnline reports whether an agent is connected to any online edge.
func (p *Presence) AgentOnline(agentID string) bool {
	p.mu.RLock()
	defer p.mu.RUnlock()
	now := p.now()
	for _, e := range p.edges {
		if _, ok := e.Agents[agentID]; ok && p.online(e, now) {
			return true
		}
	}
	return false
}

// OnlineEdges returns the ids of the online edges.
func (p *Presence) OnlineEdges() []string {
	p.mu.RLock()
	defer p.mu.RUnlock()
	now := p.now()
	var out []string
	for id, e := range p.edges {
		if p.online(e, now) {
			out = append(out, id)
		}
	}
	slices.Sort(out)
	return out
}

// EdgeConnection is a live connection and the edge that holds it.
type EdgeConnection struct {
	EdgeID string
	config.Connection
}

// ServiceConnections returns the live connections of a service on online edges.
func (p *Presence) ServiceConnections(serviceID string) []EdgeConnection {
	p.mu.RLock()
	defer p.mu.RUnlock()
	now := p.now()
	var out []EdgeConnection
	for id, e := range p.edges {
		if !p.online(e, now) {
			continue
		}
		for _, c := range e.Connections {
			if c.ServiceID == serviceID {
				out = append(out, EdgeConnection{EdgeID: id, Connection: c})
			}
		}
	}
	slices.SortFunc(out, func(a, b EdgeConnection) int { return a.StartedAt.Compare(b.StartedAt) })
	return out
}
