package e2e

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/privateconnect/pc/control"
	"github.com/privateconnect/pc/edge"
	"github.com/privateconnect/pc/internal/testenv"
	"github.com/privateconnect/pc/sdk/agent"
	"github.com/privateconnect/pc/sdk/client"
	"github.com/stretchr/testify/require"
)

// TestTLSEverywhere: edges serve TLS on both listeners; agents verify the
// edge with a CA file or a pinned key; a wrong pin never connects.
func TestTLSEverywhere(t *testing.T) {
	env := testenv.New(t, testenv.Options{TLS: true})
	org := origin(t)
	id, token, edges := env.ProvisionAgent("a")
	require.True(t, strings.HasPrefix(edges[0], "tls://"), edges[0])
	ag := env.RunAgent(id, token, edges) // verifies with env.CAFile
	svc := env.Expose(ag, "web", org.URL)
	sh := env.Share(svc.ID, client.CreateShareRequest{})
	require.True(t, strings.HasPrefix(sh.ShareURL, "https://"), sh.ShareURL)

	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: env.ClientTLS()}}
	resp, err := hc.Get(sh.ShareURL + "/tls")
	require.NoError(t, err)
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Equal(t, 200, resp.StatusCode)
	require.Equal(t, "hello from origin: GET /tls", string(b))
	require.NotNil(t, resp.TLS)

	// The pinned key works instead of the CA.
	ag.Stop()
	env.RunAgentWith(id, token, edges, func(c *agent.Config) { c.CAFile, c.PinSHA256 = "", env.Pin })
	env.WaitAgentOnEdges(id, 5*time.Second)

	// A wrong pin (or no trust at all) never connects.
	id2, token2, _ := env.ProvisionAgent("b")
	events := make(chan agent.Event, 16)
	env.RunAgentWith(id2, token2, edges, func(c *agent.Config) {
		c.CAFile, c.PinSHA256 = "", strings.Repeat("ab", 32)
		c.OnEvent = func(e agent.Event) { events <- e }
	})
	select {
	case e := <-events:
		require.Equal(t, agent.EventError, e.Kind)
		require.Contains(t, e.Message, "pinned")
	case <-time.After(5 * time.Second):
		t.Fatal("no error event for a wrong pin")
	}
	for _, a := range env.Edges[0].ConnectedAgents() {
		require.NotEqual(t, id2, a)
	}
}

// TestSeveralEdges: agents hold tunnels to every edge; any edge serves any
// share; an edge that goes away does not break the others; a new edge gets
// the full configuration and agents connect to it without a restart.
func TestSeveralEdges(t *testing.T) {
	env := testenv.New(t, testenv.Options{})
	env.AddEdge("edge-2")
	org := origin(t)
	id, token, edges := env.ProvisionAgent("a")
	require.Len(t, edges, 2)
	ag := env.RunAgent(id, token, edges)
	svc := env.Expose(ag, "web", org.URL)
	sh := env.Share(svc.ID, client.CreateShareRequest{})
	for _, ed := range env.Edges {
		eventuallyStatus(t, testenv.ShareURL(ed, sh.Token)+"/", 200, 2*time.Second)
	}
	// edge-1 goes away: edge-2 keeps serving.
	require.NoError(t, env.Edges[0].Close())
	code, _ := get(t, testenv.ShareURL(env.Edges[1], sh.Token)+"/")
	require.Equal(t, 200, code)

	// A third edge: full config, and the running agent connects to it.
	e3 := env.AddEdge("edge-3")
	require.Eventually(t, func() bool {
		for _, a := range e3.ConnectedAgents() {
			if a == id {
				return true
			}
		}
		return false
	}, 5*time.Second, 20*time.Millisecond, "the agent learns the new edge over its tunnel")
	eventuallyStatus(t, testenv.ShareURL(e3, sh.Token)+"/", 200, 2*time.Second)
	revoke := time.Now()
	require.NoError(t, env.Client.RevokeShare(context.Background(), sh.ID))
	eventuallyStatus(t, testenv.ShareURL(e3, sh.Token)+"/", 410, time.Second)
	eventuallyStatus(t, testenv.ShareURL(env.Edges[1], sh.Token)+"/", 410, time.Second)
	t.Logf("revocation in force on both live edges after %v", time.Since(revoke))
}

