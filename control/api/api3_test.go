package api_test

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/privateconnect/pc/control"
	"github.com/privateconnect/pc/control/push"
	"github.com/privateconnect/pc/control/store"
	"github.com/privateconnect/pc/internal/tunnel"
)

func TestAPIKeys(t *testing.T) {
	h := newHarness(t)
	r := h.must(201, "POST", "/v1/api-keys", h.admin, map[string]any{"name": "ci"})
	key := r.str("key")
	require.Regexp(t, `^pc_[0-9a-f]{48}$`, key)
	assert.Equal(t, key[:11], r.str("keyPrefix"))
	assert.Equal(t, []any{"write"}, r.data()["scopes"])
	assert.Equal(t, []any{}, r.data()["allowedIpRanges"])
	id := r.str("id")
	h.assertError(h.req("POST", "/v1/api-keys", h.admin, map[string]any{"name": "ci"}), 409)
	for _, bad := range []map[string]any{
		{"name": ""}, {"name": strings.Repeat("n", 51)}, {"name": "x", "scopes": []string{"root"}}, {"name": "x", "scopes": []string{}},
		{"name": "x", "allowedIpRanges": []string{"300.0.0.0/8"}}, {"name": "x", "expiresAt": "2000-01-01T00:00:00Z"},
	} {
		h.assertError(h.req("POST", "/v1/api-keys", h.admin, bad), 400)
	}

	// The new key works (write scope) and its use is recorded.
	h.must(201, "POST", "/v1/agents/provision", key, map[string]any{})
	h.assertError(h.req("GET", "/v1/api-keys", key, nil), 403)
	list := h.must(200, "GET", "/v1/api-keys", h.admin, nil).list()
	require.Len(t, list, 2)
	for _, k := range list {
		assert.NotContains(t, k.(map[string]any), "key")
		assert.NotContains(t, k.(map[string]any), "keyHash")
	}
	g := h.must(200, "GET", "/v1/api-keys/"+id, h.admin, nil).data()
	assert.NotNil(t, g["lastUsedAt"])
	assert.Equal(t, "127.0.0.1", g["lastUsedIp"])

	// IP restrictions take effect at once.
	h.assertError(h.req("PUT", "/v1/api-keys/"+id+"/ip-restrictions", h.admin, map[string]any{"allowedIpRanges": []string{"nope"}}), 400)
	h.assertError(h.req("PUT", "/v1/api-keys/"+id+"/ip-restrictions", h.admin, map[string]any{}), 400)
	h.must(200, "PUT", "/v1/api-keys/"+id+"/ip-restrictions", h.admin, map[string]any{"allowedIpRanges": []string{"10.0.0.0/8", "fd00::/8"}})
	h.assertError(h.req("GET", "/v1/services", key, nil), 403)
	h.must(200, "PUT", "/v1/api-keys/"+id+"/ip-restrictions", h.admin, map[string]any{"allowedIpRanges": []string{}})
	h.must(200, "GET", "/v1/services", key, nil)

	// Revocation takes effect at once.
	h.must(200, "DELETE", "/v1/api-keys/"+id, h.admin, nil)
	h.assertError(h.req("GET", "/v1/services", key, nil), 401)
	h.assertError(h.req("GET", "/v1/api-keys/"+id, h.admin, nil), 404)
	h.assertError(h.req("DELETE", "/v1/api-keys/"+id, h.admin, nil), 404)
	assert.Len(t, h.must(200, "GET", "/v1/api-keys", h.admin, nil).list(), 1)
	// The name is free again.
	ci := h.must(201, "POST", "/v1/api-keys", h.admin, map[string]any{"name": "ci", "scopes": []string{"read", "admin"}}).data()

	// The last usable admin key cannot be revoked: nothing could make
	// another one. An expired admin key does not count.
	var bootstrap string
	for _, k := range h.must(200, "GET", "/v1/api-keys", h.admin, nil).list() {
		if k := k.(map[string]any); k["id"] != ci["id"] {
			bootstrap = k["id"].(string)
		}
	}
	require.NotEmpty(t, bootstrap)
	soon := time.Now().Add(2 * time.Second) // time enough for the POST on a loaded machine
	h.must(201, "POST", "/v1/api-keys", h.admin, map[string]any{"name": "soon", "scopes": []string{"admin"}, "expiresAt": soon.UTC().Format(time.RFC3339Nano)})
	h.must(200, "DELETE", "/v1/api-keys/"+ci["id"].(string), ci["key"].(string), nil) // itself, while another is left
	time.Sleep(time.Until(soon) + 100*time.Millisecond)
	r = h.req("DELETE", "/v1/api-keys/"+bootstrap, h.admin, nil)
	h.assertError(r, 409)
	assert.Contains(t, string(r.Raw), "last admin key")

	// Expired keys are left out by the store, so every page is full: a
	// page of one is never empty while a cursor says there is more.
	for i := 0; i < 3; i++ {
		h.must(201, "POST", "/v1/api-keys", h.admin, map[string]any{"name": fmt.Sprintf("later-%d", i), "scopes": []string{"read"}})
	}
	seen, cursor := 0, ""
	for {
		page := h.must(200, "GET", "/v1/api-keys?limit=1&cursor="+cursor, h.admin, nil)
		require.Len(t, page.list(), 1, "page %d", seen)
		seen++
		if cursor = page.Header.Get("X-Next-Cursor"); cursor == "" {
			break
		}
	}
	assert.Equal(t, 4, seen, "the bootstrap key and three later ones; not the expired one")
}

func TestWorkspacesStatusAudit(t *testing.T) {
	h := newHarness(t)
	r := h.must(201, "POST", "/v1/workspaces", h.admin, map[string]any{"name": "acme"})
	tenantKey := r.data()["apiKey"].(map[string]any)["key"].(string)
	assert.Equal(t, "acme", r.data()["workspace"].(map[string]any)["name"])
	h.assertError(h.req("POST", "/v1/workspaces", h.admin, map[string]any{"name": "acme"}), 409)
	h.assertError(h.req("POST", "/v1/workspaces", tenantKey, map[string]any{"name": "evil"}), 403)

	w := h.must(200, "GET", "/v1/workspace", tenantKey, nil).data()
	assert.Equal(t, "acme", w["name"])
	assert.Equal(t, float64(0), w["usage"].(map[string]any)["services"])

	svcID, _ := h.service(tenantKey, "web")
	h.must(201, "POST", "/v1/services/"+svcID+"/shares", tenantKey, map[string]any{"name": "s"})
	w = h.must(200, "GET", "/v1/workspace", tenantKey, nil).data()
	u := w["usage"].(map[string]any)
	assert.Equal(t, float64(1), u["agents"])
	assert.Equal(t, float64(1), u["services"])
	assert.Equal(t, float64(1), u["shares"])
	assert.Contains(t, w["limits"], "maxServices")

	st := h.must(200, "GET", "/v1/status", tenantKey, nil).data()
	for _, f := range []string{"agents", "onlineAgents", "services", "activeShares", "edges", "onlineEdges", "configVersion"} {
		assert.Contains(t, st, f)
	}
	assert.Equal(t, float64(1), st["activeShares"])
	assert.Greater(t, st["configVersion"], float64(0))
	// The default workspace sees none of it.
	assert.Equal(t, float64(0), h.must(200, "GET", "/v1/status", h.admin, nil).data()["services"])

	require.Eventually(t, func() bool {
		return len(h.must(200, "GET", "/v1/audit?type=shares.create", tenantKey, nil).list()) == 1
	}, 3*time.Second, 50*time.Millisecond)
	ev := h.must(200, "GET", "/v1/audit?type=shares.create", tenantKey, nil).list()[0].(map[string]any)
	assert.Equal(t, "POST", ev["method"])
	assert.Equal(t, "/v1/services/{id}/shares", ev["route"])
	assert.NotEmpty(t, ev["keyId"])
	assert.NotEmpty(t, ev["resourceId"])
	assert.Equal(t, "success", ev["result"])
	all := h.must(200, "GET", "/v1/audit?limit=2", tenantKey, nil)
	assert.Len(t, all.list(), 2)
	assert.NotEmpty(t, all.Header.Get("X-Next-Cursor"))
	assert.Empty(t, h.must(200, "GET", "/v1/audit?since=2999-01-01T00:00:00Z", tenantKey, nil).list())
	h.assertError(h.req("GET", "/v1/audit?since=yesterday", tenantKey, nil), 400)
}

