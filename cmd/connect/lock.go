package main

import (
	"errors"
	"fmt"
)

// An agent identity must run in one process at a time: an edge keeps the
// newest session of an agent, so two processes running one identity would
// replace each other's tunnel on every edge, back and forth, for as long as
// both run. The process that runs an agent holds an exclusive lock on
// "<state file>.lock" (lockAgent), which the kernel releases however the
// process ends; the file holds its pid, for the message another process
// prints.

// agentRunningError: another process runs the agent of this state file.
type agentRunningError struct {
	path string
	pid  int
}

func (e *agentRunningError) Error() string {
	return fmt.Sprintf("the agent of this identity already runs (%s): stop it first, or give this process its own identity with --state", e.who())
}

// who names the running process and its state file.
func (e *agentRunningError) who() string {
	if e.pid > 0 {
		return fmt.Sprintf("process %d, state file %s", e.pid, e.path)
	}
	return "another process, state file " + e.path
}

// runningElsewhere returns the error when err says another process runs the
// agent.
func runningElsewhere(err error) (*agentRunningError, bool) {
	var re *agentRunningError
	ok := errors.As(err, &re)
	return re, ok
}

// holdAgentLock takes the lock of the agent state file for the rest of the
// process (kept in a.lock; a second call is a no-op).
func (a *app) holdAgentLock() error {
	if a.lock != nil {
		return nil
	}
	path, err := a.stateFile()
	if err != nil {
		return err
	}
	l, err := lockAgent(path)
	if err != nil {
		return err
	}
	a.lock = l
	return nil
}

// lockOrRunning takes the lock, or reports the process that holds it.
func (a *app) lockOrRunning() (*agentRunningError, error) {
	err := a.holdAgentLock()
	if re, ok := runningElsewhere(err); ok {
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
