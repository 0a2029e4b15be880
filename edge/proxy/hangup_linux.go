package proxy

import "golang.org/x/sys/unix"

// peerClosed polls fd for POLLRDHUP, which sees the peer's FIN even behind
// bytes still unread: a TLS visitor's close_notify, or requests pipelined
// after the one waiting (as for Go's net/http server, whose handlers see
// their context cancelled then too).
func peerClosed(fd int) bool {
	fds := [1]unix.PollFd{{Fd: int32(fd), Events: unix.POLLRDHUP}}
	n, err := unix.Poll(fds[:], 0)
	return err == nil && n > 0 && fds[0].Revents&(unix.POLLRDHUP|unix.POLLHUP|unix.POLLERR) != 0
}