func TestAgentTokenRoutes(t *testing.T) {
	h := newHarness(t)
	id, token := h.agent(h.admin)
	r := h.must(200, "POST", "/v1/agents/heartbeat", "", map[string]any{"agentId": id, "token": token})
	assert.NotEmpty(t, r.str("lastSeenAt"))
	h.assertError(h.req("POST", "/v1/agents/heartbeat", "", map[string]any{"agentId": id, "token": "wrong"}), 401)
	h.assertError(h.req("POST", "/v1/agents/heartbeat", "", map[string]any{"agentId": "6f1c8d1e-0000-4000-8000-000000000000", "token": token}), 401)
	h.assertError(h.req("POST", "/v1/agents/heartbeat", "", map[string]any{}), 401)

	r = h.must(200, "POST", "/v1/agents/rotate-token", "", map[string]any{"agentId": id, "currentToken": token})
	newTok := r.str("token")
	require.Len(t, newTok, 64)
	h.assertError(h.req("POST", "/v1/agents/heartbeat", "", map[string]any{"agentId": id, "token": token}), 401)
	h.must(200, "POST", "/v1/agents/heartbeat", "", map[string]any{"agentId": id, "token": newTok})
	h.assertError(h.req("POST", "/v1/agents/rotate-token", "", map[string]any{"agentId": id, "currentToken": token}), 401)

	logs := h.must(200, "GET", "/v1/agents/"+id+"/audit-logs", h.admin, nil).list()
	var events []string
	for _, l := range logs {
		events = append(events, l.(map[string]any)["event"].(string))
	}
	assert.Equal(t, []string{"ROTATED", "PROVISIONED"}, events)

	// A rotation keeps the lifetime the token was provisioned with: a
	// 5-minute token did rotate into a 30-day one.
	expiresIn := func(r resp) time.Duration {
		at, err := time.Parse(time.RFC3339, r.str("expiresAt"))
		require.NoError(t, err)
		return time.Until(at)
	}
	r = h.must(201, "POST", "/v1/agents/provision", h.admin, map[string]any{"name": "ci", "ttlSeconds": 300})
	assert.InDelta(t, 300, expiresIn(r).Seconds(), 5)
	r = h.must(200, "POST", "/v1/agents/rotate-token", "", map[string]any{"agentId": r.str("agentId"), "currentToken": r.str("token")})
	assert.InDelta(t, 300, expiresIn(r).Seconds(), 5, "the rotated token lives 5 minutes too")
	r = h.must(200, "POST", "/v1/agents/rotate-token", "", map[string]any{"agentId": id, "currentToken": newTok})
	assert.InDelta(t, 30*24*3600, expiresIn(r).Seconds(), 5, "the default stays 30 days")
}

func TestCapabilitiesAndOrchestration(t *testing.T) {
	h := newHarness(t)
	edgeID, edgeTok := h.edge("e")
	_ = edgeID
	a1, _ := h.agent(h.admin)
	a2, _ := h.agent(h.admin)
	r := h.must(200, "POST", "/v1/agents/"+a1+"/capabilities", h.admin, map[string]any{"capabilities": []any{
		map[string]any{"name": "gpu", "metadata": map[string]any{"model": "a100"}}, map[string]any{"name": "docker"}}})
	assert.Len(t, r.list(), 2)
	r = h.must(200, "POST", "/v1/agents/"+a1+"/capabilities", h.admin, map[string]any{"capabilities": []any{
		map[string]any{"name": "gpu", "metadata": map[string]any{"model": "h100"}}}})
	require.Len(t, r.list(), 2)
	assert.Equal(t, "h100", r.list()[0].(map[string]any)["metadata"].(map[string]any)["model"])
	h.assertError(h.req("POST", "/v1/agents/"+a1+"/capabilities", h.admin, map[string]any{"capabilities": []any{map[string]any{"name": ""}}}), 400)
	h.assertError(h.req("POST", "/v1/agents/"+a1+"/capabilities", h.admin, map[string]any{"capabilities": []any{map[string]any{"name": "x", "metadata": 3}}}), 400)
	assert.Len(t, h.must(200, "GET", "/v1/agents?capability=gpu", h.admin, nil).list(), 1)

	h.must(201, "POST", "/v1/services/register", h.admin, map[string]any{"agentId": a2, "name": "db", "targetHost": "h", "targetPort": 5432})
	h.report(edgeTok, []string{a2})
	o := h.must(200, "GET", "/v1/agents/orchestration", h.admin, nil).list()
	require.Len(t, o, 2)
	first := o[0].(map[string]any)
	assert.Equal(t, a2, first["id"], "online first")
	assert.Equal(t, true, first["isOnline"])
	assert.Equal(t, "db", first["services"].([]any)[0].(map[string]any)["name"])

	// Paginated like every list (it had no limit): the pages, one item at
	// a time, are the whole list in its order.
	h.agent(h.admin)
	all := h.must(200, "GET", "/v1/agents/orchestration", h.admin, nil).list()
	require.Len(t, all, 3)
	assert.Equal(t, all, pages(h, "/v1/agents/orchestration", 1))
	h.assertError(h.req("GET", "/v1/agents/orchestration?limit=0", h.admin, nil), 400)
	events := h.must(200, "GET", "/v1/webhooks/events?limit=500", "", nil).list()
	require.Greater(t, len(events), 10)
	assert.Equal(t, events, pages(h, "/v1/webhooks/events", 4))
	assert.Len(t, h.must(200, "GET", "/v1/webhooks/events", "", nil).list(), len(events), "the default page holds them all")
}

// pages reads a list route a page of limit items at a time.
func pages(h *harness, path string, limit int) []any {
	h.t.Helper()
	var out []any
	cursor := ""
	for range 1000 {
		page := h.must(200, "GET", fmt.Sprintf("%s?limit=%d&cursor=%s", path, limit, cursor), h.admin, nil)
		require.LessOrEqual(h.t, len(page.list()), limit)
		out = append(out, page.list()...)
		if cursor = page.Header.Get("X-Next-Cursor"); cursor == "" {
			return out
		}
	}
	h.t.Fatal("no last page")
	return nil
}

// report posts an edge report with the connected agents and extras.
func (h *harness) report(edgeTok string, agents []string, extra ...map[string]any) {
	h.t.Helper()
	body := map[string]any{"configEpoch": "", "configVersion": 0, "agents": agents}
	for _, e := range extra {
		for k, v := range e {
			body[k] = v
		}
	}
	r := h.req("POST", "/v1/edges/report", "", body, "Authorization", "Bearer "+edgeTok)
	require.Equal(h.t, 200, r.Status, "%s", r.Raw)
}

func (h *harness) inbox(edgeTok, agent string) map[string]any {
	h.t.Helper()
	r := h.req("GET", "/v1/edges/agent-inbox?agentId="+agent, "", nil, "Authorization", "Bearer "+edgeTok)
	require.Equal(h.t, 200, r.Status, "%s", r.Raw)
	return r.data()
}

