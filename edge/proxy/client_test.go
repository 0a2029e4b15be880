package proxy

import (
	"bufio"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/valyala/fasthttp"

	"github.com/privateconnect/pc/internal/tunnel"
)

// pipeClient is a pool of one-answer streams: each stream's far end reads a
// request's head, writes answer and, when hangUp, closes.
func pipeClient(t *testing.T, answer string, hangUp bool) *fasthttp.HostClient {
	return &fasthttp.HostClient{
		Addr: "service",
		Dial: func(string) (net.Conn, error) {
			near, far := net.Pipe()
			go func() {
				br := bufio.NewReader(far)
				for {
					line, err := br.ReadString('\n')
					if err != nil {
						return
					}
					if line != "\r\n" {
						continue
					}
					if _, err := io.WriteString(far, answer); err != nil || hangUp {
						far.Close()
						return
					}
				}
			}()
			t.Cleanup(func() { far.Close() })
			return &firstByteConn{Conn: near}, nil
		},
	}
}

// TestExchangePoolsOnlyWholeAnswers: a stream goes back to the pool only
// when its answer was read to the end and nothing said to close it;
// otherwise its rest would be the next answer's start.
func TestExchangePoolsOnlyWholeAnswers(t *testing.T) {
	const ok = "HTTP/1.1 200 OK\r\n"
	cases := []struct {
		name   string
		answer string
		hangUp bool
		read   int // body bytes read before the body ends; -1: all
		body   string
		pooled bool
	}{
		{"length, read whole", ok + "Content-Length: 5\r\n\r\nhello", false, -1, "hello", true},
		{"length, read whole in a read of its size", ok + "Content-Length: 5\r\n\r\nhello", false, 5, "hello", true},
		{"length, left half read", ok + "Content-Length: 5\r\n\r\nhello", false, 2, "he", false},
		{"length, cut short", ok + "Content-Length: 10\r\n\r\nhello", true, -1, "hello", false},
		{"empty, by its length", ok + "Content-Length: 0\r\n\r\n", false, 0, "", true},
		{"chunked, read whole", ok + "Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", false, -1, "hello", true},
		{"chunked, cut short", ok + "Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n", true, -1, "hello", false},
		{"to the connection's end", ok + "\r\nhello", true, -1, "hello", false},
		{"Connection: close", ok + "Content-Length: 5\r\nConnection: close\r\n\r\nhello", false, -1, "hello", false},
		{"no body: 204", "HTTP/1.1 204 No Content\r\n\r\n", false, 0, "", true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := &Proxy{cfg: Config{UpstreamTimeout: 5 * time.Second}}
			hc := pipeClient(t, tc.answer, tc.hangUp)
			req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
			defer fasthttp.ReleaseRequest(req)
			defer fasthttp.ReleaseResponse(resp)
			req.SetRequestURI("http://service/x")
			body, err := p.exchange(hc, req, resp, nil)
			require.NoError(t, err)
			var got []byte
			if body != nil {
				if tc.read < 0 {
					got, _ = io.ReadAll(body)
				} else {
					got = make([]byte, tc.read)
					_, err = io.ReadFull(body, got)
					require.NoError(t, err)
				}
				body.end()
			}
			require.Equal(t, tc.body, string(got))
			require.Equal(t, tc.pooled, hc.IdleConnsCount() == 1, "pooled")
			if !tc.pooled {
				require.Zero(t, hc.ConnsCount(), "closed")
			}
		})
	}
}

