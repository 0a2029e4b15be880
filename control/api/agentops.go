package api

import (
	"crypto/subtle"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/privateconnect/pc/control/push"
	"github.com/privateconnect/pc/control/store"
)

type heartbeatRequest struct {
	AgentID string `json:"agentId" api:"required"`
	Token   string `json:"token" api:"required"`
}

type heartbeatResponse struct {
	LastSeenAt time.Time `json:"lastSeenAt"`
}

// agentByToken authenticates an agent by id and token (401 on any mismatch).
func agentByToken(tx store.Tx, id, token string, now time.Time) (*store.Agent, error) {
	ag, err := store.LookupAgent(tx, id)
	if isNotFoundErr(err) {
		return nil, unauthorized("invalid agent credentials")
	}
	if err != nil {
		return nil, err
	}
	if subtle.ConstantTimeCompare([]byte(ag.TokenHash), []byte(HashSecret(token))) != 1 {
		return nil, unauthorized("invalid agent credentials")
	}
	if !now.Before(ag.TokenExpiresAt) {
		return nil, &expiredToken{ag: ag}
	}
	return ag, nil
}

// expiredToken is a valid but expired agent token (401; audited EXPIRED).
type expiredToken struct{ ag *store.Agent }

func (e *expiredToken) Error() string { return "agent token expired" }

// Unwrap makes the client see a 401.
func (e *expiredToken) Unwrap() error {
	return unauthorized("agent token expired: provision the agent again")
}

// auditExpired records an EXPIRED event when err is an expired token.
func (a *API) auditExpired(c *call, err error) {
	var et *expiredToken
	if !errors.As(err, &et) {
		return
	}
	ev := agentEvent(et.ag, "EXPIRED", clientAddr(c.ctx).String(), "token expired at "+et.ag.TokenExpiresAt.Format(time.RFC3339), c.now)
	if e := a.kv.Update(c.ctx, func(tx store.Tx) error { return store.AppendAudit(tx, ev) }); e != nil {
		a.log.Warn("audit EXPIRED", "agent", et.ag.ID, "err", e)
	}
}

func (a *API) heartbeat(c *call) (any, error) {
	var req heartbeatRequest
	if err := c.decode(&req); err != nil {
		return nil, err
	}
	if req.AgentID == "" || req.Token == "" {
		return nil, unauthorized("invalid agent credentials")
	}
	err := a.kv.Update(c.ctx, func(tx store.Tx) error {
		ag, err := agentByToken(tx, req.AgentID, req.Token, c.now)
		if err != nil {
			return err
		}
		ag.LastSeenAt = &c.now
		ag.LastSeenIP = clientAddr(c.ctx).String()
		return store.PutAgent(tx, ag)
	})
	if err != nil {
		a.auditExpired(c, err)
		return nil, err
	}
	return heartbeatResponse{LastSeenAt: c.now}, nil
}

type rotateRequest struct {
	AgentID      string `json:"agentId" api:"required"`
	CurrentToken string `json:"currentToken" api:"required"`
}

type rotateResponse struct {
	Token     string    `json:"token"`
	ExpiresAt time.Time `json:"expiresAt"`
}

// rotateToken replaces an agent's token; the pushed agent change makes
// every edge refuse the old one within the propagation bound.
func (a *API) rotateToken(c *call) (any, error) {
	var req rotateRequest
	if err := c.decode(&req); err != nil {
		return nil, err
	}
	if req.AgentID == "" || req.CurrentToken == "" {
		return nil, unauthorized("invalid agent credentials")
	}
	token := push.NewToken(32)
	var ag *store.Agent
	err := a.kv.Update(c.ctx, func(tx store.Tx) error {
		var err error
		if ag, err = agentByToken(tx, req.AgentID, req.CurrentToken, c.now); err != nil {
			return err
		}
		setAgentToken(ag, token)
		// The new token lives as long as the agent's tokens were provisioned
		// to (a 5-minute CI token does not rotate into a 30-day one).
		ttl := ag.TokenTTLSeconds
		if ttl <= 0 {
			ttl = defaultAgentTTL
		}
		ag.TokenExpiresAt = c.now.Add(time.Duration(ttl) * time.Second)
		if err := store.PutAgent(tx, ag); err != nil {
			return err
		}
		return store.AppendAudit(tx, agentEvent(ag, "ROTATED", clientAddr(c.ctx).String(), "", c.now))
	})
	if err != nil {
		a.auditExpired(c, err)
		return nil, err
	}
	a.publish(c, push.Agent(ag.WorkspaceID, ag.ID))
	return rotateResponse{Token: token, ExpiresAt: ag.TokenExpiresAt}, nil
}

type agentAuditView struct {
	ID        string    `json:"id"`
	Event     string    `json:"event"`
	IPAddress *string   `json:"ipAddress"`
	EdgeID    *string   `json:"edgeId"`
	Details   *string   `json:"details"`
	CreatedAt time.Time `json:"createdAt"`
}