func TestMessages(t *testing.T) {
	h := newHarness(t)
	_, edgeTok := h.edge("e")
	a1, _ := h.agent(h.admin)
	a2, _ := h.agent(h.admin)
	a3, _ := h.agent(h.admin)
	r := h.must(201, "POST", "/v1/agents/"+a1+"/messages/send", h.admin, map[string]any{
		"toAgentId": a2, "payload": map[string]any{"hello": "world"}, "type": "request", "correlationId": "c1", "ttlSeconds": 60})
	msgID := r.str("messageId")
	require.NotEmpty(t, msgID)
	for _, bad := range []map[string]any{
		{"toAgentId": a2}, {"toAgentId": a2, "payload": "x"}, {"toAgentId": "x", "payload": map[string]any{}},
		{"toAgentId": a2, "payload": map[string]any{}, "ttlSeconds": 0}, {"toAgentId": a2, "payload": map[string]any{}, "type": "shout"},
	} {
		h.assertError(h.req("POST", "/v1/agents/"+a1+"/messages/send", h.admin, bad), 400)
	}
	h.assertError(h.req("POST", "/v1/agents/"+a1+"/messages/send", h.admin, map[string]any{"toAgentId": "6f1c8d1e-0000-4000-8000-000000000000", "payload": map[string]any{}}), 404)
	r = h.must(201, "POST", "/v1/agents/"+a1+"/messages/broadcast", h.admin, map[string]any{"payload": map[string]any{"n": 1}, "channel": "ops"})
	assert.Equal(t, float64(2), r.data()["sent"])

	list := h.must(200, "GET", "/v1/agents/"+a2+"/messages", h.admin, nil).list()
	require.Len(t, list, 2)
	m := list[1].(map[string]any)
	assert.Equal(t, msgID, m["id"])
	assert.Equal(t, a1, m["from"].(map[string]any)["id"])
	assert.Equal(t, "request", m["type"])
	assert.Equal(t, "c1", m["correlationId"])
	assert.Len(t, h.must(200, "GET", "/v1/agents/"+a2+"/messages?channel=ops", h.admin, nil).list(), 1)
	h.must(200, "POST", "/v1/agents/"+a2+"/messages/read", h.admin, map[string]any{"messageIds": []string{msgID}})
	unread := h.must(200, "GET", "/v1/agents/"+a2+"/messages?unreadOnly=true", h.admin, nil).list()
	require.Len(t, unread, 1)
	assert.Equal(t, "ops", unread[0].(map[string]any)["channel"])
	assert.Len(t, h.must(200, "GET", "/v1/agents/"+a3+"/messages", h.admin, nil).list(), 1)

	// The edge fetches them once.
	in := h.inbox(edgeTok, a2)
	assert.Len(t, in["messages"], 2)
	assert.Len(t, h.inbox(edgeTok, a2)["messages"], 0)
}

func TestCommandsAndChecks(t *testing.T) {
	h := newHarness(t)
	_, edgeTok := h.edge("e")
	svcID, agentID := h.service(h.admin, "web")

	// Offline: queued.
	r := h.must(201, "POST", "/v1/agents/"+agentID+"/command", h.admin, map[string]any{"action": "status", "params": map[string]any{"verbose": true}})
	assert.Equal(t, "queued", r.str("status"))
	assert.Equal(t, false, r.data()["agentOnline"])
	cmdID := r.str("commandId")
	for _, bad := range []map[string]any{{"action": "dance"}, {"action": "status", "timeoutSeconds": 301}, {"action": "status", "params": []int{1}}} {
		h.assertError(h.req("POST", "/v1/agents/"+agentID+"/command", h.admin, bad), 400)
	}
	g := h.must(200, "GET", "/v1/agents/"+agentID+"/commands/"+cmdID, h.admin, nil).data()
	assert.Equal(t, "queued", g["status"])
	assert.Equal(t, "status", g["action"])
	h.assertError(h.req("POST", "/v1/services/"+svcID+"/check", h.admin, nil), 503)

	// The agent connects: the edge takes the queued command and reports its result.
	// With it goes a probe of its "auto" service (api-v1.md: auto detects
	// HTTP by probing from the agent).
	h.report(edgeTok, []string{agentID})
	in := h.inbox(edgeTok, agentID)
	cmds := in["commands"].([]any)
	require.Len(t, cmds, 2)
	if cmds[0].(map[string]any)["id"] != cmdID { // queued in the same millisecond
		cmds[0], cmds[1] = cmds[1], cmds[0]
	}
	assert.Equal(t, cmdID, cmds[0].(map[string]any)["id"])
	probe := cmds[1].(map[string]any)
	assert.Equal(t, "diagnose", probe["action"])
	assert.Equal(t, svcID, probe["params"].(map[string]any)["serviceId"])
	assert.Equal(t, "delivered", h.must(200, "GET", "/v1/agents/"+agentID+"/commands/"+cmdID, h.admin, nil).data()["status"])
	assert.Equal(t, "auto", h.must(200, "GET", "/v1/services/"+svcID, h.admin, nil).str("protocol"))
	h.report(edgeTok, []string{agentID}, map[string]any{"commandResults": []any{map[string]any{
		"commandId": cmdID, "agentId": agentID, "ok": true, "result": map[string]any{"services": 1}}, map[string]any{
		"commandId": probe["id"], "agentId": agentID, "ok": true, "result": map[string]any{"status": "ok", "message": "reachable",
			"tcp": map[string]any{"status": "ok"}, "http": map[string]any{"status": "ok", "statusCode": 200}}}}})
	assert.Equal(t, "http", h.must(200, "GET", "/v1/services/"+svcID, h.admin, nil).str("protocol"), "detected")
	g = h.must(200, "GET", "/v1/agents/"+agentID+"/commands/"+cmdID, h.admin, nil).data()
	assert.Equal(t, "succeeded", g["status"])
	assert.Equal(t, float64(1), g["result"].(map[string]any)["services"])
	assert.NotNil(t, g["completedAt"])

	// A check runs on the agent: a fake edge answers it.
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		deadline := time.Now().Add(5 * time.Second)
		for time.Now().Before(deadline) {
			r := h.req("GET", "/v1/edges/agent-inbox?agentId="+agentID, "", nil, "Authorization", "Bearer "+edgeTok)
			cmds, _ := r.data()["commands"].([]any)
			if len(cmds) == 0 {
				time.Sleep(20 * time.Millisecond)
				continue
			}
			c := cmds[0].(map[string]any)
			res := map[string]any{"dns": map[string]any{"status": "ok", "addresses": []string{"127.0.0.1"}}, "tcp": map[string]any{"status": "ok", "latencyMs": 0.4},
				"tls": nil, "http": map[string]any{"status": "ok", "statusCode": 200, "latencyMs": 2}, "status": "ok", "message": "reachable"}
			b, _ := json.Marshal(map[string]any{"agents": []string{agentID}, "commandResults": []any{map[string]any{"commandId": c["id"], "agentId": agentID, "ok": true, "result": res}}})
			h.req("POST", "/v1/edges/report", "", string(b), "Authorization", "Bearer "+edgeTok)
			return
		}
	}()
	d := h.must(200, "POST", "/v1/services/"+svcID+"/check", h.admin, nil).data()
	wg.Wait()
	assert.Equal(t, "agent", d["perspective"])
	assert.Equal(t, "ok", d["status"])
	assert.Equal(t, "reachable", d["message"])
	assert.Equal(t, float64(200), d["http"].(map[string]any)["statusCode"])
	assert.Nil(t, d["tls"])
	require.Eventually(t, func() bool {
		return len(h.must(200, "GET", "/v1/services/"+svcID+"/diagnostics", h.admin, nil).list()) == 2 // the probe's and this one
	}, 2*time.Second, 20*time.Millisecond)
	sv := h.must(200, "GET", "/v1/services/"+svcID, h.admin, nil).data()
	assert.Equal(t, "ok", sv["status"])
	assert.Equal(t, "reachable", sv["lastDiagnostic"].(map[string]any)["message"])
	h.assertError(h.req("POST", "/v1/services/"+svcID+"/reach", h.admin, map[string]any{"sourceAgentId": "x"}), 400)
	h.assertError(h.req("POST", "/v1/services/"+svcID+"/reach", h.admin, map[string]any{"sourceAgentId": agentID, "timeoutMs": 10}), 400)
}

