package api

import (
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/privateconnect/pc/control/push"
	"github.com/privateconnect/pc/control/store"
	"github.com/privateconnect/pc/control/webhooks"
	"github.com/privateconnect/pc/internal/tunnel"
)

// opt is an optional JSON field that tells absent, null and a value apart.
type opt[T any] struct {
	Set, Null bool
	V         T
}

func (o *opt[T]) UnmarshalJSON(b []byte) error {
	o.Set = true
	if string(b) == "null" {
		o.Null = true
		return nil
	}
	return json.Unmarshal(b, &o.V)
}

const (
	defaultAgentTTL = 2592000 // 30 days, seconds
	minAgentTTL     = 300
)

type provisionRequest struct {
	ClientType *string `json:"clientType"`
	Name       *string `json:"name"`
	Label      *string `json:"label"`
	TTLSeconds *int    `json:"ttlSeconds"`
}

type edgeAddr struct {
	ID         string `json:"id"`
	TunnelAddr string `json:"tunnelAddr"`
}

type provisionResponse struct {
	AgentID       string     `json:"agentId"`
	Token         string     `json:"token"`
	ExpiresAt     time.Time  `json:"expiresAt"`
	WorkspaceID   string     `json:"workspaceId"`
	WorkspaceName string     `json:"workspaceName"`
	Edges         []edgeAddr `json:"edges"`
}

func agentEvent(ag *store.Agent, event, ip, details string, at time.Time) *store.AuditEvent {
	return &store.AuditEvent{ID: uuid.NewString(), WorkspaceID: ag.WorkspaceID, Type: "agent." + event, Event: event,
		AgentID: ag.ID, IP: ip, Details: details, CreatedAt: at}
}

func (a *API) provisionAgent(c *call) (any, error) {
	var req provisionRequest
	if err := c.decode(&req); err != nil {
		return nil, err
	}
	var v validator
	ag := store.Agent{ID: uuid.NewString(), WorkspaceID: c.ws, ClientType: "cli", Label: "default", CreatedAt: c.now}
	if req.ClientType != nil && v.oneOf(*req.ClientType, "clientType", "cli", "sdk", "ci", "custom") {
		ag.ClientType = *req.ClientType
	}
	if req.Name != nil && v.displayName(*req.Name, "name", 0, 100) {
		ag.Name = *req.Name
	}
	if req.Label != nil && v.displayName(*req.Label, "label", 0, 100) && *req.Label != "" {
		ag.Label = *req.Label
	}
	ttl := defaultAgentTTL
	if req.TTLSeconds != nil && v.intRange(*req.TTLSeconds, "ttlSeconds", minAgentTTL, defaultAgentTTL) {
		ttl = *req.TTLSeconds
	}
	if err := v.err(); err != nil {
		return nil, err
	}
	if ag.Name == "" {
		ag.Name = "agent-" + ag.ID[:8]
	}
	token := push.NewToken(32)
	setAgentToken(&ag, token)
	ag.TokenExpiresAt = c.now.Add(time.Duration(ttl) * time.Second)
	if ttl != defaultAgentTTL {
		ag.TokenTTLSeconds = ttl
	}
	var ws *store.Workspace
	var edges []store.Edge
	err := a.kv.Update(c.ctx, func(tx store.Tx) error {
		var err error
		if ws, err = store.GetWorkspace(tx, c.ws); err != nil {
			return err
		}
		if err := store.PutAgent(tx, &ag); err != nil {
			return err
		}
		if edges, _, err = store.ListEdges(tx, "", 0); err != nil {
			return err
		}
		return store.AppendAudit(tx, agentEvent(&ag, "PROVISIONED", clientAddr(c.ctx).String(), "clientType "+ag.ClientType, c.now))
	})
	if err != nil {
		return nil, err
	}
	c.resource = ag.ID
	a.publish(c, push.Agent(c.ws, ag.ID))
	out := provisionResponse{AgentID: ag.ID, Token: token, ExpiresAt: ag.TokenExpiresAt, WorkspaceID: ws.ID, WorkspaceName: ws.Name, Edges: []edgeAddr{}}
	sortEdges(edges)
	for _, e := range edges {
		out.Edges = append(out.Edges, edgeAddr{ID: e.ID, TunnelAddr: e.TunnelAddr})
	}
	return out, nil
}

