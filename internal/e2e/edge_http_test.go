package e2e

// The edge's HTTP server against raw sockets: answers it writes before any
// share handler runs, the time a visitor has to send a request head,
// Expect: 100-continue, and the request body limit.

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/privateconnect/pc/edge"
	"github.com/privateconnect/pc/internal/testenv"
	"github.com/privateconnect/pc/sdk/client"
)

// rawResponse writes payload on a new connection to addr and reads one
// response.
func rawResponse(t *testing.T, addr, payload string) (*http.Response, string) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	defer c.Close()
	_, err = io.WriteString(c, payload)
	require.NoError(t, err)
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	require.NoError(t, err)
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	resp.Body.Close()
	return resp, string(b)
}

// postHead is the head of a POST to path with a body of length bytes, or
// a chunked one.
func postHead(path string, length int, chunked bool) string {
	if chunked {
		return "POST " + path + " HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
	}
	return fmt.Sprintf("POST %s HTTP/1.1\r\nHost: h\r\nContent-Length: %d\r\n\r\n", path, length)
}

// writeSlowBody writes a body of pieces copies of piece, every apart (each
// a chunk when chunked, then the last chunk), as a slow upload does.
func writeSlowBody(t *testing.T, c net.Conn, piece string, pieces int, every time.Duration, chunked bool) {
	t.Helper()
	start := time.Now()
	for i := 0; i < pieces; i++ {
		time.Sleep(every)
		p := piece
		if chunked {
			p = fmt.Sprintf("%x\r\n%s\r\n", len(piece), piece)
		}
		_, err := io.WriteString(c, p)
		require.NoError(t, err, "piece %d after %v", i, time.Since(start))
	}
	if chunked {
		_, err := io.WriteString(c, "0\r\n\r\n")
		require.NoError(t, err)
	}
}

// requireEnvelope checks an answer the edge wrote itself: the status, and
// the API's error envelope with the edge's security header.
func requireEnvelope(t *testing.T, resp *http.Response, body string, status int) {
	t.Helper()
	require.Equal(t, status, resp.StatusCode, "%s", body)
	require.Equal(t, "application/json", resp.Header.Get("Content-Type"), "%s", body)
	require.Equal(t, "nosniff", resp.Header.Get("X-Content-Type-Options"))
	var env struct {
		Error      string `json:"error"`
		Message    string `json:"message"`
		StatusCode int    `json:"statusCode"`
	}
	require.NoError(t, json.Unmarshal([]byte(body), &env), "%q", body)
	require.Equal(t, http.StatusText(status), env.Error)
	require.Equal(t, status, env.StatusCode)
	require.NotEmpty(t, env.Message)
}

// TestEdgeParseErrorsAreEnvelopes: requests fasthttp refuses before the
// share handler runs (ambiguous framing, two Hosts, a head past the read
// buffer) get the error envelope of dataplane.md, not fasthttp's plain
// text, and the connection is closed.
func TestEdgeParseErrorsAreEnvelopes(t *testing.T) {
	env := testenv.New(t, testenv.Options{})
	addr := env.Edges[0].HTTPAddr()
	const p = "/shared/abc/x"
	for _, tc := range []struct {
		name, raw string
		status    int
	}{
		{"duplicate Content-Length", "POST " + p + " HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\nContent-Length: 4\r\n\r\nabcd", 400},
		{"obfuscated Transfer-Encoding", "POST " + p + " HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n", 400},
		{"two Host headers", "GET " + p + " HTTP/1.1\r\nHost: h\r\nHost: evil\r\n\r\n", 400},
		{"negative Content-Length", "POST " + p + " HTTP/1.1\r\nHost: h\r\nContent-Length: -5\r\n\r\n", 400},
		{"headers over the read buffer", "GET " + p + " HTTP/1.1\r\nHost: h\r\nX-Big: " + strings.Repeat("a", 20<<10) + "\r\n\r\n", 431},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := rawResponse(t, addr, tc.raw)
			requireEnvelope(t, resp, body, tc.status)
			require.True(t, resp.Close, "the connection is closed after a request that could not be read")
		})
	}
}

// closedAfter reads c until the edge closes it and returns how long that
// took from start and what the edge sent.
func closedAfter(t *testing.T, c net.Conn, start time.Time, limit time.Duration) (time.Duration, string) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(limit))
	b, err := io.ReadAll(c)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("the connection is still open after %v (read %q)", time.Since(start), b)
	}
	return time.Since(start), string(b)
}