func TestServicePatchPublicHealth(t *testing.T) {
	h := newHarness(t)
	h.edge("e")
	svcID, agentID := h.service(h.admin, "web")
	other := h.must(201, "POST", "/v1/services/register", h.admin, map[string]any{"agentId": agentID, "name": "api", "targetHost": "h", "targetPort": 1}).str("id")

	r := h.must(200, "PATCH", "/v1/services/"+svcID, h.admin, map[string]any{"targetPort": 9100, "protocol": "https"})
	assert.Equal(t, float64(9100), r.data()["targetPort"])
	h.assertError(h.req("PATCH", "/v1/services/"+svcID, h.admin, map[string]any{"name": "api"}), 409)
	h.assertError(h.req("PATCH", "/v1/services/"+svcID, h.admin, map[string]any{"targetPort": 0}), 400)

	p := h.must(200, "PATCH", "/v1/services/"+svcID+"/public", h.admin, map[string]any{"isPublic": true, "subdomain": "my-web"}).data()
	assert.Equal(t, true, p["isPublic"])
	assert.Equal(t, "my-web", p["subdomain"])
	assert.Equal(t, "http://my-web.localhost:8080", p["publicUrl"])
	h.assertError(h.req("PATCH", "/v1/services/"+other+"/public", h.admin, map[string]any{"isPublic": true, "subdomain": "my-web"}), 409)
	h.assertError(h.req("PATCH", "/v1/services/"+other+"/public", h.admin, map[string]any{"isPublic": true, "subdomain": "UP"}), 400)
	h.assertError(h.req("PATCH", "/v1/services/"+other+"/public", h.admin, map[string]any{}), 400)
	auto := h.must(200, "PATCH", "/v1/services/"+other+"/public", h.admin, map[string]any{"isPublic": true}).data()
	assert.Equal(t, "api", auto["subdomain"])
	h.must(200, "PATCH", "/v1/services/"+svcID+"/public", h.admin, map[string]any{"isPublic": false})
	h.must(200, "PATCH", "/v1/services/"+other+"/public", h.admin, map[string]any{"isPublic": true, "subdomain": "my-web"})

	hc := h.must(200, "PATCH", "/v1/services/"+svcID+"/health-config", h.admin, map[string]any{"enabled": true, "intervalSeconds": 30}).data()
	assert.Equal(t, true, hc["enabled"])
	assert.Equal(t, float64(30), hc["intervalSeconds"])
	h.assertError(h.req("PATCH", "/v1/services/"+svcID+"/health-config", h.admin, map[string]any{"intervalSeconds": 5}), 400)
}

func TestTunnels(t *testing.T) {
	h := newHarness(t)
	_, edgeTok := h.edge("e")
	agentID, _ := h.agent(h.admin)
	r := h.must(201, "POST", "/v1/tunnels", h.admin, map[string]any{"target": "localhost:5432", "agentId": agentID})
	tv := r.data()
	assert.Equal(t, "postgres", tv["name"])
	assert.Equal(t, "offline", tv["status"])
	id := tv["id"].(string)
	for _, f := range []string{"id", "name", "status", "protocol", "targetHost", "targetPort", "tunnelPort", "isPublic", "publicUrl", "agentId", "agentOnline", "edges", "activeConnections", "bytesIn", "bytesOut", "createdAt"} {
		assert.Contains(t, tv, f)
	}
	r = h.must(201, "POST", "/v1/tunnels", h.admin, map[string]any{"target": map[string]any{"host": "10.0.0.5", "port": 7777}, "agentId": agentID})
	assert.Equal(t, "service-7777", r.str("name"))
	h.assertError(h.req("POST", "/v1/tunnels", h.admin, map[string]any{"target": "localhost:5432", "agentId": agentID}), 409)
	for _, bad := range []map[string]any{
		{"agentId": agentID}, {"target": "nocolon", "agentId": agentID}, {"target": map[string]any{"host": "h", "port": 0}, "agentId": agentID},
		{"target": map[string]any{"host": "h", "port": 1, "x": 1}, "agentId": agentID}, {"target": 5, "agentId": agentID},
	} {
		h.assertError(h.req("POST", "/v1/tunnels", h.admin, bad), 400)
	}

	// Edges report times to the nanosecond; the API gives milliseconds.
	started := time.Date(2026, 11, 28, 1, 2, 3, 456789123, time.UTC)
	h.report(edgeTok, []string{agentID}, map[string]any{"connections": []any{
		map[string]any{"id": "c2", "serviceId": id, "kind": "tcp", "clientIp": "192.0.2.2", "startedAt": started.Add(time.Second).Format(time.RFC3339Nano), "bytesIn": 1, "bytesOut": 2},
		map[string]any{"id": "c1", "serviceId": id, "kind": "tcp", "clientIp": "192.0.2.1", "startedAt": started.Format(time.RFC3339Nano), "bytesIn": 10, "bytesOut": 20},
		map[string]any{"id": "c3", "serviceId": id, "kind": "tcp", "clientIp": "192.0.2.3", "startedAt": started.Add(2 * time.Second).Format(time.RFC3339Nano), "bytesIn": 0, "bytesOut": 0},
	}})
	tv = h.must(200, "GET", "/v1/tunnels/"+id, h.admin, nil).data()
	assert.Equal(t, "active", tv["status"])
	assert.Equal(t, float64(3), tv["activeConnections"])
	assert.Equal(t, float64(22), tv["bytesOut"])
	conns := h.must(200, "GET", "/v1/tunnels/"+id+"/connections", h.admin, nil).list()
	require.Len(t, conns, 3)
	assert.Equal(t, "192.0.2.1", conns[0].(map[string]any)["clientIp"], "oldest first")
	assert.Equal(t, "2026-11-28T01:02:03.456Z", conns[0].(map[string]any)["startedAt"])
	assert.Equal(t, conns, pages(h, "/v1/tunnels/"+id+"/connections", 2))

	tv = h.must(200, "PATCH", "/v1/tunnels/"+id, h.admin, map[string]any{"status": "paused"}).data()
	assert.Equal(t, "paused", tv["status"])
	h.assertError(h.req("PATCH", "/v1/tunnels/"+id, h.admin, map[string]any{"status": "stopped"}), 400)
	tv = h.must(200, "PATCH", "/v1/tunnels/"+id, h.admin, map[string]any{"status": "active", "name": "pg"}).data()
	assert.Equal(t, "active", tv["status"])
	assert.Equal(t, "pg", tv["name"])
	sh := h.must(201, "POST", "/v1/tunnels/"+id+"/share", h.admin, map[string]any{"name": "s"})
	assert.Contains(t, sh.str("shareUrl"), "/shared/")
	assert.Len(t, h.must(200, "GET", "/v1/tunnels", h.admin, nil).list(), 2)
	h.must(200, "DELETE", "/v1/tunnels/"+id, h.admin, nil)
	h.assertError(h.req("GET", "/v1/tunnels/"+id, h.admin, nil), 404)
}

func TestExpiredAgentToken(t *testing.T) {
	h := newHarness(t)
	id, token := h.agent(h.admin)
	// Age the token in the store.
	require.NoError(t, h.kv.Update(context.Background(), func(tx store.Tx) error {
		ag, err := store.GetAgent(tx, h.ws, id)
		if err != nil {
			return err
		}
		ag.TokenExpiresAt = time.Now().Add(-time.Second)
		return store.PutAgent(tx, ag)
	}))
	r := h.req("POST", "/v1/agents/heartbeat", "", map[string]any{"agentId": id, "token": token})
	h.assertError(r, 401)
	assert.Contains(t, r.Body["message"], "expired")
	logs := h.must(200, "GET", "/v1/agents/"+id+"/audit-logs", h.admin, nil).list()
	assert.Equal(t, "EXPIRED", logs[0].(map[string]any)["event"])
}

