package proxy

// The edge's HTTP client: each service reached through an agent's session
// has a pool of tunnel streams (httpClient), and each request is one
// exchange on one of them.

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"strconv"
	"time"

	"github.com/google/uuid"
	"github.com/privateconnect/pc/edge/tunnels"
	"github.com/privateconnect/pc/internal/config"
	"github.com/privateconnect/pc/internal/tunnel"
	"github.com/valyala/fasthttp"
)

// httpClient returns the session's pool of tunnel streams to a service.
// fasthttp's HostClient keeps the pool (Dial, idle streams, MaxConns) and
// its buffers; the exchange on a stream is the edge's own (exchange), so
// that the edge knows which stream carries which request.
func (p *Proxy) httpClient(sess *tunnels.Session, svc *config.Service) (*fasthttp.HostClient, error) {
	if v, ok := sess.Clients.Load(svc.ID); ok {
		return v.(*fasthttp.HostClient), nil
	}
	id, err := uuid.Parse(svc.ID)
	if err != nil {
		return nil, err
	}
	hc := &fasthttp.HostClient{
		Addr: net.JoinHostPort(svc.TargetHost, strconv.Itoa(svc.TargetPort)),
		Dial: func(string) (net.Conn, error) {
			c, err := sess.OpenStream(tunnel.KindHTTP, id, "")
			if err != nil {
				return nil, err
			}
			return &firstByteConn{watchedConn: watchedConn{Conn: c}}, nil
		},
		MaxConns:            1024,
		MaxIdleConnDuration: 10 * time.Second,
		ReadBufferSize:      16 << 10,
		WriteBufferSize:     16 << 10,
	}
	v, _ := sess.Clients.LoadOrStore(svc.ID, hc)
	return v.(*fasthttp.HostClient), nil
}

// exchange sends req on a stream of hc's pool and reads the head of the
// answer into resp (its body streamed: resp.StreamBody). A body still to
// read comes back with the stream it is on: read it from the returned
// upstreamBody and end it, which gives the stream back to the pool when the
// body was read to its end and closes it otherwise. nil: the answer is
// whole and its stream already back.
//
// While the service has not answered, the visitor's connection is watched
// (every hangupCheck, firstByteConn): a visitor that hangs up ends the
// exchange with errVisitorGone and the stream is closed, which makes the
// agent close its connection to the service, instead of both waiting out
// the upstream timeout. nil visitor: not watched.
//
// A request on a stream from the pool that turns out stale (written in
// vain, or read to its end before any byte of an answer: the agent or the
// service closed it while idle) is sent once more on another, if it has no
// streamed body and is a GET, a HEAD or body-less; never on a new stream
// (the service may have acted on it: as Go's http.Transport), never after a
// timeout (the service got it and did not answer).
//
// resp must be fresh (fasthttp.AcquireResponse).
func (p *Proxy) exchange(hc *fasthttp.HostClient, req *fasthttp.Request, resp *fasthttp.Response, visitor net.Conn) (*upstreamBody, error) {
	req.URI().DisablePathNormalizing = true
	// Asked before the first attempt: writing a body stream closes it.
	again := !req.IsBodyStream() && (req.Header.IsGet() || req.Header.IsHead() || len(req.Body()) == 0)
	resp.StreamBody = true
	body, retry, err := p.roundTrip(hc, req, resp, visitor)
	if err != nil && retry && again && !tunnel.IsTimeout(err) {
		resp.Reset()
		resp.StreamBody = true
		body, _, err = p.roundTrip(hc, req, resp, visitor)
	}
	if err == io.EOF {
		err = fasthttp.ErrConnectionClosed
	}
	return body, err
}

// hangupCheck is how often a visitor waiting for a service's answer is
// checked for a hang-up.
var hangupCheck = time.Second

// roundTrip is one attempt of exchange; retry: the stream may have been
// stale.
func (p *Proxy) roundTrip(hc *fasthttp.HostClient, req *fasthttp.Request, resp *fasthttp.Response, visitor net.Conn) (*upstreamBody, bool, error) {
	cc, err := hc.AcquireConn(0, req.ConnectionClose())
	if err != nil {
		return nil, false, err
	}
	c := cc.Conn().(*firstByteConn)
	reused := c.used
	c.used = true
	if c.done == nil {
		// Once per stream: the pool's handle (cc) stays the stream's for
		// its life.
		c.done = func(reuse bool) {
			if reuse {
				hc.ReleaseConn(cc)
			} else {
				hc.CloseConn(cc)
			}
		}
	}
	bw := hc.AcquireWriter(c)
	err = req.Write(bw)
	if err == nil {
		err = bw.Flush()
	}
	hc.ReleaseWriter(bw)
	if err != nil {
		c.done(false)
		return nil, reused, err
	}
	now := time.Now()
	c.arm(now, now.Add(p.cfg.UpstreamTimeout), visitor)
	if req.Header.IsHead() {
		resp.SkipBody = true
	}
	resp.Header.DisableNormalizing()
	br := hc.AcquireReader(c)
	err = resp.ReadLimitBody(br, 0)
	c.disarm()
	if err != nil {
		hc.ReleaseReader(br)
		c.done(false)
		switch {
		case c.refused:
			return nil, false, errBadResponse
		case c.watch.gone:
			return nil, false, errVisitorGone
		}
		return nil, reused && !c.answered, err
	}
	reuse := !req.ConnectionClose() && !resp.ConnectionClose()
	if rs := resp.BodyStream(); rs != nil {
		// A body read to the connection's end (no length, not chunked)
		// leaves nothing to reuse.
		n := resp.Header.ContentLength()
		c.body = upstreamBody{c: c, hc: hc, r: rs, br: br, left: max(n, -1), reuse: reuse && n != -2}
		return &c.body, false, nil
	}
	hc.ReleaseReader(br)
	c.done(reuse)
	return nil, false, nil
}

