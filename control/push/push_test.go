package push

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/privateconnect/pc/control/store"
	"github.com/privateconnect/pc/control/store/badgerstore"
	"github.com/privateconnect/pc/control/store/memstore"
	"github.com/privateconnect/pc/internal/config"
)

var ctx = context.Background()

func newHub(t *testing.T, opts Options) (*Hub, *memstore.Store) {
	t.Helper()
	kv := memstore.New()
	require.NoError(t, kv.Update(ctx, func(tx store.Tx) error {
		if err := store.CreateWorkspace(tx, &store.Workspace{ID: "ws", Name: "default"}); err != nil {
			return err
		}
		return store.PutAgent(tx, &store.Agent{ID: "ag", WorkspaceID: "ws", TokenHash: "h"})
	}))
	h, err := New(ctx, kv, opts)
	require.NoError(t, err)
	return h, kv
}

func addShare(t *testing.T, kv store.KV, id string) {
	t.Helper()
	require.NoError(t, kv.Update(ctx, func(tx store.Tx) error {
		return store.CreateShare(tx, &store.Share{ID: id, WorkspaceID: "ws", ServiceID: "svc", TokenHash: "t" + id})
	}))
}

// reader runs a stream into a pipe and decodes its messages.
func stream(t *testing.T, h *Hub, epoch string, version int64) (<-chan config.Message, context.CancelFunc) {
	t.Helper()
	return streamAs(t, h, "", "test", epoch, version)
}

// streamAs is stream for the edge process instance, connected from from.
func streamAs(t *testing.T, h *Hub, instance, from, epoch string, version int64) (<-chan config.Message, context.CancelFunc) {
	t.Helper()
	pr, pw := io.Pipe()
	sctx, cancel := context.WithCancel(ctx)
	go func() {
		w := bufio.NewWriter(pw)
		_ = h.Stream(sctx, w, "edge-1", instance, from, epoch, version)
		pw.Close()
	}()
	ch := make(chan config.Message, 100)
	go func() {
		defer close(ch)
		dec := json.NewDecoder(pr)
		for {
			var m config.Message
			if dec.Decode(&m) != nil {
				return
			}
			ch <- m
		}
	}()
	t.Cleanup(func() { cancel(); pr.Close() })
	return ch, cancel
}

func recv(t *testing.T, ch <-chan config.Message) config.Message {
	t.Helper()
	select {
	case m := <-ch:
		return m
	case <-time.After(2 * time.Second):
		t.Fatal("no message")
	}
	return config.Message{}
}

func TestPublishReadsCommittedState(t *testing.T) {
	h, kv := newHub(t, Options{})
	addShare(t, kv, "s1")
	require.NoError(t, h.Publish(ctx, Share("ws", "s1"), Share("ws", "gone")))
	changes, cur, ok := h.since(h.Epoch(), 0)
	require.True(t, ok)
	require.Len(t, changes, 2)
	assert.Equal(t, int64(2), cur)
	assert.Equal(t, config.OpUpsert, changes[0].Op)
	assert.Equal(t, "s1", changes[0].Share.ID)
	assert.Equal(t, config.OpDelete, changes[1].Op, "an absent object is published as a delete")
	// Two publishes of one object after two commits: the last holds the latest state.
	require.NoError(t, kv.Update(ctx, func(tx store.Tx) error { _, _, err := store.RevokeShare(tx, "ws", "s1", time.Now()); return err }))
	require.NoError(t, h.Publish(ctx, Share("ws", "s1")))
	changes, _, _ = h.since(h.Epoch(), 2)
	require.Len(t, changes, 1)
	assert.True(t, changes[0].Share.Revoked)
}

func TestStreamSnapshotThenChangesThenInbox(t *testing.T) {
	h, kv := newHub(t, Options{PingInterval: 50 * time.Millisecond})
	addShare(t, kv, "s1")
	require.NoError(t, h.Publish(ctx, Share("ws", "s1")))
	ch, _ := stream(t, h, "", 0)
	m := recv(t, ch)
	require.Equal(t, config.MsgSnapshot, m.Type)
	assert.Equal(t, "edge-1", m.EdgeID)
	require.Len(t, m.Snapshot.Shares, 1)
	require.Len(t, m.Snapshot.Agents, 1)

	addShare(t, kv, "s2")
	require.NoError(t, h.Publish(ctx, Share("ws", "s2")))
	m = recv(t, ch)
	for m.Type == config.MsgPing {
		m = recv(t, ch)
	}
	require.Equal(t, config.MsgChanges, m.Type)
	assert.Equal(t, "s2", m.Changes[0].ID)

	h.NotifyInbox("ag", "ag2")
	m = recv(t, ch)
	for m.Type == config.MsgPing {
		m = recv(t, ch)
	}
	require.Equal(t, config.MsgInbox, m.Type)
	assert.Equal(t, []string{"ag", "ag2"}, m.Inbox)

	// Pings flow and keep the edge online.
	deadline := time.After(2 * time.Second)
	for {
		select {
		case m = <-ch:
		case <-deadline:
			t.Fatal("no ping")
		}
		if m.Type == config.MsgPing {
			break
		}
	}
	_, online := h.Presence.Edge("edge-1")
	assert.True(t, online)
	assert.Equal(t, 1, h.Subscribers())
}