// TestPublicServiceAndHostRouting: a public service answers at
// <subdomain>.<public domain> and a share at <token>.<share domain>.
func TestPublicServiceAndHostRouting(t *testing.T) {
	env := testenv.New(t, testenv.Options{Control: func(c *control.Config) {
		c.PublicDomain, c.ShareDomain = "apps.example.test", "share.example.test"
	}})
	org := origin(t)
	_, svc := env.ExposeAgent("a", "web", org.URL)
	pa, err := env.Client.SetServicePublic(context.Background(), svc.ID, client.PublicRequest{IsPublic: true, Subdomain: "my-app"})
	require.NoError(t, err)
	require.True(t, pa.IsPublic)
	env.WaitSynced(5 * time.Second)

	hostGet := func(host, path string) (int, string) {
		req, _ := http.NewRequest("GET", "http://"+env.Edges[0].HTTPAddr()+path, nil)
		req.Host = host
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	code, body := hostGet("my-app.apps.example.test", "/pub")
	require.Equal(t, 200, code, body)
	require.Equal(t, "hello from origin: GET /pub", body)
	code, _ = hostGet("other.apps.example.test", "/")
	require.Equal(t, 404, code)

	// A share at <token>.<share domain>, whatever the case of the host.
	sh := env.Share(svc.ID, client.CreateShareRequest{})
	code, body = hostGet(sh.Token+".share.example.test", "/via-host")
	require.Equal(t, 200, code, body)
	require.Equal(t, "hello from origin: GET /via-host", body)
	// The path as sent: an encoded slash stays one segment, on every kind of
	// address (it arrived decoded, as two); a dot segment is resolved first,
	// as the policies saw it.
	code, body = hostGet(sh.Token+".share.example.test", "/files/a%2Fb?x=1")
	require.Equal(t, 200, code, body)
	require.Equal(t, "hello from origin: GET /files/a%2Fb?x=1", body)
	code, body = hostGet("my-app.apps.example.test", "/files/a%2Fb")
	require.Equal(t, 200, code, body)
	require.Equal(t, "hello from origin: GET /files/a%2Fb", body)
	code, body = hostGet("x", strings.TrimPrefix(sh.ShareURL, "http://"+env.Edges[0].HTTPAddr())+"/files/a%2Fb")
	require.Equal(t, 200, code, body)
	require.Equal(t, "hello from origin: GET /files/a%2Fb", body)
	code, body = hostGet(sh.Token+".share.example.test", "/files/x/../a%2Fb")
	require.Equal(t, 200, code, body)
	require.Equal(t, "hello from origin: GET /files/a/b", body)
	code, _ = hostGet(strings.ToUpper(sh.Token)+".Share.Example.Test", "/")
	require.Equal(t, 200, code)

	// Turning public off takes the host away, and ends the event streams
	// opened through it.
	req, _ := http.NewRequest("GET", "http://"+env.Edges[0].HTTPAddr()+"/sse", nil)
	req.Host = "my-app.apps.example.test"
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, 200, resp.StatusCode)
	events := bufio.NewReader(resp.Body)
	_, err = events.ReadString('\n')
	require.NoError(t, err)
	_, err = env.Client.SetServicePublic(context.Background(), svc.ID, client.PublicRequest{IsPublic: false})
	require.NoError(t, err)
	deadline := time.Now().Add(5 * time.Second)
	for { // events keep coming until the stream is cut
		if _, err := events.ReadString('\n'); err != nil {
			break
		}
		require.True(t, time.Now().Before(deadline), "the event stream outlived the public address")
	}
	env.WaitSynced(5 * time.Second)
	code, _ = hostGet("my-app.apps.example.test", "/pub")
	require.Equal(t, 404, code)
}

