package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
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
	// Services are the agent's services as the control plane last listed
	// them: what the agent serves when it starts without the control plane
	// (the edges know them from their own configuration).
	Services []savedService `json:"services,omitempty"`
}

// savedService is a service of the agent kept in the state file.
type savedService struct {
	ID         string `json:"id"`
	Name       string `json:"name"`
	TargetHost string `json:"targetHost"`
	TargetPort int    `json:"targetPort"`
	Protocol   string `json:"protocol"`
	TunnelPort int    `json:"tunnelPort,omitempty"`
	IsPublic   bool   `json:"isPublic,omitempty"`
}

func saveService(s client.Service) savedService {
	return savedService{ID: s.ID, Name: s.Name, TargetHost: s.TargetHost, TargetPort: s.TargetPort,
		Protocol: s.Protocol, TunnelPort: s.TunnelPort, IsPublic: s.IsPublic}
}

// service is s as the API would describe it (status unknown: no API).
func (s savedService) service(agentID string) client.Service {
	return client.Service{ID: s.ID, Name: s.Name, AgentID: agentID, TargetHost: s.TargetHost, TargetPort: s.TargetPort,
		Protocol: s.Protocol, TunnelPort: s.TunnelPort, IsPublic: s.IsPublic}
}

// setServices replaces the saved services by the control plane's list.
func (s *agentState) setServices(svcs []client.Service) {
	s.Services = s.Services[:0]
	for _, sv := range svcs {
		s.Services = append(s.Services, saveService(sv))
	}
}

// putService adds or updates one saved service (by id).
func (s *agentState) putService(svc client.Service) {
	for i := range s.Services {
		if s.Services[i].ID == svc.ID || s.Services[i].Name == svc.Name {
			s.Services[i] = saveService(svc)
			return
		}
	}
	s.Services = append(s.Services, saveService(svc))
}

// savedService returns the saved service named name.
func (s *agentState) savedService(name string) (savedService, bool) {
	for _, sv := range s.Services {
		if sv.Name == name {
			return sv, true
		}
	}
	return savedService{}, false
}

// savedTargets are the host:port targets of the saved services.
func (s *agentState) savedTargets() []string {
	out := make([]string, 0, len(s.Services))
	for _, sv := range s.Services {
		out = append(out, net.JoinHostPort(sv.TargetHost, strconv.Itoa(sv.TargetPort)))
	}
	return out
}

// dropEdges removes from the edge list the addresses of started (the list
// an agent started with) that are not in kept (what it still holds: it
// dropped a deleted edge), and adds those of kept it lacks (every edge of
// the list was deleted: the agent took the edges it is connected to).
func (s *agentState) dropEdges(started, kept []string) {
	edges := slices.DeleteFunc(slices.Clone(s.Edges), func(e client.AgentEdge) bool {
		return slices.Contains(started, e.TunnelAddr) && !slices.Contains(kept, e.TunnelAddr)
	})
	for _, addr := range kept {
		if !slices.ContainsFunc(edges, func(e client.AgentEdge) bool { return e.TunnelAddr == addr }) {
			edges = append(edges, client.AgentEdge{TunnelAddr: addr})
		}
	}
	s.Edges = edges
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
func (a *app) stateFile() (string, error) { return expandHome(a.statePath) }

// saveStateOf saves st in this command's state file.
func (a *app) saveStateOf(st *agentState) error {
	path, err := a.stateFile()
	if err != nil {
		return err
	}
	return saveState(path, st)
}

// mergeService adds svc, registered for the agent another process runs,
// to the state file at path, under the lock of its writes (that process
// saves the file too: liveState.update keeps what is added here). A file
// that holds another agent is left alone.
func mergeService(path, agentID string, svc client.Service) error {
	unlock, err := lockStateWrite(path)
	if err != nil {
		return err
	}
	defer unlock()
	st, err := loadState(path)
	if err != nil || st == nil || st.AgentID != agentID {
		return err
	}
	st.putService(svc)
	return saveState(path, st)
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
