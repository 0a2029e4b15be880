package e2e

import (
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/privateconnect/pc/control"
	"github.com/privateconnect/pc/internal/testenv"
	"github.com/privateconnect/pc/sdk/client"
	"github.com/stretchr/testify/require"
)

func do(t *testing.T, method, url string, hdr map[string]string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	require.NoError(t, err)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(b)
}

// TestSharePolicyFields: the share fields are enforced on the edge through
// the built-in Wasm plugins.
func TestSharePolicyFields(t *testing.T) {
	env := testenv.New(t, testenv.Options{})
	org := origin(t)
	_, svc := env.ExposeAgent("a", "web", org.URL)
	limit := 3

	t.Run("paths and methods", func(t *testing.T) {
		sh := env.Share(svc.ID, client.CreateShareRequest{AllowedPaths: []string{"/api/**"}, AllowedMethods: []string{"GET"}})
		resp, body := do(t, "GET", sh.ShareURL+"/api/v1/items", nil)
		require.Equal(t, 200, resp.StatusCode, body)
		resp, body = do(t, "GET", sh.ShareURL+"/admin", nil)
		require.Equal(t, 403, resp.StatusCode)
		// The edge's own policies answer in its error envelope.
		require.Contains(t, resp.Header.Get("Content-Type"), "application/json")
		require.JSONEq(t, `{"error":"Forbidden","message":"This path or method is not allowed for this share link","statusCode":403}`, body)
		resp, _ = do(t, "DELETE", sh.ShareURL+"/api/v1/items", nil)
		require.Equal(t, 403, resp.StatusCode)
	})
	t.Run("ip allow", func(t *testing.T) {
		sh := env.Share(svc.ID, client.CreateShareRequest{AllowedIPs: []string{"10.0.0.0/8"}})
		resp, _ := do(t, "GET", sh.ShareURL+"/", nil)
		require.Equal(t, 403, resp.StatusCode)
		sh = env.Share(svc.ID, client.CreateShareRequest{AllowedIPs: []string{"127.0.0.0/8", "::1/128"}})
		resp, _ = do(t, "GET", sh.ShareURL+"/", nil)
		require.Equal(t, 200, resp.StatusCode)
	})
	t.Run("password", func(t *testing.T) {
		sh := env.Share(svc.ID, client.CreateShareRequest{Password: "correct horse battery"})
		resp, _ := do(t, "GET", sh.ShareURL+"/", nil)
		require.Equal(t, 401, resp.StatusCode)
		require.Contains(t, resp.Header.Get("WWW-Authenticate"), "Basic")
		req, _ := http.NewRequest("GET", sh.ShareURL+"/", nil)
		req.SetBasicAuth("", "wrong password")
		r2, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		b2, _ := io.ReadAll(r2.Body)
		r2.Body.Close()
		require.Equal(t, 401, r2.StatusCode)
		require.JSONEq(t, `{"error":"Unauthorized","message":"Wrong password","statusCode":401}`, string(b2))
		req.SetBasicAuth("", "correct horse battery")
		r3, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		b, _ := io.ReadAll(r3.Body)
		r3.Body.Close()
		require.Equal(t, 200, r3.StatusCode, string(b))
		require.True(t, strings.HasPrefix(string(b), "hello from origin"))
		// Browsers get the login page.
		resp, body := do(t, "GET", sh.ShareURL+"/", map[string]string{"Accept": "text/html"})
		require.Equal(t, 401, resp.StatusCode)
		require.Contains(t, strings.ToLower(body), "<form")
		info, err := env.Client.SharedInfo(context.Background(), sh.Token)
		require.NoError(t, err)
		require.True(t, info.RequiresPassword)

		// The session cookie of the form login reaches no service: not this
		// share's (the others stay, once each), nor another share's, whose
		// service could otherwise replay it (the cookie's path is /).
		resp, _ = do(t, "GET", sh.ShareURL+"/", map[string]string{"X-Share-Password": base64.StdEncoding.EncodeToString([]byte("correct horse battery"))})
		require.Equal(t, 204, resp.StatusCode)
		session := strings.SplitN(resp.Header.Get("Set-Cookie"), ";", 2)[0]
		require.True(t, strings.HasPrefix(session, "pc_s_"), session)
		cookies := map[string]string{"Cookie": "a=1; " + session + "; b=2"}
		resp, _ = do(t, "GET", sh.ShareURL+"/echo-headers", cookies)
		require.Equal(t, 200, resp.StatusCode)
		require.Equal(t, "a=1; b=2", resp.Header.Get("Seen-Cookie"))
		open := env.Share(svc.ID, client.CreateShareRequest{})
		resp, _ = do(t, "GET", open.ShareURL+"/echo-headers", cookies)
		require.Equal(t, 200, resp.StatusCode)
		require.Equal(t, "a=1; b=2", resp.Header.Get("Seen-Cookie"))
	})
	t.Run("rate limit", func(t *testing.T) {
		sh := env.Share(svc.ID, client.CreateShareRequest{RateLimitPerMin: limit})
		for i := 0; i < limit; i++ {
			resp, _ := do(t, "GET", sh.ShareURL+"/", nil)
			require.Equal(t, 200, resp.StatusCode)
		}
		resp, _ := do(t, "GET", sh.ShareURL+"/", nil)
		require.Equal(t, 429, resp.StatusCode)
		require.NotEmpty(t, resp.Header.Get("Retry-After"))
		// The plugin's X-RateLimit-* replace the edge's own (one of each,
		// not the edge's 5000 beside the plugin's limit).
		require.Equal(t, []string{strconv.Itoa(limit)}, resp.Header.Values("X-RateLimit-Limit"))
		require.Len(t, resp.Header.Values("X-RateLimit-Remaining"), 1)
	})
}

