package plugins

import (
	"context"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/privateconnect/pc/plugins/internal/wasmbuild"
)

func TestMain(m *testing.M) {
	code := m.Run()
	wasmbuild.Cleanup()
	os.Exit(code)
}

// logBuffer collects log lines for assertions.
type logBuffer struct {
	mu    sync.Mutex
	lines []string
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	b.lines = append(b.lines, string(p))
	b.mu.Unlock()
	return len(p), nil
}

func (b *logBuffer) contains(s string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, l := range b.lines {
		if strings.Contains(l, s) {
			return true
		}
	}
	return false
}

func newTestHost(t testing.TB, cfg Config) (*Host, *logBuffer) {
	t.Helper()
	logs := &logBuffer{}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	if cfg.DefaultTimeout == 0 {
		// Tests run under -race on small shared machines, where a goroutine can be starved
		// for milliseconds; the budget itself is tested with explicit timeouts.
		cfg.DefaultTimeout = 50 * time.Millisecond
	}
	if cfg.CacheDir == "" {
		cfg.CacheDir = wasmbuild.CacheDir()
	}
	h, err := NewHost(context.Background(), cfg)
	require.NoError(t, err)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		require.NoError(t, h.Close(ctx))
		require.Zero(t, h.Stats().Instances, "instances leaked")
		require.Zero(t, h.Stats().Runtimes, "runtimes leaked")
	})
	return h, logs
}

func wat(t testing.TB, name string) []byte {
	return wasmbuild.MustWAT(t, "testdata/wat/"+name+".wat")
}

// headers makes a case-insensitive Request.Header from pairs.
func headers(kv ...string) func(string) (string, bool) {
	return func(name string) (string, bool) {
		for i := 0; i+1 < len(kv); i += 2 {
			if strings.EqualFold(kv[i], name) {
				return kv[i+1], true
			}
		}
		return "", false
	}
}
