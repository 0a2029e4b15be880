package badgerstore

// Size returns the bytes on disk of the LSM tree and of the value log (as
// last computed by Badger, which refreshes them every minute).
func (s *Store) Size() (lsm, vlog int64) { return s.db.Size() }
