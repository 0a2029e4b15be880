// Command pcd is the Private Connect server: `pcd control` runs the control
// plane, `pcd edge` an edge node, and `pcd dev` both in one process, wired
// through their real network protocols on loopback.
package main

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/privateconnect/pc/edge"
	"github.com/privateconnect/pc/internal/cliconf"
	"github.com/privateconnect/pc/internal/devcert"
	"github.com/spf13/cobra"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

func main() {
	edge.Version = version // what an edge reports on /health and to the control plane
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run is the whole program; it returns the exit code.
func run(args []string, stdout, stderr io.Writer) int {
	return cliconf.Execute(rootCmd(stdout, stderr), args, stdout, stderr)
}

// common holds the flags every server command has.
type common struct {
	configFile string
	logFormat  string
	logLevel   string
	stdout     io.Writer
	stderr     io.Writer
}

func rootCmd(stdout, stderr io.Writer) *cobra.Command {
	c := &common{stdout: stdout, stderr: stderr}
	root := &cobra.Command{
		Use:           "pcd",
		Short:         "Private Connect server: control plane and edge nodes",
		Version:       version,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.PersistentFlags().StringVar(&c.configFile, "config", "", "YAML config file: keys are flag names")
	root.PersistentFlags().StringVar(&c.logFormat, "log-format", "", "log format: text or json (default: text on a terminal, json otherwise)")
	root.PersistentFlags().StringVar(&c.logLevel, "log-level", "info", "log level: debug, info, warn, error")
	cliconf.Document(root.PersistentFlags())
	root.AddCommand(controlCmd(c), edgeCmd(c), devCmd(c))
	return root
}

// prepare applies env and config-file values to a command's flags.
func (c *common) prepare(cmd *cobra.Command) error {
	if v, ok := os.LookupEnv("PC_CONFIG"); ok && c.configFile == "" {
		c.configFile = v
	}
	if err := cliconf.Apply(cmd.Flags(), c.configFile); err != nil {
		return err
	}
	return nil
}

// runE wraps a command: flags from the environment and config file, then
// the logger, then f.
func (c *common) runE(f func(cmd *cobra.Command, log *slog.Logger) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, _ []string) error {
		if err := c.prepare(cmd); err != nil {
			return err
		}
		log, err := c.logger()
		if err != nil {
			return err
		}
		return f(cmd, log)
	}
}

func (c *common) logger() (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(c.logLevel)); err != nil {
		return nil, fmt.Errorf("--log-level: %w", err)
	}
	format := c.logFormat
	if format == "" {
		format = "json"
		if f, ok := c.stderr.(*os.File); ok {
			if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
				format = "text"
			}
		}
	}
	switch format {
	case "text":
		return slog.New(cliconf.LogHandler(c.stderr, false, level)), nil
	case "json":
		return slog.New(cliconf.LogHandler(c.stderr, true, level)), nil
	default:
		return nil, fmt.Errorf("--log-format %q: want text or json", format)
	}
}

// loadTLS loads a certificate pair, or returns nil when neither is given.
func loadTLS(certFile, keyFile string) (*tls.Config, error) {
	if certFile == "" && keyFile == "" {
		return nil, nil
	}
	if certFile == "" || keyFile == "" {
		return nil, errors.New("--tls-cert and --tls-key go together")
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("load TLS certificate: %w", err)
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, nil
}

// loadCA returns a TLS client config trusting the certificates of a PEM
// file, or nil when file is "".
func loadCA(file string) (*tls.Config, error) {
	if file == "" {
		return nil, nil
	}
	return devcert.ClientTLS(file)
}

// maxRetries bounds --webhooks-retries.
const maxRetries = 20

// parseRetries parses --webhooks-retries: "1m,5m,25m".
func parseRetries(s string) ([]time.Duration, error) {
	var out []time.Duration
	for _, f := range strings.Split(s, ",") {
		d, err := time.ParseDuration(strings.TrimSpace(f))
		if err != nil || d <= 0 {
			return nil, fmt.Errorf("--webhooks-retries %q: want positive durations separated by commas, e.g. 1m,5m,25m", s)
		}
		out = append(out, d)
	}
	if len(out) > maxRetries {
		return nil, fmt.Errorf("--webhooks-retries %q: at most %d retries", s, maxRetries)
	}
	return out, nil
}

// parsePorts parses "23000-23999".
func parsePorts(s string) (int, int, error) {
	lo, hi, ok := strings.Cut(s, "-")
	var a, b int
	if _, err := fmt.Sscanf(lo, "%d", &a); err != nil {
		return 0, 0, fmt.Errorf("--tcp-ports %q: want MIN-MAX", s)
	}
	b = a
	if ok {
		if _, err := fmt.Sscanf(hi, "%d", &b); err != nil {
			return 0, 0, fmt.Errorf("--tcp-ports %q: want MIN-MAX", s)
		}
	}
	if a < 1 || b > 65535 || a > b {
		return 0, 0, fmt.Errorf("--tcp-ports %q: want 1 <= MIN <= MAX <= 65535", s)
	}
	return a, b, nil
}
