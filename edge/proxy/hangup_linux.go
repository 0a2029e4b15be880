package proxy

import (
	"net"
	"syscall"

	"golang.org/x/sys/unix"
)

// visitorGone is whether the visitor hung up: its TCP connection c (the one
// under TLS and PROXY protocol, rawConn) got the visitor's FIN or a reset,
// or was closed by the edge (a cut). Polled with POLLRDHUP, which takes
// nothing from the connection and sees the FIN behind bytes still unread:
// a TLS visitor's close_notify, or requests pipelined after the one waiting
// (as for Go's net/http server, whose handlers see their context cancelled
// then too). A half-close counts, as for nginx and Go's server.
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
		fds := [1]unix.PollFd{{Fd: int32(fd), Events: unix.POLLRDHUP}}
		if n, err := unix.Poll(fds[:], 0); err == nil && n > 0 {
			gone = fds[0].Revents&(unix.POLLRDHUP|unix.POLLHUP|unix.POLLERR) != 0
		}
	})
	return gone || cerr != nil
}
