package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"

	"github.com/privateconnect/pc/control"
	"github.com/privateconnect/pc/control/webhooks"
	"github.com/privateconnect/pc/internal/cliconf"
)

// The edge's body limit, head and body timeouts and access log rate reach
// edge.Config from a flag, PC_<FLAG> or a --config file key, in pcd edge and
// pcd dev alike; an access log rate of 0 sends none (negative in
// edge.Config, where 0 is the default).
func TestEdgeLimitFlags(t *testing.T) {
	file := filepath.Join(t.TempDir(), "pcd.yaml")
	if err := os.WriteFile(file, []byte("max-body-bytes: 3000\nheader-timeout: 3s\nbody-timeout: 13s\nvisitor-write-timeout: 23s\naccess-log-rate: 0\n"), 0o600); err != nil {
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
			write  time.Duration
			rate   int
		}{
			{"defaults", nil, nil, "", 0, 30 * time.Second, 30 * time.Second, time.Minute, 1000},
			{"flags", []string{"--max-body-bytes", "1000", "--header-timeout", "1s", "--body-timeout", "11s", "--visitor-write-timeout", "21s", "--access-log-rate", "50"}, nil, "", 1000, time.Second, 11 * time.Second, 21 * time.Second, 50},
			{"environment", nil, map[string]string{"PC_MAX_BODY_BYTES": "2000", "PC_HEADER_TIMEOUT": "2s", "PC_BODY_TIMEOUT": "12s", "PC_VISITOR_WRITE_TIMEOUT": "22s", "PC_ACCESS_LOG_RATE": "20000"}, "", 2000, 2 * time.Second, 12 * time.Second, 22 * time.Second, 20000},
			{"config file", nil, nil, file, 3000, 3 * time.Second, 13 * time.Second, 23 * time.Second, -1},
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
				if cfg.AccessLogRate != tc.rate {
					t.Fatalf("dev=%v: AccessLogRate %d, want %d", dev, cfg.AccessLogRate, tc.rate)
				}
				if cfg.VisitorWriteTimeout != tc.write {
					t.Fatalf("dev=%v: VisitorWriteTimeout %v, want %v", dev, cfg.VisitorWriteTimeout, tc.write)
				}
				if cfg.MaxBodyBytes != tc.max || cfg.HeaderTimeout != tc.header || cfg.BodyTimeout != tc.body {
					t.Fatalf("dev=%v: MaxBodyBytes %d, HeaderTimeout %v, BodyTimeout %v; want %d, %v, %v",
						dev, cfg.MaxBodyBytes, cfg.HeaderTimeout, cfg.BodyTimeout, tc.max, tc.header, tc.body)
				}
			})
		}
	}
}

// The plugins' circuit breaker is set by pcd edge's flags (plugin-abi-v1.md:
// a configurable threshold per minute); settings that cannot work are
// refused.
func TestPluginBreakerFlags(t *testing.T) {
	for _, tc := range []struct {
		name      string
		args      []string
		env       map[string]string
		threshold int
		backoff   time.Duration
		err       string
	}{
		{"defaults", nil, nil, 20, 30 * time.Second, ""},
		{"flags", []string{"--plugin-breaker-threshold", "5", "--plugin-breaker-backoff", "2m"}, nil, 5, 2 * time.Minute, ""},
		{"environment", nil, map[string]string{"PC_PLUGIN_BREAKER_THRESHOLD": "7", "PC_PLUGIN_BREAKER_BACKOFF": "45s"}, 7, 45 * time.Second, ""},
		{"zero threshold", []string{"--plugin-breaker-threshold", "0"}, nil, 0, 0, "--plugin-breaker-threshold"},
		{"negative threshold", []string{"--plugin-breaker-threshold", "-3"}, nil, 0, 0, "--plugin-breaker-threshold"},
		{"zero backoff", []string{"--plugin-breaker-backoff", "0s"}, nil, 0, 0, "--plugin-breaker-backoff"},
		{"backoff past the cap", []string{"--plugin-breaker-backoff", "11m"}, nil, 0, 0, "--plugin-breaker-backoff"},
		{"negative access log rate", []string{"--access-log-rate", "-1"}, nil, 0, 0, "--access-log-rate"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			var f edgeFlags
			cmd := &cobra.Command{Use: "edge"}
			f.register(cmd, false)
			if err := cmd.Flags().Parse(tc.args); err != nil {
				t.Fatal(err)
			}
			if err := cliconf.Apply(cmd.Flags(), ""); err != nil {
				t.Fatal(err)
			}
			cfg, err := f.config()
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want one naming %s", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if cfg.PluginBreakerThreshold != tc.threshold || cfg.PluginBreakerBackoff != tc.backoff {
				t.Fatalf("threshold %d, backoff %v; want %d, %v", cfg.PluginBreakerThreshold, cfg.PluginBreakerBackoff, tc.threshold, tc.backoff)
			}
		})
	}
}

// The webhook retry schedule, timeout and key file reach control.Config;
// settings that cannot work are refused.
func TestWebhookFlags(t *testing.T) {
	parse := func(args ...string) (control.Config, error) {
		var f controlFlags
		cmd := &cobra.Command{Use: "control"}
		f.register(cmd, true)
		if err := cmd.Flags().Parse(args); err != nil {
			t.Fatal(err)
		}
		return f.config(nil)
	}
	cfg, err := parse()
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(cfg.Webhooks.Retries) != fmt.Sprint(webhooks.DefaultRetries) || cfg.Webhooks.Timeout != 10*time.Second || cfg.WebhookKeyFile != "" {
		t.Fatalf("defaults: retries %v, timeout %v, key file %q", cfg.Webhooks.Retries, cfg.Webhooks.Timeout, cfg.WebhookKeyFile)
	}
	cfg, err = parse("--webhooks-retries", "30s, 2m", "--webhooks-timeout", "3s", "--webhooks-key-file", "/etc/pc/webhook.key")
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(cfg.Webhooks.Retries) != "[30s 2m0s]" || cfg.Webhooks.Timeout != 3*time.Second || cfg.WebhookKeyFile != "/etc/pc/webhook.key" {
		t.Fatalf("retries %v, timeout %v, key file %q", cfg.Webhooks.Retries, cfg.Webhooks.Timeout, cfg.WebhookKeyFile)
	}
	for _, bad := range [][]string{
		{"--webhooks-retries", ""}, {"--webhooks-retries", "1m,,2m"}, {"--webhooks-retries", "1m,-5s"}, {"--webhooks-retries", "soon"},
		{"--webhooks-retries", strings.Repeat("1s,", 20) + "1s"}, {"--webhooks-timeout", "0s"},
	} {
		if _, err := parse(bad...); err == nil || !strings.Contains(err.Error(), bad[0]) {
			t.Errorf("%v: error %v, want one naming %s", bad, err, bad[0])
		}
	}
}
