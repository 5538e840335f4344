// Package logparse turns one firewall log line into a Hit: netfilter LOG
// and nftables log output (iptables, ip6tables, nft) and FreeBSD ipfw,
// under any of the usual syslog, journal, dmesg and /dev/kmsg framings.
package logparse

import (
	"errors"
	"net/netip"
	"time"
)

// Kind says which firewall wrote a line.
type Kind uint8

const (
	Netfilter Kind = iota + 1
	IPFW
)

// Proto is the IP protocol of a hit.
type Proto uint8

const (
	ProtoOther Proto = iota
	ProtoTCP
	ProtoUDP
	ProtoICMP
	ProtoICMPv6
)

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
}

// ErrNotFirewall is returned, without allocating, for a line that is not
// firewall output at all.
var ErrNotFirewall = errors.New("not a firewall log line")
