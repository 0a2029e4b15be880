package configsync

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/privateconnect/pc/internal/config"
	"github.com/privateconnect/pc/internal/syncbuf"
)

func changes(epoch string, versions ...int64) *config.Message {
	m := &config.Message{Type: config.MsgChanges, Epoch: epoch}
	for _, v := range versions {
		m.Changes = append(m.Changes, config.Change{Version: v, Op: config.OpDelete, Kind: config.KindShare, ID: fmt.Sprint(v)})
		m.Version = v
	}
	return m
}

func TestCoalesce(t *testing.T) {
	for _, tc := range []struct {
		name     string
		queued   []*config.Message
		versions []int64 // the changes of the merged message
		stopped  string  // type of the message returned, "" for none
		left     int     // messages left in the channel
	}{
		{"nothing queued", nil, []int64{1}, "", 0},
		{"queued changes join", []*config.Message{changes("e", 2, 3), changes("e", 4)}, []int64{1, 2, 3, 4}, "", 0},
		{"a snapshot stops the batch", []*config.Message{changes("e", 2), {Type: config.MsgSnapshot, Epoch: "e"}, changes("e", 9)},
			[]int64{1, 2}, config.MsgSnapshot, 1},
		{"another epoch stops it", []*config.Message{changes("f", 2), changes("f", 3)}, []int64{1}, config.MsgChanges, 1},
		{"a ping stops it", []*config.Message{{Type: config.MsgPing}, changes("e", 2)}, []int64{1}, config.MsgPing, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			q := make(chan *config.Message, 8)
			for _, m := range tc.queued {
				q <- m
			}
			m := changes("e", 1)
			next := coalesce(m, q)
			var got []int64
			for _, c := range m.Changes {
				got = append(got, c.Version)
			}
			if fmt.Sprint(got) != fmt.Sprint(tc.versions) || m.Version != tc.versions[len(tc.versions)-1] {
				t.Fatalf("merged versions %v (message version %d), want %v", got, m.Version, tc.versions)
			}
			if typ := ""; next != nil {
				typ = next.Type
				if typ != tc.stopped {
					t.Fatalf("returned a %q message, want %q", typ, tc.stopped)
				}
			} else if tc.stopped != "" {
				t.Fatalf("returned nothing, want the %q message", tc.stopped)
			}
			if len(q) != tc.left {
				t.Fatalf("%d messages left, want %d", len(q), tc.left)
			}
		})
	}
}

func tokenHash(tok string) string {
	h := sha256.Sum256([]byte(tok))
	return hex.EncodeToString(h[:])
}

// TestStreamAppliesEveryChange: a burst of change messages on a real HTTP
// stream, some straddling the snapshot's version, ends in a table holding
// exactly the changes after the snapshot, however they were batched.
func TestStreamAppliesEveryChange(t *testing.T) {
	const n = 3000
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		enc := json.NewEncoder(w)
		snap := &config.Snapshot{Epoch: "e", Version: 10, Shares: []config.Share{{ID: "s-old", TokenHash: tokenHash("old")}}}
		_ = enc.Encode(&config.Message{Type: config.MsgSnapshot, EdgeID: "edge-1", Epoch: "e", Version: 10, Snapshot: snap})
		// Versions 8-10 are in the snapshot already: deleting s-old at 9
		// must not be applied again on top of it.
		_ = enc.Encode(&config.Message{Type: config.MsgChanges, Epoch: "e", Version: 11, Changes: []config.Change{
			{Version: 9, Op: config.OpDelete, Kind: config.KindShare, ID: "s-old"},
			{Version: 11, Op: config.OpUpsert, Kind: config.KindShare, ID: "s-0", Share: &config.Share{ID: "s-0", TokenHash: tokenHash("t-0")}},
		}})
		for i := 1; i < n; i++ {
			v := int64(11 + i)
			id := fmt.Sprintf("s-%d", i)
			_ = enc.Encode(&config.Message{Type: config.MsgChanges, Epoch: "e", Version: v, Changes: []config.Change{
				{Version: v, Op: config.OpUpsert, Kind: config.KindShare, ID: id, Share: &config.Share{ID: id, TokenHash: tokenHash(fmt.Sprintf("t-%d", i))}}}})
		}
		w.(http.Flusher).Flush()
		<-r.Context().Done()
	}))
	t.Cleanup(srv.Close) // after runSyncer's cleanup (LIFO): the stream ends first
	s := New(Config{ControlURL: srv.URL, Token: "edge-token"})
	runSyncer(t, s)
	deadline := time.Now().Add(10 * time.Second)
	for s.Table().Version < int64(10+n) {
		if time.Now().After(deadline) {
			t.Fatalf("table at version %d, want %d", s.Table().Version, 10+n)
		}
		time.Sleep(5 * time.Millisecond)
	}
	tb := s.Table()
	if shares, _, _ := tb.Counts(); shares != n+1 {
		t.Fatalf("%d shares, want %d", shares, n+1)
	}
	for _, tok := range []string{"old", "t-0", fmt.Sprintf("t-%d", n-1)} {
		if _, ok := tb.ShareByToken([]byte(tok)); !ok {
			t.Fatalf("share of token %q missing", tok)
		}
	}
	t.Logf("%d change messages applied in %d tables", n, s.Swaps()-1)
}

