package main

import (
	"context"
	"encoding/json"
	"encoding/pem"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/privateconnect/pc/sdk/client"
)

const (
	agentID   = "11111111-1111-4111-8111-111111111111"
	serviceID = "22222222-2222-4222-8222-222222222222"
)

const webService = `{"id":"` + serviceID + `","name":"web","agentId":"` + agentID + `","targetHost":"localhost","targetPort":3000,"protocol":"http","status":"ok","tunnelPort":23001,"isPublic":false,"createdAt":"2026-03-02T10:00:00Z"}`

// --- flags, env and exit codes ---

func TestEnvBindsGlobalAndCommandFlags(t *testing.T) {
	h := newHarness(t)
	h.ok("GET /v1/services", 200, `[`+webService+`]`)
	h.ok("POST /v1/services/{id}/shares", 201, `{"id":"s1","name":"n","shareUrl":"http://edge/shared/abc"}`)
	h.env["PC_EXPIRES"] = "7d"
	h.env["PC_METHODS"] = "get,post"
	out, errOut, code := h.run("link", "web")
	require.Equal(t, 0, code, errOut)
	assert.Equal(t, "http://edge/shared/abc\n", out)
	req := h.one("POST", "/v1/services/"+serviceID+"/shares")
	assert.Equal(t, testKey, req.APIKey, "PC_API_KEY")
	b := body(t, req)
	assert.Equal(t, "7d", b["expiresIn"])
	assert.Equal(t, []any{"GET", "POST"}, b["allowedMethods"])
}

func TestCommandLineWinsOverEnv(t *testing.T) {
	h := newHarness(t)
	h.ok("GET /v1/edges", 200, `[]`)
	h.env["PC_API_KEY"] = "pc_from_env"
	_, errOut, code := h.run("edges", "ls", "--api-key", "pc_from_flag")
	require.Equal(t, 0, code, errOut)
	assert.Equal(t, "pc_from_flag", h.one("GET", "/v1/edges").APIKey)
}

func TestEnvJSONAndBadEnvValue(t *testing.T) {
	h := newHarness(t)
	h.ok("GET /v1/edges", 200, `[{"id":"e1","name":"local","extra":1}]`)
	h.env["PC_JSON"] = "true"
	out, _, code := h.run("edges", "ls")
	require.Equal(t, 0, code)
	assert.JSONEq(t, `[{"id":"e1","name":"local","extra":1}]`, out)

	h.env["PC_JSON"] = "maybe"
	_, errOut, code := h.run("edges", "ls")
	assert.Equal(t, 2, code)
	assert.Contains(t, errOut, "$PC_JSON")
}

func TestEnvNames(t *testing.T) {
	root := newApp(nil, nil, nil).rootCmd()
	assert.Equal(t, "PC_CONTROL_URL", envName(root.PersistentFlags().Lookup("control")))
	assert.Equal(t, "PC_API_KEY", envName(root.PersistentFlags().Lookup("api-key")))
	assert.Equal(t, "PC_LOG_FORMAT", envName(root.PersistentFlags().Lookup("log-format")))
	link, _, err := root.Find([]string{"link"})
	require.NoError(t, err)
	assert.Equal(t, "PC_RATE_LIMIT", envName(link.Flags().Lookup("rate-limit")))
	assert.Contains(t, link.Flags().Lookup("rate-limit").Usage, "[$PC_RATE_LIMIT]")
}

func TestEveryCommandHasHelpWithExample(t *testing.T) {
	root := newApp(nil, nil, nil).rootCmd()
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		for _, sub := range c.Commands() {
			if sub.Name() == "help" {
				continue
			}
			assert.NotEmpty(t, sub.Short, sub.CommandPath())
			// pflag takes a `quoted` word of a usage as the value's name.
			sub.Flags().VisitAll(func(f *pflag.Flag) {
				assert.NotContains(t, f.Usage, "`", "%s --%s", sub.CommandPath(), f.Name)
			})
			if !sub.HasSubCommands() {
				assert.NotEmpty(t, sub.Example, "%s has no example", sub.CommandPath())
			}
			walk(sub)
		}
	}
	walk(root)

	h := newHarness(t)
	out, _, code := h.run("shares", "logs", "--help")
	assert.Equal(t, 0, code)
	assert.Contains(t, out, "--follow")
	assert.Contains(t, out, "Examples:")
}

