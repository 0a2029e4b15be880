package e2e

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/privateconnect/pc/internal/testenv"
	"github.com/privateconnect/pc/sdk/agent"
	"github.com/privateconnect/pc/sdk/client"
)

// TestEmbeddedAgentCallbacksAndStop, for programs that embed the agent: a
// callback that blocks never holds up the tunnel (it delayed every request
// until it returned), and a stop command from the control plane ends Run
// with ErrStopped, which a program can tell from its own cancellation (it
// returned nil).
func TestEmbeddedAgentCallbacksAndStop(t *testing.T) {
	env := testenv.New(t, testenv.Options{})
	org := origin(t)
	id, token, edges := env.ProvisionAgent("embedded")
	release := make(chan struct{})
	defer func() {
		select {
		case <-release:
		default:
			close(release)
		}
	}()
	ag := env.RunAgentWith(id, token, edges, func(c *agent.Config) {
		c.OnEvent = func(e agent.Event) {
			if e.Kind == agent.EventConnected {
				<-release // a slow callback: a UI, a log shipper
			}
		}
	})
	svc := env.Expose(ag, "web", org.URL)
	sh := env.Share(svc.ID, client.CreateShareRequest{})
	env.WaitAgentOnEdges(id, 5*time.Second)
	start := time.Now()
	code, body := get(t, sh.ShareURL+"/while-blocked")
	require.Equal(t, 200, code, body)
	require.Less(t, time.Since(start), 3*time.Second)
	close(release)

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := env.Client.SendCommand(ctx, id, client.CommandRequest{Action: client.ActionStop})
	require.NoError(t, err)
	select {
	case <-ag.Done():
		require.ErrorIs(t, ag.Err(), agent.ErrStopped)
	case <-ctx.Done():
		t.Fatal("the stop command did not end Run")
	}
}
