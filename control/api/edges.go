package api

import (
	"bufio"
	"encoding/json"
	"net"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/valyala/fasthttp"

	"github.com/privateconnect/pc/control/push"
	"github.com/privateconnect/pc/control/store"
	"github.com/privateconnect/pc/internal/config"
)

type createEdgeRequest struct {
	Name       string  `json:"name" api:"required"`
	PublicURL  string  `json:"publicUrl" api:"required"`
	TunnelAddr string  `json:"tunnelAddr" api:"required"`
	Region     *string `json:"region"`
}

type edgeCreatedView struct {
	edgeView
	Token string `json:"token"`
}

// requireDefaultAdmin allows platform-level changes only to admin keys of
// workspace "default".
func (a *API) requireDefaultAdmin(c *call) error {
	if c.ws != a.opts.DefaultWorkspaceID {
		return forbidden("only admin keys of workspace default may manage platform resources")
	}
	return nil
}

// ValidEdgeAddrs checks an edge's public URL (http/https) and tunnel
// address (host:port).
func validEdgeAddrs(v *validator, publicURL, tunnelAddr string) {
	u, err := url.Parse(publicURL)
	v.check(err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != "" && (u.Path == "" || u.Path == "/") && u.RawQuery == "",
		"publicUrl", "must be an http or https base URL, e.g. https://edge.example.com")
	addr := tunnelAddr
	for _, scheme := range []string{"tls://", "tcp://"} {
		addr = strings.TrimPrefix(addr, scheme)
	}
	host, port, err := net.SplitHostPort(addr)
	p, perr := strconv.Atoi(port)
	v.check(err == nil && host != "" && perr == nil && p > 0 && p < 65536, "tunnelAddr", "must be host:port (optionally tls://host:port)")
}

func (a *API) createEdge(c *call) (any, error) {
	if err := a.requireDefaultAdmin(c); err != nil {
		return nil, err
	}
	var req createEdgeRequest
	if err := c.decode(&req); err != nil {
		return nil, err
	}
	var v validator
	v.displayName(req.Name, "name", 1, 100)
	validEdgeAddrs(&v, req.PublicURL, req.TunnelAddr)
	v.optStrLen(req.Region, "region", 0, 100)
	if err := v.err(); err != nil {
		return nil, err
	}
	token := push.NewToken(32)
	e := store.Edge{ID: uuid.NewString(), Name: req.Name, PublicURL: trimSlash(req.PublicURL), TunnelAddr: req.TunnelAddr,
		TokenHash: HashSecret(token), CreatedAt: c.now}
	if req.Region != nil {
		e.Region = *req.Region
	}
	if err := a.kv.Update(c.ctx, func(tx store.Tx) error { return store.CreateEdge(tx, &e) }); err != nil {
		return nil, err
	}
	c.resource = e.ID
	a.invalidateEdgeBase()
	a.publish(c, push.Edge(e.ID))
	return edgeCreatedView{edgeView: a.edgeView(&e, nil), Token: token}, nil
}

func trimSlash(s string) string {
	for len(s) > 0 && s[len(s)-1] == '/' {
		s = s[:len(s)-1]
	}
	return s
}