// TestHeaderTimeout: a visitor has HeaderTimeout to send a request's head,
// however it dribbles it (nothing at all, a partial head, a header line now
// and then, bare-LF lines, through TLS), on the first request of a
// connection and on the next ones; a body has no time limit; a keep-alive
// connection still waits IdleTimeout for its next request.
func TestHeaderTimeout(t *testing.T) {
	const headerTimeout, idleTimeout = 600 * time.Millisecond, 2500 * time.Millisecond
	tweak := func(c *edge.Config) { c.HeaderTimeout, c.IdleTimeout = headerTimeout, idleTimeout }
	env := testenv.New(t, testenv.Options{Edge: tweak})
	ed := env.Edges[0]
	_, svc := env.ExposeAgent("a", "web", origin(t).URL)
	sh := env.Share(svc.ID, client.CreateShareRequest{})
	addr, path := ed.HTTPAddr(), "/shared/"+sh.Token

	// The edge must have closed within the timeout plus slack for a
	// loaded machine (-race, two cores), and not before it.
	requireCut := func(t *testing.T, took time.Duration, got string) {
		t.Helper()
		require.GreaterOrEqual(t, took, headerTimeout-50*time.Millisecond, "cut before the timeout: %q", got)
		require.Less(t, took, headerTimeout+3*time.Second, "%q", got)
		if got != "" {
			resp, err := http.ReadResponse(bufio.NewReader(strings.NewReader(got)), nil)
			require.NoError(t, err, "%q", got)
			b, _ := io.ReadAll(resp.Body)
			requireEnvelope(t, resp, string(b), http.StatusRequestTimeout)
		}
	}
	// dribble writes parts one every interval from start until a write
	// fails, then returns.
	dribble := func(c net.Conn, parts []string, every time.Duration) {
		for _, p := range parts {
			if _, err := io.WriteString(c, p); err != nil {
				return
			}
			time.Sleep(every)
		}
	}
	headerLines := func(n int, eol string) []string {
		parts := []string{"GET " + path + "/ HTTP/1.1" + eol + "Host: h" + eol}
		for i := 0; i < n; i++ {
			parts = append(parts, fmt.Sprintf("X-Line-%d: %d%s", i, i, eol))
		}
		return parts
	}

	t.Run("slowloris", func(t *testing.T) {
		for _, tc := range []struct {
			name  string
			parts []string
			every time.Duration
		}{
			{"nothing sent", nil, 0},
			{"partial head", []string{"GET " + path + "/ HTTP/1.1\r\nHost: h\r\nX-Partial: "}, 0},
			{"a header line every 100 ms", headerLines(100, "\r\n"), 100 * time.Millisecond},
			{"bare-LF lines every 100 ms", headerLines(100, "\n"), 100 * time.Millisecond},
		} {
			t.Run(tc.name, func(t *testing.T) {
				t.Parallel()
				start := time.Now()
				c, err := net.Dial("tcp", addr)
				require.NoError(t, err)
				defer c.Close()
				go dribble(c, tc.parts, tc.every)
				took, got := closedAfter(t, c, start, 10*time.Second)
				requireCut(t, took, got)
			})
		}
		t.Run("TLS handshake never sent", func(t *testing.T) {
			t.Parallel()
			tenv := testenv.New(t, testenv.Options{Edge: tweak, TLS: true})
			start := time.Now()
			c, err := net.Dial("tcp", tenv.Edges[0].HTTPAddr())
			require.NoError(t, err)
			defer c.Close()
			took, _ := closedAfter(t, c, start, 10*time.Second)
			require.GreaterOrEqual(t, took, headerTimeout-50*time.Millisecond)
			require.Less(t, took, headerTimeout+3*time.Second)
		})
		t.Run("admin listener", func(t *testing.T) {
			t.Parallel()
			start := time.Now()
			c, err := net.Dial("tcp", ed.AdminAddr())
			require.NoError(t, err)
			defer c.Close()
			_, err = io.WriteString(c, "GET /metrics HTTP/1.1\r\nHost: h\r\n")
			require.NoError(t, err)
			took, _ := closedAfter(t, c, start, 10*time.Second)
			require.Less(t, took, headerTimeout+3*time.Second)
		})
	})

	t.Run("slow bodies go through", func(t *testing.T) {
		// 40 pieces 60 ms apart: the body takes four header timeouts.
		const pieces, every = 40, 60 * time.Millisecond
		piece := strings.Repeat("b", 1000)
		for _, chunked := range []bool{false, true} {
			t.Run(fmt.Sprintf("chunked=%v", chunked), func(t *testing.T) {
				t.Parallel()
				c, err := net.Dial("tcp", addr)
				require.NoError(t, err)
				defer c.Close()
				start := time.Now()
				_, err = io.WriteString(c, postHead(path+"/upload", pieces*len(piece), chunked))
				require.NoError(t, err)
				writeSlowBody(t, c, piece, pieces, every, chunked)
				_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
				resp, err := http.ReadResponse(bufio.NewReader(c), nil)
				require.NoError(t, err, "after %v", time.Since(start))
				b, _ := io.ReadAll(resp.Body)
				require.Equal(t, 200, resp.StatusCode, "%s", b)
				require.Equal(t, fmt.Sprint(pieces*len(piece)), string(b), "the service got the whole body")
				require.Greater(t, time.Since(start), 3*headerTimeout)
			})
		}
	})

	t.Run("keep-alive", func(t *testing.T) {
		t.Parallel()
		c, err := net.Dial("tcp", addr)
		require.NoError(t, err)
		defer c.Close()
		br := bufio.NewReader(c)
		ask := func() int {
			_, err := io.WriteString(c, "GET "+path+"/ HTTP/1.1\r\nHost: h\r\n\r\n")
			require.NoError(t, err)
			_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
			resp, err := http.ReadResponse(br, nil)
			require.NoError(t, err)
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			return resp.StatusCode
		}
		require.Equal(t, 200, ask())
		// Idle for twice the header timeout, well within the idle one:
		// the connection still serves.
		time.Sleep(2 * headerTimeout)
		require.Equal(t, 200, ask())
		// The next head is timed from its first byte.
		start := time.Now()
		_, err = io.WriteString(c, "GET "+path+"/ HTTP/1.1\r\nHost: h\r\n")
		require.NoError(t, err)
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		rest, err := io.ReadAll(br)
		require.NoError(t, err)
		requireCut(t, time.Since(start), string(rest))

		// A connection idle past IdleTimeout is closed without an answer.
		c2, err := net.Dial("tcp", addr)
		require.NoError(t, err)
		defer c2.Close()
		_, err = io.WriteString(c2, "GET "+path+"/ HTTP/1.1\r\nHost: h\r\n\r\n")
		require.NoError(t, err)
		br2 := bufio.NewReader(c2)
		_ = c2.SetReadDeadline(time.Now().Add(10 * time.Second))
		resp, err := http.ReadResponse(br2, nil)
		require.NoError(t, err)
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		start = time.Now()
		_ = c2.SetReadDeadline(time.Now().Add(10 * time.Second))
		rest, err = io.ReadAll(br2)
		require.NoError(t, err)
		require.Empty(t, rest, "no answer to an idle connection")
		took := time.Since(start)
		require.GreaterOrEqual(t, took, idleTimeout-100*time.Millisecond)
		require.Less(t, took, idleTimeout+3*time.Second)
	})
}

