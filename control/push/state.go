package push

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/privateconnect/pc/control/store"
	"github.com/privateconnect/pc/internal/config"
)

// state is the data plane's whole configuration at version ver, in memory:
// the store read once, then every published change applied to it in order,
// exactly as an edge applies them. A new edge's snapshot is then an encode
// of this state, not a read of every object from the store (0.6 s of the
// 0.7 s a 100,000-share snapshot used to take).
type state struct {
	ver      int64
	shares   map[string]liveShare
	services map[string]*config.Service
	agents   map[string]*config.Agent
	edges    map[string]*config.Edge
	plugins  map[string]*config.Plugin
}

// liveShare is a share and the time it stopped working (revoked or
// expired; zero while it works), for the snapshot's retention cut-off.
type liveShare struct {
	c    *config.Share
	gone time.Time
}

func newState(v int64) *state {
	return &state{
		ver: v, shares: map[string]liveShare{}, services: map[string]*config.Service{},
		agents: map[string]*config.Agent{}, edges: map[string]*config.Edge{}, plugins: map[string]*config.Plugin{},
	}
}

// shareGone is when a stored share stopped working: the earlier of its
// revocation and its expiry, zero if neither.
func shareGone(s *store.Share) time.Time { return earliest(s.RevokedAt, s.ExpiresAt) }

// changeGone is shareGone for a change replayed from the ring, which
// carries no revocation time: a revoked share counts as revoked now, so its
// retention in snapshots starts at most a snapshot build late.
func changeGone(c config.Change, now time.Time) time.Time {
	if c.Share == nil {
		return time.Time{}
	}
	var revoked *time.Time
	if c.Share.Revoked {
		revoked = &now
	}
	return earliest(revoked, c.Share.ExpiresAt)
}

// earliest is the earliest of the times set (zero if none is).
func earliest(ts ...*time.Time) time.Time {
	var t time.Time
	for _, at := range ts {
		if at != nil && (t.IsZero() || at.Before(t)) {
			t = *at
		}
	}
	return t
}

// apply makes one change (a delete carries no object); gone is the share's
// time of revocation or expiry.
func (s *state) apply(c config.Change, gone time.Time) {
	switch c.Kind {
	case config.KindShare:
		if c.Share == nil {
			delete(s.shares, c.ID)
		} else {
			s.shares[c.ID] = liveShare{c: c.Share, gone: gone}
		}
	case config.KindService:
		put(s.services, c.ID, c.Service)
	case config.KindAgent:
		put(s.agents, c.ID, c.Agent)
	case config.KindEdge:
		put(s.edges, c.ID, c.Edge)
	case config.KindPlugin:
		put(s.plugins, c.ID, c.Plugin)
	}
	s.ver = c.Version
}

func put[T any](m map[string]*T, id string, v *T) {
	if v == nil {
		delete(m, id)
	} else {
		m[id] = v
	}
}

// snapshotJSON is config.Snapshot with pointer slices, so a view of the
// state shares its objects instead of copying them; it encodes to the same
// JSON (TestLiveStateMatchesStore decodes it as a config.Snapshot).
type snapshotJSON struct {
	Epoch    string            `json:"epoch"`
	Version  int64             `json:"version"`
	Shares   []*config.Share   `json:"shares"`
	Services []*config.Service `json:"services"`
	Agents   []*config.Agent   `json:"agents"`
	Edges    []*config.Edge    `json:"edges"`
	Plugins  []*config.Plugin  `json:"plugins"`
	Settings config.Settings   `json:"settings"`
}

// view lists the state's objects, dropping shares gone before cutoff (a
// revoked or expired share stays in snapshots for Options.RevokedRetention,
// so edges answer 410 rather than 404). The objects are shared, never
// changed (a change replaces them), so the caller may encode the view after
// releasing the lock that guards s.
func (s *state) view(epoch string, settings config.Settings, cutoff time.Time) *snapshotJSON {
	v := &snapshotJSON{
		Epoch: epoch, Version: s.ver, Settings: settings, Shares: make([]*config.Share, 0, len(s.shares)),
		Services: values(s.services), Agents: values(s.agents), Edges: values(s.edges), Plugins: values(s.plugins),
	}
	for _, sh := range s.shares {
		if sh.gone.IsZero() || sh.gone.After(cutoff) {
			v.Shares = append(v.Shares, sh.c)
		} else {
			delete(s.shares, sh.c.ID)
		}
	}
	return v
}

