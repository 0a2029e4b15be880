package proxy

import (
	"bufio"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/valyala/fasthttp"

	"github.com/privateconnect/pc/internal/tunnel"
)

// pipeClient is a pool of streams whose far end reads a request's head and
// writes answer; a stream's next requests get the next answers, if given.
// The far end closes after its hangUpAfter-th answer (0: never).
func pipeClient(t *testing.T, hangUpAfter int, answer string, next ...string) *fasthttp.HostClient {
	return &fasthttp.HostClient{
		Addr: "service",
		Dial: func(string) (net.Conn, error) {
			near, far := net.Pipe()
			go func() {
				br := bufio.NewReader(far)
				answer, next, n := answer, next, 0
				for {
					line, err := br.ReadString('\n')
					if err != nil {
						return
					}
					if line != "\r\n" {
						continue
					}
					n++
					if _, err := io.WriteString(far, answer); err != nil || n == hangUpAfter {
						far.Close()
						return
					}
					if len(next) > 0 {
						answer, next = next[0], next[1:]
					}
				}
			}()
			t.Cleanup(func() { far.Close() })
			return &firstByteConn{watchedConn: watchedConn{Conn: near}}, nil
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
			hangUp := 0
			if tc.hangUp {
				hangUp = 1
			}
			hc := pipeClient(t, hangUp, tc.answer)
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

// TestExchangeRetriesOnlyWhatItMay: a request on a pooled stream the far
// end closed while it idled is sent again on a new one when it is safe
// (GET, or no body); a request with a body, buffered or streamed, is not
// sent twice, and neither is one whose new stream fails or whose answer had
// begun (the service may have acted on it).
func TestExchangeRetriesOnlyWhatItMay(t *testing.T) {
	for _, tc := range []struct {
		name, method, body string
		stream             bool // the body streams from the visitor
		fresh              bool // the stream that fails is new, not pooled
		cut                bool // the pooled stream fails amid an answer
		again              bool
	}{
		{"GET", "GET", "", false, false, false, true},
		{"DELETE", "DELETE", "", false, false, false, true},
		{"POST", "POST", "data", false, false, false, false},
		{"PUT streamed", "PUT", "data", true, false, false, false},
		{"GET on a new stream the service drops", "GET", "", false, true, false, false},
		{"GET cut amid the answer", "GET", "", false, false, true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := &Proxy{cfg: Config{UpstreamTimeout: 5 * time.Second}}
			const ok = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
			hc := pipeClient(t, 0, ok)
			switch {
			case tc.fresh:
				hc = pipeClient(t, 1, "") // takes the request, drops the stream
			case tc.cut:
				hc = pipeClient(t, 2, ok, "HTTP/1.1 200 OK\r\nContent-Le") // and drops it
			}
			var streams []*firstByteConn
			dial := hc.Dial
			hc.Dial = func(addr string) (net.Conn, error) {
				c, err := dial(addr)
				streams = append(streams, c.(*firstByteConn))
				return c, err
			}
			req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
			defer fasthttp.ReleaseRequest(req)
			defer fasthttp.ReleaseResponse(resp)
			req.SetRequestURI("http://service/x")
			if !tc.fresh {
				// A first request leaves its stream in the pool, then the
				// stream dies there.
				body, err := p.exchange(hc, req, resp, nil)
				require.NoError(t, err)
				_, _ = io.ReadAll(body)
				body.end()
				require.Equal(t, 1, hc.IdleConnsCount())
				if !tc.cut {
					streams[0].Conn.Close()
				}
				resp.Reset()
			}
			req.Header.SetMethod(tc.method)
			if tc.stream {
				req.SetBodyStream(strings.NewReader(tc.body), -1)
			} else {
				req.SetBodyString(tc.body)
			}
			body, err := p.exchange(hc, req, resp, nil)
			if !tc.again {
				require.Error(t, err)
				require.Len(t, streams, 1, "not sent again")
				return
			}
			require.NoError(t, err)
			require.Len(t, streams, 2, "sent again on a new stream")
			b, _ := io.ReadAll(body)
			body.end()
			require.Equal(t, "ok", string(b))
		})
	}
}

// TestExchangeWatchesTheVisitor: until the head of the service's answer is
// whole (an interim answer is not the answer), a visitor that hangs up ends
// the exchange at the next check (errVisitorGone, the stream closed); a
// visitor still there waits for the upstream timeout, which is not retried.
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
	closes := func(c net.Conn) { c.Close() }
	const hints = "HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n"
	const halfHead = "HTTP/1.1 200 OK\r\nContent-Le"
	for _, tc := range []struct {
		name   string
		answer string         // all the service sends
		hang   func(net.Conn) // what the visitor does; nil: it stays
	}{
		{"closes", "", closes},
		{"half-closes", "", func(c net.Conn) { _ = c.(*net.TCPConn).CloseWrite() }},
		{"resets", "", func(c net.Conn) { _ = c.(*net.TCPConn).SetLinger(0); c.Close() }},
		{"stays", "", nil},
		{"closes after early hints", hints, closes},
		{"stays after early hints", hints, nil},
		{"closes amid the head", halfHead, closes},
		{"stays amid the head", halfHead, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := &Proxy{cfg: Config{UpstreamTimeout: 600 * time.Millisecond}}
			dials := 0
			streams := make(chan net.Conn, 2)
			hc := pipeClient(t, 0, tc.answer)
			dial := hc.Dial
			hc.Dial = func(addr string) (net.Conn, error) {
				dials++
				c, err := dial(addr)
				streams <- c
				return c, err
			}
			// A wait nothing ends (no deadline, no watch) fails the test
			// rather than hanging it.
			stuck := time.AfterFunc(5*time.Second, func() { (<-streams).Close() })
			defer stuck.Stop()
			edgeSide, visitor := visitorPair()
			req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
			defer fasthttp.ReleaseRequest(req)
			defer fasthttp.ReleaseResponse(resp)
			req.SetRequestURI("http://service/slow")
			if tc.hang != nil {
				time.AfterFunc(100*time.Millisecond, func() { tc.hang(visitor) })
			}
			start := time.Now()
			_, err := p.exchange(hc, req, resp, edgeSide)
			took := time.Since(start)
			require.Less(t, took, 4*time.Second, "the wait ended by itself")
			require.Equal(t, 1, dials, "not sent twice")
			require.Zero(t, hc.ConnsCount(), "the stream is closed")
			if tc.hang == nil {
				require.True(t, tunnel.IsTimeout(err), "%v", err)
				require.GreaterOrEqual(t, took, p.cfg.UpstreamTimeout)
			} else {
				require.ErrorIs(t, err, errVisitorGone)
				require.Less(t, took, p.cfg.UpstreamTimeout/2, "ended at a check, not at the timeout")
			}
		})
	}
}
