package edge

import (
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/privateconnect/pc/edge/routes"
	"github.com/privateconnect/pc/internal/config"
	"github.com/privateconnect/pc/internal/tunnel"
)

// tcpPorts runs one listener per service tunnel port: every accepted
// connection becomes a KindTCP stream to the service's agent.
type tcpPorts struct {
	s        *Server
	host     string
	min, max int

	mu      sync.Mutex
	ports   map[int]*portListener
	failed  map[int]string // port → why it did not open (retried each report tick)
	outside map[string]int // service → its port outside the range (warned once)
	closed  bool
}

type portListener struct {
	ln        net.Listener
	serviceID string
}

func newTCPPorts(s *Server, host string, min, max int) *tcpPorts {
	return &tcpPorts{s: s, host: host, min: min, max: max, ports: map[int]*portListener{}, failed: map[int]string{}, outside: map[string]int{}}
}

// retry opens again the ports that could not be opened (another process
// held them): called every report tick, so that a port freed later opens
// without waiting for a config change.
func (p *tcpPorts) retry() {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.failed) > 0 {
		// The table in force, read under the lock: one read before it
		// could be older than a swap's reconcile that ran meanwhile.
		p.reconcileLocked(p.s.sync.Table())
	}
}

// reconcile opens the ports of the table's services and closes the others.
func (p *tcpPorts) reconcile(t *routes.Table) {
	if p == nil || p.max == 0 {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.reconcileLocked(t)
}

func (p *tcpPorts) reconcileLocked(t *routes.Table) {
	want := map[int]string{}
	if p.closed {
		return
	}
	outside := map[string]int{}
	for _, svc := range t.Services() {
		switch {
		case svc.TunnelPort >= p.min && svc.TunnelPort <= p.max:
			want[svc.TunnelPort] = svc.ID
		case svc.TunnelPort != 0:
			// The control plane's range changed after the port was
			// handed out: it must be the same on every edge.
			outside[svc.ID] = svc.TunnelPort
			if p.outside[svc.ID] != svc.TunnelPort {
				p.s.log.Warn("service's TCP tunnel port is outside this edge's range: not opened (--tcp-ports must match the control plane's)",
					"service", svc.ID, "port", svc.TunnelPort, "range", strconv.Itoa(p.min)+"-"+strconv.Itoa(p.max))
			}
		}
	}
	p.outside = outside
	for port := range p.failed {
		if _, ok := want[port]; !ok {
			delete(p.failed, port)
		}
	}
	for port, pl := range p.ports {
		if id, ok := want[port]; !ok || id != pl.serviceID {
			pl.ln.Close()
			delete(p.ports, port)
		}
	}
	for port, id := range want {
		if _, ok := p.ports[port]; ok {
			continue
		}
		ln, err := net.Listen("tcp", net.JoinHostPort(p.host, strconv.Itoa(port)))
		if err != nil {
			if p.failed[port] != err.Error() {
				p.s.log.Warn("cannot open TCP tunnel port; retrying every second", "port", port, "service", id, "err", err)
			}
			p.failed[port] = err.Error()
			continue
		}
		if _, ok := p.failed[port]; ok {
			p.s.log.Info("opened TCP tunnel port", "port", port, "service", id)
			delete(p.failed, port)
		}
		pl := &portListener{ln: ln, serviceID: id}
		p.ports[port] = pl
		go p.serve(pl)
	}
}

// serve accepts visitors on pl until it is closed: other accept errors
// (descriptors exhausted, a client gone before its accept) are retried, or
// the port would stay listed, and bound, but serve no one.
func (p *tcpPorts) serve(pl *portListener) {
	b := tunnel.AcceptBackoff{Log: p.s.log, What: "TCP tunnel port " + pl.ln.Addr().String()}
	for {
		c, err := pl.ln.Accept()
		if err != nil {
			if b.Retry(err) {
				continue
			}
			return
		}
		b.Accepted()
		go p.handle(c, pl.serviceID)
	}
}

// handle connects one visitor TCP connection to the service.
func (p *tcpPorts) handle(c net.Conn, serviceID string) {
	t := p.s.sync.Table()
	// A visitor refused (the tunnel paused, its agent offline, the
	// target refusing, the agent at its stream cap) is reset, not closed:
	// a clean end of file would read as a service that answered nothing,
	// where a reset reads as the failure it is, as with other teardowns.
	svc, ok := t.Service(serviceID)
	if !ok || svc.Paused {
		tunnel.Reset(c)
		return
	}
	sess, ok := p.s.registry.Get(svc.AgentID)
	if !ok {
		tunnel.Reset(c)
		return
	}
	id, err := uuid.Parse(serviceID)
	if err != nil {
		tunnel.Reset(c)
		return
	}
	ip := hostOf(c.RemoteAddr())
	// Tracked before the stream opens (which can take the agent a while):
	// a pause meanwhile cuts it too.
	vc, done := p.s.conns.track(serviceID, ip, c)
	defer done()
	st, err := sess.OpenStream(tunnel.KindTCP, id, ip)
	if err != nil {
		p.s.log.Debug("tcp tunnel stream refused", "service", serviceID, "err", err)
		tunnel.Reset(c)
		return
	}
	// A visitor that stops reading for VisitorWriteTimeout is reset (its
	// stream aborted and drained): left, it would hold its share of the
	// session's receive buffer, and a few would stall the whole session.
	tunnel.Pipe(tunnel.StallTimeout(vc, p.s.cfg.VisitorWriteTimeout), st)
}

// Ports lists the open tunnel ports.
func (p *tcpPorts) Ports() []int {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]int, 0, len(p.ports))
	for port := range p.ports {
		out = append(out, port)
	}
	return out
}