// TestRealClientIPBehindLoadBalancer: PROXY protocol from a trusted load
// balancer and X-Forwarded-For from a trusted proxy both give the service
// (and policies) the real client IP; untrusted peers cannot spoof it.
func TestRealClientIPBehindLoadBalancer(t *testing.T) {
	env := testenv.New(t, testenv.Options{Edge: func(c *edge.Config) {
		c.TrustedProxies = []string{"127.0.0.0/8"}
		c.ProxyProtocol = true
	}})
	seen := make(chan string, 4)
	org := httptestServer(t, func(w http.ResponseWriter, r *http.Request) {
		seen <- r.Header.Get("X-Forwarded-For")
		fmt.Fprint(w, "ok")
	})
	_, svc := env.ExposeAgent("a", "web", org)
	// Only 203.0.113.0/24 may use the share: the policy sees the real IP.
	sh := env.Share(svc.ID, client.CreateShareRequest{AllowedIPs: []string{"203.0.113.0/24"}})
	path := strings.TrimPrefix(sh.ShareURL, "http://"+env.Edges[0].HTTPAddr())

	rawGet := func(prefix string) string {
		c, err := net.Dial("tcp", env.Edges[0].HTTPAddr())
		require.NoError(t, err)
		defer c.Close()
		fmt.Fprintf(c, "%sGET %s/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", prefix, path)
		line, err := bufio.NewReader(c).ReadString('\n')
		require.NoError(t, err)
		return strings.TrimSpace(line)
	}
	// PROXY v1 from the (trusted) loopback load balancer.
	require.Equal(t, "HTTP/1.1 200 OK", rawGet("PROXY TCP4 203.0.113.7 127.0.0.1 51000 80\r\n"))
	require.Equal(t, "203.0.113.7", <-seen)
	// Without it the peer is 127.0.0.1: outside the allowed range.
	require.Equal(t, "HTTP/1.1 403 Forbidden", rawGet(""))
	// X-Forwarded-For from the trusted proxy.
	req, _ := http.NewRequest("GET", sh.ShareURL+"/", nil)
	req.Header.Set("X-Forwarded-For", "203.0.113.9")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, 200, resp.StatusCode)
	require.Equal(t, "203.0.113.9, 127.0.0.1", <-seen)
}

// TestForwardedForLines: the client IP behind a trusted proxy comes from
// every X-Forwarded-For line, read as one list (some load balancers add a
// line rather than append to the visitor's: reading only the first let a
// visitor pass allowedIps with an address of its choice), and the service
// gets one line, with a visitor's own claim passed on only through a
// trusted proxy (it was whenever any trusted proxy was configured).
func TestForwardedForLines(t *testing.T) {
	env := testenv.New(t, testenv.Options{Edge: func(c *edge.Config) { c.TrustedProxies = []string{"127.0.0.2/32"} }})
	seen := make(chan []string, 4)
	org := httptestServer(t, func(w http.ResponseWriter, r *http.Request) {
		seen <- r.Header.Values("X-Forwarded-For")
		fmt.Fprint(w, "ok")
	})
	_, svc := env.ExposeAgent("a", "web", org)
	limited := env.Share(svc.ID, client.CreateShareRequest{AllowedIPs: []string{"203.0.113.0/24"}})
	open := env.Share(svc.ID, client.CreateShareRequest{})
	pathOf := func(sh *client.Share) string {
		return strings.TrimPrefix(sh.ShareURL, "http://"+env.Edges[0].HTTPAddr())
	}
	get := func(from string, sh *client.Share, xff ...string) string {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}
		c, err := d.Dial("tcp", env.Edges[0].HTTPAddr())
		require.NoError(t, err)
		defer c.Close()
		fmt.Fprintf(c, "GET %s/ HTTP/1.1\r\nHost: x\r\n", pathOf(sh))
		for _, v := range xff {
			fmt.Fprintf(c, "X-Forwarded-For: %s\r\n", v)
		}
		fmt.Fprint(c, "Connection: close\r\n\r\n")
		line, err := bufio.NewReader(c).ReadString('\n')
		require.NoError(t, err)
		return strings.TrimSpace(line)
	}
	// The visitor claims 203.0.113.9; the trusted proxy adds its own line
	// with the address it saw.
	require.Equal(t, "HTTP/1.1 403 Forbidden", get("127.0.0.2", limited, "203.0.113.9", "6.6.6.6"))
	require.Equal(t, "HTTP/1.1 200 OK", get("127.0.0.2", limited, "6.6.6.6", "203.0.113.9"))
	require.Equal(t, []string{"6.6.6.6, 203.0.113.9, 127.0.0.2"}, <-seen)
	// From an untrusted peer, the visitor's claim goes nowhere.
	require.Equal(t, "HTTP/1.1 403 Forbidden", get("127.0.0.1", limited, "203.0.113.9"))
	require.Equal(t, "HTTP/1.1 200 OK", get("127.0.0.1", open, "203.0.113.9"))
	require.Equal(t, []string{"127.0.0.1"}, <-seen)
}