func TestUsageErrorsExit2(t *testing.T) {
	h := newHarness(t)
	for _, args := range [][]string{
		{"bogus"},
		{"agents", "bogus"},
		{"link"},
		{"link", "web", "--bogus"},
		{"link", "web", "--expires", "2h"},
		{"--log-format", "xml", "status"},
		{"--log-level", "loud", "status"},
		{"expose", "localhost:99999", "--name", "x"},
		{"edges", "add", "e1"},
		{"keys", "ip-restrictions", "k1"},
		{"shares", "update", "s1"},
		{"link", "web", "--rate-limit", "many"},
	} {
		out, errOut, code := h.run(args...)
		assert.Equal(t, 2, code, "%v: %s", args, errOut)
		assert.Empty(t, out, "%v", args)
		assert.True(t, strings.HasPrefix(errOut, "error: "), "%v: %s", args, errOut)
		assert.Contains(t, errOut, "--help' for usage", "%v", args)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	assert.Empty(t, h.reqs, "usage errors must not call the API")
}

func TestAPIErrorExit1WithDetails(t *testing.T) {
	h := newHarness(t)
	h.fail("POST /v1/api-keys", 400, `{"error":"Bad Request","message":"Validation failed","statusCode":400,"details":[{"field":"name","message":"must be 1-50 characters"}]}`)
	out, errOut, code := h.run("keys", "create", strings.Repeat("x", 60))
	assert.Equal(t, 1, code)
	assert.Empty(t, out)
	assert.Equal(t, "error: Validation failed\n  name: must be 1-50 characters\n", errOut)
}

func TestFieldDetailNotRepeated(t *testing.T) {
	h := newHarness(t)
	h.ok("GET /v1/services", 200, `[`+webService+`]`)
	h.fail("POST /v1/services/{id}/shares", 400, `{"error":"Bad Request","message":"invalid request: password must be 8-128 characters","statusCode":400,"details":[{"field":"password","message":"must be 8-128 characters"}]}`)
	_, errOut, code := h.run("link", "web", "--password", "short")
	assert.Equal(t, 1, code)
	assert.Equal(t, "error: invalid request: password must be 8-128 characters\n", errOut)
}

func TestAPIErrorVerbatimAndRetryAfter(t *testing.T) {
	h := newHarness(t)
	h.fail("GET /v1/agents/{id}", 404, `{"error":"Not Found","message":"Agent not found","statusCode":404}`)
	h.fail("GET /v1/tunnels", 429, `{"error":"Too Many Requests","message":"Please wait before trying again","statusCode":429,"retryAfter":30}`)
	_, errOut, code := h.run("agents", "get", agentID)
	assert.Equal(t, 1, code)
	assert.Equal(t, "error: Agent not found\n", errOut)

	_, errOut, code = h.run("tunnels", "ls")
	assert.Equal(t, 1, code)
	assert.Equal(t, "error: Please wait before trying again\n  retry after 30 s\n", errOut)
}

func TestMissingAPIKey(t *testing.T) {
	h := newHarness(t)
	delete(h.env, "PC_API_KEY")
	_, errOut, code := h.run("services", "ls")
	assert.Equal(t, 1, code)
	assert.Equal(t, "error: no API key: set --api-key or PC_API_KEY\n", errOut)
}

func TestUnreachableControlPlane(t *testing.T) {
	h := newHarness(t)
	h.env["PC_CONTROL_URL"] = "http://127.0.0.1:1"
	_, errOut, code := h.run("services", "ls")
	assert.Equal(t, 1, code)
	assert.Contains(t, errOut, "error: cannot reach the control plane at http://127.0.0.1:1")
	assert.NotContains(t, errOut, "goroutine")
}

// --- link ---

func TestLinkPrintsOnlyTheURL(t *testing.T) {
	h := newHarness(t)
	// The service is on the second page of the listing.
	h.mux.HandleFunc("GET /v1/services", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if r.URL.Query().Get("cursor") == "" {
			w.Header().Set("X-Next-Cursor", "p2")
			w.Write([]byte(`{"success":true,"data":[{"id":"other","name":"db"}]}`))
			return
		}
		w.Write([]byte(`{"success":true,"data":[` + webService + `]}`))
	})
	h.ok("POST /v1/services/{id}/shares", 201, `{"id":"s1","token":"abc","name":"demo","shareUrl":"http://127.0.0.1:8080/shared/abc","expiresAt":"2026-03-02T11:00:00Z"}`)
	h.ok("GET /v1/plugins", 200, pluginList)
	dir := t.TempDir()
	cfg, hdrs := filepath.Join(dir, "geo.json"), filepath.Join(dir, "headers.json")
	require.NoError(t, os.WriteFile(cfg, []byte(`{"allow":["FR"]}`), 0o600))
	require.NoError(t, os.WriteFile(hdrs, []byte(`{"setResponse":{"X-A":"1"}}`), 0o600))

	// Plugins by name (the last uploaded version), by id, and a built-in
	// whose id has a colon of its own.
	out, errOut, code := h.run("link", "web", "--name", "demo", "--expires", "1h", "--methods", "get", "--paths", "/api/*",
		"--password", "correct-horse", "--allow-ip", "10.0.0.0/8", "--rate-limit", "60", "--max-uses", "5",
		"--plugin", "geo:"+cfg, "--plugin", geoV1ID, "--plugin", "geo@1.0.0", "--plugin", "builtin:headers:"+hdrs)
	require.Equal(t, 0, code, errOut)
	assert.Len(t, h.requests("GET", "/v1/plugins"), 1, "the plugins are listed once for every name")
	assert.Equal(t, "http://127.0.0.1:8080/shared/abc\n", out)
	assert.Contains(t, errOut, `Share "demo" of web`)
	assert.JSONEq(t, `{"name":"demo","expiresIn":"1h","allowedMethods":["GET"],"allowedPaths":["/api/*"],"password":"correct-horse",
		"allowedIps":["10.0.0.0/8"],"rateLimitPerMin":60,"maxUses":5,
		"plugins":[{"pluginId":"`+geoV2ID+`","config":{"allow":["FR"]}},{"pluginId":"`+geoV1ID+`"},{"pluginId":"`+geoV1ID+`"},{"pluginId":"builtin:headers","config":{"setResponse":{"X-A":"1"}}}]}`,
		string(h.one("POST", "/v1/services/"+serviceID+"/shares").Body))

	_, errOut, code = h.run("link", "web", "--plugin", "nope")
	assert.Equal(t, 1, code)
	assert.Contains(t, errOut, `--plugin nope: no plugin named "nope" (see 'connect plugins ls')`)
}

