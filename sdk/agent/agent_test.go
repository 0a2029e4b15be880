package agent

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"
)

const testAgentID = "6a1f0c0e-7d4b-4a57-9a55-2f4c3f1b9d10"

func TestPlaintextEdgesOffLoopbackNeedAnOptIn(t *testing.T) {
	for _, tc := range []struct {
		edge  string
		allow bool
		ok    bool
	}{
		{"127.0.0.1:7070", false, true},
		{"localhost:7070", false, true},
		{"[::1]:7070", false, true},
		{"tls://edge.example.com:7070", false, true},
		{"edge.example.com:7070", false, false},
		{"tcp://10.1.2.3:7070", false, false},
		{"0.0.0.0:7070", false, false},
		{"edge.example.com:7070", true, true},
	} {
		_, err := New(Config{AgentID: testAgentID, Token: "t", Edges: []string{tc.edge}, AllowPlaintext: tc.allow})
		var pe *PlaintextError
		if tc.ok {
			if err != nil {
				t.Errorf("%s (allow=%v): %v", tc.edge, tc.allow, err)
			}
			continue
		}
		if !errors.As(err, &pe) || pe.Addr != tc.edge {
			t.Errorf("%s: err = %v, want a PlaintextError", tc.edge, err)
		}
	}
}

// An edge address pushed later (setEdges) gets the same check: one
// rejection event, no retry loop.
func TestPlaintextEdgePushedLaterIsRefusedOnce(t *testing.T) {
	var mu sync.Mutex
	var events []Event
	a, err := New(Config{AgentID: testAgentID, Token: "t", Edges: []string{"127.0.0.1:1"},
		MinBackoff: 5 * time.Millisecond, MaxBackoff: 10 * time.Millisecond,
		OnEvent: func(e Event) {
			mu.Lock()
			events = append(events, e)
			mu.Unlock()
		}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = a.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	for a.runCtxSet() == false {
		time.Sleep(time.Millisecond)
	}
	a.setEdges([]string{"192.0.2.10:7070"})
	time.Sleep(300 * time.Millisecond) // sixty backoff periods
	mu.Lock()
	defer mu.Unlock()
	n := 0
	for _, e := range events {
		if e.Edge == "192.0.2.10:7070" {
			n++
			if e.Kind != EventRejected {
				t.Errorf("event %q: %s", e.Kind, e.Message)
			}
		}
	}
	if n != 1 {
		t.Fatalf("%d events for the plaintext edge, want exactly 1 (no retries)", n)
	}
}

func (a *Agent) runCtxSet() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.runCtx != nil
}
