// Package wasmbuild builds test guests on demand: Go plugins with the standard toolchain
// (GOOS=wasip1 GOARCH=wasm -buildmode=c-shared) and .wat files with wat2wasm (Debian package
// wabt). Tests call it so that `go test` works on a fresh clone without `make plugins`.
// Artifacts are memoised per process; the go build cache keeps rebuilds cheap.
package wasmbuild

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

var (
	once   sync.Once
	tmpDir string
	tmpErr error

	mu      sync.Mutex
	results = map[string]*result{}
)

type result struct {
	once sync.Once
	wasm []byte
	err  error
}

func dir() (string, error) {
	once.Do(func() { tmpDir, tmpErr = os.MkdirTemp("", "pc-wasmbuild-") })
	return tmpDir, tmpErr
}

// Cleanup removes the artifacts; call it from TestMain after m.Run.
func Cleanup() {
	if tmpDir != "" {
		os.RemoveAll(tmpDir)
	}
}

// CacheDir is a persistent wazero compilation cache directory for tests (compiling a Go guest
// takes seconds, much more under -race; the cache is keyed by module hash and wazero
// version, so sharing it across runs is safe).
func CacheDir() string {
	base, err := os.UserCacheDir()
	if err != nil {
		base = os.TempDir()
	}
	d := filepath.Join(base, "privateconnect", "wazero-test-cache")
	if err := os.MkdirAll(d, 0o755); err != nil {
		return ""
	}
	return d
}

func memo(key string, build func() ([]byte, error)) ([]byte, error) {
	mu.Lock()
	r, ok := results[key]
	if !ok {
		r = &result{}
		results[key] = r
	}
	mu.Unlock()
	r.once.Do(func() { r.wasm, r.err = build() })
	return r.wasm, r.err
}

// ErrNoWat2Wasm is returned when wat2wasm is not installed.
var ErrNoWat2Wasm = errors.New("wat2wasm not found (install the wabt package)")

// WAT compiles a .wat file.
func WAT(path string) ([]byte, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, err
	}
	return memo("wat:"+abs, func() ([]byte, error) {
		tool, err := exec.LookPath("wat2wasm")
		if err != nil {
			return nil, ErrNoWat2Wasm
		}
		d, err := dir()
		if err != nil {
			return nil, err
		}
		out := filepath.Join(d, strings.ReplaceAll(strings.TrimPrefix(abs, "/"), "/", "_")+".wasm")
		cmd := exec.Command(tool, abs, "-o", out)
		if b, err := cmd.CombinedOutput(); err != nil {
			return nil, fmt.Errorf("wat2wasm %s: %v\n%s", path, err, b)
		}
		return os.ReadFile(out)
	})
}

// Go builds the Go plugin in directory pkgDir.
func Go(pkgDir string) ([]byte, error) {
	b, _, err := GoPath(pkgDir)
	return b, err
}

// GoPath is Go returning the module's file too.
func GoPath(pkgDir string) ([]byte, string, error) {
	var out string
	b, err := goBuild(pkgDir, &out)
	return b, out, err
}

func goBuild(pkgDir string, path *string) ([]byte, error) {
	abs, err := filepath.Abs(pkgDir)
	if err != nil {
		return nil, err
	}
	d, err := dir()
	if err != nil {
		return nil, err
	}
	out := filepath.Join(d, strings.ReplaceAll(strings.TrimPrefix(abs, "/"), "/", "_")+".wasm")
	*path = out
	return memo("go:"+abs, func() ([]byte, error) {
		cmd := exec.Command(goTool(), "build", "-buildmode=c-shared", "-trimpath", "-ldflags=-s", "-o", out, ".")
		cmd.Dir = abs
		cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm", "CGO_ENABLED=0")
		if b, err := cmd.CombinedOutput(); err != nil {
			return nil, fmt.Errorf("go build %s: %v\n%s", pkgDir, err, b)
		}
		return os.ReadFile(out)
	})
}

func goTool() string {
	if root := os.Getenv("GOROOT"); root != "" {
		if p := filepath.Join(root, "bin", "go"); fileExists(p) {
			return p
		}
	}
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	return "go"
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// MustWAT is WAT for tests: it skips the test when wat2wasm is missing.
func MustWAT(tb testing.TB, path string) []byte {
	tb.Helper()
	b, err := WAT(path)
	if errors.Is(err, ErrNoWat2Wasm) {
		tb.Skipf("skipping: %v", err)
	}
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// MustGo is Go for tests.
func MustGo(tb testing.TB, pkgDir string) []byte {
	tb.Helper()
	b, err := Go(pkgDir)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// Precompile fills cacheDir with wazero's compilation of the given module files, out of
// process, when this test binary runs under -race (where compiling in process is ~20 times
// slower); otherwise it does nothing. trusted must match the ModuleOptions the test loads
// the modules with.
func Precompile(cacheDir string, trusted bool, paths ...string) error {
	if !raceEnabled || cacheDir == "" || len(paths) == 0 {
		return nil
	}
	key := fmt.Sprintf("pre:%s:%v:%s", cacheDir, trusted, strings.Join(paths, ","))
	_, err := memo(key, func() ([]byte, error) {
		cmd := exec.Command(goTool(), "test", "-vet=off", "-count=1", "-run", "^TestWarm$",
			"github.com/privateconnect/pc/plugins/internal/wasmbuild/warmcache")
		cmd.Env = append(os.Environ(), "WARMCACHE_DIR="+cacheDir, "WARMCACHE_TRUSTED="+fmt.Sprint(trusted),
			"WARMCACHE_FILES="+strings.Join(paths, string(os.PathListSeparator)))
		if b, err := cmd.CombinedOutput(); err != nil {
			return nil, fmt.Errorf("warmcache: %v\n%s", err, b)
		}
		return nil, nil
	})
	return err
}

// MustGoPrecompiled is MustGo followed by Precompile into CacheDir (for a host using
// CacheDir).
func MustGoPrecompiled(tb testing.TB, pkgDir string, trusted bool) []byte {
	tb.Helper()
	b, path, err := GoPath(pkgDir)
	if err == nil {
		err = Precompile(CacheDir(), trusted, path)
	}
	if err != nil {
		tb.Fatal(err)
	}
	return b
}
