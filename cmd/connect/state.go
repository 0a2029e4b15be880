package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/privateconnect/pc/sdk/client"
)

// agentState is the agent identity kept in the state file (--state).
type agentState struct {
	AgentID     string             `json:"agentId"`
	Token       string             `json:"token"`
	ExpiresAt   time.Time          `json:"expiresAt"`
	IssuedAt    time.Time          `json:"issuedAt,omitzero"` // when the token was provisioned or rotated
	WorkspaceID string             `json:"workspaceId"`
	ControlURL  string             `json:"controlUrl"`
	Edges       []client.AgentEdge `json:"edges"`
	Name        string             `json:"name,omitempty"`
	Label       string             `json:"label,omitempty"`
}

// edgeAddrs returns the tunnel addresses the agent dials.
func (s *agentState) edgeAddrs() []string {
	out := make([]string, 0, len(s.Edges))
	seen := map[string]bool{}
	for _, e := range s.Edges {
		if e.TunnelAddr != "" && !seen[e.TunnelAddr] {
			seen[e.TunnelAddr] = true
			out = append(out, e.TunnelAddr)
		}
	}
	return out
}

// statePath returns the state file path with "~" expanded.
func (a *app) stateFile() (string, error) {
	return expandHome(a.statePath)
}

// loadState reads the state file; it returns nil, nil when there is none.
func loadState(path string) (*agentState, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read state file: %w", err)
	}
	var st agentState
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("state file %s is corrupt: %w", path, err)
	}
	if st.AgentID == "" || st.Token == "" {
		return nil, fmt.Errorf("state file %s has no agent identity", path)
	}
	return &st, nil
}

// saveState writes the state file atomically with mode 0600, creating its
// directory with mode 0700.
func saveState(path string, st *agentState) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create state directory: %w", err)
	}
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(dir, ".agent-*.json")
	if err != nil {
		return fmt.Errorf("write state file: %w", err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return fmt.Errorf("write state file: %w", err)
	}
	if _, err := tmp.Write(append(b, '\n')); err != nil {
		tmp.Close()
		return fmt.Errorf("write state file: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write state file: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write state file: %w", err)
	}
	return nil
}

// sameControl compares two control plane URLs loosely (trailing slash, case).
func sameControl(a, b string) bool {
	norm := func(s string) string { return strings.ToLower(strings.TrimRight(s, "/")) }
	return norm(a) == norm(b)
}