// TestWorkspaceLimits: limits come from POST /v1/workspaces or the control
// plane's defaults; past them, creating a service or a share answers 403
// and stores nothing; revoked shares and deleted services free their place.
func TestWorkspaceLimits(t *testing.T) {
	h := newHarness(t, func(c *control.Config) { c.WorkspaceLimits = control.WorkspaceLimits{MaxServices: 5, MaxShares: 7} })
	keyOf := func(r resp) string { return r.data()["apiKey"].(map[string]any)["key"].(string) }

	// Defaults apply when the request names no limit; 0 lifts one.
	dflt := keyOf(h.must(201, "POST", "/v1/workspaces", h.admin, map[string]any{"name": "dflt"}))
	lim := h.must(200, "GET", "/v1/workspace", dflt, nil).data()["limits"].(map[string]any)
	assert.Equal(t, map[string]any{"maxServices": float64(5), "maxShares": float64(7)}, lim)
	open := keyOf(h.must(201, "POST", "/v1/workspaces", h.admin, map[string]any{"name": "open", "maxServices": 0, "maxShares": 0}))
	lim = h.must(200, "GET", "/v1/workspace", open, nil).data()["limits"].(map[string]any)
	assert.Equal(t, map[string]any{"maxServices": nil, "maxShares": nil}, lim)
	for _, bad := range []map[string]any{
		{"name": "x", "maxServices": -1}, {"name": "x", "maxShares": "2"}, {"name": "x", "maxShares": 1.5}, {"name": "x", "maxServices": 2_000_000},
	} {
		h.assertError(h.req("POST", "/v1/workspaces", h.admin, bad), 400)
	}

	key := keyOf(h.must(201, "POST", "/v1/workspaces", h.admin, map[string]any{"name": "small", "maxServices": 2, "maxShares": 2}))
	s1, ag := h.service(key, "one")
	h.service(key, "two")
	r := h.req("POST", "/v1/services/register", key, map[string]any{"agentId": ag, "name": "three", "targetHost": "127.0.0.1", "targetPort": 9001})
	h.assertError(r, 403)
	assert.Contains(t, string(r.Raw), "at most 2 services")
	// Re-registering an existing service is an update, not a new one.
	h.must(200, "POST", "/v1/services/register", key, map[string]any{"agentId": ag, "name": "one", "targetHost": "127.0.0.1", "targetPort": 9002})
	h.assertError(h.req("POST", "/v1/tunnels", key, map[string]any{"agentId": ag, "target": "127.0.0.1:9003"}), 403)
	assert.Equal(t, float64(2), h.must(200, "GET", "/v1/workspace", key, nil).data()["usage"].(map[string]any)["services"])

	sh1 := h.must(201, "POST", "/v1/services/"+s1+"/shares", key, map[string]any{"name": "a"}).str("id")
	h.must(201, "POST", "/v1/services/"+s1+"/shares", key, map[string]any{"name": "b"})
	r = h.req("POST", "/v1/services/"+s1+"/shares", key, map[string]any{"name": "c"})
	h.assertError(r, 403)
	assert.Contains(t, string(r.Raw), "at most 2 active shares")
	assert.Len(t, h.must(200, "GET", "/v1/services/"+s1+"/shares", key, nil).list(), 2, "the refused share was not stored")
	h.must(200, "DELETE", "/v1/shares/"+sh1, key, nil)
	h.must(201, "POST", "/v1/services/"+s1+"/shares", key, map[string]any{"name": "c"})

	// The default workspace has no limit, whatever the defaults.
	for i := 0; i < 6; i++ {
		h.service(h.admin, fmt.Sprintf("svc-%d", i))
	}
}

// TestAgentHandshakeKeys: a token issued by the control plane is kept as
// its SHA-256 plus the public half of the tunnel handshake key derived from
// it; edges are sent only that public key. A record from before tunnel
// protocol 2 (no public key) is still sent its token hash, and gets its
// public key when the agent registers again with its token.
func TestAgentHandshakeKeys(t *testing.T) {
	ctx := context.Background()
	h := newHarness(t)
	id, token := h.agent(h.admin)
	var ag *store.Agent
	require.NoError(t, h.kv.View(ctx, func(tx store.Tx) (err error) {
		ag, err = store.GetAgent(tx, h.ws, id)
		return err
	}))
	pub := tunnel.AgentPublicKey(token)
	assert.Equal(t, hex.EncodeToString(pub[:]), ag.PublicKey)
	cfg := push.AgentConfig(ag)
	assert.Equal(t, ag.PublicKey, cfg.PublicKey)
	assert.Empty(t, cfg.TokenHash, "edges get no token hash for a protocol 2 token")

	// A legacy record: no public key. Edges get its token hash; registering
	// with the token derives the public key.
	ag.PublicKey = ""
	require.NoError(t, h.kv.Update(ctx, func(tx store.Tx) error { return store.PutAgent(tx, ag) }))
	assert.Equal(t, ag.TokenHash, push.AgentConfig(ag).TokenHash)
	h.must(201, "POST", "/v1/agents/register", h.admin, map[string]any{"agentId": id, "token": token}) // an upsert: 201 as api-v1.md says
	require.NoError(t, h.kv.View(ctx, func(tx store.Tx) (err error) {
		ag, err = store.GetAgent(tx, ag.WorkspaceID, id)
		return err
	}))
	assert.Equal(t, hex.EncodeToString(pub[:]), ag.PublicKey)

	// Rotation issues a new key pair.
	newTok := h.must(200, "POST", "/v1/agents/rotate-token", "", map[string]any{"agentId": id, "currentToken": token}).str("token")
	require.NoError(t, h.kv.View(ctx, func(tx store.Tx) (err error) {
		ag, err = store.GetAgent(tx, ag.WorkspaceID, id)
		return err
	}))
	pub = tunnel.AgentPublicKey(newTok)
	assert.Equal(t, hex.EncodeToString(pub[:]), ag.PublicKey)
}

// TestShareUsesCountEveryAllowedRequest: a share's accessCount counts the
// edge's shareUses, every allowed request, while the access logs (bounded
// on the edge) may be a sample; an edge that sends no shareUses is counted
// from its allowed logs, as before.
func TestShareUsesCountEveryAllowedRequest(t *testing.T) {
	h := newHarness(t)
	_, edgeTok := h.edge("e1")
	svcID, _ := h.service(h.admin, "svc")
	shareID := h.must(201, "POST", "/v1/services/"+svcID+"/shares", h.admin, map[string]any{"name": "s"}).data()["id"].(string)
	at := time.Now().UTC().Add(-time.Minute).Truncate(time.Second)
	logEntry := func(decision string, at time.Time) map[string]any {
		return map[string]any{"shareId": shareID, "at": at, "ip": "192.0.2.1", "method": "GET", "path": "/", "statusCode": 200,
			"latencyMs": 1, "bytesOut": 1, "decision": decision}
	}
	h.report(edgeTok, nil, map[string]any{
		"accessLogs": []any{logEntry("allowed", at), logEntry("allowed", at)},
		"shareUses": []any{
			map[string]any{"shareId": shareID, "allowed": 12000, "lastAccessAt": at.Add(time.Second)},
			map[string]any{"shareId": shareID, "allowed": -5, "lastAccessAt": at.Add(time.Hour)}, // ignored
			map[string]any{"shareId": "unknown-share", "allowed": 3, "lastAccessAt": at},
		}})
	sh := h.must(200, "GET", "/v1/shares/"+shareID, h.admin, nil).data()
	assert.Equal(t, float64(12000), sh["accessCount"])
	assert.Equal(t, at.Add(time.Second).Format(time.RFC3339), sh["lastAccessedAt"])
	assert.Len(t, h.must(200, "GET", "/v1/shares/"+shareID+"/logs", h.admin, nil).list(), 2, "the logs are the sample the edge sent")

	// An edge without shareUses: its allowed logs count.
	h.report(edgeTok, nil, map[string]any{"accessLogs": []any{logEntry("allowed", at), logEntry("denied", at), logEntry("allowed", at)}})
	assert.Equal(t, float64(12002), h.must(200, "GET", "/v1/shares/"+shareID, h.admin, nil).data()["accessCount"])
}

