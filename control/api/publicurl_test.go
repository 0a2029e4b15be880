package api

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/privateconnect/pc/control/store"
)

// A public service's URL is one the edges route: under the public domain
// (on the edge's port: its share listener serves them), else <subdomain>.localhost for an edge on an IP address or localhost, else
// none (an edge with a host name routes no subdomain of it).
func TestPublicURL(t *testing.T) {
	svc := &store.Service{IsPublic: true, Subdomain: "my-app"}
	for _, tc := range []struct{ domain, edge, want string }{
		{"apps.example.com", "https://edge.example.com", "https://my-app.apps.example.com"},
		{"apps.example.com", "", "http://my-app.apps.example.com"},
		{"pub.localhost", "http://127.0.0.1:8080", "http://my-app.pub.localhost:8080"},
		{"apps.example.com", "https://edge.example.com:8443", "https://my-app.apps.example.com:8443"},
		{"", "http://127.0.0.1:8080", "http://my-app.localhost:8080"},
		{"", "http://[::1]:8080", "http://my-app.localhost:8080"},
		{"", "http://localhost:8080", "http://my-app.localhost:8080"},
		{"", "https://10.0.0.5", "https://my-app.localhost"},
		{"", "", "http://my-app.localhost"},
		{"", "https://edge.example.com", ""},
		{"", "https://cafe.be:8443", ""},
	} {
		a := &API{opts: Options{PublicDomain: tc.domain}, edgeBase: tc.edge, edgeBaseT: time.Now()}
		assert.Equal(t, tc.want, a.publicURL(svc), "domain %q, edge %q", tc.domain, tc.edge)
	}
	assert.Empty(t, (&API{edgeBaseT: time.Now()}).publicURL(&store.Service{Subdomain: "off"}), "not public")
}
