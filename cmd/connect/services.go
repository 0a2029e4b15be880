package main

import (
	"context"
	"fmt"
	"net"
	"strconv"

	"github.com/spf13/cobra"

	"github.com/privateconnect/pc/sdk/client"
)

var serviceCols = []col[client.Service]{
	{"ID", func(x client.Service) string { return x.ID }},
	{"NAME", func(x client.Service) string { return x.Name }},
	{"TARGET", func(x client.Service) string { return net.JoinHostPort(x.TargetHost, strconv.Itoa(x.TargetPort)) }},
	{"PROTOCOL", func(x client.Service) string { return x.Protocol }},
	{"STATUS", func(x client.Service) string { return x.Status }},
	{"TCP PORT", func(x client.Service) string { return portOrDash(x.TunnelPort) }},
	{"PUBLIC", func(x client.Service) string { return orDash(x.PublicURL) }},
	{"AGENT", func(x client.Service) string { return x.AgentID }},
}

var diagnosticCols = []col[client.Diagnostic]{
	{"TIME", func(x client.Diagnostic) string { return fmtTime(x.CreatedAt) }},
	{"STATUS", func(x client.Diagnostic) string { return x.Status }},
	{"DNS", func(x client.Diagnostic) string {
		if x.DNS == nil {
			return "-"
		}
		return x.DNS.Status
	}},
	{"TCP", func(x client.Diagnostic) string {
		if x.TCP == nil {
			return "-"
		}
		return fmt.Sprintf("%s %.0fms", x.TCP.Status, x.TCP.LatencyMs)
	}},
	{"TLS", func(x client.Diagnostic) string {
		if x.TLS == nil {
			return "-"
		}
		return x.TLS.Status
	}},
	{"HTTP", func(x client.Diagnostic) string {
		if x.HTTP == nil {
			return "-"
		}
		return fmt.Sprintf("%s %d %.0fms", x.HTTP.Status, x.HTTP.StatusCode, x.HTTP.LatencyMs)
	}},
	{"MESSAGE", func(x client.Diagnostic) string { return x.Message }},
}

// withService resolves args[0] (a service name or id) before calling fn.
func withService[T any](fn func(ctx context.Context, c *client.Client, svc *client.Service, args []string) (T, error)) func(context.Context, *client.Client, []string) (T, error) {
	return func(ctx context.Context, c *client.Client, args []string) (T, error) {
		svc, err := resolveService(ctx, c, args[0])
		if err != nil {
			var zero T
			return zero, err
		}
		return fn(ctx, c, svc, args)
	}
}

