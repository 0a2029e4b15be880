// Package configsync keeps an edge's routing table in step with the control
// plane: it holds the config stream of package internal/config, builds each
// new table completely before swapping it in, persists the last good snapshot
// so the edge can start while the control plane is down, and posts the
// edge's reports.
package configsync

import (
	"bytes"
	"context"
	crand "crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/privateconnect/pc/edge/routes"
	"github.com/privateconnect/pc/internal/config"
)

// Config configures a Syncer.
type Config struct {
	ControlURL string // e.g. http://127.0.0.1:3001
	Token      string // edge token
	DataDir    string // the snapshot lives in <DataDir>/edge-<id>/
	// BeforeSwap is called with a new table just before it is in force
	// (no request has seen it yet); it must not block.
	BeforeSwap func(*routes.Table)
	// OnSwap is called after a new table is in force.
	OnSwap func(*routes.Table)
	// OnInbox is called with the agents that have new commands or messages.
	OnInbox func(agentIDs []string)
	// OnReplaced is called, once, when the control plane says another
	// process now holds this edge's stream (config.MsgReplaced), with the
	// address it connected from. Run then returns: the edge should drain
	// and stop.
	OnReplaced func(by string)
	// Instance names this process to the control plane (default: random).
	Instance string
	Logger   *slog.Logger
	// OnFatal is called, once, when retrying cannot get this edge a
	// configuration while it has none to serve (none saved, none received
	// in this process): the control plane refused its token (ErrUnauthorized)
	// or said it was deleted (ErrDeleted), the control URL is not a control
	// plane (ErrNotControlPlane), or its certificate is not trusted. The
	// error says which; Run then returns. An edge with a configuration keeps
	// serving it and retrying; so does every edge without OnFatal.
	OnFatal func(error)
	// Client is the HTTP client (default: no overall timeout, for the stream).
	Client *http.Client
	// TLS verifies the control plane over https when Client is nil (nil:
	// the system roots).
	TLS *tls.Config
	// StaleAfter is how long the stream may stay silent before it is
	// considered dead (default 20 s; the control plane pings every 5 s).
	StaleAfter time.Duration
}

// Syncer maintains the current routing table.
type Syncer struct {
	cfg          Config
	log          *slog.Logger
	table        atomic.Pointer[routes.Table]
	edgeID       atomic.Pointer[string]
	connected    atomic.Bool
	refused      atomic.Bool // the control plane said this edge was deleted (refuse)
	tokenRefused atomic.Bool // the last try was refused (ErrUnauthorized)
	notControl   atomic.Bool // the last try met something else (ErrNotControlPlane)
	served       atomic.Bool // a configuration was in force (saved or received)
	// resync: an update was rejected; the next stream asks for a full
	// snapshot instead of the changes after the table's version, which
	// would bring the rejected change again (until a snapshot applies).
	resync     atomic.Bool
	replacedBy atomic.Pointer[string]
	lastMsg    atomic.Int64 // unix nanos of the last stream message
	tokenHash  string

	saveMu   sync.Mutex
	saveCond chan struct{}
	applied  atomic.Int64 // swaps, for tests and metrics
}

