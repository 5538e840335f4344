// Package rules opens and closes firewall openings ("let ADDR reach
// PROTO/PORT") through one small Backend interface, with backends for
// iptables/ip6tables, nftables, ipset, FreeBSD ipfw, exec templates and
// dry-run (New picks one from Options).
//
// The main rule: commands are run as argument vectors through a Runner,
// never through a shell, and every address is validated with net/netip
// (Opening.Validate) before it reaches an argument. A failed command is a
// *CmdError carrying argv, exit status and stderr; each backend recognises
// its tool's "already exists" and "does not exist" answers in one place,
// and callers test them with errors.Is(err, ErrExists / ErrNotExist). Open
// and Close are idempotent; Setup and Teardown too. Backends are safe for
// concurrent use.
//
// Established connections and Close: a backend's rule or set element only
// admits packets from the knocking address; removing it at the end of a
// grant must not cut a session the grant let in. That is the job of the
// admin's stateful rule above the drop, which every example ruleset in
// examples/ has:
//
//	iptables -A INPUT -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT   (and ip6tables)
//	nft add rule inet filter input ct state established,related accept
//	ipfw add 20000 allow tcp from any to me 22 in established   (before "deny tcp ... 22 in setup")
//
// With it, Close stops new connections only; without it, Close also
// freezes the sessions that are open. The daemon's ipfw rules are
// stateless, so on ipfw it is the "established" rule (TCP flags, not a
// keep-state dynamic rule, which ipfw deletes with its parent rule) that
// keeps sessions alive. See README.md for what was and was not run.
package rules

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"
)

// Opening is one grant as the firewall sees it.
type Opening struct {
	Addr  netip.Addr
	Proto string // "tcp" or "udp"
	Port  uint16
	// Timeout is how long the opening should live; 0 means no limit.
	// Backends with kernel timeouts (nftables, ipset) put it on the
	// element so the opening expires even when the daemon is dead.
	Timeout time.Duration
}

// Backend applies openings to one firewall.
type Backend interface {
	Name() string
	// Check reports whether the backend's binaries are present and usable.
	Check(ctx context.Context) error
	// Setup creates chains, sets and jump rules; it is idempotent.
	Setup(ctx context.Context) error
	// Teardown removes everything the backend created.
	Teardown(ctx context.Context) error
	// Open is idempotent; opening again refreshes the timeout.
	Open(ctx context.Context, o Opening) error
	// Close is idempotent: closing what is absent is not an error.
	Close(ctx context.Context, o Opening) error
	// List returns the openings this backend owns.
	List(ctx context.Context) ([]Opening, error)
}

// Runner runs one command given as an argument vector, never through a
// shell, and returns its standard output.
type Runner interface {
	Run(ctx context.Context, argv []string) ([]byte, error)
}

// String renders the opening as "ADDR PROTO/PORT".
func (o Opening) String() string {
	return fmt.Sprintf("%s %s/%d", o.Addr, o.Proto, o.Port)
}

// Validate reports why o cannot be put into a firewall: the address must be
// a single host (not unspecified, not multicast, no zone), the protocol
// "tcp" or "udp", the port non-zero and the timeout not negative.
func (o Opening) Validate() error {
	_, err := o.normalize()
	return err
}

// normalize validates o and unmaps IPv4-mapped IPv6 addresses (the
// firewall sees such a client as IPv4).
func (o Opening) normalize() (Opening, error) {
	a := o.Addr
	switch {
	case !a.IsValid():
		return o, errors.New("opening: no address")
	case a.Zone() != "":
		return o, fmt.Errorf("opening: address %s has a zone", a)
	}
	a = a.Unmap()
	switch {
	case a.IsUnspecified():
		return o, fmt.Errorf("opening: refusing the unspecified address %s (it would open to everyone)", a)
	case a.IsMulticast():
		return o, fmt.Errorf("opening: %s is a multicast address", a)
	case a.Is4() && a == netip.AddrFrom4([4]byte{255, 255, 255, 255}):
		return o, fmt.Errorf("opening: %s is the broadcast address", a)
	}
	if o.Proto != "tcp" && o.Proto != "udp" {
		return o, fmt.Errorf("opening: protocol %q, want tcp or udp", o.Proto)
	}
	if o.Port == 0 {
		return o, errors.New("opening: port 0")
	}
	if o.Timeout < 0 {
		return o, fmt.Errorf("opening: negative timeout %v", o.Timeout)
	}
	o.Addr = a
	return o, nil
}

// errForeign marks an element or rule in the daemon's set or chain that
// is not an opening (another protocol, someone else's entry): listings
// skip it instead of failing.
var errForeign = errors.New("not an opening")

// key identifies an opening regardless of its timeout.
type key struct {
	addr  netip.Addr
	proto string
	port  uint16
}

func (o Opening) key() key { return key{o.Addr, o.Proto, o.Port} }

// timeoutSeconds is the kernel timeout for d: whole seconds rounded up,
// 0 for no limit.
func timeoutSeconds(d time.Duration) int64 {
	if d <= 0 {
		return 0
	}
	return int64((d + time.Second - 1) / time.Second)
}

// minutes is %MINUTES% for exec templates: whole minutes rounded up, 0 for
// no limit.
func minutes(d time.Duration) int64 {
	if d <= 0 {
		return 0
	}
	return int64((d + time.Minute - 1) / time.Minute)
}

// protoFromName accepts a protocol as a firewall prints it (name or
// IANA number) and returns "tcp" or "udp".
func protoFromName(s string) (string, bool) {
	switch strings.ToLower(s) {
	case "tcp", "6":
		return "tcp", true
	case "udp", "17":
		return "udp", true
	}
	return "", false
}

// sortOpenings orders openings by address, protocol and port, for stable
// listings.
func sortOpenings(os []Opening) {
	slices.SortFunc(os, func(a, b Opening) int {
		if c := a.Addr.Compare(b.Addr); c != 0 {
			return c
		}
		if c := strings.Compare(a.Proto, b.Proto); c != 0 {
			return c
		}
		return cmp.Compare(a.Port, b.Port)
	})
}
