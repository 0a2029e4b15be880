package badgerstore

import (
	"fmt"

	"github.com/privateconnect/pc/control/store"
)

// DefaultMinFreeBytes is the free space kept in reserve beyond what the
// database's mapped files may still claim (see diskGuard).
const DefaultMinFreeBytes = 64 << 20

// diskGuard refuses writes while the file system holding the database has
// too little free space left.
//
// Badger writes its memtable log, value log and discard stats through
// mmap of files created at their full size but sparse (a fresh database
// maps a 32 MiB memtable file and a 128 MiB value log while using a few
// kilobytes). When the file system cannot back a page the program touches,
// the kernel raises SIGBUS and the Go runtime aborts the process: a full
// disk would crash the control plane instead of failing a request. So
// before every write the guard checks that the free space covers the
// unbacked bytes of those files plus a reserve (a memtable flush writes a
// new table; background compaction needs room too), and otherwise fails
// the write with store.ErrUnavailable, which the API answers with 503.
// Reads are never refused. Once space is freed, writes succeed again.
//
// The check is a statfs and a stat of the few mapped files (tens of
// microseconds, against the millisecond of a synchronous commit). Space
// taken by another process between the check and the commit is not
// covered; the reserve makes that window small.
type diskGuard struct {
	dir     string
	reserve int64 // negative: guard disabled
	// space returns the bytes available to the database and the unbacked
	// bytes of its mapped files (nil on platforms without statfs).
	space func(dir string) (free, unbacked int64, err error)
}

func newDiskGuard(dir string, minFree int64) *diskGuard {
	if minFree == 0 {
		minFree = DefaultMinFreeBytes
	}
	return &diskGuard{dir: dir, reserve: minFree, space: diskSpace}
}

// check returns a store.ErrUnavailable error when a write could exhaust the
// disk.
func (g *diskGuard) check() error { return g.checkExtra("update", 0) }

// checkExtra is check with extra bytes needed on top (files Badger creates
// when it opens).
func (g *diskGuard) checkExtra(op string, extra int64) error {
	if g == nil || g.reserve < 0 || g.space == nil {
		return nil
	}
	free, unbacked, err := g.space(g.dir)
	if err != nil {
		return nil // cannot tell: let Badger report what it finds
	}
	if need := unbacked + g.reserve + extra; free < need {
		return fmt.Errorf("badgerstore: %s: %w: disk almost full: %d MiB free in %s, %d MiB needed (mapped files %d MiB + new files %d MiB + reserve %d MiB)",
			op, store.ErrUnavailable, free>>20, g.dir, need>>20, unbacked>>20, extra>>20, g.reserve>>20)
	}
	return nil
}
