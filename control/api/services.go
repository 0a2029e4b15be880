package api

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"

	"github.com/privateconnect/pc/control/push"
	"github.com/privateconnect/pc/control/store"
	"github.com/privateconnect/pc/control/webhooks"
	"github.com/privateconnect/pc/internal/servicename"
)

var protocols = []string{"auto", "tcp", "http", "https"}

type registerServiceRequest struct {
	AgentID    string  `json:"agentId" api:"required"`
	Name       string  `json:"name" api:"required"`
	TargetHost string  `json:"targetHost" api:"required"`
	TargetPort int     `json:"targetPort" api:"required"`
	Protocol   *string `json:"protocol"`
	IsPublic   *bool   `json:"isPublic"`
}

func (v *validator) serviceName(s, field string) {
	v.re(s, servicename.Pattern, field, servicename.Rule)
}

// target checks a service's target host and port, reported under the
// fields the client sent them in (hostField, portField). When the two are
// one field (a tunnel's "host:port" target) the messages name the part.
func (v *validator) target(host string, port int, hostField, portField string) {
	hostPart, portPart := "", ""
	if hostField == portField {
		hostPart, portPart = "host ", "port "
	}
	v.check(utf8.RuneCountInString(host) >= 1 && utf8.RuneCountInString(host) <= 253, hostField, "%smust be 1-253 characters", hostPart)
	if strings.ContainsAny(host, " /\\?#@") || strings.IndexFunc(host, func(r rune) bool { return r < 0x21 || r == 0x7f }) >= 0 {
		v.add(hostField, "%smust be a host name or IP address", hostPart)
	}
	v.check(port >= 1 && port <= 65535, portField, "%smust be between 1 and 65535", portPart)
}

// registerService creates a service, or updates the one with the same name
// (200). A new service gets a tunnel port from the configured range.
func (a *API) registerService(c *call) (any, error) {
	var req registerServiceRequest
	if err := c.decode(&req); err != nil {
		return nil, err
	}
	var v validator
	v.uuid(req.AgentID, "agentId")
	v.serviceName(req.Name, "name")
	v.target(req.TargetHost, req.TargetPort, "targetHost", "targetPort")
	if req.Protocol != nil {
		v.oneOf(*req.Protocol, "protocol", protocols...)
	}
	if err := v.err(); err != nil {
		return nil, err
	}
	s, created, err := a.upsertService(c, req.AgentID, req.Name, req.TargetHost, req.TargetPort, req.Protocol, req.IsPublic)
	if err != nil {
		return nil, err
	}
	if !created {
		c.status = 200
	}
	return a.serviceView(s), nil
}

// checkOwner refuses to move a service to another agent while the agent that
// exposes it is connected (409): a name taken by a colleague's running agent
// would otherwise hand it, and every share link of it, to whoever registers
// the name next. An offline agent's service moves (a machine replaced).
func (a *API) checkOwner(tx store.Tx, ws string, s *store.Service, agentID string) error {
	if s.AgentID == agentID {
		return nil
	}
	owner := func() string {
		if ag, err := store.GetAgent(tx, ws, s.AgentID); err == nil && ag.Name != "" {
			return strconv.Quote(ag.Name) + " (" + ag.ID + ")"
		}
		return s.AgentID
	}
	if !a.hub.Presence.AgentOnline(s.AgentID) {
		// Presence lives in memory: just after a start, an agent reads as
		// offline until its edge reports, and must not lose its service.
		left, err := a.presenceSettling(tx)
		if err != nil || left == 0 {
			return err
		}
		return &store.ConflictError{Field: "name", Message: "the service " + strconv.Quote(s.Name) + " is exposed by agent " + owner() +
			"; the control plane started moments ago and not every edge has reported its agents yet, so whether that agent is connected is not known: retry in " +
			strconv.Itoa(int((left+time.Second-1)/time.Second)) + " s"}
	}
	return &store.ConflictError{Field: "name", Message: "the service " + strconv.Quote(s.Name) + " is exposed by agent " + owner() +
		", which is connected: choose another name, or stop that agent first"}
}