// errVisitorGone ends an exchange whose visitor hung up before the answer.
var errVisitorGone = errors.New("proxy: the visitor hung up before the service answered")

// StatusVisitorGone is the status recorded (access log, metrics) for a
// request whose visitor hung up before the service answered: nginx's 499
// "client closed request". No visitor receives it.
const StatusVisitorGone = 499

// upstreamBody is the body of an answer still on its stream.
type upstreamBody struct {
	c     *firstByteConn // nil once ended
	hc    *fasthttp.HostClient
	r     io.Reader // fasthttp's reader of the body, over br
	br    *bufio.Reader
	left  int  // bytes of a Content-Length body not read yet; -1: no length
	eof   bool // a body of no length (chunked) was read to its end
	reuse bool // the stream may carry another request once whole
}

func (b *upstreamBody) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	if b.left >= 0 {
		b.left -= n
	} else if err == io.EOF {
		b.eof = true
	}
	return n, err
}

// end gives the stream back to the pool, or closes it when the body was not
// read to its end (its rest would be the next answer's start; a
// Content-Length body cut short also ends in io.EOF, so it is whole only
// with every byte read). Once; the body must not be used after.
func (b *upstreamBody) end() {
	c := b.c
	if c == nil {
		return
	}
	b.c = nil
	b.hc.ReleaseReader(b.br)
	c.done(b.reuse && (b.left == 0 || b.eof))
}

// firstByteConn is a tunnel stream of the HTTP client. Until the head of
// the service's final answer is read (armed by exchange; interim answers
// such as 103 Early Hints do not end it), its reads have a deadline, the
// upstream timeout: it bounds the service's time to answer, never a
// response already streaming; and a visitor that hangs up meanwhile ends
// the wait (visitorGone, checked every hangupCheck).
//
// It also watches the start of each response (sniff) for a 101 Switching
// Protocols: the client skips interim responses (100, 103...) but takes a
// 101 for a final, body-less one and would put the stream back in its pool
// at once, with whatever the service sends next unread; the next request on
// the stream would get it as its response (another visitor's body and
// cookies). No request the edge forwards here asks for an upgrade
// (WebSockets do not use this client), so the read of such a response
// fails (errBadResponse): the stream is closed instead.
type firstByteConn struct {
	watchedConn // the stream, watching the visitor while armed

	// Used by the stream's holder only (exchange, then the body's reader),
	// one after the other.
	sniff    bool   // watching a response's start (armed with the deadline)
	head     []byte // the bytes watched, while they leave the answer open
	refused  bool   // a read failed with errBadResponse
	answered bool   // a byte of the answer arrived (since arm)
	used     bool   // it carried an exchange before (from the pool)
	body     upstreamBody
	done     func(reuse bool) // back to the pool, or closed
}

// arm sets the wait for an answer: until deadline, watching visitor
// (unless nil).
func (c *firstByteConn) arm(now, deadline time.Time, visitor net.Conn) {
	c.sniff, c.head, c.refused, c.answered = true, nil, false, false
	c.watch.start(c.Conn, now, deadline, visitor)
}

func (c *firstByteConn) Read(b []byte) (int, error) {
	n, err := c.watchedConn.Read(b)
	if n > 0 {
		c.answered = true
		if c.sniff && c.switches(b[:n]) {
			c.refused = true
			return 0, errBadResponse
		}
	}
	return n, err
}

// disarm ends the wait armed for an answer: its head is read (or failed).
func (c *firstByteConn) disarm() {
	c.watch.visitor = nil
	_ = c.Conn.SetReadDeadline(time.Time{})
}

// hangupWatch is a wait for a service's answer on a stream that watches the
// visitor meanwhile: the stream's read deadline wakes the read every
// hangupCheck to check on the visitor (visitorGone), until the deadline.
type hangupWatch struct {
	deadline time.Time
	visitor  net.Conn // nil: not watched (set nil to stop watching)
	gone     bool     // a read failed with errVisitorGone
}

