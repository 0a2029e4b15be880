//go:build !unix

package badgerstore

// fileLimit is not known on this platform: no warning is given.
var fileLimit = func() (uint64, bool) { return 0, false }