// TestExpectContinue: a request that asks `Expect: 100-continue` is told
// to send its body only when the share it names can take it: an unknown
// token, a revoked or used-up share, a paused tunnel and an offline agent
// get their final answer (the one the request would get, in the error
// envelope) instead of 100 Continue, with the connection closed; a share
// that serves gets 100 and the upload goes through. A share whose policy
// chain refuses the visitor (a password) still gets 100: the chain runs on
// the request, and the edge then answers without reading the body.
func TestExpectContinue(t *testing.T) {
	env := testenv.New(t, testenv.Options{})
	ctx := context.Background()
	ed := env.Edges[0]
	addr := ed.HTTPAddr()
	org := origin(t)
	_, svc := env.ExposeAgent("a", "web", org.URL)
	open := env.Share(svc.ID, client.CreateShareRequest{})
	revoked := env.Share(svc.ID, client.CreateShareRequest{})
	require.NoError(t, env.Client.RevokeShare(ctx, revoked.ID))
	usedUp := env.Share(svc.ID, client.CreateShareRequest{MaxUses: 1})
	code, b := get(t, usedUp.ShareURL+"/")
	require.Equal(t, 200, code, b)
	password := env.Share(svc.ID, client.CreateShareRequest{Password: "correct horse battery"})
	_, paused := env.ExposeAgent("b", "paused", org.URL)
	pausedShare := env.Share(paused.ID, client.CreateShareRequest{})
	_, err := env.Client.PauseTunnel(ctx, paused.ID)
	require.NoError(t, err)
	offAgent, off := env.ExposeAgent("c", "offline", org.URL)
	offShare := env.Share(off.ID, client.CreateShareRequest{})
	offAgent.Stop()
	env.WaitSynced(5 * time.Second)
	eventuallyStatus(t, offShare.ShareURL+"/", 503, 5*time.Second)
	eventuallyStatus(t, pausedShare.ShareURL+"/", 503, 5*time.Second)

	// head sends a request head asking for 100-continue before a body of
	// size bytes, and returns the connection and the first answer.
	head := func(t *testing.T, path string, size int64) (net.Conn, *bufio.Reader, *http.Response, string) {
		t.Helper()
		c, err := net.Dial("tcp", addr)
		require.NoError(t, err)
		t.Cleanup(func() { c.Close() })
		_, err = fmt.Fprintf(c, "POST %s HTTP/1.1\r\nHost: h\r\nContent-Length: %d\r\nExpect: 100-continue\r\n\r\n", path, size)
		require.NoError(t, err)
		br := bufio.NewReader(c)
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		resp, err := http.ReadResponse(br, nil)
		require.NoError(t, err)
		var body string
		if resp.StatusCode != http.StatusContinue {
			bb, _ := io.ReadAll(resp.Body)
			body = string(bb)
		}
		return c, br, resp, body
	}

	const gig = 1 << 30
	for _, tc := range []struct {
		name, path string
		status     int
		message    string
	}{
		{"unknown token", "/shared/" + strings.Repeat("a", 32) + "/upload", 404, "Share link not found"},
		{"revoked share", "/shared/" + revoked.Token + "/upload", 410, "revoked"},
		{"used-up share", "/shared/" + usedUp.Token + "/upload", 410, "maximum number of uses"},
		{"paused tunnel", "/shared/" + pausedShare.Token + "/upload", 503, "paused"},
		{"offline agent", "/shared/" + offShare.Token + "/upload", 503, "offline"},
		{"no share", "/elsewhere", 404, "Not found"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, br, resp, body := head(t, tc.path, gig)
			requireEnvelope(t, resp, body, tc.status)
			require.Contains(t, body, tc.message)
			require.True(t, resp.Close, "the connection closes: a client may have started the body")
			_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
			rest, err := io.ReadAll(br)
			require.NoError(t, err)
			require.Empty(t, rest)
		})
	}

	t.Run("path link without a slash", func(t *testing.T) {
		_, _, resp, _ := head(t, "/shared/"+open.Token, gig)
		require.Equal(t, http.StatusPermanentRedirect, resp.StatusCode)
		require.Equal(t, "http://h/shared/"+open.Token+"/", resp.Header.Get("Location"), "as without Expect")
	})

	t.Run("open share: 100, then the upload", func(t *testing.T) {
		const size = 3 << 20
		c, br, resp, _ := head(t, "/shared/"+open.Token+"/upload", size)
		require.Equal(t, http.StatusContinue, resp.StatusCode)
		_, err := io.Copy(c, io.LimitReader(zeros{}, size))
		require.NoError(t, err)
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		resp, err = http.ReadResponse(br, nil)
		require.NoError(t, err)
		b, _ := io.ReadAll(resp.Body)
		require.Equal(t, 200, resp.StatusCode, "%s", b)
		require.Equal(t, fmt.Sprint(size), string(b))
	})

	t.Run("password share: 100, refused without reading the body", func(t *testing.T) {
		c, br, resp, _ := head(t, "/shared/"+password.Token+"/upload", gig)
		require.Equal(t, http.StatusContinue, resp.StatusCode)
		// The edge reads the first 8 KiB of a body before the handler.
		_, err := c.Write(make([]byte, 16<<10))
		require.NoError(t, err)
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		resp, err = http.ReadResponse(br, nil)
		require.NoError(t, err)
		b, _ := io.ReadAll(resp.Body)
		require.Equal(t, 401, resp.StatusCode, "%s", b)
		require.True(t, resp.Close, "the rest of the body is not read")
	})
}

