package push

import (
	"github.com/privateconnect/pc/control/store"
	"github.com/privateconnect/pc/internal/config"
)

// Plugin names an uploaded plugin whose committed state (or deletion) edges
// should get: its metadata, from which they fetch the module by SHA-256.
func Plugin(ws, id string) Ref { return Ref{Kind: config.KindPlugin, WorkspaceID: ws, ID: id} }

// PluginConfig is what edges know of an uploaded plugin.
func PluginConfig(p *store.Plugin) *config.Plugin {
	return &config.Plugin{ID: p.ID, Name: p.Name, SHA256: p.SHA256, FailOpen: p.FailOpen,
		TimeoutMs: p.TimeoutMs, MemoryLimitBytes: p.MemoryLimitBytes}
}

// loadPlugin reads one plugin for a change.
func loadPlugin(tx store.Tx, r Ref) (*config.Plugin, error) {
	p, err := store.GetPlugin(tx, r.WorkspaceID, r.ID)
	if err != nil {
		return nil, err
	}
	return PluginConfig(p), nil
}