func (p *tcpPorts) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	for port, pl := range p.ports {
		pl.ln.Close()
		delete(p.ports, port)
	}
}

func hostOf(a net.Addr) string {
	if ta, ok := a.(*net.TCPAddr); ok {
		return ta.IP.String()
	}
	h, _, _ := net.SplitHostPort(a.String())
	return h
}

// connTracker keeps the live TCP connections (tunnel ports and reach) for
// reports, with their bytes so far, and ends those of a service that is
// paused or gone (cutInactive).
type connTracker struct {
	mu   sync.Mutex
	live map[*trackedConn]struct{}
}

// trackedConn is the visitor's side of a TCP connection through the edge:
// it counts bytes as they pass.
type trackedConn struct {
	net.Conn
	info    config.Connection
	in, out atomic.Int64 // from and to the visitor
}

func (c *trackedConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.in.Add(int64(n))
	return n, err
}

func (c *trackedConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	c.out.Add(int64(n))
	return n, err
}

// CloseWrite forwards half-close.
func (c *trackedConn) CloseWrite() error { return tunnel.CloseWrite(c.Conn) }

// Abort resets the connection (tunnel.Reset).
func (c *trackedConn) Abort() { tunnel.Reset(c.Conn) }

// NetConn returns the tracked connection (a reach stream's AbortConn finds
// its partner through it: tunnel.Pipe).
func (c *trackedConn) NetConn() net.Conn { return c.Conn }

func newConnTracker() *connTracker {
	return &connTracker{live: map[*trackedConn]struct{}{}}
}

// count is the number of live connections.
func (ct *connTracker) count() int {
	ct.mu.Lock()
	defer ct.mu.Unlock()
	return len(ct.live)
}

// track registers the visitor's side c of a TCP connection to a service;
// the connection must be piped through the returned conn, and done called
// when it ends.
func (ct *connTracker) track(serviceID, ip string, c net.Conn) (net.Conn, func()) {
	tc := &trackedConn{Conn: c, info: config.Connection{ID: uuid.NewString(), ServiceID: serviceID, Kind: "tcp", ClientIP: ip,
		StartedAt: time.Now().UTC()}}
	ct.mu.Lock()
	ct.live[tc] = struct{}{}
	ct.mu.Unlock()
	return tc, func() {
		ct.mu.Lock()
		delete(ct.live, tc)
		ct.mu.Unlock()
	}
}

func (ct *connTracker) list() []config.Connection {
	ct.mu.Lock()
	defer ct.mu.Unlock()
	out := make([]config.Connection, 0, len(ct.live))
	for c := range ct.live {
		info := c.info
		info.BytesIn, info.BytesOut = c.in.Load(), c.out.Load()
		out = append(out, info)
	}
	return out
}

// cutInactive resets the connections of services that are paused or gone
// from t, as the share links' live streams are (proxy.CutInactive): a
// paused tunnel refuses traffic, open connections included. The reset
// reaches the service's agent (tunnel.CtlAbort).
func (ct *connTracker) cutInactive(t *routes.Table) int {
	var cut []*trackedConn
	ct.mu.Lock()
	for c := range ct.live {
		if svc, ok := t.Service(c.info.ServiceID); !ok || svc.Paused {
			cut = append(cut, c)
		}
	}
	ct.mu.Unlock()
	for _, c := range cut {
		c.Abort()
	}
	return len(cut)
}
