package api

import (
	"fmt"
	"slices"
	"time"

	"github.com/google/uuid"

	"github.com/privateconnect/pc/control/push"
	"github.com/privateconnect/pc/control/store"
)

type createKeyRequest struct {
	Name            string     `json:"name" api:"required"`
	Scopes          *[]string  `json:"scopes"`
	AllowedIPRanges *[]string  `json:"allowedIpRanges"`
	ExpiresAt       *time.Time `json:"expiresAt"`
}

type apiKeyView struct {
	ID              string     `json:"id"`
	Name            string     `json:"name"`
	KeyPrefix       string     `json:"keyPrefix"`
	Scopes          []string   `json:"scopes"`
	AllowedIPRanges []string   `json:"allowedIpRanges"`
	CreatedAt       time.Time  `json:"createdAt"`
	LastUsedAt      *time.Time `json:"lastUsedAt"`
	LastUsedIP      *string    `json:"lastUsedIp"`
	ExpiresAt       *time.Time `json:"expiresAt"`
}

type apiKeyCreatedView struct {
	ID              string     `json:"id"`
	Name            string     `json:"name"`
	Key             string     `json:"key"`
	KeyPrefix       string     `json:"keyPrefix"`
	Scopes          []string   `json:"scopes"`
	AllowedIPRanges []string   `json:"allowedIpRanges"`
	CreatedAt       time.Time  `json:"createdAt"`
	ExpiresAt       *time.Time `json:"expiresAt"`
}

func (a *API) keyView(k *store.APIKey) apiKeyView {
	v := apiKeyView{ID: k.ID, Name: k.Name, KeyPrefix: k.KeyPrefix, Scopes: nonNil(k.Scopes), AllowedIPRanges: nonNil(k.AllowedIPRanges),
		CreatedAt: k.CreatedAt, LastUsedAt: k.LastUsedAt, LastUsedIP: strPtr(k.LastUsedIP), ExpiresAt: apiTimePtr(k.ExpiresAt)}
	if u, ok := a.usage.get(k.ID); ok && (v.LastUsedAt == nil || u.at.After(*v.LastUsedAt)) {
		at := u.at
		v.LastUsedAt, v.LastUsedIP = &at, strPtr(u.ip)
	}
	return v
}

// newKey builds a key record and its plain text.
func newKey(ws, name string, scopes, ranges []string, expires *time.Time, now time.Time) (store.APIKey, string) {
	plain := "pc_" + push.NewToken(24)
	return store.APIKey{ID: uuid.NewString(), WorkspaceID: ws, Name: name, KeyHash: HashSecret(plain), KeyPrefix: plain[:11],
		Scopes: scopes, AllowedIPRanges: ranges, ExpiresAt: expires, CreatedAt: now}, plain
}

func createdKeyView(k *store.APIKey, plain string) apiKeyCreatedView {
	return apiKeyCreatedView{ID: k.ID, Name: k.Name, Key: plain, KeyPrefix: k.KeyPrefix, Scopes: k.Scopes,
		AllowedIPRanges: k.AllowedIPRanges, CreatedAt: k.CreatedAt, ExpiresAt: apiTimePtr(k.ExpiresAt)}
}

func (a *API) createKey(c *call) (any, error) {
	var req createKeyRequest
	if err := c.decode(&req); err != nil {
		return nil, err
	}
	var v validator
	v.displayName(req.Name, "name", 1, 50)
	scopes := []string{store.ScopeWrite}
	if req.Scopes != nil {
		scopes = []string{}
		v.check(len(*req.Scopes) > 0, "scopes", "must list at least one of read, write, admin")
		for _, s := range *req.Scopes {
			if v.oneOf(s, "scopes", store.ScopeRead, store.ScopeWrite, store.ScopeAdmin) && !slices.Contains(scopes, s) {
				scopes = append(scopes, s)
			}
		}
	}
	ranges := []string{}
	if req.AllowedIPRanges != nil {
		ranges = v.cidrs(*req.AllowedIPRanges, "allowedIpRanges")
	}
	var expires *time.Time
	if req.ExpiresAt != nil {
		t := apiTime(*req.ExpiresAt)
		v.check(t.After(c.now), "expiresAt", "must be in the future")
		expires = &t
	}
	if err := v.err(); err != nil {
		return nil, err
	}
	k, plain := newKey(c.ws, req.Name, scopes, ranges, expires, c.now)
	if err := a.kv.Update(c.ctx, func(tx store.Tx) error { return store.CreateAPIKey(tx, &k) }); err != nil {
		return nil, err
	}
	c.resource = k.ID
	return createdKeyView(&k, plain), nil
}

