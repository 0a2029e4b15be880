package api

import (
	"bytes"
	"encoding/json"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/privateconnect/pc/control/store"
	"github.com/privateconnect/pc/internal/servicename"
)

// A tunnel is the live view of a service (tunnel id = service id).

type tunnelView struct {
	ID                string    `json:"id"`
	Name              string    `json:"name"`
	Status            string    `json:"status"` // active|paused|connecting|offline
	Protocol          string    `json:"protocol"`
	TargetHost        string    `json:"targetHost"`
	TargetPort        int       `json:"targetPort"`
	TunnelPort        int       `json:"tunnelPort"`
	IsPublic          bool      `json:"isPublic"`
	PublicURL         *string   `json:"publicUrl"`
	AgentID           string    `json:"agentId"`
	AgentOnline       bool      `json:"agentOnline"`
	Edges             []string  `json:"edges"`
	ActiveConnections int       `json:"activeConnections"`
	BytesIn           int64     `json:"bytesIn"`
	BytesOut          int64     `json:"bytesOut"`
	CreatedAt         time.Time `json:"createdAt"`
}

func (a *API) tunnelView(s *store.Service) tunnelView {
	edges := a.hub.Presence.AgentEdges(s.AgentID)
	if edges == nil {
		edges = []string{}
	}
	v := tunnelView{ID: s.ID, Name: s.Name, Protocol: s.Protocol, TargetHost: s.TargetHost, TargetPort: s.TargetPort,
		TunnelPort: s.TunnelPort, IsPublic: s.IsPublic, PublicURL: strPtr(a.publicURL(s)), AgentID: s.AgentID,
		AgentOnline: len(edges) > 0, Edges: edges, CreatedAt: s.CreatedAt}
	switch {
	case s.Paused:
		v.Status = "paused"
	case v.AgentOnline:
		v.Status = "active"
	default:
		v.Status = "offline"
	}
	for _, c := range a.hub.Presence.ServiceConnections(s.ID) {
		v.ActiveConnections++
		v.BytesIn += c.BytesIn
		v.BytesOut += c.BytesOut
	}
	return v
}

func (a *API) listTunnels(c *call) (any, error) {
	after, limit, err := c.page()
	if err != nil {
		return nil, err
	}
	var svcs []store.Service
	var next string
	err = a.kv.View(c.ctx, func(tx store.Tx) error {
		var err error
		svcs, next, err = store.ListServices(tx, c.ws, after, limit, nil)
		return err
	})
	if err != nil {
		return nil, err
	}
	c.setNext(next)
	out := make([]tunnelView, 0, len(svcs))
	for i := range svcs {
		out = append(out, a.tunnelView(&svcs[i]))
	}
	return out, nil
}

func (a *API) getTunnel(c *call) (any, error) {
	s, err := a.loadService(c, c.param("id"))
	if err != nil {
		return nil, err
	}
	return a.tunnelView(s), nil
}

// tunnelTarget is "host:port" or {host, port}.
type tunnelTarget struct {
	Host string `json:"host"`
	Port int    `json:"port"`
	set  bool
	str  bool // given as "host:port"
}

func (t *tunnelTarget) UnmarshalJSON(b []byte) error {
	t.set = true
	b = bytes.TrimSpace(b)
	if len(b) > 0 && b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		host, port, err := net.SplitHostPort(s)
		if err != nil {
			return invalidField("target", "must be \"host:port\" or {\"host\", \"port\"}")
		}
		p, err := strconv.Atoi(port)
		if err != nil {
			return invalidField("target", "port must be a number")
		}
		t.Host, t.Port, t.str = host, p, true
		return nil
	}
	var obj struct {
		Host string `json:"host"`
		Port int    `json:"port"`
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&obj); err != nil {
		return invalidField("target", "must be \"host:port\" or {\"host\", \"port\"}")
	}
	t.Host, t.Port = obj.Host, obj.Port
	return nil
}

type createTunnelRequest struct {
	Target   tunnelTarget `json:"target" api:"required"`
	AgentID  string       `json:"agentId" api:"required"`
	Name     *string      `json:"name"`
	Protocol *string      `json:"protocol"`
	IsPublic *bool        `json:"isPublic"`
}