func httptestServer(t *testing.T, h http.HandlerFunc) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	srv := &http.Server{Handler: h}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return "http://" + ln.Addr().String()
}

// TestAgentWithTwoAddressesForOneEdge: an agent given two addresses of the
// same edge (an alias and the registered one) holds one session, not two
// that keep replacing each other on the edge; requests never fail.
func TestAgentWithTwoAddressesForOneEdge(t *testing.T) {
	env := testenv.New(t, testenv.Options{})
	org := origin(t)
	id, token, edges := env.ProvisionAgent("a")
	require.Len(t, edges, 1)
	var connects, drops atomic.Int32
	ag := env.RunAgentWith(id, token, []string{edges[0], "tcp://" + edges[0]}, func(c *agent.Config) {
		c.MinBackoff, c.MaxBackoff = 20*time.Millisecond, 50*time.Millisecond // retry the alias often
		c.OnEvent = func(e agent.Event) {
			switch e.Kind {
			case agent.EventConnected:
				connects.Add(1)
			case agent.EventDisconnected:
				drops.Add(1)
			}
		}
	})
	svc := env.Expose(ag, "web", org.URL)
	sh := env.Share(svc.ID, client.CreateShareRequest{})
	deadline := time.Now().Add(1500 * time.Millisecond)
	n := 0
	for time.Now().Before(deadline) && n < 2000 { // under the share's 5,000/min limit
		code, body := get(t, sh.ShareURL+"/x")
		require.Equal(t, 200, code, body)
		n++
	}
	require.Equal(t, int32(1), connects.Load(), "one session for one edge")
	require.Zero(t, drops.Load())
	require.Len(t, ag.Connected(), 1)
	t.Logf("%d requests, one session, the alias kept in reserve", n)
}

