// Package logparse turns one firewall log line into a Hit: netfilter LOG
// and nftables log output (iptables, ip6tables, nft) and FreeBSD ipfw,
// under any of the usual syslog, journal, dmesg and /dev/kmsg framings.
//
// Parse is strict: fields are read at token boundaries, a key repeated in
// one header section makes the line malformed, and the log prefix (all
// text between the framing and the kernel's "IN=") is kept as the prefix
// and never searched for fields. Unrelated lines are rejected with two
// byte searches and no allocation. Parse is safe for concurrent use; a Hit
// is not.
package logparse

import (
	"errors"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// Kind says which firewall wrote a line.
type Kind uint8

const (
	Netfilter Kind = iota + 1
	IPFW
)

// String returns "netfilter" or "ipfw".
func (k Kind) String() string {
	switch k {
	case Netfilter:
		return "netfilter"
	case IPFW:
		return "ipfw"
	}
	return "kind(" + strconv.Itoa(int(k)) + ")"
}

// Proto is the IP protocol of a hit.
type Proto uint8

const (
	ProtoOther Proto = iota
	ProtoTCP
	ProtoUDP
	ProtoICMP
	ProtoICMPv6
)

// String returns the protocol as the kernel logs it: TCP, UDP, ICMP,
// ICMPv6, or "other".
func (p Proto) String() string {
	switch p {
	case ProtoTCP:
		return "TCP"
	case ProtoUDP:
		return "UDP"
	case ProtoICMP:
		return "ICMP"
	case ProtoICMPv6:
		return "ICMPv6"
	}
	return "other"
}

// Flags is a TCP flag set.
type Flags uint16

const (
	FIN Flags = 1 << iota
	SYN
	RST
	PSH
	ACK
	URG
	ECE
	CWR
)

var flagNames = [...]string{"FIN", "SYN", "RST", "PSH", "ACK", "URG", "ECE", "CWR"}

// String lists the flags set, space separated in the order FIN SYN RST
// PSH ACK URG ECE CWR; an empty set is "".
func (f Flags) String() string {
	var b strings.Builder
	for i, n := range flagNames {
		if f&(1<<i) != 0 {
			if b.Len() > 0 {
				b.WriteByte(' ')
			}
			b.WriteString(n)
		}
	}
	return b.String()
}

// Hit is one logged packet.
type Hit struct {
	Kind             Kind
	Time             time.Time // from the line's framing when present; informational only
	Src, Dst         netip.Addr
	Proto            Proto
	SrcPort, DstPort uint16
	Flags            Flags
	Prefix           string
	In, Out          string
	Rule             int    // ipfw rule number
	Action           string // ipfw action: Deny, Reset, Unreach ..., Accept

	// Uptime is the kernel's time since boot when the framing carries it
	// ("[  488.204357]" from syslog or dmesg, the /dev/kmsg timestamp).
	Uptime time.Duration
	// FromKernel is set when the framing itself says the kernel wrote the
	// line: a /dev/kmsg record of facility kern, a syslog tag "kernel:"
	// (also "/kernel:", "mach_kernel:"), an RFC 5424 header with facility
	// kern and app "kernel". Plain syslog text is still forgeable by any
	// process that can write to the same file; /dev/kmsg is not.
	FromKernel bool
	// ICMPType and ICMPCode are set for ICMP and ICMPv6 hits (ports stay 0).
	ICMPType, ICMPCode uint8
	// Fragment marks a non-first IP fragment: no transport header, so no
	// ports, flags or ICMP type.
	Fragment bool
	// Incomplete marks a packet whose transport header the kernel could not
	// read ("INCOMPLETE [N bytes]"): no ports either.
	Incomplete bool
}

// ErrNotFirewall is returned, without allocating, for a line that is not
// firewall output at all.
var ErrNotFirewall = errors.New("not a firewall log line")

// MalformedError is returned for a line that looks like firewall output
// but cannot be trusted; Reason says why.
type MalformedError struct {
	Kind   Kind // the firewall the line claims to come from
	Reason string
}

func (e *MalformedError) Error() string {
	return "malformed " + e.Kind.String() + " log line: " + e.Reason
}

// LimitNotice is returned for ipfw's "ipfw: limit N reached on entry R":
// rule R logs nothing more until "ipfw resetlog". It is not a hit.
type LimitNotice struct {
	Limit int
	Rule  int
	Time  time.Time // from the framing, when present
}

func (n *LimitNotice) Error() string {
	return "ipfw: logging limit " + strconv.Itoa(n.Limit) + " reached on rule " + strconv.Itoa(n.Rule)
}