// start sets the wait on c: until deadline, watching visitor (unless nil).
func (w *hangupWatch) start(c net.Conn, now, deadline time.Time, visitor net.Conn) {
	w.deadline, w.visitor, w.gone = deadline, visitor, false
	_ = c.SetReadDeadline(w.wake(now))
}

// wake is when a read next stops waiting: at the deadline, or sooner to
// check on the visitor.
func (w *hangupWatch) wake(now time.Time) time.Time {
	if t := now.Add(hangupCheck); w.visitor != nil && t.Before(w.deadline) {
		return t
	}
	return w.deadline
}

// read reads from c, waking to check on the visitor: it ends with data, an
// error, the deadline's timeout, or errVisitorGone.
func (w *hangupWatch) read(c net.Conn, b []byte) (int, error) {
	n, err := c.Read(b)
	for n == 0 && w.visitor != nil && tunnel.IsTimeout(err) {
		now := time.Now()
		if !now.Before(w.deadline) {
			break // the upstream timeout
		}
		if visitorGone(w.visitor) {
			w.gone = true
			return 0, errVisitorGone
		}
		_ = c.SetReadDeadline(w.wake(now))
		n, err = c.Read(b)
	}
	return n, err
}

// watchedConn is a stream whose reads watch the visitor while it waits for
// an answer (watch.start; watch.visitor nil: plain reads).
type watchedConn struct {
	net.Conn
	watch hangupWatch
}

func (c *watchedConn) Read(b []byte) (int, error) { return c.watch.read(c.Conn, b) }

// maxInterimHead bounds the interim responses watched before a final one.
const maxInterimHead = 64 << 10

// maxInterimHeads bounds the interim responses skipped before the answer to
// a WebSocket upgrade.
const maxInterimHeads = 16

// switches watches p, the next bytes of a response's start: true once they
// make it a 101 (or interim responses past maxInterimHead).
func (c *firstByteConn) switches(p []byte) bool {
	head := p
	if c.head != nil {
		c.head = append(c.head, p...)
		head = c.head
	}
	switch statusDigit(head) {
	case 0: // not shown yet
	case '1':
		if switched, known := finalIsSwitch(head); known {
			c.sniff, c.head = false, nil
			return switched
		}
	default: // the common case: nothing copied
		c.sniff, c.head = false, nil
		return false
	}
	if c.head == nil {
		c.head = append([]byte(nil), p...)
	}
	if len(c.head) > maxInterimHead {
		c.sniff, c.head = false, nil
		return true
	}
	return false
}

// statusDigit is the first digit of the status code of a response starting
// with b, read as fasthttp reads a status line (blank lines skipped, then
// the version, spaces, the code): 0 while b does not show it, 'x' when the
// line cannot parse.
func statusDigit(b []byte) byte {
	for {
		line, done := b, false
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			line, b, done = b[:i], b[i+1:], true
			if len(line) > 0 && line[len(line)-1] == '\r' {
				line = line[:len(line)-1]
			}
			if len(line) == 0 {
				continue
			}
		}
		if i := bytes.IndexByte(line, ' '); i >= 0 {
			if code := bytes.TrimLeft(line[i:], " "); len(code) > 0 {
				return code[0]
			}
		}
		if done {
			return 'x'
		}
		return 0
	}
}

// finalIsSwitch reads the interim responses at the start of head as the
// HTTP client does (fasthttp.Response.Read): whether the response they lead
// to is a 101, known once its head is whole.
func finalIsSwitch(head []byte) (switched, known bool) {
	br := bufio.NewReaderSize(bytes.NewReader(head), len(head))
	var h fasthttp.ResponseHeader
	for {
		if h.Read(br) != nil {
			return false, false
		}
		if s := h.StatusCode(); s == fasthttp.StatusSwitchingProtocols || s < 100 || s > 199 {
			return s == fasthttp.StatusSwitchingProtocols, true
		}
	}
}

// errBadResponse fails a response the edge does not relay.
var errBadResponse = errors.New("proxy: 101 Switching Protocols (or interim responses past 64 KiB) to a request without an upgrade")

const (
	msgBadResponse     = "The service sent an invalid response"
	msgUpstreamTimeout = "The service did not answer in time"
)

// upstreamError maps a forwarding error to the visitor's status.
func upstreamError(err error) (int, string) {
	switch {
	case errors.Is(err, tunnels.ErrOverloaded):
		return fasthttp.StatusServiceUnavailable, "The service is busy, try again"
	case errors.Is(err, tunnels.ErrRefused):
		return fasthttp.StatusBadGateway, "The service could not be reached from its agent"
	case errors.Is(err, errBadResponse):
		return fasthttp.StatusBadGateway, msgBadResponse
	case tunnel.IsTimeout(err):
		return fasthttp.StatusGatewayTimeout, msgUpstreamTimeout
	default:
		return fasthttp.StatusBadGateway, "The connection to the service was lost"
	}
}
