package e2e

import (
	"context"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/privateconnect/pc/internal/testenv"
	"github.com/privateconnect/pc/sdk/agent"
	"github.com/privateconnect/pc/sdk/client"
	"github.com/stretchr/testify/require"
)

// TestAgentCommandsDiagnosticsAndMessages: commands, checks and messages
// travel control → edge → agent over the tunnel and their results come back
// through the API.
func TestAgentCommandsDiagnosticsAndMessages(t *testing.T) {
	env := testenv.New(t, testenv.Options{})
	org := origin(t)
	ctx := context.Background()

	id, token, edges := env.ProvisionAgent("server")
	ag := env.RunAgent(id, token, edges)
	svc := env.Expose(ag, "web", org.URL)

	// A status command executed by the agent.
	rc, err := env.Client.SendCommand(ctx, id, client.CommandRequest{Action: "status"})
	require.NoError(t, err)
	var cmd *client.Command
	require.Eventually(t, func() bool {
		cmd, err = env.Client.GetCommand(ctx, id, rc.CommandID)
		return err == nil && cmd.Status == "succeeded"
	}, 5*time.Second, 20*time.Millisecond)
	var status map[string]any
	require.NoError(t, json.Unmarshal(cmd.Result, &status))
	require.Equal(t, id, status["agentId"])

	// A diagnostic run by the agent, from inside the private network.
	d, err := env.Client.CheckService(ctx, svc.ID)
	require.NoError(t, err)
	require.Equal(t, "agent", d.Perspective)
	require.Equal(t, "ok", d.Status, "%+v", d)
	raw, _ := json.Marshal(d)
	require.Contains(t, string(raw), `"tcp":{"status":"ok"`)
	require.Contains(t, string(raw), `"statusCode":200`)

	// The same check from another agent through the edge (reach).
	msgs := make(chan agent.Message, 4)
	id2, token2, edges2 := env.ProvisionAgent("laptop")
	env.RunAgentWith(id2, token2, edges2, func(c *agent.Config) { c.OnMessage = func(m agent.Message) { msgs <- m } })
	env.WaitAgentOnEdges(id2, 5*time.Second)
	r, err := env.Client.ReachService(ctx, svc.ID, client.ReachRequest{SourceAgentID: id2, Mode: "http"})
	require.NoError(t, err)
	require.Equal(t, "ok", r.Status, "%+v", r)

	// A message to an online agent arrives at once over its tunnel.
	_, err = env.Client.SendMessage(ctx, id, client.SendMessageRequest{ToAgentID: id2, Payload: json.RawMessage(`{"hello":"world"}`)})
	require.NoError(t, err)
	select {
	case m := <-msgs:
		require.Equal(t, id, m.FromAgentID)
		require.JSONEq(t, `{"hello":"world"}`, string(m.Payload))
	case <-time.After(5 * time.Second):
		t.Fatal("message not delivered over the tunnel")
	}

	// A command for an offline agent is queued and delivered on reconnect.
	ag.Stop()
	waitOffline(t, env, id)
	rc, err = env.Client.SendCommand(ctx, id, client.CommandRequest{Action: "status"})
	require.NoError(t, err)
	require.Equal(t, "queued", rc.Status)
	ag = env.RunAgent(id, token, edges)
	require.Eventually(t, func() bool {
		cmd, err = env.Client.GetCommand(ctx, id, rc.CommandID)
		return err == nil && cmd.Status == "succeeded"
	}, 5*time.Second, 20*time.Millisecond)

	// An offline agent's service check answers 503.
	ag.Stop()
	waitOffline(t, env, id)
	_, err = env.Client.CheckService(ctx, svc.ID)
	require.True(t, client.IsStatus(err, http.StatusServiceUnavailable), "%v", err)
}

// waitOffline waits until the API shows the agent offline.
func waitOffline(t *testing.T, env *testenv.Env, id string) {
	t.Helper()
	require.Eventually(t, func() bool {
		list, _, err := env.Client.ListAgents(context.Background(), client.ListOptions{}, client.AgentFilter{})
		if err != nil {
			return false
		}
		for _, a := range list {
			if a.ID == id {
				return !a.IsOnline
			}
		}
		return false
	}, 5*time.Second, 20*time.Millisecond)
}

// TestBadAgentCredentialsRejected: an agent with a wrong token gets a clear
// rejection (and keeps retrying with backoff); the honest agent is not
// disturbed.
func TestBadAgentCredentialsRejected(t *testing.T) {
	env := testenv.New(t, testenv.Options{})
	id, token, edges := env.ProvisionAgent("honest")
	env.RunAgent(id, token, edges)
	env.WaitAgentOnEdges(id, 5*time.Second)
	events := make(chan agent.Event, 8)
	env.RunAgentWith(id, "not-the-token", edges, func(c *agent.Config) {
		c.MinBackoff = time.Second
		c.OnEvent = func(e agent.Event) {
			select {
			case events <- e:
			default:
			}
		}
	})
	select {
	case e := <-events:
		require.Equal(t, agent.EventRejected, e.Kind)
		require.Contains(t, e.Message, "invalid agent credentials")
	case <-time.After(5 * time.Second):
		t.Fatal("no rejection event")
	}
	require.Contains(t, env.Edges[0].ConnectedAgents(), id, "the honest session stays")
}
