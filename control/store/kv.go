// Package store holds the control plane's domain types (workspaces, API keys,
// agents, services, shares, edges, audit events, messages, commands) and the
// typed repository functions that read and write them through a small
// transactional key-value interface, [KV].
//
// The package imports no database: control/store/badgerstore implements [KV]
// on Badger (durable writes), control/store/memstore in memory for tests, and
// control/store/storetest is the conformance suite both pass.
//
// # Keys
//
// Every workspace-owned record lives under its workspace's prefix
// (w/<workspace>/<kind>/<id>), so isolation is structural: a lookup always
// names the workspace. Global indexes exist only where a global lookup is
// needed and map to a pointer "<workspace>/<id>":
//
//	ws/<id>                         workspace
//	idx/wsname/<name>               workspace id
//	idx/keyhash/<sha256>            api key   (<ws>/<id>)
//	idx/agent/<id>                  agent's workspace
//	idx/sharetok/<sha256>           share     (<ws>/<id>)
//	idx/port/<00000>                service   (<ws>/<id>)   tunnel port
//	idx/subdomain/<name>            service   (<ws>/<id>)
//	idx/subdomainheld/<name>        workspace that released it (expires: SubdomainHold)
//	edge/<id>, idx/edgename/<name>, idx/edgetok/<sha256>
//	wasm/<sha256>, wasmref/<sha256>/<ws>/<id>   plugin modules, stored once (plugins.go)
//	meta/<name>                     control-plane metadata (config version, settings)
//	rpt/<edge>/<report>/<part>      parts of an edge report applied (expires: ReportMemory)
//
// Uniqueness (names, ports, subdomains, token hashes) is enforced by these
// index keys inside the same transaction as the record. Values are JSON.
// Secrets are stored only as SHA-256 hex.
package store

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// KV is a transactional, ordered key-value store.
type KV interface {
	// Update runs fn in a read-write transaction. It commits when fn returns
	// nil; when fn (or the commit) fails nothing of it is applied. Errors
	// returned by fn are passed through unchanged.
	Update(ctx context.Context, fn func(Tx) error) error
	// View runs fn in a read-only transaction over a consistent state.
	View(ctx context.Context, fn func(Tx) error) error
	// Ping reports whether the store answers.
	Ping(ctx context.Context) error
	Close() error
}

// Tx is one transaction. Keys and values passed in may be retained by the
// transaction; values returned are owned by the caller.
type Tx interface {
	// Get returns the value of key or ErrNotFound.
	Get(key []byte) ([]byte, error)
	Put(key, val []byte) error
	// PutTTL stores a value that disappears after ttl.
	PutTTL(key, val []byte, ttl time.Duration) error
	// Delete removes key; deleting an absent key is not an error.
	Delete(key []byte) error
	// Scan calls fn for each key with the prefix, in byte order, starting
	// strictly after `after` when it is not nil, until fn returns false or an
	// error. k and v are only valid during the call.
	Scan(prefix, after []byte, fn func(k, v []byte) (more bool, err error)) error
}

// Sentinel errors. The API maps them to statuses: ErrNotFound → 404,
// ErrConflict → 409, ErrUnavailable → 503, ErrExhausted → 503.
var (
	ErrNotFound    = errors.New("not found")
	ErrConflict    = errors.New("conflict")
	ErrUnavailable = errors.New("storage unavailable")
	ErrExhausted   = errors.New("no free resource")
	ErrReadOnly    = errors.New("read-only transaction")
)

// ConflictError names what is already taken. It matches ErrConflict.
type ConflictError struct {
	Field   string // the request field that collides ("name", "subdomain", ...)
	Message string // a human sentence
}

func (e *ConflictError) Error() string { return "conflict: " + e.Message }

// Is makes errors.Is(err, ErrConflict) true.
func (e *ConflictError) Is(target error) bool { return target == ErrConflict }

func conflict(field, format string, args ...any) error {
	return &ConflictError{Field: field, Message: fmt.Sprintf(format, args...)}
}

// NotFoundError says which kind of object is absent. It matches ErrNotFound.
type NotFoundError struct{ Kind string }

func (e *NotFoundError) Error() string { return e.Kind + " not found" }

// Is makes errors.Is(err, ErrNotFound) true.
func (e *NotFoundError) Is(target error) bool { return target == ErrNotFound }

func notFound(kind string, err error) error {
	if errors.Is(err, ErrNotFound) {
		return &NotFoundError{Kind: kind}
	}
	return err
}