func (a *API) listKeys(c *call) (any, error) {
	after, limit, err := c.page()
	if err != nil {
		return nil, err
	}
	var keys []store.APIKey
	var next string
	err = a.kv.View(c.ctx, func(tx store.Tx) error {
		var err error
		keys, next, err = store.ListAPIKeys(tx, c.ws, after, limit, c.now)
		return err
	})
	if err != nil {
		return nil, err
	}
	c.setNext(next)
	out := make([]apiKeyView, 0, len(keys))
	for i := range keys {
		out = append(out, a.keyView(&keys[i])) // active keys only (api-v1.md)
	}
	return out, nil
}

func (a *API) activeKey(c *call, id string) (*store.APIKey, error) {
	var k *store.APIKey
	err := a.kv.View(c.ctx, func(tx store.Tx) error {
		var err error
		k, err = store.GetAPIKey(tx, c.ws, id)
		return err
	})
	if err == nil && k.RevokedAt != nil {
		return nil, notFound("API key")
	}
	return k, err
}

func (a *API) getKey(c *call) (any, error) {
	k, err := a.activeKey(c, c.param("id"))
	if err != nil {
		return nil, err
	}
	return a.keyView(k), nil
}

type ipRestrictionsRequest struct {
	AllowedIPRanges *[]string `json:"allowedIpRanges" api:"required"`
}

func (a *API) setKeyIPs(c *call) (any, error) {
	var req ipRestrictionsRequest
	if err := c.decode(&req); err != nil {
		return nil, err
	}
	if req.AllowedIPRanges == nil {
		return nil, invalidField("allowedIpRanges", "is required (an empty list removes the restriction)")
	}
	var v validator
	ranges := v.cidrs(*req.AllowedIPRanges, "allowedIpRanges")
	if err := v.err(); err != nil {
		return nil, err
	}
	var k *store.APIKey
	err := a.kv.Update(c.ctx, func(tx store.Tx) error {
		var err error
		if k, err = store.GetAPIKey(tx, c.ws, c.param("id")); err != nil {
			return err
		}
		if k.RevokedAt != nil {
			return notFound("API key")
		}
		k.AllowedIPRanges = ranges
		return store.PutAPIKey(tx, k)
	})
	if err != nil {
		return nil, err
	}
	a.keys.invalidate(k.KeyHash)
	c.resource = k.ID
	return a.keyView(k), nil
}

func (a *API) revokeKey(c *call) (any, error) {
	var k *store.APIKey
	err := a.kv.Update(c.ctx, func(tx store.Tx) error {
		if err := lastAdminKey(tx, c.ws, c.param("id"), c.now); err != nil {
			return err
		}
		var err error
		k, err = store.RevokeAPIKey(tx, c.ws, c.param("id"), c.now)
		return err
	})
	if err != nil {
		return nil, err
	}
	a.keys.invalidate(k.KeyHash)
	c.resource = k.ID
	return map[string]any{"id": k.ID, "revoked": true, "revokedAt": k.RevokedAt}, nil
}

// lastAdminKey refuses to revoke the workspace's last usable admin key:
// nothing could create another one (for the default workspace, not even a
// restart: the bootstrap key is only made for an empty store).
func lastAdminKey(tx store.Tx, ws, id string, now time.Time) error {
	k, err := store.GetAPIKey(tx, ws, id)
	if err != nil || !usableAdmin(k, now) {
		return nil // RevokeAPIKey answers for a missing or revoked key
	}
	keys, _, err := store.ListAPIKeys(tx, ws, "", 0, now)
	if err != nil {
		return err
	}
	for i := range keys {
		if keys[i].ID != id && usableAdmin(&keys[i], now) {
			return nil
		}
	}
	return newError(409, "this is the workspace's last admin key: create another admin key before revoking it")
}

func usableAdmin(k *store.APIKey, now time.Time) bool {
	return k.Active(now) && slices.Contains(k.Scopes, store.ScopeAdmin)
}

type workspaceUsage struct {
	Agents   int `json:"agents"`
	Services int `json:"services"`
	Shares   int `json:"shares"`
	Webhooks int `json:"webhooks"`
	Plugins  int `json:"plugins"`
}

type workspaceLimits struct {
	MaxServices *int `json:"maxServices"`
	MaxShares   *int `json:"maxShares"`
}

