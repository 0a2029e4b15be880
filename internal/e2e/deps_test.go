package e2e

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

const mod = "github.com/privateconnect/pc"

// deps lists the packages a package links (go list -deps).
func deps(t *testing.T, pkg string) []string {
	t.Helper()
	out, err := exec.Command("go", "list", "-deps", pkg).Output()
	require.NoError(t, err, "go list -deps %s", pkg)
	return strings.Fields(string(out))
}

// TestDependencyDirection enforces the layout rules of the design.
func TestDependencyDirection(t *testing.T) {
	if testing.Short() {
		t.Skip("runs go list")
	}
	rules := []struct {
		pkg       string
		forbidden []string
	}{
		{mod + "/edge/...", []string{mod + "/control", "github.com/dgraph-io/badger"}},
		{mod + "/control/...", []string{mod + "/edge"}},
		{mod + "/sdk/agent", []string{"github.com/dgraph-io/badger", "github.com/tetratelabs/wazero", mod + "/edge", mod + "/control", mod + "/plugins"}},
		{mod + "/sdk/client", []string{"github.com/dgraph-io/badger", "github.com/tetratelabs/wazero", mod + "/edge", mod + "/control"}},
		{mod + "/cmd/connect", []string{"github.com/dgraph-io/badger", "github.com/tetratelabs/wazero", mod + "/edge", mod + "/control"}},
	}
	for _, r := range rules {
		for _, d := range deps(t, r.pkg) {
			for _, f := range r.forbidden {
				require.False(t, d == f || strings.HasPrefix(d, f+"/"), "%s must not import %s (via %s)", r.pkg, f, d)
			}
		}
	}
	// Only the Badger store package imports Badger.
	out, err := exec.Command("go", "list", "-f", `{{.ImportPath}} {{join .Imports " "}}`, mod+"/...").Output()
	require.NoError(t, err)
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		for _, imp := range f[1:] {
			if strings.HasPrefix(imp, "github.com/dgraph-io/badger") {
				require.Equal(t, mod+"/control/store/badgerstore", f[0], "only the Badger store imports Badger")
			}
		}
	}
	// The plugin SDK uses the standard library only.
	for _, d := range deps(t, mod+"/sdk/plugin") {
		if strings.Contains(strings.SplitN(d, "/", 2)[0], ".") && !strings.HasPrefix(d, mod+"/sdk/plugin") {
			t.Fatalf("sdk/plugin links %s: it must use the standard library only", d)
		}
	}
}