const (
	geoV1ID    = "00000000-0000-4000-8000-0000000000b1"
	geoV2ID    = "00000000-0000-4000-8000-0000000000b2"
	pluginList = `[{"id":"builtin:headers","name":"headers","builtin":true},
		{"id":"` + geoV2ID + `","name":"geo","version":"2.0.0","createdAt":"2026-03-02T10:00:00Z"},
		{"id":"` + geoV1ID + `","name":"geo","version":"1.0.0","createdAt":"2026-03-01T10:00:00Z"}]`
)

// Plugins are named like services: by id, name (the last uploaded
// version) or name@version.
func TestPluginsByName(t *testing.T) {
	h := newHarness(t)
	h.ok("GET /v1/plugins", 200, pluginList)
	h.fail("GET /v1/plugins/{id}", 404, `{"error":"Not Found","message":"plugin not found","statusCode":404}`)
	out, errOut, code := h.run("plugins", "get", "geo@1.0.0", "--json")
	require.Equal(t, 0, code, errOut)
	assert.Contains(t, out, geoV1ID)
	out, _, code = h.run("plugins", "get", "geo", "--json")
	require.Equal(t, 0, code)
	assert.Contains(t, out, geoV2ID)
	out, _, code = h.run("plugins", "get", "headers", "--json")
	require.Equal(t, 0, code)
	assert.Contains(t, out, `"builtin:headers"`)

	h.ok("DELETE /v1/plugins/{id}", 200, `{}`)
	_, errOut, code = h.run("plugins", "rm", "geo")
	assert.Equal(t, 1, code)
	assert.Contains(t, errOut, "2 plugins are named geo (geo@2.0.0, geo@1.0.0): give name@version or the id")
	assert.Empty(t, h.requests("DELETE", "/v1/plugins/"+geoV2ID), "an ambiguous name deletes nothing")
	out, errOut, code = h.run("plugins", "rm", "geo@1.0.0")
	require.Equal(t, 0, code, errOut)
	assert.Contains(t, out, "Deleted plugin "+geoV1ID+" (geo@1.0.0).")
	assert.Len(t, h.requests("DELETE", "/v1/plugins/"+geoV1ID), 1)

	_, errOut, code = h.run("plugins", "get", geoV2ID[:len(geoV2ID)-1]+"f")
	assert.Equal(t, 1, code, "an id that does not exist is not looked up as a name")
	assert.Contains(t, errOut, "plugin not found")
}

func TestLinkJSONIsTheRawData(t *testing.T) {
	h := newHarness(t)
	h.ok("GET /v1/services", 200, `[`+webService+`]`)
	h.ok("POST /v1/services/{id}/shares", 201, `{"id":"s1","token":"abc","shareUrl":"http://e/shared/abc","futureField":{"x":1}}`)
	out, _, code := h.run("link", "web", "--json")
	require.Equal(t, 0, code)
	assert.JSONEq(t, `{"id":"s1","token":"abc","shareUrl":"http://e/shared/abc","futureField":{"x":1}}`, out)
	assert.NotEmpty(t, body(t, h.one("POST", "/v1/services/"+serviceID+"/shares"))["name"], "a default share name is sent")
}

func TestLinkByServiceID(t *testing.T) {
	h := newHarness(t)
	h.ok("GET /v1/services/{id}", 200, webService)
	h.ok("POST /v1/services/{id}/shares", 201, `{"id":"s1","shareUrl":"http://e/shared/x"}`)
	out, _, code := h.run("link", serviceID)
	require.Equal(t, 0, code)
	assert.Equal(t, "http://e/shared/x\n", out)
	assert.Empty(t, h.requests("GET", "/v1/services"))
}

func TestLinkUnknownService(t *testing.T) {
	h := newHarness(t)
	h.ok("GET /v1/services", 200, `[]`)
	out, errOut, code := h.run("link", "nope")
	assert.Equal(t, 1, code)
	assert.Empty(t, out)
	assert.Contains(t, errOut, `error: no service named "nope"`)
}

