package agent_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"strconv"

	"github.com/privateconnect/pc/sdk/agent"
	"github.com/privateconnect/pc/sdk/client"
)

// A program that embeds an agent: it provisions an identity with the API
// client, registers a service it serves on a loopback port, runs the agent,
// and shares the service. (The agent dials a "host:port" target; a handler
// inside the process is served through a listener of its own.)
func Example() {
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	api := client.New(os.Getenv("PC_CONTROL_URL"), os.Getenv("PC_API_KEY"))

	// The service: any HTTP handler on a loopback port.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	go func() {
		_ = http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "hello") }))
	}()

	// An identity (keep AgentID and Token to run the same agent again).
	id, err := api.ProvisionAgent(ctx, client.ProvisionRequest{Name: "embedded", ClientType: "sdk"})
	if err != nil {
		log.Fatal(err)
	}
	var edges []string
	for _, e := range id.Edges {
		edges = append(edges, e.TunnelAddr) // "host:port" or "tls://host:port"
	}
	host, port, _ := net.SplitHostPort(ln.Addr().String())
	p, _ := strconv.Atoi(port)
	svc, _, err := api.RegisterService(ctx, client.RegisterServiceRequest{AgentID: id.AgentID, Name: "hello", TargetHost: host, TargetPort: p})
	if err != nil {
		log.Fatal(err)
	}

	a, err := agent.New(agent.Config{
		AgentID: id.AgentID, Token: id.Token, Edges: edges,
		AllowedTargets: []string{ln.Addr().String()}, // dial nothing else, whatever an edge says
		OnEvent:        func(e agent.Event) { log.Printf("agent: %s %s %s", e.Kind, e.Edge, e.Message) },
	})
	if err != nil {
		log.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	if err := a.WaitConnected(ctx); err != nil {
		log.Fatal(err)
	}
	sh, err := api.CreateShare(ctx, svc.ID, client.CreateShareRequest{ExpiresIn: "1h"})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("shared at", sh.ShareURL)

	// ... later: cancel ctx to stop. Run says why it stopped by itself.
	stop()
	var rejected *agent.RejectedError
	switch err := <-done; {
	case err == nil: // ctx was cancelled
	case errors.Is(err, agent.ErrStopped): // a stop command from the control plane
	case errors.Is(err, agent.ErrReplaced): // another process runs this identity
	case errors.As(err, &rejected): // every edge refused the agent for good (an expired token)
		log.Fatal(err)
	}
}