// defaultTunnelName derives a name from well-known ports.
func defaultTunnelName(port int) string { return servicename.ForPort(port) }

// createTunnel creates a service from a target (409 when the name exists).
func (a *API) createTunnel(c *call) (any, error) {
	var req createTunnelRequest
	if err := c.decode(&req); err != nil {
		return nil, err
	}
	var v validator
	v.check(req.Target.set, "target", "is required (\"host:port\" or {\"host\", \"port\"})")
	v.uuid(req.AgentID, "agentId")
	name := defaultTunnelName(req.Target.Port)
	if req.Name != nil {
		name = *req.Name
	}
	v.serviceName(name, "name")
	if req.Target.set {
		// Errors name the fields of the request, not the service's.
		if req.Target.str {
			v.target(req.Target.Host, req.Target.Port, "target", "target")
		} else {
			v.target(req.Target.Host, req.Target.Port, "target.host", "target.port")
		}
	}
	if req.Protocol != nil {
		v.oneOf(*req.Protocol, "protocol", protocols...)
	}
	if err := v.err(); err != nil {
		return nil, err
	}
	err := a.kv.View(c.ctx, func(tx store.Tx) error {
		if _, err := store.GetServiceByName(tx, c.ws, name); err == nil {
			return &store.ConflictError{Field: "name", Message: "a tunnel named " + strconv.Quote(name) + " already exists"}
		} else if !isNotFoundErr(err) {
			return err
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	s, created, err := a.upsertService(c, req.AgentID, name, req.Target.Host, req.Target.Port, req.Protocol, req.IsPublic)
	if err != nil {
		return nil, err
	}
	if !created {
		return nil, &store.ConflictError{Field: "name", Message: "a tunnel named " + strconv.Quote(name) + " already exists"}
	}
	return a.tunnelView(s), nil
}

type patchTunnelRequest struct {
	Name   *string `json:"name"`
	Status *string `json:"status"`
}

// patchTunnel renames or pauses/resumes a tunnel; a paused tunnel refuses
// traffic at the edges (503) without disconnecting the agent.
func (a *API) patchTunnel(c *call) (any, error) {
	var req patchTunnelRequest
	if err := c.decode(&req); err != nil {
		return nil, err
	}
	var v validator
	if req.Name != nil {
		v.serviceName(*req.Name, "name")
	}
	if req.Status != nil {
		v.oneOf(*req.Status, "status", "active", "paused")
	}
	if err := v.err(); err != nil {
		return nil, err
	}
	s, err := a.updateService(c, c.param("id"), func(s *store.Service) error {
		if req.Name != nil {
			s.Name = *req.Name
		}
		if req.Status != nil {
			s.Paused = *req.Status == "paused"
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return a.tunnelView(s), nil
}

func (a *API) shareTunnel(c *call) (any, error) { return a.createShareFor(c, c.param("id")) }

type connectionView struct {
	ID        string    `json:"id"`
	Kind      string    `json:"kind"`
	ClientIP  string    `json:"clientIp"`
	EdgeID    string    `json:"edgeId"`
	StartedAt time.Time `json:"startedAt"`
	BytesIn   int64     `json:"bytesIn"`
	BytesOut  int64     `json:"bytesOut"`
}

// tunnelConnections lists live connections as last reported by the edges.
func (a *API) tunnelConnections(c *call) (any, error) {
	s, err := a.loadService(c, c.param("id"))
	if err != nil {
		return nil, err
	}
	conns := a.hub.Presence.ServiceConnections(s.ID)
	out := make([]connectionView, 0, len(conns))
	for _, x := range conns {
		out = append(out, connectionView{ID: x.ID, Kind: x.Kind, ClientIP: x.ClientIP, EdgeID: x.EdgeID,
			StartedAt: apiTime(x.StartedAt), BytesIn: x.BytesIn, BytesOut: x.BytesOut})
	}
	// Oldest first; the edge id and connection id tell apart those of one
	// millisecond.
	key := func(v *connectionView) string {
		return v.StartedAt.Format("20060102T150405.000") + "|" + v.EdgeID + "|" + v.ID
	}
	slices.SortFunc(out, func(x, y connectionView) int { return strings.Compare(key(&x), key(&y)) })
	return pageOf(c, out, key)
}
