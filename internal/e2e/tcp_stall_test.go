package e2e

import (
	"io"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/privateconnect/pc/edge"
	"github.com/privateconnect/pc/internal/testenv"
	"github.com/privateconnect/pc/sdk/agent"
	"github.com/stretchr/testify/require"
)

// stallSetup runs one agent exposing svc (the connections that stall) and
// an echo service; it returns svc's tunnel port and a probe of the echo.
func stallSetup(t *testing.T, env *testenv.Env, svc net.Listener, tweak func(*agent.Config)) (int, func() error) {
	t.Helper()
	echo := tcpService(t, func(c net.Conn) { defer c.Close(); _, _ = io.Copy(c, c) })
	id, token, edges := env.ProvisionAgent("host")
	ag := env.RunAgentWith(id, token, edges, tweak)
	stalling := env.ExposeProtocol(ag, "stalling", "127.0.0.1", svc.Addr().(*net.TCPAddr).Port, "tcp")
	es := env.ExposeProtocol(ag, "echo", "127.0.0.1", echo.Addr().(*net.TCPAddr).Port, "tcp")
	env.WaitAgentOnEdges(id, 5*time.Second)
	env.WaitSynced(5 * time.Second)
	probe := func() error {
		c, err := net.Dial("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(es.TunnelPort)))
		if err != nil {
			return err
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(3 * time.Second))
		if _, err := c.Write([]byte("ping")); err != nil {
			return err
		}
		_, err = io.ReadFull(c, make([]byte, 4))
		return err
	}
	require.Eventually(t, func() bool { return probe() == nil }, 5*time.Second, 50*time.Millisecond)
	return stalling.TunnelPort, probe
}

// TestVisitorsThatStopReadingDoNotStallTheSession: TCP visitors that stop
// reading fill the agent session's shared receive buffer (2 MiB per
// stream, 8 MiB per session), after which smux stopped reading the session
// and every stream of that agent stalled for good (found by a TCP fault
// review). The edge now resets a visitor whose write made no progress for
// VisitorWriteTimeout, which frees its share and the session recovers.
func TestVisitorsThatStopReadingDoNotStallTheSession(t *testing.T) {
	env := testenv.New(t, testenv.Options{Edge: func(c *edge.Config) { c.VisitorWriteTimeout = 500 * time.Millisecond }})
	flood := tcpService(t, func(c net.Conn) {
		defer c.Close()
		buf := make([]byte, 32<<10)
		for {
			if _, err := c.Write(buf); err != nil {
				return
			}
		}
	})
	port, probe := stallSetup(t, env, flood, nil)
	for i := 0; i < 8; i++ {
		c, err := net.Dial("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		require.NoError(t, err)
		_ = c.(*net.TCPConn).SetReadBuffer(4096)
		defer c.Close() // never read
	}
	time.Sleep(2 * time.Second) // the buffers fill; the write timeout passes
	require.Eventually(t, func() bool { return probe() == nil }, 10*time.Second, 100*time.Millisecond,
		"the agent's other streams stay stalled behind visitors that stopped reading")
}

// TestServicesThatStopReadingDoNotStallTheSession: the same from the other
// side: uploads into a TCP service that stops reading fill the edge
// session's receive buffer on the agent; the agent now resets a target
// whose write made no progress for TargetWriteTimeout.
func TestServicesThatStopReadingDoNotStallTheSession(t *testing.T) {
	env := testenv.New(t, testenv.Options{})
	hold := make(chan struct{})
	defer close(hold)
	sink := tcpService(t, func(c net.Conn) {
		_ = c.(*net.TCPConn).SetReadBuffer(4096)
		<-hold
		c.Close()
	})
	port, probe := stallSetup(t, env, sink, func(c *agent.Config) { c.TargetWriteTimeout = 500 * time.Millisecond })
	for i := 0; i < 8; i++ {
		c, err := net.Dial("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		require.NoError(t, err)
		defer c.Close()
		go func() { _ = c.SetWriteDeadline(time.Now().Add(20 * time.Second)); _, _ = c.Write(make([]byte, 16<<20)) }()
	}
	time.Sleep(2 * time.Second)
	require.Eventually(t, func() bool { return probe() == nil }, 10*time.Second, 100*time.Millisecond,
		"the agent's other streams stay stalled behind a service that stopped reading")
}
