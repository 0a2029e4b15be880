package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/privateconnect/pc/internal/syncbuf"
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

// TestUnusableListedEdgeIsSkipped: an edge of the control plane's list the
// agent cannot use (plain TCP off loopback, a malformed address) is skipped
// with a warning while another is usable: one edge registered wrong does
// not stop every agent at its next start. Alone, it is still an error; a
// StaticEdges address (the user's own) always is.
func TestUnusableListedEdgeIsSkipped(t *testing.T) {
	var logs syncbuf.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	a, err := New(Config{AgentID: testAgentID, Token: "t", Logger: log,
		Edges: []string{"edge.example.com:7070", "127.0.0.1:7070", "http://x"}})
	if err != nil {
		t.Fatalf("one usable edge among unusable ones: %v", err)
	}
	if !slices.Equal(a.cfg.Edges, []string{"127.0.0.1:7070"}) {
		t.Fatalf("edges %v, want the usable one", a.cfg.Edges)
	}
	for _, want := range []string{"edge.example.com:7070", "http://x"} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("no warning names %s: %s", want, logs.String())
		}
	}
	var pe *PlaintextError
	if _, err := New(Config{AgentID: testAgentID, Token: "t", Edges: []string{"edge.example.com:7070", "http://x"}}); !errors.As(err, &pe) {
		t.Errorf("no usable edge: err = %v, want the first one's PlaintextError", err)
	}
	if _, err := New(Config{AgentID: testAgentID, Token: "t", Edges: []string{"127.0.0.1:7070"}, StaticEdges: []string{"edge.example.com:7070"}}); !errors.As(err, &pe) {
		t.Errorf("an unusable static edge: err = %v, want a PlaintextError", err)
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
	a.setEdges(nil, []string{"192.0.2.10:7070"})
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

// A target VerifyTarget refused is not asked about again for RefusalTTL:
// streams to it fail at once instead of each costing a call to the API.
func TestRefusedTargetIsRemembered(t *testing.T) {
	var mu sync.Mutex
	calls := map[string]int{}
	count := func(addr string) int {
		mu.Lock()
		defer mu.Unlock()
		return calls[addr]
	}
	a, err := New(Config{AgentID: testAgentID, Token: "t", Edges: []string{"127.0.0.1:7070"}, AllowedTargets: []string{"127.0.0.1:1"},
		VerifyTarget: func(_ context.Context, _, addr string) bool {
			mu.Lock()
			calls[addr]++
			mu.Unlock()
			return addr == "127.0.0.1:2"
		}})
	if err != nil {
		t.Fatal(err)
	}
	a.runCtx = context.Background()
	id := uuid.New()
	const bad = "169.254.169.254:80"
	for range 3 {
		if !a.targetAllowed(id, "127.0.0.1:1") || !a.targetAllowed(id, "127.0.0.1:2") {
			t.Fatal("an allowed or verified target was refused")
		}
		if a.targetAllowed(id, bad) {
			t.Fatal("a refused target was allowed")
		}
	}
	if count("127.0.0.1:1") != 0 || count("127.0.0.1:2") != 1 || count(bad) != 1 {
		t.Fatalf("VerifyTarget calls = %v, want one for each target outside AllowedTargets", calls)
	}

	// Past the TTL the target is asked about again.
	a.refusedMu.Lock()
	for k := range a.refused {
		a.refused[k] = time.Now().Add(-time.Second)
	}
	a.refusedMu.Unlock()
	a.targetAllowed(id, bad)
	if count(bad) != 2 {
		t.Fatalf("after the TTL: %d calls, want 2", count(bad))
	}

	// The remembered refusals stay bounded whatever the edges send.
	for i := range 2 * maxRefusals {
		a.rememberRefusal(fmt.Sprint("k", i))
	}
	a.refusedMu.Lock()
	n := len(a.refused)
	a.refusedMu.Unlock()
	if n > maxRefusals {
		t.Fatalf("%d refusals remembered, want at most %d", n, maxRefusals)
	}
}

// TestMalformedEdgeAddresses: a share URL or a host without a port is
// named as a malformed address, not as a plain-TCP refusal.
func TestMalformedEdgeAddresses(t *testing.T) {
	for _, addr := range []string{"http://127.0.0.1:7070", "127.0.0.1", "tls://edge.example.com", "", "127.0.0.1:7070/x", ":7070"} {
		_, err := New(Config{AgentID: testAgentID, Token: "t", Edges: []string{addr}, AllowPlaintext: true})
		if err == nil || !strings.Contains(err.Error(), "want host:port or tls://host:port") {
			t.Errorf("%q: err = %v", addr, err)
		}
	}
	for _, addr := range []string{"127.0.0.1:7070", "tls://edge.example.com:443", "tcp://127.0.0.1:7070", "[::1]:7070"} {
		if _, err := New(Config{AgentID: testAgentID, Token: "t", Edges: []string{addr}}); err != nil {
			t.Errorf("%q: %v", addr, err)
		}
	}
}

// TestEventRecordsAreDebugWithOnEvent: the log record of an event is at
// its level without OnEvent, and at debug level with it (the caller
// reports the event: connect printed each rejection twice).
func TestEventRecordsAreDebugWithOnEvent(t *testing.T) {
	for _, withEvents := range []bool{false, true} {
		var logs syncbuf.Buffer
		cfg := Config{AgentID: testAgentID, Token: "t", Edges: []string{"127.0.0.1:1"},
			MinBackoff: 5 * time.Millisecond, MaxBackoff: 10 * time.Millisecond,
			Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))}
		if withEvents {
			cfg.OnEvent = func(Event) {}
		}
		a, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { _ = a.Run(ctx); close(done) }()
		for !a.runCtxSet() {
			time.Sleep(time.Millisecond)
		}
		a.setEdges(nil, []string{"192.0.2.10:7070"}) // pushed later: refused with an event
		want := "level=ERROR msg=\"not connecting to a plain-TCP edge off loopback\""
		if withEvents {
			want = "level=DEBUG msg=\"not connecting to a plain-TCP edge off loopback\""
		}
		deadline := time.Now().Add(5 * time.Second)
		for !strings.Contains(logs.String(), want) && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
		}
		cancel()
		<-done
		if !strings.Contains(logs.String(), want) {
			t.Fatalf("OnEvent set: %v; want %s in:\n%s", withEvents, want, logs.String())
		}
	}
}