type registerAgentRequest struct {
	AgentID string  `json:"agentId" api:"required"`
	Token   string  `json:"token" api:"required"`
	Name    *string `json:"name"`
	Label   *string `json:"label"`
}

type registerAgentResponse struct {
	ID          string    `json:"id"`
	Name        string    `json:"name"`
	Label       string    `json:"label"`
	WorkspaceID string    `json:"workspaceId"`
	CreatedAt   time.Time `json:"createdAt"`
}

// registerAgent upserts an agent by id. For an existing agent the token
// replaces the stored one (the caller holds a write key of its workspace).
func (a *API) registerAgent(c *call) (any, error) {
	var req registerAgentRequest
	if err := c.decode(&req); err != nil {
		return nil, err
	}
	var v validator
	v.uuid(req.AgentID, "agentId")
	v.strLen(req.Token, "token", 32, 512)
	v.optDisplayName(req.Name, "name", 0, 100)
	v.optDisplayName(req.Label, "label", 0, 100)
	if err := v.err(); err != nil {
		return nil, err
	}
	var ag *store.Agent
	first := false
	hash := HashSecret(req.Token)
	err := a.kv.Update(c.ctx, func(tx store.Tx) error {
		var err error
		ag, err = store.GetAgent(tx, c.ws, req.AgentID)
		switch {
		case err == nil:
			if subtle.ConstantTimeCompare([]byte(ag.TokenHash), []byte(hash)) != 1 {
				setAgentToken(ag, req.Token)
				ag.TokenExpiresAt = c.now.Add(defaultAgentTTL * time.Second)
				ag.TokenTTLSeconds = 0
			} else if ag.PublicKey == "" {
				setAgentToken(ag, req.Token) // a token from before tunnel v2: derive its public key
			}
		case isNotFoundErr(err):
			ag = &store.Agent{ID: req.AgentID, WorkspaceID: c.ws, ClientType: "cli", Label: "default", Name: "agent-" + req.AgentID[:8],
				TokenExpiresAt: c.now.Add(defaultAgentTTL * time.Second), CreatedAt: c.now}
			setAgentToken(ag, req.Token)
		default:
			return err
		}
		if req.Name != nil && *req.Name != "" {
			ag.Name = *req.Name
		}
		if req.Label != nil && *req.Label != "" {
			ag.Label = *req.Label
		}
		first = !ag.Registered
		ag.Registered = true
		if err := store.PutAgent(tx, ag); err != nil {
			return err
		}
		if err := store.AppendAudit(tx, agentEvent(ag, "REGISTERED", clientAddr(c.ctx).String(), "", c.now)); err != nil || !first {
			return err
		}
		return a.emit(tx, c.ws, webhooks.AgentRegistered, map[string]any{"agentId": ag.ID, "name": ag.Name, "label": ag.Label})
	})
	if err != nil {
		return nil, err
	}
	c.resource = ag.ID
	a.publish(c, push.Agent(c.ws, ag.ID))
	// 201 for a new agent and an update alike: api-v1.md gives this upsert one
	// status (services/register has two).
	return registerAgentResponse{ID: ag.ID, Name: ag.Name, Label: ag.Label, WorkspaceID: ag.WorkspaceID, CreatedAt: ag.CreatedAt}, nil
}

func (a *API) listAgents(c *call) (any, error) {
	after, limit, err := c.page()
	if err != nil {
		return nil, err
	}
	online := c.query("online")
	if online != "" && online != "true" && online != "false" {
		return nil, invalidField("online", "must be true or false")
	}
	label, capability := c.query("label"), c.query("capability")
	var agents []store.Agent
	var next string
	counts := map[string]int{}
	err = a.kv.View(c.ctx, func(tx store.Tx) error {
		var err error
		agents, next, err = store.ListAgents(tx, c.ws, after, limit, func(ag *store.Agent) bool {
			if label != "" && ag.Label != label {
				return false
			}
			if capability != "" && !hasCapability(ag, capability) {
				return false
			}
			if online != "" && a.hub.Presence.AgentOnline(ag.ID) != (online == "true") {
				return false
			}
			return true
		})
		if err != nil {
			return err
		}
		counts, err = serviceCounts(tx, c.ws)
		return err
	})
	if err != nil {
		return nil, err
	}
	c.setNext(next)
	out := make([]agentView, 0, len(agents))
	for i := range agents {
		out = append(out, a.agentView(&agents[i], counts[agents[i].ID]))
	}
	return out, nil
}