// TestShareStatsCountEveryRequest: an edge above its access log rate sends
// a sample of the logs and statistics that count every request; the share's
// stats are the edge's counts, its logs the sample. A report's statistics
// no edge could count (negative, latency buckets out of range) are ignored;
// an edge that sends no shareStats is counted from its logs, as before.
func TestShareStatsCountEveryRequest(t *testing.T) {
	h := newHarness(t)
	_, edgeTok := h.edge("e1")
	svcID, _ := h.service(h.admin, "svc")
	shareID := h.must(201, "POST", "/v1/services/"+svcID+"/shares", h.admin, map[string]any{"name": "s"}).data()["id"].(string)
	minute := time.Now().UTC().Add(-5 * time.Minute).Truncate(time.Minute)
	logEntry := func(decision string, status int) map[string]any {
		return map[string]any{"shareId": shareID, "at": minute.Add(10 * time.Second), "ip": "192.0.2.1", "method": "GET", "path": "/",
			"statusCode": status, "latencyMs": 3, "bytesOut": 7, "decision": decision}
	}
	counts := func(m int64, allowed, denied int64) map[string]any {
		return map[string]any{"shareId": shareID, "minute": m, "allowed": allowed, "denied": denied,
			"allowedBytes": allowed * 7, "deniedBytes": denied, "allowedByStatus": map[string]int64{"200": allowed},
			"deniedByStatus": map[string]int64{"403": denied}, "deniedBy": map[string]int64{"ip-allowlist": denied},
			"latency":       map[string]any{"counts": map[string]int64{"15": allowed + denied}, "min": 3, "max": 3},
			"firstAccessAt": minute, "lastAccessAt": minute.Add(59 * time.Second)}
	}
	m := minute.Unix() / 60
	unknown := counts(m, 1, 1)
	unknown["shareId"] = "unknown-share"
	h.report(edgeTok, nil, map[string]any{
		"accessLogs": []any{logEntry("allowed", 200), logEntry("denied", 403)},
		"shareUses":  []any{map[string]any{"shareId": shareID, "allowed": 12000 + 3000, "lastAccessAt": minute}},
		"shareStats": []any{counts(m, 12000, 400), counts(m+1, 3000, 0),
			map[string]any{"shareId": shareID, "minute": m, "allowed": -5},                                                                  // ignored
			map[string]any{"shareId": shareID, "minute": m, "allowed": 1, "latency": map[string]any{"counts": map[string]int64{"9999": 1}}}, // ignored
			counts(m+600, 5, 0), // ignored: ten hours ahead
			unknown},
	})
	st := h.must(200, "GET", "/v1/shares/"+shareID+"/stats", h.admin, nil).data()
	assert.Equal(t, float64(15400), st["requests"])
	assert.Equal(t, float64(15000), st["allowed"])
	assert.Equal(t, float64(400), st["denied"])
	assert.Equal(t, float64(15000*7+400), st["bytesOut"])
	assert.Equal(t, map[string]any{"200": float64(15000), "403": float64(400)}, st["byStatus"])
	assert.Equal(t, float64(3), st["p99LatencyMs"])
	require.Len(t, st["byMinute"], 2)
	assert.Equal(t, float64(12400), st["byMinute"].([]any)[0].(map[string]any)["requests"])
	assert.Len(t, h.must(200, "GET", "/v1/shares/"+shareID+"/logs", h.admin, nil).list(), 2, "the logs are the sample the edge sent")

	// An edge without shareStats: its logs count.
	h.report(edgeTok, nil, map[string]any{"accessLogs": []any{logEntry("allowed", 200), logEntry("denied", 403), logEntry("allowed", 200)}})
	st = h.must(200, "GET", "/v1/shares/"+shareID+"/stats", h.admin, nil).data()
	assert.Equal(t, float64(15403), st["requests"])
	assert.Equal(t, float64(401), st["denied"])
}

// TestReportChunksCountOnce: a share whose logs span several storage
// transactions (more than accessChunk) between two other shares' is stored
// whole and counted once: from the edge's statistics when the report has
// them (which go with the first chunk only), from every chunk's records
// when it has none.
func TestReportChunksCountOnce(t *testing.T) {
	h := newHarness(t)
	_, edgeTok := h.edge("e1")
	svcID, _ := h.service(h.admin, "svc")
	var ids []string
	for _, name := range []string{"before", "big", "after"} {
		ids = append(ids, h.must(201, "POST", "/v1/services/"+svcID+"/shares", h.admin, map[string]any{"name": name}).data()["id"].(string))
	}
	at := time.Now().UTC().Add(-3 * time.Minute).Truncate(time.Minute)
	logsOf := func(id string, n int) []any {
		out := make([]any, n)
		for i := range out {
			out[i] = map[string]any{"shareId": id, "at": at.Add(time.Duration(i) * time.Millisecond), "ip": "192.0.2.1", "method": "GET",
				"path": "/", "statusCode": 200, "latencyMs": 1, "bytesOut": 1, "decision": "allowed"}
		}
		return out
	}
	const big = 1200 // over two of accessChunk (500)
	var logs []any
	logs = append(logs, logsOf(ids[0], 3)...)
	logs = append(logs, logsOf(ids[1], big)...)
	logs = append(logs, logsOf(ids[2], 4)...)
	stats := []any{}
	for i, n := range []int64{3, 5000, 4} {
		stats = append(stats, map[string]any{"shareId": ids[i], "minute": at.Unix() / 60, "allowed": n,
			"latency": map[string]any{"counts": map[string]int64{"1": n}}})
	}
	requests := func(id string) float64 {
		return h.must(200, "GET", "/v1/shares/"+id+"/stats", h.admin, nil).data()["requests"].(float64)
	}
	h.report(edgeTok, nil, map[string]any{"accessLogs": logs, "shareStats": stats})
	assert.Equal(t, []float64{3, 5000, 4}, []float64{requests(ids[0]), requests(ids[1]), requests(ids[2])}, "the edge's counts, once")
	// An edge that sends no statistics: every chunk's records count.
	h.report(edgeTok, nil, map[string]any{"accessLogs": logs})
	assert.Equal(t, []float64{6, 5000 + big, 8}, []float64{requests(ids[0]), requests(ids[1]), requests(ids[2])}, "the records, once")
	n := 0
	for cursor := ""; ; {
		r := h.must(200, "GET", "/v1/shares/"+ids[1]+"/logs?limit=500&cursor="+cursor, h.admin, nil)
		n += len(r.list())
		if cursor = r.Header.Get("X-Next-Cursor"); cursor == "" {
			break
		}
	}
	assert.Equal(t, 2*big, n, "every record stored")
}

// failMinutesKV fails, while on, every write of a share's per-minute
// statistics: the access-log transaction of a report fails, the rest of
// the report does not.
type failMinutesKV struct {
	store.KV
	on *atomic.Bool
}

func (k failMinutesKV) Update(ctx context.Context, fn func(store.Tx) error) error {
	return k.KV.Update(ctx, func(tx store.Tx) error {
		if k.on.Load() {
			tx = failMinutesTx{tx}
		}
		return fn(tx)
	})
}

type failMinutesTx struct{ store.Tx }

func (t failMinutesTx) PutTTL(k, v []byte, ttl time.Duration) error {
	if bytes.Contains(k, []byte("/amin/")) {
		return errors.New("disk full")
	}
	return t.Tx.PutTTL(k, v, ttl)
}

// failingMinutes is a harness whose writes of share statistics fail while
// failing is on, an edge (id, token) and a share.
func failingMinutes(t *testing.T) (h *harness, failing *atomic.Bool, edgeID, edgeTok, shareID string) {
	failing = new(atomic.Bool)
	h = newHarness(t, func(c *control.Config) { c.Store = failMinutesKV{KV: c.Store, on: failing} })
	edgeID, edgeTok = h.edge("e1")
	svcID, _ := h.service(h.admin, "svc")
	shareID = h.must(201, "POST", "/v1/services/"+svcID+"/shares", h.admin, map[string]any{"name": "s"}).data()["id"].(string)
	return h, failing, edgeID, edgeTok, shareID
}

