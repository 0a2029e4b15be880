// Package cliconf is the command-line plumbing shared by the servers' mains:
// Execute runs a command tree with signal handling and exit codes, and
// Apply fills command-line flags that were not given from the
// environment (PC_<FLAG_NAME>) and from a YAML config file, in that order of
// precedence: flag > environment > file > default. Unknown keys in the file
// are errors. LogHandler is the log handler of pcd and connect.
package cliconf

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/pprof"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"gopkg.in/yaml.v3"
)

// EnvName returns the environment variable of a flag: PC_ + upper snake case.
func EnvName(flag string) string {
	return "PC_" + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}

// Apply sets every flag of fs that was not given on the command line from
// the environment, then from the config file (when path is not empty).
func Apply(fs *pflag.FlagSet, path string) error {
	file := map[string]any{}
	if path != "" {
		b, err := os.ReadFile(path)
		if err != nil {
			return fmt.Errorf("config file: %w", err)
		}
		if err := yaml.Unmarshal(b, &file); err != nil {
			return fmt.Errorf("config file %s: %w", path, err)
		}
		var unknown []string
		for k := range file {
			if f := fs.Lookup(k); f == nil || k == "config" {
				unknown = append(unknown, k)
			}
		}
		if len(unknown) > 0 {
			sort.Strings(unknown)
			return fmt.Errorf("config file %s: unknown keys: %s", path, strings.Join(unknown, ", "))
		}
	}
	var err error
	fs.VisitAll(func(f *pflag.Flag) {
		if err != nil || f.Changed || f.Name == "help" {
			return
		}
		if v, ok := os.LookupEnv(EnvName(f.Name)); ok {
			if e := fs.Set(f.Name, v); e != nil {
				err = fmt.Errorf("%s: %w", EnvName(f.Name), e)
			}
			return
		}
		if v, ok := file[f.Name]; ok {
			var s string
			switch x := v.(type) {
			case []any:
				parts := make([]string, len(x))
				for i, p := range x {
					parts[i] = fmt.Sprint(p)
				}
				s = strings.Join(parts, ",")
			default:
				s = fmt.Sprint(x)
			}
			if e := fs.Set(f.Name, s); e != nil {
				err = fmt.Errorf("config file key %s: %w", f.Name, e)
			}
		}
	})
	return err
}

// Document appends the environment variable to every flag's usage.
func Document(fs *pflag.FlagSet) {
	fs.VisitAll(func(f *pflag.Flag) {
		if f.Name != "help" && !strings.Contains(f.Usage, "$PC_") {
			f.Usage += " ($" + EnvName(f.Name) + ")"
		}
	})
}

// StopSignals are the signals that stop a command gracefully: SIGINT,
// SIGTERM, and SIGHUP unless the process was started with it ignored
// (nohup): handling it would undo that.
func StopSignals() []os.Signal {
	sigs := []os.Signal{os.Interrupt, syscall.SIGTERM}
	if !signal.Ignored(syscall.SIGHUP) {
		sigs = append(sigs, syscall.SIGHUP)
	}
	return sigs
}

// Execute runs a command tree with args until it returns or SIGINT, SIGTERM
// or SIGHUP cancels its context, printing an error as "error: ..." on
// stderr. It returns the exit code: 0 on success, 1 on error. SIGHUP stops
// gracefully too (nothing is reloaded): a closed terminal or a reload
// habit must not kill a process with requests in flight.
func Execute(root *cobra.Command, args []string, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), StopSignals()...)
	defer stop()
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	stopProfile, err := StartCPUProfile(args)
	if err != nil {
		fmt.Fprintln(stderr, "error:", err)
		return 1
	}
	defer stopProfile()
	if err := root.ExecuteContext(ctx); err != nil {
		fmt.Fprintln(stderr, "error:", err)
		return 1
	}
	return 0
}

// StartCPUProfile writes a CPU profile of the whole run to
// <prefix>.<command>.<pid>.pprof when PC_CPUPROFILE=<prefix> is set: a way
// to profile the processes pcbench starts, e.g. PC_CPUPROFILE=/tmp/pc
// bin/pcbench run -s http-small, then go tool pprof bin/pcd
// /tmp/pc.edge.*.pprof. With PC_MEMPROFILE=<prefix>, the returned func also
// writes the heap profile at exit to <prefix>.<command>.<pid>.heap (and
// one every PC_MEMPROFILE_EVERY, when set, numbered). The
// returned func stops both.
func StartCPUProfile(args []string) (func(), error) {
	cmd := "main"
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		cmd = args[0]
	}
	stop := func() {}
	if prefix := os.Getenv("PC_CPUPROFILE"); prefix != "" {
		f, err := os.Create(fmt.Sprintf("%s.%s.%d.pprof", prefix, cmd, os.Getpid()))
		if err != nil {
			return nil, fmt.Errorf("PC_CPUPROFILE: %w", err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			f.Close()
			return nil, fmt.Errorf("PC_CPUPROFILE: %w", err)
		}
		stop = func() {
			pprof.StopCPUProfile()
			f.Close()
		}
	}
	prefix := os.Getenv("PC_MEMPROFILE")
	if prefix == "" {
		return stop, nil
	}
	writeHeap := func(suffix string) {
		f, err := os.Create(fmt.Sprintf("%s.%s.%d%s.heap", prefix, cmd, os.Getpid(), suffix))
		if err != nil {
			fmt.Fprintln(os.Stderr, "PC_MEMPROFILE:", err)
			return
		}
		defer f.Close()
		if err := pprof.Lookup("heap").WriteTo(f, 0); err != nil {
			fmt.Fprintln(os.Stderr, "PC_MEMPROFILE:", err)
		}
	}
	// PC_MEMPROFILE_EVERY=<duration> also writes one every interval, to
	// <prefix>.<command>.<pid>.<n>.heap: for memory that grows during a
	// long run (compare two with go tool pprof -base).
	done := make(chan struct{})
	var wg sync.WaitGroup
	if every, err := time.ParseDuration(os.Getenv("PC_MEMPROFILE_EVERY")); err == nil && every > 0 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			t := time.NewTicker(every)
			defer t.Stop()
			for n := 1; ; n++ {
				select {
				case <-done:
					return
				case <-t.C:
					writeHeap(fmt.Sprintf(".%d", n))
				}
			}
		}()
	}
	return func() {
		close(done)
		wg.Wait()
		stop()
		writeHeap("")
	}, nil
}