// New returns a Syncer with an empty table.
func New(cfg Config) *Syncer {
	if cfg.Client == nil {
		// No redirects: the answer that makes an edge stop serving (a
		// deletion) must come from the control plane it was given.
		cfg.Client = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
		if cfg.TLS != nil {
			tr := http.DefaultTransport.(*http.Transport).Clone()
			tr.TLSClientConfig = cfg.TLS.Clone()
			cfg.Client.Transport = tr
		}
	}
	if cfg.StaleAfter <= 0 {
		cfg.StaleAfter = 20 * time.Second
	}
	if cfg.Instance == "" {
		cfg.Instance = crand.Text()
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	sum := sha256.Sum256([]byte(cfg.Token))
	s := &Syncer{cfg: cfg, log: log, tokenHash: hex.EncodeToString(sum[:]), saveCond: make(chan struct{}, 1)}
	s.table.Store(routes.Empty())
	empty := ""
	s.edgeID.Store(&empty)
	return s
}

// Table returns the table in force.
func (s *Syncer) Table() *routes.Table { return s.table.Load() }

// EdgeID returns this edge's id ("" until known).
func (s *Syncer) EdgeID() string { return *s.edgeID.Load() }

// Connected reports whether the config stream is up.
func (s *Syncer) Connected() bool { return s.connected.Load() }

// Refused reports whether the control plane said this edge was deleted;
// the edge then serves nothing (refuse).
func (s *Syncer) Refused() bool { return s.refused.Load() }

// Instance names this process to the control plane (Config.Instance).
func (s *Syncer) Instance() string { return s.cfg.Instance }

// ReplacedBy is the address of the process that replaced this one
// (config.MsgReplaced), or "".
func (s *Syncer) ReplacedBy() string {
	if p := s.replacedBy.Load(); p != nil {
		return *p
	}
	return ""
}

// TokenRefused reports whether the control plane refused the edge token at
// the last try, for a reason other than a deletion: the edge serves its last
// configuration meanwhile (an edge without one stops: Config.OnFatal).
func (s *Syncer) TokenRefused() bool { return s.tokenRefused.Load() }

// refuse drops everything the edge serves from once the control plane has
// said the edge was deleted (DELETE /v1/edges/:id deletes the token, ends
// the edge's stream, and answers its next call so): the table in force and
// the saved snapshot, so that neither this process nor a restart serves
// revoked shares from them. Sessions of agents end as the empty table comes
// into force. A bare refusal (an unknown token, a proxy's 403) does not:
// the edge then keeps serving, as when the control plane is away.
func (s *Syncer) refuse() {
	if s.refused.Swap(true) {
		return
	}
	s.log.Error("the control plane says this edge was deleted: serving nothing")
	s.saveMu.Lock()
	defer s.saveMu.Unlock()
	// The saved snapshot goes first: once the edge serves nothing, a crash
	// or a restart cannot bring the table back from it.
	if s.cfg.DataDir != "" {
		for _, f := range s.savedFiles() {
			if f.err == nil && f.sv.TokenHash == s.tokenHash {
				// The whole directory: a crashed save's temp files hold the
				// table too.
				if err := os.RemoveAll(filepath.Dir(f.path)); err != nil {
					s.log.Error("could not remove the saved snapshot of the deleted edge", "path", f.path, "err", err)
				}
			}
		}
	}
	s.swap(routes.Empty(), false)
}

// savedFile is a snapshot file of the data directory, decoded (or why not).
type savedFile struct {
	path string
	sv   saved
	err  error
}

// savedFiles reads the saved snapshots of the data directory (one per
// edge id it was saved under); unreadable files are left out.
func (s *Syncer) savedFiles() []savedFile {
	paths, _ := filepath.Glob(filepath.Join(s.cfg.DataDir, "edge-*", "snapshot.json"))
	var out []savedFile
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		f := savedFile{path: p}
		f.err = json.Unmarshal(b, &f.sv)
		out = append(out, f)
	}
	return out
}

// LastMessage is when the config stream last delivered a message.
func (s *Syncer) LastMessage() time.Time {
	if n := s.lastMsg.Load(); n != 0 {
		return time.Unix(0, n)
	}
	return time.Time{}
}

// Swaps returns how many tables were swapped in.
func (s *Syncer) Swaps() int64 { return s.applied.Load() }

// saved is the on-disk form of the last good snapshot.
type saved struct {
	EdgeID    string           `json:"edgeId"`
	TokenHash string           `json:"tokenHash"`
	SavedAt   time.Time        `json:"savedAt"`
	Snapshot  *config.Snapshot `json:"snapshot"`
}

// LoadSaved starts from the last good snapshot saved for this edge token,
// if any. It returns false when there is none.
func (s *Syncer) LoadSaved() (bool, error) {
	if s.cfg.DataDir == "" {
		return false, nil
	}
	for _, f := range s.savedFiles() {
		p, sv := f.path, f.sv
		if f.err != nil || sv.Snapshot == nil {
			s.log.Warn("ignoring unreadable saved snapshot", "path", p, "err", f.err)
			continue
		}
		if sv.TokenHash != s.tokenHash {
			continue
		}
		t, err := routes.Build(sv.Snapshot)
		if err != nil {
			return false, fmt.Errorf("configsync: saved snapshot %s: %w", p, err)
		}
		id := sv.EdgeID
		s.edgeID.Store(&id)
		s.swap(t, false)
		s.served.Store(true)
		s.log.Info("serving from the saved snapshot", "version", t.Version, "savedAt", sv.SavedAt)
		return true, nil
	}
	return false, nil
}

func (s *Syncer) swap(t *routes.Table, persist bool) {
	if s.cfg.BeforeSwap != nil {
		s.cfg.BeforeSwap(t)
	}
	s.table.Store(t)
	s.applied.Add(1)
	if s.cfg.OnSwap != nil {
		s.cfg.OnSwap(t)
	}
	if persist {
		select {
		case s.saveCond <- struct{}{}:
		default:
		}
	}
}

