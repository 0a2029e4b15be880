// Package connset holds open connections so that those still open can all
// be closed at once: at the end of an edge's drain, when a benchmark run is
// interrupted.
package connset

import (
	"io"
	"sync"
)

// Set is a set of open connections (or anything closed the same way). The
// zero value is ready to use.
type Set[C interface {
	comparable
	io.Closer
}] struct {
	mu     sync.Mutex
	m      map[C]struct{}
	closed bool
}

// Add holds c until Remove; it reports false, holding nothing, once the
// set was closed (the caller then closes c itself).
func (s *Set[C]) Add(c C) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	if s.m == nil {
		s.m = map[C]struct{}{}
	}
	s.m[c] = struct{}{}
	return true
}

// Remove forgets c (a connection's Close calls it); removing twice is fine.
func (s *Set[C]) Remove(c C) {
	s.mu.Lock()
	delete(s.m, c)
	s.mu.Unlock()
}

// Len is the number of connections held.
func (s *Set[C]) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.m)
}

// CloseAll closes every connection held, outside the lock (their Close may
// call Remove), refuses later Adds, and returns how many it closed.
func (s *Set[C]) CloseAll() int {
	s.mu.Lock()
	s.closed = true
	open := make([]C, 0, len(s.m))
	for c := range s.m {
		open = append(open, c)
	}
	s.mu.Unlock()
	for _, c := range open {
		_ = c.Close()
	}
	return len(open)
}
