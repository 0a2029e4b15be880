package bench

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"time"

	"github.com/privateconnect/pc/edge/routes"
	"github.com/privateconnect/pc/internal/config"
)

// syntheticSnapshot is a snapshot with n shares over 10 services, as the
// control plane would push it.
func syntheticSnapshot(n int) (*config.Snapshot, [][]byte) {
	s := &config.Snapshot{Epoch: "bench", Version: int64(n)}
	for i := 0; i < 10; i++ {
		s.Services = append(s.Services, config.Service{ID: fmt.Sprintf("svc-%d", i), WorkspaceID: "ws", AgentID: "agent",
			Name: fmt.Sprintf("svc-%d", i), Protocol: "http", TargetHost: "127.0.0.1", TargetPort: 8000 + i})
	}
	tokens := make([][]byte, n)
	exp := time.Now().Add(24 * time.Hour)
	s.Shares = make([]config.Share, n)
	for i := range s.Shares {
		tok := []byte(fmt.Sprintf("token-%022d", i))
		h := sha256.Sum256(tok)
		tokens[i] = tok
		s.Shares[i] = config.Share{ID: fmt.Sprintf("share-%d", i), WorkspaceID: "ws", ServiceID: fmt.Sprintf("svc-%d", i%10),
			Name: "s", TokenHash: hex.EncodeToString(h[:]), ExpiresAt: &exp}
	}
	return s, tokens
}

// TableCost is what the edge's routing table costs at one size.
type TableCost struct {
	Shares int `json:"shares"`
	// Build is routes.Build of a full snapshot (what a new or reconnecting
	// edge does).
	Build time.Duration `json:"buildNs"`
	// Apply is routes.Table.Apply of one share change (what every API
	// change costs each edge before the atomic swap).
	Apply time.Duration `json:"applyNs"`
	// Lookup is one ShareByToken (SHA-256 of the token + map lookup).
	Lookup time.Duration `json:"lookupNs"`
}

// measureTable measures the routing table at n shares, in this process.
func measureTable(n int) (TableCost, error) {
	snap, tokens := syntheticSnapshot(n)
	c := TableCost{Shares: n}
	start := time.Now()
	t, err := routes.Build(snap)
	if err != nil {
		return c, err
	}
	c.Build = time.Since(start)
	exp := time.Now().Add(time.Hour)
	h := sha256.Sum256([]byte("new-token"))
	ch := []config.Change{{Version: snap.Version + 1, Op: config.OpUpsert, Kind: config.KindShare, ID: "share-new",
		Share: &config.Share{ID: "share-new", WorkspaceID: "ws", ServiceID: "svc-0", Name: "n", TokenHash: hex.EncodeToString(h[:]), ExpiresAt: &exp}}}
	const applies = 5
	start = time.Now()
	for i := 0; i < applies; i++ {
		if _, err := t.Apply(snap.Version+1, ch); err != nil {
			return c, err
		}
	}
	c.Apply = time.Since(start) / applies
	const lookups = 200000
	start = time.Now()
	for i := 0; i < lookups; i++ {
		if _, ok := t.ShareByToken(tokens[(i*7919)%n]); !ok {
			return c, fmt.Errorf("share %d not found", i)
		}
	}
	c.Lookup = time.Since(start) / lookups
	return c, nil
}
