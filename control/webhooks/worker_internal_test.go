package webhooks

import (
	"errors"
	"net"
	"net/url"
	"os"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
)

// A delivery's error speaks of the receiver, never of the control plane's
// own resolver.
func TestTransportErrorHidesTheResolver(t *testing.T) {
	notFound := &url.Error{Op: "Post", URL: "https://hooks.example/x",
		Err: &net.OpError{Op: "dial", Net: "tcp", Err: &net.DNSError{Err: "no such host", Name: "hooks.example", Server: "10.255.255.53:53", IsNotFound: true}}}
	assert.Equal(t, "cannot resolve hooks.example: no such host", transportError(notFound))
	assert.Contains(t, notFound.Error(), "10.255.255.53", "the raw error names the resolver")
	assert.NotContains(t, transportError(notFound), "10.255.255.53")
	timeout := &url.Error{Op: "Post", URL: "https://hooks.example/x",
		Err: &net.DNSError{Err: "i/o timeout", Name: "hooks.example", Server: "10.255.255.53:53", IsTimeout: true}}
	assert.Equal(t, "cannot resolve hooks.example: i/o timeout", transportError(timeout))
	// Nor the address a name resolved to.
	refused := &url.Error{Op: "Post", URL: "https://hooks.example/x", Err: &net.OpError{Op: "dial", Net: "tcp",
		Addr: &net.TCPAddr{IP: net.IPv4(10, 1, 2, 3), Port: 443}, Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}}
	assert.Contains(t, refused.Error(), "10.1.2.3")
	assert.Equal(t, "dial: connection refused", transportError(refused))
	other := &url.Error{Op: "Post", URL: "https://hooks.example/x", Err: errors.New("tls: handshake failure")}
	assert.Equal(t, "tls: handshake failure", transportError(other))
}
