package badgerstore

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// diskSpace returns the bytes an unprivileged writer may still use on the
// file system of dir, and the bytes of Badger's mapped files (memtable
// logs, value logs, discard stats) that are not backed by disk blocks yet.
var diskSpace = func(dir string) (free, unbacked int64, err error) {
	var fs syscall.Statfs_t
	if err := syscall.Statfs(dir, &fs); err != nil {
		return 0, 0, err
	}
	free = int64(fs.Bavail) * int64(fs.Bsize) //nolint:unconvert // field types differ by architecture
	entries, err := os.ReadDir(dir)
	if err != nil {
		return 0, 0, err
	}
	for _, e := range entries {
		name := e.Name()
		if !strings.HasSuffix(name, ".mem") && !strings.HasSuffix(name, ".vlog") && name != "DISCARD" {
			continue
		}
		var st syscall.Stat_t
		if syscall.Stat(filepath.Join(dir, name), &st) != nil {
			continue
		}
		if backed := st.Blocks * 512; st.Size > backed {
			unbacked += st.Size - backed
		}
	}
	return free, unbacked, nil
}
