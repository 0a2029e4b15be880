// Command pcbench is the load benchmark of Private Connect: it starts an
// origin, the system (pcd) and an agent (connect) on loopback as separate
// processes, or targets a running deployment, and measures each scenario
// against the direct baseline of the same run. The logic lives in package
// bench; see docs/benchmarks.md.
package main

import (
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/privateconnect/pc/bench"
	"github.com/privateconnect/pc/internal/cliconf"
	"github.com/spf13/cobra"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	return cliconf.Execute(rootCmd(stdout, stderr), args, stdout, stderr)
}

func rootCmd(stdout, stderr io.Writer) *cobra.Command {
	root := &cobra.Command{
		Use:   "pcbench",
		Short: "Load benchmark of Private Connect: every scenario against the direct baseline of the same run",
		Long: "pcbench starts an origin, the system (bin/pcd) and an agent (bin/connect) on loopback as separate\n" +
			"processes, loads the origin directly and then through a share link, and reports throughput,\n" +
			"latency percentiles (HDR histograms), errors, CPU and memory of each process, and the ratios\n" +
			"system/direct. With --target it loads a running deployment instead.",
		SilenceUsage:      true,
		SilenceErrors:     true,
		CompletionOptions: cobra.CompletionOptions{DisableDefaultCmd: true},
	}
	root.AddCommand(runCmd(stdout, stderr), allCmd(stdout, stderr), scenariosCmd(stdout), reportCmd(stdout), originCmd(stdout), relayCmd(stdout), agentsCmd(stdout))
	return root
}

func addRunFlags(cmd *cobra.Command, o *bench.Options) {
	fs := cmd.Flags()
	fs.DurationVar(&o.Duration, "duration", 0, "measured time of each phase (default 10s for run, 5s for all, 500ms with --quick)")
	fs.IntVar(&o.Connections, "connections", 0, "concurrent connections (default: the scenario's, e.g. 64 for http-small)")
	fs.Float64Var(&o.Rate, "rate", 0, "open loop: requests per second over all connections, latency from the intended send time (default: closed loop)")
	fs.StringVar(&o.JSONFile, "json", "", "write the results as JSON to FILE")
	fs.StringVar(&o.PlotFile, "plot", "", "write a chart to FILE.svg (or FILE.png with rsvg-convert or ImageMagick installed)")
	fs.StringVar(&o.MarkdownFile, "markdown", "", "write the results as a markdown table to FILE")
	fs.StringVar(&o.BinDir, "bin", "./bin", "directory holding pcd and connect (make build)")
	fs.StringVar(&o.System, "system", "split", "how to run the system: split (pcd control + pcd edge) or dev (pcd dev)")
	fs.StringArrayVar(&o.SystemArgs, "system-arg", nil, "extra argument for every pcd command (repeatable)")
	fs.BoolVar(&o.ProductLimits, "product-limits", false, "keep pcd's default rate limits (5,000/min per share link, 1,000/min per API key): the load is then spread over several links and keys")
	fs.StringVar(&o.Target, "target", "", "URL of a running deployment to load instead of starting the system (comma-separated: requests rotate over them, all on one host)")
	fs.StringVar(&o.Direct, "direct", "", "with --target: the same service's direct URL, as the baseline")
	fs.BoolVar(&o.Quick, "quick", false, "tiny run: 0.5 s phases, few connections, small sizes (a smoke test)")
	fs.IntVar(&o.IdleAgents, "idle-agents", 0, "agents in idle-agents (default 10000; 20 with --quick)")
	fs.IntVar(&o.Shares, "shares", 0, "shares in shares-100k (default 100000; 300 with --quick)")
	fs.DurationVar(&o.SoakDuration, "soak-duration", 0, "length of the soak scenario (default 10m; 3s with --quick)")
	fs.DurationVar(&o.SharesBudget, "shares-budget", 240*time.Second, "time allowed to create the shares of shares-100k through the API")
	fs.StringVar(&o.WorkDir, "work-dir", "", "where the servers' data directories go (default: the system temp dir)")
	fs.BoolVar(&o.KeepWorkDir, "keep", false, "keep the work directory (server data and logs) after the run")
	fs.StringVar(&o.ServerLogLevel, "server-log-level", "warn", "log level of pcd and connect")
	fs.BoolVar(&o.Quiet, "quiet", false, "no progress on stderr")
	fs.IntVar(&o.Repeat, "repeat", 1, "run each load scenario N times and report the run with the median ratio (the others' ratios in its notes): steadier figures on a noisy machine")
}

// checkZeroFlags refuses a 0 given on the command line to the flags where
// 0 only stands for "not set" (the default): --rate 0 would otherwise be a
// closed loop and --connections 0 the scenario's 64.
func checkZeroFlags(cmd *cobra.Command) error {
	for _, name := range []string{"duration", "connections", "rate", "repeat", "idle-agents", "shares", "soak-duration", "shares-budget"} {
		f := cmd.Flags().Lookup(name)
		if f == nil || !f.Changed {
			continue
		}
		if v, err := strconv.ParseFloat(f.Value.String(), 64); (err == nil && v == 0) || f.Value.String() == "0s" {
			return fmt.Errorf("--%s must be positive, not %s (leave it out for the default)", name, f.Value.String())
		}
	}
	return nil
}

