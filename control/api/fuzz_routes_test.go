package api_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/privateconnect/pc/control"
	"github.com/privateconnect/pc/control/controltest"
)

// failTransport refuses every webhook delivery: fuzzed webhooks never reach
// the network.
type failTransport struct{}

func (failTransport) RoundTrip(*http.Request) (*http.Response, error) {
	return nil, errors.New("no network in fuzz tests")
}

// fuzzAPI is a running control plane over a memstore with one resource of
// each kind, for FuzzAPIRoutes.
type fuzzAPI struct {
	base, key, edgeToken string
	ids                  map[string]string
	hc                   *http.Client
}

func (a *fuzzAPI) do(method, path, auth string, body []byte) (int, []byte, error) {
	req, err := http.NewRequest(method, a.base+path, bytes.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	switch auth {
	case "key":
		req.Header.Set("x-api-key", a.key)
	case "edge":
		req.Header.Set("Authorization", "Bearer "+a.edgeToken)
	}
	resp, err := a.hc.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

func (a *fuzzAPI) create(tb testing.TB, path, body, field string) string {
	code, b, err := a.do("POST", path, "key", []byte(body))
	if err != nil || code/100 != 2 {
		tb.Fatalf("fixture %s: %d %s %v", path, code, b, err)
	}
	var env struct {
		Data map[string]any `json:"data"`
	}
	if err := json.Unmarshal(b, &env); err != nil {
		tb.Fatal(err)
	}
	s, _ := env.Data[field].(string)
	return s
}

func newFuzzAPI(f *testing.F) *fuzzAPI {
	srv := controltest.Start(f, control.Config{
		RateLimits: control.RateLimits{PublicPerMin: 1 << 30, AuthenticatedPerMin: 1 << 30},
		Webhooks:   control.WebhookOptions{Transport: failTransport{}}})
	key, _ := srv.BootstrapAdminKey()
	a := &fuzzAPI{base: "http://" + srv.Addr(), key: key, ids: map[string]string{},
		hc: &http.Client{Timeout: 10 * time.Second}}
	a.ids["agent"] = a.create(f, "/v1/agents/provision", `{"name":"a"}`, "agentId")
	a.ids["service"] = a.create(f, "/v1/services/register", `{"agentId":"`+a.ids["agent"]+`","name":"web","targetHost":"127.0.0.1","targetPort":8080,"protocol":"http"}`, "id")
	a.ids["share"] = a.create(f, "/v1/services/"+a.ids["service"]+"/shares", `{"name":"s"}`, "id")
	a.ids["key"] = a.create(f, "/v1/api-keys", `{"name":"k"}`, "id")
	a.ids["webhook"] = a.create(f, "/v1/webhooks", `{"url":"https://hooks.example.com/x","events":["share.created"]}`, "id")
	a.edgeToken = a.create(f, "/v1/edges", `{"name":"e","publicUrl":"http://127.0.0.1:1","tunnelAddr":"127.0.0.1:2"}`, "token")
	return a
}

// fuzzRoutes are the routes that take a body, with a valid body each.
var fuzzRoutes = []struct{ method, path, auth, seed string }{
	{"POST", "/v1/agents/provision", "key", `{"clientType":"ci","name":"n","label":"l","ttlSeconds":300}`},
	{"POST", "/v1/agents/register", "key", `{"agentId":"6f1c5b1e-4a0e-4c39-9a57-2b9c0d1e2f30","token":"0123456789abcdef0123456789abcdef"}`},
	{"POST", "/v1/agents/heartbeat", "none", `{"agentId":"{agent}","token":"x"}`},
	{"POST", "/v1/agents/rotate-token", "none", `{"agentId":"{agent}","currentToken":"x"}`},
	{"POST", "/v1/agents/{agent}/capabilities", "key", `{"capabilities":[{"name":"gpu","metadata":{"n":1}}]}`},
	{"POST", "/v1/agents/{agent}/messages/send", "key", `{"toAgentId":"{agent}","payload":{"a":1},"ttlSeconds":60}`},
	{"POST", "/v1/agents/{agent}/messages/broadcast", "key", `{"payload":{"a":1}}`},
	{"POST", "/v1/agents/{agent}/messages/read", "key", `{"messageIds":["6f1c5b1e-4a0e-4c39-9a57-2b9c0d1e2f30"]}`},
	{"POST", "/v1/agents/{agent}/command", "key", `{"action":"status","timeoutSeconds":1}`},
	{"POST", "/v1/services/register", "key", `{"agentId":"{agent}","name":"w2","targetHost":"h","targetPort":1}`},
	{"PATCH", "/v1/services/{service}", "key", `{"targetPort":9090}`},
	{"POST", "/v1/services/{service}/reach", "key", `{"sourceAgentId":"{agent}","mode":"tcp","timeoutMs":1000}`},
	{"PATCH", "/v1/services/{service}/health-config", "key", `{"enabled":false,"intervalSeconds":60}`},
	{"PATCH", "/v1/services/{service}/public", "key", `{"isPublic":false}`},
	{"POST", "/v1/services/{service}/shares", "key", `{"name":"x","expiresIn":"1h","allowedPaths":["/api/*"],"allowedMethods":["GET"],"allowedIps":["10.0.0.0/8"],"password":"secret-pass","maxUses":3}`},
	{"PATCH", "/v1/shares/{share}", "key", `{"rateLimitPerMin":10,"description":"d"}`},
	{"POST", "/v1/tunnels", "key", `{"target":"127.0.0.1:5432","agentId":"{agent}"}`},
	{"PATCH", "/v1/tunnels/{service}", "key", `{"status":"active"}`},
	{"POST", "/v1/tunnels/{service}/share", "key", `{"name":"t"}`},
	{"POST", "/v1/api-keys", "key", `{"name":"k2","scopes":["read"],"allowedIpRanges":["::1/128"]}`},
	{"PUT", "/v1/api-keys/{key}/ip-restrictions", "key", `{"allowedIpRanges":["10.0.0.0/8"]}`},
	{"POST", "/v1/workspaces", "key", `{"name":"tenant"}`},
	{"POST", "/v1/edges", "key", `{"name":"e2","publicUrl":"https://e.example","tunnelAddr":"e.example:7070","region":"eu"}`},
	{"POST", "/v1/edges/report", "edge", `{"configEpoch":"x","configVersion":1,"agents":["{agent}"],"accessLogs":[{"shareId":"{share}","at":"2026-01-01T00:00:00Z","ip":"1.2.3.4","method":"GET","path":"/","statusCode":200,"latencyMs":1,"bytesOut":2,"decision":"allowed"}]}`},
	{"POST", "/v1/webhooks", "key", `{"url":"https://hooks.example.com/y","events":["share.revoked"],"description":"d"}`},
	{"PATCH", "/v1/webhooks/{webhook}", "key", `{"isActive":false,"events":["agent.connected"]}`},
}

// FuzzAPIRoutes sends arbitrary bodies to every route that takes one,
// through the real HTTP server and its middleware (auth, limits, strict
// decoding, validation, storage): whatever the body, the answer is never a
// 500 (a panic or an unmapped error), and every error is the API's envelope
// carrying the response's status. It complements FuzzRequestBodies, which
// calls the decoders directly.
func FuzzAPIRoutes(f *testing.F) {
	a := newFuzzAPI(f)
	fill := func(s string) string {
		for k, v := range a.ids {
			s = strings.ReplaceAll(s, "{"+k+"}", v)
		}
		return s
	}
	for i, r := range fuzzRoutes {
		f.Add(uint8(i), []byte(fill(r.seed)))
		f.Add(uint8(i), []byte(`{"`+strings.Repeat("a", 40)+`":1}`))
	}
	f.Add(uint8(0), []byte(`{"name":"\u0000\ud800"}`))
	f.Add(uint8(14), []byte(`{"name":"x","expiresAt":"9999-12-31T23:59:59Z","allowedIps":["::/0","0.0.0.0/0"]}`))
	f.Add(uint8(14), []byte(`{"name":"x","allowedPaths":["`+strings.Repeat("*", 2000)+`"]}`))
	f.Fuzz(func(t *testing.T, route uint8, body []byte) {
		r := fuzzRoutes[int(route)%len(fuzzRoutes)]
		code, b, err := a.do(r.method, fill(r.path), r.auth, body)
		if err != nil {
			t.Fatalf("%s %s: %v", r.method, r.path, err)
		}
		if code >= 500 && code != http.StatusServiceUnavailable && code != http.StatusBadGateway && code != http.StatusGatewayTimeout {
			t.Fatalf("%s %s %q: %d %s", r.method, r.path, body, code, b)
		}
		if code < 400 {
			return
		}
		var e struct {
			Error      string `json:"error"`
			Message    string `json:"message"`
			StatusCode int    `json:"statusCode"`
		}
		if err := json.Unmarshal(b, &e); err != nil || e.StatusCode != code || e.Error == "" || e.Message == "" {
			t.Fatalf("%s %s %q: %d with a bad error envelope %s", r.method, r.path, body, code, b)
		}
	})
}