// TestExchangeRetriesOnlyWhatItMay: a request on a stream the agent closed
// while it idled is sent again on a new one when it is safe (GET, or no
// body); a request with a body, buffered or streamed, is not sent twice.
func TestExchangeRetriesOnlyWhatItMay(t *testing.T) {
	for _, tc := range []struct {
		method, body string
		stream       bool // the body streams from the visitor
		again        bool
	}{
		{"GET", "", false, true},
		{"DELETE", "", false, true},
		{"POST", "data", false, false},
		{"PUT", "data", true, false},
	} {
		t.Run(tc.method, func(t *testing.T) {
			p := &Proxy{cfg: Config{UpstreamTimeout: 5 * time.Second}}
			dials := 0
			hc := pipeClient(t, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", false)
			dial := hc.Dial
			hc.Dial = func(addr string) (net.Conn, error) {
				dials++
				c, err := dial(addr)
				if dials == 1 {
					c.(*firstByteConn).Conn.Close() // stale: it fails its first use
				}
				return c, err
			}
			req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
			defer fasthttp.ReleaseRequest(req)
			defer fasthttp.ReleaseResponse(resp)
			req.SetRequestURI("http://service/x")
			req.Header.SetMethod(tc.method)
			if tc.stream {
				req.SetBodyStream(strings.NewReader(tc.body), -1)
			} else {
				req.SetBodyString(tc.body)
			}
			body, err := p.exchange(hc, req, resp, nil)
			if !tc.again {
				require.Error(t, err)
				require.Equal(t, 1, dials)
				return
			}
			require.NoError(t, err)
			require.Equal(t, 2, dials)
			b, _ := io.ReadAll(body)
			body.end()
			require.Equal(t, "ok", string(b))
		})
	}
}

// TestExchangeWatchesTheVisitor: while the service has not answered, a
// visitor that hangs up ends the exchange at the next check
// (errVisitorGone, the stream closed); a visitor still there waits for the
// upstream timeout, which is not retried.
func TestExchangeWatchesTheVisitor(t *testing.T) {
	defer func(d time.Duration) { hangupCheck = d }(hangupCheck)
	hangupCheck = 20 * time.Millisecond
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	visitorPair := func() (edgeSide, visitorSide net.Conn) {
		v, err := net.Dial("tcp", ln.Addr().String())
		require.NoError(t, err)
		e, err := ln.Accept()
		require.NoError(t, err)
		t.Cleanup(func() { v.Close(); e.Close() })
		return e, v
	}
	for _, tc := range []struct {
		name string
		hang func(net.Conn)
		want func(error) bool
	}{
		{"closes", func(c net.Conn) { c.Close() }, func(err error) bool { return errors.Is(err, errVisitorGone) }},
		{"half-closes", func(c net.Conn) { _ = c.(*net.TCPConn).CloseWrite() }, func(err error) bool { return errors.Is(err, errVisitorGone) }},
		{"resets", func(c net.Conn) { _ = c.(*net.TCPConn).SetLinger(0); c.Close() }, func(err error) bool { return errors.Is(err, errVisitorGone) }},
		{"stays", func(net.Conn) {}, tunnel.IsTimeout},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := &Proxy{cfg: Config{UpstreamTimeout: 600 * time.Millisecond}}
			dials := 0
			hc := pipeClient(t, "", false) // never answers
			dial := hc.Dial
			hc.Dial = func(addr string) (net.Conn, error) { dials++; return dial(addr) }
			edgeSide, visitor := visitorPair()
			req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
			defer fasthttp.ReleaseRequest(req)
			defer fasthttp.ReleaseResponse(resp)
			req.SetRequestURI("http://service/slow")
			time.AfterFunc(100*time.Millisecond, func() { tc.hang(visitor) })
			start := time.Now()
			_, err := p.exchange(hc, req, resp, edgeSide)
			took := time.Since(start)
			require.True(t, tc.want(err), "%v", err)
			require.Equal(t, 1, dials, "not sent twice")
			require.Zero(t, hc.ConnsCount(), "the stream is closed")
			if strings.Contains(tc.name, "stays") {
				require.GreaterOrEqual(t, took, p.cfg.UpstreamTimeout)
			} else {
				require.Less(t, took, p.cfg.UpstreamTimeout/2, "ended at a check, not at the timeout")
			}
		})
	}
}
