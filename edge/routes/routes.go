// Package routes is the edge's immutable routing table: the configuration
// snapshot indexed for the request path (share by token hash, service by id,
// agent key by id, public service by subdomain). A Table is never modified
// after it is built; updates build a new Table and the edge swaps it in with
// one atomic pointer store, so a request sees one consistent state.
package routes

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/privateconnect/pc/internal/config"
)

// Share is a share as the edge serves it.
type Share struct {
	config.Share
	Prefixes []netip.Prefix // parsed AllowedIPs

	// ext caches what other layers derive from this share (the compiled
	// policy chain). A changed share is a new *Share, so the cache can
	// never go stale.
	ext atomic.Pointer[any]
}

// Ext returns the value cached by SetExt, or nil.
func (s *Share) Ext() any {
	if p := s.ext.Load(); p != nil {
		return *p
	}
	return nil
}

// SetExt caches a derived value on the share.
func (s *Share) SetExt(v any) { s.ext.Store(&v) }

// Agent is an agent's handshake key and validity.
type Agent struct {
	ID          string
	WorkspaceID string
	Name        string
	Pub         [32]byte // Ed25519 public key (tunnel protocol 2); zero when none
	Key         [32]byte // SHA-256 of the token, the protocol 1 HMAC key; zero when none
	ExpiresAt   time.Time
	Revoked     bool
}

// Table is one immutable routing state.
type Table struct {
	Epoch    string
	Version  int64
	Settings config.Settings

	shares     shardMap[[32]byte, *Share] // by token hash (hashShard)
	shareByID  shardMap[string, [32]byte]
	services   shardMap[string, *config.Service]
	subdomains shardMap[string, string] // subdomain → service id
	agents     shardMap[string, *Agent]
	agentSvcs  shardMap[string, []string] // agent id → service ids
	// attached counts, per plugin id, the shares not revoked whose chain
	// names it, each share once (kept as shares change: see attach); ids
	// of plugins the table does not hold (not yet, or no more) are counted
	// too. An expired share still counts (expiry comes with time, not with
	// a change). No zero entries.
	attached shardMap[string, int32]
	edges    map[string]config.Edge
	plugins  map[string]config.Plugin
}

// Empty returns a table with nothing in it.
func Empty() *Table {
	return &Table{edges: map[string]config.Edge{}, plugins: map[string]config.Plugin{}}
}

// Build indexes a full snapshot. It rejects a snapshot that is internally
// inconsistent, so a bad update never replaces a good table.
func Build(s *config.Snapshot) (*Table, error) {
	t := Empty()
	t.Epoch, t.Version, t.Settings = s.Epoch, s.Version, s.Settings
	w := newWriter(t)
	for i := range s.Services {
		if err := w.putService(&s.Services[i]); err != nil {
			return nil, err
		}
	}
	for i := range s.Shares {
		if err := w.putShare(&s.Shares[i]); err != nil {
			return nil, err
		}
	}
	for i := range s.Agents {
		if err := w.putAgent(&s.Agents[i]); err != nil {
			return nil, err
		}
	}
	for _, e := range s.Edges {
		t.edges[e.ID] = e
	}
	for _, p := range s.Plugins {
		t.plugins[p.ID] = p
	}
	return t, nil
}

