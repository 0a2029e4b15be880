package storetest

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/privateconnect/pc/control/store"
)

var t0 = time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)

func view(t *testing.T, kv store.KV, fn func(store.Tx) error) error {
	t.Helper()
	return kv.View(ctx, fn)
}

func testWorkspaces(t *testing.T, kv store.KV) {
	update(t, kv, func(tx store.Tx) error {
		return store.CreateWorkspace(tx, &store.Workspace{ID: "ws-a", Name: "default", CreatedAt: t0})
	})
	err := kv.Update(ctx, func(tx store.Tx) error {
		return store.CreateWorkspace(tx, &store.Workspace{ID: "ws-b", Name: "default"})
	})
	var ce *store.ConflictError
	require.ErrorAs(t, err, &ce)
	assert.Equal(t, "name", ce.Field)
	require.NoError(t, view(t, kv, func(tx store.Tx) error {
		w, err := store.GetWorkspaceByName(tx, "default")
		require.NoError(t, err)
		assert.Equal(t, "ws-a", w.ID)
		assert.True(t, w.CreatedAt.Equal(t0))
		_, err = store.GetWorkspace(tx, "nope")
		assert.ErrorIs(t, err, store.ErrNotFound)
		ws, next, err := store.ListWorkspaces(tx, "", 10)
		require.NoError(t, err)
		assert.Len(t, ws, 1)
		assert.Empty(t, next)
		return nil
	}))
}

func testAPIKeys(t *testing.T, kv store.KV) {
	k := &store.APIKey{ID: "k1", WorkspaceID: "wa", Name: "ci", KeyHash: "h1", Scopes: []string{"read"}, CreatedAt: t0}
	update(t, kv, func(tx store.Tx) error { return store.CreateAPIKey(tx, k) })
	// Same name in the same workspace: conflict; in another workspace: fine.
	err := kv.Update(ctx, func(tx store.Tx) error {
		return store.CreateAPIKey(tx, &store.APIKey{ID: "k2", WorkspaceID: "wa", Name: "ci", KeyHash: "h2"})
	})
	require.ErrorIs(t, err, store.ErrConflict)
	update(t, kv, func(tx store.Tx) error {
		return store.CreateAPIKey(tx, &store.APIKey{ID: "k3", WorkspaceID: "wb", Name: "ci", KeyHash: "h3"})
	})
	require.NoError(t, view(t, kv, func(tx store.Tx) error {
		got, err := store.GetAPIKeyByHash(tx, "h1")
		require.NoError(t, err)
		assert.Equal(t, "k1", got.ID)
		_, err = store.GetAPIKey(tx, "wb", "k1")
		assert.ErrorIs(t, err, store.ErrNotFound, "isolation")
		return nil
	}))
	update(t, kv, func(tx store.Tx) error { _, err := store.RevokeAPIKey(tx, "wa", "k1", t0); return err })
	require.NoError(t, view(t, kv, func(tx store.Tx) error {
		_, err := store.GetAPIKeyByHash(tx, "h1")
		assert.ErrorIs(t, err, store.ErrNotFound, "revoked key no longer authenticates")
		keys, _, err := store.ListAPIKeys(tx, "wa", "", 0, t0)
		require.NoError(t, err)
		assert.Empty(t, keys, "revoked keys are not listed")
		return nil
	}))
	// The name is free again.
	update(t, kv, func(tx store.Tx) error {
		return store.CreateAPIKey(tx, &store.APIKey{ID: "k4", WorkspaceID: "wa", Name: "ci", KeyHash: "h4"})
	})
}

