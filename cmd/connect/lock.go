package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"
)

// An agent identity must run in one process at a time: an edge keeps the
// newest session of an agent, so two processes running one identity would
// replace each other's tunnel on every edge, back and forth, for as long as
// both run. A process that uses an identity holds an exclusive lock on
// "<state file>.lock" (lockAgent), which the kernel releases however the
// process ends. The file says who holds it and why: "<pid> setup" while a
// command provisions, registers or rotates (expose --detach, rotate-token,
// the start of up), "<pid> run" once the agent runs. Another process waits
// out a setup holder (setupWait) and gives way to a running one.

// setupWait bounds the wait for a process that holds the lock to set up
// (a variable for tests).
var setupWait = 15 * time.Second

// agentRunningError: another process holds the lock of this state file.
type agentRunningError struct {
	path     string
	pid      int
	running  bool         // it runs the agent (else it is setting up)
	settings *runSettings // what it runs with, when it said
}

func (e *agentRunningError) Error() string {
	if !e.running {
		return fmt.Sprintf("another connect command (%s) is still using this identity after %s: try again, or give this process its own identity with --state", e.who(), setupWait)
	}
	return fmt.Sprintf("the agent of this identity already runs (%s): stop it first, or give this process its own identity with --state", e.who())
}

// who names the running process and its state file.
func (e *agentRunningError) who() string {
	if e.pid > 0 {
		return fmt.Sprintf("process %d, state file %s", e.pid, e.path)
	}
	return "another process, state file " + e.path
}

// runningElsewhere returns the error when err says another process holds
// the lock.
func runningElsewhere(err error) (*agentRunningError, bool) {
	var re *agentRunningError
	ok := errors.As(err, &re)
	return re, ok
}