// Apply returns a new table with the changes applied; t is unchanged. Only
// the shards of the indexes a change touches are copied (see shardMap). A
// change whose version the table already holds (a batch straddling a
// snapshot) is skipped.
func (t *Table) Apply(version int64, changes []config.Change) (*Table, error) {
	n := *t
	n.Version = version
	w := newWriter(&n)
	for i := range changes {
		c := &changes[i]
		if c.Version != 0 && c.Version <= t.Version {
			continue
		}
		var err error
		switch c.Kind {
		case config.KindShare:
			w.delShare(c.ID)
			if c.Op == config.OpUpsert {
				if c.Share == nil {
					return nil, fmt.Errorf("routes: change %d: upsert share without share", c.Version)
				}
				err = w.putShare(c.Share)
			}
		case config.KindService:
			w.delService(c.ID)
			if c.Op == config.OpUpsert {
				if c.Service == nil {
					return nil, fmt.Errorf("routes: change %d: upsert service without service", c.Version)
				}
				err = w.putService(c.Service)
			}
		case config.KindAgent:
			w.agents.del(strShard(c.ID), c.ID)
			if c.Op == config.OpUpsert {
				if c.Agent == nil {
					return nil, fmt.Errorf("routes: change %d: upsert agent without agent", c.Version)
				}
				err = w.putAgent(c.Agent)
			}
		case config.KindEdge:
			w.ownEdges()
			delete(n.edges, c.ID)
			if c.Op == config.OpUpsert && c.Edge != nil {
				n.edges[c.ID] = *c.Edge
			}
		case config.KindPlugin:
			w.ownPlugins()
			delete(n.plugins, c.ID)
			if c.Op == config.OpUpsert && c.Plugin != nil {
				n.plugins[c.ID] = *c.Plugin
			}
		case config.KindSettings:
			if c.Settings != nil {
				n.Settings = *c.Settings
			}
		default:
			// Unknown kinds come from a newer control plane: ignore them.
		}
		if err != nil {
			return nil, err
		}
	}
	return &n, nil
}

// writer changes a table under construction (Build, or Apply's copy),
// copying each shard, and the small maps, before its first write.
type writer struct {
	t                      *Table
	shares                 cow[[32]byte, *Share]
	shareByID              cow[string, [32]byte]
	services               cow[string, *config.Service]
	subdomains             cow[string, string]
	agents                 cow[string, *Agent]
	agentSvcs              cow[string, []string]
	attached               cow[string, int32]
	ownsEdges, ownsPlugins bool
}

func newWriter(t *Table) *writer {
	w := &writer{t: t}
	w.shares.m, w.shareByID.m, w.services.m = &t.shares, &t.shareByID, &t.services
	w.subdomains.m, w.agents.m, w.agentSvcs.m = &t.subdomains, &t.agents, &t.agentSvcs
	w.attached.m = &t.attached
	return w
}

func (w *writer) ownEdges() {
	if !w.ownsEdges {
		w.ownsEdges, w.t.edges = true, maps.Clone(w.t.edges)
	}
}

func (w *writer) ownPlugins() {
	if !w.ownsPlugins {
		w.ownsPlugins, w.t.plugins = true, maps.Clone(w.t.plugins)
	}
}

func (w *writer) putService(s *config.Service) error {
	if s.ID == "" {
		return errors.New("routes: service without id")
	}
	w.delService(s.ID)
	c := *s
	w.services.put(strShard(s.ID), s.ID, &c)
	if s.IsPublic && s.Subdomain != "" {
		w.subdomains.put(strShard(s.Subdomain), s.Subdomain, s.ID)
	}
	i := strShard(s.AgentID)
	ids, _ := w.t.agentSvcs.get(i, s.AgentID)
	w.agentSvcs.put(i, s.AgentID, append(ids[:len(ids):len(ids)], s.ID)) // a new array: ids may be shared
	return nil
}

func (w *writer) delService(id string) {
	old, ok := w.t.services.get(strShard(id), id)
	if !ok {
		return
	}
	if sub := old.Subdomain; sub != "" {
		if cur, _ := w.t.subdomains.get(strShard(sub), sub); cur == id {
			w.subdomains.del(strShard(sub), sub)
		}
	}
	w.services.del(strShard(id), id)
	i := strShard(old.AgentID)
	ids, _ := w.t.agentSvcs.get(i, old.AgentID)
	rest := make([]string, 0, len(ids))
	for _, sid := range ids {
		if sid != id {
			rest = append(rest, sid)
		}
	}
	if len(rest) == 0 {
		w.agentSvcs.del(i, old.AgentID)
	} else {
		w.agentSvcs.put(i, old.AgentID, rest)
	}
}

