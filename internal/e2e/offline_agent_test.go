package e2e

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/privateconnect/pc/internal/testenv"
	"github.com/privateconnect/pc/sdk/client"
)

// TestAgentStartsWithoutControlPlane: with the control plane stopped (the
// edges serve from their configuration), the real `connect up` starts from
// its state file and a share link works through the edge; `connect expose`
// of the service it already has, same target, does too; a new service is
// refused with an error that says why. Links keep working while the
// control plane restarts, agents (re)started meanwhile included.
func TestAgentStartsWithoutControlPlane(t *testing.T) {
	bin := binaries(t)
	env := testenv.New(t, testenv.Options{})
	org := origin(t)
	target := strings.TrimPrefix(org.URL, "http://")
	state := filepath.Join(t.TempDir(), "agent.json")
	cliEnv := []string{"PC_API_KEY=" + env.AdminKey, "PC_CONTROL_URL=" + env.ControlURL(), "PC_STATE=" + state}
	ed := env.Edges[0]
	onEdge := func() bool { return len(ed.ConnectedAgents()) == 1 }

	// Online: expose registers the service and saves the identity.
	p := start(t, cliEnv, bin+"/connect", "expose", target, "--name", "web", "--protocol", "http")
	waitFor(t, 15*time.Second, "the agent on the edge", onEdge)
	svcs, _, err := env.Client.ListServices(context.Background(), client.ListOptions{}, client.ServiceFilter{})
	require.NoError(t, err)
	require.Len(t, svcs, 1)
	sh := env.Share(svcs[0].ID, client.CreateShareRequest{ExpiresIn: "1h"})
	eventuallyStatus(t, sh.ShareURL+"/", 200, 5*time.Second)
	require.NoError(t, terminate(t, p, 10*time.Second))
	waitFor(t, 5*time.Second, "the agent off the edge", func() bool { return !onEdge() })

	env.StopControl()

	// up starts from the state file.
	up := start(t, cliEnv, bin+"/connect", "up")
	waitFor(t, 15*time.Second, "connect up on the edge without the control plane", onEdge)
	require.Contains(t, up.output(), "warning: cannot reach the control plane at "+env.ControlURL())
	require.Contains(t, up.output(), "from its saved state")
	code, body := get(t, sh.ShareURL+"/offline")
	require.Equal(t, 200, code, body)
	require.Equal(t, "hello from origin: GET /offline", body)
	require.NoError(t, terminate(t, up, 10*time.Second))
	waitFor(t, 5*time.Second, "the agent off the edge", func() bool { return !onEdge() })

	// So does expose of the saved service.
	ex := start(t, cliEnv, bin+"/connect", "expose", target, "--name", "web")
	waitFor(t, 15*time.Second, "connect expose on the edge without the control plane", onEdge)
	require.Contains(t, ex.output(), "Exposing (as saved) web → "+target)
	code, body = get(t, sh.ShareURL+"/again")
	require.Equal(t, 200, code, body)
	require.Equal(t, "hello from origin: GET /again", body)

	// A new service needs the control plane (the running agent's identity
	// is busy: another state file).
	other := filepath.Join(filepath.Dir(state), "other.json")
	raw, err := os.ReadFile(state)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(other, raw, 0o600))
	cmd := exec.Command(bin+"/connect", "expose", target, "--name", "ws")
	cmd.Env = append(os.Environ(), "PC_API_KEY="+env.AdminKey, "PC_CONTROL_URL="+env.ControlURL(), "PC_STATE="+other)
	out, err := cmd.CombinedOutput()
	require.Error(t, err, string(out))
	require.Contains(t, string(out), "error: register service ws: cannot reach the control plane at "+env.ControlURL())

	// The control plane comes back: the running agent goes on serving.
	env.StartControl()
	code, _ = get(t, sh.ShareURL+"/back")
	require.Equal(t, 200, code)
	require.NoError(t, terminate(t, ex, 10*time.Second))

	// The saved state names the agent's edge and service.
	var st struct {
		Edges []struct {
			TunnelAddr string `json:"tunnelAddr"`
		} `json:"edges"`
		Services []struct {
			Name string `json:"name"`
		} `json:"services"`
	}
	raw, err = os.ReadFile(state)
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(raw, &st))
	require.Len(t, st.Edges, 1)
	require.Equal(t, ed.TunnelAddr(), st.Edges[0].TunnelAddr)
	require.Len(t, st.Services, 1)
	require.Equal(t, "web", st.Services[0].Name)
}
