package e2e

// Graceful operations with real processes (issue #8, part 5): SIGTERM
// drains in-flight requests on `pcd edge` and `pcd control`, and a rolling
// restart of two edges under load loses no request for a client that
// behaves like a load balancer.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/privateconnect/pc/internal/testenv"
	"github.com/privateconnect/pc/sdk/client"
)

// holdOrigin answers "/" at once and "/hold?ms=N" after N milliseconds,
// with a body large enough to be streamed.
func holdOrigin(t *testing.T) string {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if ms, err := strconv.Atoi(r.URL.Query().Get("ms")); err == nil && r.URL.Path == "/hold" {
			time.Sleep(time.Duration(ms) * time.Millisecond)
		}
		_, _ = io.WriteString(w, strings.Repeat("x", 64<<10))
	}))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

// TestGracefulEdgeSIGTERMDrains sends SIGTERM to pcd edge while requests
// that take 1.5 s are in flight: every one completes with its full body,
// new connections are refused at once, and the edge exits 0 after the
// drain. SIGHUP (a closed terminal, a logrotate habit) does the same; it
// killed the process at once before.
func TestGracefulEdgeSIGTERMDrains(t *testing.T) {
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGHUP} {
		t.Run(sig.String(), func(t *testing.T) { edgeSignalDrains(t, sig) })
	}
}

func edgeSignalDrains(t *testing.T, sig syscall.Signal) {
	c := newCluster(t, clusterOptions{})
	e := c.addEdge("edge-1")
	c.expose("web", holdOrigin(t), "http", 1)
	sh := c.share("web", client.CreateShareRequest{})

	const inflight = 10
	type res struct {
		code int
		n    int
		err  error
	}
	results := make(chan res, inflight)
	for i := 0; i < inflight; i++ {
		go func() {
			resp, err := quickClient.Get(e.shareURL(sh.Token) + "/hold?ms=1500")
			if err != nil {
				results <- res{err: err}
				return
			}
			b, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			results <- res{code: resp.StatusCode, n: len(b), err: err}
		}()
	}
	waitFor(t, 5*time.Second, "requests in flight", func() bool {
		h, err := e.health()
		return err == nil && h["activeRequests"].(float64) >= inflight
	})
	sent := time.Now()
	require.NoError(t, e.p.cmd.Process.Signal(sig))
	// The listener closes at once: a new visitor is refused and can go to
	// another edge.
	waitFor(t, 2*time.Second, "listener closed", func() bool {
		_, err := net.DialTimeout("tcp", e.http, 200*time.Millisecond)
		return err != nil
	})
	refusedAfter := time.Since(sent)
	for i := 0; i < inflight; i++ {
		r := <-results
		require.NoError(t, r.err, "an in-flight request failed during the drain")
		require.Equal(t, 200, r.code)
		require.Equal(t, 64<<10, r.n, "the full body was delivered")
	}
	err, ok := waitExit(e.p, 15*time.Second)
	require.True(t, ok, "pcd edge did not exit")
	require.NoError(t, err, "pcd edge exits 0 after draining")
	t.Logf("%v with %d requests in flight: all completed; new connections refused after %v; exited after %v",
		sig, inflight, refusedAfter.Round(time.Millisecond), time.Since(sent).Round(time.Millisecond))
}

// TestGracefulControlSIGTERMDrains sends SIGTERM to pcd control while four
// writers create shares back to back (so requests are always in flight):
// every request that got an answer got 201, none was failed by the
// shutdown, each acknowledged share is there after a restart, and the
// control plane exits 0.
func TestGracefulControlSIGTERMDrains(t *testing.T) {
	c := newCluster(t, clusterOptions{})
	ctx := t.Context()
	prov, err := c.cl.ProvisionAgent(ctx, client.ProvisionRequest{Name: "w"})
	require.NoError(t, err)
	svc, _, err := c.cl.RegisterService(ctx, client.RegisterServiceRequest{AgentID: prov.AgentID, Name: "db", TargetHost: "127.0.0.1", TargetPort: 5432, Protocol: "tcp"})
	require.NoError(t, err)

	// One key per writer: each key has its own API rate limit.
	var keys []string
	for i := 0; i < 4; i++ {
		k, err := c.cl.CreateAPIKey(ctx, client.CreateAPIKeyRequest{Name: fmt.Sprintf("w%d", i), Scopes: []string{"write"}})
		require.NoError(t, err)
		keys = append(keys, k.Key)
	}
	var mu sync.Mutex
	acked := map[string]bool{}
	var answered, refused int
	var failures []string
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			cl := client.New(c.controlURL(), keys[w])
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				sh, err := cl.CreateShare(ctx, svc.ID, client.CreateShareRequest{Name: fmt.Sprintf("w%d-%d", w, i)})
				mu.Lock()
				var ae *client.APIError
				switch {
				case err == nil:
					answered++
					acked[sh.ID] = true
				case errors.As(err, &ae):
					answered++
					failures = append(failures, fmt.Sprintf("%d %s", ae.StatusCode, ae.Message))
				default:
					refused++ // no answer: the listener is closed
				}
				mu.Unlock()
				if err != nil && !errors.As(err, &ae) {
					time.Sleep(20 * time.Millisecond)
				}
			}
		}(w)
	}
	time.Sleep(700 * time.Millisecond)
	sent := time.Now()
	require.NoError(t, c.ctl.cmd.Process.Signal(syscall.SIGTERM))
	exitErr, ok := waitExit(c.ctl, 15*time.Second)
	drained := time.Since(sent)
	close(stop)
	wg.Wait()
	require.True(t, ok, "pcd control did not exit")
	require.NoError(t, exitErr, "pcd control exits 0 after draining")
	mu.Lock()
	defer mu.Unlock()
	if len(failures) > 0 {
		t.Fatalf("%d requests in flight at SIGTERM were failed instead of drained, e.g. %q", len(failures), failures[0])
	}
	// The log says so (pcd control said nothing of its drain).
	out := c.ctl.output()
	draining := logLines(out, "draining: refusing new connections; requests in flight may finish")
	require.Len(t, draining, 1, out)
	require.Equal(t, "INFO", draining[0]["level"])
	require.Contains(t, draining[0], "activeRequests")
	stopped := logLines(out, "stopped")
	require.Len(t, stopped, 1, out)
	require.Equal(t, "INFO", stopped[0]["level"])

	c.startControl()
	list, err := client.All(ctx, func(ctx context.Context, lo client.ListOptions) ([]client.Share, string, error) {
		return c.cl.ListShares(ctx, svc.ID, lo)
	})
	require.NoError(t, err)
	have := map[string]bool{}
	for _, s := range list {
		have[s.ID] = true
	}
	for id := range acked {
		require.True(t, have[id], "acknowledged share %s lost", id)
	}
	t.Logf("SIGTERM under a stream of writes: %d answered (all 201, all stored), %d attempts refused after the listener closed; exited after %v",
		answered, refused, drained.Round(time.Millisecond))
}

