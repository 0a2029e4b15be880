package cliconf

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// pcd dev narrows its loggers ("component":"edge") and the edge narrows
// them again ("component":"configsync"): a JSON line held the key twice.
// And the JSON handler wrote durations as nanoseconds ("retryIn":5000000000).
// pcd and connect both log through LogHandler.
func TestLogsOneComponentAndDurationsAsText(t *testing.T) {
	for _, format := range []string{"json", "text"} {
		t.Run(format, func(t *testing.T) {
			var buf bytes.Buffer
			log := slog.New(LogHandler(&buf, format == "json", slog.LevelInfo))
			edge := log.With("component", "edge")
			edge.With("component", "configsync").Info("config stream ended", "retryIn", 5*time.Second)
			edge.Info("fasthttp says", "component", "fasthttp")
			edge.With("k", "v").WithGroup("g").Info("grouped", "x", 1)
			log.Info("plain", "timeout", 1500*time.Millisecond)
			lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
			require.Len(t, lines, 4)
			for _, l := range lines[:3] {
				require.Equal(t, 1, strings.Count(l, "component"), l)
			}
			require.NotContains(t, lines[3], "component")
			if format == "text" {
				require.Contains(t, lines[0], "component=edge.configsync")
				require.Contains(t, lines[0], "retryIn=5s")
				return
			}
			var m []map[string]any
			for _, l := range lines {
				var v map[string]any
				require.NoError(t, json.Unmarshal([]byte(l), &v), l)
				m = append(m, v)
			}
			require.Equal(t, "edge.configsync", m[0]["component"])
			require.Equal(t, "5s", m[0]["retryIn"])
			require.Equal(t, "edge.fasthttp", m[1]["component"])
			require.Equal(t, "edge", m[2]["component"])
			require.Equal(t, "v", m[2]["k"])
			require.Equal(t, map[string]any{"x": 1.0}, m[2]["g"])
			require.Equal(t, "1.5s", m[3]["timeout"])
		})
	}
}