func runCmd(stdout, stderr io.Writer) *cobra.Command {
	var o bench.Options
	var names []string
	cmd := &cobra.Command{
		Use:   "run --scenario NAME",
		Short: "Run one or more scenarios",
		Example: "  pcbench run --scenario http-small --duration 10s --connections 64 --json out.json --plot out.svg\n" +
			"  pcbench run --scenario http-small --rate 20000      # open loop\n" +
			"  pcbench run --scenario http-small --target https://edge.example.com/shared/TOKEN/ --direct http://10.0.0.5:8080/",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if len(names) == 0 {
				return fmt.Errorf("--scenario is required (see `pcbench scenarios`)")
			}
			var list []string
			for _, n := range names {
				for _, s := range strings.Split(n, ",") {
					if s = strings.TrimSpace(s); s != "" {
						list = append(list, s)
					}
				}
			}
			if err := checkZeroFlags(cmd); err != nil {
				return err
			}
			o.Stdout, o.Stderr = stdout, stderr
			_, err := bench.Run(cmd.Context(), o, list)
			return err
		},
	}
	cmd.Flags().StringArrayVarP(&names, "scenario", "s", nil, "scenario name (repeatable or comma-separated)")
	addRunFlags(cmd, &o)
	return cmd
}

func allCmd(stdout, stderr io.Writer) *cobra.Command {
	var o bench.Options
	cmd := &cobra.Command{
		Use:     "all",
		Short:   "Run the standard set: every scenario",
		Example: "  pcbench all --json bench/results/latest.json --plot bench/results/latest.svg\n  pcbench all --quick",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkZeroFlags(cmd); err != nil {
				return err
			}
			o.Stdout, o.Stderr = stdout, stderr
			_, err := bench.Run(cmd.Context(), o, nil)
			return err
		},
	}
	addRunFlags(cmd, &o)
	return cmd
}

func scenariosCmd(stdout io.Writer) *cobra.Command {
	return &cobra.Command{
		Use:   "scenarios",
		Short: "List the scenarios and their targets",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tDESCRIPTION\tTARGET")
			for _, s := range bench.Scenarios() {
				fmt.Fprintf(tw, "%s\t%s\t%s\n", s.Name, s.Description, s.Target)
			}
			return tw.Flush()
		},
	}
}

// reportCmd renders a saved JSON report again.
func reportCmd(stdout io.Writer) *cobra.Command {
	var plot, markdown string
	cmd := &cobra.Command{
		Use:     "report FILE.json",
		Short:   "Print the table of a saved run, and redraw its chart or markdown",
		Example: "  pcbench report bench/results/reference.json --plot bench/results/reference.svg",
		Args:    cobra.ExactArgs(1),
		RunE: func(_ *cobra.Command, args []string) error {
			rep, err := bench.ReadJSONFile(args[0])
			if err != nil {
				return err
			}
			if err := rep.WriteTable(stdout); err != nil {
				return err
			}
			if plot != "" {
				if err := rep.WritePlotFile(plot); err != nil {
					return err
				}
			}
			if markdown != "" {
				return rep.WriteMarkdownFile(markdown)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&plot, "plot", "", "write the chart to FILE.svg or FILE.png")
	cmd.Flags().StringVar(&markdown, "markdown", "", "write the markdown table to FILE")
	return cmd
}

// originCmd is the benchmark origin, run by pcbench itself as a separate
// process.
func originCmd(stdout io.Writer) *cobra.Command {
	var addr string
	cmd := &cobra.Command{
		Use:    "origin",
		Short:  "Run the benchmark origin (internal)",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return bench.RunOrigin(cmd.Context(), addr, stdout)
		},
	}
	cmd.Flags().StringVar(&addr, "http", "127.0.0.1:0", "HTTP listen address")
	return cmd
}

// relayCmd is a bare TCP relay (the ceiling phases), run by pcbench itself
// as a separate process.
func relayCmd(stdout io.Writer) *cobra.Command {
	var listen, to string
	cmd := &cobra.Command{
		Use:    "relay",
		Short:  "Run a bare TCP relay (internal)",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return bench.RunRelay(cmd.Context(), listen, to, stdout)
		},
	}
	cmd.Flags().StringVar(&listen, "listen", "127.0.0.1:0", "listen address")
	cmd.Flags().StringVar(&to, "to", "", "address to relay to")
	_ = cmd.MarkFlagRequired("to")
	return cmd
}

// agentsCmd runs many idle agents in one process (idle-agents).
func agentsCmd(stdout io.Writer) *cobra.Command {
	var edge, file string
	cmd := &cobra.Command{
		Use:    "agents",
		Short:  "Run idle agents (internal)",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return bench.RunAgents(cmd.Context(), edge, file, stdout)
		},
	}
	cmd.Flags().StringVar(&edge, "edge", "", "edge tunnel address")
	cmd.Flags().StringVar(&file, "file", "", "file of \"agentId token\" lines")
	return cmd
}