// Run holds the config stream until ctx ends, reconnecting with backoff.
func (s *Syncer) Run(ctx context.Context) {
	go s.saver(ctx)
	backoff := 250 * time.Millisecond
	for ctx.Err() == nil {
		start := time.Now()
		err := s.stream(ctx)
		s.connected.Store(false)
		if ctx.Err() != nil {
			return
		}
		var re *ReplacedError
		if errors.As(err, &re) {
			s.replacedBy.Store(&re.By)
			s.log.Error("another process connected to the control plane with this edge's token: this one stops (give each edge process its own token: POST /v1/edges)", "newer", re.By)
			if s.cfg.OnReplaced != nil {
				s.cfg.OnReplaced(re.By)
			}
			return
		}
		if errors.Is(err, ErrDeleted) {
			s.refuse()
		}
		if s.cfg.OnFatal != nil && !s.served.Load() && permanent(err) {
			s.cfg.OnFatal(s.fatalError(err))
			return
		}
		// What the edge does meanwhile, as its log says it.
		meanwhile := "nothing to serve meanwhile"
		if t := s.Table(); t.Epoch != "" || t.Version != 0 {
			meanwhile = "serving the configuration it has (version " + strconv.FormatInt(t.Version, 10) + ") meanwhile"
		}
		switch {
		case errors.Is(err, ErrUnauthorized):
			if !s.tokenRefused.Swap(true) {
				s.log.Error("the control plane refused this edge's token (a wrong token, a control plane restored from an older backup, a proxy in front of it?): "+meanwhile, "control", s.cfg.ControlURL)
			}
		case errors.Is(err, ErrNotControlPlane):
			if !s.notControl.Swap(true) {
				s.log.Error("the control URL does not look like the control plane (404 on the edge config route): "+meanwhile, "control", s.cfg.ControlURL)
			}
		}
		if time.Since(start) > 10*time.Second {
			backoff = 250 * time.Millisecond
		}
		if errors.Is(err, errSnapshotRejected) {
			backoff = time.Minute
		}
		if s.refused.Load() {
			// Deleted: ask again now and then (a restored control plane
			// may know it again), quietly.
			backoff = time.Minute
		} else {
			s.log.Warn("config stream ended", "err", err, "retryIn", backoff)
		}
		d := backoff/2 + time.Duration(rand.Int64N(int64(backoff/2)+1))
		select {
		case <-ctx.Done():
			return
		case <-time.After(d):
		}
		if !s.refused.Load() {
			backoff = min(backoff*2, 5*time.Second)
		}
	}
}

// errSnapshotRejected: a full snapshot could not be applied (an edge older
// than its control plane, say). Asking again at once would download the
// whole table again for the same answer: the next try waits a minute.
var errSnapshotRejected = errors.New("configsync: snapshot rejected")

// ErrUnauthorized means the control plane (or something in front of it)
// refused the edge token: the edge goes on serving its last configuration.
var ErrUnauthorized = errors.New("configsync: edge token refused")

// ErrNotControlPlane means the control URL answered 404 on the edge config
// route: it is something else (an edge's share or admin listener, a web
// server), or a wrong path prefix.
var ErrNotControlPlane = errors.New("configsync: not a control plane")

// StatusError is an answer of the control plane (or of whatever is at the
// control URL) that is not 2xx, and not a refusal of the token.
type StatusError struct {
	Method, Path string // Path without its query
	Code         int
	Body         string // its start
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("configsync: %s %s answered %d: %s", e.Method, e.Path, e.Code, e.Body)
}

// permanent reports whether retrying cannot cure err by itself: the
// control plane refused the edge, or the control URL is wrong (not a
// control plane, a certificate not trusted).
func permanent(err error) bool {
	var cert *tls.CertificateVerificationError
	return errors.Is(err, ErrUnauthorized) || errors.Is(err, ErrDeleted) || errors.Is(err, ErrNotControlPlane) || errors.As(err, &cert)
}

// fatalError explains a permanent error (Config.OnFatal) to the operator.
func (s *Syncer) fatalError(err error) error {
	u := s.cfg.ControlURL
	switch {
	case errors.Is(err, ErrUnauthorized):
		return fmt.Errorf("the control plane at %s refused this edge's token, and the edge has no saved configuration to serve: check the edge token (from POST /v1/edges or `connect edges add`): %w", u, err)
	case errors.Is(err, ErrDeleted):
		return fmt.Errorf("the control plane at %s says this edge was deleted (DELETE /v1/edges/:id), and the edge has no saved configuration to serve: register it again (`connect edges add`) and use its new token: %w", u, err)
	case errors.Is(err, ErrNotControlPlane):
		return fmt.Errorf("%s does not look like the control plane (it answered 404 to GET /v1/edges/config): the control URL is the address of the control API (pcd control --listen), not of an edge's share or admin listener: %w", u, err)
	default:
		return fmt.Errorf("the control plane at %s presented a certificate this edge does not trust, and the edge has no saved configuration to serve: give the edge the CA that signed it: %w", u, err)
	}
}

