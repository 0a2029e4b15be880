package main

import (
	"context"
	"errors"
	"fmt"
	"time"
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
	path    string
	pid     int
	running bool // it runs the agent (else it is setting up)
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

// markRunning records in the lock file that this process now runs the agent.
func (a *app) markRunning() {
	if a.lock != nil {
		a.lock.mark(true)
	}
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
	return st, err
}

// releaseAgentLock gives the lock back (the process normally just exits;
// tests run many commands in one process).
func (a *app) releaseAgentLock() {
	if a.lock != nil {
		a.lock.release()
		a.lock = nil
	}
}