// A share link speaks HTTP: one to a TCP service could never work, so it is
// refused with the ways to reach the service instead.
func TestLinkRefusesATCPService(t *testing.T) {
	h := newHarness(t)
	redis := strings.NewReplacer(`"name":"web"`, `"name":"redis"`, `"protocol":"http"`, `"protocol":"tcp"`).Replace(webService)
	h.ok("GET /v1/services", 200, `[`+redis+`]`)
	h.ok("POST /v1/services/{id}/shares", 201, `{"id":"s1","shareUrl":"http://e/shared/x"}`)
	out, errOut, code := h.run("link", "redis")
	assert.Equal(t, 1, code, errOut)
	assert.Empty(t, out)
	assert.Contains(t, errOut, "service redis speaks tcp, not HTTP: a share link cannot reach it")
	assert.Contains(t, errOut, "connect reach redis")
	assert.Contains(t, errOut, "port 23001 of every edge (tunnelPort)")
	assert.Empty(t, h.requests("POST", "/v1/services/"+serviceID+"/shares"), "no share is created")

	for _, proto := range []string{"auto", "http", "https"} {
		svc := strings.Replace(webService, `"protocol":"http"`, `"protocol":"`+proto+`"`, 1)
		h := newHarness(t)
		h.ok("GET /v1/services", 200, `[`+svc+`]`)
		h.ok("POST /v1/services/{id}/shares", 201, `{"id":"s1","shareUrl":"http://e/shared/x"}`)
		out, errOut, code := h.run("link", "web")
		assert.Equal(t, 0, code, "%s: %s", proto, errOut)
		assert.Equal(t, "http://e/shared/x\n", out, proto)
	}
}

// Zero is the "not set" value of the integer flags: given explicitly it is
// refused like any other out-of-range value, not taken as "no limit".
func TestExplicitZeroIsRefused(t *testing.T) {
	h := newHarness(t)
	h.ok("GET /v1/services", 200, `[`+webService+`]`)
	h.ok("POST /v1/services/{id}/shares", 201, `{"id":"s1","shareUrl":"http://e/shared/x"}`)
	h.ok("PATCH /v1/shares/{id}", 200, `{"id":"s1"}`)
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"link", "web", "--max-uses", "0"}, "--max-uses must be at least 1, not 0"},
		{[]string{"link", "web", "--max-uses", "-1"}, "--max-uses must be at least 1, not -1"},
		{[]string{"link", "web", "--rate-limit", "0"}, "--rate-limit must be 1-100000 requests per minute, not 0"},
		{[]string{"link", "web", "--rate-limit", "100001"}, "--rate-limit must be 1-100000"},
		{[]string{"link", "web", "--expires", ""}, "--expires must be 1h, 24h, 7d, 30d or never, not empty"},
		{[]string{"link", "web", "--password", ""}, "--password must not be empty"},
		{[]string{"shares", "update", "s1", "--max-uses", "0"}, "--max-uses must be at least 1"},
		{[]string{"shares", "update", "s1", "--rate-limit", "0"}, "--rate-limit must be 1-100000"},
		{[]string{"keys", "create", "ci", "--expires", ""}, "--expires must not be empty"},
		{[]string{"agents", "send", agentID, "--to", agentID, "--ttl", "0"}, "--ttl must be 1-604800 seconds, not 0"},
		{[]string{"agents", "command", agentID, "status", "--timeout", "0"}, "--timeout must be 1-300 seconds, not 0"},
		{[]string{"services", "health", "web", "--interval", "0"}, "--interval must be 10-3600 seconds, not 0"},
		{[]string{"services", "reach", "web", "--from", agentID, "--timeout-ms", "0"}, "--timeout-ms must be 1000-30000 ms, not 0"},
		{[]string{"services", "update", "web", "--target", ""}, "--target must not be empty"},
		{[]string{"services", "ls", "--limit", "0"}, "--limit must be 1-500, not 0"},
		{[]string{"reach", "web", "--port", "-1"}, "--port must be 0-65535, not -1"},
	} {
		out, errOut, code := h.run(c.args...)
		assert.Equal(t, 2, code, "%v: %s", c.args, errOut)
		assert.Empty(t, out, "%v", c.args)
		assert.Contains(t, errOut, c.want, "%v", c.args)
	}
	h.mu.Lock()
	assert.Empty(t, h.reqs, "refused before any API call")
	h.mu.Unlock()

	// In range, they are sent as given.
	_, errOut, code := h.run("link", "web", "--max-uses", "1", "--rate-limit", "1")
	require.Equal(t, 0, code, errOut)
	assert.Equal(t, float64(1), body(t, h.one("POST", "/v1/services/"+serviceID+"/shares"))["maxUses"])
	// The same zero through the environment is refused too.
	h.env["PC_MAX_USES"] = "0"
	_, errOut, code = h.run("link", "web")
	assert.Equal(t, 2, code, errOut)
	assert.Contains(t, errOut, "--max-uses must be at least 1")
}

// --- lists and details ---

