package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/privateconnect/pc/internal/tunnel"
	"github.com/privateconnect/pc/sdk/agent"
	"github.com/privateconnect/pc/sdk/client"
)

// reachCmd opens a local listener whose connections reach the service
// through this machine's own agent tunnel (agent → edge → the exposing
// agent), or, with --edge, through the service's TCP port on that edge.
func (a *app) reachCmd() *cobra.Command {
	var (
		port     int
		bind     string
		edgeAddr string
		af       agentFlags
	)
	cmd := leaf("reach SERVICE", "Open a local TCP port that reaches a service through the edge",
		`  connect reach postgres --port 15432 &
  psql -h 127.0.0.1 -p 15432 -U app`,
		1, 1, func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			ctx := a.ctx(cmd)
			svc, err := resolveService(ctx, c, args[0])
			if err != nil {
				return err
			}
			// The local port first: one that cannot be had fails the command
			// before a reach identity is provisioned or registered for it.
			// --port 0 given explicitly: any free port.
			explicit := cmd.Flags().Changed("port")
			if !explicit {
				port = svc.TargetPort
			}
			ln, err := net.Listen("tcp", net.JoinHostPort(bind, strconv.Itoa(port)))
			if err != nil {
				if explicit {
					// Never somewhere else: a client of the asked-for port
					// would reach whatever holds it.
					return fmt.Errorf("cannot listen on %s: %w", net.JoinHostPort(bind, strconv.Itoa(port)), err)
				}
				// The service's own port is taken (often by the service itself): pick one.
				if ln, err = net.Listen("tcp", net.JoinHostPort(bind, "0")); err != nil {
					return fmt.Errorf("cannot listen on %s: %w", bind, err)
				}
			}
			defer ln.Close()
			var dial func(context.Context) (net.Conn, error)
			var agentDone <-chan error // the reach agent's Run result
			via := "agent tunnel"
			if edgeAddr != "" {
				if svc.TunnelPort == 0 {
					return fmt.Errorf("service %s has no TCP port on the edges", svc.Name)
				}
				upstream := net.JoinHostPort(edgeAddr, strconv.Itoa(svc.TunnelPort))
				via = upstream
				dial = func(ctx context.Context) (net.Conn, error) {
					d := net.Dialer{Timeout: 10 * time.Second}
					return d.DialContext(ctx, "tcp", upstream)
				}
			} else {
				defer a.releaseAgentLock()
				ag, done, err := a.reachAgent(ctx, c, &af)
				if err != nil {
					return err
				}
				agentDone = done
				dial = func(ctx context.Context) (net.Conn, error) { return ag.Dial(ctx, svc.ID) }
			}
			a.note(slog.LevelInfo, fmt.Sprintf("Reaching %s on %s (via %s); press Ctrl-C to stop.", svc.Name, ln.Addr(), via),
				"reaching", "service", svc.Name, "listen", ln.Addr().String(), "via", via)
			if !a.jsonOut {
				fmt.Fprintln(a.stdout, ln.Addr().String())
			} else {
				a.raw = nil
				_ = a.printJSON(map[string]any{"service": svc.Name, "listen": ln.Addr().String(), "via": via})
			}
			// The reach agent can stop by itself (another process took its
			// identity's tunnels): then the listener closes and reach says why,
			// instead of failing every connection.
			fctx, stop := context.WithCancelCause(cmd.Context())
			defer stop(nil)
			if agentDone != nil {
				go func() {
					if err := <-agentDone; err != nil {
						stop(fmt.Errorf("reach agent stopped: %w", err))
					}
				}()
			}
			return a.forward(fctx, ln, dial)
		})
	cmd.Flags().IntVar(&port, "port", 0, "local port (default: the service's port, or a free one if that is taken; 0: a free one; a --port that cannot be had is an error)")
	cmd.Flags().StringVar(&bind, "bind", "127.0.0.1", "local address to listen on")
	cmd.Flags().StringVar(&edgeAddr, "edge", "", "connect to the service's TCP port on this edge host instead of through an agent tunnel")
	addAgentFlags(cmd, &af, false)
	checkRange(cmd, "port", 0, 65535, "")
	return cmd
}

// errServiceGone ends a reach whose service was deleted.
var errServiceGone = errors.New("the service no longer exists (deleted?): reach stopped")