// TestDeletedEdgeServesNothing: DELETE /v1/edges/:id is how an operator
// revokes an edge. The edge, refused by the control plane, stops serving at
// once: no share (revoked since or not) answers on it, its agents' sessions
// end, its health says so, and neither a restart nor a control plane that
// is down brings its saved snapshot back. The other edge goes on.
func TestDeletedEdgeServesNothing(t *testing.T) {
	env := testenv.New(t, testenv.Options{})
	ctx := context.Background()
	e2 := env.AddEdge("edge-2")
	org := origin(t)
	ag, svc := env.ExposeAgent("a", "web", org.URL)
	env.WaitAgentOnEdges(ag.ID, 5*time.Second)
	sh := env.Share(svc.ID, client.CreateShareRequest{})
	kept := env.Share(svc.ID, client.CreateShareRequest{})
	on1, on2 := testenv.ShareURL(env.Edges[0], sh.Token), testenv.ShareURL(e2, sh.Token)
	eventuallyStatus(t, on2+"/", 200, 5*time.Second)
	snapshot := filepath.Join(e2.DataDir, "edge-"+e2.ID, "snapshot.json")
	require.Eventually(t, func() bool { _, err := os.Stat(snapshot); return err == nil }, 5*time.Second, 20*time.Millisecond)

	start := time.Now()
	require.NoError(t, env.Client.DeleteEdge(ctx, e2.ID))
	eventuallyStatus(t, on2+"/", 404, 3*time.Second)
	t.Logf("the deleted edge stopped serving %v after the API answered", time.Since(start).Round(time.Millisecond))
	code, body := get(t, "http://"+e2.AdminAddr()+"/health")
	require.Equal(t, 503, code)
	require.Contains(t, body, `"status":"refused"`)
	require.Eventually(t, func() bool { return len(e2.ConnectedAgents()) == 0 }, 3*time.Second, 20*time.Millisecond, "agent sessions end")
	_, err := os.Stat(snapshot)
	require.True(t, os.IsNotExist(err), "the saved snapshot is removed: %v", err)

	// The other edge and the agent go on; a revocation is in force there and
	// nothing is served on the deleted edge.
	code, _ = get(t, testenv.ShareURL(env.Edges[0], kept.Token)+"/")
	require.Equal(t, 200, code)
	require.NoError(t, env.Client.RevokeShare(ctx, sh.ID))
	eventuallyStatus(t, on1+"/", 410, 2*time.Second)
	code, _ = get(t, on2+"/")
	require.Equal(t, 404, code)
	code, _ = get(t, testenv.ShareURL(e2, kept.Token)+"/")
	require.Equal(t, 404, code)

	// Restarted while the control plane is down, it has nothing to serve.
	env.StopControl()
	env.RestartEdge(e2)
	time.Sleep(300 * time.Millisecond)
	code, _ = get(t, testenv.ShareURL(e2, kept.Token)+"/")
	require.Equal(t, 404, code)
	code, _ = get(t, testenv.ShareURL(env.Edges[0], kept.Token)+"/")
	require.Equal(t, 200, code, "the live edge serves from its snapshot meanwhile")

	// The control plane forgets it: no online edge, no lag series.
	env.StartControl()
	require.Eventually(t, func() bool {
		fams := scrapeMetrics(t, env.ControlURL()+"/metrics")
		return metricValue(fams, "pc_control_online_edges", nil) == 1
	}, 5*time.Second, 50*time.Millisecond)
	require.Eventually(t, func() bool {
		code, body := get(t, "http://"+e2.AdminAddr()+"/health")
		return code == 503 && strings.Contains(body, `"status":"refused"`)
	}, 5*time.Second, 50*time.Millisecond)
}