func TestServicesLsTableAndCursor(t *testing.T) {
	h := newHarness(t)
	h.mux.HandleFunc("GET /v1/services", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Next-Cursor", "next-page")
		w.Write([]byte(`{"success":true,"data":[` + webService + `]}`))
	})
	out, errOut, code := h.run("services", "ls", "--status", "ok", "--limit", "1")
	require.Equal(t, 0, code)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	require.Len(t, lines, 2)
	assert.Regexp(t, `^ID\s+NAME\s+TARGET\s+PROTOCOL\s+STATUS\s+TCP PORT\s+PUBLIC\s+AGENT$`, lines[0])
	assert.Regexp(t, `^`+serviceID+`\s+web\s+localhost:3000\s+http\s+ok\s+23001\s+-\s+`+agentID+`$`, lines[1])
	assert.Contains(t, errOut, "--cursor next-page")
	assert.Equal(t, "limit=1&status=ok", h.one("GET", "/v1/services").Query)
}

func TestListAllFollowsCursors(t *testing.T) {
	h := newHarness(t)
	h.mux.HandleFunc("GET /v1/webhooks", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("cursor") == "" {
			w.Header().Set("X-Next-Cursor", "c2")
			w.Write([]byte(`{"success":true,"data":[{"id":"w1","url":"https://a","events":["share.created"]}]}`))
			return
		}
		w.Write([]byte(`{"success":true,"data":[{"id":"w2","url":"https://b","events":["agent.connected"]}]}`))
	})
	out, _, code := h.run("webhooks", "ls", "--all", "--json")
	require.Equal(t, 0, code)
	var got []client.Webhook
	require.NoError(t, json.Unmarshal([]byte(out), &got))
	require.Len(t, got, 2)
	assert.Equal(t, "w2", got[1].ID)
}

func TestGetShowsDetail(t *testing.T) {
	h := newHarness(t)
	h.ok("GET /v1/shares/{id}", 200, `{"id":"s1","name":"demo","tokenPreview":"abcdef","isActive":true,"accessCount":3,"allowedMethods":["GET","HEAD"],"expiresAt":"2026-03-02T11:00:00Z"}`)
	out, _, code := h.run("shares", "get", "s1")
	require.Equal(t, 0, code)
	assert.Regexp(t, `(?m)^id\s+s1$`, out)
	assert.Regexp(t, `(?m)^allowedMethods\s+GET, HEAD$`, out)
	assert.Regexp(t, `(?m)^expiresAt\s+2026-03-02T11:00:00Z$`, out)
	assert.Regexp(t, `(?m)^accessCount\s+3$`, out)
	assert.NotContains(t, out, "revokedAt")
}

func TestMutationMessageAndJSON(t *testing.T) {
	h := newHarness(t)
	h.ok("DELETE /v1/shares/{id}", 200, `{"id":"s1","revokedAt":"2026-03-02T11:00:00Z"}`)
	out, _, code := h.run("shares", "revoke", "s1")
	require.Equal(t, 0, code)
	assert.Equal(t, "Revoked share s1.\n", out)
	out, _, code = h.run("shares", "revoke", "s1", "--json")
	require.Equal(t, 0, code)
	assert.JSONEq(t, `{"id":"s1","revokedAt":"2026-03-02T11:00:00Z"}`, out)
}

func TestSharesUpdateSendsOnlyChangedFields(t *testing.T) {
	h := newHarness(t)
	h.ok("PATCH /v1/shares/{id}", 200, `{"id":"s1","name":"demo"}`)
	_, errOut, code := h.run("shares", "update", "s1", "--rate-limit", "120", "--methods", "get,head", "--clear", "allow-ip,max-uses")
	require.Equal(t, 0, code, errOut)
	assert.JSONEq(t, `{"rateLimitPerMin":120,"allowedMethods":["GET","HEAD"],"allowedIps":[],"maxUses":null}`, string(h.one("PATCH", "/v1/shares/s1").Body))
}

func TestSharesLsResolvesServiceName(t *testing.T) {
	h := newHarness(t)
	h.ok("GET /v1/services", 200, `[`+webService+`]`)
	h.ok("GET /v1/services/{id}/shares", 200, `[{"id":"s1","name":"demo","tokenPreview":"abcdef","isActive":true,"rateLimitPerMin":60,"allowedMethods":["GET"],"requiresPassword":true}]`)
	out, _, code := h.run("shares", "ls", "web")
	require.Equal(t, 0, code)
	assert.Contains(t, out, "abcdef…")
	assert.Contains(t, out, "GET password 60/min per IP")
}

func TestSharesLogsFollow(t *testing.T) {
	h := newHarness(t)
	var calls int
	h.mux.HandleFunc("GET /v1/shares/{id}/logs", func(w http.ResponseWriter, r *http.Request) {
		calls++
		data := `[{"id":"l1","accessedAt":"2026-03-02T10:00:01Z","method":"GET","path":"/a","statusCode":200,"decision":"allowed"}]`
		if calls > 1 {
			data = `[{"id":"l2","accessedAt":"2026-03-02T10:00:02Z","method":"POST","path":"/b","statusCode":403,"decision":"denied","deniedBy":"methods"},
			         {"id":"l1","accessedAt":"2026-03-02T10:00:01Z","method":"GET","path":"/a","statusCode":200,"decision":"allowed"}]`
		}
		w.Write([]byte(`{"success":true,"data":` + data + `}`))
	})
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Millisecond)
	defer cancel()
	out, errOut, code := h.runCtx(ctx, "shares", "logs", "s1", "--follow", "--json")
	require.Equal(t, 0, code, errOut)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	require.Len(t, lines, 2, out)
	assert.Contains(t, lines[0], `"id":"l1"`)
	assert.Contains(t, lines[1], `"deniedBy":"methods"`)
	reqs := h.requests("GET", "/v1/shares/s1/logs")
	assert.Contains(t, reqs[len(reqs)-1].Query, "since=2026-03-02T10%3A00%3A01Z")
}

