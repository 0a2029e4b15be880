//go:build unix

package badgerstore

import "syscall"

// fileLimit returns the process's soft limit on open files (a variable
// for tests).
var fileLimit = func() (uint64, bool) {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return 0, false
	}
	return uint64(rl.Cur), true //nolint:unconvert // the field's type differs by platform
}
