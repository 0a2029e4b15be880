package routes

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"testing"

	"github.com/privateconnect/pc/internal/config"
)

// A snapshot as an edge may receive it on its config stream.
const seedSnapshot = `{"epoch":"e1","version":7,
 "shares":[{"id":"s1","workspaceId":"w","serviceId":"v1","name":"a","tokenHash":"2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae","allowedIps":["10.0.0.0/8","2001:db8::1"],"allowedPaths":["/api/*"],"maxUses":3}],
 "services":[{"id":"v1","workspaceId":"w","agentId":"a1","name":"web","protocol":"http","targetHost":"127.0.0.1","targetPort":8080,"isPublic":true,"subdomain":"web"}],
 "agents":[{"id":"a1","workspaceId":"w","tokenHash":"fcde2b2edba56bf408601fb721fe9b5c338d10ee429ea04fae5511b68fbf8fb9","tokenExpiresAt":"2030-01-01T00:00:00Z"}],
 "edges":[{"id":"e","name":"e","publicUrl":"http://x","tunnelAddr":"127.0.0.1:1"}],
 "plugins":[{"id":"p","name":"p","sha256":"00"}],
 "settings":{"shareRateLimitPerMin":5000,"shareDomain":"s.example","publicDomain":"p.example"}}`

// FuzzBuildSnapshot decodes a config snapshot as the edge does and builds a
// routing table from it: nothing may panic; a table that builds answers its
// lookups, and the snapshot it rebuilds builds the same table again.
func FuzzBuildSnapshot(f *testing.F) {
	for _, s := range []string{seedSnapshot, `{}`, `{"shares":[{"id":"x","tokenHash":"zz"}]}`,
		`{"agents":[{"id":"a","tokenHash":""}]}`, `{"shares":[{"id":"x","tokenHash":"2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae","allowedIps":["bad"]}]}`,
		`{"services":[{"id":""}]}`, `null`, `[]`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var s config.Snapshot
		if json.Unmarshal(b, &s) != nil {
			return
		}
		tb, err := Build(&s)
		if err != nil {
			return
		}
		probe(tb)
		again, err := Build(tb.Snapshot())
		if err != nil {
			t.Fatalf("a built table's snapshot does not build: %v", err)
		}
		a1, b1, c1 := tb.Counts()
		a2, b2, c2 := again.Counts()
		if a1 != a2 || b1 != b2 || c1 != c2 {
			t.Fatalf("rebuild changed the table: %d/%d/%d vs %d/%d/%d", a1, b1, c1, a2, b2, c2)
		}
	})
}

// FuzzApplyChanges applies a batch of config changes, decoded from JSON as
// the edge does, to a table: nothing may panic, and the table applied to is
// never modified (requests in flight keep a consistent state; a rejected
// batch leaves the last good table in force).
func FuzzApplyChanges(f *testing.F) {
	for _, s := range []string{
		`[{"version":8,"op":"delete","kind":"share","id":"s1"}]`,
		`[{"version":8,"op":"upsert","kind":"share","id":"s2","share":{"id":"s2","serviceId":"v1","tokenHash":"fcde2b2edba56bf408601fb721fe9b5c338d10ee429ea04fae5511b68fbf8fb9"}}]`,
		`[{"version":8,"op":"upsert","kind":"share","id":"s2"}]`,
		`[{"version":8,"op":"upsert","kind":"agent","id":"a1","agent":{"id":"a1","tokenHash":"00","revoked":true}}]`,
		`[{"version":8,"op":"upsert","kind":"service","id":"v1","service":{"id":"v1","agentId":"a2","isPublic":true,"subdomain":"web"}},{"version":9,"op":"delete","kind":"service","id":"v1"}]`,
		`[{"version":8,"op":"upsert","kind":"settings","settings":{"shareDomain":"x"}},{"version":9,"op":"upsert","kind":"edge","id":"e2","edge":{"id":"e2"}},{"version":10,"op":"delete","kind":"plugin","id":"p"}]`,
		`[{"version":8,"op":"upsert","kind":"future","id":"z"}]`, `[]`, `[{}]`,
	} {
		f.Add([]byte(s))
	}
	var base config.Snapshot
	if err := json.Unmarshal([]byte(seedSnapshot), &base); err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var changes []config.Change
		if json.Unmarshal(b, &changes) != nil {
			return
		}
		tb, err := Build(&base)
		if err != nil {
			t.Fatal(err)
		}
		before := indexes(tb)
		n, err := tb.Apply(tb.Version+int64(len(changes)), changes)
		if after := indexes(tb); !reflect.DeepEqual(before, after) {
			t.Fatalf("Apply modified the table it was applied to:\n%v\n%v", before, after)
		}
		if err != nil {
			return
		}
		probe(n)
		if _, err := Build(n.Snapshot()); err != nil {
			t.Fatalf("an applied table's snapshot does not build: %v", err)
		}
	})
}

// probe runs every lookup of the request path on t.
func probe(t *Table) {
	for _, tok := range [][]byte{[]byte("foo"), []byte("bar"), nil} {
		t.ShareByToken(tok)
	}
	for _, s := range t.Services() {
		t.Service(s.ID)
		t.AgentServices(s.AgentID)
		t.PublicService(s.Subdomain)
	}
	for _, a := range t.Snapshot().Agents {
		t.Agent(a.ID)
	}
	t.Edges()
	t.Plugins()
}

// indexes is every index and field of a table in a comparable form (map
// iteration order varies, and the per-agent service lists are sorted).
func indexes(t *Table) map[string]string {
	js := func(v any) string {
		b, err := json.Marshal(v)
		if err != nil {
			panic(err)
		}
		return string(b)
	}
	out := map[string]string{"epoch": t.Epoch, "version": fmt.Sprint(t.Version), "settings": js(t.Settings)}
	for h, sh := range t.shares.all() {
		out["share/"+hex.EncodeToString(h[:])] = js(sh.Share)
	}
	for id, h := range t.shareByID.all() {
		out["shareid/"+id] = hex.EncodeToString(h[:])
	}
	for id, s := range t.services.all() {
		out["service/"+id] = js(s)
	}
	for sub, id := range t.subdomains.all() {
		out["sub/"+sub] = id
	}
	for id, a := range t.agents.all() {
		out["agent/"+id] = js(a)
	}
	for id, ids := range t.agentSvcs.all() {
		out["agentsvcs/"+id] = fmt.Sprint(slices.Sorted(slices.Values(ids)))
	}
	for id, e := range t.edges {
		out["edge/"+id] = js(e)
	}
	for id, p := range t.plugins {
		out["plugin/"+id] = js(p)
	}
	for id, n := range t.attached.all() {
		out["attached/"+id] = fmt.Sprint(n)
	}
	return out
}