func TestAgentsCommandWait(t *testing.T) {
	h := newHarness(t)
	h.ok("POST /v1/agents/{id}/command", 201, `{"commandId":"c1","status":"delivered","agentOnline":true}`)
	var polls int
	h.mux.HandleFunc("GET /v1/agents/{id}/commands/{cid}", func(w http.ResponseWriter, r *http.Request) {
		polls++
		status := "delivered"
		if polls > 2 {
			status = "succeeded"
		}
		w.Write([]byte(`{"success":true,"data":{"id":"c1","action":"status","status":"` + status + `","result":{"ok":true}}}`))
	})
	out, errOut, code := h.run("agents", "command", agentID, "status", "--wait", "--params", `{"verbose":true}`)
	require.Equal(t, 0, code, errOut)
	assert.Regexp(t, `(?m)^status\s+succeeded$`, out)
	assert.Regexp(t, `(?m)^result\s+\{"ok":true\}$`, out)
	assert.JSONEq(t, `{"action":"status","params":{"verbose":true}}`, string(h.one("POST", "/v1/agents/"+agentID+"/command").Body))
}

func TestKeysCreate(t *testing.T) {
	h := newHarness(t)
	h.ok("POST /v1/api-keys", 201, `{"id":"k1","name":"ci","key":"pc_secret","keyPrefix":"pc_secret12","scopes":["read","write"],"allowedIpRanges":["10.0.0.0/8"]}`)
	out, errOut, code := h.run("keys", "create", "ci", "--scopes", "read,write", "--allow-ip", "10.0.0.0/8")
	require.Equal(t, 0, code)
	assert.Regexp(t, `(?m)^key\s+pc_secret$`, out)
	assert.Contains(t, errOut, "shown only once")
	assert.JSONEq(t, `{"name":"ci","scopes":["read","write"],"allowedIpRanges":["10.0.0.0/8"]}`, string(h.one("POST", "/v1/api-keys").Body))
}

func TestKeysIPRestrictionsNone(t *testing.T) {
	h := newHarness(t)
	h.ok("PUT /v1/api-keys/{id}/ip-restrictions", 200, `{"id":"k1","allowedIpRanges":[]}`)
	_, _, code := h.run("keys", "ip-restrictions", "k1", "--none")
	require.Equal(t, 0, code)
	assert.JSONEq(t, `{"allowedIpRanges":[]}`, string(h.one("PUT", "/v1/api-keys/k1/ip-restrictions").Body))
}

func TestEdgesAdd(t *testing.T) {
	h := newHarness(t)
	h.ok("POST /v1/edges", 201, `{"id":"e1","name":"local","token":"edge-secret","publicUrl":"http://127.0.0.1:8080","tunnelAddr":"127.0.0.1:7070"}`)
	out, _, code := h.run("edges", "add", "local", "--public-url", "http://127.0.0.1:8080", "--tunnel-addr", "127.0.0.1:7070", "--json")
	require.Equal(t, 0, code)
	var e client.Edge
	require.NoError(t, json.Unmarshal([]byte(out), &e))
	assert.Equal(t, "edge-secret", e.Token)
	assert.JSONEq(t, `{"name":"local","publicUrl":"http://127.0.0.1:8080","tunnelAddr":"127.0.0.1:7070"}`, string(h.one("POST", "/v1/edges").Body))
}

func TestPluginsPush(t *testing.T) {
	h := newHarness(t)
	h.ok("POST /v1/plugins", 201, `{"id":"p1","name":"geo","version":"1.0.0","sha256":"abcdef0123456789","sizeBytes":8}`)
	file := filepath.Join(t.TempDir(), "geo.wasm")
	require.NoError(t, os.WriteFile(file, []byte("\x00asm\x01\x00\x00\x00"), 0o600))
	out, errOut, code := h.run("plugins", "push", file, "--version", "1.0.0")
	require.Equal(t, 0, code, errOut)
	assert.Regexp(t, `(?m)^name\s+geo$`, out)
	req := h.one("POST", "/v1/plugins")
	assert.Equal(t, "name=geo&version=1.0.0", req.Query)
	assert.Equal(t, []byte("\x00asm\x01\x00\x00\x00"), req.Body)

	// Limits and failure mode.
	_, errOut, code = h.run("plugins", "push", file, "--name", "banner", "--description", "adds a banner",
		"--fail-open", "--timeout", "20ms", "--memory-mib", "32")
	require.Equal(t, 0, code, errOut)
	reqs := h.requests("POST", "/v1/plugins")
	require.Len(t, reqs, 2)
	assert.Equal(t, "description=adds+a+banner&failOpen=true&memoryLimitBytes=33554432&name=banner&timeoutMs=20", reqs[1].Query)
	_, errOut, code = h.run("plugins", "push", file, "--timeout", "1500us")
	assert.Equal(t, 2, code)
	assert.Contains(t, errOut, "--timeout must be whole milliseconds")
	_, errOut, code = h.run("plugins", "push", file, "--memory-mib", "17592186044416")
	assert.Equal(t, 2, code)
	assert.Contains(t, errOut, "--memory-mib must be 1-256")
	// Given explicitly, 0 is out of range (it silently meant the default).
	for _, flags := range [][]string{{"--memory-mib", "0"}, {"--timeout", "0ms"}} {
		_, errOut, code = h.run(append([]string{"plugins", "push", file}, flags...)...)
		assert.Equal(t, 2, code, "%v", flags)
		assert.Contains(t, errOut, "must be", "%v", flags)
	}
}

