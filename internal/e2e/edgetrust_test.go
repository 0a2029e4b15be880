package e2e

// What an agent trusts its edges with (docs/security.md, "A compromised
// edge"). The agent authenticates to an edge but never authenticates the
// edge beyond TLS, and takes the list of services it may dial from the
// edge's control stream. This test pins that gap: a malicious edge makes an
// agent dial an address that is no registered service and reads what is
// there. Invert it when service lists are signed by the control plane.

import (
	"bufio"
	"context"
	"io"
	"net"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"
	"github.com/xtaci/smux"

	"github.com/privateconnect/pc/internal/tunnel"
	"github.com/privateconnect/pc/sdk/agent"
)

func TestCompromisedEdgeRedirectsAgentDials(t *testing.T) {
	got, addr, _ := compromisedEdge(t)
	a, err := agent.New(agent.Config{AgentID: uuid.NewString(), Token: "any-token", Edges: []string{addr},
		MinBackoff: 50 * time.Millisecond, MaxBackoff: 200 * time.Millisecond})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = a.Run(ctx) }()
	select {
	case s := <-got:
		require.Equal(t, "internal secret", s,
			"documented gap: the agent dials whatever its edge lists; if this fails the gap may be closed — update docs/security.md")
	case <-time.After(10 * time.Second):
		t.Fatal("the malicious edge got nothing")
	}
}

// TestAllowedTargetsCloseTheGap: an agent given its targets (as `connect
// expose` does) refuses whatever else a compromised edge lists.
func TestAllowedTargetsCloseTheGap(t *testing.T) {
	got, addr, _ := compromisedEdge(t)
	a, err := agent.New(agent.Config{AgentID: uuid.NewString(), Token: "any-token", Edges: []string{addr},
		AllowedTargets: []string{"127.0.0.1:1"}, MinBackoff: 50 * time.Millisecond, MaxBackoff: 200 * time.Millisecond})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = a.Run(ctx) }()
	select {
	case s := <-got:
		require.Empty(t, s, "the agent must refuse a target it was not given")
	case <-time.After(10 * time.Second):
		t.Fatal("the malicious edge got no answer")
	}
}

// compromisedEdge runs a private server no service exposes and an edge that
// tells agents to dial it; got receives what the edge read ("" if refused).
func compromisedEdge(t *testing.T) (got chan string, addr, secretAddr string) {
	// A private server next to the agent that no service exposes.
	secret, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { secret.Close() })
	go func() {
		for {
			c, err := secret.Accept()
			if err != nil {
				return
			}
			_, _ = io.WriteString(c, "internal secret")
			c.Close()
		}
	}()

	// The malicious edge: it accepts the agent's handshake without
	// checking it, lists a "service" pointing at the private server, and
	// opens a TCP stream to it.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { ln.Close() })
	got = make(chan string, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		sess, ctl, err := acceptAsEdge(c, "evil")
		if err != nil {
			return
		}
		defer sess.Close()
		svcID := uuid.New()
		port := secret.Addr().(*net.TCPAddr).Port
		_ = tunnel.WriteControl(ctl, &tunnel.Control{Type: tunnel.CtlServices,
			Services: []tunnel.Service{{ID: svcID.String(), Name: "not-a-service", Protocol: "tcp", TargetHost: "127.0.0.1", TargetPort: port}}})
		time.Sleep(100 * time.Millisecond)
		st, err := sess.OpenStream()
		if err != nil {
			return
		}
		hdr, _ := tunnel.AppendStreamHeader(nil, &tunnel.StreamHeader{Kind: tunnel.KindTCP, ServiceID: svcID})
		_, _ = st.Write(hdr)
		if res, err := tunnel.ReadResult(st); err != nil || res.Status != tunnel.ReplyOK {
			got <- ""
			return
		}
		b, _ := io.ReadAll(st)
		got <- string(b)
	}()

	return got, ln.Addr().String(), secret.Addr().String()
}

// acceptAsEdge plays a lying edge on c: it accepts whatever agent connects
// (no credential check), starts the smux session and opens the control
// stream.
func acceptAsEdge(c net.Conn, edgeID string) (*smux.Session, *smux.Stream, error) {
	sh := &tunnel.ServerHello{Version: tunnel.Version, EdgeID: edgeID}
	if err := tunnel.WriteServerHello(c, sh); err != nil {
		return nil, nil, err
	}
	if _, err := tunnel.ReadClientHello(bufio.NewReader(c)); err != nil {
		return nil, nil, err
	}
	if err := tunnel.WriteResult(c, tunnel.Result{Status: tunnel.ResultOK}); err != nil {
		return nil, nil, err
	}
	sess, err := smux.Client(c, tunnel.SmuxConfig())
	if err != nil {
		return nil, nil, err
	}
	ctl, err := sess.OpenStream()
	if err == nil {
		hdr, _ := tunnel.AppendStreamHeader(nil, &tunnel.StreamHeader{Kind: tunnel.KindControl})
		_, err = ctl.Write(hdr)
	}
	if err != nil {
		sess.Close()
		return nil, nil, err
	}
	return sess, ctl, nil
}
