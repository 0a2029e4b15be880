package main

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/spf13/cobra"

	"github.com/privateconnect/pc/internal/cliconf"
)

// The edge's body limit, head timeout and body timeout reach edge.Config
// from a flag, PC_<FLAG> or a --config file key, in pcd edge and pcd dev
// alike.
func TestEdgeLimitFlags(t *testing.T) {
	file := filepath.Join(t.TempDir(), "pcd.yaml")
	if err := os.WriteFile(file, []byte("max-body-bytes: 3000\nheader-timeout: 3s\nbody-timeout: 13s\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, dev := range []bool{false, true} {
		for _, tc := range []struct {
			name   string
			args   []string
			env    map[string]string
			file   string
			max    int64
			header time.Duration
			body   time.Duration
		}{
			{"defaults", nil, nil, "", 0, 30 * time.Second, 30 * time.Second},
			{"flags", []string{"--max-body-bytes", "1000", "--header-timeout", "1s", "--body-timeout", "11s"}, nil, "", 1000, time.Second, 11 * time.Second},
			{"environment", nil, map[string]string{"PC_MAX_BODY_BYTES": "2000", "PC_HEADER_TIMEOUT": "2s", "PC_BODY_TIMEOUT": "12s"}, "", 2000, 2 * time.Second, 12 * time.Second},
			{"config file", nil, nil, file, 3000, 3 * time.Second, 13 * time.Second},
		} {
			t.Run(fmt.Sprintf("%s/dev=%v", tc.name, dev), func(t *testing.T) {
				for k, v := range tc.env {
					t.Setenv(k, v)
				}
				var f edgeFlags
				cmd := &cobra.Command{Use: "edge"}
				f.register(cmd, dev)
				if err := cmd.Flags().Parse(tc.args); err != nil {
					t.Fatal(err)
				}
				if err := cliconf.Apply(cmd.Flags(), tc.file); err != nil {
					t.Fatal(err)
				}
				if dev {
					f.tcpPorts = "23000-23999" // runDev's, from the control plane's flags
				}
				cfg, err := f.config()
				if err != nil {
					t.Fatal(err)
				}
				if cfg.MaxBodyBytes != tc.max || cfg.HeaderTimeout != tc.header || cfg.BodyTimeout != tc.body {
					t.Fatalf("dev=%v: MaxBodyBytes %d, HeaderTimeout %v, BodyTimeout %v; want %d, %v, %v",
						dev, cfg.MaxBodyBytes, cfg.HeaderTimeout, cfg.BodyTimeout, tc.max, tc.header, tc.body)
				}
			})
		}
	}
}
