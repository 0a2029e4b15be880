package badgerstore

import "fmt"

// Size returns the bytes on disk of the LSM tree and of the value log (as
// last computed by Badger, which refreshes them every minute).
func (s *Store) Size() (lsm, vlog int64) { return s.db.Size() }

// Tables returns how many table files the LSM tree has: Badger keeps each
// one open and mapped, so they count against the process's file limit.
func (s *Store) Tables() int {
	n := 0
	for _, l := range s.db.Levels() { // counts per level: no per-table info built
		n += l.NumTables
	}
	return n
}

// checkFileLimit logs a warning when the tree's tables take more than half
// of the process's file limit: past it, Badger cannot open the tables its
// compactions write, and the store stops taking writes.
func (s *Store) checkFileLimit() {
	limit, ok := fileLimit()
	if !ok {
		return
	}
	if msg := fileLimitWarning(s.Tables(), limit); msg != "" {
		s.log.Warn(msg)
	}
}

// fileLimitWarning is the warning for tables open files under a limit of
// limit, or "" when they take at most half of it.
func fileLimitWarning(tables int, limit uint64) string {
	if uint64(tables) <= limit/2 {
		return ""
	}
	return fmt.Sprintf("badgerstore: %d table files take more than half of the open-file limit (%d): raise it "+
		"(ulimit -n, LimitNOFILE= in a systemd unit) or shorten --access-log-retention before the store runs out of files",
		tables, limit)
}
