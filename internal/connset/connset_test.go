package connset

import (
	"sync"
	"sync/atomic"
	"testing"
)

type conn struct {
	set    *Set[*conn]
	closed atomic.Int32
}

func (c *conn) Close() error {
	c.closed.Add(1)
	c.set.Remove(c) // as a connection's Close does: no deadlock under CloseAll
	return nil
}

// TestSet: members closed on their own are forgotten, CloseAll closes the
// rest once and refuses later members, and it is safe for concurrent use.
func TestSet(t *testing.T) {
	var s Set[*conn]
	var wg sync.WaitGroup
	all := make([]*conn, 100)
	for i := range all {
		all[i] = &conn{set: &s}
		wg.Add(1)
		go func(c *conn) {
			defer wg.Done()
			if !s.Add(c) {
				t.Error("Add refused before CloseAll")
			}
		}(all[i])
	}
	wg.Wait()
	for _, c := range all[:40] {
		_ = c.Close()
	}
	if n := s.Len(); n != 60 {
		t.Fatalf("Len = %d after 40 of 100 closed, want 60", n)
	}
	if n := s.CloseAll(); n != 60 {
		t.Fatalf("CloseAll closed %d, want 60", n)
	}
	for i, c := range all {
		if got := c.closed.Load(); got != 1 {
			t.Fatalf("connection %d closed %d times, want once", i, got)
		}
	}
	late := &conn{set: &s}
	if s.Add(late) || s.Len() != 0 {
		t.Fatal("Add after CloseAll held the connection")
	}
}