func (w *writer) putShare(s *config.Share) error {
	raw, err := hex.DecodeString(s.TokenHash)
	if err != nil || len(raw) != sha256.Size {
		return fmt.Errorf("routes: share %s: bad token hash", s.ID)
	}
	sh := &Share{Share: *s} //nolint:govet // fresh, never copied after use
	for _, c := range s.AllowedIPs {
		p, err := parsePrefix(c)
		if err != nil {
			return fmt.Errorf("routes: share %s: %w", s.ID, err)
		}
		sh.Prefixes = append(sh.Prefixes, p)
	}
	w.delShare(s.ID)
	var h [32]byte
	copy(h[:], raw)
	if old, ok := w.t.shares.get(hashShard(&h), h); ok {
		// Another share with this token hash (a control plane's mistake):
		// the newer one replaces it in every index, not only by token.
		w.delShare(old.ID)
	}
	w.shares.put(hashShard(&h), h, sh)
	w.shareByID.put(strShard(s.ID), s.ID, h)
	w.attach(sh, 1)
	return nil
}

func (w *writer) delShare(id string) {
	i := strShard(id)
	if h, ok := w.t.shareByID.get(i, id); ok {
		if old, ok := w.t.shares.get(hashShard(&h), h); ok {
			w.attach(old, -1)
		}
		w.shares.del(hashShard(&h), h)
		w.shareByID.del(i, id)
	}
}

// attach adds d to the attachment count of each plugin sh's chain names
// (once per plugin, whatever the number of times the chain names it). A
// revoked share counts for none: its requests are refused before the chain.
func (w *writer) attach(sh *Share, d int32) {
	if sh.Revoked {
		return
	}
	ps := sh.Plugins
next:
	for i := range ps {
		id := ps[i].PluginID
		for j := range i {
			if ps[j].PluginID == id {
				continue next
			}
		}
		k := strShard(id)
		n, _ := w.t.attached.get(k, id)
		if n += d; n > 0 {
			w.attached.put(k, id, n)
		} else {
			w.attached.del(k, id)
		}
	}
}

func parsePrefix(s string) (netip.Prefix, error) {
	if p, err := netip.ParsePrefix(s); err == nil {
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("bad CIDR %q", s)
	}
	return netip.PrefixFrom(a, a.BitLen()), nil
}

func (w *writer) putAgent(a *config.Agent) error {
	ag := &Agent{ID: a.ID, WorkspaceID: a.WorkspaceID, Name: a.Name, ExpiresAt: a.TokenExpiresAt, Revoked: a.Revoked}
	if a.PublicKey == "" && a.TokenHash == "" {
		return fmt.Errorf("routes: agent %s: no public key or token hash", a.ID)
	}
	for _, f := range []struct {
		hex  string
		dst  *[32]byte
		what string
	}{{a.PublicKey, &ag.Pub, "public key"}, {a.TokenHash, &ag.Key, "token hash"}} {
		if f.hex == "" {
			continue
		}
		raw, err := hex.DecodeString(f.hex)
		if err != nil || len(raw) != 32 {
			return fmt.Errorf("routes: agent %s: bad %s", a.ID, f.what)
		}
		copy(f.dst[:], raw)
	}
	w.agents.put(strShard(a.ID), a.ID, ag)
	return nil
}

// ShareByToken finds a share by its URL token.
func (t *Table) ShareByToken(token []byte) (*Share, bool) {
	h := sha256.Sum256(token)
	return t.shares.get(hashShard(&h), h)
}

// ShareByID finds a share by its id.
func (t *Table) ShareByID(id string) (*Share, bool) {
	h, ok := t.shareByID.get(strShard(id), id)
	if !ok {
		return nil, false
	}
	return t.shares.get(hashShard(&h), h)
}

