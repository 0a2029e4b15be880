package store

import (
	"time"
)

// Workspaces and API keys.

func wsKey(id string) []byte { return key("ws", id) }

// CreateWorkspace stores a new workspace; its name must be unique.
func CreateWorkspace(tx Tx, w *Workspace) error {
	nk := key("idx", "wsname", w.Name)
	if ok, err := exists(tx, nk); err != nil {
		return err
	} else if ok {
		return conflict("name", "a workspace named %q already exists", w.Name)
	}
	if err := tx.Put(nk, []byte(w.ID)); err != nil {
		return err
	}
	return putJSON(tx, wsKey(w.ID), w)
}

// GetWorkspace returns a workspace by id.
func GetWorkspace(tx Tx, id string) (*Workspace, error) {
	var w Workspace
	if err := getJSON(tx, wsKey(id), &w); err != nil {
		return nil, notFound("workspace", err)
	}
	return &w, nil
}

// GetWorkspaceByName returns a workspace by name.
func GetWorkspaceByName(tx Tx, name string) (*Workspace, error) {
	id, err := tx.Get(key("idx", "wsname", name))
	if err != nil {
		return nil, notFound("workspace", err)
	}
	return GetWorkspace(tx, string(id))
}

// ListWorkspaces pages through all workspaces.
func ListWorkspaces(tx Tx, after string, limit int) ([]Workspace, string, error) {
	return List[Workspace](tx, prefix("ws"), after, limit, nil)
}

func apiKeyKey(ws, id string) []byte { return key("w", ws, "key", id) }

// CreateAPIKey stores a new API key; its name must be unique among the
// workspace's active keys and its hash globally.
func CreateAPIKey(tx Tx, k *APIKey) error {
	nk := key("w", k.WorkspaceID, "keyname", k.Name)
	if ok, err := exists(tx, nk); err != nil {
		return err
	} else if ok {
		return conflict("name", "an API key named %q already exists", k.Name)
	}
	hk := key("idx", "keyhash", k.KeyHash)
	if ok, err := exists(tx, hk); err != nil {
		return err
	} else if ok {
		return conflict("key", "key hash collision")
	}
	if err := tx.Put(nk, []byte(k.ID)); err != nil {
		return err
	}
	if err := tx.Put(hk, pointer(k.WorkspaceID, k.ID)); err != nil {
		return err
	}
	return putJSON(tx, apiKeyKey(k.WorkspaceID, k.ID), k)
}

// GetAPIKey returns a key of the workspace (revoked ones included).
func GetAPIKey(tx Tx, ws, id string) (*APIKey, error) {
	var k APIKey
	if err := getJSON(tx, apiKeyKey(ws, id), &k); err != nil {
		return nil, notFound("API key", err)
	}
	return &k, nil
}

// GetAPIKeyByHash returns the active (not revoked) key with the hash.
func GetAPIKeyByHash(tx Tx, hash string) (*APIKey, error) {
	p, err := tx.Get(key("idx", "keyhash", hash))
	if err != nil {
		return nil, notFound("API key", err)
	}
	ws, id, _ := splitPointer(p)
	k, err := GetAPIKey(tx, ws, id)
	if err != nil {
		return nil, err
	}
	if k.RevokedAt != nil {
		return nil, &NotFoundError{Kind: "API key"}
	}
	return k, nil
}

// PutAPIKey overwrites a key's record (name and hash must not change).
func PutAPIKey(tx Tx, k *APIKey) error {
	return putJSON(tx, apiKeyKey(k.WorkspaceID, k.ID), k)
}

// ListAPIKeys pages through the workspace's keys active at now (not
// revoked, not expired), so a page holds limit of them.
func ListAPIKeys(tx Tx, ws, after string, limit int, now time.Time) ([]APIKey, string, error) {
	return List(tx, prefix("w", ws, "key"), after, limit, func(k *APIKey) bool { return k.Active(now) })
}

// RevokeAPIKey marks a key revoked and frees its name and hash.
func RevokeAPIKey(tx Tx, ws, id string, at time.Time) (*APIKey, error) {
	k, err := GetAPIKey(tx, ws, id)
	if err != nil {
		return nil, err
	}
	if k.RevokedAt != nil {
		return nil, &NotFoundError{Kind: "API key"}
	}
	k.RevokedAt = &at
	if err := tx.Delete(key("w", ws, "keyname", k.Name)); err != nil {
		return nil, err
	}
	if err := tx.Delete(key("idx", "keyhash", k.KeyHash)); err != nil {
		return nil, err
	}
	return k, PutAPIKey(tx, k)
}

// Metadata.

// GetMeta reads a metadata value (ErrNotFound when unset).
func GetMeta(tx Tx, name string) ([]byte, error) { return tx.Get(key("meta", name)) }

// PutMeta writes a metadata value.
func PutMeta(tx Tx, name string, v []byte) error { return tx.Put(key("meta", name), v) }
