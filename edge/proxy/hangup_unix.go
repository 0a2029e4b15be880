//go:build unix

package proxy

import (
	"net"
	"syscall"
)

// visitorGone is whether the visitor hung up: its TCP connection c (the one
// under TLS and PROXY protocol, rawConn) is at its end (the visitor's FIN:
// a half-close counts, as for nginx and Go's net/http server) or was reset,
// or was closed by the edge (a cut). Nothing is read from it (peerClosed).
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
	cerr := rc.Control(func(fd uintptr) { gone = peerClosed(int(fd)) })
	return gone || cerr != nil
}