// ErrDeleted means the control plane said this edge was deleted: the edge
// stops serving (refuse).
var ErrDeleted = errors.New("configsync: this edge was deleted")

// ReplacedError ends the stream when another process opened one with the
// same edge token (config.MsgReplaced).
type ReplacedError struct {
	By string // the address the other process connected from
}

func (e *ReplacedError) Error() string {
	return "configsync: another process now serves this edge (connected from " + e.By + ")"
}

func (s *Syncer) stream(ctx context.Context) error {
	t := s.Table()
	q := url.Values{}
	epoch := t.Epoch
	if s.resync.Load() {
		epoch = "" // no epoch: the control plane answers with a snapshot
	}
	q.Set("epoch", epoch)
	q.Set("version", strconv.FormatInt(t.Version, 10))
	q.Set("instance", s.cfg.Instance)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	resp, err := s.do(ctx, http.MethodGet, "/v1/edges/config?"+q.Encode(), nil)
	if se := (*StatusError)(nil); errors.As(err, &se) && se.Code == http.StatusNotFound {
		return fmt.Errorf("%w: %w", ErrNotControlPlane, err)
	}
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	// A watchdog cancels the stream when it stays silent too long.
	alive := make(chan struct{}, 1)
	go func() {
		timer := time.NewTimer(s.cfg.StaleAfter)
		defer timer.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-alive:
				timer.Reset(s.cfg.StaleAfter)
			case <-timer.C:
				s.log.Warn("config stream silent, reconnecting")
				cancel()
				return
			}
		}
	}()
	s.connected.Store(true)
	s.refused.Store(false)
	s.tokenRefused.Store(false)
	s.notControl.Store(false)
	// A reader decodes messages as they arrive while the loop below builds
	// tables: the changes that queued up while one table was being built
	// are applied together in the next one. At 100,000 shares a table costs
	// milliseconds to copy, so one table per change would fall behind a
	// burst of API writes.
	msgs := make(chan *config.Message, 1024)
	readErr := make(chan error, 1)
	go func() {
		defer close(msgs)
		dec := json.NewDecoder(resp.Body)
		for {
			m := new(config.Message)
			if err := dec.Decode(m); err != nil {
				readErr <- fmt.Errorf("configsync: read stream: %w", err)
				return
			}
			s.lastMsg.Store(time.Now().UnixNano())
			select {
			case alive <- struct{}{}:
			default:
			}
			select {
			case msgs <- m:
			case <-ctx.Done():
				readErr <- ctx.Err()
				return
			}
		}
	}()
	var next *config.Message
	for {
		m := next
		next = nil
		if m == nil {
			var ok bool
			if m, ok = <-msgs; !ok {
				return <-readErr
			}
		}
		if m.Type == config.MsgReplaced {
			return &ReplacedError{By: m.ReplacedBy}
		}
		if m.Type == config.MsgChanges {
			next = coalesce(m, msgs)
		}
		if m.EdgeID != "" && m.EdgeID != s.EdgeID() {
			id := m.EdgeID
			s.edgeID.Store(&id)
		}
		if err := s.apply(m); err != nil {
			// Keep serving the last good table; a full snapshot fixes it.
			s.resync.Store(true)
			s.log.Error("rejected a config update; keeping the last good state and asking for a full snapshot", "err", err)
			if m.Type == config.MsgSnapshot {
				return fmt.Errorf("%w: %w", errSnapshotRejected, err)
			}
			return err
		}
	}
}

// maxCoalesced bounds the changes applied in one table.
const maxCoalesced = 10000

// coalesce appends to m the changes of the messages already waiting in
// msgs, for as long as they are changes of the same epoch (and edge id),
// and returns the first message it took that could not join (or nil).
func coalesce(m *config.Message, msgs <-chan *config.Message) *config.Message {
	for len(m.Changes) < maxCoalesced {
		select {
		case n, ok := <-msgs:
			if !ok {
				return nil
			}
			if n.Type != config.MsgChanges || n.Epoch != m.Epoch || (n.EdgeID != "" && n.EdgeID != m.EdgeID) {
				return n
			}
			m.Changes = append(m.Changes, n.Changes...)
			m.Version = max(m.Version, n.Version)
		default:
			return nil
		}
	}
	return nil
}

