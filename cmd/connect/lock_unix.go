//go:build unix && !solaris && !aix

package main

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// agentLock is a held flock(2) on a state file's lock file.
type agentLock struct{ f *os.File }

// lockAgent takes the exclusive lock of the agent state file at path without
// waiting: an *agentRunningError when another process holds it.
func lockAgent(path string) (*agentLock, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("create state directory: %w", err)
	}
	f, err := os.OpenFile(path+".lock", os.O_RDWR|os.O_CREATE, 0o600)
	if errors.Is(err, fs.ErrPermission) {
		// Made by another user (root before a service user): flock works on
		// a read-only descriptor; only the note of who holds it is lost.
		f, err = os.Open(path + ".lock")
	}
	if err != nil {
		return nil, fmt.Errorf("agent lock: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		b, _ := io.ReadAll(io.LimitReader(f, 64))
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			pid, role, _ := strings.Cut(strings.TrimSpace(string(b)), " ")
			n, _ := strconv.Atoi(pid)
			// An old connect wrote its pid alone, and held it to run.
			return nil, &agentRunningError{path: path, pid: n, running: role != "setup"}
		}
		return nil, fmt.Errorf("agent lock %s: %w", f.Name(), err)
	}
	l := &agentLock{f: f}
	l.mark(false)
	return l, nil
}

// mark writes who holds the lock and why ("<pid> setup" or "<pid> run").
func (l *agentLock) mark(running bool) {
	role := "setup"
	if running {
		role = "run"
	}
	if l.f.Truncate(0) == nil {
		_, _ = l.f.WriteAt([]byte(strconv.Itoa(os.Getpid())+" "+role+"\n"), 0)
	}
}

func (l *agentLock) release() { l.f.Close() }

// lockEnforced: this build keeps one process per identity.
const lockEnforced = true
