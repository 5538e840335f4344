package logparse

import (
	"bytes"
	"net/netip"
)

// FreeBSD ipfw logs through log(LOG_SECURITY | LOG_INFO, ...) in
// sys/netpfil/ipfw/ip_fw_log.c:
//
//	"ipfw: %d %s %s %s via %s%s"  rule, action, proto-part, in|out, ifname, fragment
//	"ipfw: %d %s %s [no if info]%s"
//	"ipfw: limit %d reached on entry %d"
//
// proto-part is "TCP a:p b:p", "UDP a:p b:p", "ICMP:t.c a b",
// "ICMPv6:t.c a b", "P:n a b"; non-first fragments drop the ports ("TCP a
// b", "ICMP a b"); IPv6 addresses are bracketed ("[2001:db8::1]:80").
// fragment is " (frag id:len@off[+])".

var ipfwHead = []byte("ipfw: ")

func parseIPFW(line []byte, h *Hit) error {
	oldAction, oldIn, oldOut := h.Action, h.In, h.Out
	*h = Hit{Kind: IPFW}
	f, reason := parseFrame(line, h)
	msg := f.msg
	if !bytes.HasPrefix(msg, ipfwHead) {
		// "ipfw: " somewhere in unrelated text
		return ErrNotFirewall
	}
	if reason != "" {
		return malformed(IPFW, reason)
	}
	if f.facility != facUnknown && f.facility != facKern && f.facility != facSecurity {
		return malformed(IPFW, "the framing gives a facility other than security or kern")
	}
	p := bytes.TrimRight(msg[len(ipfwHead):], " ")

	tok, p := token(p)
	if string(tok) == "limit" {
		return ipfwLimit(p, h)
	}
	rule, ok := atou(tok, 65535)
	if !ok {
		return malformed(IPFW, "bad rule number "+quoteShort(tok))
	}
	h.Rule = int(rule)

	// action
	astart := len(msg) - len(p)
	word, p := token(p)
	switch string(word) {
	case "Deny", "Reset", "Reject", "Accept", "Count", "Nat", "Reass", "Return",
		"Refuse", "UNKNOWN", "Abort", "Abort6":
		h.Action = constAction(word)
	case "Unreach", "Unreach6":
		// the code is absent in some old versions ("Unreach TCP ...")
		if n, rest := token(p); isDigits(n) {
			p = rest
		}
	case "Divert", "Tee", "SkipTo", "Pipe", "Queue", "Call", "SetFib", "SetDscp":
		n, rest := token(p)
		if !isDigits(n) {
			return malformed(IPFW, string(word)+" without a number")
		}
		p = rest
	case "Forward":
		to, rest := token(p)
		addr, rest2 := token(rest)
		if string(to) != "to" || len(addr) == 0 {
			return malformed(IPFW, "bad Forward action")
		}
		p = rest2
	default:
		return malformed(IPFW, "unknown action "+quoteShort(word))
	}
	if h.Action == "" {
		a := bytes.TrimRight(msg[astart:len(msg)-len(p)], " ")
		if string(a) == oldAction {
			h.Action = oldAction
		} else {
			h.Action = string(a)
		}
	}

	// protocol and addresses
	proto, p := token(p)
	srcTok, p := token(p)
	dstTok, p := token(p)
	if len(dstTok) == 0 {
		return malformed(IPFW, "truncated line")
	}
	withPorts, typed := false, false
	switch {
	case string(proto) == "TCP":
		h.Proto, withPorts = ProtoTCP, true
	case string(proto) == "UDP", string(proto) == "UDPLite":
		h.Proto, withPorts = ProtoUDP, true
		if len(proto) > 3 {
			h.Proto = ProtoOther
		}
	case string(proto) == "SCTP":
		h.Proto, withPorts = ProtoOther, true
	case bytes.HasPrefix(proto, []byte("ICMPv6")):
		h.Proto, typed = ProtoICMPv6, len(proto) > 6
		if !icmpTypeCode(proto[6:], h) {
			return malformed(IPFW, "bad ICMPv6 type.code")
		}
	case bytes.HasPrefix(proto, []byte("ICMP")):
		h.Proto, typed = ProtoICMP, len(proto) > 4
		if !icmpTypeCode(proto[4:], h) {
			return malformed(IPFW, "bad ICMP type.code")
		}
	case bytes.HasPrefix(proto, []byte("P:")):
		if _, ok := atou(proto[2:], 255); !ok {
			return malformed(IPFW, "bad protocol number")
		}
		h.Proto = ProtoOther
	default:
		return malformed(IPFW, "unknown protocol "+quoteShort(proto))
	}
	var sp, dp int
	if h.Src, sp, ok = ipfwAddr(srcTok); !ok {
		return malformed(IPFW, "bad source "+quoteShort(srcTok))
	}
	if h.Dst, dp, ok = ipfwAddr(dstTok); !ok {
		return malformed(IPFW, "bad destination "+quoteShort(dstTok))
	}
	if h.Src.Is4() != h.Dst.Is4() {
		return malformed(IPFW, "source and destination of different families")
	}
	if (h.Proto == ProtoICMP && !h.Src.Is4()) || (h.Proto == ProtoICMPv6 && !h.Src.Is6()) {
		return malformed(IPFW, "ICMP version does not match the address family")
	}
	// ports: both or none; none only on a fragment, checked below
	if (sp < 0) != (dp < 0) || (!withPorts && sp >= 0) {
		return malformed(IPFW, "ports do not match the protocol")
	}
	if sp >= 0 {
		h.SrcPort, h.DstPort = uint16(sp), uint16(dp)
	}

	// direction and interface
	dir, p := token(p)
	switch string(dir) {
	case "in", "out":
		via, rest := token(p)
		ifname, rest2 := token(rest)
		if string(via) != "via" || len(ifname) == 0 || !validBSDIfname(ifname) {
			return malformed(IPFW, "bad interface")
		}
		p = rest2
		if dir[0] == 'i' {
			h.In = reuse(oldIn, ifname)
		} else {
			h.Out = reuse(oldOut, ifname)
		}
	case "[no":
		if !bytes.HasPrefix(p, []byte("if info]")) {
			return malformed(IPFW, "bad interface")
		}
		p = skipSpaces(p[len("if info]"):])
	default:
		return malformed(IPFW, "no direction")
	}
	if len(p) > 0 {
		if !bytes.HasPrefix(p, []byte("(frag ")) || p[len(p)-1] != ')' {
			return malformed(IPFW, "trailing text "+quoteShort(p))
		}
		if !validFrag(p[len("(frag ") : len(p)-1]) {
			return malformed(IPFW, "bad fragment "+quoteShort(p))
		}
		h.Fragment = (withPorts && sp < 0) || ((h.Proto == ProtoICMP || h.Proto == ProtoICMPv6) && !typed)
	} else if withPorts && sp < 0 {
		return malformed(IPFW, "no ports")
	} else if (h.Proto == ProtoICMP || h.Proto == ProtoICMPv6) && !typed {
		return malformed(IPFW, "no ICMP type.code")
	}
	return nil
}