func hasCapability(ag *store.Agent, name string) bool {
	for _, c := range ag.Capabilities {
		if c.Name == name {
			return true
		}
	}
	return false
}

func serviceCounts(tx store.Tx, ws string) (map[string]int, error) {
	counts := map[string]int{}
	_, _, err := store.ListServices(tx, ws, "", 0, func(s *store.Service) bool {
		counts[s.AgentID]++
		return false
	})
	return counts, err
}

func (a *API) getAgent(c *call) (any, error) {
	id := c.param("id")
	var ag *store.Agent
	var svcs []store.Service
	err := a.kv.View(c.ctx, func(tx store.Tx) error {
		var err error
		if ag, err = store.GetAgent(tx, c.ws, id); err != nil {
			return err
		}
		svcs, _, err = store.ListServices(tx, c.ws, "", 0, func(s *store.Service) bool { return s.AgentID == id })
		return err
	})
	if err != nil {
		return nil, err
	}
	out := agentDetailView{agentView: a.agentView(ag, len(svcs)), Services: make([]serviceView, 0, len(svcs))}
	for i := range svcs {
		out.Services = append(out.Services, a.serviceView(&svcs[i]))
	}
	return out, nil
}

type deleteAgentResponse struct {
	Deleted struct {
		Services int `json:"services"`
		Shares   int `json:"shares"`
	} `json:"deleted"`
}

// deleteAgent removes the agent, its services and their shares; the pushed
// agent delete makes every edge drop its sessions.
func (a *API) deleteAgent(c *call) (any, error) {
	id := c.param("id")
	var svcs []store.Service
	var shares []store.Share
	var out deleteAgentResponse
	err := a.kv.Update(c.ctx, func(tx store.Tx) error {
		ag, err := store.GetAgent(tx, c.ws, id)
		if err != nil {
			return err
		}
		svcs, _, err = store.ListServices(tx, c.ws, "", 0, func(s *store.Service) bool { return s.AgentID == id })
		if err != nil {
			return err
		}
		shares = shares[:0]
		for _, s := range svcs {
			sh, _, err := store.ListServiceShares(tx, c.ws, s.ID, "", 0)
			if err != nil {
				return err
			}
			shares = append(shares, sh...)
		}
		out.Deleted.Services, out.Deleted.Shares, err = store.DeleteAgent(tx, c.ws, id, c.now)
		if err != nil {
			return err
		}
		if err := a.emitSharesRevoked(tx, c.ws, shares); err != nil {
			return err
		}
		for i := range svcs {
			if err := a.emitTunnelDeleted(tx, c.ws, &svcs[i]); err != nil {
				return err
			}
		}
		return a.emit(tx, c.ws, webhooks.AgentDeleted, map[string]any{"agentId": id, "name": ag.Name,
			"services": out.Deleted.Services, "shares": out.Deleted.Shares})
	})
	if err != nil {
		return nil, err
	}
	c.resource = id
	refs := []push.Ref{push.Agent(c.ws, id)}
	for _, s := range svcs {
		refs = append(refs, push.Service(c.ws, s.ID))
	}
	for _, sh := range shares {
		refs = append(refs, push.Share(c.ws, sh.ID))
	}
	a.publish(c, refs...)
	return out, nil
}

// publish pushes committed changes to the edges; a failure is logged (the
// hub then resyncs every edge with a snapshot).
func (a *API) publish(c *call, refs ...push.Ref) {
	if err := a.hub.Publish(c.ctx, refs...); err != nil {
		a.log.Error("config publish failed", "route", c.r.Path, "err", err)
	}
}

func isNotFoundErr(err error) bool {
	_, ok := err.(*store.NotFoundError)
	return ok || err == store.ErrNotFound
}

var _ = fmt.Sprintf

// setAgentToken stores what the control plane keeps of an agent token: its
// SHA-256 (API calls present the token) and the public half of the tunnel
// handshake key derived from it, the only credential edges receive.
func setAgentToken(ag *store.Agent, token string) {
	ag.TokenHash = HashSecret(token)
	pub := tunnel.AgentPublicKey(token)
	ag.PublicKey = hex.EncodeToString(pub[:])
}
