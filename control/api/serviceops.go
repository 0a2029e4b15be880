package api

import (
	"context"
	"encoding/json"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/privateconnect/pc/control/push"
	"github.com/privateconnect/pc/control/store"
)

type patchServiceRequest struct {
	Name       *string `json:"name"`
	TargetHost *string `json:"targetHost"`
	TargetPort *int    `json:"targetPort"`
	Protocol   *string `json:"protocol"`
}

func (a *API) patchService(c *call) (any, error) {
	var req patchServiceRequest
	if err := c.decode(&req); err != nil {
		return nil, err
	}
	var v validator
	if req.Name != nil {
		v.serviceName(*req.Name, "name")
	}
	if req.TargetHost != nil {
		v.target(*req.TargetHost, 1, "targetHost", "targetPort")
	}
	if req.TargetPort != nil {
		v.intRange(*req.TargetPort, "targetPort", 1, 65535)
	}
	if req.Protocol != nil {
		v.oneOf(*req.Protocol, "protocol", protocols...)
	}
	if err := v.err(); err != nil {
		return nil, err
	}
	s, err := a.updateService(c, c.param("id"), func(s *store.Service) error {
		if req.Name != nil {
			s.Name = *req.Name
		}
		if req.TargetHost != nil {
			s.TargetHost = *req.TargetHost
		}
		if req.TargetPort != nil {
			s.TargetPort = *req.TargetPort
		}
		if req.Protocol != nil {
			s.Protocol = *req.Protocol
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return a.serviceView(s), nil
}

// updateService applies fn to a service in one transaction and pushes it.
func (a *API) updateService(c *call, id string, fn func(*store.Service) error) (*store.Service, error) {
	return a.updateServiceTx(c, id, func(_ store.Tx, s *store.Service) error { return fn(s) })
}

type healthConfigRequest struct {
	Enabled         *bool `json:"enabled"`
	IntervalSeconds *int  `json:"intervalSeconds"`
}

type healthConfigView struct {
	Enabled         bool `json:"enabled"`
	IntervalSeconds int  `json:"intervalSeconds"`
}

func (a *API) patchHealthConfig(c *call) (any, error) {
	var req healthConfigRequest
	if err := c.decode(&req); err != nil {
		return nil, err
	}
	var v validator
	if req.IntervalSeconds != nil {
		v.intRange(*req.IntervalSeconds, "intervalSeconds", 10, 3600)
	}
	if err := v.err(); err != nil {
		return nil, err
	}
	s, err := a.updateService(c, c.param("id"), func(s *store.Service) error {
		if req.Enabled != nil {
			s.Health.Enabled = *req.Enabled
		}
		if req.IntervalSeconds != nil {
			s.Health.IntervalSeconds = *req.IntervalSeconds
		}
		if s.Health.IntervalSeconds == 0 {
			s.Health.IntervalSeconds = 60
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return healthConfigView{Enabled: s.Health.Enabled, IntervalSeconds: s.Health.IntervalSeconds}, nil
}

type publicRequest struct {
	IsPublic  *bool   `json:"isPublic" api:"required"`
	Subdomain *string `json:"subdomain"`
}

type publicView struct {
	IsPublic  bool    `json:"isPublic"`
	Subdomain *string `json:"subdomain"`
	PublicURL *string `json:"publicUrl"`
}

// setPublic toggles public access; a public service keeps (or is given) a
// subdomain, a private one releases it.
func (a *API) setPublic(c *call) (any, error) {
	var req publicRequest
	if err := c.decode(&req); err != nil {
		return nil, err
	}
	var v validator
	v.check(req.IsPublic != nil, "isPublic", "is required (true or false)")
	if req.Subdomain != nil {
		v.re(*req.Subdomain, reSubdomain, "subdomain", "must be 3-32 characters of a-z, 0-9 and -")
	}
	if err := v.err(); err != nil {
		return nil, err
	}
	var sub string
	s, err := a.updateServiceTx(c, c.param("id"), func(tx store.Tx, s *store.Service) error {
		s.IsPublic = *req.IsPublic
		switch {
		case !s.IsPublic:
			s.Subdomain = ""
		case req.Subdomain != nil:
			s.Subdomain = *req.Subdomain
		case s.Subdomain == "":
			var err error
			if s.Subdomain, err = pickSubdomain(tx, c.ws, s.Name); err != nil {
				return err
			}
		}
		sub = s.Subdomain
		return nil
	})
	if err != nil {
		return nil, err
	}
	return publicView{IsPublic: s.IsPublic, Subdomain: strPtr(sub), PublicURL: strPtr(a.publicURL(s))}, nil
}

// updateServiceTx is updateService for changes that also touch other keys
// in the same transaction.
func (a *API) updateServiceTx(c *call, id string, fn func(store.Tx, *store.Service) error) (*store.Service, error) {
	var s *store.Service
	err := a.kv.Update(c.ctx, func(tx store.Tx) error {
		var err error
		if s, err = store.GetService(tx, c.ws, id); err != nil {
			return err
		}
		if err := fn(tx, s); err != nil {
			return err
		}
		s.UpdatedAt = c.now
		return store.UpdateService(tx, s)
	})
	if err != nil {
		return nil, err
	}
	c.resource = s.ID
	a.publish(c, push.Service(c.ws, s.ID))
	a.probeIfOnline(c.ctx, s)
	return s, nil
}

// diagnoseParams are the params of "diagnose" and "reach" commands.
type diagnoseParams struct {
	ServiceID   string `json:"serviceId"`
	ServiceName string `json:"serviceName,omitempty"`
	TargetHost  string `json:"targetHost,omitempty"`
	TargetPort  int    `json:"targetPort,omitempty"`
	Protocol    string `json:"protocol,omitempty"`
	TunnelPort  int    `json:"tunnelPort,omitempty"`
	Mode        string `json:"mode,omitempty"`
	TimeoutMs   int    `json:"timeoutMs,omitempty"`
}

// checkResult is the result an agent returns for diagnose/reach:
// {dns:{status,addresses}, tcp:{status,latencyMs}, tls:{…}|null,
// http:{…}|null, status: ok|degraded|down, message}.
type checkResult struct {
	Status  string                   `json:"status"`
	Message string                   `json:"message"`
	TLS     *struct{ Status string } `json:"tls"`
	HTTP    *struct{ Status string } `json:"http"`
}

// result decodes a finished diagnose/reach command's result (false when it
// did not succeed or does not decode).
func result(cmd *store.Command) (checkResult, bool) {
	var r checkResult
	ok := cmd.Status == store.CommandSucceeded && json.Unmarshal(cmd.Result, &r) == nil
	return r, ok
}

// protocol is what a probe says its target speaks: "https" or "http" when
// it answered HTTP (over TLS or not), else "".
func (r *checkResult) protocol() string {
	switch {
	case r.HTTP == nil || r.HTTP.Status != "ok":
		return ""
	case r.TLS != nil && r.TLS.Status == "ok":
		return "https"
	default:
		return "http"
	}
}

// diagnosticOf turns a finished diagnose/reach command into a diagnostic,
// and gives its decoded result.
func diagnosticOf(cmd *store.Command, serviceID string) (*store.Diagnostic, checkResult) {
	r, ok := result(cmd)
	d := &store.Diagnostic{ID: cmd.ID, WorkspaceID: cmd.WorkspaceID, ServiceID: serviceID, Perspective: "agent",
		Status: "down", Result: cmd.Result, CreatedAt: cmd.CreatedAt}
	if cmd.CompletedAt != nil {
		d.CreatedAt = *cmd.CompletedAt
	}
	if ok {
		switch r.Status {
		case "ok", "degraded", "down":
			d.Status = r.Status
		}
		d.Message = r.Message
	} else {
		d.Message = "the agent could not run the check"
		if cmd.Error != "" {
			d.Message += ": " + cmd.Error
		}
	}
	return d, r
}

// commandDone is called for each command an edge report completed: it wakes
// waiters and records diagnostics and health transitions.
func (a *API) commandDone(cmd store.Command) {
	defer a.cmdWait.signal(cmd.ID)
	if cmd.Action != "diagnose" && cmd.Action != "reach" {
		return
	}
	var p diagnoseParams
	if json.Unmarshal(cmd.Params, &p) != nil || p.ServiceID == "" {
		return
	}
	d, r := diagnosticOf(&cmd, p.ServiceID)
	var before, after string
	detected := false
	err := a.kv.Update(a.baseCtx, func(tx store.Tx) error {
		s, err := store.GetService(tx, cmd.WorkspaceID, p.ServiceID)
		if err != nil {
			return err
		}
		if err := store.AppendDiagnostic(tx, d); err != nil {
			return err
		}
		if cmd.Action != "diagnose" {
			return nil
		}
		// An "auto" service becomes http (or https) once the agent's probe
		// gets an HTTP answer from it (api-v1.md: auto detects HTTP by
		// probing from the agent). Anything else leaves it auto: a service
		// down, or slow, at the probe is not taken for raw TCP.
		// Only a probe of the service's current target counts (it may have
		// moved since).
		if proto := r.protocol(); s.Protocol == "auto" && proto != "" && p.TargetHost == s.TargetHost && p.TargetPort == s.TargetPort {
			s.Protocol, detected = proto, true
		}
		if s.Status == d.Status {
			if detected {
				return store.UpdateService(tx, s)
			}
			return nil
		}
		before, after = s.Status, d.Status
		s.Status = d.Status
		if err := store.UpdateService(tx, s); err != nil {
			return err
		}
		// ok is healthy; unknown (never checked) counts as neither, so a
		// first failed check is reported and a first good one is not.
		name := ""
		switch {
		case after == "ok" && before != "ok" && before != "unknown" && before != "":
			name = "service.healthy"
		case after != "ok" && (before == "ok" || before == "unknown" || before == ""):
			name = "service.unhealthy"
		default:
			return nil
		}
		return a.emit(tx, cmd.WorkspaceID, name, map[string]any{"serviceId": p.ServiceID, "status": after, "previousStatus": before})
	})
	if err != nil {
		if !isNotFoundErr(err) {
			a.log.Warn("diagnostic not saved", "service", p.ServiceID, "err", err)
		}
		return
	}
	if detected {
		if err := a.hub.Publish(a.baseCtx, push.Service(cmd.WorkspaceID, p.ServiceID)); err != nil {
			a.log.Warn("detected protocol not pushed", "service", p.ServiceID, "err", err)
		}
	}
}

// probeEvery bounds how often one target of an auto service is probed.
const probeEvery = 10 * time.Minute

// detectProtocols asks the newly connected agents of workspace ws to probe
// their "auto" services: one scan of the workspace's services serves every
// agent of a report.
func (a *API) detectProtocols(ctx context.Context, ws string, agents map[string]bool) {
	var auto []store.Service
	err := a.kv.View(ctx, func(tx store.Tx) error {
		var err error
		auto, _, err = store.ListServices(tx, ws, "", 0, func(s *store.Service) bool {
			return agents[s.AgentID] && s.Protocol == "auto"
		})
		return err
	})
	if err != nil {
		a.log.Warn("protocol detection not scheduled", "workspace", ws, "err", err)
		return
	}
	for i := range auto {
		a.probeService(ctx, &auto[i])
	}
}

// probeService asks the agent of an "auto" service (its callers check) to
// probe its target (a diagnose command, whose result commandDone records),
// at most once per target every probeEvery: an agent connects to every
// edge, and reconnects, and a raw-TCP target stays auto. The slot is taken
// before the command is stored, so two reports at once queue one probe; a
// command that could not be stored gives it back. storeCommand tells the
// agent's edges.
func (a *API) probeService(ctx context.Context, s *store.Service) {
	now := apiTime(time.Now())
	key := s.ID + "|" + net.JoinHostPort(s.TargetHost, strconv.Itoa(s.TargetPort))
	a.probedMu.Lock()
	if last, seen := a.probed[key]; seen && now.Sub(last) < probeEvery {
		a.probedMu.Unlock()
		return
	}
	if len(a.probed) >= 100_000 {
		clear(a.probed) // a bound, not a policy: the next probes come again
	}
	a.probed[key] = now
	a.probedMu.Unlock()
	p, _ := json.Marshal(diagnoseParams{ServiceID: s.ID, ServiceName: s.Name, TargetHost: s.TargetHost, TargetPort: s.TargetPort, Protocol: s.Protocol})
	if _, err := a.storeCommand(ctx, s.WorkspaceID, s.AgentID, "diagnose", p, 30, now); err != nil {
		a.log.Warn("protocol detection not scheduled", "service", s.ID, "err", err)
		a.probedMu.Lock()
		if a.probed[key] == now {
			delete(a.probed, key)
		}
		a.probedMu.Unlock()
	}
}

// runCheck sends a diagnose/reach command to an online agent and waits for
// its result (503 when the agent is offline, 504 when it does not answer).
func (a *API) runCheck(c *call, agentID, action string, p diagnoseParams, wait time.Duration) (any, error) {
	if !a.hub.Presence.AgentOnline(agentID) {
		return nil, unavailable("the agent is not connected; the check runs on the agent")
	}
	params, _ := json.Marshal(p)
	cmd, err := a.queueCommand(c, agentID, action, params, int(wait/time.Second))
	if err != nil {
		return nil, err
	}
	done := a.awaitCommand(c, cmd.ID, wait, true)
	if done == nil {
		return nil, newError(504, "the agent did not answer within %s", wait)
	}
	d, _ := diagnosticOf(done, p.ServiceID)
	return diagnosticViewOf(d), nil
}

func (a *API) checkService(c *call) (any, error) {
	s, err := a.loadService(c, c.param("id"))
	if err != nil {
		return nil, err
	}
	return a.runCheck(c, s.AgentID, "diagnose", diagnoseParams{ServiceID: s.ID, ServiceName: s.Name,
		TargetHost: s.TargetHost, TargetPort: s.TargetPort, Protocol: s.Protocol}, 30*time.Second)
}

type reachRequest struct {
	SourceAgentID string  `json:"sourceAgentId" api:"required"`
	Mode          *string `json:"mode"`
	TimeoutMs     *int    `json:"timeoutMs"`
}

// reachService has another agent check this service through the edge.
func (a *API) reachService(c *call) (any, error) {
	var req reachRequest
	if err := c.decode(&req); err != nil {
		return nil, err
	}
	var v validator
	v.uuid(req.SourceAgentID, "sourceAgentId")
	mode, timeout := "tcp", 5000
	if req.Mode != nil && v.oneOf(*req.Mode, "mode", "tcp", "tls", "http") {
		mode = *req.Mode
	}
	if req.TimeoutMs != nil && v.intRange(*req.TimeoutMs, "timeoutMs", 1000, 30000) {
		timeout = *req.TimeoutMs
	}
	if err := v.err(); err != nil {
		return nil, err
	}
	s, err := a.loadService(c, c.param("id"))
	if err != nil {
		return nil, err
	}
	if err := a.kv.View(c.ctx, func(tx store.Tx) error {
		_, err := store.GetAgent(tx, c.ws, req.SourceAgentID)
		return err
	}); err != nil {
		return nil, err
	}
	return a.runCheck(c, req.SourceAgentID, "reach", diagnoseParams{ServiceID: s.ID, ServiceName: s.Name, Protocol: s.Protocol,
		TunnelPort: s.TunnelPort, Mode: mode, TimeoutMs: timeout}, time.Duration(timeout)*time.Millisecond+5*time.Second)
}

func (a *API) loadService(c *call, id string) (*store.Service, error) {
	var s *store.Service
	err := a.kv.View(c.ctx, func(tx store.Tx) error {
		var err error
		s, err = store.GetService(tx, c.ws, id)
		return err
	})
	return s, err
}

func (a *API) listDiagnostics(c *call) (any, error) {
	after, limit, err := c.page()
	if err != nil {
		return nil, err
	}
	var ds []store.Diagnostic
	var next string
	err = a.kv.View(c.ctx, func(tx store.Tx) error {
		if _, err := store.GetService(tx, c.ws, c.param("id")); err != nil {
			return err
		}
		var err error
		ds, next, err = store.ListDiagnostics(tx, c.ws, c.param("id"), after, limit)
		return err
	})
	if err != nil {
		return nil, err
	}
	c.setNext(next)
	out := make([]*diagnosticView, 0, len(ds))
	for i := range ds {
		out = append(out, diagnosticViewOf(&ds[i]))
	}
	return out, nil
}

// healthMonitor schedules diagnose commands for services with health
// monitoring enabled whose agent is online, every intervalSeconds.
type healthMonitor struct {
	mu   sync.Mutex
	last map[string]time.Time // service id → last scheduled check
}

func (a *API) runHealthMonitor(ctx context.Context, tick time.Duration) {
	t := time.NewTicker(tick)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			a.scheduleHealthChecks(ctx, time.Now().UTC().Truncate(time.Millisecond))
		}
	}
}

func (a *API) scheduleHealthChecks(ctx context.Context, now time.Time) {
	var due []store.Service
	err := a.kv.View(ctx, func(tx store.Tx) error {
		wss, _, err := store.ListWorkspaces(tx, "", 0)
		if err != nil {
			return err
		}
		a.monitor.mu.Lock()
		defer a.monitor.mu.Unlock()
		for _, w := range wss {
			_, _, err := store.ListServices(tx, w.ID, "", 0, func(s *store.Service) bool {
				iv := time.Duration(max(s.Health.IntervalSeconds, 10)) * time.Second
				if s.Health.Enabled && now.Sub(a.monitor.last[s.ID]) >= iv && a.hub.Presence.AgentOnline(s.AgentID) {
					due = append(due, *s)
					a.monitor.last[s.ID] = now
				}
				return false
			})
			if err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		a.log.Warn("health monitor", "err", err)
		return
	}
	for _, s := range due {
		p, _ := json.Marshal(diagnoseParams{ServiceID: s.ID, ServiceName: s.Name, TargetHost: s.TargetHost, TargetPort: s.TargetPort, Protocol: s.Protocol})
		if _, err := a.storeCommand(ctx, s.WorkspaceID, s.AgentID, "diagnose", p, 30, now); err != nil {
			a.log.Warn("health check not scheduled", "service", s.ID, "err", err)
		}
	}
}

var _ = uuid.NewString