func (a *app) servicesCmd() *cobra.Command {
	var f client.ServiceFilter
	ls := listCmd(a, "ls", "List services", "  connect services ls --status down", 0,
		func(ctx context.Context, c *client.Client, _ []string, lo client.ListOptions) ([]client.Service, string, error) {
			return c.ListServices(ctx, lo, f)
		}, serviceCols)
	ls.Flags().StringVar(&f.AgentID, "agent", "", "only services of this agent id")
	ls.Flags().StringVar(&f.Status, "status", "", "only services with this status (unknown|ok|degraded|down|offline)")
	ls.Flags().StringVar(&f.Protocol, "protocol", "", "only services with this protocol")

	get := getCmd(a, "get SERVICE", "Show a service (by name or id)", "  connect services get web", 1,
		withService(func(ctx context.Context, c *client.Client, svc *client.Service, _ []string) (*client.Service, error) {
			return c.GetService(ctx, svc.ID)
		}))

	rm := actionCmd(a, "rm SERVICE", "Delete a service, revoking its shares", "  connect services rm web", 1,
		withService(func(ctx context.Context, c *client.Client, svc *client.Service, _ []string) (string, error) {
			if err := c.DeleteService(ctx, svc.ID); err != nil {
				return "", err
			}
			return fmt.Sprintf("Deleted service %s.", svc.Name), nil
		}))

	check := getCmd(a, "check SERVICE", "Run a diagnostic from the service's agent (DNS, TCP, TLS, HTTP)", "  connect services check web", 1,
		withService(func(ctx context.Context, c *client.Client, svc *client.Service, _ []string) (*client.Diagnostic, error) {
			return c.CheckService(ctx, svc.ID)
		}))

	diags := listCmd(a, "diagnostics SERVICE", "Show a service's diagnostic history, newest first", "  connect services diagnostics web --limit 10", 1,
		func(ctx context.Context, c *client.Client, args []string, lo client.ListOptions) ([]client.Diagnostic, string, error) {
			svc, err := resolveService(ctx, c, args[0])
			if err != nil {
				return nil, "", err
			}
			return c.ListDiagnostics(ctx, svc.ID, lo)
		}, diagnosticCols)

	var (
		enable, disable bool
		interval        int
	)
	health := getCmd(a, "health SERVICE", "Configure health monitoring of a service",
		"  connect services health web --enable --interval 30\n  connect services health web --disable", 1,
		withService(func(ctx context.Context, c *client.Client, svc *client.Service, _ []string) (*client.HealthConfig, error) {
			var req client.HealthConfigRequest
			if enable && disable {
				return nil, usageErrorf("--enable and --disable are exclusive")
			}
			if enable || disable {
				req.Enabled = &enable
			}
			if interval != 0 {
				req.IntervalSeconds = &interval
			}
			if req.Enabled == nil && req.IntervalSeconds == nil {
				return nil, usageErrorf("give --enable, --disable or --interval")
			}
			return c.SetServiceHealthConfig(ctx, svc.ID, req)
		}))
	health.Flags().BoolVar(&enable, "enable", false, "enable health checks")
	health.Flags().BoolVar(&disable, "disable", false, "disable health checks")
	health.Flags().IntVar(&interval, "interval", 0, "seconds between checks (10-3600)")
	checkRange(health, "interval", 10, 3600, "seconds")

	var (
		off       bool
		subdomain string
	)
	public := getCmd(a, "public SERVICE", "Make a service public on a subdomain (or private with --off)",
		"  connect services public web --subdomain demo\n  connect services public web --off", 1,
		withService(func(ctx context.Context, c *client.Client, svc *client.Service, _ []string) (*client.PublicAccess, error) {
			return c.SetServicePublic(ctx, svc.ID, client.PublicRequest{IsPublic: !off, Subdomain: subdomain})
		}))
	public.Flags().BoolVar(&off, "off", false, "make the service private again")
	public.Flags().StringVar(&subdomain, "subdomain", "", "subdomain (3-32 of a-z, 0-9, -)")

	var (
		newName, target, protocol string
	)
	update := getCmd(a, "update SERVICE", "Change a service's name, target or protocol",
		"  connect services update web --target localhost:3001 --protocol http", 1,
		withService(func(ctx context.Context, c *client.Client, svc *client.Service, _ []string) (*client.Service, error) {
			var req client.UpdateServiceRequest
			if newName != "" {
				req.Name = &newName
			}
			if target != "" {
				host, port, err := parseTarget(target)
				if err != nil {
					return nil, err
				}
				req.TargetHost, req.TargetPort = &host, &port
			}
			if protocol != "" {
				req.Protocol = &protocol
			}
			return c.UpdateService(ctx, svc.ID, req)
		}))
	update.Flags().StringVar(&newName, "rename", "", "new service name")
	update.Flags().StringVar(&target, "target", "", "new HOST:PORT")
	update.Flags().StringVar(&protocol, "protocol", "", "new protocol (auto|tcp|http|https)")
	checkNotEmpty(update, "rename", "target", "protocol")

	var reach client.ReachRequest
	reachCheck := getCmd(a, "reach SERVICE --from AGENT_ID", "Check a service from another agent, through the edge",
		"  connect services reach postgres --from 6f1c… --mode tcp", 1,
		withService(func(ctx context.Context, c *client.Client, svc *client.Service, _ []string) (*client.Diagnostic, error) {
			if reach.SourceAgentID == "" {
				return nil, usageErrorf("--from AGENT_ID is required")
			}
			return c.ReachService(ctx, svc.ID, reach)
		}))
	reachCheck.Flags().StringVar(&reach.SourceAgentID, "from", "", "id of the agent that runs the check")
	reachCheck.Flags().StringVar(&reach.Mode, "mode", "", "tcp, tls or http")
	reachCheck.Flags().IntVar(&reach.TimeoutMs, "timeout-ms", 0, "timeout in ms (1000-30000)")
	checkRange(reachCheck, "timeout-ms", 1000, 30000, "ms")

	return group("services", "Manage services (exposed targets)", ls, get, rm, check, diags, health, public, update, reachCheck)
}
