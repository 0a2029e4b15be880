//go:build unix && !solaris && !aix

package main

import (
	"encoding/json"
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

// openLockFile opens a lock file (os.OpenFile; tests replace it).
var openLockFile = os.OpenFile

// agentLock is a held flock(2) on a state file's lock file.
type agentLock struct{ f *os.File }

// openLock opens (creating it) a lock file. One made by another user (root
// before a service user) is opened read-only: flock works on such a
// descriptor; only the note of who holds it is lost. When that fails too
// (no lock file: the directory is not writable), the permission error is
// the one that says why.
func openLock(name string) (*os.File, error) {
	f, err := openLockFile(name, os.O_RDWR|os.O_CREATE, 0o600)
	if errors.Is(err, fs.ErrPermission) {
		if rf, rerr := openLockFile(name, os.O_RDONLY, 0); rerr == nil {
			return rf, nil
		}
	}
	return f, err
}

// lockAgent takes the exclusive lock of the agent state file at path without
// waiting: an *agentRunningError when another process holds it.
func lockAgent(path string) (*agentLock, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("create state directory: %w", err)
	}
	f, err := openLock(path + ".lock")
	if err != nil {
		return nil, fmt.Errorf("agent lock: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		b, _ := io.ReadAll(io.LimitReader(f, 4096))
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			first, rest, _ := strings.Cut(string(b), "\n")
			pid, role, _ := strings.Cut(strings.TrimSpace(first), " ")
			n, _ := strconv.Atoi(pid)
			// An old connect wrote its pid alone, and held it to run.
			re := &agentRunningError{path: path, pid: n, running: role != "setup"}
			var rs runSettings
			if json.Unmarshal([]byte(strings.TrimSpace(rest)), &rs) == nil {
				re.settings = &rs
			}
			return nil, re
		}
		return nil, fmt.Errorf("agent lock %s: %w", f.Name(), err)
	}
	l := &agentLock{f: f}
	l.mark(false, nil)
	return l, nil
}

// mark writes who holds the lock and why ("<pid> setup" or "<pid> run"),
// and on a second line the settings the agent runs with (JSON), if any.
// (Older releases read the first 64 bytes up to the first space: the pid,
// then a role that is not "setup".)
func (l *agentLock) mark(running bool, settings []byte) {
	role := "setup"
	if running {
		role = "run"
	}
	b := []byte(strconv.Itoa(os.Getpid()) + " " + role + "\n")
	if len(settings) > 0 {
		b = append(append(b, settings...), '\n')
	}
	if l.f.Truncate(0) == nil {
		_, _ = l.f.WriteAt(b, 0)
	}
}

func (l *agentLock) release() { l.f.Close() }

// lockStateWrite takes, waiting for it, the lock of the writes to the state
// file at path (<path>.wlock): the running agent and a second expose that
// adds its service to the file (mergeService) read, change and write it in
// turn. unlock gives it back.
func lockStateWrite(path string) (unlock func(), err error) {
	f, err := openLock(path + ".wlock")
	if err != nil {
		return nil, fmt.Errorf("state file lock: %w", err)
	}
	for {
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX)
		if !errors.Is(err, syscall.EINTR) {
			break
		}
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("state file lock %s: %w", f.Name(), err)
	}
	return func() { f.Close() }, nil
}

// lockEnforced: this build keeps one process per identity.
const lockEnforced = true