func TestRingOverflowForcesSnapshot(t *testing.T) {
	h, kv := newHub(t, Options{RingSize: 8})
	addShare(t, kv, "s1")
	for i := 0; i < 20; i++ {
		require.NoError(t, h.Publish(ctx, Share("ws", "s1")))
	}
	_, _, ok := h.since(h.Epoch(), 1)
	assert.False(t, ok, "version 1's successors left the ring")
	changes, _, ok := h.since(h.Epoch(), 18)
	require.True(t, ok)
	assert.Len(t, changes, 2)
	ch, _ := stream(t, h, h.Epoch(), 1)
	m := recv(t, ch)
	assert.Equal(t, config.MsgSnapshot, m.Type)
	assert.Equal(t, int64(20), m.Version)
}

func TestPublishFailureResyncs(t *testing.T) {
	h, kv := newHub(t, Options{})
	addShare(t, kv, "s1")
	require.NoError(t, h.Publish(ctx, Share("ws", "s1")))
	v := h.Version()
	require.NoError(t, kv.Close())
	require.Error(t, h.Publish(ctx, Share("ws", "s1")))
	_, cur, ok := h.since(h.Epoch(), v)
	assert.False(t, ok, "an edge at the last good version must take a snapshot")
	assert.Greater(t, cur, v)
}

func TestVersionPersistsInBlocks(t *testing.T) {
	h, kv := newHub(t, Options{})
	addShare(t, kv, "s1")
	require.NoError(t, h.Publish(ctx, Share("ws", "s1")))
	h2, err := New(ctx, kv, Options{})
	require.NoError(t, err)
	assert.GreaterOrEqual(t, h2.Version(), h.Version(), "a restart never goes back")
	assert.NotEqual(t, h.Epoch(), h2.Epoch())
}

func TestPresenceOfflineWindow(t *testing.T) {
	p := NewPresence(30 * time.Second)
	now := time.Now()
	p.now = func() time.Time { return now }
	app, gone, _ := p.Report("e1", &config.Report{Agents: []string{"a", "b"}})
	assert.ElementsMatch(t, []string{"a", "b"}, app)
	assert.Empty(t, gone)
	assert.Equal(t, []string{"e1"}, p.AgentEdges("a"))
	_, gone, _ = p.Report("e1", &config.Report{Agents: []string{"a"}})
	assert.Equal(t, []string{"b"}, gone)
	assert.False(t, p.AgentOnline("b"))
	now = now.Add(31 * time.Second)
	assert.False(t, p.AgentOnline("a"), "a silent edge's agents drop")
	assert.Empty(t, p.OnlineEdges())
	p.StreamOpened("e1", "")
	assert.True(t, p.AgentOnline("a"), "an open stream keeps the edge online")
	p.StreamClosed("e1")
	now = now.Add(31 * time.Second)
	assert.False(t, p.AgentOnline("a"))
}

// TestPresenceSettling: after a start, presence is unsettled until every
// registered edge has reported (an open stream alone says nothing of its
// agents), or until the offline window has passed.
func TestPresenceSettling(t *testing.T) {
	p := NewPresence(30 * time.Second)
	now := time.Now().Add(-time.Hour) // the store took an hour to open
	p.now = func() time.Time { return now }
	p.Serving() // the window starts here
	asked := 0
	edges := func() ([]string, error) { asked++; return []string{"e1", "e2"}, nil }
	settling := func() time.Duration {
		t.Helper()
		d, err := p.Settling(edges)
		require.NoError(t, err)
		return d
	}
	now = now.Add(5 * time.Second)
	assert.Equal(t, 25*time.Second, settling(), "no edge heard yet")
	p.StreamOpened("e1", "")
	p.Report("e2", &config.Report{Agents: []string{"a"}})
	assert.Equal(t, 25*time.Second, settling(), "e1's stream is open but it has not reported")
	p.Report("e1", &config.Report{})
	assert.Zero(t, settling(), "every edge reported")

	q := NewPresence(30 * time.Second)
	q.now = func() time.Time { return now }
	q.Serving()
	now = now.Add(30 * time.Second)
	asked = 0
	d, err := q.Settling(edges)
	require.NoError(t, err)
	assert.Zero(t, d, "the window passed: an edge silent so far is offline anyway")
	assert.Zero(t, asked, "the edges are not listed once the window passed")
	_, err = NewPresence(time.Minute).Settling(func() ([]string, error) { return nil, errors.New("store") })
	assert.Error(t, err)
}

