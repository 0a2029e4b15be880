package agent

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/privateconnect/pc/internal/tunnel"
)

// Command is a command sent to the agent through the API
// (POST /v1/agents/:id/command).
type Command struct {
	ID      string
	Action  string // status, expose, unexpose, reach, diagnose, restart, stop
	Params  json.RawMessage
	Timeout time.Duration
}

// Message is a durable message from another agent of the workspace.
type Message struct {
	ID            string          `json:"id"`
	FromAgentID   string          `json:"fromAgentId"`
	Channel       string          `json:"channel"`
	Type          string          `json:"type"`
	Payload       json.RawMessage `json:"payload"`
	CorrelationID string          `json:"correlationId,omitempty"`
	CreatedAt     time.Time       `json:"createdAt"`
}

// ErrUnsupported is returned for commands the agent has no handler for.
var ErrUnsupported = errors.New("command not supported by this agent")

// runCommand executes one command and sends its result to the edge.
func (a *Agent) runCommand(ec *edgeConn, write func(*tunnel.Control) error, c *tunnel.Control) {
	timeout := time.Duration(c.Timeout) * time.Second
	if timeout <= 0 || timeout > 5*time.Minute {
		timeout = 30 * time.Second
	}
	ctx, cancel := context.WithTimeout(a.runCtx, timeout)
	defer cancel()
	cmd := Command{ID: c.ID, Action: c.Action, Params: c.Payload, Timeout: timeout}
	var result any
	var err error
	handled := false
	if a.cfg.OnCommand != nil {
		result, handled, err = a.cfg.OnCommand(ctx, cmd)
	}
	if !handled {
		result, err = a.builtinCommand(ctx, cmd)
	}
	out := &tunnel.Control{Type: tunnel.CtlCommandResult, ID: c.ID, OK: err == nil}
	if err != nil {
		out.Error = err.Error()
	} else if result != nil {
		out.Payload, _ = json.Marshal(result)
	}
	if werr := write(out); werr != nil {
		a.log.Warn("could not send a command result", "command", c.ID, "err", werr)
	}
	if err == nil && c.Action == "restart" {
		a.reconnectAll()
	}
	if err == nil && c.Action == "stop" {
		a.stopWith(ErrStopped)
	}
}

// builtinCommand runs the commands every agent understands.
func (a *Agent) builtinCommand(ctx context.Context, c Command) (any, error) {
	switch c.Action {
	case "status":
		a.mu.Lock()
		svcs := make([]map[string]any, 0, len(a.services))
		for id, t := range a.services {
			svcs = append(svcs, map[string]any{"id": id.String(), "name": t.name, "target": t.addr, "protocol": t.protocol})
		}
		a.mu.Unlock()
		return map[string]any{"agentId": a.cfg.AgentID, "software": a.cfg.Software, "edges": a.Connected(), "services": svcs}, nil
	case "diagnose":
		var p checkParams
		if err := json.Unmarshal(c.Params, &p); err != nil {
			return nil, fmt.Errorf("bad params: %w", err)
		}
		return Diagnose(ctx, p.TargetHost, p.TargetPort, p.Protocol), nil
	case "reach":
		var p checkParams
		if err := json.Unmarshal(c.Params, &p); err != nil {
			return nil, fmt.Errorf("bad params: %w", err)
		}
		return a.reachCheck(ctx, p), nil
	case "restart", "stop":
		return map[string]any{"ok": true}, nil
	default:
		return nil, ErrUnsupported
	}
}

// checkParams are the params of diagnose and reach commands.
type checkParams struct {
	ServiceID  string `json:"serviceId"`
	TargetHost string `json:"targetHost"`
	TargetPort int    `json:"targetPort"`
	Protocol   string `json:"protocol"`
	Mode       string `json:"mode"`
	TimeoutMs  int    `json:"timeoutMs"`
}

// reconnectAll drops every edge session; they reconnect at once.
func (a *Agent) reconnectAll() {
	for _, ec := range a.liveSessions() {
		ec.close()
	}
}

// Check is the result of a diagnostic as the API reports it.
type Check struct {
	DNS     DNSCheck   `json:"dns"`
	TCP     TCPCheck   `json:"tcp"`
	TLS     *TLSCheck  `json:"tls"`
	HTTP    *HTTPCheck `json:"http"`
	Status  string     `json:"status"` // ok|degraded|down
	Message string     `json:"message"`
}

// DNSCheck is the name resolution step.
type DNSCheck struct {
	Status    string   `json:"status"`
	Addresses []string `json:"addresses"`
}

// TCPCheck is the connection step.
type TCPCheck struct {
	Status    string  `json:"status"`
	LatencyMs float64 `json:"latencyMs"`
}

// TLSCheck describes the service's certificate.
type TLSCheck struct {
	Status          string    `json:"status"`
	Issuer          string    `json:"issuer,omitempty"`
	Subject         string    `json:"subject,omitempty"`
	NotAfter        time.Time `json:"notAfter,omitempty"`
	DaysUntilExpiry int       `json:"daysUntilExpiry"`
	Error           string    `json:"error,omitempty"`
}