func TestStatus(t *testing.T) {
	h := newHarness(t)
	h.ok("GET /health", 200, `{"status":"ok","version":"0.1.0","uptimeSeconds":12,"database":"ok","timestamp":"2026-03-02T10:00:00Z"}`)
	h.ok("GET /v1/status", 200, `{"agents":2,"onlineAgents":1,"services":3,"activeShares":4,"edges":1,"onlineEdges":1,"configVersion":9}`)
	out, _, code := h.run("status")
	require.Equal(t, 0, code)
	assert.Regexp(t, `(?m)^health\s+ok$`, out)
	assert.Regexp(t, `(?m)^onlineAgents\s+1$`, out)
	out, _, code = h.run("status", "--json")
	require.Equal(t, 0, code)
	assert.JSONEq(t, `{"agents":2,"onlineAgents":1,"services":3,"activeShares":4,"edges":1,"onlineEdges":1,"configVersion":9}`, out)
}

func TestWorkspacesCreateSendsOnlyGivenLimits(t *testing.T) {
	h := newHarness(t)
	h.ok("POST /v1/workspaces", 201, `{"workspace":{"id":"w2","name":"acme"},"apiKey":{"key":"pc_x"}}`)
	_, errOut, code := h.run("workspaces", "create", "acme")
	require.Equal(t, 0, code, errOut)
	_, errOut, code = h.run("workspaces", "create", "acme", "--max-services", "10", "--max-shares", "0")
	require.Equal(t, 0, code, errOut)
	reqs := h.requests("POST", "/v1/workspaces")
	require.Len(t, reqs, 2)
	assert.JSONEq(t, `{"name":"acme"}`, string(reqs[0].Body))
	assert.JSONEq(t, `{"name":"acme","maxServices":10,"maxShares":0}`, string(reqs[1].Body))
}

// The dry-run's table shows why a plugin failed, and no status for allow.
func TestPluginsTestShowsTheFailure(t *testing.T) {
	h := newHarness(t)
	h.ok("GET /v1/plugins/{id}", 200, `{"id":"`+geoV1ID+`","name":"geo"}`)
	h.ok("POST /v1/plugins/{id}/test", 200, `{"decision":"error","status":500,"body":"{}","error":"time budget exceeded","durationMicros":5100}`)
	// pcd's PC_CONFIG (its YAML file), exported on the same machine, is
	// not this command's --config (PC_PLUGIN_CONFIG).
	h.env["PC_CONFIG"] = "/etc/pc/pcd.yaml"
	out, errOut, code := h.run("plugins", "test", geoV1ID)
	require.Equal(t, 0, code, errOut)
	assert.Regexp(t, `(?m)^error\s+time budget exceeded$`, out)
	assert.Regexp(t, `(?m)^status\s+500$`, out)

	h2 := newHarness(t)
	h2.ok("GET /v1/plugins/{id}", 200, `{"id":"`+geoV1ID+`","name":"geo"}`)
	h2.ok("POST /v1/plugins/{id}/test", 200, `{"decision":"allow","status":null,"requestHeaders":{"X-Team":"blue"},"durationMicros":40}`)
	out, errOut, code = h2.run("plugins", "test", geoV1ID)
	require.Equal(t, 0, code, errOut)
	assert.NotRegexp(t, `(?m)^status\s+0$`, out)
	assert.Contains(t, out, "X-Team")
}

// Tunnels are named like services: `connect tunnels pause web`.
func TestTunnelsByServiceName(t *testing.T) {
	h := newHarness(t)
	h.ok("GET /v1/services", 200, `[`+webService+`]`)
	h.ok("PATCH /v1/tunnels/{id}", 200, `{"id":"`+serviceID+`","name":"web","status":"paused"}`)
	out, errOut, code := h.run("tunnels", "pause", "web")
	require.Equal(t, 0, code, errOut)
	assert.Equal(t, "Tunnel web is paused.\n", out)
	assert.Len(t, h.requests("PATCH", "/v1/tunnels/"+serviceID), 1)
	_, errOut, code = h.run("tunnels", "pause", "nope")
	assert.Equal(t, 1, code)
	assert.Contains(t, errOut, `no service named "nope"`)
}

// --- small things of the walk-through ---

