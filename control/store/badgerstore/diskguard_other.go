//go:build !linux

package badgerstore

// diskSpace is not implemented on this platform: the disk guard is off.
var diskSpace func(dir string) (free, unbacked int64, err error)