// TestSharePerMinuteLimit: the platform-wide per-share limit (5,000/min by
// default, configurable) answers 429 with the X-RateLimit headers.
func TestSharePerMinuteLimit(t *testing.T) {
	env := testenv.New(t, testenv.Options{Control: func(c *control.Config) { c.RateLimits.SharePerMin = 5 }})
	org := origin(t)
	_, svc := env.ExposeAgent("a", "web", org.URL)
	sh := env.Share(svc.ID, client.CreateShareRequest{})
	for i := 0; i < 4; i++ {
		resp, _ := do(t, "GET", sh.ShareURL+"/", nil)
		require.Equal(t, 200, resp.StatusCode)
		require.Equal(t, "5", resp.Header.Get("X-RateLimit-Limit"))
		require.Equal(t, strconv.Itoa(4-i), resp.Header.Get("X-RateLimit-Remaining"))
	}
	// On the wire, the names are spelled as api-v1.md spells them (not
	// fasthttp's "X-Ratelimit-Limit").
	// (Forwarded answers and the edge's own 429.)
	rawHead := func() string {
		u, err := url.Parse(sh.ShareURL)
		require.NoError(t, err)
		conn, err := net.Dial("tcp", u.Host)
		require.NoError(t, err)
		defer conn.Close()
		fmt.Fprintf(conn, "GET %s/ HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", u.Path, u.Host)
		raw, _ := io.ReadAll(conn)
		head, _, _ := strings.Cut(string(raw), "\r\n\r\n")
		return head
	}
	for _, want := range []string{" 200 ", " 429 "} {
		head := rawHead()
		require.Contains(t, head, want)
		require.Contains(t, head, "\r\nX-RateLimit-Limit: 5\r\n")
		require.Contains(t, head, "\r\nX-RateLimit-Remaining: 0\r\n")
		require.Contains(t, head, "\r\nX-RateLimit-Reset: ")
	}
	resp, body := do(t, "GET", sh.ShareURL+"/", nil)
	require.Equal(t, 429, resp.StatusCode)
	require.NotEmpty(t, resp.Header.Get("Retry-After"))
	require.NotEmpty(t, resp.Header.Get("X-RateLimit-Reset"))
	require.Contains(t, body, `"error":"Too Many Requests"`)
	require.Contains(t, body, `"retryAfter":`)
}

