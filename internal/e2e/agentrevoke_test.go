package e2e

// Agent credential changes reach the edges (docs/security.md, "Token
// lifetimes"): after a token rotation the old token neither keeps its
// session nor opens a new one, and a deleted agent is disconnected and
// refused; each within the propagation bound.

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/privateconnect/pc/internal/testenv"
	"github.com/privateconnect/pc/internal/tunnel"
)

func TestAgentCredentialChangesReachTheEdge(t *testing.T) {
	if testing.Short() {
		t.Skip("whole system")
	}
	env := testenv.New(t, testenv.Options{})
	ed := env.Edges[0]
	ctx := context.Background()
	id, token, _ := env.ProvisionAgent("rotating")
	env.WaitSynced(5 * time.Second) // the new agent's key has reached the edge

	// A live session with the current token.
	r := dialRogue(t, ed.TunnelAddr(), id, token, tunnel.Version)
	r.session(t)
	require.Eventually(t, func() bool { return slices.Contains(ed.ConnectedAgents(), id) }, 3*time.Second, 10*time.Millisecond)

	// Rotation: the session of the old token is closed, the old token is
	// refused, the new one is accepted.
	start := time.Now()
	rot, err := env.Client.RotateAgentToken(ctx, id, token)
	require.NoError(t, err)
	require.Eventually(t, func() bool { return !slices.Contains(ed.ConnectedAgents(), id) }, time.Second, 5*time.Millisecond,
		"the old token's session survived the rotation")
	rotated := time.Since(start)
	old := dialRogue(t, ed.TunnelAddr(), id, token, tunnel.Version)
	require.Equal(t, tunnel.ResultBadCredentials, old.res.Status, "the old token still opens a tunnel")
	fresh := dialRogue(t, ed.TunnelAddr(), id, rot.Token, tunnel.Version)
	require.Equal(t, tunnel.ResultOK, fresh.res.Status, fresh.res.Message)
	fresh.session(t)
	require.Eventually(t, func() bool { return slices.Contains(ed.ConnectedAgents(), id) }, 3*time.Second, 10*time.Millisecond)

	// Deletion: disconnected and refused.
	start = time.Now()
	_, err = env.Client.DeleteAgent(ctx, id)
	require.NoError(t, err)
	require.Eventually(t, func() bool { return !slices.Contains(ed.ConnectedAgents(), id) }, time.Second, 5*time.Millisecond,
		"a deleted agent keeps its tunnel")
	deleted := time.Since(start)
	gone := dialRogue(t, ed.TunnelAddr(), id, rot.Token, tunnel.Version)
	require.Equal(t, tunnel.ResultBadCredentials, gone.res.Status)
	t.Logf("rotation closed the old session in %v; deletion in %v", rotated.Round(time.Millisecond), deleted.Round(time.Millisecond))
}
