package e2e

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/privateconnect/pc/internal/testenv"
	"github.com/privateconnect/pc/sdk/client"
)

// TestIgnoredBodyIsNoRequest: a body on a GET (HEAD, OPTIONS, DELETE) that
// the service does not read is never taken for a request. Python's
// http.server in HTTP/1.1 mode (protocol_version = "HTTP/1.1") answers a
// GET without reading its body and parses the next request from what
// follows: the body of GET /public/x, forwarded on a kept-alive tunnel
// stream, was run as GET /admin/delete-everything, past the share's
// allowedPaths. Such a request now tells the service to close after it.
func TestIgnoredBodyIsNoRequest(t *testing.T) {
	env := testenv.New(t, testenv.Options{})
	var mu sync.Mutex
	var paths []string
	// A keep-alive service that reads no body it does not need, as
	// Python's BaseHTTPRequestHandler: heads only, until Connection: close.
	ln := tcpService(t, func(c net.Conn) {
		defer c.Close()
		br := bufio.NewReader(c)
		for {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			mu.Lock()
			paths = append(paths, req.Method+" "+req.URL.Path)
			mu.Unlock()
			answer := "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
			if req.Method == "HEAD" {
				answer = strings.TrimSuffix(answer, "ok")
			}
			_, _ = io.WriteString(c, answer)
			if req.Close {
				return
			}
			if req.Method == "POST" || req.Method == "PUT" {
				_, _ = io.Copy(io.Discard, req.Body)
				continue
			}
			// The body stays unread: http.ReadRequest's reader would skip
			// it, so read the next head from the raw bytes after this one.
			br = bufio.NewReader(io.MultiReader(bytes2reader(br), c))
		}
	})
	_, svc := env.ExposeAgent("a", "lenient", ln.Addr().String())
	sh := env.Share(svc.ID, client.CreateShareRequest{Name: "p", AllowedPaths: []string{"/public/*"}})
	addr := env.Edges[0].HTTPAddr()
	T := "/shared/" + sh.Token
	eventuallyStatus(t, "http://"+addr+T+"/public/warm", 200, 5*time.Second)

	smuggled := "GET /admin/delete-everything HTTP/1.1\r\nHost: x\r\n\r\n"
	answers := map[string][]int{}
	for _, m := range []string{"GET", "HEAD", "OPTIONS", "DELETE"} {
		raw := m + " " + T + "/public/x HTTP/1.1\r\nHost: h\r\nContent-Length: " + strconv.Itoa(len(smuggled)) + "\r\n\r\n" + smuggled
		statuses, _, err := exchange(addr, []byte(raw), 500*time.Millisecond)
		require.NoError(t, err)
		answers[m+" with Content-Length"] = statuses
		raw = m + " " + T + "/public/y HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n" + strconv.FormatInt(int64(len(smuggled)), 16) + "\r\n" + smuggled + "\r\n0\r\n\r\n"
		statuses, _, err = exchange(addr, []byte(raw), 500*time.Millisecond)
		require.NoError(t, err)
		answers[m+" chunked"] = statuses
	}
	code, _ := get(t, "http://"+addr+T+"/public/after")
	answers["a later GET"] = []int{code}
	mu.Lock()
	for _, p := range paths {
		if strings.Contains(p, "/admin") {
			t.Errorf("a request the policy never saw reached the service: %q (all: %q)", p, paths)
		}
	}
	mu.Unlock()
	// Nor did its answer reach anyone (a stale answer on a pooled stream
	// desynchronised the ones after it).
	for what, statuses := range answers {
		require.Equal(t, []int{200}, statuses, what)
	}
}

// bytes2reader is what br holds already, as a reader.
func bytes2reader(br *bufio.Reader) io.Reader {
	b, _ := br.Peek(br.Buffered())
	return strings.NewReader(string(b))
}
