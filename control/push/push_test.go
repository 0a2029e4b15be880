package push

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/privateconnect/pc/control/store"
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
	pr, pw := io.Pipe()
	sctx, cancel := context.WithCancel(ctx)
	go func() {
		w := bufio.NewWriter(pw)
		_ = h.Stream(sctx, w, "edge-1", epoch, version)
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
	require.NoError(t, kv.Update(ctx, func(tx store.Tx) error { _, err := store.RevokeShare(tx, "ws", "s1", time.Now()); return err }))
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
	app, gone := p.Report("e1", &config.Report{Agents: []string{"a", "b"}})
	assert.ElementsMatch(t, []string{"a", "b"}, app)
	assert.Empty(t, gone)
	assert.Equal(t, []string{"e1"}, p.AgentEdges("a"))
	_, gone = p.Report("e1", &config.Report{Agents: []string{"a"}})
	assert.Equal(t, []string{"b"}, gone)
	assert.False(t, p.AgentOnline("b"))
	now = now.Add(31 * time.Second)
	assert.False(t, p.AgentOnline("a"), "a silent edge's agents drop")
	assert.Empty(t, p.OnlineEdges())
	p.StreamOpened("e1")
	assert.True(t, p.AgentOnline("a"), "an open stream keeps the edge online")
	p.StreamClosed("e1")
	now = now.Add(31 * time.Second)
	assert.False(t, p.AgentOnline("a"))
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
	h, kv := newHub(t, Options{RingSize: 16, RefreshQuiet: time.Hour}) // no background refresh here
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
	assert.Equal(t, h.Version(), m.Version, "a fresh snapshot")
	assert.Len(t, m.Snapshot.Shares, 3)
}

// slowView is the real store whose next View, once armed, waits for a
// release: a snapshot build caught in the middle of its read.
type slowView struct {
	store.KV
	armed   chan struct{} // closed when the armed View started
	release chan struct{}
	once    sync.Once
	on      atomic.Bool
}

func (s *slowView) View(ctx context.Context, fn func(store.Tx) error) error {
	if s.on.CompareAndSwap(true, false) {
		s.once.Do(func() { close(s.armed) })
		<-s.release
	}
	return s.KV.View(ctx, fn)
}

// TestSnapshotBuildDoesNotBlockPublish: building a snapshot reads the store
// without the hub's lock, so API writes are not held up by it.
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
	<-slow.armed // the build is reading the store
	published := make(chan error, 1)
	go func() { published <- h.Publish(ctx, Share("ws", "s1")) }()
	select {
	case err := <-published:
		require.NoError(t, err)
	case <-time.After(2 * time.Second):
		t.Fatal("Publish waited for the snapshot build")
	}
	close(slow.release)
	require.NoError(t, <-built)
	// The snapshot is of the version read before the build began; the
	// change published meanwhile comes after it.
	line, v, err := h.snapshotMessage(ctx)
	require.NoError(t, err)
	require.NotEmpty(t, line)
	assert.Equal(t, h.Version()-1, v)
	changes, _, ok := h.since(h.Epoch(), v)
	require.True(t, ok)
	require.Len(t, changes, 1)
}

// TestSnapshotRefreshedInBackground: a cached snapshot that falls half a
// ring behind is rebuilt once publishing pauses.
func TestSnapshotRefreshedInBackground(t *testing.T) {
	h, kv := newHub(t, Options{RingSize: 8, RefreshQuiet: 50 * time.Millisecond})
	addShare(t, kv, "s1")
	_, _, err := h.snapshotMessage(ctx)
	require.NoError(t, err)
	for i := 0; i < 6; i++ {
		require.NoError(t, h.Publish(ctx, Share("ws", "s1")))
	}
	require.Eventually(t, func() bool {
		h.mu.Lock()
		defer h.mu.Unlock()
		return h.snapVer == h.version
	}, 3*time.Second, 10*time.Millisecond)
}