// TestMaxBodyBytes: with a body limit, a body of the limit goes through;
// a Content-Length past it gets 413 before anything is forwarded (and
// instead of 100 Continue); a chunked body that grows past it is cut: the
// request to the service is aborted (it never gets a whole request) and
// the visitor gets 413, with the connection closed.
func TestMaxBodyBytes(t *testing.T) {
	const limit = 64 << 10
	env := testenv.New(t, testenv.Options{Edge: func(c *edge.Config) { c.MaxBodyBytes = limit }})
	type got struct {
		n   int64
		err error
	}
	bodies := make(chan got, 100)
	org := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, err := io.Copy(io.Discard, r.Body)
		bodies <- got{n, err}
		fmt.Fprint(w, n)
	}))
	t.Cleanup(org.Close)
	_, svc := env.ExposeAgent("a", "web", org.URL)
	sh := env.Share(svc.ID, client.CreateShareRequest{})
	addr, path := env.Edges[0].HTTPAddr(), "/shared/"+sh.Token+"/upload"
	received := func() []got {
		var out []got
		for {
			select {
			case g := <-bodies:
				out = append(out, g)
			case <-time.After(300 * time.Millisecond):
				return out
			}
		}
	}

	// send writes a request head and its body (chunked in 16 KiB chunks
	// when chunked) from a goroutine, and reads the answer.
	send := func(t *testing.T, size int, chunked bool) (*http.Response, string) {
		t.Helper()
		c, err := net.Dial("tcp", addr)
		require.NoError(t, err)
		defer c.Close()
		head := postHead(path, size, chunked)
		go func() {
			if _, err := io.WriteString(c, head); err != nil {
				return
			}
			for left := size; left > 0; {
				n := min(left, 16<<10)
				p := strings.Repeat("x", n)
				if chunked {
					p = fmt.Sprintf("%x\r\n%s\r\n", n, p)
				}
				if _, err := io.WriteString(c, p); err != nil {
					return // the edge stopped reading
				}
				left -= n
			}
			if chunked {
				_, _ = io.WriteString(c, "0\r\n\r\n")
			}
		}()
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		require.NoError(t, err)
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp, string(b)
	}

	for _, chunked := range []bool{false, true} {
		t.Run(fmt.Sprintf("chunked=%v/at the limit", chunked), func(t *testing.T) {
			resp, body := send(t, limit, chunked)
			require.Equal(t, 200, resp.StatusCode, "%s", body)
			require.Equal(t, fmt.Sprint(limit), body)
			require.Equal(t, []got{{limit, nil}}, received())
		})
	}
	t.Run("Content-Length past the limit", func(t *testing.T) {
		resp, body := send(t, limit+1, false)
		requireEnvelope(t, resp, body, http.StatusRequestEntityTooLarge)
		require.Empty(t, received(), "nothing is forwarded")
		// Before the share is looked up (once the 8 KiB fasthttp reads
		// before any handler are in).
		resp, body = rawResponse(t, addr, "POST /shared/nope/x HTTP/1.1\r\nHost: h\r\nContent-Length: 1000000000\r\n\r\n"+strings.Repeat("x", 8<<10))
		requireEnvelope(t, resp, body, http.StatusRequestEntityTooLarge)
	})
	t.Run("Expect with a Content-Length past the limit", func(t *testing.T) {
		resp, body := rawResponse(t, addr, fmt.Sprintf("POST %s HTTP/1.1\r\nHost: h\r\nContent-Length: %d\r\nExpect: 100-continue\r\n\r\n", path, 1<<30))
		requireEnvelope(t, resp, body, http.StatusRequestEntityTooLarge)
		require.True(t, resp.Close)
		require.Empty(t, received())
	})
	t.Run("chunked past the limit", func(t *testing.T) {
		resp, body := send(t, 1<<20, true)
		requireEnvelope(t, resp, body, http.StatusRequestEntityTooLarge)
		require.True(t, resp.Close, "the rest of the body is not read")
		seen := received()
		t.Logf("the service saw %+v", seen)
		for _, g := range seen {
			require.Error(t, g.err, "the service got a whole request of %d bytes: the upload was not aborted", g.n)
			require.LessOrEqual(t, g.n, int64(limit))
		}
	})
	t.Run("no limit by default", func(t *testing.T) {
		plain := testenv.New(t, testenv.Options{})
		_, svc := plain.ExposeAgent("a", "web", org.URL)
		sh := plain.Share(svc.ID, client.CreateShareRequest{})
		resp, err := http.Post(sh.ShareURL+"/upload", "application/octet-stream", io.LimitReader(zeros{}, 4*limit))
		require.NoError(t, err)
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		require.Equal(t, 200, resp.StatusCode, "%s", b)
		require.Equal(t, fmt.Sprint(4*limit), string(b))
	})
}
