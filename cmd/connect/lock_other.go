//go:build !unix || solaris || aix

package main

// agentLock is not enforced where flock(2) does not exist: two processes
// running one identity there take turns on the edges (see lock.go).
type agentLock struct{}

func lockAgent(string) (*agentLock, error) { return &agentLock{}, nil }

func (*agentLock) mark(bool, []byte) {}

func (*agentLock) release() {}

// lockStateWrite: no lock of the state file's writes in this build.
func lockStateWrite(string) (func(), error) { return func() {}, nil }

// lockEnforced: this build cannot tell that another process runs an identity.
const lockEnforced = false