// TestGracefulRollingRestart restarts two pcd edge processes one after the
// other with SIGTERM (PC_CHAOS_ROUNDS rounds, default one) while a client
// that behaves like a load balancer sends 60 requests/s, a third of them
// taking 300 ms: it sends each request to the next edge in rotation, and
// when a connection is refused or closed before any response it takes that
// edge out of rotation and sends the request to the other edge; its health
// check (the share answering 200 through that edge) brings a restarted edge
// back. Not one request may fail.
func TestGracefulRollingRestart(t *testing.T) {
	c := newCluster(t, clusterOptions{})
	e1, e2 := c.addEdge("edge-1"), c.addEdge("edge-2")
	c.expose("web", holdOrigin(t), "http", 1)
	sh := c.share("web", client.CreateShareRequest{})
	edges := []*edgeProc{e1, e2}
	urls := []string{e1.shareURL(sh.Token), e2.shareURL(sh.Token)}
	ld := runLoad(loadConfig{urls: urls, paths: []string{"/", "/", "/hold?ms=300"}, rate: 60, workers: 32, lb: true,
		check: func(e int) bool { code, _ := httpGet(urls[e] + "/"); return code == 200 }})

	rounds := 1
	if v, err := strconv.Atoi(os.Getenv("PC_CHAOS_ROUNDS")); err == nil && v > 0 {
		rounds = v // make chaos: several rounds
	}
	var mu sync.Mutex
	var log []string
	for round := 0; round < rounds; round++ {
		for i, e := range edges {
			time.Sleep(time.Second)
			start := time.Now()
			require.NoError(t, terminate(t, e.p, 20*time.Second), "%s exits 0 after draining", e.name)
			drained := time.Since(start)
			c.startEdge(e)
			waitFor(t, 30*time.Second, e.name+" serving again", func() bool {
				code, _ := httpGet(urls[i] + "/")
				return code == 200
			})
			mu.Lock()
			log = append(log, fmt.Sprintf("%s: drained in %v, serving again after %v", e.name,
				drained.Round(time.Millisecond), time.Since(start).Round(time.Millisecond)))
			mu.Unlock()
		}
	}
	time.Sleep(time.Second)
	results := ld.finish()
	s := summarize(results, nil, 0)
	retried := 0
	for _, r := range results {
		if r.retried {
			retried++
		}
	}
	for _, r := range s.outside {
		t.Errorf("request failed at %s on edge-%d: %d %s", r.at.Format("15:04:05.000"), r.edge+1, r.status, r.err)
	}
	require.Greater(t, s.total, 150*rounds)
	t.Logf("rolling restart, %d round(s): %s; %d requests, %d failed, %d retried on the other edge after a refused or closed connection",
		rounds, strings.Join(log, "; "), s.total, s.failed, retried)
}

// TestClosedEdgeEndsItsConnections: a drain that times out ends the
// visitors' connections it could not drain. fasthttp leaves them serving
// (its shutdown resets the stop flag when its context expires), so a
// stopped edge went on answering their next requests with 503 "agent is not
// connected" for as long as they stayed open.
func TestClosedEdgeEndsItsConnections(t *testing.T) {
	env := testenv.New(t, testenv.Options{})
	_, svc := env.ExposeAgent("held", "web", "http://"+holdOrigin(t))
	sh := env.Share(svc.ID, client.CreateShareRequest{})
	ed := env.Edges[0]
	u, err := url.Parse(sh.ShareURL)
	require.NoError(t, err)
	conn, err := net.Dial("tcp", ed.HTTPAddr())
	require.NoError(t, err)
	defer conn.Close()
	_, err = fmt.Fprintf(conn, "GET %s/hold?ms=2000 HTTP/1.1\r\nHost: %s\r\n\r\n", u.Path, u.Host)
	require.NoError(t, err)
	waitFor(t, 3*time.Second, "the request in flight", func() bool {
		_, h := healthOf(t, "http://"+ed.AdminAddr()+"/health")
		return h["activeRequests"] == 1.0
	})
	require.NoError(t, ed.Close()) // a drain of 1 ms
	// The connection ends (whatever was answered on it first).
	require.NoError(t, conn.SetReadDeadline(time.Now().Add(5*time.Second)))
	_, err = io.Copy(io.Discard, conn)
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatal("the stopped edge kept the visitor's connection open")
	}
}
