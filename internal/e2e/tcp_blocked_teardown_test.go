package e2e

import (
	"io"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/privateconnect/pc/internal/testenv"
	"github.com/stretchr/testify/require"
)

// goroutinesIn counts the goroutines whose stack holds fn.
func goroutinesIn(fn string) int {
	buf := make([]byte, 16<<20)
	n := runtime.Stack(buf, true)
	return strings.Count(string(buf[:n]), fn)
}

// TestAgentLossEndsAVisitorThatStoppedReading: when the agent goes, a TCP
// visitor that stopped reading (the edge's copy blocked writing to it) is
// reset within a second, its handler gone; before (found by a TCP fault
// review), only the stream was closed and the reset waited for a read of
// the stream that the blocked copy never made: held for ever.
func TestAgentLossEndsAVisitorThatStoppedReading(t *testing.T) {
	env := testenv.New(t, testenv.Options{})
	flood := tcpService(t, func(c net.Conn) {
		defer c.Close()
		buf := make([]byte, 32<<10)
		for {
			if _, err := c.Write(buf); err != nil {
				return
			}
		}
	})
	id, token, edges := env.ProvisionAgent("flood-host")
	ag := env.RunAgent(id, token, edges)
	svc := env.ExposeProtocol(ag, "flood", "127.0.0.1", flood.Addr().(*net.TCPAddr).Port, "tcp")
	env.WaitAgentOnEdges(id, 5*time.Second)
	env.WaitSynced(5 * time.Second)
	const handler = "edge.(*tcpPorts).handle("
	before := goroutinesIn(handler)
	c := dialTunnelPort(t, svc)
	defer c.Close()
	_, err := io.ReadFull(c, make([]byte, 1<<20))
	require.NoError(t, err)
	time.Sleep(500 * time.Millisecond) // the buffers on the way fill up
	require.Equal(t, before+1, goroutinesIn(handler))

	ag.Stop()
	require.Eventually(t, func() bool { return goroutinesIn(handler) == before }, time.Second, 20*time.Millisecond,
		"the edge still serves the visitor a second after its agent left")
}