// TestOnlyADeletionWipesTheEdge: a control plane (or a proxy in front of
// it) that refuses the edge token leaves the edge serving its last
// configuration, as when the control plane is away (a wrong --data, a
// restore from an older backup, a misconfigured proxy must not take every
// edge down); only the answer that says the edge was deleted empties its
// table and removes its saved snapshot.
func TestOnlyADeletionWipesTheEdge(t *testing.T) {
	for _, tc := range []struct {
		name    string
		status  int
		deleted bool
	}{{"unknown token", 401, false}, {"a proxy's 403", 403, false}, {"deleted", 401, true}} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			refuse := make(chan struct{})
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				select {
				case <-refuse:
					if tc.deleted {
						w.Header().Set(config.EdgeDeletedHeader, "true")
					}
					w.WriteHeader(tc.status)
					return
				default:
				}
				snap := &config.Snapshot{Epoch: "e", Version: 5, Shares: []config.Share{{ID: "s", TokenHash: tokenHash("tok")}}}
				_ = json.NewEncoder(w).Encode(&config.Message{Type: config.MsgSnapshot, EdgeID: "edge-1", Epoch: "e", Version: 5, Snapshot: snap})
				w.(http.Flusher).Flush()
				select {
				case <-refuse:
				case <-r.Context().Done():
				}
			}))
			t.Cleanup(srv.Close) // after runSyncer's cleanup (LIFO): the stream ends first
			// An edge that has a configuration never stops on a refusal.
			s := New(Config{ControlURL: srv.URL, Token: "edge-token", DataDir: dir,
				OnFatal: func(err error) { t.Errorf("OnFatal(%v) with a configuration in force", err) }})
			runSyncer(t, s)
			snapshot := filepath.Join(dir, "edge-edge-1", "snapshot.json")
			waitFor(t, func() bool { _, err := os.Stat(snapshot); return err == nil && s.Table().Version == 5 })
			close(refuse) // the stream ends; the next call is refused
			if tc.deleted {
				waitFor(t, func() bool {
					_, err := os.Stat(filepath.Dir(snapshot))
					return s.Refused() && s.Table().Version == 0 && os.IsNotExist(err)
				})
				return
			}
			waitFor(t, s.TokenRefused)
			if s.Refused() || s.Table().Version != 5 {
				t.Fatalf("a bare refusal wiped the edge: refused=%v version=%d", s.Refused(), s.Table().Version)
			}
			if _, err := os.Stat(snapshot); err != nil {
				t.Fatalf("a bare refusal removed the saved snapshot: %v", err)
			}
		})
	}
}

