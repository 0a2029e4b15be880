package e2e

// Malicious visitors against a real edge (issue #8, part 2): request
// smuggling (conflicting Content-Length and Transfer-Encoding, duplicate
// Content-Length, bad chunking), header injection with CR/LF/NUL, path
// traversal out of /shared/<token>/ and around an allowedPaths policy,
// absolute-form and odd request targets, huge headers, spoofed forwarding
// headers, upgrade tricks. The service behind the edge is a raw TCP server
// that records the exact bytes the edge forwards and flags anything a
// lenient parser could read differently; it must never receive a request
// the policy did not allow.

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"path"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/privateconnect/pc/internal/testenv"
	"github.com/privateconnect/pc/sdk/client"
)

// rawOrigin is an HTTP/1.1 service that records every request head it
// receives and checks its framing strictly.
type rawOrigin struct {
	ln       net.Listener
	mu       sync.Mutex
	reqs     []rawReq
	problems []string
}

type rawReq struct {
	line    string
	headers []string
	body    []byte
}

func (r rawReq) header(name string) []string {
	var out []string
	for _, h := range r.headers {
		if k, v, ok := strings.Cut(h, ":"); ok && strings.EqualFold(k, name) {
			out = append(out, strings.TrimSpace(v))
		}
	}
	return out
}

func newRawOrigin(t *testing.T) *rawOrigin {
	o := &rawOrigin{}
	o.ln = tcpService(t, o.serve)
	return o
}

func (o *rawOrigin) problem(format string, args ...any) {
	o.mu.Lock()
	o.problems = append(o.problems, fmt.Sprintf(format, args...))
	o.mu.Unlock()
}

func (o *rawOrigin) serve(c net.Conn) {
	defer c.Close()
	br := bufio.NewReader(c)
	for {
		var head []string
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				if line != "" {
					o.problem("truncated head line %q", line)
				}
				return
			}
			if !strings.HasSuffix(line, "\r\n") {
				o.problem("line not ended by CRLF: %q", line)
			}
			line = strings.TrimSuffix(strings.TrimSuffix(line, "\n"), "\r")
			if line == "" {
				break
			}
			for _, b := range []byte(line) {
				if b == '\r' || b == '\n' || b == 0 || (b < 0x20 && b != '\t') || b == 0x7f {
					o.problem("control byte %#x in forwarded line %q", b, line)
				}
			}
			if len(head) > 0 && (line[0] == ' ' || line[0] == '\t') {
				o.problem("obs-fold continuation line %q", line)
			}
			head = append(head, line)
		}
		if len(head) == 0 {
			o.problem("empty request head")
			return
		}
		r := rawReq{line: head[0], headers: head[1:]}
		if parts := strings.Split(r.line, " "); len(parts) != 3 || !strings.HasPrefix(parts[2], "HTTP/1.") {
			o.problem("malformed request line %q", r.line)
		}
		cl, te := r.header("Content-Length"), r.header("Transfer-Encoding")
		if len(cl) > 1 || (len(cl) > 0 && len(te) > 0) || len(te) > 1 {
			o.problem("ambiguous framing: Content-Length %q Transfer-Encoding %q in %q", cl, te, r.line)
		}
		switch {
		case len(te) > 0:
			if !strings.EqualFold(te[0], "chunked") {
				o.problem("transfer-encoding %q", te[0])
				return
			}
			var body bytes.Buffer
			for {
				sz, err := br.ReadString('\n')
				if err != nil {
					return
				}
				n, err := strconv.ParseInt(strings.TrimSpace(strings.SplitN(sz, ";", 2)[0]), 16, 64)
				if err != nil || n < 0 {
					o.problem("bad chunk size %q", sz)
					return
				}
				if n == 0 {
					for { // trailers
						l, err := br.ReadString('\n')
						if err != nil || l == "\r\n" {
							break
						}
					}
					break
				}
				if _, err := io.CopyN(&body, br, n); err != nil {
					return
				}
				_, _ = br.Discard(2)
			}
			r.body = body.Bytes()
		case len(cl) == 1:
			n, err := strconv.Atoi(cl[0])
			if err != nil || n < 0 {
				o.problem("bad content-length %q", cl[0])
				return
			}
			r.body = make([]byte, n)
			if _, err := io.ReadFull(br, r.body); err != nil {
				return
			}
		}
		o.mu.Lock()
		o.reqs = append(o.reqs, r)
		o.mu.Unlock()
		_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok")
	}
}

func (o *rawOrigin) requests() []rawReq {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]rawReq(nil), o.reqs...)
}