// HTTPCheck is an HTTP GET / against the service.
type HTTPCheck struct {
	Status     string  `json:"status"`
	StatusCode int     `json:"statusCode"`
	LatencyMs  float64 `json:"latencyMs"`
	Error      string  `json:"error,omitempty"`
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// Diagnose checks a target from where the agent runs: DNS, TCP, TLS (https
// or port 443) and HTTP (http/https/auto).
func Diagnose(ctx context.Context, host string, port int, protocol string) *Check {
	c := &Check{Status: "ok"}
	addrs, err := net.DefaultResolver.LookupHost(ctx, host)
	if err != nil {
		c.DNS = DNSCheck{Status: "error"}
		c.TCP = TCPCheck{Status: "skipped"}
		c.Status, c.Message = "down", "DNS lookup failed: "+err.Error()
		return c
	}
	c.DNS = DNSCheck{Status: "ok", Addresses: addrs}
	addr := net.JoinHostPort(host, strconv.Itoa(port))
	dial := func(ctx context.Context) (net.Conn, error) {
		d := net.Dialer{Timeout: 5 * time.Second}
		return d.DialContext(ctx, "tcp", addr)
	}
	diagnoseConn(ctx, c, host, port, protocol, dial)
	return c
}

// diagnoseConn runs the TCP, TLS and HTTP steps over dial.
func diagnoseConn(ctx context.Context, c *Check, host string, port int, protocol string, dial func(context.Context) (net.Conn, error)) {
	start := time.Now()
	conn, err := dial(ctx)
	if err != nil {
		c.TCP = TCPCheck{Status: "error", LatencyMs: ms(time.Since(start))}
		c.Status, c.Message = "down", "TCP connect failed: "+err.Error()
		return
	}
	conn.Close()
	c.TCP = TCPCheck{Status: "ok", LatencyMs: ms(time.Since(start))}
	useTLS := protocol == "https" || (protocol != "http" && port == 443)
	var tlsRes *TLSCheck
	if !useTLS && (protocol == "auto" || protocol == "") {
		// An auto target may speak TLS on any port; asked in plain HTTP, a
		// TLS server answers a 400 that would read as plain HTTP.
		if t := tlsCheck(ctx, host, dial); t.Status == "ok" {
			useTLS, tlsRes = true, t
		}
	}
	if useTLS {
		if tlsRes == nil {
			tlsRes = tlsCheck(ctx, host, dial)
		}
		c.TLS = tlsRes
		if c.TLS.Status != "ok" {
			c.Status, c.Message = "degraded", "TLS: "+c.TLS.Error
		} else if c.TLS.DaysUntilExpiry < 7 {
			c.Status, c.Message = "degraded", fmt.Sprintf("certificate expires in %d days", c.TLS.DaysUntilExpiry)
		}
	}
	if protocol == "http" || protocol == "https" || protocol == "auto" || protocol == "" {
		c.HTTP = httpCheck(ctx, host, port, useTLS, dial)
		switch {
		case c.HTTP.Status != "ok" && protocol != "auto" && protocol != "":
			c.Status, c.Message = "degraded", "HTTP: "+c.HTTP.Error
		case c.HTTP.StatusCode >= 500:
			c.Status, c.Message = "degraded", fmt.Sprintf("HTTP status %d", c.HTTP.StatusCode)
		}
	}
	if c.Message == "" {
		c.Message = "reachable"
	}
}

func tlsCheck(ctx context.Context, host string, dial func(context.Context) (net.Conn, error)) *TLSCheck {
	conn, err := dial(ctx)
	if err != nil {
		return &TLSCheck{Status: "error", Error: err.Error()}
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	tc := tls.Client(conn, &tls.Config{ServerName: host, InsecureSkipVerify: true}) //nolint:gosec // we report, not trust
	if err := tc.HandshakeContext(ctx); err != nil {
		return &TLSCheck{Status: "error", Error: err.Error()}
	}
	certs := tc.ConnectionState().PeerCertificates
	if len(certs) == 0 {
		return &TLSCheck{Status: "error", Error: "no certificate"}
	}
	cert := certs[0]
	return &TLSCheck{Status: "ok", Issuer: cert.Issuer.String(), Subject: cert.Subject.String(), NotAfter: cert.NotAfter.UTC(),
		DaysUntilExpiry: int(time.Until(cert.NotAfter).Hours() / 24)}
}

func httpCheck(ctx context.Context, host string, port int, useTLS bool, dial func(context.Context) (net.Conn, error)) *HTTPCheck {
	scheme := "http"
	if useTLS {
		scheme = "https"
	}
	tr := &http.Transport{
		DialContext:     func(ctx context.Context, _, _ string) (net.Conn, error) { return dial(ctx) },
		TLSClientConfig: &tls.Config{ServerName: host, InsecureSkipVerify: true}, //nolint:gosec // a reachability check
	}
	defer tr.CloseIdleConnections()
	cl := &http.Client{Transport: tr, Timeout: 10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	start := time.Now()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, scheme+"://"+net.JoinHostPort(host, strconv.Itoa(port))+"/", nil)
	resp, err := cl.Do(req)
	if err != nil {
		return &HTTPCheck{Status: "error", LatencyMs: ms(time.Since(start)), Error: err.Error()}
	}
	resp.Body.Close()
	return &HTTPCheck{Status: "ok", StatusCode: resp.StatusCode, LatencyMs: ms(time.Since(start))}
}

// reachCheck runs the same check from this agent through the edge to the
// service (agent → edge → the service's agent → target).
func (a *Agent) reachCheck(ctx context.Context, p checkParams) *Check {
	if p.TimeoutMs > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, time.Duration(p.TimeoutMs)*time.Millisecond)
		defer cancel()
	}
	c := &Check{Status: "ok", DNS: DNSCheck{Status: "skipped"}}
	protocol := "tcp"
	switch p.Mode {
	case "http":
		protocol = "http"
	case "tls":
		protocol = "https"
	}
	diagnoseConn(ctx, c, p.TargetHost, p.TargetPort, protocol, func(ctx context.Context) (net.Conn, error) {
		return a.Dial(ctx, p.ServiceID)
	})
	return c
}