// HasShare reports whether the table holds the share with this id.
func (t *Table) HasShare(id string) bool {
	_, ok := t.shareByID.get(strShard(id), id)
	return ok
}

// Service returns a service by id.
func (t *Table) Service(id string) (*config.Service, bool) {
	return t.services.get(strShard(id), id)
}

// Services returns every service.
func (t *Table) Services() []*config.Service {
	out := make([]*config.Service, 0, t.services.len())
	for _, s := range t.services.all() {
		out = append(out, s)
	}
	return out
}

// PublicService returns the public service with this subdomain.
func (t *Table) PublicService(sub string) (*config.Service, bool) {
	id, ok := t.subdomains.get(strShard(sub), sub)
	if !ok {
		return nil, false
	}
	return t.Service(id)
}

// Agent returns an agent's handshake key and validity.
func (t *Table) Agent(id string) (*Agent, bool) {
	return t.agents.get(strShard(id), id)
}

// AgentServices returns the services an agent exposes.
func (t *Table) AgentServices(agentID string) []*config.Service {
	ids, _ := t.agentSvcs.get(strShard(agentID), agentID)
	out := make([]*config.Service, 0, len(ids))
	for _, id := range ids {
		if s, ok := t.Service(id); ok {
			out = append(out, s)
		}
	}
	return out
}

// Edges returns every edge.
func (t *Table) Edges() []config.Edge {
	out := make([]config.Edge, 0, len(t.edges))
	for _, e := range t.edges {
		out = append(out, e)
	}
	return out
}

// Plugins returns every uploaded plugin.
func (t *Table) Plugins() []config.Plugin {
	out := make([]config.Plugin, 0, len(t.plugins))
	for _, p := range t.plugins {
		out = append(out, p)
	}
	return out
}

// AttachedPlugins returns the uploaded plugins that at least one share not
// revoked names: the ones an edge needs loaded.
func (t *Table) AttachedPlugins() []config.Plugin {
	var out []config.Plugin
	for id := range t.attached.all() {
		if p, ok := t.plugins[id]; ok {
			out = append(out, p)
		}
	}
	return out
}

// Plugin returns a plugin's metadata.
func (t *Table) Plugin(id string) (config.Plugin, bool) {
	p, ok := t.plugins[id]
	return p, ok
}

// Counts reports the table's sizes.
func (t *Table) Counts() (shares, services, agents int) {
	return t.shares.len(), t.services.len(), t.agents.len()
}

// Snapshot rebuilds the full snapshot this table was built from, for
// persisting the last good state.
func (t *Table) Snapshot() *config.Snapshot {
	s := &config.Snapshot{Epoch: t.Epoch, Version: t.Version, Settings: t.Settings,
		Shares: make([]config.Share, 0, t.shares.len()), Services: make([]config.Service, 0, t.services.len()),
		Agents: make([]config.Agent, 0, t.agents.len()), Edges: t.Edges(), Plugins: make([]config.Plugin, 0, len(t.plugins))}
	for _, sh := range t.shares.all() {
		s.Shares = append(s.Shares, sh.Share)
	}
	for _, sv := range t.services.all() {
		s.Services = append(s.Services, *sv)
	}
	var zero [32]byte
	hexOr := func(k [32]byte) string {
		if k == zero {
			return ""
		}
		return hex.EncodeToString(k[:])
	}
	for _, a := range t.agents.all() {
		s.Agents = append(s.Agents, config.Agent{ID: a.ID, WorkspaceID: a.WorkspaceID, Name: a.Name,
			PublicKey: hexOr(a.Pub), TokenHash: hexOr(a.Key), TokenExpiresAt: a.ExpiresAt, Revoked: a.Revoked})
	}
	for _, p := range t.plugins {
		s.Plugins = append(s.Plugins, p)
	}
	return s
}
