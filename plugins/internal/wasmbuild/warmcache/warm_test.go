// Package warmcache compiles Wasm modules into a wazero compilation cache directory, with the
// settings of the plugin host (termination checks unless trusted). wasmbuild.Precompile runs
// its TestWarm, in a test binary built without -race, before -race tests load Go guests:
// compiling a 3 MB module with a race-instrumented wazero takes ~20 s instead of ~1 s. It is
// a test (not a command) because wazero names cache entries after its version as found in
// the binary's build information, and test binaries carry none ("dev"), like the -race test
// binaries whose cache this fills.
package warmcache

import (
	"context"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/privateconnect/pc/plugins/internal/harden"
	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
)

func TestWarm(t *testing.T) {
	dir := os.Getenv("WARMCACHE_DIR")
	if dir == "" {
		t.Skip("WARMCACHE_DIR not set")
	}
	trusted := os.Getenv("WARMCACHE_TRUSTED") == "true"
	files := strings.Split(os.Getenv("WARMCACHE_FILES"), string(os.PathListSeparator))
	ctx := context.Background()
	cache, err := wazero.NewCompilationCacheWithDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer cache.Close(ctx)
	var wg sync.WaitGroup
	errs := make([]error, len(files))
	sem := make(chan struct{}, 2)
	for i, path := range files {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			wasm, err := os.ReadFile(path)
			if err != nil {
				errs[i] = err
				return
			}
			// Must match plugins.newPool: the cache key covers the module and the
			// termination-check setting; untrusted modules get the stack guard.
			if !trusted {
				g, err := harden.Module(wasm)
				if err != nil {
					errs[i] = err
					return
				}
				wasm = g.Wasm
			}
			rc := wazero.NewRuntimeConfig().WithCloseOnContextDone(!trusted).
				WithCoreFeatures(api.CoreFeaturesV2).WithCompilationCache(cache)
			rt := wazero.NewRuntimeWithConfig(ctx, rc)
			defer rt.Close(ctx)
			_, errs[i] = rt.CompileModule(ctx, wasm)
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
}