func testAgents(t *testing.T, kv store.KV) {
	a := &store.Agent{ID: "ag1", WorkspaceID: "wa", Name: "laptop", TokenHash: "th", CreatedAt: t0}
	update(t, kv, func(tx store.Tx) error { return store.PutAgent(tx, a) })
	a.Name = "renamed"
	update(t, kv, func(tx store.Tx) error { return store.PutAgent(tx, a) })
	err := kv.Update(ctx, func(tx store.Tx) error {
		return store.PutAgent(tx, &store.Agent{ID: "ag1", WorkspaceID: "wb"})
	})
	require.ErrorIs(t, err, store.ErrConflict, "an id owned by another workspace")
	require.NoError(t, view(t, kv, func(tx store.Tx) error {
		got, err := store.LookupAgent(tx, "ag1")
		require.NoError(t, err)
		assert.Equal(t, "renamed", got.Name)
		_, err = store.GetAgent(tx, "wb", "ag1")
		assert.ErrorIs(t, err, store.ErrNotFound)
		list, _, err := store.ListAgents(tx, "wb", "", 0, nil)
		require.NoError(t, err)
		assert.Empty(t, list)
		return nil
	}))
}

func svc(ws, id, name, agent string) *store.Service {
	return &store.Service{ID: id, WorkspaceID: ws, AgentID: agent, Name: name, TargetHost: "127.0.0.1", TargetPort: 80, Protocol: "http", CreatedAt: t0}
}

func testServices(t *testing.T, kv store.KV) {
	update(t, kv, func(tx store.Tx) error { return store.CreateService(tx, svc("wa", "s1", "web", "ag"), 23000, 23002) })
	update(t, kv, func(tx store.Tx) error { return store.CreateService(tx, svc("wa", "s2", "db", "ag"), 23000, 23002) })
	err := kv.Update(ctx, func(tx store.Tx) error { return store.CreateService(tx, svc("wa", "s3", "web", "ag"), 23000, 23002) })
	require.ErrorIs(t, err, store.ErrConflict, "name unique per workspace")
	update(t, kv, func(tx store.Tx) error { return store.CreateService(tx, svc("wb", "s4", "web", "ag"), 23000, 23002) })
	err = kv.Update(ctx, func(tx store.Tx) error { return store.CreateService(tx, svc("wb", "s5", "x", "ag"), 23000, 23002) })
	require.ErrorIs(t, err, store.ErrExhausted, "port range used up")

	var ports []int
	require.NoError(t, view(t, kv, func(tx store.Tx) error {
		for _, p := range [][2]string{{"wa", "s1"}, {"wa", "s2"}, {"wb", "s4"}} {
			s, err := store.GetService(tx, p[0], p[1])
			require.NoError(t, err)
			ports = append(ports, s.TunnelPort)
		}
		_, err := store.GetService(tx, "wb", "s1")
		assert.ErrorIs(t, err, store.ErrNotFound)
		s, err := store.GetServiceByName(tx, "wa", "db")
		require.NoError(t, err)
		assert.Equal(t, "s2", s.ID)
		return nil
	}))
	assert.Equal(t, []int{23000, 23001, 23002}, ports)

	// Deleting frees the port and the name; the next allocation reuses the gap.
	update(t, kv, func(tx store.Tx) error { _, err := store.DeleteService(tx, "wa", "s1", t0); return err })
	update(t, kv, func(tx store.Tx) error { return store.CreateService(tx, svc("wb", "s6", "web2", "ag"), 23000, 23002) })
	update(t, kv, func(tx store.Tx) error { return store.CreateService(tx, svc("wa", "s7", "web", "ag"), 23000, 23010) })
	require.NoError(t, view(t, kv, func(tx store.Tx) error {
		s, err := store.GetService(tx, "wb", "s6")
		require.NoError(t, err)
		assert.Equal(t, 23000, s.TunnelPort)
		return nil
	}))

	// Rename and subdomains.
	update(t, kv, func(tx store.Tx) error {
		s, err := store.GetService(tx, "wa", "s2")
		if err != nil {
			return err
		}
		s.Name, s.Subdomain = "postgres", "pg"
		return store.UpdateService(tx, s)
	})
	err = kv.Update(ctx, func(tx store.Tx) error {
		s, _ := store.GetService(tx, "wb", "s4")
		s.Subdomain = "pg"
		return store.UpdateService(tx, s)
	})
	var ce *store.ConflictError
	require.ErrorAs(t, err, &ce)
	assert.Equal(t, "subdomain", ce.Field)
	err = kv.Update(ctx, func(tx store.Tx) error {
		s, _ := store.GetService(tx, "wa", "s7")
		s.Name = "postgres"
		return store.UpdateService(tx, s)
	})
	require.ErrorIs(t, err, store.ErrConflict)
	update(t, kv, func(tx store.Tx) error { return store.CreateService(tx, svc("wa", "s8", "db", "ag"), 23000, 23010) })
}

