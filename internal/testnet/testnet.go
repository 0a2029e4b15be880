// Package testnet holds the connection helpers that the tunnel tests of
// several packages share.
package testnet

import (
	"net"
	"sync/atomic"
	"syscall"
	"testing"
)

// Pair returns the two ends of a loopback TCP connection, closed when the
// test ends.
func Pair(t testing.TB) (net.Conn, net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	ch := make(chan net.Conn, 1)
	go func() { c, _ := ln.Accept(); ch <- c }()
	a, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	b := <-ch
	if b == nil {
		t.Fatal("testnet: accept failed")
	}
	t.Cleanup(func() { a.Close(); b.Close() })
	return a, b
}

// KeepOpen hides Close: smux's Close of a session leaves the connection
// under it open, as in the instant between smux marking a session dead and
// closing its connection, while its send loop may still copy.
type KeepOpen struct{ net.Conn }

// Close does nothing.
func (KeepOpen) Close() error { return nil }

// FailingListener fails its first N Accepts as a process out of file
// descriptors does (EMFILE), then accepts. Calls counts the Accepts.
type FailingListener struct {
	net.Listener
	N     int32
	Calls atomic.Int32
}

// Accept fails with EMFILE N times, then accepts.
func (l *FailingListener) Accept() (net.Conn, error) {
	if l.Calls.Add(1) <= l.N {
		return nil, &net.OpError{Op: "accept", Net: "tcp", Err: syscall.EMFILE}
	}
	return l.Listener.Accept()
}

// Serve listens on 127.0.0.1 until the test ends and serves each
// connection with serve (which closes it) on its own goroutine.
func Serve(t testing.TB, serve func(net.Conn)) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go serve(c)
		}
	}()
	return ln
}