// One edge token is one edge served by one process. A second process started
// with the token of a running edge (a copied config, a second machine) takes
// the edge over: the control plane tells the older process, which drains and
// stops instead of both serving and reporting, which made the edge's agents
// flap between online and offline at every report.
func TestSecondProcessOfAnEdgeReplacesTheFirst(t *testing.T) {
	env := testenv.New(t, testenv.Options{})
	first := env.Edges[0]
	org := origin(t)
	ag, _ := env.ExposeAgent("a", "web", org.URL)
	env.WaitAgentOnEdges(ag.ID, 5*time.Second)
	online := func() bool {
		a, err := env.Client.GetAgent(context.Background(), ag.ID)
		require.NoError(t, err)
		return a.IsOnline
	}
	// The edge holds the session; the control plane knows once it reports.
	require.Eventually(t, online, 5*time.Second, 20*time.Millisecond)

	// run starts a process of the first edge on addresses of its own.
	run := func() (*edge.Server, chan error) {
		s, err := edge.New(edge.Config{ControlURL: env.ControlURL(), Token: first.Token,
			HTTPAddr: "127.0.0.1:0", TunnelAddr: "127.0.0.1:0", AdminAddr: "127.0.0.1:0",
			DataDir: t.TempDir(), ReportInterval: 100 * time.Millisecond, DrainTimeout: time.Second,
			DisablePlugins: true})
		require.NoError(t, err)
		done := make(chan error, 1)
		go func() { done <- s.Run(context.Background()) }()
		t.Cleanup(func() { _ = s.Close() })
		return s, done
	}
	second, secondDone := run()
	select {
	case <-first.Replaced():
	case <-time.After(5 * time.Second):
		t.Fatal("the first process was not told it was replaced")
	}
	code, body := get(t, "http://"+first.AdminAddr()+"/health")
	require.Equal(t, 503, code)
	require.Contains(t, body, `"status":"replaced"`)
	require.Eventually(t, func() bool {
		code, body := get(t, "http://"+second.AdminAddr()+"/health")
		return code == 200 && strings.Contains(body, `"edgeId":"`+first.ID+`"`)
	}, 5*time.Second, 20*time.Millisecond)

	// The agent's session is with the replaced process (the registered
	// tunnel address), which goes on reporting it every 100 ms here (a
	// process under Start, not Run, does not stop by itself), beside the new
	// process's reports without it. The edge's agents are those of the
	// process that serves it now: the agent goes offline once, and its
	// audit log does not flap (it did, connected and disconnected at every
	// pair of reports).
	require.Eventually(t, func() bool { return !online() }, 5*time.Second, 50*time.Millisecond)
	events := func() []client.AgentAuditLog {
		logs, err := client.All(context.Background(), func(ctx context.Context, lo client.ListOptions) ([]client.AgentAuditLog, string, error) {
			return env.Client.ListAgentAuditLogs(ctx, ag.ID, lo)
		})
		require.NoError(t, err)
		return logs
	}
	// Its DISCONNECTED record may land just after presence changed.
	require.Eventually(t, func() bool {
		logs := events()
		return len(logs) > 0 && logs[0].Event == "DISCONNECTED"
	}, 5*time.Second, 20*time.Millisecond)
	before := len(events())
	time.Sleep(time.Second)
	require.False(t, online())
	require.Equal(t, before, len(events()), "the replaced process's reports move the agent's presence")

	// A process under Run drains and stops with ErrReplaced.
	_, thirdDone := run()
	select {
	case err := <-secondDone:
		require.ErrorIs(t, err, edge.ErrReplaced)
		require.Contains(t, err.Error(), "127.0.0.1:")
	case <-time.After(5 * time.Second):
		t.Fatal("the second process did not stop when a third took over")
	}
	select {
	case err := <-thirdDone:
		t.Fatalf("the newest process stopped: %v", err)
	default:
	}
}

// TestAgentDropsADeletedEdge: an agent started with two edges (from
// provisioning, or its saved state) stops dialing one deleted with
// DELETE /v1/edges/:id once the other edge's list no longer names it,
// instead of being refused by it at every backoff for ever.
func TestAgentDropsADeletedEdge(t *testing.T) {
	env := testenv.New(t, testenv.Options{})
	e2 := env.AddEdge("edge-2")
	id, token, edges := env.ProvisionAgent("a")
	require.Len(t, edges, 2)
	var mu sync.Mutex
	rejected := map[string]int{}
	var lists [][]string
	env.RunAgentWith(id, token, edges, func(c *agent.Config) {
		c.MinBackoff, c.MaxBackoff = 20*time.Millisecond, 50*time.Millisecond
		c.OnEvent = func(e agent.Event) {
			if e.Kind == agent.EventRejected {
				mu.Lock()
				rejected[e.Edge]++
				mu.Unlock()
			}
		}
		c.OnEdges = func(l []string) { mu.Lock(); lists = append(lists, l); mu.Unlock() }
	})
	env.WaitAgentOnEdges(id, 5*time.Second)

	require.NoError(t, env.Client.DeleteEdge(context.Background(), e2.ID))
	gone := e2.TunnelAddr()
	require.Eventually(t, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(lists) > 0 && !slices.Contains(lists[len(lists)-1], gone)
	}, 5*time.Second, 20*time.Millisecond, "the deleted edge leaves the agent's list")
	mu.Lock()
	n := rejected[gone]
	mu.Unlock()
	time.Sleep(500 * time.Millisecond) // ten backoff periods
	mu.Lock()
	defer mu.Unlock()
	require.LessOrEqual(t, rejected[gone]-n, 1, "the deleted edge is not dialed again")
	require.Equal(t, []string{env.Edges[0].TunnelAddr()}, lists[len(lists)-1])
}

