package e2e

import (
	"context"
	"errors"
	"net"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/privateconnect/pc/internal/testenv"
	"github.com/stretchr/testify/require"
)

// TestRefusedTCPVisitorsAreReset: a visitor of a TCP tunnel port that the
// edge cannot serve (the target refuses, the tunnel is paused, the agent is
// offline) gets a reset, not a clean end of file that reads as a service
// that answered nothing (found by a TCP fault review).
func TestRefusedTCPVisitorsAreReset(t *testing.T) {
	env := testenv.New(t, testenv.Options{})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	dead := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	id, token, edges := env.ProvisionAgent("db-host")
	ag := env.RunAgent(id, token, edges)
	refusing := env.ExposeProtocol(ag, "refusing", "127.0.0.1", dead, "tcp")
	echo := tcpService(t, func(c net.Conn) { defer c.Close(); _, _ = c.Read(make([]byte, 1)) })
	paused := env.ExposeProtocol(ag, "paused", "127.0.0.1", echo.Addr().(*net.TCPAddr).Port, "tcp")
	offline := env.ExposeProtocol(ag, "offline", "127.0.0.1", echo.Addr().(*net.TCPAddr).Port, "tcp")
	env.WaitAgentOnEdges(id, 5*time.Second)
	env.WaitSynced(5 * time.Second)

	// visit reads from the tunnel port: the error it ends with.
	visit := func(port int) error {
		c, err := net.Dial("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err != nil {
			return err
		}
		defer c.Close()
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, err = c.Read(make([]byte, 1))
		return err
	}
	isReset := func(port int) func() bool {
		return func() bool { return errors.Is(visit(port), syscall.ECONNRESET) }
	}
	require.Eventually(t, isReset(refusing.TunnelPort), 5*time.Second, 50*time.Millisecond, "target refuses")

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	_, err = env.Client.PauseTunnel(ctx, paused.ID)
	require.NoError(t, err)
	env.WaitSynced(5 * time.Second)
	require.Eventually(t, isReset(paused.TunnelPort), 5*time.Second, 50*time.Millisecond, "tunnel paused")

	ag.Stop()
	require.Eventually(t, isReset(offline.TunnelPort), 10*time.Second, 50*time.Millisecond, "agent offline")
}
