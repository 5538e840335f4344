package config

import (
	"net/netip"
	"testing"
)

func TestPolicyCheck(t *testing.T) {
	base := Policy{
		Ports:      []PortRange{{22, 22}, {8000, 8010}},
		Protos:     []string{"tcp"},
		MaxMinutes: 60,
	}
	deleg := base
	deleg.DelegateTo = []netip.Prefix{netip.MustParsePrefix("198.51.100.0/24")}
	limited := base
	limited.Sources = []netip.Prefix{netip.MustParsePrefix("203.0.113.0/24"), netip.MustParsePrefix("2001:db8::/32")}
	unlimited := base
	unlimited.AllowUnlimited = true

	src := netip.MustParseAddr("203.0.113.9")
	zero := netip.IPv4Unspecified()
	tests := []struct {
		name    string
		p       Policy
		src     string
		allow   netip.Addr
		port    uint16
		minutes uint8
		want    Reason
	}{
		{"own address via 0.0.0.0", base, "203.0.113.9", zero, 22, 10, Allowed},
		{"own address via invalid addr", base, "203.0.113.9", netip.Addr{}, 22, 10, Allowed},
		{"own address named explicitly", base, "203.0.113.9", src, 22, 60, Allowed},
		{"ipv4-mapped source matches its own address", base, "::ffff:203.0.113.9", src, 22, 60, Allowed},
		{"ipv6 source opens itself", base, "2001:db8::5", zero, 22, 1, Allowed},
		{"port in range", base, "203.0.113.9", zero, 8005, 1, Allowed},
		{"port outside ranges", base, "203.0.113.9", zero, 23, 1, PolicyPort},
		{"port just past range", base, "203.0.113.9", zero, 8011, 1, PolicyPort},
		{"over max minutes", base, "203.0.113.9", zero, 22, 61, PolicyTime},
		{"at max minutes", base, "203.0.113.9", zero, 22, 60, Allowed},
		{"unlimited refused by default", base, "203.0.113.9", zero, 22, 0, PolicyTime},
		{"unlimited allowed", unlimited, "203.0.113.9", zero, 22, 0, Allowed},
		{"close is not a time request", base, "203.0.113.9", zero, 22, 255, Allowed},
		{"close of a port not allowed", base, "203.0.113.9", zero, 25, 255, PolicyPort},
		{"delegation off by default", base, "203.0.113.9", netip.MustParseAddr("198.51.100.7"), 22, 5, PolicyDelegation},
		{"delegation inside network", deleg, "203.0.113.9", netip.MustParseAddr("198.51.100.7"), 22, 5, Allowed},
		{"delegation outside network", deleg, "203.0.113.9", netip.MustParseAddr("198.51.101.7"), 22, 5, PolicyDelegation},
		{"delegated close outside network", deleg, "203.0.113.9", netip.MustParseAddr("192.0.2.1"), 22, 255, PolicyDelegation},
		{"ipv6 source naming an ipv4 address", base, "2001:db8::5", src, 22, 5, PolicyDelegation},
		{"source network allows", limited, "203.0.113.200", zero, 22, 5, Allowed},
		{"source network ipv6 allows", limited, "2001:db8:1::1", zero, 22, 5, Allowed},
		{"source outside networks", limited, "192.0.2.1", zero, 22, 5, PolicySource},
		{"source checked before port", limited, "192.0.2.1", zero, 99, 5, PolicySource},
		{"zero policy allows nothing", Policy{}, "203.0.113.9", zero, 22, 1, PolicyPort},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := tc.p.Check(netip.MustParseAddr(tc.src), tc.allow, tc.port, tc.minutes)
			if got != tc.want {
				t.Errorf("Check = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestParsePortRange(t *testing.T) {
	tests := []struct {
		in   string
		want PortRange
		bad  bool
	}{
		{"22", PortRange{22, 22}, false},
		{"1-65535", PortRange{1, 65535}, false},
		{"8000-8000", PortRange{8000, 8000}, false},
		{"", PortRange{}, true},
		{"-", PortRange{}, true},
		{"22-", PortRange{}, true},
		{"+22", PortRange{}, true},
		{" 22", PortRange{}, true},
		{"0", PortRange{}, true},
		{"65536", PortRange{}, true},
		{"000022", PortRange{}, true},
		{"1-2-3", PortRange{}, true},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParsePortRange(tc.in)
			if (err != nil) != tc.bad {
				t.Fatalf("err = %v", err)
			}
			if got != tc.want {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
}