// TestShareStatsNotStoredAreCounted: a report without an id (an edge before
// them) whose statistics cannot be written is still taken (sending it again
// would count its stored parts twice), and the requests they counted and
// the logs are counted as dropped.
func TestShareStatsNotStoredAreCounted(t *testing.T) {
	h, failing, _, edgeTok, shareID := failingMinutes(t)
	at := time.Now().UTC().Add(-time.Minute)
	failing.Store(true)
	h.report(edgeTok, nil, map[string]any{
		"accessLogs": []any{map[string]any{"shareId": shareID, "at": at, "ip": "192.0.2.1", "method": "GET", "path": "/",
			"statusCode": 200, "latencyMs": 1, "bytesOut": 1, "decision": "allowed"}},
		"shareStats": []any{map[string]any{"shareId": shareID, "minute": at.Unix() / 60, "allowed": 7, "denied": 2,
			"latency": map[string]any{"counts": map[string]int64{"1": 9}}}},
	})
	failing.Store(false)
	fams := scrape(t, h)
	assert.Equal(t, float64(9), value(fams, "pc_control_share_stats_dropped_total", nil))
	assert.Equal(t, float64(1), value(fams, "pc_control_access_logs_dropped_total", map[string]string{"reason": "store"}))
	assert.Equal(t, float64(0), h.must(200, "GET", "/v1/shares/"+shareID+"/stats", h.admin, nil).data()["requests"])
}

// TestIdentifiedReportNotStoredFails: a report with an id whose access logs
// and statistics cannot be written fails (the edge sends it again) instead
// of dropping them; sent again once the store works, it counts once.
func TestIdentifiedReportNotStoredFails(t *testing.T) {
	h, failing, edgeID, edgeTok, shareID := failingMinutes(t)
	at := time.Now().UTC().Add(-time.Minute)
	rep := map[string]any{"reportId": "R1", "configEpoch": "", "configVersion": 0, "agents": nil, "dropped": 3,
		"accessLogs": []any{map[string]any{"shareId": shareID, "at": at, "ip": "192.0.2.1", "method": "GET", "path": "/",
			"statusCode": 200, "latencyMs": 1, "bytesOut": 1, "decision": "allowed"}},
		"shareStats": []any{map[string]any{"shareId": shareID, "minute": at.Unix() / 60, "allowed": 7, "denied": 2,
			"latency": map[string]any{"counts": map[string]int64{"1": 9}}}},
		"shareUses": []any{map[string]any{"shareId": shareID, "allowed": 7, "last": at}},
	}
	failing.Store(true)
	r := h.req("POST", "/v1/edges/report", "", rep, "Authorization", "Bearer "+edgeTok)
	assert.GreaterOrEqual(t, r.Status, 500, "%s", r.Raw)
	failing.Store(false)
	h.report(edgeTok, nil, rep)
	h.report(edgeTok, nil, rep) // its answer lost: once more
	fams := scrape(t, h)
	assert.Equal(t, float64(0), value(fams, "pc_control_share_stats_dropped_total", nil))
	assert.Equal(t, float64(0), value(fams, "pc_control_access_logs_dropped_total", map[string]string{"reason": "store"}))
	assert.Equal(t, float64(3), value(fams, "pc_control_edge_report_dropped_total", map[string]string{"edge": edgeID}), "the edge's dropped count, once")
	assert.Equal(t, float64(9), h.must(200, "GET", "/v1/shares/"+shareID+"/stats", h.admin, nil).data()["requests"])
	assert.Equal(t, float64(7), h.must(200, "GET", "/v1/shares/"+shareID, h.admin, nil).data()["accessCount"])
	assert.Len(t, h.must(200, "GET", "/v1/shares/"+shareID+"/logs", h.admin, nil).list(), 1)
}

// GET /v1/api-keys lists active keys: an expired one is left out, as a
// revoked one is.
func TestExpiredKeysAreNotListed(t *testing.T) {
	h := newHarness(t)
	id := h.must(201, "POST", "/v1/api-keys", h.admin, map[string]any{"name": "short-lived"}).str("id")
	require.Len(t, h.must(200, "GET", "/v1/api-keys", h.admin, nil).list(), 2)
	require.NoError(t, h.kv.Update(context.Background(), func(tx store.Tx) error {
		k, err := store.GetAPIKey(tx, h.ws, id)
		if err != nil {
			return err
		}
		past := time.Now().Add(-time.Second)
		k.ExpiresAt = &past
		return store.PutAPIKey(tx, k)
	}))
	list := h.must(200, "GET", "/v1/api-keys", h.admin, nil).list()
	require.Len(t, list, 1)
	assert.NotEqual(t, id, list[0].(map[string]any)["id"])
}

// Protocol detection probes a target once per connection storm (an agent
// connects to every edge), and a probe of a target the service has since
// left does not decide its protocol.
func TestAutoDetectionGuards(t *testing.T) {
	h := newHarness(t)
	_, edgeTok := h.edge("e")
	svcID, agentID := h.service(h.admin, "web")
	h.report(edgeTok, []string{agentID})
	cmds := h.inbox(edgeTok, agentID)["commands"].([]any)
	require.Len(t, cmds, 1)
	probe := cmds[0].(map[string]any)
	// The agent reconnects (another edge, a restart): no second probe.
	h.report(edgeTok, []string{})
	h.report(edgeTok, []string{agentID})
	assert.Empty(t, h.inbox(edgeTok, agentID)["commands"])
	// The service moves before the probe's answer: the answer is about
	// the old target.
	h.must(200, "PATCH", "/v1/services/"+svcID, h.admin, map[string]any{"targetPort": 5432})
	// The new target is probed at once (the agent is connected).
	moved := h.inbox(edgeTok, agentID)["commands"].([]any)
	require.Len(t, moved, 1)
	assert.Equal(t, float64(5432), moved[0].(map[string]any)["params"].(map[string]any)["targetPort"])
	h.report(edgeTok, []string{agentID}, map[string]any{"commandResults": []any{map[string]any{
		"commandId": probe["id"], "agentId": agentID, "ok": true, "result": map[string]any{"status": "ok", "message": "reachable",
			"tcp": map[string]any{"status": "ok"}, "http": map[string]any{"status": "ok", "statusCode": 200}}}}})
	require.Eventually(t, func() bool {
		return len(h.must(200, "GET", "/v1/services/"+svcID+"/diagnostics", h.admin, nil).list()) == 1
	}, 2*time.Second, 20*time.Millisecond)
	assert.Equal(t, "auto", h.must(200, "GET", "/v1/services/"+svcID, h.admin, nil).str("protocol"))
}

// A service's name taken by another agent: registering it moves the service
// only while that agent is offline; a connected one keeps it (409), with
// its share links.
func TestRegisterServiceOfAConnectedAgent(t *testing.T) {
	h := newHarness(t)
	_, edgeTok := h.edge("e1")
	svcID, owner := h.service(h.admin, "web")
	other, _ := h.agent(h.admin)
	body := map[string]any{"agentId": other, "name": "web", "targetHost": "127.0.0.1", "targetPort": 9001}

	h.report(edgeTok, []string{owner})
	r := h.req("POST", "/v1/services/register", h.admin, body)
	h.assertError(r, 409)
	msg, _ := r.Body["message"].(string)
	assert.Contains(t, msg, owner)
	assert.Contains(t, msg, "connected")
	s := h.must(200, "GET", "/v1/services/"+svcID, h.admin, nil).data()
	assert.Equal(t, owner, s["agentId"], "unchanged")
	assert.Equal(t, float64(9000), s["targetPort"])
	// Its own agent still updates it, connected or not.
	h.must(200, "POST", "/v1/services/register", h.admin, map[string]any{"agentId": owner, "name": "web", "targetHost": "127.0.0.1", "targetPort": 9002})

	h.report(edgeTok, []string{})
	s = h.must(200, "POST", "/v1/services/register", h.admin, body).data()
	assert.Equal(t, other, s["agentId"], "an offline agent's service moves")
	assert.Equal(t, svcID, s["id"])
}