// presenceSettling is Presence.Settling for the registered edges.
func (a *API) presenceSettling(tx store.Tx) (time.Duration, error) {
	return a.hub.Presence.Settling(func() ([]string, error) {
		edges, _, err := store.ListEdges(tx, "", 0) // all of them
		ids := make([]string, len(edges))
		for i, e := range edges {
			ids[i] = e.ID
		}
		return ids, err
	})
}

func (a *API) upsertService(c *call, agentID, name, host string, port int, protocol *string, isPublic *bool) (*store.Service, bool, error) {
	var s *store.Service
	created := false
	err := a.kv.Update(c.ctx, func(tx store.Tx) error {
		if _, err := store.GetAgent(tx, c.ws, agentID); err != nil {
			return err
		}
		var err error
		s, err = store.GetServiceByName(tx, c.ws, name)
		switch {
		case err == nil:
			created = false
			if err := a.checkOwner(tx, c.ws, s, agentID); err != nil {
				return err
			}
			s.AgentID, s.TargetHost, s.TargetPort, s.UpdatedAt = agentID, host, port, c.now
			if protocol != nil {
				s.Protocol = *protocol
			}
			if isPublic != nil {
				s.IsPublic = *isPublic
			}
			if s.IsPublic && s.Subdomain == "" {
				if s.Subdomain, err = pickSubdomain(tx, c.ws, s.Name); err != nil {
					return err
				}
			}
			return store.UpdateService(tx, s)
		case isNotFoundErr(err):
			created = true
			s = &store.Service{ID: uuid.NewString(), WorkspaceID: c.ws, AgentID: agentID, Name: name,
				TargetHost: host, TargetPort: port, Protocol: "auto", Status: "unknown",
				Health: store.HealthConfig{IntervalSeconds: 60}, CreatedAt: c.now, UpdatedAt: c.now}
			if protocol != nil {
				s.Protocol = *protocol
			}
			if isPublic != nil && *isPublic {
				s.IsPublic = true
				if s.Subdomain, err = pickSubdomain(tx, c.ws, s.Name); err != nil {
					return err
				}
			}
			if err := checkServiceLimit(tx, c.ws); err != nil {
				return err
			}
			if err := store.CreateService(tx, s, a.opts.TCPPortMin, a.opts.TCPPortMax); err != nil {
				return err
			}
			if err := a.emit(tx, c.ws, webhooks.TunnelCreated, map[string]any{"serviceId": s.ID, "name": s.Name, "agentId": s.AgentID,
				"targetHost": s.TargetHost, "targetPort": s.TargetPort, "protocol": s.Protocol}); err != nil {
				return err
			}
			// A tunnel created for an agent already connected is reachable at
			// once through its edges: say so, as its connection would have.
			for _, edgeID := range a.hub.Presence.AgentEdges(agentID) {
				if err := a.emit(tx, c.ws, webhooks.TunnelConnected, map[string]any{"serviceId": s.ID, "name": s.Name, "agentId": s.AgentID, "edgeId": edgeID}); err != nil {
					return err
				}
			}
			return nil
		default:
			return err
		}
	})
	if err != nil {
		return nil, false, err
	}
	c.resource = s.ID
	a.publish(c, push.Service(c.ws, s.ID))
	a.probeIfOnline(c.ctx, s)
	return s, created, nil
}

// probeIfOnline probes an "auto" service written (registered, its target
// or protocol changed) while its agent is connected; otherwise the probe
// comes when the agent connects (edgeReport).
func (a *API) probeIfOnline(ctx context.Context, s *store.Service) {
	if s.Protocol == "auto" && a.hub.Presence.AgentOnline(s.AgentID) {
		a.probeService(ctx, s)
	}
}

var reNotSub = regexp.MustCompile(`[^a-z0-9-]+`)