// TestPresenceOfAStoppingEdge: the offline window rides out a lost stream
// (the edge reconnects within it), not a deliberate stop: an edge whose
// last report says it stops is offline at once, with its agents, even while
// its stream has not closed yet on this side, and stays so after the stream
// closes; its next process brings it back.
func TestPresenceOfAStoppingEdge(t *testing.T) {
	p := NewPresence(30 * time.Second)
	now := time.Now()
	p.now = func() time.Time { return now }
	p.StreamOpened("e1", "i1")
	p.Report("e1", &config.Report{Instance: "i1", Agents: []string{"a"}})
	require.True(t, p.AgentOnline("a"))

	_, gone, current := p.Report("e1", &config.Report{Instance: "i1", Agents: []string{"a"}, Stopping: true})
	require.True(t, current)
	assert.Equal(t, []string{"a"}, gone, "its agents go with it")
	_, online := p.Edge("e1")
	assert.False(t, online, "offline at once, its stream still open")
	assert.Empty(t, p.OnlineEdges())
	assert.False(t, p.AgentOnline("a"))
	p.StreamClosed("e1")
	now = now.Add(time.Second)
	_, online = p.Edge("e1")
	assert.False(t, online, "the stream's close does not bring it back")
	appeared, _, _ := p.Report("e1", &config.Report{Instance: "i1", Agents: []string{"a"}})
	_, online = p.Edge("e1")
	assert.False(t, online, "nor a report of the stopped process that overtook its last one")
	assert.Empty(t, appeared)

	// A lost stream, by contrast, keeps the edge online for the window.
	p.StreamOpened("e1", "i2")
	p.Report("e1", &config.Report{Instance: "i2", Agents: []string{"a"}})
	_, online = p.Edge("e1")
	require.True(t, online, "the next process is online")
	p.StreamClosed("e1")
	now = now.Add(29 * time.Second)
	_, online = p.Edge("e1")
	assert.True(t, online)
	assert.True(t, p.AgentOnline("a"))
}

// TestDisconnectDeletedEdge: deleting an edge ends its open stream, and
// its late signs of life (a ping, a report in flight) do not bring it back.
func TestDisconnectDeletedEdge(t *testing.T) {
	h, _ := newHub(t, Options{PingInterval: time.Hour})
	ch, _ := stream(t, h, "", 0)
	require.Equal(t, config.MsgSnapshot, recv(t, ch).Type)
	require.Eventually(t, func() bool { _, ok := h.Presence.Edge("edge-1"); return ok }, time.Second, 5*time.Millisecond)
	h.Presence.Forget("edge-1")
	h.Disconnect("edge-1")
	select {
	case _, open := <-ch:
		require.False(t, open, "the stream ends")
	case <-time.After(2 * time.Second):
		t.Fatal("the deleted edge's stream stayed open")
	}
	h.Presence.Touch("edge-1")
	appeared, _, _ := h.Presence.Report("edge-1", &config.Report{Agents: []string{"a"}})
	assert.Empty(t, appeared, "no agent.CONNECTED for a deleted edge's late report")
	_, online := h.Presence.Edge("edge-1")
	assert.False(t, online)
	assert.Empty(t, h.Presence.OnlineEdges())
	assert.False(t, h.Presence.AgentOnline("a"))
	require.Eventually(t, func() bool { return h.Subscribers() == 0 }, time.Second, 5*time.Millisecond)
}

// nextData skips pings.
func nextData(t *testing.T, ch <-chan config.Message) config.Message {
	t.Helper()
	m := recv(t, ch)
	for m.Type == config.MsgPing {
		m = recv(t, ch)
	}
	return m
}

// TestCachedSnapshotThenCatchUp: a second edge gets the snapshot built for
// the first (not a new read of the store) and, at once, the changes made
// since; once the ring no longer reaches the cached version, a fresh
// snapshot is built.
func TestCachedSnapshotThenCatchUp(t *testing.T) {
	h, kv := newHub(t, Options{RingSize: 16})
	addShare(t, kv, "s1")
	require.NoError(t, h.Publish(ctx, Share("ws", "s1")))
	ch1, stop1 := stream(t, h, "", 0)
	first := nextData(t, ch1)
	require.Equal(t, config.MsgSnapshot, first.Type)
	stop1()

	addShare(t, kv, "s2")
	addShare(t, kv, "s3")
	require.NoError(t, h.Publish(ctx, Share("ws", "s2"), Share("ws", "s3")))
	ch2, stop2 := stream(t, h, "", 0)
	m := nextData(t, ch2)
	require.Equal(t, config.MsgSnapshot, m.Type)
	assert.Equal(t, first.Version, m.Version, "the cached snapshot")
	require.Len(t, m.Snapshot.Shares, 1)
	m = nextData(t, ch2)
	require.Equal(t, config.MsgChanges, m.Type, "the catch-up follows without waiting for a new change")
	assert.Equal(t, h.Version(), m.Version)
	assert.Equal(t, []string{"s2", "s3"}, []string{m.Changes[0].ID, m.Changes[1].ID})
	stop2()

	// Ten more publications (ring of 16): the cache is 12 behind, still
	// reachable and reused; six more put it out of reach.
	for i := 0; i < 10; i++ {
		require.NoError(t, h.Publish(ctx, Share("ws", "s1")))
	}
	ch4, stop4 := stream(t, h, "", 0)
	m = nextData(t, ch4)
	require.Equal(t, config.MsgSnapshot, m.Type)
	assert.Equal(t, first.Version, m.Version, "12 behind: the cached snapshot again")
	stop4()
	for i := 0; i < 6; i++ {
		require.NoError(t, h.Publish(ctx, Share("ws", "s1")))
	}
	ch3, _ := stream(t, h, "", 0)
	m = nextData(t, ch3)
	require.Equal(t, config.MsgSnapshot, m.Type)
	assert.Greater(t, m.Version, first.Version+12, "a fresh snapshot, not the cached one out of the ring's reach")
	assert.Len(t, m.Snapshot.Shares, 3)
	if m.Version < h.Version() {
		// The stream stopped just before, still ending as the six were
		// published, fell behind the ring and cached a snapshot at the
		// version then (seen under a loaded make test): the catch-up
		// follows it.
		m = nextData(t, ch3)
		require.Equal(t, config.MsgChanges, m.Type)
		assert.Equal(t, h.Version(), m.Version)
	}
}

