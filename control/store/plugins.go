package store

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"time"
)

// Plugins: uploaded Wasm access-control modules (plugin-abi-v1.md).
//
//	w/<ws>/plugin/<id>                   plugin metadata (JSON)
//	w/<ws>/pluginname/<name>/<version>   plugin id: name and version are unique together in a workspace
//	wasm/<sha256>                        module bytes, stored once however many plugins use them
//	wasmref/<sha256>/<ws>/<id>           one per plugin using the module; deleting the last
//	                                     reference deletes the bytes
//
// The module bytes are global because edges fetch them by SHA-256 alone
// (GET /v1/edges/plugins/<sha256>); everything a client can name is under
// its workspace.

// Plugin is an uploaded plugin's metadata; its module is stored under its
// SHA-256 (see [GetPluginModule]). Plugins are immutable: a new module is a
// new plugin (another version).
type Plugin struct {
	ID                string    `json:"id"`
	WorkspaceID       string    `json:"workspaceId"`
	Name              string    `json:"name"`
	Version           string    `json:"version"`
	Description       string    `json:"description,omitempty"`
	SHA256            string    `json:"sha256"` // hex
	SizeBytes         int       `json:"sizeBytes"`
	Exports           []string  `json:"exports"`
	HasValidateConfig bool      `json:"hasValidateConfig,omitempty"`
	FailOpen          bool      `json:"failOpen,omitempty"`
	TimeoutMs         int       `json:"timeoutMs,omitempty"`        // per-call budget; 0: the edge's default
	MemoryLimitBytes  uint64    `json:"memoryLimitBytes,omitempty"` // 0: the edge's default
	CreatedAt         time.Time `json:"createdAt"`
	CreatedBy         string    `json:"createdBy,omitempty"` // API key id
}

func pluginKey(ws, id string) []byte { return key("w", ws, "plugin", id) }

func pluginNameKey(ws, name, version string) []byte {
	return key("w", ws, "pluginname", name, version)
}

func moduleKey(sum string) []byte { return key("wasm", sum) }

func moduleRefKey(sum, ws, id string) []byte { return key("wasmref", sum, ws, id) }

// ModuleSHA256 is the hex SHA-256 under which a module is stored.
func ModuleSHA256(wasm []byte) string {
	s := sha256.Sum256(wasm)
	return hex.EncodeToString(s[:])
}

// CreatePlugin stores a new plugin and its module. SHA256 and SizeBytes are
// set from wasm (a different SHA256 given is an error). Name and version
// must be unique together in the workspace (a conflict on "version"
// otherwise). The module bytes are written only when no other plugin
// stored the same ones.
func CreatePlugin(tx Tx, p *Plugin, wasm []byte) error {
	if len(wasm) == 0 {
		return fmt.Errorf("create plugin %s: empty module", p.ID)
	}
	sum := ModuleSHA256(wasm)
	if p.SHA256 != "" && p.SHA256 != sum {
		return fmt.Errorf("create plugin %s: sha256 %s does not match the module (%s)", p.ID, p.SHA256, sum)
	}
	p.SHA256, p.SizeBytes = sum, len(wasm)
	if p.Exports == nil {
		p.Exports = []string{}
	}
	nk := pluginNameKey(p.WorkspaceID, p.Name, p.Version)
	if ok, err := exists(tx, nk); err != nil {
		return err
	} else if ok {
		if p.Version == "" {
			return conflict("version", "a plugin named %q without a version already exists: give this upload a version (?version=, connect plugins push --version)", p.Name)
		}
		return conflict("version", "a plugin named %q with version %q already exists", p.Name, p.Version)
	}
	if ok, err := exists(tx, pluginKey(p.WorkspaceID, p.ID)); err != nil {
		return err
	} else if ok {
		return conflict("id", "plugin id %s is taken", p.ID)
	}
	mk := moduleKey(sum)
	if ok, err := exists(tx, mk); err != nil {
		return err
	} else if !ok {
		if err := tx.Put(mk, bytes.Clone(wasm)); err != nil {
			return err
		}
	}
	if err := tx.Put(moduleRefKey(sum, p.WorkspaceID, p.ID), nil); err != nil {
		return err
	}
	if err := tx.Put(nk, []byte(p.ID)); err != nil {
		return err
	}
	return putJSON(tx, pluginKey(p.WorkspaceID, p.ID), p)
}

// GetPlugin returns a plugin of the workspace.
func GetPlugin(tx Tx, ws, id string) (*Plugin, error) {
	var p Plugin
	if err := getJSON(tx, pluginKey(ws, id), &p); err != nil {
		return nil, notFound("plugin", err)
	}
	return &p, nil
}

// UsePlugin returns a plugin of the workspace for a share that attaches it,
// and writes its record back unchanged: a concurrent [DeletePlugin]
// transaction, which reads that record, then conflicts and is retried by
// the store (and sees the share), so a plugin can never be deleted from
// under a share being created.
func UsePlugin(tx Tx, ws, id string) (*Plugin, error) {
	k := pluginKey(ws, id)
	b, err := tx.Get(k)
	if err != nil {
		return nil, notFound("plugin", err)
	}
	if err := tx.Put(k, b); err != nil {
		return nil, err
	}
	var p Plugin
	if err := json.Unmarshal(b, &p); err != nil {
		return nil, fmt.Errorf("decode %s: %w", k, err)
	}
	return &p, nil
}

// ListPlugins pages through the workspace's plugins (cursor: plugin id).
func ListPlugins(tx Tx, ws, after string, limit int) ([]Plugin, string, error) {
	return List[Plugin](tx, prefix("w", ws, "plugin"), after, limit, nil)
}

// GetPluginModule returns the module bytes stored under a SHA-256 (hex).
func GetPluginModule(tx Tx, sum string) ([]byte, error) {
	b, err := tx.Get(moduleKey(sum))
	if err != nil {
		return nil, notFound("plugin module", err)
	}
	return b, nil
}

// SharesUsingPlugin returns the ids of the workspace's shares that attach
// the plugin and are not revoked (an expired share can be given a new
// expiry, so it still counts).
func SharesUsingPlugin(tx Tx, ws, pluginID string) ([]string, error) {
	shares, _, err := ListShares(tx, ws, "", 0, func(s *Share) bool {
		if s.RevokedAt != nil {
			return false
		}
		for _, r := range s.Plugins {
			if r.PluginID == pluginID {
				return true
			}
		}
		return false
	})
	if err != nil {
		return nil, err
	}
	ids := make([]string, 0, len(shares))
	for _, s := range shares {
		ids = append(ids, s.ID)
	}
	return ids, nil
}

// DeletePlugin removes a plugin, its name index and its module reference,
// and the module bytes when no other plugin references them. It does not
// look at shares: callers check [SharesUsingPlugin] in the same transaction.
func DeletePlugin(tx Tx, ws, id string) (*Plugin, error) {
	p, err := GetPlugin(tx, ws, id)
	if err != nil {
		return nil, err
	}
	for _, k := range [][]byte{pluginNameKey(ws, p.Name, p.Version), moduleRefKey(p.SHA256, ws, id), pluginKey(ws, id)} {
		if err := tx.Delete(k); err != nil {
			return nil, err
		}
	}
	refs := 0
	err = tx.Scan(prefix("wasmref", p.SHA256), nil, func(k, v []byte) (bool, error) { refs++; return false, nil })
	if err != nil {
		return nil, err
	}
	if refs == 0 {
		if err := tx.Delete(moduleKey(p.SHA256)); err != nil {
			return nil, err
		}
	}
	return p, nil
}