// apply builds the new table for one message and swaps it in.
func (s *Syncer) apply(m *config.Message) error {
	switch m.Type {
	case config.MsgSnapshot:
		if m.Snapshot == nil {
			return errors.New("configsync: snapshot message without snapshot")
		}
		t, err := routes.Build(m.Snapshot)
		if err != nil {
			return err
		}
		s.swap(t, true)
		s.served.Store(true)
		s.resync.Store(false)
		s.log.Info("applied config snapshot", "version", t.Version)
	case config.MsgChanges:
		cur := s.Table()
		if m.Epoch != "" && m.Epoch != cur.Epoch {
			return fmt.Errorf("configsync: changes for epoch %q on table of epoch %q", m.Epoch, cur.Epoch)
		}
		if len(m.Changes) == 0 {
			return nil
		}
		v := m.Version
		if last := m.Changes[len(m.Changes)-1].Version; last > v {
			v = last
		}
		if v <= cur.Version {
			return nil // already applied
		}
		t, err := cur.Apply(v, m.Changes) // skips the changes it already holds
		if err != nil {
			return err
		}
		s.swap(t, true)
	case config.MsgPing:
	case config.MsgInbox:
		if s.cfg.OnInbox != nil && len(m.Inbox) > 0 {
			s.cfg.OnInbox(m.Inbox)
		}
	default:
		// Unknown message types come from a newer control plane.
	}
	return nil
}

// saver persists the latest table at most once a second.
func (s *Syncer) saver(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.saveCond:
		}
		if err := s.Save(); err != nil {
			s.log.Error("could not persist the config snapshot", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Second):
		}
	}
}

// Save writes the table in force to disk atomically.
func (s *Syncer) Save() error {
	s.saveMu.Lock()
	defer s.saveMu.Unlock()
	id := s.EdgeID()
	if s.cfg.DataDir == "" || id == "" || s.refused.Load() {
		return nil
	}
	dir := filepath.Join(s.cfg.DataDir, "edge-"+id)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	b, err := json.Marshal(saved{EdgeID: id, TokenHash: s.tokenHash, SavedAt: time.Now().UTC(), Snapshot: s.Table().Snapshot()})
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(dir, "snapshot-*.tmp")
	if err != nil {
		return err
	}
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return err
	}
	tmp.Close()
	if err := os.Chmod(tmp.Name(), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), filepath.Join(dir, "snapshot.json"))
}

// FetchInbox gets (and marks delivered) an agent's pending commands and
// messages.
func (s *Syncer) FetchInbox(ctx context.Context, agentID string) (*config.AgentInbox, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	resp, err := s.do(ctx, http.MethodGet, "/v1/edges/agent-inbox?agentId="+url.QueryEscape(agentID), nil)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var env struct {
		Data config.AgentInbox `json:"data"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 16<<20)).Decode(&env); err != nil {
		return nil, fmt.Errorf("configsync: agent inbox: %w", err)
	}
	return &env.Data, nil
}

// FetchPlugin downloads a plugin module by SHA-256
// (GET /v1/edges/plugins/<sha256>).
func (s *Syncer) FetchPlugin(ctx context.Context, sum string) ([]byte, error) {
	resp, err := s.do(ctx, http.MethodGet, "/v1/edges/plugins/"+url.PathEscape(sum), nil)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	return io.ReadAll(io.LimitReader(resp.Body, 64<<20))
}

// Report posts one report to the control plane.
func (s *Syncer) Report(ctx context.Context, r *config.Report) error {
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	resp, err := s.do(ctx, http.MethodPost, "/v1/edges/report", b)
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
	return resp.Body.Close()
}

// do sends an edge-authenticated request to the control plane. A non-2xx
// answer is an error (ErrUnauthorized for 401/403, else the status and the
// start of the body); on success the caller closes the body.
func (s *Syncer) do(ctx context.Context, method, path string, body []byte) (*http.Response, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimRight(s.cfg.ControlURL, "/")+path, rd)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+s.cfg.Token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := s.cfg.Client.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode/100 == 2 {
		return resp, nil
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusUnauthorized && resp.Header.Get(config.EdgeDeletedHeader) == "true" {
		return nil, ErrDeleted
	}
	if resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden {
		return nil, ErrUnauthorized
	}
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	return nil, &StatusError{Method: method, Path: strings.SplitN(path, "?", 2)[0], Code: resp.StatusCode, Body: string(bytes.TrimSpace(b))}
}
