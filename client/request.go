package client

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/knockdaemon/knock/cipher"
)

// ParseAllow parses the address a request lets in (--ip). "" and
// "0.0.0.0" mean the knock source and give the zero Addr. IPv6 addresses
// are refused: the protocol carries IPv4 only (docs/PROTOCOL.md §1).
func ParseAllow(s string) (netip.Addr, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return netip.Addr{}, nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("invalid IP address %q", s)
	}
	if a.Zone() != "" {
		return netip.Addr{}, fmt.Errorf("invalid IP address %q: zones are not allowed", s)
	}
	a = a.Unmap()
	if !a.Is4() {
		return netip.Addr{}, fmt.Errorf("%s is not IPv4: %w", s, cipher.ErrAllowNotIP4)
	}
	if a.IsUnspecified() {
		return netip.Addr{}, nil
	}
	return a, nil
}