// exchange writes payload on a fresh connection and reads every response
// until the edge closes the connection or stays silent for idle.
func exchange(addr string, payload []byte, idle time.Duration) (statuses []int, closed bool, err error) {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return nil, false, err
	}
	defer c.Close()
	if _, err := c.Write(payload); err != nil {
		return nil, false, err
	}
	br := bufio.NewReader(c)
	for {
		_ = c.SetReadDeadline(time.Now().Add(idle))
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				return statuses, false, nil
			}
			return statuses, true, nil
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		statuses = append(statuses, resp.StatusCode)
	}
}

// TestHostileVisitors sends crafted requests to an edge serving a share
// with an allowedPaths policy (/public/*), and checks the edge's answers,
// that every forwarded request is unambiguous, that the service never
// receives anything outside /public/, and that the edge keeps serving.
func TestHostileVisitors(t *testing.T) {
	if testing.Short() {
		t.Skip("whole system")
	}
	env := testenv.New(t, testenv.Options{})
	ed := env.Edges[0]
	o := newRawOrigin(t)
	_, svc := env.ExposeAgent("a", "raw", o.ln.Addr().String())
	locked := env.Share(svc.ID, client.CreateShareRequest{Name: "locked", AllowedPaths: []string{"/public/*"}})
	open := env.Share(svc.ID, client.CreateShareRequest{Name: "open"})
	addr := ed.HTTPAddr()
	T := "/shared/" + locked.Token
	eventuallyStatus(t, "http://"+addr+T+"/public/warm", 200, 5*time.Second)
	code, _ := get(t, "http://"+addr+T+"/admin")
	require.Equal(t, 403, code, "the policy is in force")

	big := strings.Repeat("a", 100<<10)
	manyHeaders := strings.Repeat("X-Many: 1\r\n", 5000)
	smuggled := "GET " + T + "/admin/smuggled2 HTTP/1.1\r\nHost: h\r\n\r\n"
	cases := []struct {
		name string
		raw  string
		want []int // the answers expected, in order (then any closing)
		// closes: the edge must close the connection after them.
		closes bool
	}{
		{"CL+TE: chunked wins, the rest is never a request",
			"POST " + T + "/public/clte HTTP/1.1\r\nHost: h\r\nContent-Length: 48\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET " + T + "/admin/smuggled HTTP/1.1\r\nHost: h\r\n\r\n",
			[]int{200}, true},
		{"TE+CL: a CL parser would see a second request in the chunk",
			fmt.Sprintf("POST %s/public/tecl HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n%x\r\n%s\r\n0\r\n\r\n",
				T, len(smuggled), smuggled),
			[]int{200}, true},
		{"duplicate Content-Length", "POST " + T + "/public/dupcl HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\nContent-Length: 40\r\n\r\nGET " + T + "/admin/dup HTTP/1.1\r\nHost: h\r\n\r\n", []int{400}, true},
		{"list Content-Length", "POST " + T + "/public/listcl HTTP/1.1\r\nHost: h\r\nContent-Length: 3, 3\r\n\r\nabc", []int{400}, true},
		{"signed Content-Length", "POST " + T + "/public/signcl HTTP/1.1\r\nHost: h\r\nContent-Length: +3\r\n\r\nabc", []int{400}, true},
		{"two Transfer-Encodings", "POST " + T + "/public/dupte HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n0\r\n\r\n", []int{400}, true},
		{"obfuscated Transfer-Encoding", "POST " + T + "/public/xte HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n", []int{400}, true},
		{"space before colon", "POST " + T + "/public/sp HTTP/1.1\r\nHost: h\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n", []int{400}, true},
		{"bad chunk size", "POST " + T + "/public/badchunk HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n0x5\r\nhello\r\n0\r\n\r\n", []int{400}, true},
		{"huge chunk size", "POST " + T + "/public/hugechunk HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffffff\r\nhello\r\n0\r\n\r\n", []int{400}, true},
		{"TE on HTTP/1.0", "POST " + T + "/public/te10 HTTP/1.0\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", []int{400}, true},
		{"space inside a header name", "GET " + T + "/public/spname HTTP/1.1\r\nHost: h\r\nX A: b\r\n\r\n", []int{400}, true},
		{"bare CR in a header value", "GET " + T + "/public/cr HTTP/1.1\r\nHost: h\r\nX-A: a\rX-Injected: 1\r\n\r\n", []int{400}, true},
		{"bare LF ends a header line", "GET " + T + "/public/lf HTTP/1.1\r\nHost: h\r\nX-A: a\nX-Lf: 1\r\n\r\n", nil, false},
		{"NUL in a header value", "GET " + T + "/public/nul HTTP/1.1\r\nHost: h\r\nX-A: a\x00b\r\n\r\n", []int{400}, true},
		{"obs-fold", "GET " + T + "/public/fold HTTP/1.1\r\nHost: h\r\nX-A: a\r\n X-Injected: 1\r\n\r\n", nil, false},
		{"two Host headers", "GET " + T + "/public/twohost HTTP/1.1\r\nHost: h\r\nHost: evil\r\n\r\n", []int{400}, true},
		{"space in the request target", "GET " + T + "/public/a?x=1 GET /admin HTTP/1.1\r\nHost: h\r\n\r\n", nil, false},
		{"dot segments", "GET " + T + "/public/../admin/dots HTTP/1.1\r\nHost: h\r\n\r\n", []int{403}, false},
		{"encoded dot segments", "GET " + T + "/public/%2e%2e/admin/enc HTTP/1.1\r\nHost: h\r\n\r\n", []int{403}, false},
		{"encoded slash and dots", "GET " + T + "/public/%2e%2e%2fadmin%2fencslash HTTP/1.1\r\nHost: h\r\n\r\n", []int{403}, false},
		{"out of the share", "GET " + T + "/%2e%2e/%2e%2e/admin/out HTTP/1.1\r\nHost: h\r\n\r\n", []int{404}, false},
		{"into another share", "GET /shared/" + open.Token + "/../" + locked.Token + "/admin/other HTTP/1.1\r\nHost: h\r\n\r\n", []int{403}, false},
		{"dot segment with path parameters (Tomcat's ..;)", "GET " + T + "/public/..;x HTTP/1.1\r\nHost: h\r\n\r\n", []int{400}, false},
		{"encoded dot segment with path parameters", "GET " + T + "/public/%2e%2e%3bx/admin HTTP/1.1\r\nHost: h\r\n\r\n", []int{400}, false},
		{"encoded NUL", "GET " + T + "/public/x%00.html HTTP/1.1\r\nHost: h\r\n\r\n", []int{400}, false},
		{"backslash dot segments", "GET " + T + "/public/..\\admin\\bs HTTP/1.1\r\nHost: h\r\n\r\n", []int{403}, false},
		{"double-encoded dots stay data", "GET " + T + "/public/%252e%252e/admin HTTP/1.1\r\nHost: h\r\n\r\n", []int{403}, false},
		{"absolute-form URI", "GET http://evil.example" + T + "/public/absolute HTTP/1.1\r\nHost: h\r\n\r\n", []int{200}, false},
		{"absolute-form to the admin path", "GET http://evil.example" + T + "/admin/absolute HTTP/1.1\r\nHost: h\r\n\r\n", []int{403}, false},
		{"asterisk target", "OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n", []int{404}, false},
		{"CONNECT", "CONNECT 127.0.0.1:22 HTTP/1.1\r\nHost: 127.0.0.1:22\r\n\r\n", nil, false},
		{"huge header", "GET " + T + "/public/huge HTTP/1.1\r\nHost: h\r\nX-Big: " + big + "\r\n\r\n", []int{431}, true},
		{"many headers", "GET " + T + "/public/many HTTP/1.1\r\nHost: h\r\n" + manyHeaders + "\r\n", []int{431}, true},
		{"huge URI", "GET " + T + "/public/" + big + " HTTP/1.1\r\nHost: h\r\n\r\n", []int{431}, true},
		{"upgrade refused by the service, then a request on the same connection",
			"GET " + T + "/public/upgrade HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n" +
				"GET " + T + "/admin/after-upgrade HTTP/1.1\r\nHost: h\r\n\r\n", nil, false},
		{"pipelined requests", "GET " + T + "/public/p1 HTTP/1.1\r\nHost: h\r\n\r\nGET " + T + "/public/p2 HTTP/1.1\r\nHost: h\r\n\r\nGET " + T + "/admin/p3 HTTP/1.1\r\nHost: h\r\n\r\n", []int{200, 200, 403}, false},
	}
	var mu sync.Mutex
	tried := 0
	t.Run("cases", func(t *testing.T) {
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				t.Parallel()
				statuses, closed, err := exchange(addr, []byte(tc.raw), 1500*time.Millisecond)
				require.NoError(t, err)
				mu.Lock()
				tried++
				mu.Unlock()
				t.Logf("answers %v, closed %v", statuses, closed)
				if tc.want != nil {
					require.GreaterOrEqual(t, len(statuses), len(tc.want), "answers %v", statuses)
					require.Equal(t, tc.want, statuses[:len(tc.want)])
				}
				for _, s := range statuses {
					require.Less(t, s, 500, "the edge failed on hostile input")
				}
				if tc.closes {
					require.True(t, closed, "the edge must close the connection")
				}
			})
		}
	})

	// Spoofed forwarding headers are replaced by the edge's own.
	req, _ := http.NewRequest("GET", "http://"+addr+T+"/public/spoof", nil)
	req.Header.Set("X-Forwarded-For", "6.6.6.6")
	req.Header.Set("X-Share-Id", "someone-else")
	req.Header.Set("X-Forwarded-Proto", "https")
	req.Header.Set("X-Real-Ip", "6.6.6.6")
	req.Header.Set("Forwarded", "for=6.6.6.6;proto=https")
	req.Header.Add("X-Forwarded-Prefix", "/evil")
	req.Header.Add("X-Forwarded-Prefix", "/evil2")
	req.Header.Set("Connection", "X-Forwarded-For")
	// A second line of each header the edge sets went on behind the edge's.
	req.Header.Add("X-Share-Id", "someone-else-2")
	req.Header.Add("X-Forwarded-Proto", "https")
	req.Header.Set("X-Forwarded-Host", "a.example")
	req.Header.Add("X-Forwarded-Host", "evil.example")
	// CGI-style servers read X_Forwarded_For as X-Forwarded-For.
	req.Header["X_Forwarded_For"] = []string{"6.6.6.6"}
	req.Header["X_Share_Id"] = []string{"someone-else-3"}
	// Claims of another request URL (IIS-style rewrites) or scheme.
	req.Header.Set("X-Original-URL", "/admin")
	req.Header.Set("X-Forwarded-Ssl", "on")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, 200, resp.StatusCode)

	// What the service received.
	reqs := o.requests()
	var spoof *rawReq
	for i, r := range reqs {
		target := strings.Split(r.line, " ")[1]
		decoded, err := url.PathUnescape(strings.SplitN(target, "?", 2)[0])
		if err != nil {
			decoded = target
		}
		cleaned := path.Clean(decoded)
		if strings.HasPrefix(cleaned, "/admin") || strings.Contains(r.line, "smuggled") || strings.Contains(r.line, "/p3") {
			t.Errorf("the service received a request the policy forbids: %q", r.line)
		}
		if !strings.HasPrefix(target, "/public/") {
			t.Errorf("the service received a request outside /public/: %q", r.line)
		}
		for _, h := range r.headers {
			if strings.HasPrefix(strings.ToLower(h), "x-injected") {
				t.Errorf("an injected header reached the service: %q in %q", h, r.line)
			}
		}
		if strings.HasPrefix(target, "/public/spoof") {
			spoof = &reqs[i]
		}
		if strings.HasPrefix(target, "/public/clte") {
			require.Empty(t, r.body, "the chunked body is empty; what follows is never forwarded")
		}
		if strings.HasPrefix(target, "/public/tecl") {
			require.Equal(t, smuggled, string(r.body), "the chunk travels as the body, framed unambiguously")
		}
	}
	o.mu.Lock()
	for _, p := range o.problems {
		t.Errorf("forwarded framing problem: %s", p)
	}
	o.mu.Unlock()
	require.NotNil(t, spoof)
	require.Equal(t, []string{"127.0.0.1"}, spoof.header("X-Forwarded-For"))
	require.Equal(t, []string{locked.ID}, spoof.header("X-Share-Id"))
	require.Equal(t, []string{"http"}, spoof.header("X-Forwarded-Proto"))
	require.Equal(t, []string{addr}, spoof.header("X-Forwarded-Host"))
	require.Empty(t, spoof.header("X_Forwarded_For"), "underscore aliases of the edge's headers are dropped")
	require.Empty(t, spoof.header("X_Share_Id"))
	require.Empty(t, spoof.header("X-Original-Url"), "claims of another URL are dropped")
	require.Empty(t, spoof.header("X-Forwarded-Ssl"))
	require.Empty(t, spoof.header("X-Real-Ip"), "other claims about the client are dropped")
	require.Empty(t, spoof.header("Forwarded"))
	require.Equal(t, []string{T}, spoof.header("X-Forwarded-Prefix"), "the link's own mount point, once")

	// The edge still serves everyone.
	eventuallyStatus(t, "http://"+addr+"/shared/"+open.Token+"/public/after", 200, 2*time.Second)
	t.Logf("%d hostile requests tried; the service received %d requests, all inside /public/, none ambiguous", tried+1, len(reqs))
}