// values lists a map's objects, as an empty list (JSON []) when there are
// none.
func values[T any](m map[string]*T) []*T {
	return slices.AppendSeq(make([]*T, 0, len(m)), maps.Values(m))
}

// sort orders every list by id, so a snapshot does not depend on map order;
// done on a view, outside the hub's lock.
func (v *snapshotJSON) sort() {
	slices.SortFunc(v.Shares, func(a, b *config.Share) int { return cmp.Compare(a.ID, b.ID) })
	slices.SortFunc(v.Services, func(a, b *config.Service) int { return cmp.Compare(a.ID, b.ID) })
	slices.SortFunc(v.Agents, func(a, b *config.Agent) int { return cmp.Compare(a.ID, b.ID) })
	slices.SortFunc(v.Edges, func(a, b *config.Edge) int { return cmp.Compare(a.ID, b.ID) })
	slices.SortFunc(v.Plugins, func(a, b *config.Plugin) int { return cmp.Compare(a.ID, b.ID) })
}

// message encodes a view as a snapshot message line.
func (v *snapshotJSON) message() ([]byte, error) {
	b, err := json.Marshal(struct {
		Type     string        `json:"type"`
		Epoch    string        `json:"epoch"`
		Version  int64         `json:"version"`
		Snapshot *snapshotJSON `json:"snapshot"`
	}{config.MsgSnapshot, v.Epoch, v.Version, v})
	if err != nil {
		return nil, fmt.Errorf("push: encode snapshot: %w", err)
	}
	return append(b, '\n'), nil
}

// snapshot copies a view into a config.Snapshot.
func (v *snapshotJSON) snapshot() *config.Snapshot {
	return &config.Snapshot{
		Epoch: v.Epoch, Version: v.Version, Settings: v.Settings,
		Shares: deref(v.Shares), Services: deref(v.Services), Agents: deref(v.Agents),
		Edges: deref(v.Edges), Plugins: deref(v.Plugins),
	}
}

func deref[T any](ps []*T) []T {
	out := make([]T, len(ps))
	for i, p := range ps {
		out[i] = *p
	}
	return out
}

// read reads the store's whole configuration as the state of version v,
// leaving out shares gone before cutoff.
func (h *Hub) read(ctx context.Context, v int64, cutoff time.Time) (*state, error) {
	st := newState(v)
	err := h.kv.View(ctx, func(tx store.Tx) error {
		wss, _, err := store.ListWorkspaces(tx, "", 0)
		if err != nil {
			return err
		}
		for _, w := range wss {
			shares, _, err := store.ListShares(tx, w.ID, "", 0, nil)
			if err != nil {
				return err
			}
			for i := range shares {
				if gone := shareGone(&shares[i]); gone.IsZero() || gone.After(cutoff) {
					st.shares[shares[i].ID] = liveShare{c: ShareConfig(&shares[i]), gone: gone}
				}
			}
			svcs, _, err := store.ListServices(tx, w.ID, "", 0, nil)
			if err != nil {
				return err
			}
			for i := range svcs {
				st.services[svcs[i].ID] = ServiceConfig(&svcs[i])
			}
			agents, _, err := store.ListAgents(tx, w.ID, "", 0, nil)
			if err != nil {
				return err
			}
			for i := range agents {
				st.agents[agents[i].ID] = AgentConfig(&agents[i])
			}
			pls, _, err := store.ListPlugins(tx, w.ID, "", 0)
			if err != nil {
				return err
			}
			for i := range pls {
				st.plugins[pls[i].ID] = PluginConfig(&pls[i])
			}
		}
		edges, _, err := store.ListEdges(tx, "", 0)
		if err != nil {
			return err
		}
		for i := range edges {
			st.edges[edges[i].ID] = EdgeConfig(&edges[i])
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("push: snapshot: %w", err)
	}
	return st, nil
}