// slowView is the real store whose next View, once armed, waits for a
// release once it has read: a snapshot build caught at the end of its read.
type slowView struct {
	store.KV
	armed   chan struct{} // closed when the armed View has read
	release chan struct{}
	once    sync.Once
	on      atomic.Bool
	views   atomic.Int64
}

func (s *slowView) View(ctx context.Context, fn func(store.Tx) error) error {
	s.views.Add(1)
	err := s.KV.View(ctx, fn)
	if s.on.CompareAndSwap(true, false) {
		s.once.Do(func() { close(s.armed) })
		<-s.release
	}
	return err
}

// TestSnapshotBuildDoesNotBlockPublish: building a snapshot reads the store
// without the hub's lock, so API writes are not held up by it; what they
// publish meanwhile is applied to the snapshot from the ring.
func TestSnapshotBuildDoesNotBlockPublish(t *testing.T) {
	kv := memstore.New()
	require.NoError(t, kv.Update(ctx, func(tx store.Tx) error {
		return store.CreateWorkspace(tx, &store.Workspace{ID: "ws", Name: "default"})
	}))
	addShare(t, kv, "s1")
	slow := &slowView{KV: kv, armed: make(chan struct{}), release: make(chan struct{})}
	h, err := New(ctx, slow, Options{})
	require.NoError(t, err)
	slow.on.Store(true)
	built := make(chan error, 1)
	go func() { _, _, err := h.rebuild(ctx); built <- err }()
	<-slow.armed // the build has read the store
	addShare(t, kv, "s2")
	published := make(chan error, 1)
	go func() { published <- h.Publish(ctx, Share("ws", "s2")) }()
	select {
	case err := <-published:
		require.NoError(t, err)
	case <-time.After(2 * time.Second):
		t.Fatal("Publish waited for the snapshot build")
	}
	close(slow.release)
	require.NoError(t, <-built)
	line, v, err := h.snapshotMessage(ctx)
	require.NoError(t, err)
	assert.Equal(t, h.Version(), v, "the change published during the read is in the snapshot")
	var m config.Message
	require.NoError(t, json.Unmarshal(line, &m))
	assert.Equal(t, []string{"s1", "s2"}, shareIDs(m.Snapshot))
}

func shareIDs(s *config.Snapshot) []string {
	var ids []string
	for _, sh := range s.Shares {
		ids = append(ids, sh.ID)
	}
	return ids
}

// TestSnapshotsFromMemory: once the store has been read for a first
// snapshot, later snapshots are encoded from the hub's live configuration,
// without reading the store again, even when the cached one left the ring.
func TestSnapshotsFromMemory(t *testing.T) {
	kv := memstore.New()
	require.NoError(t, kv.Update(ctx, func(tx store.Tx) error {
		return store.CreateWorkspace(tx, &store.Workspace{ID: "ws", Name: "default"})
	}))
	counted := &slowView{KV: kv}
	h, err := New(ctx, counted, Options{RingSize: 8})
	require.NoError(t, err)
	_, _, err = h.snapshotMessage(ctx)
	require.NoError(t, err)
	before := counted.views.Load()
	for i := range 20 {
		addShare(t, kv, fmt.Sprint("s", i))
		require.NoError(t, h.Publish(ctx, Share("ws", fmt.Sprint("s", i))))
	}
	line, v, err := h.snapshotMessage(ctx)
	require.NoError(t, err)
	assert.Equal(t, h.Version(), v)
	assert.Equal(t, before+20, counted.views.Load(), "one read per Publish, none for the snapshot")
	var m config.Message
	require.NoError(t, json.Unmarshal(line, &m))
	assert.Len(t, m.Snapshot.Shares, 20)

	// A failed publish may leave something committed out of the live
	// copy: the next snapshot reads the store again.
	h.mu.Lock()
	h.live = nil
	h.snapMsg = nil
	h.mu.Unlock()
	_, _, err = h.snapshotMessage(ctx)
	require.NoError(t, err)
	assert.Equal(t, before+21, counted.views.Load())
}

