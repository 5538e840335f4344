package client

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"
)

// noDNS resolves from /etc/hosts only: tests never send DNS queries.
var noDNS = &net.Resolver{PreferGo: true, Dial: func(context.Context, string, string) (net.Conn, error) {
	return nil, errors.New("no DNS in tests")
}}

func TestResolve(t *testing.T) {
	tests := []struct {
		name string
		host string
		fam  Family
		want string // address, or error substring prefixed with "!"
	}{
		{"ipv4 literal", "192.0.2.1", AnyFamily, "192.0.2.1"},
		{"ipv6 literal", "2001:db8::1", AnyFamily, "2001:db8::1"},
		{"bracketed ipv6", "[2001:db8::1]", IPv6, "2001:db8::1"},
		{"mapped is ipv4", "::ffff:192.0.2.1", IPv4, "192.0.2.1"},
		{"zone kept", "fe80::1%lo", IPv6, "fe80::1%lo"},
		{"ipv6 literal with -4", "2001:db8::1", IPv4, "!to an IPv4 address: no address of that family"},
		{"ipv4 literal with -6", "192.0.2.1", IPv6, "!no address of that family"},
		{"unspecified", "0.0.0.0", AnyFamily, "!unspecified address"},
		{"empty", "", AnyFamily, "!empty host name"},
		{"localhost -4 from hosts file", "localhost", IPv4, "127.0.0.1"},
		{"unresolvable", "no-such-host.invalid", AnyFamily, `!cannot resolve host "no-such-host.invalid"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, err := Resolve(context.Background(), noDNS, tt.host, tt.fam)
			if strings.HasPrefix(tt.want, "!") {
				var re *ResolveError
				if !errors.As(err, &re) || !strings.Contains(err.Error(), tt.want[1:]) {
					t.Fatalf("Resolve(%q) = %v, %v; want error %q", tt.host, a, err, tt.want[1:])
				}
				return
			}
			if err != nil || a.String() != tt.want {
				t.Fatalf("Resolve(%q) = %v, %v; want %s", tt.host, a, err, tt.want)
			}
		})
	}
}