func (a *API) listEdges(c *call) (any, error) {
	after, limit, err := c.page()
	if err != nil {
		return nil, err
	}
	var edges []store.Edge
	var next string
	// Edges serve every workspace; another workspace's admins count only
	// their own agents on them (workspaces never see each other).
	var mine map[string]bool
	err = a.kv.View(c.ctx, func(tx store.Tx) error {
		var err error
		if edges, next, err = store.ListEdges(tx, after, limit); err != nil {
			return err
		}
		if c.ws == a.opts.DefaultWorkspaceID {
			return nil
		}
		agents, _, err := store.ListAgents(tx, c.ws, "", 0, nil)
		mine = make(map[string]bool, len(agents))
		for _, ag := range agents {
			mine[ag.ID] = true
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	c.setNext(next)
	out := make([]edgeView, 0, len(edges))
	for i := range edges {
		out = append(out, a.edgeView(&edges[i], mine))
	}
	return out, nil
}

func (a *API) deleteEdge(c *call) (any, error) {
	if err := a.requireDefaultAdmin(c); err != nil {
		return nil, err
	}
	id := c.param("id")
	if err := a.kv.Update(c.ctx, func(tx store.Tx) error { return store.DeleteEdge(tx, id) }); err != nil {
		return nil, err
	}
	c.resource = id
	a.hub.Presence.Forget(id)
	a.hub.Disconnect(id)
	a.invalidateEdgeBase()
	a.publish(c, push.Edge(id))
	return map[string]any{"id": id, "deleted": true}, nil
}

func sortEdges(edges []store.Edge) {
	slices.SortFunc(edges, func(x, y store.Edge) int {
		if c := x.CreatedAt.Compare(y.CreatedAt); c != 0 {
			return c
		}
		if x.ID < y.ID {
			return -1
		}
		return 1
	})
}

// edgeBaseURL is the base of share links: PublicShareBaseURL, else the
// publicUrl of the oldest edge online (of the oldest edge when none is), or
// "" without edges; cached briefly. A link names an edge that serves it
// now, though every edge serves every share.
func (a *API) edgeBaseURL() string {
	if a.opts.PublicShareBaseURL != "" {
		return trimSlash(a.opts.PublicShareBaseURL)
	}
	a.edgeMu.Lock()
	defer a.edgeMu.Unlock()
	if time.Since(a.edgeBaseT) < 2*time.Second {
		return a.edgeBase
	}
	var edges []store.Edge
	err := a.kv.View(a.baseCtx, func(tx store.Tx) error {
		var err error
		edges, _, err = store.ListEdges(tx, "", 0)
		return err
	})
	if err != nil {
		return a.edgeBase
	}
	sortEdges(edges)
	a.edgeBase = ""
	if len(edges) > 0 {
		a.edgeBase = edges[0].PublicURL
	}
	for i := range edges {
		if _, online := a.hub.Presence.Edge(edges[i].ID); online {
			a.edgeBase = edges[i].PublicURL
			break
		}
	}
	a.edgeBaseT = time.Now()
	return a.edgeBase
}

// EdgesChanged tells the API that edges were changed outside it.
func (a *API) EdgesChanged() { a.invalidateEdgeBase() }

func (a *API) invalidateEdgeBase() {
	a.edgeMu.Lock()
	a.edgeBaseT = time.Time{}
	a.edgeMu.Unlock()
}

// reInstance is an edge process's id on its config stream.
var reInstance = regexp.MustCompile(`^[A-Za-z0-9_-]{0,64}$`)

// edgeConfig serves the NDJSON config stream of package internal/config.
func (a *API) edgeConfig(ctx *fasthttp.RequestCtx) {
	c := &call{ctx: ctx, a: a, now: apiTime(time.Now())}
	if err := a.authEdge(c); err != nil {
		writeError(ctx, toError(err, a.log, "/v1/edges/config"))
		return
	}
	epoch := string(ctx.QueryArgs().Peek("epoch"))
	var version int64
	if s := ctx.QueryArgs().Peek("version"); len(s) > 0 {
		n, err := strconv.ParseInt(string(s), 10, 64)
		if err != nil || n < 0 {
			writeError(ctx, invalidField("version", "must be a non-negative integer"))
			return
		}
		version = n
	}
	// The edge process's id (config.MsgReplaced); edges before it send none.
	instance := string(ctx.QueryArgs().Peek("instance"))
	if !reInstance.MatchString(instance) {
		writeError(ctx, invalidField("instance", "must be at most 64 letters, digits, '-' or '_'"))
		return
	}
	from := ctx.RemoteAddr().String()
	edgeID := c.edge.ID
	ctx.SetContentType("application/x-ndjson")
	ctx.Response.Header.Set("Cache-Control", "no-store")
	ctx.Response.Header.Set("X-Accel-Buffering", "no")
	// Add and Wait of a WaitGroup must not race: streams opened once
	// StopStreams has begun are refused.
	a.streamsMu.Lock()
	if a.streamsStopped {
		a.streamsMu.Unlock()
		writeError(ctx, newError(503, "the control plane is shutting down"))
		return
	}
	a.streams.Add(1)
	a.streamsMu.Unlock()
	a.log.Info("edge config stream opened", "edge", edgeID, "from", from, "instance", instance, "epoch", epoch, "version", version)
	ctx.SetBodyStreamWriter(func(w *bufio.Writer) {
		defer a.streams.Done()
		err := a.hub.Stream(a.baseCtx, w, edgeID, instance, from, epoch, version)
		a.log.Info("edge config stream closed", "edge", edgeID, "err", err)
	})
}

type reportResponse struct {
	ConfigEpoch   string `json:"configEpoch"`
	ConfigVersion int64  `json:"configVersion"`
}

// edgeReport applies a config.Report. Decoding is lenient (unknown fields
// are ignored) so that edges and control planes of neighbouring versions
// interoperate.
func (a *API) edgeReport(c *call) (any, error) {
	var r config.Report
	if err := json.Unmarshal(c.ctx.Request.Body(), &r); err != nil {
		return nil, jsonError(err)
	}
	var v validator
	v.check(r.ID == "" || config.ValidReportID(r.ID), "reportId", "must be 1 to 64 letters, digits, '-' or '_'")
	for i, ev := range r.Events {
		v.oneOf(ev.Event, "events["+strconv.Itoa(i)+"].event", config.EventConnected, config.EventDisconnected, config.EventRejected)
	}
	if err := v.err(); err != nil {
		return nil, err
	}
	var connected []store.AuditEvent
	err := a.hub.Report(c.ctx, c.edge.ID, &r, push.ReportHooks{
		AccessLogs: a.opts.Hooks.AccessLogs,
		AgentEvent: func(ev store.AuditEvent) {
			if ev.Event == config.EventConnected {
				connected = append(connected, ev)
			}
		},
		AgentEventsTx: a.agentEventsTx,
		CommandDone:   a.commandDone,
		Repeated:      a.metrics.reportRepeated.Inc,
	})
	if err != nil {
		return nil, err
	}
	// Access logs, drops, plugin failures (sharelogs.go). A failure here
	// fails the report, after what follows: the agents it connected are
	// not connected again when the edge sends it again.
	merr := a.reportMonitoring(c, &r)
	// Queued commands and messages go out when their agent connects, with
	// a probe of its "auto" services.
	byWS := map[string]map[string]bool{}
	for _, ev := range connected {
		if byWS[ev.WorkspaceID] == nil {
			byWS[ev.WorkspaceID] = map[string]bool{}
		}
		byWS[ev.WorkspaceID][ev.AgentID] = true
	}
	for ws, agents := range byWS {
		a.detectProtocols(c.ctx, ws, agents)
	}
	if len(connected) > 0 {
		var pending []string
		_ = a.kv.View(c.ctx, func(tx store.Tx) error {
			for _, ev := range connected {
				if ok, err := a.hasInbox(tx, ev.WorkspaceID, ev.AgentID); err == nil && ok {
					pending = append(pending, ev.AgentID)
				}
			}
			return nil
		})
		a.hub.NotifyInbox(pending...)
	}
	if merr != nil {
		return nil, merr
	}
	return reportResponse{ConfigEpoch: a.hub.Epoch(), ConfigVersion: a.hub.Version()}, nil
}
