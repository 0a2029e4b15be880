package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"strconv"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/privateconnect/pc/sdk/client"
)

// reachCmd opens a local listener whose connections go to the service's TCP
// port on an edge (the port every edge allocates to the service).
//
// TODO(#6): route the connections through this machine's own agent tunnel
// (agent → edge → exposing agent) once the agent library exposes outbound
// streams, so that reach also works where edge TCP ports are firewalled.
func (a *app) reachCmd() *cobra.Command {
	var (
		port     int
		bind     string
		edgeAddr string
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
			if svc.TunnelPort == 0 {
				return fmt.Errorf("service %s has no TCP port on the edges", svc.Name)
			}
			host := edgeAddr
			if host == "" {
				if host, err = a.reachEdgeHost(ctx, c); err != nil {
					return err
				}
			}
			upstream := net.JoinHostPort(host, strconv.Itoa(svc.TunnelPort))
			if port == 0 {
				port = svc.TargetPort
			}
			ln, err := net.Listen("tcp", net.JoinHostPort(bind, strconv.Itoa(port)))
			if err != nil {
				// The service's own port is taken (often by the service itself): pick one.
				if ln, err = net.Listen("tcp", net.JoinHostPort(bind, "0")); err != nil {
					return err
				}
			}
			fmt.Fprintf(a.stderr, "Reaching %s on %s (via %s); press Ctrl-C to stop.\n", svc.Name, ln.Addr(), upstream)
			if !a.jsonOut {
				fmt.Fprintln(a.stdout, ln.Addr().String())
			} else {
				a.raw = nil
				_ = a.printJSON(map[string]any{"service": svc.Name, "listen": ln.Addr().String(), "upstream": upstream})
			}
			return a.forward(cmd.Context(), ln, upstream)
		})
	cmd.Flags().IntVar(&port, "port", 0, "local port (default: the service's port, or a free one if taken)")
	cmd.Flags().StringVar(&bind, "bind", "127.0.0.1", "local address to listen on")
	cmd.Flags().StringVar(&edgeAddr, "edge", "", "edge host to connect to (default: the first edge known)")
	return cmd
}

// reachEdgeHost picks the edge host: from the state file, else the edge list.
func (a *app) reachEdgeHost(ctx context.Context, c *client.Client) (string, error) {
	if path, err := a.stateFile(); err == nil {
		if st, _ := loadState(path); st != nil {
			if h := edgeHost(st.Edges); h != "" {
				return h, nil
			}
		}
	}
	edges, _, err := c.ListEdges(ctx, client.ListOptions{})
	if err != nil {
		return "", fmt.Errorf("find an edge (pass --edge HOST): %w", err)
	}
	for _, e := range edges {
		if h := edgeHost([]client.AgentEdge{{TunnelAddr: e.TunnelAddr}}); h != "" {
			return h, nil
		}
		if u, err := url.Parse(e.PublicURL); err == nil && u.Hostname() != "" {
			return u.Hostname(), nil
		}
	}
	return "", errors.New("no edge known: pass --edge HOST")
}

// forward accepts connections on ln until ctx is done and copies each one to
// a new connection to upstream, with half-close.
func (a *app) forward(ctx context.Context, ln net.Listener, upstream string) error {
	go func() {
		<-ctx.Done()
		ln.Close()
	}()
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		conn, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer conn.Close()
			d := net.Dialer{Timeout: 10 * time.Second}
			up, err := d.DialContext(ctx, "tcp", upstream)
			if err != nil {
				a.log.Warn("reach: dial edge", "addr", upstream, "err", err)
				return
			}
			defer up.Close()
			stop := context.AfterFunc(ctx, func() { conn.Close(); up.Close() })
			defer stop()
			pipe(conn, up)
		}()
	}
}

// pipe copies both ways until both directions are done, half-closing each
// side's write end when its source ends.
func pipe(x, y net.Conn) {
	var wg sync.WaitGroup
	cp := func(dst, src net.Conn) {
		defer wg.Done()
		_, err := io.Copy(dst, src)
		if cw, ok := dst.(interface{ CloseWrite() error }); ok && err == nil {
			cw.CloseWrite()
		} else {
			dst.Close()
			src.Close()
		}
	}
	wg.Add(2)
	go cp(x, y)
	go cp(y, x)
	wg.Wait()
}