type workspaceView struct {
	ID        string          `json:"id"`
	Name      string          `json:"name"`
	CreatedAt time.Time       `json:"createdAt"`
	Usage     workspaceUsage  `json:"usage"`
	Limits    workspaceLimits `json:"limits"`
}

func intPtr(n int) *int {
	if n <= 0 {
		return nil
	}
	return &n
}

func (a *API) getWorkspace(c *call) (any, error) {
	var out workspaceView
	err := a.kv.View(c.ctx, func(tx store.Tx) error {
		w, err := store.GetWorkspace(tx, c.ws)
		if err != nil {
			return err
		}
		out = workspaceView{ID: w.ID, Name: w.Name, CreatedAt: w.CreatedAt,
			Limits: workspaceLimits{MaxServices: intPtr(w.MaxServices), MaxShares: intPtr(w.MaxShares)}}
		u := &out.Usage
		if u.Agents, err = store.Count(tx, c.ws, "agent"); err != nil {
			return err
		}
		if u.Services, err = store.Count(tx, c.ws, "svc"); err != nil {
			return err
		}
		shares, _, err := store.ListShares(tx, c.ws, "", 0, func(s *store.Share) bool { return s.Active(c.now) })
		if err != nil {
			return err
		}
		u.Shares = len(shares)
		if u.Webhooks, err = store.Count(tx, c.ws, "webhook"); err != nil {
			return err
		}
		u.Plugins, err = store.Count(tx, c.ws, "plugin")
		return err
	})
	return out, err
}

type createWorkspaceRequest struct {
	Name string `json:"name" api:"required"`
	// MaxServices and MaxShares limit the workspace (0: no limit; absent:
	// the control plane's default, pcd control --workspace-max-*).
	MaxServices *int `json:"maxServices,omitempty"`
	MaxShares   *int `json:"maxShares,omitempty"`
}

// WorkspaceLimits bound what a workspace may hold (0: no limit).
type WorkspaceLimits struct {
	MaxServices int
	MaxShares   int
}

// maxLimit bounds the limits a request may set.
const maxLimit = 1_000_000

// checkServiceLimit refuses a new service beyond the workspace's maxServices.
func checkServiceLimit(tx store.Tx, ws string) error {
	w, err := store.GetWorkspace(tx, ws)
	if err != nil || w.MaxServices <= 0 {
		return err
	}
	n, err := store.Count(tx, ws, "svc")
	if err != nil {
		return err
	}
	if n >= w.MaxServices {
		return forbidden(fmt.Sprintf("workspace limit reached: at most %d services (delete one first)", w.MaxServices))
	}
	return nil
}

// checkShareLimit refuses a new share beyond the workspace's maxShares
// active shares (revoked and expired ones do not count).
func checkShareLimit(tx store.Tx, ws string, now time.Time) error {
	w, err := store.GetWorkspace(tx, ws)
	if err != nil || w.MaxShares <= 0 {
		return err
	}
	active, _, err := store.ListShares(tx, ws, "", 0, func(s *store.Share) bool { return s.Active(now) })
	if err != nil {
		return err
	}
	if len(active) >= w.MaxShares {
		return forbidden(fmt.Sprintf("workspace limit reached: at most %d active shares (revoke one first)", w.MaxShares))
	}
	return nil
}

type workspaceCreatedView struct {
	Workspace struct {
		ID        string    `json:"id"`
		Name      string    `json:"name"`
		CreatedAt time.Time `json:"createdAt"`
	} `json:"workspace"`
	APIKey apiKeyCreatedView `json:"apiKey"`
}

// createWorkspace makes a new tenant with its first admin key (admin keys
// of workspace default only).
func (a *API) createWorkspace(c *call) (any, error) {
	if err := a.requireDefaultAdmin(c); err != nil {
		return nil, err
	}
	var req createWorkspaceRequest
	if err := c.decode(&req); err != nil {
		return nil, err
	}
	limits := a.opts.WorkspaceLimits
	var v validator
	v.displayName(req.Name, "name", 1, 100)
	if req.MaxServices != nil && v.intRange(*req.MaxServices, "maxServices", 0, maxLimit) {
		limits.MaxServices = *req.MaxServices
	}
	if req.MaxShares != nil && v.intRange(*req.MaxShares, "maxShares", 0, maxLimit) {
		limits.MaxShares = *req.MaxShares
	}
	if err := v.err(); err != nil {
		return nil, err
	}
	w := store.Workspace{ID: uuid.NewString(), Name: req.Name, CreatedAt: c.now,
		MaxServices: limits.MaxServices, MaxShares: limits.MaxShares}
	k, plain := newKey(w.ID, "admin", []string{store.ScopeAdmin}, []string{}, nil, c.now)
	err := a.kv.Update(c.ctx, func(tx store.Tx) error {
		if err := store.CreateWorkspace(tx, &w); err != nil {
			return err
		}
		return store.CreateAPIKey(tx, &k)
	})
	if err != nil {
		return nil, err
	}
	c.resource = w.ID
	var out workspaceCreatedView
	out.Workspace.ID, out.Workspace.Name, out.Workspace.CreatedAt = w.ID, w.Name, w.CreatedAt
	out.APIKey = createdKeyView(&k, plain)
	return out, nil
}