// maxReachAgents bounds the reach identities of one state directory, one per
// `connect reach` running at once.
const maxReachAgents = 16

// reachAgent runs this machine's reach agent: an identity of its own (state
// file "reach-<state file name>"), so it never displaces the agent that
// `connect expose` runs from the same state directory. A second reach running
// at once takes the next identity ("reach-2-<name>"...), since two processes
// of one identity would displace each other's tunnels (lock.go). The lock is
// held in a.lock until the command ends.
func (a *app) reachAgent(ctx context.Context, c *client.Client, af *agentFlags) (*agent.Agent, <-chan error, error) {
	orig := a.statePath
	defer func() { a.statePath = orig }()
	name, err := a.takeReachIdentity(ctx)
	if err != nil {
		return nil, nil, err
	}
	st, _, err := a.identity(ctx, c, name, "reach")
	if err != nil {
		return nil, nil, err
	}
	edges := st.edgeAddrs()
	if len(edges) == 0 {
		return nil, nil, errors.New("no edge to connect to: register one with `connect edges add` (admin key)")
	}
	ag, err := agent.New(agent.Config{AgentID: st.AgentID, Token: st.Token, Edges: edges, CAFile: af.caFile,
		PinSHA256: af.pin, InsecureSkipVerify: af.insecureSkipVerify, AllowPlaintext: af.allowPlaintext, Logger: a.log, Software: "connect/" + version})
	if err != nil {
		return nil, nil, err
	}
	a.markRunning(af)
	done := make(chan error, 1)
	go func() { done <- ag.Run(ctx) }()
	wctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	if err := ag.WaitConnected(wctx); err != nil {
		return nil, nil, fmt.Errorf("could not connect to an edge: %w", err)
	}
	return ag, done, nil
}

// takeReachIdentity points a.statePath at the first reach identity of the
// state directory that no other process runs, takes its lock and returns the
// agent name it goes by.
func (a *app) takeReachIdentity(ctx context.Context) (string, error) {
	dir, base := filepath.Dir(a.statePath), filepath.Base(a.statePath)
	host, _ := os.Hostname()
	for i := 1; ; i++ {
		file, name := "reach-"+base, "reach-"+host
		if i > 1 {
			file, name = fmt.Sprintf("reach-%d-%s", i, base), fmt.Sprintf("reach-%d-%s", i, host)
		}
		a.statePath = filepath.Join(dir, file)
		err := a.holdAgentLock(ctx)
		if err == nil {
			return name, nil
		}
		if _, busy := runningElsewhere(err); !busy || i == maxReachAgents {
			return "", err
		}
	}
}

// forward accepts connections on ln until ctx is done and copies each one to
// a new connection to upstream, with half-close.
//
// It returns nil when ctx is cancelled, and the cause when it was cancelled
// with one (the reach agent stopped); it stops by itself, saying so, when
// the service is gone.
func (a *app) forward(ctx context.Context, ln net.Listener, dial func(context.Context) (net.Conn, error)) error {
	ctx, stop := context.WithCancelCause(ctx)
	defer stop(nil)
	go func() {
		<-ctx.Done()
		ln.Close()
	}()
	var wg sync.WaitGroup
	defer wg.Wait()
	// One EMFILE must not end the listener: the edge's ports retry the same way.
	b := tunnel.AcceptBackoff{Log: a.log, What: "reach listener " + ln.Addr().String()}
	for {
		conn, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				if cause := context.Cause(ctx); !errors.Is(cause, context.Canceled) {
					return cause
				}
				return nil
			}
			if b.Retry(err) {
				continue
			}
			return err
		}
		b.Accepted()
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer conn.Close()
			up, err := dial(ctx)
			if err != nil {
				a.note(slog.LevelWarn, fmt.Sprintf("reach: %v", err), "reach: connect to the service", "err", err)
				if errors.Is(err, agent.ErrNoSuchService) {
					stop(errServiceGone) // the service was deleted: reach ends
				}
				return
			}
			defer up.Close()
			stop := context.AfterFunc(ctx, func() { conn.Close(); up.Close() })
			defer stop()
			tunnel.Pipe(conn, up) // half-close, and a reset on either side resets the other
		}()
	}
}
