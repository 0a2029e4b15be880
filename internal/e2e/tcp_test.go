package e2e

import (
	"context"
	"io"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/privateconnect/pc/internal/testenv"
	"github.com/stretchr/testify/require"
)

// tcpService listens on 127.0.0.1 until the test ends and serves each
// connection with serve (which closes it) on its own goroutine.
func tcpService(t *testing.T, serve func(net.Conn)) net.Listener {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go serve(c)
		}
	}()
	return ln
}

// halfCloseServer reads everything until EOF, then answers with the byte
// count and closes: it only works if half-close crosses the tunnel.
func halfCloseServer(t *testing.T) (string, int) {
	ln := tcpService(t, func(c net.Conn) {
		defer c.Close()
		n, _ := io.Copy(io.Discard, c)
		_, _ = c.Write([]byte("got " + strconv.FormatInt(n, 10)))
	})
	return "127.0.0.1", ln.Addr().(*net.TCPAddr).Port
}

func roundTrip(t *testing.T, c net.Conn, payload []byte) string {
	t.Helper()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	_, err := c.Write(payload)
	require.NoError(t, err)
	require.NoError(t, c.(interface{ CloseWrite() error }).CloseWrite())
	b, err := io.ReadAll(c)
	require.NoError(t, err)
	return string(b)
}

// TestTCPTunnelAndReach: a TCP service is reachable on its tunnel port of
// the edge and through another agent (reach), both with half-close.
func TestTCPTunnelAndReach(t *testing.T) {
	env := testenv.New(t, testenv.Options{})
	host, port := halfCloseServer(t)
	id, token, edges := env.ProvisionAgent("db-host")
	ag := env.RunAgent(id, token, edges)
	svc := env.ExposeProtocol(ag, "sink", host, port, "tcp")
	require.GreaterOrEqual(t, svc.TunnelPort, env.TCPPortMin)
	require.LessOrEqual(t, svc.TunnelPort, env.TCPPortMax)
	env.WaitAgentOnEdges(id, 5*time.Second)
	env.WaitSynced(5 * time.Second)

	// Through the edge's tunnel port.
	var c net.Conn
	require.Eventually(t, func() bool {
		var err error
		c, err = net.Dial("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(svc.TunnelPort)))
		return err == nil
	}, 3*time.Second, 20*time.Millisecond)
	payload := make([]byte, 3<<20)
	require.Equal(t, "got 3145728", roundTrip(t, c, payload))

	// Through another agent of the workspace (connect reach).
	id2, token2, edges2 := env.ProvisionAgent("laptop")
	ag2 := env.RunAgent(id2, token2, edges2)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	require.NoError(t, ag2.WaitConnected(ctx))
	rc, err := ag2.Dial(ctx, svc.ID)
	require.NoError(t, err)
	require.Equal(t, "got 5", roundTrip(t, rc, []byte("hello")))

	// A service id of no workspace's is refused.
	_, err = ag2.Dial(ctx, "00000000-0000-4000-8000-000000000000")
	require.ErrorContains(t, err, "no such service")
}

// TestTCPPortHeldElsewhereOpensWhenFreed: an edge that finds a service's
// tunnel port held by another process opens it as soon as it is free,
// without waiting for a config change (before, it retried only on the
// next one, so a quiet configuration kept the port closed).
func TestTCPPortHeldElsewhereOpensWhenFreed(t *testing.T) {
	env := testenv.New(t, testenv.Options{})
	host, port := halfCloseServer(t)
	id, token, edges := env.ProvisionAgent("db-host")
	ag := env.RunAgent(id, token, edges)
	svc := env.ExposeProtocol(ag, "sink", host, port, "tcp")
	env.WaitAgentOnEdges(id, 5*time.Second)
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(svc.TunnelPort))
	through := func() bool {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			return false
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(2 * time.Second))
		if _, err := c.Write([]byte("hello")); err != nil {
			return false
		}
		_ = c.(*net.TCPConn).CloseWrite()
		b, _ := io.ReadAll(c)
		return string(b) == "got 5"
	}
	require.Eventually(t, through, 5*time.Second, 20*time.Millisecond)

	// The edge restarts while another process holds the port.
	ed := env.Edges[0]
	require.NoError(t, ed.Close())
	var holder net.Listener
	require.Eventually(t, func() bool {
		var err error
		holder, err = net.Listen("tcp", addr)
		return err == nil
	}, 5*time.Second, 20*time.Millisecond)
	env.RestartEdge(ed)
	env.WaitAgentOnEdges(id, 5*time.Second)
	env.WaitSynced(5 * time.Second)
	require.False(t, through(), "the holder answers, not the service")

	// Freed: the edge opens it within a few report ticks, with no change
	// of configuration.
	version := ed.Table().Version
	require.NoError(t, holder.Close())
	start := time.Now()
	require.Eventually(t, through, 5*time.Second, 50*time.Millisecond)
	t.Logf("the freed port carried the tunnel %v later", time.Since(start).Round(time.Millisecond))
	require.Equal(t, version, ed.Table().Version, "no config change was needed")
}