func constAction(w []byte) string {
	switch string(w) {
	case "Deny":
		return "Deny"
	case "Reset":
		return "Reset"
	case "Reject":
		return "Reject"
	case "Accept":
		return "Accept"
	case "Count":
		return "Count"
	case "Nat":
		return "Nat"
	case "Reass":
		return "Reass"
	case "Return":
		return "Return"
	case "Refuse":
		return "Refuse"
	case "Abort":
		return "Abort"
	case "Abort6":
		return "Abort6"
	}
	return "UNKNOWN"
}

// ipfwLimit reads "N reached on entry R".
func ipfwLimit(p []byte, h *Hit) error {
	n, p := token(p)
	w1, p := token(p)
	w2, p := token(p)
	w3, p := token(p)
	r, p := token(p)
	limit, ok1 := atou(n, 1<<31)
	rule, ok2 := atou(r, 65535)
	if !ok1 || !ok2 || string(w1) != "reached" || string(w2) != "on" || string(w3) != "entry" || len(p) != 0 {
		return malformed(IPFW, "bad limit notice")
	}
	return &LimitNotice{Limit: int(limit), Rule: int(rule), Time: h.Time}
}

// icmpTypeCode reads ":type.code", or nothing (a non-first fragment).
func icmpTypeCode(b []byte, h *Hit) bool {
	if len(b) == 0 {
		return true
	}
	if b[0] != ':' {
		return false
	}
	dot := bytes.IndexByte(b, '.')
	if dot < 0 {
		return false
	}
	t, ok1 := atou(b[1:dot], 255)
	c, ok2 := atou(b[dot+1:], 255)
	h.ICMPType, h.ICMPCode = uint8(t), uint8(c)
	return ok1 && ok2
}

// ipfwAddr reads "a.b.c.d", "a.b.c.d:port", "[v6]" or "[v6]:port"; port
// is -1 when absent.
func ipfwAddr(b []byte) (netip.Addr, int, bool) {
	var a, port []byte
	if len(b) > 0 && b[0] == '[' {
		end := bytes.IndexByte(b, ']')
		if end < 0 {
			return netip.Addr{}, 0, false
		}
		a = b[1:end]
		rest := b[end+1:]
		if len(rest) > 0 {
			if rest[0] != ':' {
				return netip.Addr{}, 0, false
			}
			port = rest[1:]
			if port == nil {
				port = rest[:0]
			}
		}
		addr, ok := parseIP6(a)
		if !ok || !addr.Is6() {
			return netip.Addr{}, 0, false
		}
		return withPort(addr, port)
	}
	if c := bytes.IndexByte(b, ':'); c >= 0 {
		a, port = b[:c], b[c+1:]
		if port == nil {
			port = b[c:c]
		}
	} else {
		a = b
	}
	addr, ok := parseIP4(a)
	if !ok {
		return netip.Addr{}, 0, false
	}
	return withPort(addr, port)
}

func withPort(a netip.Addr, port []byte) (netip.Addr, int, bool) {
	if port == nil {
		return a, -1, true
	}
	v, ok := atou(port, 65535)
	return a, int(v), ok
}

// validBSDIfname accepts FreeBSD and macOS interface names: letters then
// digits, with '.' VLAN and '_' or '-' parts (em0, vlan0.100, lagg0, en0).
func validBSDIfname(b []byte) bool {
	if len(b) > 16 || !isLetter(b[0]) {
		return false
	}
	for _, c := range b {
		if !isLetter(c) && !isDigit(c) && c != '.' && c != '_' && c != '-' {
			return false
		}
	}
	return true
}

// validFrag reads "id:len@off" with an optional "+" (IPv4 decimal id, IPv6 hex id).
func validFrag(b []byte) bool {
	b = bytes.TrimSuffix(b, []byte("+"))
	c := bytes.IndexByte(b, ':')
	at := bytes.IndexByte(b, '@')
	if c < 1 || at < c+2 {
		return false
	}
	return isHex(b[:c]) && isDigits(b[c+1:at]) && isDigits(b[at+1:])
}
