//go:build unix && !solaris && !aix

package main

import (
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestLockReportsThePermissionError: a lock file that cannot be created
// (a state directory that is not writable: root runs the test, so the
// refusal is simulated) is reported as "permission denied", not as the
// "no such file" of the read-only fallback. Found by a CLI walk-through.
func TestLockReportsThePermissionError(t *testing.T) {
	orig := openLockFile
	t.Cleanup(func() { openLockFile = orig })
	openLockFile = func(name string, flag int, perm os.FileMode) (*os.File, error) {
		if flag&os.O_CREATE != 0 {
			return nil, &fs.PathError{Op: "open", Path: name, Err: syscall.EACCES}
		}
		return orig(name, flag, perm)
	}
	path := filepath.Join(t.TempDir(), "agent.json")
	_, err := lockAgent(path)
	require.Error(t, err)
	assert.ErrorIs(t, err, fs.ErrPermission)
	assert.Contains(t, err.Error(), "permission denied")
	assert.NotContains(t, err.Error(), "no such file")

	// A lock file another user made (read-only to this one) is still used.
	require.NoError(t, os.WriteFile(path+".lock", nil, 0o600))
	l, err := lockAgent(path)
	require.NoError(t, err)
	l.release()
}
