package api

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"log/slog"
	"net/netip"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/valyala/fasthttp"

	"github.com/privateconnect/pc/control/store"
	"github.com/privateconnect/pc/internal/config"
)

// access is what a route requires of its caller.
type access int

const (
	accessPublic access = iota // no credentials
	accessRead                 // API key with read (or more)
	accessWrite                // API key with write (or more)
	accessAdmin                // API key with admin
	accessEdge                 // edge token (Authorization: Bearer)
	accessAgent                // agent token in the body (checked by the handler)
)

func (x access) scope() string {
	switch x {
	case accessRead:
		return store.ScopeRead
	case accessWrite:
		return store.ScopeWrite
	case accessAdmin:
		return store.ScopeAdmin
	}
	return ""
}

func scopeRank(s string) int {
	switch s {
	case store.ScopeRead:
		return 1
	case store.ScopeWrite:
		return 2
	case store.ScopeAdmin:
		return 3
	}
	return 0
}

func keyRank(scopes []string) int {
	r := 0
	for _, s := range scopes {
		r = max(r, scopeRank(s))
	}
	return r
}

// HashSecret is the hex SHA-256 under which keys and tokens are stored.
func HashSecret(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

// validKeyFormat checks pc_<48 lowercase hex>.
func validKeyFormat(k []byte) bool {
	if len(k) != 51 || !bytes.HasPrefix(k, []byte("pc_")) {
		return false
	}
	for _, c := range k[3:] {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

func clientAddr(ctx *fasthttp.RequestCtx) netip.Addr {
	a, _ := netip.AddrFromSlice(ctx.RemoteIP())
	return a.Unmap()
}

// authKey authenticates the x-api-key header (401s) and sets c.key; the
// key's IP allowlist (keyFromAllowedIP) and scope (authorizeKey) are
// checked after.
func (a *API) authKey(c *call) error {
	raw := c.ctx.Request.Header.Peek("x-api-key")
	if len(raw) == 0 {
		return unauthorized("missing API key: send it in the x-api-key header")
	}
	if !validKeyFormat(raw) {
		return unauthorized("invalid API key")
	}
	hash := HashSecret(string(raw))
	ck, err := a.keys.get(c.ctx, a.kv, hash)
	if errors.Is(err, store.ErrNotFound) {
		return unauthorized("invalid API key")
	}
	if err != nil {
		return err
	}
	// The index matched; compare the stored hash in constant time anyway.
	if subtle.ConstantTimeCompare([]byte(ck.key.KeyHash), []byte(hash)) != 1 {
		return unauthorized("invalid API key")
	}
	if !ck.key.Active(c.now) {
		return unauthorized("API key expired") // revoked keys are not in the index
	}
	k := ck.key
	c.key, c.ws, c.keyNets = &k, k.WorkspaceID, ck.nets
	return nil
}

// keyFromAllowedIP checks the authenticated key's IP allowlist (403).
func (a *API) keyFromAllowedIP(c *call) error {
	nets := c.keyNets
	if len(nets) == 0 {
		return nil
	}
	ip := clientAddr(c.ctx)
	for _, n := range nets {
		if n.Contains(ip) {
			return nil
		}
	}
	return forbidden("client IP " + ip.String() + " is not allowed for this API key")
}

// authorizeKey checks the authenticated key's scope (403) and records its
// use.
func (a *API) authorizeKey(c *call) error {
	k := c.key
	if need := c.r.Access.scope(); keyRank(k.Scopes) < scopeRank(need) {
		return forbidden("this route needs an API key with the " + need + " scope")
	}
	a.usage.touch(k.WorkspaceID, k.ID, c.now, clientAddr(c.ctx).String())
	return nil
}

// authEdge authenticates an edge by its bearer token.
func (a *API) authEdge(c *call) error {
	h := c.ctx.Request.Header.Peek("Authorization")
	tok, ok := bytes.CutPrefix(h, []byte("Bearer "))
	if !ok || len(tok) == 0 {
		return unauthorized("missing edge token: send Authorization: Bearer <edge token>")
	}
	hash := HashSecret(string(tok))
	var e *store.Edge
	deleted := false
	err := a.kv.View(c.ctx, func(tx store.Tx) error {
		var err error
		e, err = store.GetEdgeByTokenHash(tx, hash)
		if errors.Is(err, store.ErrNotFound) {
			var derr error
			if deleted, derr = store.EdgeDeleted(tx, hash); derr != nil {
				return derr
			}
		}
		return err
	})
	if errors.Is(err, store.ErrNotFound) {
		if deleted {
			// The edge stops serving on this answer (configsync).
			c.ctx.Response.Header.Set(config.EdgeDeletedHeader, "true")
			return unauthorized("this edge was deleted")
		}
		return unauthorized("invalid edge token")
	}
	if err != nil {
		return err
	}
	if subtle.ConstantTimeCompare([]byte(e.TokenHash), []byte(hash)) != 1 {
		return unauthorized("invalid edge token")
	}
	c.edge = e
	return nil
}

// keyCache keeps authenticated keys for a short time. Every change of a key
// through this API invalidates its entry at once (the control plane is the
// single writer), so revocation is immediate.
type keyCache struct {
	mu sync.Mutex
	m  map[string]*cachedKey
}

type cachedKey struct {
	key    store.APIKey
	nets   []netip.Prefix
	loaded time.Time
}

const keyCacheTTL = 30 * time.Second

func newKeyCache() *keyCache { return &keyCache{m: make(map[string]*cachedKey)} }

func (kc *keyCache) get(ctx context.Context, kv store.KV, hash string) (*cachedKey, error) {
	kc.mu.Lock()
	ck := kc.m[hash]
	kc.mu.Unlock()
	if ck != nil && time.Since(ck.loaded) < keyCacheTTL {
		return ck, nil
	}
	var k *store.APIKey
	err := kv.View(ctx, func(tx store.Tx) error {
		var err error
		k, err = store.GetAPIKeyByHash(tx, hash)
		return err
	})
	if err != nil {
		kc.invalidate(hash)
		return nil, err
	}
	ck = &cachedKey{key: *k, loaded: time.Now()}
	for _, s := range k.AllowedIPRanges {
		if p, err := parseCIDR(s); err == nil {
			ck.nets = append(ck.nets, p)
		}
	}
	kc.mu.Lock()
	if len(kc.m) > 100_000 {
		clear(kc.m)
	}
	kc.m[hash] = ck
	kc.mu.Unlock()
	return ck, nil
}

func (kc *keyCache) invalidate(hash string) {
	kc.mu.Lock()
	delete(kc.m, hash)
	kc.mu.Unlock()
}

// usageTracker records lastUsedAt/lastUsedIp in memory and writes them to
// the store every few seconds (one write per request would cost an fsync).
type usageTracker struct {
	kv   store.KV
	log  *slog.Logger
	mu   sync.Mutex
	m    map[string]usage // key id →
	stop chan struct{}
	done chan struct{}
}

type usage struct {
	ws string
	at time.Time
	ip string
}

func newUsageTracker(kv store.KV, log *slog.Logger) *usageTracker {
	u := &usageTracker{kv: kv, log: log, m: map[string]usage{}, stop: make(chan struct{}), done: make(chan struct{})}
	go u.loop()
	return u
}

func (u *usageTracker) touch(ws, id string, at time.Time, ip string) {
	u.mu.Lock()
	u.m[id] = usage{ws: ws, at: at, ip: ip}
	u.mu.Unlock()
}

// get returns the latest unflushed use of a key.
func (u *usageTracker) get(id string) (usage, bool) {
	u.mu.Lock()
	defer u.mu.Unlock()
	x, ok := u.m[id]
	return x, ok
}

func (u *usageTracker) loop() {
	defer close(u.done)
	t := time.NewTicker(5 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-u.stop:
			u.flush()
			return
		case <-t.C:
			u.flush()
		}
	}
}

func (u *usageTracker) flush() {
	u.mu.Lock()
	pending := u.m
	u.m = map[string]usage{}
	u.mu.Unlock()
	if len(pending) == 0 {
		return
	}
	err := u.kv.Update(context.Background(), func(tx store.Tx) error {
		for id, x := range pending {
			k, err := store.GetAPIKey(tx, x.ws, id)
			if errors.Is(err, store.ErrNotFound) {
				continue
			}
			if err != nil {
				return err
			}
			if k.LastUsedAt != nil && !x.at.After(*k.LastUsedAt) {
				continue
			}
			at := x.at
			k.LastUsedAt, k.LastUsedIP = &at, x.ip
			if err := store.PutAPIKey(tx, k); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		u.log.Warn("api key usage not saved", "err", err)
	}
}

func (u *usageTracker) close() {
	select {
	case <-u.stop:
	default:
		close(u.stop)
	}
	<-u.done
}

// auditWriter stores audit events of API mutations in batches, off the
// request path.
type auditWriter struct {
	kv     store.KV
	log    *slog.Logger
	ch     chan store.AuditEvent
	done   chan struct{}
	mu     sync.RWMutex // guards closed against sends on a closed channel
	closed bool
}

func newAuditWriter(kv store.KV, log *slog.Logger) *auditWriter {
	w := &auditWriter{kv: kv, log: log, ch: make(chan store.AuditEvent, 8192), done: make(chan struct{})}
	go w.loop()
	return w
}

func (w *auditWriter) add(c *call, status int) {
	result := "success"
	if status >= 300 {
		result = "failure"
	}
	ev := store.AuditEvent{
		ID: uuid.NewString(), WorkspaceID: c.ws, Type: c.r.Name, KeyID: c.key.ID,
		Method: c.r.Method, Route: c.r.Path, ResourceID: c.resource, IP: clientAddr(c.ctx).String(),
		Result: result, Details: httpStatusDetail(status), CreatedAt: c.now,
	}
	w.put(ev)
}

func (w *auditWriter) put(ev store.AuditEvent) {
	w.mu.RLock()
	defer w.mu.RUnlock()
	if w.closed {
		return
	}
	select {
	case w.ch <- ev:
	default:
		w.log.Warn("audit queue full; event dropped", "type", ev.Type)
	}
}

func httpStatusDetail(status int) string { return "status " + itoa(status) }

func (w *auditWriter) loop() {
	defer close(w.done)
	batch := make([]store.AuditEvent, 0, 256)
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	flush := func() {
		if len(batch) == 0 {
			return
		}
		err := w.kv.Update(context.Background(), func(tx store.Tx) error {
			for i := range batch {
				if err := store.AppendAudit(tx, &batch[i]); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			w.log.Error("audit events not saved", "n", len(batch), "err", err)
		}
		batch = batch[:0]
	}
	for {
		select {
		case ev, ok := <-w.ch:
			if !ok {
				flush()
				return
			}
			batch = append(batch, ev)
			if len(batch) == cap(batch) {
				flush()
			}
		case <-t.C:
			flush()
		}
	}
}

func (w *auditWriter) close() {
	w.mu.Lock()
	if !w.closed {
		w.closed = true
		close(w.ch)
	}
	w.mu.Unlock()
	<-w.done
}
