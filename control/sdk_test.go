package control_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/privateconnect/pc/control"
	"github.com/privateconnect/pc/sdk/client"
)

// TestSDKClientAgainstServer drives the real server with the project's typed
// client (sdk/client), so that the two agree on every field they share.
func TestSDKClientAgainstServer(t *testing.T) {
	e := start(t, control.Config{})
	ctx := context.Background()
	c := client.New(e.base, e.key)

	h, err := c.Health(ctx)
	require.NoError(t, err)
	assert.Equal(t, "ok", h.Status)

	edge, err := c.CreateEdge(ctx, client.CreateEdgeRequest{Name: "e1", PublicURL: "http://127.0.0.1:8080", TunnelAddr: "127.0.0.1:7070"})
	require.NoError(t, err)
	assert.NotEmpty(t, edge.Token)
	edges, _, err := c.ListEdges(ctx, client.ListOptions{})
	require.NoError(t, err)
	require.Len(t, edges, 1)

	ag, err := c.ProvisionAgent(ctx, client.ProvisionRequest{Name: "laptop"})
	require.NoError(t, err)
	require.Len(t, ag.Edges, 1)
	assert.Equal(t, "127.0.0.1:7070", ag.Edges[0].TunnelAddr)
	reg, err := c.RegisterAgent(ctx, client.RegisterAgentRequest{AgentID: ag.AgentID, Token: ag.Token, Name: "renamed"})
	require.NoError(t, err)
	assert.Equal(t, "renamed", reg.Name)
	_, err = c.AgentHeartbeat(ctx, ag.AgentID, ag.Token)
	require.NoError(t, err)

	svc, created, err := c.RegisterService(ctx, client.RegisterServiceRequest{AgentID: ag.AgentID, Name: "web", TargetHost: "127.0.0.1", TargetPort: 9000})
	require.NoError(t, err)
	assert.True(t, created)
	assert.NotZero(t, svc.TunnelPort)
	_, created, err = c.RegisterService(ctx, client.RegisterServiceRequest{AgentID: ag.AgentID, Name: "web", TargetHost: "127.0.0.1", TargetPort: 9001})
	require.NoError(t, err)
	assert.False(t, created)
	svcs, _, err := c.ListServices(ctx, client.ListOptions{Limit: 10}, client.ServiceFilter{})
	require.NoError(t, err)
	require.Len(t, svcs, 1)
	got, err := c.GetService(ctx, svc.ID)
	require.NoError(t, err)
	assert.Equal(t, 9001, got.TargetPort)

	sh, err := c.CreateShare(ctx, svc.ID, client.CreateShareRequest{Name: "demo", ExpiresIn: "1h", AllowedMethods: []string{"GET"}})
	require.NoError(t, err)
	assert.Contains(t, sh.ShareURL, "http://127.0.0.1:8080/shared/")
	assert.NotEmpty(t, sh.Token)
	info, err := c.SharedInfo(ctx, sh.Token)
	require.NoError(t, err)
	assert.Equal(t, "web", info.ServiceName)
	shares, _, err := c.ListShares(ctx, svc.ID, client.ListOptions{})
	require.NoError(t, err)
	require.Len(t, shares, 1)
	assert.True(t, shares[0].IsActive)
	name := "renamed"
	up, err := c.UpdateShare(ctx, sh.ID, client.UpdateShareRequest{Name: &name})
	require.NoError(t, err)
	assert.Equal(t, "renamed", up.Name)
	require.NoError(t, c.RevokeShare(ctx, sh.ID))
	_, err = c.SharedInfo(ctx, sh.Token)
	assert.True(t, client.IsNotFound(err))

	agents, _, err := c.ListAgents(ctx, client.ListOptions{}, client.AgentFilter{})
	require.NoError(t, err)
	require.Len(t, agents, 1)
	_, err = c.GetAgent(ctx, ag.AgentID)
	require.NoError(t, err)
	_, _, err = c.ListAgentAuditLogs(ctx, ag.AgentID, client.ListOptions{})
	require.NoError(t, err)
	_, _, err = c.ListOrchestration(ctx, client.ListOptions{})
	require.NoError(t, err)

	tun, err := c.CreateTunnel(ctx, client.CreateTunnelRequest{Target: "127.0.0.1:5432", AgentID: ag.AgentID})
	require.NoError(t, err)
	assert.Equal(t, "postgres", tun.Name)
	_, err = c.PauseTunnel(ctx, tun.ID)
	require.NoError(t, err)
	_, err = c.ResumeTunnel(ctx, tun.ID)
	require.NoError(t, err)
	_, _, err = c.ListTunnels(ctx, client.ListOptions{})
	require.NoError(t, err)
	_, _, err = c.ListTunnelConnections(ctx, tun.ID, client.ListOptions{})
	require.NoError(t, err)
	require.NoError(t, c.DeleteTunnel(ctx, tun.ID))

	k, err := c.CreateAPIKey(ctx, client.CreateAPIKeyRequest{Name: "ci", Scopes: []string{"read"}})
	require.NoError(t, err)
	_, err = c.SetAPIKeyIPRestrictions(ctx, k.ID, []string{"10.0.0.0/8"})
	require.NoError(t, err)
	keys, _, err := c.ListAPIKeys(ctx, client.ListOptions{})
	require.NoError(t, err)
	assert.Len(t, keys, 2)
	require.NoError(t, c.DeleteAPIKey(ctx, k.ID))

	ws, err := c.Workspace(ctx)
	require.NoError(t, err)
	assert.Equal(t, "default", ws.Name)
	nw, err := c.CreateWorkspace(ctx, "acme")
	require.NoError(t, err)
	_ = nw
	st, err := c.Status(ctx)
	require.NoError(t, err)
	assert.Equal(t, 1, st.Agents)
	_, _, err = c.ListAudit(ctx, client.ListOptions{}, client.AuditFilter{})
	require.NoError(t, err)

	_, err = c.DeleteAgent(ctx, ag.AgentID)
	require.NoError(t, err)
	err = c.DeleteService(ctx, svc.ID)
	assert.True(t, client.IsNotFound(err), "the agent's services went with it: %v", err)
}
