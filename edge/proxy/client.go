package proxy

// The edge's HTTP client: each service reached through an agent's session
// has a pool of tunnel streams (httpClient), and each request is one
// exchange on one of them.

import (
	"bufio"
	"bytes"
	"errors"
	"net"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/privateconnect/pc/edge/tunnels"
	"github.com/privateconnect/pc/internal/config"
	"github.com/privateconnect/pc/internal/tunnel"
	"github.com/valyala/fasthttp"
)

// httpClient returns the session's pooled HTTP client for a service: its
// connections are tunnel streams.
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
			fc := &firstByteConn{Conn: c}
			fc.addr = streamAddr{Addr: c.RemoteAddr(), c: fc}
			return fc, nil
		},
		Transport: refusedNoRetry{},
		// With firstByteConn, ReadTimeout bounds the wait for the first
		// byte of each response only.
		ReadTimeout:                   p.cfg.UpstreamTimeout,
		MaxConns:                      1024,
		MaxIdleConnDuration:           10 * time.Second,
		StreamResponseBody:            true,
		DisableHeaderNamesNormalizing: true,
		DisablePathNormalizing:        true,
		NoDefaultUserAgentHeader:      true,
		ReadBufferSize:                16 << 10,
		WriteBufferSize:               16 << 10,
		MaxIdemponentCallAttempts:     2,
		RetryIfErr: func(req *fasthttp.Request, attempts int, err error) (bool, bool) {
			// Retry idempotent requests (and body-less ones) once on a stale
			// pooled stream; never re-send a streamed body, never wait twice
			// for a service that did not answer.
			if tunnel.IsTimeout(err) {
				return false, false
			}
			return false, attempts < 2 && !req.IsBodyStream() && (req.Header.IsGet() || req.Header.IsHead() || len(req.Body()) == 0)
		},
	}
	v, _ := sess.Clients.LoadOrStore(svc.ID, hc)
	return v.(*fasthttp.HostClient), nil
}

// firstByteConn is a tunnel stream whose read deadline, set by the HTTP
// client before it reads a response, lasts until the first byte arrives: it
// bounds the service's time to answer, never a response already streaming.
//
// It also watches the start of each response (sniff) for a 101 Switching
// Protocols: the client skips interim responses (100, 103...) but takes a
// 101 for a final, body-less one and puts the stream back in its pool at
// once, with whatever the service sends next unread; the next request on
// the stream would get it as its response (another visitor's body and
// cookies). No request the edge forwards here asks for an upgrade
// (WebSockets do not use this client), so the read of such a response
// fails (errBadResponse): the client closes the stream instead.
type firstByteConn struct {
	net.Conn
	armed atomic.Bool
	addr  streamAddr

	// Used by the stream's holder only (the client, then the body's
	// reader), one after the other.
	sniff   bool   // watching a response's start (armed with the deadline)
	head    []byte // the bytes watched, while they leave the answer open
	refused bool   // a read failed with errBadResponse
}

func (c *firstByteConn) SetReadDeadline(t time.Time) error {
	c.armed.Store(!t.IsZero())
	c.sniff, c.head = !t.IsZero(), nil
	return c.Conn.SetReadDeadline(t)
}

func (c *firstByteConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if n > 0 && c.armed.CompareAndSwap(true, false) {
		_ = c.Conn.SetReadDeadline(time.Time{})
	}
	if n > 0 && c.sniff && c.switches(b[:n]) {
		c.refused = true
		return 0, errBadResponse
	}
	return n, err
}

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

// streamAddr is a tunnel stream's RemoteAddr; a response keeps the address
// of the stream it came from (fasthttp.Response.RemoteAddr), which leads
// refusedNoRetry to the stream.
type streamAddr struct {
	net.Addr
	c *firstByteConn
}

func (c *firstByteConn) RemoteAddr() net.Addr { return &c.addr }

// refusedNoRetry is the HTTP client's transport: a request whose response
// firstByteConn refused fails with errBadResponse and is not sent again (the
// client would take the failed read for a stale stream and retry).
type refusedNoRetry struct{}

func (refusedNoRetry) RoundTrip(hc *fasthttp.HostClient, req *fasthttp.Request, resp *fasthttp.Response) (bool, error) {
	retry, err := fasthttp.DefaultTransport.RoundTrip(hc, req, resp)
	if a, ok := resp.RemoteAddr().(*streamAddr); ok && err != nil && a.c.refused {
		return false, errBadResponse
	}
	return retry, err
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
