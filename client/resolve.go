package client

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
)

// Family restricts which address family a host name may resolve to.
type Family uint8

const (
	AnyFamily Family = iota // IPv4 or IPv6, as the resolver orders them
	IPv4                    // -4
	IPv6                    // -6
)

func (f Family) network() string {
	switch f {
	case IPv4:
		return "ip4"
	case IPv6:
		return "ip6"
	}
	return "ip"
}

func (f Family) String() string {
	switch f {
	case IPv4:
		return "IPv4"
	case IPv6:
		return "IPv6"
	}
	return "any"
}

// ResolveError reports a host that has no usable address.
type ResolveError struct {
	Host   string
	Family Family
	Err    error
}

func (e *ResolveError) Error() string {
	if e.Family == AnyFamily {
		return fmt.Sprintf("cannot resolve host %q: %v", e.Host, e.Err)
	}
	return fmt.Sprintf("cannot resolve host %q to an %s address: %v", e.Host, e.Family, e.Err)
}

func (e *ResolveError) Unwrap() error { return e.Err }

// ErrNoAddress is wrapped by a ResolveError when the name exists but has
// no address of the wanted family.
var ErrNoAddress = errors.New("no address of that family")

// Resolve turns host into the address to knock on. host may be an IPv4 or
// IPv6 literal (optionally in brackets, with a zone) or a name. With
// IPv4 or IPv6 only addresses of that family are accepted. The first
// address in the resolver's order wins; IPv4-mapped IPv6 addresses are
// taken as IPv4.
func Resolve(ctx context.Context, r *net.Resolver, host string, fam Family) (netip.Addr, error) {
	h := strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if h == "" {
		return netip.Addr{}, &ResolveError{Host: host, Family: fam, Err: errors.New("empty host name")}
	}
	if a, err := netip.ParseAddr(h); err == nil {
		a = a.Unmap()
		if !familyOK(a, fam) {
			return netip.Addr{}, &ResolveError{Host: host, Family: fam, Err: ErrNoAddress}
		}
		if a.IsUnspecified() {
			return netip.Addr{}, &ResolveError{Host: host, Family: fam, Err: errors.New("unspecified address")}
		}
		return a, nil
	}
	if r == nil {
		r = net.DefaultResolver
	}
	addrs, err := r.LookupNetIP(ctx, fam.network(), h)
	if err != nil {
		var de *net.DNSError
		if errors.As(err, &de) && de.IsNotFound {
			err = errors.New("no such host")
		}
		return netip.Addr{}, &ResolveError{Host: host, Family: fam, Err: err}
	}
	for _, a := range addrs {
		if a = a.Unmap(); familyOK(a, fam) && !a.IsUnspecified() {
			return a, nil
		}
	}
	return netip.Addr{}, &ResolveError{Host: host, Family: fam, Err: ErrNoAddress}
}

func familyOK(a netip.Addr, fam Family) bool {
	switch fam {
	case IPv4:
		return a.Is4()
	case IPv6:
		return a.Is6()
	}
	return a.IsValid()
}
