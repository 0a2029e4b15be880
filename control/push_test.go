package control_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/privateconnect/pc/control"
	"github.com/privateconnect/pc/control/controltest"
	"github.com/privateconnect/pc/control/store/memstore"
	"github.com/privateconnect/pc/edge/routes"
	"github.com/privateconnect/pc/internal/config"
)

type env struct {
	t    *testing.T
	base string
	key  string
	srv  *control.Server
}

func start(t *testing.T, cfg control.Config) *env {
	t.Helper()
	srv := controltest.Start(t, cfg)
	key, _ := srv.BootstrapAdminKey()
	return &env{t: t, base: srv.URL(), key: key, srv: srv.Server}
}

func (e *env) call(method, path string, body any) map[string]any {
	e.t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, e.base+path, rd)
	req.Header.Set("x-api-key", e.key)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	res, err := http.DefaultClient.Do(req)
	require.NoError(e.t, err)
	defer res.Body.Close()
	var out struct {
		Data map[string]any `json:"data"`
	}
	raw, _ := io.ReadAll(res.Body)
	require.Less(e.t, res.StatusCode, 300, "%s %s: %s", method, path, raw)
	require.NoError(e.t, json.Unmarshal(raw, &out))
	return out.Data
}

// stream opens the edge config stream and delivers its messages.
func (e *env) stream(token, epoch string, version int64) (<-chan config.Message, func()) {
	e.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", fmt.Sprintf("%s/v1/edges/config?epoch=%s&version=%d", e.base, epoch, version), nil)
	req.Header.Set("Authorization", "Bearer "+token)
	res, err := http.DefaultClient.Do(req)
	require.NoError(e.t, err)
	require.Equal(e.t, 200, res.StatusCode)
	require.Equal(e.t, "application/x-ndjson", res.Header.Get("Content-Type"))
	ch := make(chan config.Message, 64)
	go func() {
		defer close(ch)
		defer res.Body.Close()
		sc := bufio.NewScanner(res.Body)
		sc.Buffer(make([]byte, 1<<20), config.MaxMessageBytes)
		for sc.Scan() {
			var m config.Message
			if json.Unmarshal(sc.Bytes(), &m) != nil {
				return
			}
			ch <- m
		}
	}()
	return ch, cancel
}

func next(t *testing.T, ch <-chan config.Message, within time.Duration) config.Message {
	t.Helper()
	for {
		select {
		case m, ok := <-ch:
			require.True(t, ok, "stream ended")
			if m.Type == config.MsgPing {
				continue
			}
			return m
		case <-time.After(within):
			t.Fatalf("no message within %s", within)
		}
	}
}

