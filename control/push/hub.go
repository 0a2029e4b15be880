// Package push keeps the configuration version of the data plane and streams
// configuration to edge nodes (see package internal/config for the wire
// contract).
//
// The [Hub] holds the config version (monotonic; its high-water mark is
// persisted in the store in blocks, so it never goes back across restarts),
// a random epoch per process start, and a ring of recent changes. After an API
// mutation commits, the caller names what it touched with [Hub.Publish]; the
// hub re-reads those objects from the store under its lock and records them
// as the next change. Reading the committed state at publish time (instead of
// carrying the values from the mutation) makes concurrent mutations of one
// object safe: the last published change always holds the latest committed
// state, whatever order the publishers ran in.
//
// Each edge stream ([Hub.Stream]) waits on a wake-up channel and sends what it
// has not sent yet; when its version has left the ring (or the epoch differs)
// it sends a full snapshot, so a revocation is never lost. Snapshots are
// encoded from an in-memory copy of the configuration that the hub reads from
// the store once and then keeps current with every published change. [Presence]
// tracks which edges are alive and which agents they hold.
package push

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/privateconnect/pc/control/store"
	"github.com/privateconnect/pc/internal/config"
)

// Ref names one object whose committed state should be pushed.
type Ref struct {
	Kind        string // a config.Kind* constant
	WorkspaceID string // empty for edges and settings
	ID          string
}

// Share, Service, Agent, Edge build Refs.
func Share(ws, id string) Ref   { return Ref{Kind: config.KindShare, WorkspaceID: ws, ID: id} }
func Service(ws, id string) Ref { return Ref{Kind: config.KindService, WorkspaceID: ws, ID: id} }
func Agent(ws, id string) Ref   { return Ref{Kind: config.KindAgent, WorkspaceID: ws, ID: id} }
func Edge(id string) Ref        { return Ref{Kind: config.KindEdge, ID: id} }

// Options configure a Hub.
type Options struct {
	Logger *slog.Logger
	// RingSize is how many recent changes are kept for catching up (default 8192).
	RingSize int
	// PingInterval is the stream's keep-alive period (default 5 s).
	PingInterval time.Duration
	// Settings are the static data-plane settings pushed to edges.
	Settings config.Settings
	// RevokedRetention is how long revoked or expired shares stay in
	// snapshots, so edges answer 410 rather than 404 (default 7 days).
	RevokedRetention time.Duration
}

// versionBlock is how many versions are reserved per persisted write.
const versionBlock = 1024

const metaVersion = "configversion"

// Hub is the config version, the change ring and the edge subscribers.
type Hub struct {
	kv       store.KV
	log      *slog.Logger
	epoch    string
	opts     Options
	Presence *Presence

	mu        sync.Mutex
	version   int64
	reserved  int64
	ring      []config.Change // ring[i] has version ringBase+i ... kept contiguous
	subs      map[*sub]struct{}
	goneEdges map[string]struct{} // edges deleted in this process (Disconnect); guarded by mu
	snapVer   int64               // version of the cached encoded snapshot (-1: none)
	snapMsg   []byte
	// live is the configuration at h.version, kept current by Publish; nil
	// until the first snapshot reads the store, and again after a publish
	// failed (something committed may then be missing from it).
	live *state

	buildMu sync.Mutex // one snapshot build at a time (held without mu)
}

