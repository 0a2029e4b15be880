package e2e

import (
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/privateconnect/pc/control"
	"github.com/privateconnect/pc/internal/testenv"
	"github.com/privateconnect/pc/sdk/client"
)

// linkOrigin is a web app that believes it runs at the root of its host:
// it redirects to root-relative paths and to its own absolute address, and
// sets a cookie for Path=/.
func linkOrigin(t *testing.T) string {
	return httptestServer(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/go":
			http.Redirect(w, r, "/home", http.StatusFound)
		case "/abs":
			http.Redirect(w, r, "http://"+r.Host+"/home?from=abs", http.StatusFound)
		case "/login":
			http.SetCookie(w, &http.Cookie{Name: "sid", Value: "s3cret", Path: "/", HttpOnly: true})
			fmt.Fprint(w, "logged in")
		default:
			fmt.Fprintf(w, "%s prefix=%s cookie=%s", r.URL.RequestURI(), r.Header.Get("X-Forwarded-Prefix"), r.Header.Get("Cookie"))
		}
	})
}

// TestRedirectsAndCookiesStayUnderTheLink: a browser following a path
// link's redirects stays under /shared/<token>/, and a cookie the service
// sets for "/" goes back to that share only, never to another share's
// service on the same edge.
func TestRedirectsAndCookiesStayUnderTheLink(t *testing.T) {
	env := testenv.New(t, testenv.Options{Control: func(c *control.Config) {
		c.ShareDomain = "share.example.test"
	}})
	ag, svcA := env.ExposeAgent("a", "app", linkOrigin(t))
	svcB := env.Expose(ag, "other", linkOrigin(t))
	shA := env.Share(svcA.ID, client.CreateShareRequest{})
	shB := env.Share(svcB.ID, client.CreateShareRequest{})
	jar, err := cookiejar.New(nil)
	require.NoError(t, err)
	browser := &http.Client{Jar: jar, Timeout: 5 * time.Second}
	get := func(url string) (string, string) {
		t.Helper()
		resp, err := browser.Get(url)
		require.NoError(t, err)
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		require.Equal(t, 200, resp.StatusCode, string(b))
		return resp.Request.URL.Path, string(b)
	}
	prefixA := "/shared/" + shA.Token

	path, body := get(shA.ShareURL + "/go")
	require.Equal(t, prefixA+"/home", path, "a root-relative redirect stays under the link")
	require.Equal(t, "/home prefix="+prefixA+" cookie=", body, "the service is told where it is mounted")
	path, body = get(shA.ShareURL + "/abs")
	require.Equal(t, prefixA+"/home", path, "a redirect to the service's own address comes back through the link")
	require.Contains(t, body, "/home?from=abs ")

	_, body = get(shA.ShareURL + "/login")
	require.Equal(t, "logged in", body)
	_, body = get(shA.ShareURL + "/me")
	require.Contains(t, body, "cookie=sid=s3cret", "the cookie goes back to its share")
	_, body = get(shB.ShareURL + "/me")
	require.Equal(t, "/me prefix=/shared/"+shB.Token+" cookie=", body, "another share's service never gets it")

	// On a share domain the service is at the root of the visitor's host:
	// only its absolute address changes, to a path on that host.
	noFollow := &http.Client{Timeout: 5 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	for _, tc := range []struct{ path, want string }{{"/abs", "/home?from=abs"}, {"/go", "/home"}} {
		req, _ := http.NewRequest("GET", "http://"+env.Edges[0].HTTPAddr()+tc.path, nil)
		req.Host = shA.Token + ".share.example.test"
		resp, err := noFollow.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		require.Equal(t, http.StatusFound, resp.StatusCode)
		require.Equal(t, tc.want, resp.Header.Get("Location"))
	}
}