// TestLiveStateMatchesStore: whatever is created, changed, revoked and
// deleted, the snapshot encoded from the live configuration decodes to
// what a fresh read of the store gives, including the retention of revoked
// and expired shares (gone 8 days ago: out; gone now: in, revoked).
func TestLiveStateMatchesStore(t *testing.T) {
	h, kv := newHub(t, Options{RingSize: 4})
	_, _, err := h.snapshotMessage(ctx) // the live copy starts here
	require.NoError(t, err)
	rng := rand.New(rand.NewPCG(1, 2))
	now := time.Now()
	old := now.Add(-8 * 24 * time.Hour)
	for round := range 300 {
		id := fmt.Sprint("s", rng.IntN(12))
		var ref Ref
		require.NoError(t, kv.Update(ctx, func(tx store.Tx) error {
			switch rng.IntN(7) {
			case 0, 1:
				ref = Share("ws", id)
				sh, err := store.GetShare(tx, "ws", id)
				if errors.Is(err, store.ErrNotFound) {
					return store.CreateShare(tx, &store.Share{ID: id, WorkspaceID: "ws", ServiceID: "svc", TokenHash: "t" + id})
				}
				if err != nil {
					return err
				}
				sh.Name = fmt.Sprint("name ", round)
				switch rng.IntN(4) {
				case 0:
					sh.RevokedAt = &now
				case 1:
					sh.RevokedAt = &old
				case 2:
					sh.ExpiresAt = &old
				}
				return store.PutShare(tx, sh)
			case 2, 3:
				ref = Service("ws", "v"+id)
				_, err := store.DeleteService(tx, "ws", "v"+id, now)
				if errors.Is(err, store.ErrNotFound) {
					return store.CreateService(tx, &store.Service{ID: "v" + id, WorkspaceID: "ws", AgentID: "ag", Name: "v" + id, Protocol: "http", TargetHost: "127.0.0.1", TargetPort: 80}, 20000, 30000)
				}
				return err
			case 4:
				ref = Agent("ws", "ag")
				ag, err := store.GetAgent(tx, "ws", "ag")
				if err != nil {
					return err
				}
				ag.Name = fmt.Sprint(round)
				return store.PutAgent(tx, ag)
			case 5:
				ref = Edge("e" + id)
				err := store.DeleteEdge(tx, "e"+id)
				if errors.Is(err, store.ErrNotFound) {
					return store.CreateEdge(tx, &store.Edge{ID: "e" + id, Name: "e" + id, TokenHash: "h" + id})
				}
				return err
			default:
				ref = Plugin("ws", "p"+id)
				_, err := store.DeletePlugin(tx, "ws", "p"+id)
				if errors.Is(err, store.ErrNotFound) {
					return store.CreatePlugin(tx, &store.Plugin{ID: "p" + id, WorkspaceID: "ws", Name: "p" + id, Version: "1"}, []byte(id))
				}
				return err
			}
		}))
		require.NoError(t, h.Publish(ctx, ref))
		if round%10 != 9 {
			continue
		}
		line, v, err := h.snapshotMessage(ctx)
		require.NoError(t, err)
		var m config.Message
		require.NoError(t, json.Unmarshal(line, &m))
		want, err := h.Snapshot(ctx)
		require.NoError(t, err)
		if v < h.Version() { // the cached one, then the ring: compare a fresh encode
			h.mu.Lock()
			h.snapMsg = nil
			h.mu.Unlock()
			line, _, err = h.snapshotMessage(ctx)
			require.NoError(t, err)
			m = config.Message{}
			require.NoError(t, json.Unmarshal(line, &m))
		}
		require.Equal(t, want, m.Snapshot, "round %d", round)
	}
}

// BenchmarkSnapshotFromLiveState is what a new edge's snapshot costs the
// control plane once the store has been read: a view of the live copy,
// sorted and encoded, at 100,000 shares.
func BenchmarkSnapshotFromLiveState(b *testing.B) {
	h, err := New(ctx, memstore.New(), Options{})
	require.NoError(b, err)
	st := newState(0)
	for i := range 100_000 {
		id := fmt.Sprintf("share-%06d", i)
		st.shares[id] = liveShare{c: &config.Share{ID: id, WorkspaceID: "ws", ServiceID: "svc", Name: "bench",
			TokenHash: fmt.Sprintf("%064x", i), AllowedPaths: []string{"/api/*"}}}
	}
	h.live = st
	b.ResetTimer()
	for b.Loop() {
		h.mu.Lock()
		h.snapMsg = nil
		h.mu.Unlock()
		if _, _, err := h.rebuild(ctx); err != nil {
			b.Fatal(err)
		}
	}
}