func testShares(t *testing.T, kv store.KV) {
	update(t, kv, func(tx store.Tx) error {
		if err := store.PutAgent(tx, &store.Agent{ID: "ag", WorkspaceID: "wa"}); err != nil {
			return err
		}
		if err := store.CreateService(tx, svc("wa", "s1", "web", "ag"), 23000, 23999); err != nil {
			return err
		}
		if err := store.CreateService(tx, svc("wa", "s2", "db", "other"), 23000, 23999); err != nil {
			return err
		}
		for i := 0; i < 3; i++ {
			if err := store.CreateShare(tx, &store.Share{ID: fmt.Sprintf("sh%d", i), WorkspaceID: "wa", ServiceID: "s1", TokenHash: fmt.Sprintf("tok%d", i), CreatedAt: t0}); err != nil {
				return err
			}
		}
		return store.CreateShare(tx, &store.Share{ID: "sh9", WorkspaceID: "wa", ServiceID: "s2", TokenHash: "tok9"})
	})
	err := kv.Update(ctx, func(tx store.Tx) error {
		return store.CreateShare(tx, &store.Share{ID: "dup", WorkspaceID: "wa", ServiceID: "s1", TokenHash: "tok1"})
	})
	require.ErrorIs(t, err, store.ErrConflict)
	require.NoError(t, view(t, kv, func(tx store.Tx) error {
		sh, err := store.GetShareByTokenHash(tx, "tok2")
		require.NoError(t, err)
		assert.Equal(t, "sh2", sh.ID)
		_, err = store.GetShare(tx, "wb", "sh2")
		assert.ErrorIs(t, err, store.ErrNotFound)
		page, next, err := store.ListServiceShares(tx, "wa", "s1", "", 2)
		require.NoError(t, err)
		assert.Len(t, page, 2)
		require.NotEmpty(t, next)
		page, next, err = store.ListServiceShares(tx, "wa", "s1", next, 2)
		require.NoError(t, err)
		assert.Len(t, page, 1)
		assert.Empty(t, next)
		return nil
	}))
	for i, want := range []bool{true, false} { // a second revocation, even at the same instant, is not one
		update(t, kv, func(tx store.Tx) error {
			_, revoked, err := store.RevokeShare(tx, "wa", "sh0", t0)
			assert.Equal(t, want, revoked, "revocation %d", i+1)
			return err
		})
	}
	// Deleting the agent deletes its services and revokes their shares.
	var nsvc, nsh int
	update(t, kv, func(tx store.Tx) error {
		var err error
		nsvc, nsh, err = store.DeleteAgent(tx, "wa", "ag", t0.Add(time.Hour))
		return err
	})
	assert.Equal(t, 1, nsvc)
	assert.Equal(t, 2, nsh, "sh0 was already revoked")
	require.NoError(t, view(t, kv, func(tx store.Tx) error {
		sh, err := store.GetShareByTokenHash(tx, "tok1")
		require.NoError(t, err)
		assert.NotNil(t, sh.RevokedAt, "revoked shares remain known so edges answer 410")
		sh0, _ := store.GetShare(tx, "wa", "sh0")
		assert.True(t, sh0.RevokedAt.Equal(t0), "first revocation time kept")
		_, err = store.GetService(tx, "wa", "s1")
		assert.ErrorIs(t, err, store.ErrNotFound)
		_, err = store.LookupAgent(tx, "ag")
		assert.ErrorIs(t, err, store.ErrNotFound)
		other, err := store.GetShare(tx, "wa", "sh9")
		require.NoError(t, err)
		assert.Nil(t, other.RevokedAt)
		return nil
	}))
}