// TestShareLifetimeAndPause: maxUses and expiry answer 410 on the edge, and
// a paused tunnel answers 503 until it is resumed, without the agent
// disconnecting.
func TestShareLifetimeAndPause(t *testing.T) {
	env := testenv.New(t, testenv.Options{})
	org := origin(t)
	ag, svc := env.ExposeAgent("a", "web", org.URL)
	id := ag.ID
	ctx := context.Background()

	limited := env.Share(svc.ID, client.CreateShareRequest{MaxUses: 2})
	for i := 0; i < 2; i++ {
		resp, _ := do(t, "GET", limited.ShareURL+"/", nil)
		require.Equal(t, 200, resp.StatusCode)
	}
	resp, body := do(t, "GET", limited.ShareURL+"/", nil)
	require.Equal(t, 410, resp.StatusCode)
	require.Contains(t, body, "maximum number of uses")

	soon := time.Now().Add(1500 * time.Millisecond).UTC()
	expiring := env.Share(svc.ID, client.CreateShareRequest{ExpiresAt: &soon})
	resp, _ = do(t, "GET", expiring.ShareURL+"/", nil)
	require.Equal(t, 200, resp.StatusCode)
	time.Sleep(time.Until(soon) + 50*time.Millisecond)
	resp, body = do(t, "GET", expiring.ShareURL+"/", nil)
	require.Equal(t, 410, resp.StatusCode)
	require.Contains(t, body, "expired")

	open := env.Share(svc.ID, client.CreateShareRequest{})
	_, err := env.Client.PauseTunnel(ctx, svc.ID)
	require.NoError(t, err)
	eventuallyStatus(t, open.ShareURL+"/", 503, time.Second)
	require.Contains(t, env.Edges[0].ConnectedAgents(), id, "pausing does not disconnect the agent")
	_, err = env.Client.ResumeTunnel(ctx, svc.ID)
	require.NoError(t, err)
	eventuallyStatus(t, open.ShareURL+"/", 200, time.Second)
}

// TestMaxUsesAcrossRestartsAndEdges: a use is a request the share's checks
// let through (a visitor without the password uses nothing up); once the
// edges' reports bring accessCount to maxUses, a restarted edge and every
// other edge refuse the share too, though neither served it.
func TestMaxUsesAcrossRestartsAndEdges(t *testing.T) {
	env := testenv.New(t, testenv.Options{})
	env.AddEdge("edge-2")
	org := origin(t)
	id, token, edges := env.ProvisionAgent("a")
	ag := env.RunAgent(id, token, edges)
	svc := env.Expose(ag, "web", org.URL)
	const pass = "correct horse battery"
	sh := env.Share(svc.ID, client.CreateShareRequest{MaxUses: 2, Password: pass})
	url1, url2 := testenv.ShareURL(env.Edges[0], sh.Token)+"/", testenv.ShareURL(env.Edges[1], sh.Token)+"/"
	eventuallyStatus(t, url2, 401, 2*time.Second)
	visit := func(url, password string) int {
		t.Helper()
		req, _ := http.NewRequest("GET", url, nil)
		if password != "" {
			req.SetBasicAuth("", password)
		}
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		return resp.StatusCode
	}
	for i := 0; i < 5; i++ {
		require.Equal(t, 401, visit(url1, "wrong password"), "a refused visitor")
	}
	require.Equal(t, 200, visit(url1, pass), "the refused visitors used nothing up")
	require.Equal(t, 200, visit(url1, pass))
	require.Equal(t, 410, visit(url1, pass))

	// The control plane counts the two uses and tells every edge.
	ctx := context.Background()
	require.Eventually(t, func() bool {
		s, err := env.Client.GetShare(ctx, sh.ID)
		return err == nil && s.AccessCount == 2 && !s.IsActive
	}, 5*time.Second, 20*time.Millisecond, "accessCount reaches maxUses")
	eventuallyStatus(t, url2, 410, 2*time.Second)

	// A restarted edge starts from the control plane's count.
	env.RestartEdge(env.Edges[0])
	eventuallyStatus(t, url1, 410, 5*time.Second)
	require.Equal(t, 410, visit(url1, pass))
}

// The checks run in the order of dataplane.md: with the agent offline, a
// share answers 503 before its rate limit or policy chain (password, paths)
// would answer.
func TestOfflineBeforePolicy(t *testing.T) {
	env := testenv.New(t, testenv.Options{})
	org := origin(t)
	ag, svc := env.ExposeAgent("a", "web", org.URL)
	pw := env.Share(svc.ID, client.CreateShareRequest{Password: "correct horse battery"})
	paths := env.Share(svc.ID, client.CreateShareRequest{AllowedPaths: []string{"/api/**"}})
	resp, _ := do(t, "GET", pw.ShareURL+"/", nil)
	require.Equal(t, 401, resp.StatusCode)
	ag.Stop()
	require.Eventually(t, func() bool {
		resp, _ := do(t, "GET", pw.ShareURL+"/", nil)
		return resp.StatusCode == 503
	}, 5*time.Second, 20*time.Millisecond, "the password share answers 503 while its agent is offline")
	resp, body := do(t, "GET", paths.ShareURL+"/admin", nil)
	require.Equal(t, 503, resp.StatusCode, body)
	require.Contains(t, body, "agent is not connected")
}
