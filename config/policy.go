package config

import "net/netip"

// Reason says why a request was refused; it is the reason= value of the
// daemon's log lines (docs/ARCHITECTURE.md).
type Reason string

// The policy refusals.
const (
	Allowed          Reason = ""
	PolicySource     Reason = "policy_source"
	PolicyDelegation Reason = "policy_delegation"
	PolicyPort       Reason = "policy_port"
	PolicyTime       Reason = "policy_time"
)

// Time values with a meaning of their own (docs/PROTOCOL.md section 1).
const (
	TimeUnlimited = 0
	TimeClose     = 255
)

// Policy is what one user's key may do. Its zero value allows nothing.
type Policy struct {
	Ports          []PortRange
	Protos         []string // the protocols a grant opens: "tcp", "udp" or both
	MaxMinutes     int
	AllowUnlimited bool
	DelegateTo     []netip.Prefix // IPv4 networks it may open for others
	Sources        []netip.Prefix // networks the knocks may come from; empty: any
}

// Target returns the address a request opens for: the knock source when
// allow is unset or 0.0.0.0 (docs/PROTOCOL.md section 1), else allow.
func Target(src, allow netip.Addr) netip.Addr {
	if !allow.IsValid() || allow.IsUnspecified() {
		return src.Unmap()
	}
	return allow.Unmap()
}

// Check decides a request from src to open port for the given time
// (minutes; 0 unlimited; 255 close) for allow (see Target). It returns
// Allowed or the first reason that refuses it. Closing is subject to the
// same source, delegation and port rules as opening, but not to the time
// rules.
func (p *Policy) Check(src, allow netip.Addr, port uint16, minutes uint8) Reason {
	src = src.Unmap()
	if len(p.Sources) > 0 && !inAny(p.Sources, src) {
		return PolicySource
	}
	if target := Target(src, allow); target != src && !inAny(p.DelegateTo, target) {
		return PolicyDelegation
	}
	if !p.PortAllowed(port) {
		return PolicyPort
	}
	switch {
	case minutes == TimeClose:
	case minutes == TimeUnlimited:
		if !p.AllowUnlimited {
			return PolicyTime
		}
	case int(minutes) > p.MaxMinutes:
		return PolicyTime
	}
	return Allowed
}

// PortAllowed reports whether port is in one of the policy's ranges.
func (p *Policy) PortAllowed(port uint16) bool {
	for _, r := range p.Ports {
		if r.Contains(port) {
			return true
		}
	}
	return false
}

func inAny(nets []netip.Prefix, a netip.Addr) bool {
	for _, n := range nets {
		if n.Contains(a) {
			return true
		}
	}
	return false
}