// holdAgentLock takes the lock of the agent state file for the rest of the
// process (kept in a.lock; a second call is a no-op). It waits while another
// process holds it to set up, and fails at once if that process runs the
// agent; ctx ends the wait (Ctrl-C).
func (a *app) holdAgentLock(ctx context.Context) error {
	if a.lock != nil {
		return nil
	}
	path, err := a.stateFile()
	if err != nil {
		return err
	}
	deadline := time.Now().Add(setupWait)
	for {
		l, err := lockAgent(path)
		if err == nil {
			a.lock = l
			return nil
		}
		re, ok := runningElsewhere(err)
		if !ok || re.running || time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("interrupted while waiting for %s to finish setting up this identity: %w", re.who(), context.Cause(ctx))
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// runSettings are the settings an agent runs with, written in its lock file
// so that another command of the same identity can tell whether the running
// agent uses what that command asks for (--ca-file, say).
type runSettings struct {
	Control            string `json:"control"`
	CAFile             string `json:"caFile,omitempty"` // absolute
	PinSHA256          string `json:"pinSha256,omitempty"`
	InsecureSkipVerify bool   `json:"insecureSkipVerify,omitempty"`
	AllowPlaintext     bool   `json:"allowPlaintext,omitempty"`
}

func (a *app) runSettings(af *agentFlags) runSettings {
	rs := runSettings{Control: a.control, PinSHA256: strings.ToLower(af.pin), InsecureSkipVerify: af.insecureSkipVerify, AllowPlaintext: af.allowPlaintext}
	if af.caFile != "" {
		rs.CAFile = absPath(af.caFile)
	}
	return rs
}

func absPath(p string) string {
	if abs, err := filepath.Abs(p); err == nil {
		return abs
	}
	return p
}

// markRunning records in the lock file that this process now runs the
// agent, and with which settings (af: nil for none worth telling).
func (a *app) markRunning(af *agentFlags) {
	if a.lock == nil {
		return
	}
	var settings []byte
	if af != nil {
		settings, _ = json.Marshal(a.runSettings(af))
	}
	a.lock.mark(true, settings)
}

// checkSameAgentSettings refuses a command whose agent flags (those given:
// cmd.Flags().Changed) or control plane differ from those of the agent
// that already runs this identity (re): that agent would go on with its
// own, and the flags would be silently ignored.
func (a *app) checkSameAgentSettings(cmd *cobra.Command, re *agentRunningError, af *agentFlags) error {
	set := cmd.Flags().Changed
	if set("metrics") {
		a.note(slog.LevelWarn, fmt.Sprintf("warning: the agent of this identity already runs (%s): --metrics is not applied to it "+
			"(its metrics are where that process serves them, if it was started with --metrics)", re.who()),
			"agent already runs: --metrics not applied", "pid", re.pid)
	}
	given := set("ca-file") || set("pin-sha256") || set("insecure-skip-verify") || set("allow-plaintext")
	rs := re.settings
	if rs == nil {
		if given {
			a.note(slog.LevelWarn, fmt.Sprintf("warning: the agent of this identity already runs (%s) with settings this command cannot read: "+
				"its TLS flags are not applied to it (stop it first to run with them)", re.who()),
				"running agent's settings unknown: TLS flags not applied", "pid", re.pid)
		}
		return nil
	}
	var diffs []string
	if rs.Control != "" && !sameControl(rs.Control, a.control) {
		diffs = append(diffs, fmt.Sprintf("control plane %s (it runs against %s)", a.control, rs.Control))
	}
	want := a.runSettings(af)
	describe := func(flag, given, running string) string {
		if running == "" {
			return fmt.Sprintf("%s %s (it runs without)", flag, given)
		}
		if given == "" {
			given = "off"
		}
		return fmt.Sprintf("%s %s (it runs with %s)", flag, given, running)
	}
	if set("ca-file") && want.CAFile != rs.CAFile {
		diffs = append(diffs, describe("--ca-file", af.caFile, rs.CAFile))
	}
	if set("pin-sha256") && want.PinSHA256 != rs.PinSHA256 {
		diffs = append(diffs, describe("--pin-sha256", want.PinSHA256, rs.PinSHA256))
	}
	if set("insecure-skip-verify") && want.InsecureSkipVerify != rs.InsecureSkipVerify {
		diffs = append(diffs, fmt.Sprintf("--insecure-skip-verify=%t (it runs with %t)", want.InsecureSkipVerify, rs.InsecureSkipVerify))
	}
	if set("allow-plaintext") && want.AllowPlaintext != rs.AllowPlaintext {
		diffs = append(diffs, fmt.Sprintf("--allow-plaintext=%t (it runs with %t)", want.AllowPlaintext, rs.AllowPlaintext))
	}
	if len(diffs) == 0 {
		return nil
	}
	stop := "Ctrl-C where it runs"
	if re.pid > 0 {
		stop += fmt.Sprintf(", or kill %d", re.pid)
	}
	return fmt.Errorf("the agent of this identity already runs (%s) with other settings than this command's: %s; "+
		"it would go on with its own. Stop it first (%s), then run this command again, or give this one its own identity with --state",
		re.who(), strings.Join(diffs, "; "), stop)
}

// lockOrRunning takes the lock, or reports the process that runs the agent.
func (a *app) lockOrRunning(ctx context.Context) (*agentRunningError, error) {
	err := a.holdAgentLock(ctx)
	if re, ok := runningElsewhere(err); ok && re.running {
		return re, nil
	}
	return nil, err
}

// runningState reads the identity of the agent another process runs, as it
// is: no rotation or registration, which are that process's to do.
func (a *app) runningState(re *agentRunningError) (*agentState, error) {
	st, err := loadState(re.path)
	if err == nil && st == nil {
		err = re // still provisioning its identity
	}
	if err == nil {
		err = a.checkStateControl(re.path, st)
	}
	return st, err
}

// checkStateControl refuses a state file (st, nil when there is none) that
// holds an agent of another control plane than --control.
func (a *app) checkStateControl(path string, st *agentState) error {
	if st != nil && st.ControlURL != "" && !sameControl(st.ControlURL, a.control) {
		return fmt.Errorf("state file %s holds an agent of %s, not %s: pass --state to use another file", path, st.ControlURL, a.control)
	}
	return nil
}

// releaseAgentLock gives the lock back (the process normally just exits;
// tests run many commands in one process).
func (a *app) releaseAgentLock() {
	if a.lock != nil {
		a.lock.release()
		a.lock = nil
	}
}