// TestRefusalWithoutConfigurationIsFatal: an edge that has nothing to
// serve (no saved snapshot, none received) and meets an answer that
// retrying cannot change (its token refused, its edge deleted, a control
// URL that answers 404 on the config route) is told through OnFatal, and
// Run returns: pcd edge exits 1 instead of looping for ever, saying it
// serves "the last configuration" it does not have. An answer that can
// change (a 502 of a proxy while the control plane restarts) is retried.
// With a saved snapshot, the edge serves it and retries, and says so.
func TestRefusalWithoutConfigurationIsFatal(t *testing.T) {
	for _, tc := range []struct {
		name    string
		status  int
		deleted bool
		saved   bool // a snapshot of this token is on disk
		fatal   error
	}{
		{"refused token", 401, false, false, ErrUnauthorized},
		{"a proxy's 403", 403, false, false, ErrUnauthorized},
		{"deleted", 401, true, false, ErrDeleted},
		{"not a control plane", 404, false, false, ErrNotControlPlane},
		{"a proxy's 502", 502, false, false, nil},
		{"refused token, snapshot saved", 401, false, true, nil},
		{"not a control plane, snapshot saved", 404, false, true, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var calls atomic.Int64
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				calls.Add(1)
				if tc.deleted {
					w.Header().Set(config.EdgeDeletedHeader, "true")
				}
				w.WriteHeader(tc.status)
			}))
			t.Cleanup(srv.Close) // after runSyncer's cleanup (LIFO): the stream ends first
			dir := t.TempDir()
			if tc.saved {
				prev := New(Config{ControlURL: srv.URL, Token: "edge-token", DataDir: dir})
				snap := &config.Snapshot{Epoch: "e", Version: 5}
				if err := prev.apply(&config.Message{Type: config.MsgSnapshot, Epoch: "e", Version: 5, Snapshot: snap}); err != nil {
					t.Fatal(err)
				}
				id := "edge-1"
				prev.edgeID.Store(&id)
				if err := prev.Save(); err != nil {
					t.Fatal(err)
				}
			}
			var logs syncbuf.Buffer
			fatal := make(chan error, 2)
			s := New(Config{ControlURL: srv.URL, Token: "edge-token", DataDir: dir, Logger: slog.New(slog.NewJSONHandler(&logs, nil)),
				OnFatal: func(err error) { fatal <- err }})
			if ok, err := s.LoadSaved(); err != nil || ok != tc.saved {
				t.Fatalf("LoadSaved: %v, %v", ok, err)
			}
			done := runSyncer(t, s)
			if tc.fatal != nil {
				select {
				case err := <-fatal:
					if !errors.Is(err, tc.fatal) {
						t.Fatalf("OnFatal(%v), want %v", err, tc.fatal)
					}
				case <-time.After(5 * time.Second):
					t.Fatal("OnFatal was not called")
				}
				select {
				case <-done:
				case <-time.After(5 * time.Second):
					t.Fatal("Run went on after OnFatal")
				}
				if n := calls.Load(); n != 1 {
					t.Fatalf("%d calls to the control plane, want 1", n)
				}
				return
			}
			waitFor(t, func() bool { return calls.Load() >= 3 })
			select {
			case err := <-fatal:
				t.Fatalf("OnFatal(%v) on an answer that may change, or with a configuration to serve", err)
			default:
			}
			if tc.saved {
				if s.Table().Version != 5 {
					t.Fatalf("serving version %d, want the saved 5", s.Table().Version)
				}
				if !strings.Contains(logs.String(), "serving the configuration it has (version 5) meanwhile") {
					t.Fatalf("the log does not say what the edge serves:\n%s", logs.String())
				}
			}
			if strings.Contains(logs.String(), "serving the last configuration") {
				t.Fatalf("the log claims a configuration:\n%s", logs.String())
			}
		})
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("timed out")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestRejectedUpdateAsksForASnapshot: a change the edge cannot apply ends
// the stream with the last good table in force, and the next stream asks
// for a full snapshot (no epoch) rather than the changes after the table's
// version, which would bring the same change back for ever and hold back
// every later one (a revocation, say).
func TestRejectedUpdateAsksForASnapshot(t *testing.T) {
	var mu sync.Mutex
	var queries []url.Values
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		queries = append(queries, r.URL.Query())
		n := len(queries)
		mu.Unlock()
		enc := json.NewEncoder(w)
		switch {
		case n == 1 || r.URL.Query().Get("epoch") == "":
			// A snapshot; the first one is followed by a change the edge
			// rejects (an upsert without its share).
			v := int64(5)
			if n > 1 {
				v = 7 // holds the shares of the bad change's successors
			}
			snap := &config.Snapshot{Epoch: "e", Version: v, Shares: []config.Share{{ID: "s", TokenHash: tokenHash("tok")}}}
			_ = enc.Encode(&config.Message{Type: config.MsgSnapshot, EdgeID: "edge-1", Epoch: "e", Version: v, Snapshot: snap})
			if n == 1 {
				_ = enc.Encode(&config.Message{Type: config.MsgChanges, Epoch: "e", Version: 6, Changes: []config.Change{
					{Version: 6, Op: config.OpUpsert, Kind: config.KindShare, ID: "bad"}}})
			}
		default:
			// The changes after the edge's version: the bad one again.
			_ = enc.Encode(&config.Message{Type: config.MsgChanges, Epoch: "e", Version: 6, Changes: []config.Change{
				{Version: 6, Op: config.OpUpsert, Kind: config.KindShare, ID: "bad"}}})
		}
		w.(http.Flusher).Flush()
		<-r.Context().Done()
	}))
	t.Cleanup(srv.Close) // after runSyncer's cleanup (LIFO): the stream ends first
	s := New(Config{ControlURL: srv.URL, Token: "edge-token"})
	runSyncer(t, s)
	waitFor(t, func() bool { return s.Table().Version == 7 })
	mu.Lock()
	defer mu.Unlock()
	if len(queries) < 2 || queries[1].Get("epoch") != "" {
		t.Fatalf("the stream after the rejected change asked %v, want no epoch (a snapshot)", queries[1:])
	}
}