// Presence lives in memory: just after the control plane starts, an agent
// reads as offline until its edge reports. TestRegisterWhilePresenceSettles:
// meanwhile another agent's register of the name does not move the service
// (409, with when to retry), and does once every edge has reported.
func TestRegisterWhilePresenceSettles(t *testing.T) {
	h := newHarness(t)
	_, tok1 := h.edge("e1")
	_, tok2 := h.edge("e2")
	svcID, owner := h.service(h.admin, "web")
	other, _ := h.agent(h.admin)
	body := map[string]any{"agentId": other, "name": "web", "targetHost": "127.0.0.1", "targetPort": 9001}

	h.report(tok1, []string{})
	r := h.req("POST", "/v1/services/register", h.admin, body)
	h.assertError(r, 409)
	msg, _ := r.Body["message"].(string)
	assert.Contains(t, msg, owner)
	assert.Contains(t, msg, "retry in")
	assert.Equal(t, owner, h.must(200, "GET", "/v1/services/"+svcID, h.admin, nil).data()["agentId"], "unchanged")
	// Its own agent is not held up.
	h.must(200, "POST", "/v1/services/register", h.admin, map[string]any{"agentId": owner, "name": "web", "targetHost": "127.0.0.1", "targetPort": 9002})

	h.report(tok2, []string{})
	s := h.must(200, "POST", "/v1/services/register", h.admin, body).data()
	assert.Equal(t, other, s["agentId"], "every edge reported: the offline agent's service moves")
}

// A new share's link names an edge that is online: the oldest of them, not
// the oldest edge when that one is down.
func TestShareURLNamesAnOnlineEdge(t *testing.T) {
	h := newHarness(t)
	h.must(201, "POST", "/v1/edges", h.admin, map[string]any{"name": "old", "publicUrl": "http://127.0.0.1:8081", "tunnelAddr": "127.0.0.1:7071"})
	tok := h.must(201, "POST", "/v1/edges", h.admin, map[string]any{"name": "new", "publicUrl": "http://127.0.0.1:8082", "tunnelAddr": "127.0.0.1:7072"}).str("token")
	svcID, _ := h.service(h.admin, "web")
	h.report(tok, []string{})
	sh := h.must(201, "POST", "/v1/services/"+svcID+"/shares", h.admin, map[string]any{"name": "s"})
	assert.True(t, strings.HasPrefix(sh.str("shareUrl"), "http://127.0.0.1:8082/shared/"), sh.str("shareUrl"))
}

// TestReleasedSubdomainStaysWithItsWorkspace: a public subdomain a workspace
// releases (made private, or its service deleted) is not handed to another
// workspace at once: browsers still hold the cookies its service set for
// <subdomain>.<domain>, and its users still follow its links, which would
// all go to the other workspace's service. The workspace that held it gets
// it back at once.
func TestReleasedSubdomainStaysWithItsWorkspace(t *testing.T) {
	h := newHarness(t)
	h.edge("e")
	svcA, agentA := h.service(h.admin, "web")
	goneA := h.must(201, "POST", "/v1/services/register", h.admin, map[string]any{"agentId": agentA, "name": "gone", "targetHost": "h", "targetPort": 1}).str("id")
	h.must(200, "PATCH", "/v1/services/"+svcA+"/public", h.admin, map[string]any{"isPublic": true, "subdomain": "app"})
	h.must(200, "PATCH", "/v1/services/"+goneA+"/public", h.admin, map[string]any{"isPublic": true, "subdomain": "gone"})
	h.must(200, "PATCH", "/v1/services/"+svcA+"/public", h.admin, map[string]any{"isPublic": false})
	h.must(200, "DELETE", "/v1/services/"+goneA, h.admin, nil)

	_, other := h.newWorkspace("tenant")
	k := other["admin"]
	svcB, agentB := h.service(k, "bweb")
	for _, sub := range []string{"app", "gone"} {
		h.assertError(h.req("PATCH", "/v1/services/"+svcB+"/public", k, map[string]any{"isPublic": true, "subdomain": sub}), 409)
	}
	// A derived subdomain avoids them too.
	for _, name := range []string{"app", "gone"} {
		r := h.must(201, "POST", "/v1/services/register", k, map[string]any{"agentId": agentB, "name": name, "targetHost": "h", "targetPort": 1, "isPublic": true})
		assert.NotEqual(t, "http://"+name+".localhost:8080", r.data()["publicUrl"], "another workspace's released subdomain %q", name)
	}
	// The workspace that released them takes them back.
	h.must(200, "PATCH", "/v1/services/"+svcA+"/public", h.admin, map[string]any{"isPublic": true, "subdomain": "app"})
	r := h.must(201, "POST", "/v1/services/register", h.admin, map[string]any{"agentId": agentA, "name": "gone", "targetHost": "h", "targetPort": 1, "isPublic": true})
	assert.Equal(t, "http://gone.localhost:8080", r.data()["publicUrl"])
}

// TestRepeatedReportCountsOnce: an edge sends a report again, with the same
// id, when it did not hear the answer; the control plane counts it once
// (share uses, statistics, access logs), another id again, and a report
// without an id (edges before them) every time it comes.
func TestRepeatedReportCountsOnce(t *testing.T) {
	h := newHarness(t)
	_, edgeTok := h.edge("e1")
	svcID, _ := h.service(h.admin, "svc")
	shareID := h.must(201, "POST", "/v1/services/"+svcID+"/shares", h.admin, map[string]any{"name": "s"}).data()["id"].(string)
	at := time.Now().UTC().Add(-time.Minute)
	report := func(id string) {
		t.Helper()
		rep := map[string]any{
			"accessLogs": []any{map[string]any{"shareId": shareID, "at": at, "ip": "192.0.2.1", "method": "GET", "path": "/",
				"statusCode": 200, "latencyMs": 1, "bytesOut": 1, "decision": "allowed"}},
			"shareStats": []any{map[string]any{"shareId": shareID, "minute": at.Unix() / 60, "allowed": 7, "denied": 2,
				"latency": map[string]any{"counts": map[string]int64{"1": 9}}}},
			"shareUses": []any{map[string]any{"shareId": shareID, "allowed": 7, "last": at}},
		}
		if id != "" {
			rep["reportId"] = id
		}
		h.report(edgeTok, nil, rep)
	}
	check := func(uses, requests float64, logs int) {
		t.Helper()
		assert.Equal(t, uses, h.must(200, "GET", "/v1/shares/"+shareID, h.admin, nil).data()["accessCount"], "accessCount")
		assert.Equal(t, requests, h.must(200, "GET", "/v1/shares/"+shareID+"/stats", h.admin, nil).data()["requests"], "requests")
		assert.Len(t, h.must(200, "GET", "/v1/shares/"+shareID+"/logs", h.admin, nil).list(), logs, "logs")
	}
	report("R1")
	report("R1")
	check(7, 9, 1)
	assert.Equal(t, float64(2), value(scrape(t, h), "pc_control_edge_report_parts_repeated_total", nil), "uses and access logs")
	report("R2")
	check(14, 18, 2)
	report("")
	report("")
	check(28, 36, 4)

	for _, id := range []string{"a/b", strings.Repeat("x", 65), "é"} {
		r := h.req("POST", "/v1/edges/report", "", map[string]any{"reportId": id, "configEpoch": "", "configVersion": 0, "agents": nil},
			"Authorization", "Bearer "+edgeTok)
		h.assertError(r, 400)
		assert.Contains(t, string(r.Raw), `"field":"reportId"`)
	}
}