// TestGoneTimes: a share stops working at the earlier of its revocation and
// its expiry; replayed from the ring, a revoked share counts as revoked at
// the replay.
func TestGoneTimes(t *testing.T) {
	now := time.Unix(2000, 0)
	early, late := time.Unix(1000, 0), time.Unix(3000, 0)
	for _, tc := range []struct {
		revoked, expires *time.Time
		want             time.Time
	}{
		{nil, nil, time.Time{}},
		{&early, nil, early},
		{nil, &late, late},
		{&late, &early, early},
		{&early, &late, early},
	} {
		assert.Equal(t, tc.want, shareGone(&store.Share{RevokedAt: tc.revoked, ExpiresAt: tc.expires}))
		c := config.Change{Share: &config.Share{Revoked: tc.revoked != nil, ExpiresAt: tc.expires}}
		want := earliest(tc.expires)
		if tc.revoked != nil {
			want = earliest(&now, tc.expires)
		}
		assert.Equal(t, want, changeGone(c, now))
	}
	assert.Equal(t, time.Time{}, changeGone(config.Change{Kind: config.KindService}, now))
}

// TestUsedUpSharesArePublished: the report whose uses bring a share with
// maxUses to its limit publishes the share, with its count in uses, so every
// edge stops serving it; reports below the limit and past it publish nothing.
func TestUsedUpSharesArePublished(t *testing.T) {
	h, kv := newHub(t, Options{})
	require.NoError(t, kv.Update(ctx, func(tx store.Tx) error {
		return store.CreateShare(tx, &store.Share{ID: "limited", WorkspaceID: "ws", ServiceID: "svc", TokenHash: "tl", MaxUses: 5})
	}))
	addShare(t, kv, "open")
	report := func(uses ...config.ShareUse) []config.Change {
		t.Helper()
		v := h.Version()
		require.NoError(t, h.Report(ctx, "edge-1", &config.Report{Uses: uses}, ReportHooks{}))
		changes, _, ok := h.since(h.Epoch(), v)
		require.True(t, ok)
		return changes
	}
	at := time.Now().UTC()
	require.Empty(t, report(config.ShareUse{ShareID: "limited", Allowed: 3, Last: at}, config.ShareUse{ShareID: "open", Allowed: 100, Last: at}))
	changes := report(config.ShareUse{ShareID: "limited", Allowed: 4, Last: at})
	require.Len(t, changes, 1)
	require.NotNil(t, changes[0].Share)
	require.Equal(t, "limited", changes[0].Share.ID)
	require.EqualValues(t, 7, changes[0].Share.Uses)
	require.Empty(t, report(config.ShareUse{ShareID: "limited", Allowed: 1, Last: at}), "already used up")

	// The snapshot a new edge streams carries the count too: it refuses
	// the share from the start.
	ch, stop := stream(t, h, "", 0)
	defer stop()
	m := <-ch
	require.NotNil(t, m.Snapshot)
	require.Len(t, m.Snapshot.Shares, 2)
	for _, s := range m.Snapshot.Shares {
		switch s.ID {
		case "limited":
			require.GreaterOrEqual(t, s.Uses, s.MaxUses)
		case "open":
			require.Zero(t, s.Uses, "uses are sent with maxUses only")
		}
	}
}

// TestReportWithThousandsOfEvents: a report bigger than one Badger
// transaction holds (an edge whose 6,000 agents all reconnected, uses of
// 3,000 shares) is stored whole, in chunks, on the real store.
func TestReportWithThousandsOfEvents(t *testing.T) {
	kv, err := badgerstore.Open(badgerstore.Options{Dir: t.TempDir()})
	require.NoError(t, err)
	t.Cleanup(func() { kv.Close() })
	const agents, shares = 6000, 3000
	require.NoError(t, kv.Update(ctx, func(tx store.Tx) error {
		return store.CreateWorkspace(tx, &store.Workspace{ID: "ws", Name: "default"})
	}))
	for i := 0; i < agents; i += 500 {
		require.NoError(t, kv.Update(ctx, func(tx store.Tx) error {
			for j := i; j < i+500; j++ {
				if err := store.PutAgent(tx, &store.Agent{ID: fmt.Sprint("ag", j), WorkspaceID: "ws", TokenHash: "h"}); err != nil {
					return err
				}
				if j < shares {
					if err := store.CreateShare(tx, &store.Share{ID: fmt.Sprint("sh", j), WorkspaceID: "ws", ServiceID: "svc", TokenHash: fmt.Sprint("t", j)}); err != nil {
						return err
					}
				}
			}
			return nil
		}))
	}
	h, err := New(ctx, kv, Options{})
	require.NoError(t, err)
	rep := &config.Report{}
	at := time.Now().UTC().Truncate(time.Second)
	for i := 0; i < agents; i++ {
		rep.Agents = append(rep.Agents, fmt.Sprint("ag", i))
		rep.Events = append(rep.Events, config.AgentEvent{AgentID: fmt.Sprint("ag", i), Event: config.EventConnected, IP: "192.0.2.1", At: at})
	}
	for i := 0; i < shares; i++ {
		rep.Uses = append(rep.Uses, config.ShareUse{ShareID: fmt.Sprint("sh", i), Allowed: 2, Last: at})
	}
	var announced int
	require.NoError(t, h.Report(ctx, "edge-1", rep, ReportHooks{AgentEvent: func(store.AuditEvent) { announced++ }}))
	require.Equal(t, agents, announced)
	require.NoError(t, kv.View(ctx, func(tx store.Tx) error {
		for _, i := range []int{0, agents / 2, agents - 1} {
			a, err := store.LookupAgent(tx, fmt.Sprint("ag", i))
			require.NoError(t, err)
			require.NotNil(t, a.LastSeenAt)
			require.Equal(t, "192.0.2.1", a.LastSeenIP)
		}
		for _, i := range []int{0, shares - 1} {
			sh, err := store.LookupShare(tx, fmt.Sprint("sh", i))
			require.NoError(t, err)
			require.EqualValues(t, 2, sh.AccessCount)
		}
		return nil
	}))
}

