//go:build unix && !linux

package proxy

import (
	"errors"
	"syscall"
)

// peerClosed peeks at fd, as nginx does: at its end with nothing left to
// read, or reset. Bytes still unread hide the end, so a TLS visitor that
// sent close_notify before hanging up is not seen and waits for the
// upstream timeout.
func peerClosed(fd int) bool {
	var b [1]byte
	n, _, err := syscall.Recvfrom(fd, b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
	return (n == 0 && err == nil) || (err != nil && !errors.Is(err, syscall.EAGAIN) && !errors.Is(err, syscall.EINTR))
}
