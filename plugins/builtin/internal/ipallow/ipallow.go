// Package ipallow is the built-in plugin behind a share's allowedIps: requests from
// addresses outside the allowed networks, or inside a denied one, get 403.
//
// Config: {"allow": ["10.0.0.0/8", "2001:db8::/32", "192.0.2.7"], "deny": ["10.6.0.0/16"]}.
// Entries are CIDRs or single addresses, IPv4 or IPv6; IPv4-mapped IPv6 client addresses are
// treated as IPv4. deny wins over allow; an empty allow list allows every address not denied.
package ipallow

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"unsafe"

	"github.com/privateconnect/pc/plugins/builtin/internal/envelope"
	"github.com/privateconnect/pc/sdk/plugin"
)

type config struct {
	Allow []string `json:"allow"`
	Deny  []string `json:"deny"`
}

type compiled struct {
	allow, deny []netip.Prefix
}

func parsePrefixes(list []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, s := range list {
		s = strings.TrimSpace(s)
		var p netip.Prefix
		var err error
		if strings.Contains(s, "/") {
			p, err = netip.ParsePrefix(s)
		} else {
			var a netip.Addr
			a, err = netip.ParseAddr(s)
			if err == nil {
				p = netip.PrefixFrom(a, a.BitLen())
			}
		}
		if err != nil {
			return nil, fmt.Errorf("invalid address or CIDR %q", s)
		}
		if p.Addr().Zone() != "" {
			return nil, fmt.Errorf("zoned address %q not allowed", s)
		}
		if p.Addr().Is4In6() {
			p = netip.PrefixFrom(p.Addr().Unmap(), max(0, p.Bits()-96))
		}
		out = append(out, p.Masked())
	}
	return out, nil
}

func parse(b []byte) (*compiled, error) {
	cfg, err := plugin.DecodeJSON[*config](b)
	if err != nil {
		return nil, err
	}
	if len(cfg.Allow)+len(cfg.Deny) > 4096 {
		return nil, errors.New("at most 4096 entries")
	}
	c := &compiled{}
	if c.allow, err = parsePrefixes(cfg.Allow); err != nil {
		return nil, err
	}
	if c.deny, err = parsePrefixes(cfg.Deny); err != nil {
		return nil, err
	}
	return c, nil
}

// Validate checks a config.
func Validate(b []byte) error { _, err := parse(b); return err }

var ipBuf [64]byte

// Handle is the policy: the handler of the built-in's module (and a step of the bundle).
func Handle(r *plugin.Request) plugin.Result {
	c, err := plugin.ParseConfig(r, parse)
	if err != nil {
		return plugin.Error(err)
	}
	b := r.AppendClientIP(ipBuf[:0])
	if len(b) == 0 {
		return envelope.Deny(403, "Your address is not allowed to use this share link")
	}
	// The string only lives for the parse (netip keeps no reference to it; zones are
	// refused below), so view the buffer instead of allocating.
	ip, err := netip.ParseAddr(unsafe.String(&b[0], len(b)))
	if err != nil || ip.Zone() != "" {
		return envelope.Deny(403, "Your address is not allowed to use this share link")
	}
	ip = ip.Unmap()
	if allowed(c, ip) {
		return plugin.Allow()
	}
	return envelope.Deny(403, "Your address is not allowed to use this share link")
}

func allowed(c *compiled, ip netip.Addr) bool {
	for _, p := range c.deny {
		if p.Contains(ip) {
			return false
		}
	}
	if len(c.allow) == 0 {
		return true
	}
	for _, p := range c.allow {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}
