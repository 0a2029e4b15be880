package proxy

import (
	"sync/atomic"
	"testing"
)

type countCloser struct{ n atomic.Int32 }

func (c *countCloser) Close() error { c.n.Add(1); return nil }

// An exchange that ended is never cut afterwards (its visitor connection may
// carry another request by then), and a cut closes once.
func TestLiveStreamCutAfterEnd(t *testing.T) {
	var l liveStreams
	ended, open := &countCloser{}, &countCloser{}
	remove := l.add("s1", ended)
	l.add("s1", open)
	var streams []*liveStream
	l.mu.Lock()
	for s := range l.by["s1"] {
		streams = append(streams, s)
	}
	l.mu.Unlock()
	remove() // the exchange ended, between a cut's collection and its close
	for _, s := range streams {
		s.cut()
		s.cut()
	}
	if ended.n.Load() != 0 {
		t.Fatal("an ended exchange was closed")
	}
	if open.n.Load() != 1 {
		t.Fatalf("the open exchange was closed %d times, want 1", open.n.Load())
	}
}
