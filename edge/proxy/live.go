package proxy

import (
	"io"
	"net"
	"strings"
	"sync"

	"github.com/privateconnect/pc/edge/routes"
)

// liveStreams are the long-lived exchanges of shares: WebSockets and
// streamed response bodies (Server-Sent Events, downloads). Every new
// request meets the share's state, but these outlive the request that was
// checked: when a share is revoked, expires, loses its service or has its
// tunnel paused, CutInactive ends them, so that the change is in force for
// them too within the config-propagation bound.
type liveStreams struct {
	mu sync.Mutex
	by map[string]map[*liveStream]struct{} // share id → its streams
}

// liveStream is one exchange. Its mutex orders an end (remove) against a cut:
// once removed, its closer is never called, since a visitor's keep-alive
// connection may already carry a later request (another share's).
type liveStream struct {
	mu   sync.Mutex
	done bool
	c    io.Closer
}

func (s *liveStream) cut() {
	s.mu.Lock()
	if !s.done {
		s.done = true
		_ = s.c.Close()
	}
	s.mu.Unlock()
}

// add registers c (closing it ends the exchange) under a share; remove
// with the returned function.
func (l *liveStreams) add(shareID string, c io.Closer) (remove func()) {
	s := &liveStream{c: c}
	l.mu.Lock()
	if l.by == nil {
		l.by = map[string]map[*liveStream]struct{}{}
	}
	m := l.by[shareID]
	if m == nil {
		m = map[*liveStream]struct{}{}
		l.by[shareID] = m
	}
	m[s] = struct{}{}
	l.mu.Unlock()
	return func() {
		s.mu.Lock()
		s.done = true
		s.mu.Unlock()
		l.mu.Lock()
		if m := l.by[shareID]; m != nil {
			delete(m, s)
			if len(m) == 0 {
				delete(l.by, shareID)
			}
		}
		l.mu.Unlock()
	}
}

// CutInactive ends the live streams of every share that table t no longer
// lets through (revoked, expired, gone, its service gone or paused) and
// returns how many it ended.
func (p *Proxy) CutInactive(t *routes.Table) int {
	if t == nil {
		return 0
	}
	var cut []*liveStream
	p.live.mu.Lock()
	for id, m := range p.live.by {
		if streamsLive(t, id) {
			continue
		}
		for s := range m {
			cut = append(cut, s)
		}
		delete(p.live.by, id)
	}
	p.live.mu.Unlock()
	for _, s := range cut {
		s.cut()
	}
	return len(cut)
}

// liveKey files a stream under its share, or under its service for a
// public service (no share).
func liveKey(share *routes.Share, serviceID string) string {
	if share != nil {
		return share.ID
	}
	return publicPrefix + serviceID
}

const publicPrefix = "public:"

// rawConn is the TCP connection under TLS and PROXY protocol (tcpConn): a
// cut closes it at once (closing the TLS connection itself may wait to send
// close_notify).
func rawConn(c net.Conn) net.Conn {
	if tc := tcpConn(c); tc != nil {
		return tc
	}
	return c
}

// streamsLive is whether the streams filed under key (liveKey) may go on.
func streamsLive(t *routes.Table, key string) bool {
	if svcID, ok := strings.CutPrefix(key, publicPrefix); ok {
		svc, ok := t.Service(svcID)
		return ok && svc.IsPublic && !svc.Paused
	}
	sh, ok := t.ShareByID(key)
	if !ok {
		return false
	}
	_, status, _ := shareStatus(t, sh)
	return status == 0
}