// failingKV fails the commit of its n-th Update (counting from 1) after
// running fn: fn's work is then not applied.
type failingKV struct {
	store.KV
	n, calls int
}

func (k *failingKV) Update(ctx context.Context, fn func(store.Tx) error) error {
	if k.calls++; k.calls == k.n {
		_ = k.KV.View(ctx, func(tx store.Tx) error { _ = fn(tx); return nil }) // run, never commit
		return errors.New("commit failed")
	}
	return k.KV.Update(ctx, fn)
}

// TestInChunksReturnsOnlyCommitted: chunks run in order until one fails,
// and only what the committed chunks returned comes back, even when the
// failing chunk's function itself succeeded.
func TestInChunksReturnsOnlyCommitted(t *testing.T) {
	kv := &failingKV{KV: memstore.New(), n: 2}
	items := make([]int, 2*reportChunk+5)
	for i := range items {
		items[i] = i
	}
	var ran int
	got, err := inChunks(ctx, kv, ReportOnce{}.part(""), items, func(_ store.Tx, chunk []int) ([]int, error) {
		ran += len(chunk)
		return chunk, nil
	})
	require.EqualError(t, err, "commit failed")
	require.Equal(t, items[:reportChunk], got, "the first chunk only")
	require.Equal(t, 2*reportChunk, ran, "no chunk after the failed one")

	kv = &failingKV{KV: memstore.New()}
	got, err = inChunks(ctx, kv, ReportOnce{}.part(""), items, func(_ store.Tx, chunk []int) ([]int, error) { return chunk, nil })
	require.NoError(t, err)
	require.Equal(t, items, got)
	require.Equal(t, 3, kv.calls, "one transaction per chunk")
}

// A report sent again with the same id has each chunk applied once: the
// chunks an earlier sending committed are skipped (and counted as
// repeated), the rest applied; another part name or report id, or none,
// is applied again.
func TestInChunksAppliesAReportOnce(t *testing.T) {
	kv := &failingKV{KV: memstore.New(), n: 2}
	items := make([]int, 2*reportChunk+5)
	for i := range items {
		items[i] = i
	}
	var ran []int
	apply := func(_ store.Tx, chunk []int) ([]int, error) {
		ran = append(ran, chunk...)
		return chunk, nil
	}
	repeated := 0
	once := NewReportOnce("edge-1", "R1", func() { repeated++ })
	_, err := inChunks(ctx, kv, once.part("uses"), items, apply)
	require.EqualError(t, err, "commit failed")
	ran = nil
	got, err := inChunks(ctx, kv, once.part("uses"), items, apply) // the edge sends it again
	require.NoError(t, err)
	require.Equal(t, items[reportChunk:], got, "the chunks the first sending did not commit")
	require.Equal(t, items[reportChunk:], ran)
	require.Equal(t, 1, repeated)

	ran = nil
	got, err = inChunks(ctx, kv, once.part("uses"), items, apply) // answered, but the answer was lost
	require.NoError(t, err)
	require.Empty(t, got)
	require.Empty(t, ran, "every chunk applied already")
	require.Equal(t, 4, repeated)

	for _, o := range []chunked{once.part("results"), NewReportOnce("edge-2", "R1", nil).part("uses"),
		NewReportOnce("edge-1", "R2", nil).part("uses"), ReportOnce{}.part("uses")} {
		got, err = inChunks(ctx, kv, o, items, func(_ store.Tx, chunk []int) ([]int, error) { return chunk, nil })
		require.NoError(t, err)
		require.Equal(t, items, got, "%+v", o)
	}
}