// TestStoppedEdgeIsOfflineAtOnce: an edge that stops (SIGTERM: Shutdown)
// says so in its last report, and `connect edges ls` shows it offline, its
// agents no longer counted, at once; it showed ONLINE yes for the 30 s
// window meant for streams lost to the network.
func TestStoppedEdgeIsOfflineAtOnce(t *testing.T) {
	env := testenv.New(t, testenv.Options{})
	e2 := env.AddEdge("edge-2")
	org := origin(t)
	ag, _ := env.ExposeAgent("a", "web", org.URL)
	env.WaitAgentOnEdges(ag.ID, 5*time.Second)
	online := func() (bool, int) {
		edges, _, err := env.Client.ListEdges(context.Background(), client.ListOptions{})
		require.NoError(t, err)
		for _, e := range edges {
			if e.ID == e2.ID {
				return e.IsOnline, e.ConnectedAgents
			}
		}
		t.Fatalf("edge-2 not listed")
		return false, 0
	}
	require.Eventually(t, func() bool { on, n := online(); return on && n == 1 }, 5*time.Second, 20*time.Millisecond)
	require.NoError(t, e2.Shutdown())
	stopped := time.Now()
	require.Eventually(t, func() bool { on, n := online(); return !on && n == 0 }, 3*time.Second, 20*time.Millisecond,
		"the stopped edge still shows online")
	t.Logf("offline %v after its stop", time.Since(stopped).Round(time.Millisecond))
	a, err := env.Client.GetAgent(context.Background(), ag.ID)
	require.NoError(t, err)
	require.True(t, a.IsOnline, "the agent stays online through the other edge")
}

// TestPlainHTTPOnTLSShareListener: plain HTTP sent to an edge's TLS share
// listener gets net/http's "400 Client sent an HTTP request to an HTTPS
// server" in clear; it got an empty reply.
func TestPlainHTTPOnTLSShareListener(t *testing.T) {
	env := testenv.New(t, testenv.Options{TLS: true})
	resp, b := rawResponse(t, env.Edges[0].HTTPAddr(), "GET /shared/x/ HTTP/1.1\r\nHost: edge\r\n\r\n")
	require.Equal(t, 400, resp.StatusCode)
	require.Contains(t, b, "Client sent an HTTP request to an HTTPS server")

	// TLS on the same listener still works.
	hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: env.ClientTLS()}}
	resp, err := hc.Get("https://" + env.Edges[0].HTTPAddr() + "/shared/x/")
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, 404, resp.StatusCode)
}

// TestPublicServiceWithoutPublicDomain: with no public domain configured
// the API gives a public service <subdomain>.localhost on the edge's port,
// and the edge serves it there (it answered 404: it routed public services
// only under a configured domain). Share links are unchanged.
func TestPublicServiceWithoutPublicDomain(t *testing.T) {
	env := testenv.New(t, testenv.Options{})
	org := origin(t)
	_, svc := env.ExposeAgent("a", "web", org.URL)
	pa, err := env.Client.SetServicePublic(context.Background(), svc.ID, client.PublicRequest{IsPublic: true, Subdomain: "my-app"})
	require.NoError(t, err)
	u, err := url.Parse(pa.PublicURL)
	require.NoError(t, err)
	require.Equal(t, "my-app.localhost", u.Hostname(), pa.PublicURL)
	env.WaitSynced(5 * time.Second)

	req, _ := http.NewRequest("GET", "http://"+env.Edges[0].HTTPAddr()+"/pub", nil)
	req.Host = u.Host
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Equal(t, 200, resp.StatusCode, string(b))
	require.Equal(t, "hello from origin: GET /pub", string(b))

	sh := env.Share(svc.ID, client.CreateShareRequest{})
	eventuallyStatus(t, testenv.ShareURL(env.Edges[0], sh.Token)+"/", 200, 2*time.Second)
}