// runSyncer runs s until the test ends; done is closed when Run returns.
func runSyncer(t *testing.T, s *Syncer) (done <-chan struct{}) {
	ctx, cancel := context.WithCancel(context.Background())
	ch := make(chan struct{})
	go func() { s.Run(ctx); close(ch) }()
	t.Cleanup(func() { cancel(); <-ch })
	return ch
}

// TestRejectedSnapshotWaitsBeforeAskingAgain: a full snapshot the edge
// cannot apply is not downloaded again at once (each try of a resync asks
// for the whole table): the next try waits a minute, the last good table
// staying in force.
func TestRejectedSnapshotWaitsBeforeAskingAgain(t *testing.T) {
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		snap := &config.Snapshot{Epoch: "e", Version: 5, Shares: []config.Share{{ID: "s", TokenHash: "not a hash"}}}
		_ = json.NewEncoder(w).Encode(&config.Message{Type: config.MsgSnapshot, EdgeID: "edge-1", Epoch: "e", Version: 5, Snapshot: snap})
		w.(http.Flusher).Flush()
		<-r.Context().Done()
	}))
	t.Cleanup(srv.Close) // after runSyncer's cleanup (LIFO): the stream ends first
	var logs syncbuf.Buffer
	s := New(Config{ControlURL: srv.URL, Token: "edge-token", Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	runSyncer(t, s)
	waitFor(t, func() bool { return calls.Load() == 1 && !s.Connected() })
	// The decision, as logged; then no second download where a 250 ms
	// backoff (125-250 ms with jitter) would have made one.
	waitFor(t, func() bool { return strings.Contains(logs.String(), "retryIn=1m0s") })
	time.Sleep(400 * time.Millisecond)
	if n := calls.Load(); n != 1 {
		t.Fatalf("%d snapshot downloads within 0.4 s of a rejected one, want 1 (log: %s)", n, logs.String())
	}
	if s.Table().Version != 0 {
		t.Fatalf("table at version %d: the rejected snapshot was applied", s.Table().Version)
	}
}