// A second process of an edge (another instance) takes the stream over: the
// older one is told so and its stream ends. The same process reconnecting,
// and edges that name no instance, replace nobody.
func TestSecondInstanceReplacesTheFirst(t *testing.T) {
	h, kv := newHub(t, Options{})
	a, _ := streamAs(t, h, "A", "10.0.0.1:1000", "", 0)
	require.Equal(t, config.MsgSnapshot, recv(t, a).Type)
	again, _ := streamAs(t, h, "A", "10.0.0.1:1001", "", 0) // the same process
	require.Equal(t, config.MsgSnapshot, recv(t, again).Type)
	old, _ := streamAs(t, h, "", "10.0.0.3:1000", "", 0) // an edge before instances
	require.Equal(t, config.MsgSnapshot, recv(t, old).Type)
	addShare(t, kv, "s1")
	require.NoError(t, h.Publish(ctx, Share("ws", "s1")))
	for _, ch := range []<-chan config.Message{a, again, old} {
		require.Equal(t, config.MsgChanges, recv(t, ch).Type)
	}
	require.True(t, h.Presence.Current("edge-1", "A"))

	b, _ := streamAs(t, h, "B", "10.0.0.2:2000", "", 0)
	require.Equal(t, config.MsgSnapshot, recv(t, b).Type)
	for _, ch := range []<-chan config.Message{a, again} {
		m := recv(t, ch)
		require.Equal(t, config.MsgReplaced, m.Type)
		require.Equal(t, "10.0.0.2:2000", m.ReplacedBy)
		_, open := <-ch
		require.False(t, open, "the replaced stream ends")
	}
	require.False(t, h.Presence.Current("edge-1", "A"), "the replaced process's reports are not the edge's")
	require.True(t, h.Presence.Current("edge-1", "B"))
	require.True(t, h.Presence.Current("edge-1", ""), "a report without instance counts")
	addShare(t, kv, "s2")
	require.NoError(t, h.Publish(ctx, Share("ws", "s2")))
	for _, ch := range []<-chan config.Message{b, old} {
		require.Equal(t, config.MsgChanges, recv(t, ch).Type)
	}
}

// A replaced edge process never speaks for the edge again, even while the
// new process has no stream open (a blip): its draining reports would hand
// presence back to it.
func TestReplacedInstanceStaysReplaced(t *testing.T) {
	p := NewPresence(time.Minute)
	p.StreamOpened("e1", "A")
	p.StreamOpened("e1", "B")
	p.Replaced("e1", "A")
	p.StreamClosed("e1")
	p.StreamClosed("e1") // no stream open
	require.False(t, p.Current("e1", "A"))
	require.True(t, p.Current("e1", "C"), "a process not seen before is taken while no stream is open")
	require.False(t, p.Current("e1", "A"))
}

// A stream authorized just before its edge was deleted ends at once, with
// nothing sent: the deletion is the hub's, not the stream's.
func TestStreamOfADeletedEdgeEnds(t *testing.T) {
	h, _ := newHub(t, Options{})
	h.Disconnect("edge-1")
	ch, _ := stream(t, h, "", 0)
	select {
	case m, open := <-ch:
		require.False(t, open, "got %+v", m)
	case <-time.After(2 * time.Second):
		t.Fatal("the stream of a deleted edge did not end")
	}
}

// TestInChunksStoresCommandResultsAlone: command results are up to 1 MiB
// each (more once JSON-escaped, beside params of up to 4 MiB), and Badger
// refuses a transaction of more than 15% of its memtable (1.2 MB here):
// three results of 700 KB fail in one transaction, and are stored one a
// transaction, each its own part of the report (a second sending skips
// them all).
func TestInChunksStoresCommandResultsAlone(t *testing.T) {
	kv, err := badgerstore.Open(badgerstore.Options{Dir: t.TempDir()})
	require.NoError(t, err)
	defer kv.Close()
	big := bytes.Repeat([]byte("<"), 700<<10)
	items := []int{0, 1, 2}
	var chunks [][]int
	put := func(tx store.Tx, chunk []int) ([]int, error) {
		chunks = append(chunks, slices.Clone(chunk))
		for _, i := range chunk {
			if err := tx.Put([]byte(fmt.Sprint("cmd/", i)), big); err != nil {
				return nil, err
			}
		}
		return chunk, nil
	}
	_, err = inChunks(ctx, kv, ReportOnce{}.part("results"), items, put)
	require.Error(t, err, "three results of 700 KB in one transaction (the test's premise)")
	once := NewReportOnce("edge-1", "R1", nil)
	chunks = nil
	got, err := inChunks(ctx, kv, once.part("results").alone(), items, put)
	require.NoError(t, err)
	require.Equal(t, items, got)
	require.Equal(t, [][]int{{0}, {1}, {2}}, chunks, "one result a transaction")
	chunks = nil
	got, err = inChunks(ctx, kv, once.part("results").alone(), items, put)
	require.NoError(t, err)
	require.Empty(t, got)
	require.Empty(t, chunks, "each result claimed by the first sending")
}