// With --log-format json every line the agent commands write on stderr is a
// JSON record: "Stopped." too, and the final error.
func TestJSONLogFormatWritesOnlyJSONToStderr(t *testing.T) {
	h := exposeHarness(t)
	_, stderr, code, _ := runUntilConnected(t, h, "expose", "localhost:3000", "--name", "web", "--log-format", "json")
	require.Equal(t, 0, code, stderr)
	lines := strings.Split(strings.TrimSpace(stderr), "\n")
	msgs := []string{}
	for _, l := range lines {
		var rec map[string]any
		require.NoError(t, json.Unmarshal([]byte(l), &rec), "not a JSON record: %q", l)
		msgs = append(msgs, rec["msg"].(string))
	}
	assert.Contains(t, msgs, "provisioned agent")
	assert.Contains(t, msgs, "stopped")

	// An error too.
	h.env["PC_CONTROL_URL"] = "http://127.0.0.1:1"
	_, errOut, code := h.run("services", "ls", "--log-format", "json")
	assert.Equal(t, 1, code)
	var rec map[string]any
	require.NoError(t, json.Unmarshal([]byte(strings.TrimSpace(errOut)), &rec), errOut)
	assert.Equal(t, "ERROR", rec["level"])
	assert.Contains(t, rec["error"], "cannot reach the control plane")

	// The text format is unchanged.
	_, errOut, code = h.run("services", "ls")
	assert.Equal(t, 1, code)
	assert.True(t, strings.HasPrefix(errOut, "error: cannot reach the control plane"), errOut)
}

// The edge token goes in the environment, as the README says.
func TestEdgesAddHintsPCToken(t *testing.T) {
	h := newHarness(t)
	h.ok("POST /v1/edges", 201, `{"id":"e1","name":"eu-1","token":"pce_x"}`)
	_, errOut, code := h.run("edges", "add", "eu-1", "--public-url", "https://eu1.example.com", "--tunnel-addr", "eu1.example.com:7070")
	require.Equal(t, 0, code, errOut)
	assert.Contains(t, errOut, "PC_TOKEN")
	assert.NotContains(t, errOut, "(pcd edge --token)")
	out, _, _ := h.run("edges", "add", "--help")
	assert.Contains(t, out, `PC_TOKEN="$(connect edges add`)
}

// A --control that is an edge's share listener (or any other server)
// answers 404 in an envelope like the API's: the error says the URL is not
// a control plane's, not just "Not found".
func TestControlURLThatIsNotAControlPlane(t *testing.T) {
	edge := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(404)
		io.WriteString(w, `{"error":"Not Found","message":"Not found","statusCode":404}`)
	}))
	defer edge.Close()
	h := newHarness(t)
	h.env["PC_CONTROL_URL"] = edge.URL
	_, errOut, code := h.run("services", "ls")
	assert.Equal(t, 1, code)
	assert.Contains(t, errOut, "error: "+edge.URL+" does not look like a control plane's API (it answered: Not found")
	assert.Contains(t, errOut, "PC_CONTROL_URL")

	// A real 404 of the control plane is left as it is.
	h = newHarness(t)
	h.fail("GET /v1/shares/{id}", 404, `{"error":"Not Found","message":"share not found","statusCode":404}`)
	_, errOut, code = h.run("shares", "get", "s1")
	assert.Equal(t, 1, code)
	assert.Equal(t, "error: share not found\n", errOut)

	// Behind a proxy that does not pass /openapi.json, the control plane's
	// own 404s still read as themselves, without a probe.
	var probes atomic.Int32
	proxied := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/openapi.json" {
			probes.Add(1)
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(404)
		io.WriteString(w, `{"error":"Not Found","message":"share not found","statusCode":404}`)
	}))
	defer proxied.Close()
	h.env["PC_CONTROL_URL"] = proxied.URL
	_, errOut, code = h.run("shares", "get", "s1")
	assert.Equal(t, 1, code)
	assert.Equal(t, "error: share not found\n", errOut)
	assert.Zero(t, probes.Load())
}

// An https control plane signed by a private CA: --control-ca (or
// PC_CONTROL_CA) makes connect trust it; without it the certificate is
// refused.
func TestControlCA(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"success":true,"data":[]}`)
	}))
	defer srv.Close()
	ca := filepath.Join(t.TempDir(), "ca.pem")
	require.NoError(t, os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600))
	h := newHarness(t)
	_, stderr, code := h.run("--control", srv.URL, "--api-key", "k", "edges", "ls")
	require.Equal(t, 1, code)
	assert.Contains(t, stderr, "certificate")
	_, stderr, code = h.run("--control", srv.URL, "--control-ca", ca, "--api-key", "k", "edges", "ls")
	require.Equal(t, 0, code, stderr)
	h.env = map[string]string{"PC_CONTROL_CA": ca}
	_, stderr, code = h.run("--control", srv.URL, "--api-key", "k", "edges", "ls")
	require.Equal(t, 0, code, stderr)
	_, stderr, code = h.run("--control", srv.URL, "--control-ca", filepath.Join(t.TempDir(), "none.pem"), "edges", "ls")
	require.Equal(t, 2, code, stderr)
	assert.Contains(t, stderr, "--control-ca")
}