func testPagination(t *testing.T, kv store.KV) {
	update(t, kv, func(tx store.Tx) error {
		for i := 0; i < 25; i++ {
			if err := store.PutAgent(tx, &store.Agent{ID: fmt.Sprintf("a%02d", i), WorkspaceID: "wa", Label: map[bool]string{true: "even", false: "odd"}[i%2 == 0]}); err != nil {
				return err
			}
		}
		return store.PutAgent(tx, &store.Agent{ID: "zz", WorkspaceID: "wb"})
	})
	var all []string
	cursor := ""
	pages := 0
	for {
		var page []store.Agent
		var next string
		require.NoError(t, view(t, kv, func(tx store.Tx) error {
			var err error
			page, next, err = store.ListAgents(tx, "wa", cursor, 10, nil)
			return err
		}))
		pages++
		for _, a := range page {
			all = append(all, a.ID)
		}
		if next == "" {
			break
		}
		cursor = next
	}
	assert.Equal(t, 3, pages)
	assert.Len(t, all, 25)
	assert.Equal(t, "a00", all[0])
	assert.Equal(t, "a24", all[24])
	// Exactly a full page: no next cursor.
	require.NoError(t, view(t, kv, func(tx store.Tx) error {
		even, next, err := store.ListAgents(tx, "wa", "", 13, func(a *store.Agent) bool { return a.Label == "even" })
		require.NoError(t, err)
		assert.Len(t, even, 13)
		assert.Empty(t, next)
		return nil
	}))
}

func testEdges(t *testing.T, kv store.KV) {
	e := &store.Edge{ID: "e1", Name: "local", PublicURL: "http://127.0.0.1:8080", TunnelAddr: "127.0.0.1:7070", TokenHash: "et1", CreatedAt: t0}
	update(t, kv, func(tx store.Tx) error { return store.CreateEdge(tx, e) })
	err := kv.Update(ctx, func(tx store.Tx) error {
		return store.CreateEdge(tx, &store.Edge{ID: "e2", Name: "local", TokenHash: "et2"})
	})
	require.ErrorIs(t, err, store.ErrConflict)
	e.TokenHash = "et3"
	update(t, kv, func(tx store.Tx) error { return store.UpdateEdge(tx, e) })
	require.NoError(t, view(t, kv, func(tx store.Tx) error {
		_, err := store.GetEdgeByTokenHash(tx, "et1")
		assert.ErrorIs(t, err, store.ErrNotFound, "rotated token")
		got, err := store.GetEdgeByTokenHash(tx, "et3")
		require.NoError(t, err)
		assert.Equal(t, "e1", got.ID)
		got, err = store.GetEdgeByName(tx, "local")
		require.NoError(t, err)
		assert.Equal(t, "e1", got.ID)
		return nil
	}))
	update(t, kv, func(tx store.Tx) error { return store.DeleteEdge(tx, "e1") })
	require.NoError(t, view(t, kv, func(tx store.Tx) error {
		_, err := store.GetEdgeByTokenHash(tx, "et3")
		assert.ErrorIs(t, err, store.ErrNotFound)
		list, _, err := store.ListEdges(tx, "", 0)
		require.NoError(t, err)
		assert.Empty(t, list)
		return nil
	}))
}