func TestConfigPushStream(t *testing.T) {
	e := start(t, control.Config{})
	edgeID, token, err := e.srv.EnsureEdge(context.Background(), "local", "http://127.0.0.1:8080", "127.0.0.1:7070")
	require.NoError(t, err)

	agent := e.call("POST", "/v1/agents/provision", map[string]any{})
	svc := e.call("POST", "/v1/services/register", map[string]any{"agentId": agent["agentId"], "name": "web", "targetHost": "127.0.0.1", "targetPort": 9000})
	share := e.call("POST", "/v1/services/"+svc["id"].(string)+"/shares", map[string]any{"name": "s", "allowedMethods": []string{"GET"}})
	shareID := share["id"].(string)

	ch, stop := e.stream(token, "", 0)
	snap := next(t, ch, 2*time.Second)
	require.Equal(t, config.MsgSnapshot, snap.Type)
	assert.Equal(t, edgeID, snap.EdgeID, "first message names the edge")
	require.NotNil(t, snap.Snapshot)
	epoch, version := snap.Epoch, snap.Version
	assert.Equal(t, epoch, snap.Snapshot.Epoch)
	require.Len(t, snap.Snapshot.Shares, 1)
	assert.Equal(t, shareID, snap.Snapshot.Shares[0].ID)
	assert.Equal(t, []string{"GET"}, snap.Snapshot.Shares[0].AllowedMethods)
	assert.Len(t, snap.Snapshot.Services, 1)
	assert.Len(t, snap.Snapshot.Agents, 1)
	assert.Len(t, snap.Snapshot.Edges, 1)
	assert.Equal(t, 5000, snap.Snapshot.Settings.ShareRateLimitPerMin)

	// A revocation arrives as a change well under a second.
	t0 := time.Now()
	e.call("DELETE", "/v1/shares/"+shareID, nil)
	m := next(t, ch, time.Second)
	lat := time.Since(t0)
	require.Equal(t, config.MsgChanges, m.Type)
	require.Len(t, m.Changes, 1)
	c := m.Changes[0]
	assert.Equal(t, config.KindShare, c.Kind)
	assert.Equal(t, config.OpUpsert, c.Op)
	require.NotNil(t, c.Share)
	assert.True(t, c.Share.Revoked)
	assert.Greater(t, m.Version, version)
	assert.Equal(t, m.Version, c.Version)
	t.Logf("revocation propagated in %s", lat)
	assert.Less(t, lat, 500*time.Millisecond)
	version = m.Version

	// Deleting the service: a service delete change.
	e.call("DELETE", "/v1/services/"+svc["id"].(string), nil)
	m = next(t, ch, time.Second)
	require.NotEmpty(t, m.Changes)
	assert.Greater(t, m.Version, version)
	assert.Equal(t, config.OpDelete, m.Changes[0].Op)
	assert.Equal(t, config.KindService, m.Changes[0].Kind)
	version = m.Version
	stop()

	// Reconnecting with the current epoch and version: no snapshot.
	ch, stop = e.stream(token, epoch, version)
	m = next(t, ch, 2*time.Second)
	assert.Equal(t, config.MsgChanges, m.Type)
	assert.Empty(t, m.Changes)
	assert.Equal(t, version, m.Version)
	assert.Equal(t, edgeID, m.EdgeID)
	stop()

	// Reconnecting with an older version of this epoch: the missed changes.
	ch, stop = e.stream(token, epoch, version-1)
	m = next(t, ch, 2*time.Second)
	assert.Equal(t, config.MsgChanges, m.Type)
	require.Len(t, m.Changes, 1)
	stop()

	// A stale epoch (control restarted): a full snapshot, here the one
	// cached for the first stream, then at once the changes made since; the
	// edge's table built from them holds the revoked share (edges answer
	// 410) and no service.
	ch, stop = e.stream(token, "stale-epoch", version)
	m = next(t, ch, 2*time.Second)
	require.Equal(t, config.MsgSnapshot, m.Type)
	assert.Equal(t, edgeID, m.EdgeID)
	tb, err := routes.Build(m.Snapshot)
	require.NoError(t, err)
	for tb.Version < version {
		c := next(t, ch, 2*time.Second)
		if c.Type == config.MsgChanges {
			tb, err = tb.Apply(c.Version, c.Changes)
			require.NoError(t, err)
		}
	}
	sh, ok := tb.ShareByToken([]byte(share["token"].(string)))
	require.True(t, ok)
	assert.True(t, sh.Revoked, "revoked shares stay in snapshots (edges answer 410)")
	_, services, _ := tb.Counts()
	assert.Zero(t, services)
	stop()

	// A future version of this epoch cannot be trusted: snapshot.
	ch, stop = e.stream(token, epoch, version+100)
	assert.Equal(t, config.MsgSnapshot, next(t, ch, 2*time.Second).Type)
	stop()
}

func TestConfigStreamAuthAndShutdown(t *testing.T) {
	e := start(t, control.Config{})
	req, _ := http.NewRequest("GET", e.base+"/v1/edges/config", nil)
	req.Header.Set("Authorization", "Bearer wrong")
	res, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	res.Body.Close()
	assert.Equal(t, 401, res.StatusCode)

	_, token, err := e.srv.EnsureEdge(context.Background(), "local", "http://127.0.0.1:8080", "127.0.0.1:7070")
	require.NoError(t, err)
	// EnsureEdge is idempotent by name and rotates the token.
	_, token2, err := e.srv.EnsureEdge(context.Background(), "local", "http://127.0.0.1:8080", "127.0.0.1:7070")
	require.NoError(t, err)
	assert.NotEqual(t, token, token2)
	req, _ = http.NewRequest("GET", e.base+"/v1/edges/config", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	res, err = http.DefaultClient.Do(req)
	require.NoError(t, err)
	res.Body.Close()
	assert.Equal(t, 401, res.StatusCode, "old token rotated out")
	// An edge process names itself with letters, digits, '-' and '_'.
	for q, want := range map[string]int{"?instance=" + strings.Repeat("a", 65): 400, "?instance=a%20b": 400, "?version=-1": 400} {
		req, _ = http.NewRequest("GET", e.base+"/v1/edges/config"+q, nil)
		req.Header.Set("Authorization", "Bearer "+token2)
		res, err = http.DefaultClient.Do(req)
		require.NoError(t, err)
		res.Body.Close()
		assert.Equal(t, want, res.StatusCode, q)
	}
	// An open stream does not keep the server from stopping (checked by start's cleanup).
	ch, _ := e.stream(token2, "", 0)
	next(t, ch, 2*time.Second)
}

func TestVersionNeverGoesBack(t *testing.T) {
	kv := memstore.New()
	dir := t.TempDir()
	var last int64
	for i := 0; i < 2; i++ {
		s := controltest.Start(t, control.Config{Store: kv, DataDir: dir})
		_, tok, err := s.EnsureEdge(context.Background(), "e", "http://x:1", "x:2")
		require.NoError(t, err)
		e := &env{t: t, base: s.URL(), srv: s.Server}
		ch, stop := e.stream(tok, "", 0)
		m := next(t, ch, 2*time.Second)
		assert.Greater(t, m.Version, last)
		last = m.Version
		stop()
		s.Stop()
	}
}