type statusView struct {
	Agents        int   `json:"agents"`
	OnlineAgents  int   `json:"onlineAgents"`
	Services      int   `json:"services"`
	ActiveShares  int   `json:"activeShares"`
	Edges         int   `json:"edges"`
	OnlineEdges   int   `json:"onlineEdges"`
	ConfigVersion int64 `json:"configVersion"`
}

// status counts the workspace's resources and the platform's edges.
func (a *API) status(c *call) (any, error) {
	var out statusView
	err := a.kv.View(c.ctx, func(tx store.Tx) error {
		agents, _, err := store.ListAgents(tx, c.ws, "", 0, func(ag *store.Agent) bool {
			out.Agents++
			if a.hub.Presence.AgentOnline(ag.ID) {
				out.OnlineAgents++
			}
			return false
		})
		_ = agents
		if err != nil {
			return err
		}
		if out.Services, err = store.Count(tx, c.ws, "svc"); err != nil {
			return err
		}
		_, _, err = store.ListShares(tx, c.ws, "", 0, func(s *store.Share) bool {
			if s.Active(c.now) {
				out.ActiveShares++
			}
			return false
		})
		if err != nil {
			return err
		}
		edges, _, err := store.ListEdges(tx, "", 0)
		if err != nil {
			return err
		}
		out.Edges = len(edges)
		for _, e := range edges {
			if _, on := a.hub.Presence.Edge(e.ID); on {
				out.OnlineEdges++
			}
		}
		return nil
	})
	out.ConfigVersion = a.hub.Version()
	return out, err
}

type auditView struct {
	ID         string    `json:"id"`
	Type       string    `json:"type"`
	Event      *string   `json:"event"`
	KeyID      *string   `json:"keyId"`
	Method     *string   `json:"method"`
	Route      *string   `json:"route"`
	ResourceID *string   `json:"resourceId"`
	AgentID    *string   `json:"agentId"`
	EdgeID     *string   `json:"edgeId"`
	IPAddress  *string   `json:"ipAddress"`
	Result     *string   `json:"result"`
	Details    *string   `json:"details"`
	CreatedAt  time.Time `json:"createdAt"`
}

func auditViewOf(e *store.AuditEvent) auditView {
	return auditView{ID: e.ID, Type: e.Type, Event: strPtr(e.Event), KeyID: strPtr(e.KeyID), Method: strPtr(e.Method),
		Route: strPtr(e.Route), ResourceID: strPtr(e.ResourceID), AgentID: strPtr(e.AgentID), EdgeID: strPtr(e.EdgeID),
		IPAddress: strPtr(e.IP), Result: strPtr(e.Result), Details: strPtr(e.Details), CreatedAt: e.CreatedAt}
}

// listAudit pages through the workspace's audit log, newest first.
func (a *API) listAudit(c *call) (any, error) {
	after, limit, err := c.page()
	if err != nil {
		return nil, err
	}
	typ := c.query("type")
	var since time.Time
	if s := c.query("since"); s != "" {
		if since, err = time.Parse(time.RFC3339, s); err != nil {
			return nil, invalidField("since", "must be an RFC 3339 time, e.g. 2026-03-02T10:00:00Z")
		}
	}
	var evs []store.AuditEvent
	var next string
	err = a.kv.View(c.ctx, func(tx store.Tx) error {
		var err error
		evs, next, err = store.ListAuditSince(tx, c.ws, since, after, limit, func(e *store.AuditEvent) bool {
			return typ == "" || e.Type == typ || e.Event == typ
		})
		return err
	})
	if err != nil {
		return nil, err
	}
	c.setNext(next)
	out := make([]auditView, 0, len(evs))
	for i := range evs {
		out = append(out, auditViewOf(&evs[i]))
	}
	return out, nil
}
