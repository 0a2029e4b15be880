package tunnel

import (
	"errors"
	"io"
	"net"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/privateconnect/pc/internal/testnet"
)

// TestAbortConn: an abort is told once and the stream is left for the peer
// to close (a FIN first could read as a clean end), local reads fail at
// once; the peer's abort makes reads fail with ErrAborted, not EOF; a lost
// session does the same to an end of file.
func TestAbortConn(t *testing.T) {
	old := abortGrace
	abortGrace = 100 * time.Millisecond
	defer func() { abortGrace = old }()

	var told []*Control
	var mu sync.Mutex
	tell := func(c *Control) error { mu.Lock(); told = append(told, c); mu.Unlock(); return nil }
	var reg Aborts
	reg.Init(tell, nil)
	a, b := net.Pipe()
	defer b.Close()
	c := reg.Wrap(a, 7)
	c.Abort()
	c.Abort() // Pipe resets both sides; the second is a no-op
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Fatal("a read after Abort succeeded")
	}
	deadline := time.Now().Add(2 * time.Second)
	for {
		mu.Lock()
		n := len(told)
		mu.Unlock()
		if n > 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(time.Millisecond)
	}
	mu.Lock()
	if len(told) != 1 || told[0].Type != CtlAbort || told[0].Stream != 7 {
		t.Fatalf("told %+v, want one abort of stream 7", told)
	}
	mu.Unlock()
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	// Not closed yet: the peer has abortGrace to close it.
	_ = b.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
	if _, err := b.Read(make([]byte, 1)); !errors.Is(err, errTimeout(err)) {
		t.Fatalf("the stream was closed at once: %v", err)
	}
	_ = b.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := b.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
		t.Fatalf("the stream was not closed after the grace: %v", err)
	}

	// The peer closing the stream (having read the abort) frees it at once,
	// not after the grace.
	old2 := abortGrace
	abortGrace = time.Hour
	a4, b4 := net.Pipe()
	c4 := reg.Wrap(a4, 13)
	c4.Abort()
	time.Sleep(20 * time.Millisecond)
	b4.Close()
	deadline = time.Now().Add(2 * time.Second)
	for {
		reg.mu.Lock()
		_, held := reg.m[13]
		reg.mu.Unlock()
		if !held {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the aborted stream was held after the peer closed it")
		}
		time.Sleep(time.Millisecond)
	}
	abortGrace = old2

	// The peer's abort.
	a2, b2 := net.Pipe()
	defer b2.Close()
	c2 := reg.Wrap(a2, 9)
	done := make(chan error, 1)
	go func() { _, err := c2.Read(make([]byte, 1)); done <- err }()
	reg.Abort(9)
	if err := <-done; !errors.Is(err, ErrAborted) {
		t.Fatalf("read after the peer's abort: %v, want ErrAborted", err)
	}
	reg.Abort(9) // gone: nothing happens

	// A lost session: an end of file reads as an abort.
	var lostReg Aborts
	lostReg.Init(tell, func() bool { return true })
	a3, b3 := net.Pipe()
	c3 := lostReg.Wrap(a3, 11)
	b3.Close()
	if _, err := c3.Read(make([]byte, 1)); !errors.Is(err, ErrAborted) {
		t.Fatalf("read on a lost session: %v, want ErrAborted", err)
	}
	c3.Close()
	reg.mu.Lock()
	defer reg.mu.Unlock()
	if len(reg.m) != 0 {
		t.Fatalf("%d streams still registered", len(reg.m))
	}
}

func errTimeout(err error) error {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return err
	}
	return errors.New("not a timeout")
}

// TestPeerAbortResetsABlockedPartner: the peer's teardown of a stream
// (its abort, or the session's loss) resets the connection the stream is
// piped to at once, while Pipe's copy is blocked writing to it because
// its client stopped reading (found by a TCP fault review: only the stream
// was closed, and the reset waited for a read of the stream that never
// came, holding the connection and both copies for ever).
func TestPeerAbortResetsABlockedPartner(t *testing.T) {
	for _, all := range []bool{false, true} {
		var reg Aborts
		reg.Init(func(*Control) error { return nil }, nil)
		visitor, edgeSide := testnet.Pair(t) // the visitor reads nothing
		stream, agent := net.Pipe()
		defer agent.Close()
		go func() { // the service floods
			buf := make([]byte, 32<<10)
			for {
				if _, err := agent.Write(buf); err != nil {
					return
				}
			}
		}()
		ac := reg.Wrap(stream, 3)
		done := make(chan struct{})
		go func() { Pipe(edgeSide, ac); close(done) }()
		time.Sleep(300 * time.Millisecond) // the copy to the visitor blocks
		if all {
			reg.AbortAll() // the session was lost
		} else {
			reg.Abort(3) // the peer's abort
		}
		select {
		case <-done:
		case <-time.After(time.Second):
			t.Fatalf("AbortAll=%v: Pipe still blocked a second after the peer's teardown", all)
		}
		_ = visitor.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, err := io.Copy(io.Discard, visitor)
		if !errors.Is(err, syscall.ECONNRESET) {
			t.Fatalf("AbortAll=%v: the visitor read %v, want a reset", all, err)
		}
	}
}