func testActivity(t *testing.T, kv store.KV) {
	update(t, kv, func(tx store.Tx) error {
		for i := 0; i < 3; i++ {
			ev := &store.AuditEvent{ID: fmt.Sprint(i), WorkspaceID: "wa", Type: "agent", Event: "CONNECTED", AgentID: "ag", CreatedAt: t0.Add(time.Duration(i) * time.Minute)}
			if err := store.AppendAudit(tx, ev); err != nil {
				return err
			}
		}
		return store.AppendAudit(tx, &store.AuditEvent{ID: "x", WorkspaceID: "wb", Type: "share.create", CreatedAt: t0})
	})
	now := time.Now()
	update(t, kv, func(tx store.Tx) error {
		for i := 0; i < 2; i++ {
			m := &store.Message{ID: fmt.Sprint("m", i), WorkspaceID: "wa", ToAgentID: "ag", Channel: "default", CreatedAt: now.Add(time.Duration(i) * time.Second), ExpiresAt: now.Add(time.Hour)}
			if err := store.PutMessage(tx, m, now); err != nil {
				return err
			}
		}
		c := &store.Command{ID: "c1", WorkspaceID: "wa", AgentID: "ag", Action: "status", Status: store.CommandQueued, CreatedAt: now, ExpiresAt: now.Add(time.Minute)}
		return store.PutCommand(tx, c, now)
	})
	require.NoError(t, view(t, kv, func(tx store.Tx) error {
		evs, _, err := store.ListAudit(tx, "wa", "", 0, nil)
		require.NoError(t, err)
		require.Len(t, evs, 3)
		assert.Equal(t, "2", evs[0].ID, "newest first")
		recent, next, err := store.ListAuditSince(tx, "wa", t0.Add(time.Minute), "", 0, nil)
		require.NoError(t, err)
		assert.Len(t, recent, 2, "the scan stops at the first older event")
		assert.Empty(t, next)
		aevs, _, err := store.ListAgentAudit(tx, "wa", "ag", "", 2)
		require.NoError(t, err)
		assert.Len(t, aevs, 2)
		msgs, _, err := store.ListMessages(tx, "wa", "ag", "", 0, nil)
		require.NoError(t, err)
		require.Len(t, msgs, 2)
		assert.Equal(t, "m1", msgs[0].ID)
		q, err := store.QueuedCommands(tx, "wa", "ag")
		require.NoError(t, err)
		assert.Len(t, q, 1)
		return nil
	}))
	update(t, kv, func(tx store.Tx) error {
		n, err := store.MarkMessagesRead(tx, "wa", "ag", []string{"m0", "nope"}, now)
		if n != 1 {
			return fmt.Errorf("marked %d", n)
		}
		if err != nil {
			return err
		}
		c, err := store.GetCommand(tx, "wa", "c1")
		if err != nil {
			return err
		}
		c.Status = store.CommandDelivered
		return store.PutCommand(tx, c, now)
	})
	require.NoError(t, view(t, kv, func(tx store.Tx) error {
		unread, _, err := store.ListMessages(tx, "wa", "ag", "", 0, func(m *store.Message) bool { return m.ReadAt == nil })
		require.NoError(t, err)
		assert.Len(t, unread, 1)
		q, err := store.QueuedCommands(tx, "wa", "ag")
		require.NoError(t, err)
		assert.Empty(t, q)
		_, err = store.GetCommand(tx, "wb", "c1")
		assert.ErrorIs(t, err, store.ErrNotFound)
		return nil
	}))
}

// testReportParts: of transactions claiming the same part of a report at
// once, exactly one is first (the others conflict, retry and find the
// mark); another part, edge or report id is a claim of its own, and a
// report without an id is applied every time.
func testReportParts(t *testing.T, kv store.KV) {
	const n = 8
	var wg sync.WaitGroup
	var firsts atomic.Int32
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var first bool
			assert.NoError(t, kv.Update(ctx, func(tx store.Tx) error {
				var err error
				first, err = store.ClaimReportPart(tx, "e1", "R1", "uses/0")
				return err
			}))
			if first {
				firsts.Add(1)
			}
		}()
	}
	wg.Wait()
	require.Equal(t, int32(1), firsts.Load(), "claims of one part that were first")
	for _, c := range [][3]string{{"e1", "R1", "uses/1"}, {"e2", "R1", "uses/0"}, {"e1", "R2", "uses/0"}, {"e1", "", "uses/0"}, {"e1", "", "uses/0"}} {
		update(t, kv, func(tx store.Tx) error {
			first, err := store.ClaimReportPart(tx, c[0], c[1], c[2])
			require.True(t, first, "%q", c)
			return err
		})
	}
}
