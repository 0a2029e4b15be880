package e2e

// Where secrets live and how they are stored (docs/security.md): after a
// real control plane (Badger on disk) and edge have handled every kind of
// secret, no plaintext secret is anywhere in the database, its files or the
// edge's saved snapshot; the hashed ones are there as SHA-256; the files
// holding secrets are 0600 in 0700 directories.

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/privateconnect/pc/control"
	"github.com/privateconnect/pc/control/store"
	"github.com/privateconnect/pc/control/store/badgerstore"
	"github.com/privateconnect/pc/internal/testenv"
	"github.com/privateconnect/pc/internal/tunnel"
	"github.com/privateconnect/pc/sdk/client"
)

func sha256Hex(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

func requireMode(t *testing.T, path string, want os.FileMode) {
	t.Helper()
	st, err := os.Stat(path)
	require.NoError(t, err)
	require.Equal(t, want, st.Mode().Perm(), "%s", path)
}

// TestSecretsAtRest creates one of each secret (admin and API keys, an
// agent token, a share token and password, an edge token, a webhook
// secret), stops everything, and inspects what was written.
func TestSecretsAtRest(t *testing.T) {
	if testing.Short() {
		t.Skip("whole system")
	}
	dataDir := filepath.Join(t.TempDir(), "control")
	env := testenv.New(t, testenv.Options{DataDir: dataDir})
	ctx := context.Background()
	org := origin(t)
	agentID, agentToken, edges := env.ProvisionAgent("a")
	ag := env.RunAgent(agentID, agentToken, edges)
	svc := env.Expose(ag, "web", org.URL)
	const password = "correct horse battery"
	sh := env.Share(svc.ID, client.CreateShareRequest{Password: password})
	key, err := env.Client.CreateAPIKey(ctx, client.CreateAPIKeyRequest{Name: "k"})
	require.NoError(t, err)
	wh, err := env.Client.CreateWebhook(ctx, client.CreateWebhookRequest{URL: "https://hooks.example.com/x", Events: []string{"share.created"}})
	require.NoError(t, err)
	require.NotEmpty(t, wh.Secret)
	ed := env.Edges[0]
	plain := map[string]string{
		"admin API key": env.AdminKey, "API key": key.Key, "agent token": agentToken, "share token": sh.Token,
		"share password": password, "edge token": ed.Token, "webhook secret": wh.Secret,
	}
	hashed := map[string]string{"API key": key.Key, "admin API key": env.AdminKey, "agent token": agentToken,
		"share token": sh.Token, "edge token": ed.Token}
	code, _ := get(t, testenv.ShareURL(ed, sh.Token)+"/")
	require.Equal(t, 401, code, "the share asks for its password")

	ag.Stop()
	require.NoError(t, ed.Close()) // saves the edge's snapshot
	env.StopControl()

	// 1. The database, read through the store: every key and value.
	kv, err := badgerstore.Open(badgerstore.Options{Dir: filepath.Join(dataDir, "control.db")})
	require.NoError(t, err)
	var all bytes.Buffer
	require.NoError(t, kv.View(ctx, func(tx store.Tx) error {
		return tx.Scan(nil, nil, func(k, v []byte) (bool, error) {
			all.Write(k)
			all.WriteByte(0)
			all.Write(v)
			all.WriteByte('\n')
			return true, nil
		})
	}))
	require.NoError(t, kv.Close())
	db := all.String()
	for what, s := range plain {
		require.NotContains(t, db, s, "the %s is stored in plaintext", what)
	}
	for what, s := range hashed {
		require.Contains(t, db, sha256Hex(s), "the %s is stored as its SHA-256", what)
	}
	require.Contains(t, db, "pbkdf2-sha256:", "the share password is stored as a PBKDF2 hash")

	// 2. Every file the control plane wrote (logs, value log, tables),
	// except the bootstrap key file whose purpose is to hold the admin key.
	require.NoError(t, filepath.WalkDir(dataDir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || d.Name() == control.AdminKeyFile {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		for what, s := range plain {
			require.False(t, bytes.Contains(b, []byte(s)), "the %s is in plaintext in %s", what, p)
		}
		return nil
	}))
	requireMode(t, filepath.Join(dataDir, control.AdminKeyFile), 0o600)
	requireMode(t, filepath.Join(dataDir, control.WebhookKeyFile), 0o600)
	requireMode(t, filepath.Join(dataDir, "control.db"), 0o700)

	// 3. The edge's saved snapshot: hashes and public keys only. The agent
	// is known by the public half of its handshake key (tunnel protocol 2),
	// not by its token hash (the protocol 1 key): nothing an edge holds can
	// open a tunnel as the agent.
	snaps, _ := filepath.Glob(filepath.Join(ed.DataDir, "edge-*", "snapshot.json"))
	require.Len(t, snaps, 1)
	b, err := os.ReadFile(snaps[0])
	require.NoError(t, err)
	for what, s := range plain {
		require.NotContains(t, string(b), s, "the %s is in the edge snapshot", what)
	}
	require.NotContains(t, string(b), sha256Hex(agentToken), "the agent token hash (a tunnel key) is in the edge snapshot")
	pub := tunnel.AgentPublicKey(agentToken)
	require.Contains(t, string(b), hex.EncodeToString(pub[:]))
	require.Contains(t, string(b), sha256Hex(sh.Token))
	require.True(t, strings.Contains(string(b), sha256Hex(ed.Token)), "the snapshot is bound to its edge token by hash")
	requireMode(t, snaps[0], 0o600)
	requireMode(t, filepath.Dir(snaps[0]), 0o700)
}