// New loads the persisted version high-water mark and returns a hub.
func New(ctx context.Context, kv store.KV, opts Options) (*Hub, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.RingSize <= 0 {
		opts.RingSize = 8192
	}
	if opts.PingInterval <= 0 {
		opts.PingInterval = 5 * time.Second
	}
	if opts.RevokedRetention <= 0 {
		opts.RevokedRetention = 7 * 24 * time.Hour
	}
	var b [16]byte
	_, _ = rand.Read(b[:])
	h := &Hub{
		kv: kv, log: opts.Logger, opts: opts, epoch: hex.EncodeToString(b[:]),
		subs: make(map[*sub]struct{}), goneEdges: make(map[string]struct{}), snapVer: -1,
		Presence: NewPresence(30 * time.Second),
	}
	err := kv.View(ctx, func(tx store.Tx) error {
		v, err := store.GetMeta(tx, metaVersion)
		if errors.Is(err, store.ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		h.version, err = strconv.ParseInt(string(v), 10, 64)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("push: load version: %w", err)
	}
	h.reserved = h.version
	return h, nil
}

// Epoch is this process's random epoch.
func (h *Hub) Epoch() string { return h.epoch }

// Version is the current config version.
func (h *Hub) Version() int64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.version
}

// next reserves the next version; h.mu is held.
func (h *Hub) next(ctx context.Context) (int64, error) {
	if h.version+1 > h.reserved {
		hw := h.version + versionBlock
		err := h.kv.Update(ctx, func(tx store.Tx) error {
			return store.PutMeta(tx, metaVersion, []byte(strconv.FormatInt(hw, 10)))
		})
		if err != nil {
			return 0, fmt.Errorf("push: persist version: %w", err)
		}
		h.reserved = hw
	}
	h.version++
	return h.version, nil
}

// Publish records the committed state of refs as the next changes and wakes
// every stream. When the store cannot be read, the ring is dropped so that
// every edge gets a fresh snapshot, and the error is returned.
func (h *Hub) Publish(ctx context.Context, refs ...Ref) error {
	if len(refs) == 0 {
		return nil
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	var changes []config.Change
	var gone []time.Time
	err := h.kv.View(ctx, func(tx store.Tx) error {
		for _, r := range refs {
			c, g, err := h.load(tx, r)
			if err != nil {
				return err
			}
			changes, gone = append(changes, c), append(gone, g)
		}
		return nil
	})
	if err == nil {
		for i := range changes {
			var v int64
			if v, err = h.next(ctx); err != nil {
				break
			}
			changes[i].Version = v
			h.append(changes[i])
			if h.live != nil {
				h.live.apply(changes[i], gone[i])
			}
		}
	}
	if err != nil {
		// Something committed may not be described: force snapshots, read
		// from the store again.
		h.ring = h.ring[:0]
		h.live = nil
		if _, e := h.next(ctx); e != nil {
			h.version++ // the epoch still guards against reuse
		}
		h.log.Error("config publish failed; edges will resync", "err", err)
	}
	h.wake()
	if err != nil {
		return fmt.Errorf("push: publish: %w", err)
	}
	return nil
}

func (h *Hub) append(c config.Change) {
	if len(h.ring) == h.opts.RingSize {
		// Drop the oldest quarter at once to keep appends cheap.
		n := copy(h.ring, h.ring[h.opts.RingSize/4:])
		h.ring = h.ring[:n]
	}
	h.ring = append(h.ring, c)
}

// sub is one open stream.
type sub struct {
	edgeID   string
	instance string // the edge process's id ("" for edges that send none)
	from     string // the remote address of the stream
	wake     chan struct{}
	inbox    map[string]struct{} // agent ids to announce; guarded by Hub.mu
	// replacedBy is the address of a newer process of the same edge
	// (another instance); guarded by Hub.mu.
	replacedBy string
}

func (s *sub) poke() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

func (h *Hub) wake() {
	for s := range h.subs {
		s.poke()
	}
}

// NotifyInbox announces to every edge stream that these agents have new
// commands or messages (an "inbox" message; see internal/config).
func (h *Hub) NotifyInbox(agentIDs ...string) {
	if len(agentIDs) == 0 {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	for s := range h.subs {
		for _, id := range agentIDs {
			s.inbox[id] = struct{}{}
		}
		s.poke()
	}
}

// takeInbox returns and clears a stream's pending inbox announcements.
func (h *Hub) takeInbox(s *sub) []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(s.inbox) == 0 {
		return nil
	}
	ids := make([]string, 0, len(s.inbox))
	for id := range s.inbox {
		ids = append(ids, id)
	}
	clear(s.inbox)
	slices.Sort(ids)
	return ids
}

// since returns the changes after version v of epoch, or ok=false when a
// snapshot is needed.
func (h *Hub) since(epoch string, v int64) (changes []config.Change, cur int64, ok bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	cur = h.version
	if epoch != h.epoch || v > cur {
		return nil, cur, false
	}
	if v == cur {
		return nil, cur, true
	}
	if len(h.ring) == 0 || h.ring[0].Version > v+1 {
		return nil, cur, false
	}
	i := int(v + 1 - h.ring[0].Version)
	return append([]config.Change(nil), h.ring[i:]...), cur, true
}

// load reads one object's committed state as a change, and for a share the
// time it stopped working (see shareGone); h.mu is held.
func (h *Hub) load(tx store.Tx, r Ref) (config.Change, time.Time, error) {
	c := config.Change{Op: config.OpUpsert, Kind: r.Kind, ID: r.ID}
	var gone time.Time
	var err error
	switch r.Kind {
	case config.KindShare:
		var sh *store.Share
		if sh, err = store.GetShare(tx, r.WorkspaceID, r.ID); err == nil {
			c.Share, gone = ShareConfig(sh), shareGone(sh)
		}
	case config.KindService:
		var s *store.Service
		if s, err = store.GetService(tx, r.WorkspaceID, r.ID); err == nil {
			c.Service = ServiceConfig(s)
		}
	case config.KindAgent:
		var a *store.Agent
		if a, err = store.GetAgent(tx, r.WorkspaceID, r.ID); err == nil {
			c.Agent = AgentConfig(a)
		}
	case config.KindEdge:
		var e *store.Edge
		if e, err = store.GetEdge(tx, r.ID); err == nil {
			c.Edge = EdgeConfig(e)
		}
	case config.KindPlugin:
		c.Plugin, err = loadPlugin(tx, r)
	case config.KindSettings:
		s := h.opts.Settings
		c.Settings = &s
	default:
		return c, gone, fmt.Errorf("unknown kind %q", r.Kind)
	}
	if errors.Is(err, store.ErrNotFound) {
		return config.Change{Op: config.OpDelete, Kind: r.Kind, ID: r.ID}, time.Time{}, nil
	}
	return c, gone, err
}

// Snapshot reads the full configuration at the current version from the
// store.
func (h *Hub) Snapshot(ctx context.Context) (*config.Snapshot, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	st, err := h.read(ctx, h.version, h.cutoff())
	if err != nil {
		return nil, err
	}
	v := st.view(h.epoch, h.opts.Settings, h.cutoff())
	v.sort()
	return v.snapshot(), nil
}

// cutoff is the time before which revoked or expired shares leave
// snapshots.
func (h *Hub) cutoff() time.Time { return time.Now().Add(-h.opts.RevokedRetention) }

// snapshotMessage returns an encoded snapshot message line and its
// version. A cached snapshot is reused while the change ring still reaches
// back to it: the stream then sends the changes since its version (an edge
// applies them together). Otherwise a fresh one is encoded.
func (h *Hub) snapshotMessage(ctx context.Context) ([]byte, int64, error) {
	h.mu.Lock()
	if h.snapMsg != nil && h.reaches(h.snapVer) {
		line, v := h.snapMsg, h.snapVer
		h.mu.Unlock()
		return line, v, nil
	}
	h.mu.Unlock()
	return h.rebuild(ctx)
}

// reaches reports whether an edge at version v of this epoch can catch up
// from the ring; h.mu is held.
func (h *Hub) reaches(v int64) bool {
	if v == h.version {
		return true
	}
	return v < h.version && len(h.ring) > 0 && h.ring[0].Version <= v+1
}

// rebuild encodes and caches the snapshot of the live configuration at the
// current version, reading the store first when there is none. The store is
// read without h.mu, so API writes do not wait for it: every change
// published up to the version read was committed before the read began, and
// the changes published during the read are then applied from the ring.
func (h *Hub) rebuild(ctx context.Context) ([]byte, int64, error) {
	h.buildMu.Lock()
	defer h.buildMu.Unlock()
	h.mu.Lock()
	if h.snapMsg != nil && h.snapVer == h.version { // built while we waited
		line, v := h.snapMsg, h.snapVer
		h.mu.Unlock()
		return line, v, nil
	}
	st := h.live
	if st == nil {
		v := h.version
		h.mu.Unlock()
		read, err := h.read(ctx, v, h.cutoff())
		if err != nil {
			return nil, 0, err
		}
		h.mu.Lock()
		if h.live == nil && h.reaches(read.ver) {
			now := time.Now()
			if read.ver < h.version {
				for _, c := range h.ring[read.ver+1-h.ring[0].Version:] {
					read.apply(c, changeGone(c, now))
				}
			}
			h.live = read
		}
		st = read // at read.ver if the ring lost what followed it
	}
	view := st.view(h.epoch, h.opts.Settings, h.cutoff())
	h.mu.Unlock()
	view.sort()
	line, err := view.message()
	if err != nil {
		return nil, 0, err
	}
	h.mu.Lock()
	if view.Version > h.snapVer {
		h.snapVer, h.snapMsg = view.Version, line
	}
	h.mu.Unlock()
	return line, view.Version, nil
}

func (h *Hub) subscribe(edgeID, instance, from string) *sub {
	s := &sub{edgeID: edgeID, instance: instance, from: from, wake: make(chan struct{}, 1), inbox: map[string]struct{}{}}
	h.mu.Lock()
	// Another process holding this edge's stream is replaced: the newest
	// process serves the edge (a restarted edge whose old stream the
	// control plane has not seen die yet is one too). The same process
	// reconnecting is not another one.
	for o := range h.subs {
		if o.edgeID == edgeID && instance != "" && o.instance != "" && o.instance != instance && o.replacedBy == "" {
			o.replacedBy = from
			o.poke()
			h.Presence.Replaced(edgeID, o.instance)
			h.log.Warn("a second process connected with an edge's token: the older one is told to stop",
				"edge", edgeID, "older", o.from, "newer", from)
		}
	}
	h.subs[s] = struct{}{}
	h.mu.Unlock()
	return s
}

// replaced returns the address of the process that replaced s's, if one did.
func (h *Hub) replaced(s *sub) string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return s.replacedBy
}

func (h *Hub) unsubscribe(s *sub) {
	h.mu.Lock()
	delete(h.subs, s)
	h.mu.Unlock()
}

// Disconnect ends the config streams of a deleted edge: the edge, calling
// again, is refused (its token is gone) and stops serving.
func (h *Hub) Disconnect(edgeID string) {
	h.mu.Lock()
	h.goneEdges[edgeID] = struct{}{}
	for s := range h.subs {
		if s.edgeID == edgeID {
			s.poke()
		}
	}
	h.mu.Unlock()
}

// deleted reports whether s's edge was deleted (Disconnect), before or
// after s was authorized.
func (h *Hub) deleted(s *sub) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	_, gone := h.goneEdges[s.edgeID]
	return gone
}

// Subscribers is the number of open edge streams.
func (h *Hub) Subscribers() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.subs)
}
