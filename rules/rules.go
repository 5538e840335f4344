// Package rules opens and closes firewall openings ("let ADDR reach
// PROTO/PORT") through one small Backend interface, with backends for
// iptables/ip6tables, nftables, ipset, FreeBSD ipfw, exec templates and
// dry-run. Commands are run as argument vectors through a Runner, never
// through a shell.
package rules

import (
	"context"
	"net/netip"
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
