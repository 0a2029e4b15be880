//go:build unix && !linux

package proxy

import (
	"errors"
	"net"
	"syscall"
)

// visitorGone is whether the visitor hung up: its TCP connection c (the one
// under TLS and PROXY protocol, rawConn) is at its end with nothing left to
// read, or was reset, or was closed by the edge (a cut). Checked as nginx
// does, with a peek that takes nothing from the connection. A half-close
// counts, as for nginx and Go's net/http server. Bytes still unread hide
// the end (Linux does better: hangup_linux.go), so a TLS visitor that sent
// close_notify before hanging up is not seen and waits for the upstream
// timeout as before.
func visitorGone(c net.Conn) bool {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	gone := false
	cerr := rc.Control(func(fd uintptr) {
		var b [1]byte
		n, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		gone = (n == 0 && err == nil) || (err != nil && !errors.Is(err, syscall.EAGAIN) && !errors.Is(err, syscall.EINTR))
	})
	return gone || cerr != nil
}
