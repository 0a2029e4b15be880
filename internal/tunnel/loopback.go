package tunnel

import (
	"net"
	"net/netip"
	"strings"
)

// IsLoopbackAddr reports whether a "host:port" address (a tunnel listener
// or an edge to dial, with or without a tcp:// scheme) names this machine
// only: "localhost" or a loopback IP. An empty host (all interfaces) is not
// loopback. Plain-TCP tunnels are allowed there without an explicit opt-in
// (dataplane.md: "plain TCP allowed on loopback for dev and tests").
func IsLoopbackAddr(addr string) bool {
	host, _, err := net.SplitHostPort(strings.TrimPrefix(addr, "tcp://"))
	if err != nil {
		return false
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.Unmap().IsLoopback()
}