// pickSubdomain derives a subdomain free for workspace ws from a service
// name.
func pickSubdomain(tx store.Tx, ws, name string) (string, error) {
	base := strings.Trim(reNotSub.ReplaceAllString(strings.ToLower(name), "-"), "-")
	if len(base) > 27 {
		base = base[:27]
	}
	for len(base) < 3 {
		base += "x"
	}
	cand := base
	for i := 0; i < 8; i++ {
		taken, err := store.SubdomainTaken(tx, ws, cand)
		if err != nil {
			return "", err
		}
		if !taken {
			return cand, nil
		}
		var b [2]byte
		_, _ = rand.Read(b[:])
		cand = base + "-" + hex.EncodeToString(b[:])
	}
	return "", store.ErrExhausted
}

func (a *API) listServices(c *call) (any, error) {
	after, limit, err := c.page()
	if err != nil {
		return nil, err
	}
	agentID, status, protocol := c.query("agentId"), c.query("status"), c.query("protocol")
	var v validator
	if status != "" {
		v.oneOf(status, "status", "unknown", "ok", "degraded", "down", "offline")
	}
	if protocol != "" {
		v.oneOf(protocol, "protocol", protocols...)
	}
	if err := v.err(); err != nil {
		return nil, err
	}
	var svcs []store.Service
	var next string
	err = a.kv.View(c.ctx, func(tx store.Tx) error {
		var err error
		svcs, next, err = store.ListServices(tx, c.ws, after, limit, func(s *store.Service) bool {
			return (agentID == "" || s.AgentID == agentID) && (protocol == "" || s.Protocol == protocol) &&
				(status == "" || a.serviceStatus(s) == status)
		})
		return err
	})
	if err != nil {
		return nil, err
	}
	c.setNext(next)
	out := make([]serviceView, 0, len(svcs))
	for i := range svcs {
		out = append(out, a.serviceView(&svcs[i]))
	}
	return out, nil
}

func (a *API) getService(c *call) (any, error) {
	var s *store.Service
	var ag *store.Agent
	var diags []store.Diagnostic
	err := a.kv.View(c.ctx, func(tx store.Tx) error {
		var err error
		if s, err = store.GetService(tx, c.ws, c.param("id")); err != nil {
			return err
		}
		if ag, err = store.GetAgent(tx, c.ws, s.AgentID); err != nil && !isNotFoundErr(err) {
			return err
		}
		diags, _, err = store.ListDiagnostics(tx, c.ws, s.ID, "", 1)
		return err
	})
	if err != nil {
		return nil, err
	}
	out := serviceDetailView{serviceView: a.serviceView(s)}
	if ag != nil {
		out.Agent = &serviceAgentView{ID: ag.ID, Name: ag.Name, IsOnline: a.hub.Presence.AgentOnline(ag.ID)}
	}
	if len(diags) > 0 {
		out.LastDiagnostic = diagnosticViewOf(&diags[0])
	}
	return out, nil
}

type deleteServiceResponse struct {
	ID            string `json:"id"`
	Deleted       bool   `json:"deleted"`
	RevokedShares int    `json:"revokedShares"`
}

// deleteService removes a service, revokes its shares and frees its port.
func (a *API) deleteService(c *call) (any, error) {
	id := c.param("id")
	var shares []store.Share
	var n int
	err := a.kv.Update(c.ctx, func(tx store.Tx) error {
		var err error
		if shares, _, err = store.ListServiceShares(tx, c.ws, id, "", 0); err != nil {
			return err
		}
		s, err := store.GetService(tx, c.ws, id)
		if err != nil {
			return err
		}
		if n, err = store.DeleteService(tx, c.ws, id, c.now); err != nil {
			return err
		}
		if err := a.emitSharesRevoked(tx, c.ws, shares); err != nil {
			return err
		}
		return a.emitTunnelDeleted(tx, c.ws, s)
	})
	if err != nil {
		return nil, err
	}
	c.resource = id
	refs := []push.Ref{push.Service(c.ws, id)}
	for _, sh := range shares {
		refs = append(refs, push.Share(c.ws, sh.ID))
	}
	a.publish(c, refs...)
	return deleteServiceResponse{ID: id, Deleted: true, RevokedShares: n}, nil
}
