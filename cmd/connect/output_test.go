package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/privateconnect/pc/sdk/agent"
	"github.com/privateconnect/pc/sdk/client"
)

func TestPrintDetail(t *testing.T) {
	at := time.Date(2026, 3, 2, 10, 0, 0, 0, time.FixedZone("CET", 3600))
	var buf bytes.Buffer
	require.NoError(t, printDetail(&buf, &client.Agent{
		ID: "a1", Name: "laptop", IsOnline: true, LastSeenAt: &at, ConnectedEdges: []string{"e1", "e2"},
		Capabilities: []client.Capability{{Name: "gpu", Metadata: json.RawMessage(`{"n": 1}`)}}, ServiceCount: 2,
	}))
	assert.Equal(t, "id              a1\n"+
		"name            laptop\n"+
		"isOnline        true\n"+
		"lastSeenAt      2026-03-02T09:00:00Z\n"+
		"connectedEdges  e1, e2\n"+
		"createdAt       \n"[:0]+ // zero times are left out
		"capabilities    [{\"name\":\"gpu\",\"metadata\":{\"n\":1}}]\n"+
		"serviceCount    2\n", buf.String())
}

func TestPrintListEmptyJSONIsArray(t *testing.T) {
	var out bytes.Buffer
	a := newApp(&out, &out, nil)
	a.jsonOut = true
	require.NoError(t, printList(a, []client.Edge(nil), "", edgeCols))
	assert.Equal(t, "[]\n", out.String())
}

func TestPrintErrorNonAPI(t *testing.T) {
	var errOut bytes.Buffer
	a := newApp(nil, &errOut, nil)
	assert.Equal(t, 1, a.printError(nil, errors.New("state file x is corrupt")))
	assert.Equal(t, "error: state file x is corrupt\n", errOut.String())
	errOut.Reset()
	assert.Equal(t, 2, a.printError(nil, fmt.Errorf("wrapped: %w", usageErrorf("bad"))))
	assert.Equal(t, "error: wrapped: bad\nRun 'connect --help' for usage.\n", errOut.String())
}

func TestHelpers(t *testing.T) {
	for in, want := range map[string]string{"localhost:3000": "localhost/3000", "db.internal:5432": "db.internal/5432", "8080": "localhost/8080", ":9000": "localhost/9000", "[::1]:443": "::1/443"} {
		h, p, err := parseTarget(in)
		require.NoError(t, err, in)
		assert.Equal(t, want, fmt.Sprintf("%s/%d", h, p), in)
	}
	for _, bad := range []string{"host:", "host:0", "host:70000", "x", "a:b:c"} {
		_, _, err := parseTarget(bad)
		assert.True(t, isUsage(err), bad)
	}
	assert.Equal(t, "postgres", defaultServiceName(5432))
	assert.Equal(t, "service-9999", defaultServiceName(9999))
	assert.Equal(t, "edge2", edgeHost([]client.AgentEdge{{TunnelAddr: "tls://edge2:7443"}}))
	assert.Equal(t, "512 B", humanBytes(512))
	assert.Equal(t, "1.5 MiB", humanBytes(3<<19))

	now := time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)
	got, err := parseSince("15m", now)
	require.NoError(t, err)
	assert.Equal(t, now.Add(-15*time.Minute), got)
	got, err = parseSince("2026-03-01T00:00:00Z", now)
	require.NoError(t, err)
	assert.Equal(t, time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC), got)
	_, err = parseSince("yesterday", now)
	assert.True(t, isUsage(err))

	assert.True(t, isUsage(errors.New(`unknown command "x" for "connect"`)))
	assert.True(t, isUsage(errors.New(`required flag(s) "name" not set`)))
	assert.False(t, isUsage(&client.APIError{StatusCode: 400, Message: "unknown flag in body"}))
}

func TestPanicIsAnErrorLine(t *testing.T) {
	h := newHarness(t)
	h.agentRun = func(context.Context, agent.Config) error { panic("boom") }
	provisionRoutes(h)
	h.ok("POST /v1/services/register", 201, webService)
	_, errOut, code := h.run("expose", "localhost:3000")
	assert.Equal(t, 1, code)
	assert.Contains(t, errOut, "error: internal error: boom\n")
	assert.NotContains(t, errOut, "goroutine")
}