func (a *API) agentAuditLogs(c *call) (any, error) {
	after, limit, err := c.page()
	if err != nil {
		return nil, err
	}
	var evs []store.AuditEvent
	var next string
	err = a.kv.View(c.ctx, func(tx store.Tx) error {
		if _, err := store.GetAgent(tx, c.ws, c.param("id")); err != nil {
			return err
		}
		var err error
		evs, next, err = store.ListAgentAudit(tx, c.ws, c.param("id"), after, limit)
		return err
	})
	if err != nil {
		return nil, err
	}
	c.setNext(next)
	out := make([]agentAuditView, 0, len(evs))
	for _, e := range evs {
		out = append(out, agentAuditView{ID: e.ID, Event: e.Event, IPAddress: strPtr(e.IP), EdgeID: strPtr(e.EdgeID), Details: strPtr(e.Details), CreatedAt: e.CreatedAt})
	}
	return out, nil
}

type capabilitiesRequest struct {
	Capabilities []capabilityRequest `json:"capabilities" api:"required"`
}

type capabilityRequest struct {
	Name     string          `json:"name" api:"required"`
	Metadata json.RawMessage `json:"metadata"`
}

// setCapabilities upserts capabilities by name and returns the full list.
func (a *API) setCapabilities(c *call) (any, error) {
	var req capabilitiesRequest
	if err := c.decode(&req); err != nil {
		return nil, err
	}
	var v validator
	v.check(req.Capabilities != nil, "capabilities", "is required")
	v.check(len(req.Capabilities) <= 100, "capabilities", "must have at most 100 entries")
	for i, cp := range req.Capabilities {
		f := "capabilities[" + itoa(i) + "]"
		v.displayName(cp.Name, f+".name", 1, 100)
		md := strings.TrimSpace(string(cp.Metadata))
		v.check(md == "" || md == "null" || md[0] == '{', f+".metadata", "must be an object")
	}
	if err := v.err(); err != nil {
		return nil, err
	}
	var ag *store.Agent
	err := a.kv.Update(c.ctx, func(tx store.Tx) error {
		var err error
		if ag, err = store.GetAgent(tx, c.ws, c.param("id")); err != nil {
			return err
		}
		for _, cp := range req.Capabilities {
			md := cp.Metadata
			if s := strings.TrimSpace(string(md)); s == "" || s == "null" {
				md = nil
			}
			i := slices.IndexFunc(ag.Capabilities, func(x store.Capability) bool { return x.Name == cp.Name })
			if i >= 0 {
				ag.Capabilities[i].Metadata = md
			} else {
				ag.Capabilities = append(ag.Capabilities, store.Capability{Name: cp.Name, Metadata: md})
			}
		}
		if len(ag.Capabilities) > 200 {
			return invalidField("capabilities", "an agent may have at most 200 capabilities")
		}
		return store.PutAgent(tx, ag)
	})
	if err != nil {
		return nil, err
	}
	c.resource = ag.ID
	return capViews(ag.Capabilities), nil
}

type orchestrationService struct {
	ID       string `json:"id"`
	Name     string `json:"name"`
	Protocol string `json:"protocol"`
	Status   string `json:"status"`
}

type orchestrationView struct {
	ID           string                 `json:"id"`
	Name         string                 `json:"name"`
	Label        string                 `json:"label"`
	IsOnline     bool                   `json:"isOnline"`
	Capabilities []capabilityView       `json:"capabilities"`
	Services     []orchestrationService `json:"services"`
}

// orchestration lists the agents with their capabilities and services,
// online agents first (then by name), a page at a time.
func (a *API) orchestration(c *call) (any, error) {
	var agents []store.Agent
	var svcs []store.Service
	err := a.kv.View(c.ctx, func(tx store.Tx) error {
		var err error
		if agents, _, err = store.ListAgents(tx, c.ws, "", 0, nil); err != nil {
			return err
		}
		svcs, _, err = store.ListServices(tx, c.ws, "", 0, nil)
		return err
	})
	if err != nil {
		return nil, err
	}
	by := map[string][]orchestrationService{}
	for i := range svcs {
		s := &svcs[i]
		by[s.AgentID] = append(by[s.AgentID], orchestrationService{ID: s.ID, Name: s.Name, Protocol: s.Protocol, Status: a.serviceStatus(s)})
	}
	out := make([]orchestrationView, 0, len(agents))
	for i := range agents {
		ag := &agents[i]
		ss := by[ag.ID]
		if ss == nil {
			ss = []orchestrationService{}
		}
		out = append(out, orchestrationView{ID: ag.ID, Name: ag.Name, Label: ag.Label, IsOnline: a.hub.Presence.AgentOnline(ag.ID),
			Capabilities: capViews(ag.Capabilities), Services: ss})
	}
	slices.SortFunc(out, func(x, y orchestrationView) int { return strings.Compare(orchestrationKey(&x), orchestrationKey(&y)) })
	return pageOf(c, out, orchestrationKey)
}

// orchestrationKey orders agents online first, then by name (then id).
func orchestrationKey(v *orchestrationView) string {
	online := "1"
	if v.IsOnline {
		online = "0"
	}
	return online + v.Name + "\x00" + v.ID
}

// notifier wakes goroutines waiting for a command's state to change.
type notifier struct {
	mu sync.Mutex
	m  map[string]chan struct{}
}

func (n *notifier) wait(id string) <-chan struct{} {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.m == nil {
		n.m = map[string]chan struct{}{}
	}
	ch := n.m[id]
	if ch == nil {
		ch = make(chan struct{})
		n.m[id] = ch
	}
	return ch
}

func (n *notifier) signal(id string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if ch := n.m[id]; ch != nil {
		close(ch)
		delete(n.m, id)
	}
}
