package logparse

import (
	"bytes"
	"net/netip"
	"sync/atomic"
)

// Netfilter's nf_log_syslog (net/netfilter/nf_log_syslog.c, also behind
// nftables "log") prints: PREFIX "IN=%s OUT=%s " [PHYSIN= PHYSOUT=]
// [MAC=... | MACSRC= MACDST= [VPROTO= VID=] MACPROTO=] then the IP header
// (SRC DST LEN TOS PREC TTL ID, flags CE DF MF, FRAG:, OPT (...) for IPv4;
// SRC DST LEN TC HOPLIMIT FLOWLBL and extension headers for IPv6), then
// "PROTO=" and the transport header (SPT DPT [SEQ ACK] WINDOW RES flags
// URGP [OPT (...)] for TCP; SPT DPT LEN for UDP; TYPE CODE [ID SEQ |
// PARAMETER | GATEWAY | MTU] and "[inner packet]" for ICMP errors), then
// UID/GID and MARK. The prefix is up to 29 bytes (iptables) or 127 (nft)
// of admin text and may look like anything, "IN=" included.

var (
	keySRC  = []byte("SRC=")
	keyIN   = []byte("IN=")
	keyOUT  = []byte("OUT=")
	keyF    = []byte("f")
	keyW    = []byte("w")
	keyKern = []byte("kernel:")
)

// Parse fills h from one log line (no trailing newline). It returns nil
// for a hit, ErrNotFirewall (cheap, no allocation) for an unrelated line,
// a *LimitNotice for ipfw "limit N reached", and a *MalformedError naming
// the reason for a firewall line it cannot trust.
//
// On a hit, every field of h is set from the line; Prefix, In, Out and
// Action reuse h's previous strings when the text is the same, and the
// first 16 distinct prefixes are kept for later hits, so a caller that
// passes the same Hit for every line parses repeated hits, and hits that
// alternate between a few rules' prefixes, without allocating. On an
// error the contents of h are unspecified.
func Parse(line []byte, h *Hit) error {
	if n := len(line); n > 0 && line[n-1] == '\r' {
		line = line[:n-1] // CRLF files
	}
	if IndexSRC(line) < 0 {
		if IndexIPFW(line) < 0 {
			return ErrNotFirewall
		}
		return parseIPFW(line, h)
	}
	// The kernel's IN= is the last one followed by one token and " OUT="
	// (findAnchor). Nearly always that is also the first, and the fields
	// after it say so: a later " OUT=" would be a second OUT= token,
	// which the field loop refuses, unless it hid in a skipped group. So
	// parse from the first, and look for the last only when that fails.
	first := firstAnchor(line)
	var err error
	if first >= 0 {
		groupOUT := false
		if err = parseNetfilter(line, first, h, &groupOUT); err == nil && !groupOUT {
			return nil
		}
	}
	anchor := findAnchor(line)
	if anchor >= 0 && anchor == first {
		return err
	}
	if anchor < 0 {
		anchor = pveAnchor(line)
	}
	if anchor < 0 {
		// "SRC=" without the kernel's "IN=... OUT=" pair: some other
		// program's text, or the tail of a record broken over lines.
		return ErrNotFirewall
	}
	var groupOUT bool
	return parseNetfilter(line, anchor, h, &groupOUT)
}

// firstAnchor returns the offset of the first "IN=" that findAnchor
// considers and that is followed by one token and " OUT=", or -1. It finds
// each "IN=" by its '=', which the framing and most prefixes do not hold.
func firstAnchor(s []byte) int {
	for off := 0; off < len(s); {
		i := bytes.IndexByte(s[off:], '=')
		if i < 0 {
			break
		}
		i += off
		if i-off < 2 || s[i-2] != 'I' || s[i-1] != 'N' {
			off = i + 1
			continue
		}
		i -= 2 // the "IN=", at or after off
		j := nextSpace(s, i+3)
		if len(s)-j >= 5 && s[j+1] == 'O' && s[j+2] == 'U' && s[j+3] == 'T' && s[j+4] == '=' {
			return i
		}
		off = j
	}
	return -1
}

// findAnchor returns the offset of the kernel's "IN=", the last "IN="
// that is followed by one token and " OUT=". Nothing the kernel prints
// after it matches that pattern (PHYSIN= is followed by PHYSOUT=, an ICMP
// error's inner packet has no interfaces), so a prefix that contains
// "IN=x OUT=y" cannot move the anchor.
func findAnchor(s []byte) int {
	best := -1
	for off := 0; off < len(s); {
		i := bytes.Index(s[off:], keyIN)
		if i < 0 {
			break
		}
		i += off
		j := nextSpace(s, i+3)
		if len(s)-j >= 5 && s[j+1] == 'O' && s[j+2] == 'U' && s[j+3] == 'T' && s[j+4] == '=' {
			best = i
		}
		off = j
	}
	return best
}

func malformed(k Kind, reason string) error { return &MalformedError{Kind: k, Reason: reason} }

// Field keys. Header keys may appear once before PROTO=, transport keys
// once after it; LEN, ID and SEQ legitimately appear in both sections.
const (
	fIN = iota
	fOUT
	fPHYSIN
	fPHYSOUT
	fMAC
	fMACSRC
	fMACDST
	fMACPROTO
	fVPROTO
	fVID
	fSRC
	fDST
	fLEN
	fTOS
	fPREC
	fTTL
	fID
	fTC
	fHOPLIMIT
	fFLOWLBL
	fPROTO
	fSPT
	fDPT
	fSEQ
	fACK
	fWINDOW
	fRES
	fURGP
	fTYPE
	fCODE
	fPARAMETER
	fGATEWAY
	fMTU
	fSPI
	fUID
	fGID
	fMARK
	fUnknown
	// bare words, for the duplicate check
	bCE
	bDF
	bMF
	bFRAG
	bINCOMPLETE
	bOPT
)

func fieldKey(k []byte) int {
	switch string(k) {
	case "IN":
		return fIN
	case "OUT":
		return fOUT
	case "PHYSIN":
		return fPHYSIN
	case "PHYSOUT":
		return fPHYSOUT
	case "MAC":
		return fMAC
	case "MACSRC":
		return fMACSRC
	case "MACDST":
		return fMACDST
	case "MACPROTO":
		return fMACPROTO
	case "VPROTO":
		return fVPROTO
	case "VID":
		return fVID
	case "SRC":
		return fSRC
	case "DST":
		return fDST
	case "LEN":
		return fLEN
	case "TOS":
		return fTOS
	case "PREC":
		return fPREC
	case "TTL":
		return fTTL
	case "ID":
		return fID
	case "TC":
		return fTC
	case "HOPLIMIT":
		return fHOPLIMIT
	case "FLOWLBL":
		return fFLOWLBL
	case "PROTO":
		return fPROTO
	case "SPT":
		return fSPT
	case "DPT":
		return fDPT
	case "SEQ":
		return fSEQ
	case "ACK":
		return fACK
	case "WINDOW":
		return fWINDOW
	case "RES":
		return fRES
	case "URGP":
		return fURGP
	case "TYPE":
		return fTYPE
	case "CODE":
		return fCODE
	case "PARAMETER":
		return fPARAMETER
	case "GATEWAY":
		return fGATEWAY
	case "MTU":
		return fMTU
	case "SPI":
		return fSPI
	case "UID":
		return fUID
	case "GID":
		return fGID
	case "MARK":
		return fMARK
	}
	return fUnknown
}

// headerOnly and transportOnly say in which section a key may appear.
const (
	headerOnly = 1<<fIN | 1<<fOUT | 1<<fPHYSIN | 1<<fPHYSOUT | 1<<fMAC | 1<<fMACSRC |
		1<<fMACDST | 1<<fMACPROTO | 1<<fVPROTO | 1<<fVID | 1<<fSRC | 1<<fDST | 1<<fTOS |
		1<<fPREC | 1<<fTTL | 1<<fTC | 1<<fHOPLIMIT | 1<<fFLOWLBL | 1<<fPROTO
	transportOnly = 1<<fSPT | 1<<fDPT | 1<<fACK | 1<<fWINDOW | 1<<fRES | 1<<fURGP |
		1<<fTYPE | 1<<fCODE | 1<<fPARAMETER | 1<<fGATEWAY | 1<<fMTU | 1<<fSPI |
		1<<fUID | 1<<fGID | 1<<fMARK
)

// sectionBad holds the keys refused in each section.
var sectionBad = [2]uint64{transportOnly, headerOnly}

var keyNames = [...]string{
	fIN: "IN", fOUT: "OUT", fPHYSIN: "PHYSIN", fPHYSOUT: "PHYSOUT", fMAC: "MAC",
	fMACSRC: "MACSRC", fMACDST: "MACDST", fMACPROTO: "MACPROTO", fVPROTO: "VPROTO",
	fVID: "VID", fSRC: "SRC", fDST: "DST", fLEN: "LEN", fTOS: "TOS", fPREC: "PREC",
	fTTL: "TTL", fID: "ID", fTC: "TC", fHOPLIMIT: "HOPLIMIT", fFLOWLBL: "FLOWLBL",
	fPROTO: "PROTO", fSPT: "SPT", fDPT: "DPT", fSEQ: "SEQ", fACK: "ACK",
	fWINDOW: "WINDOW", fRES: "RES", fURGP: "URGP", fTYPE: "TYPE", fCODE: "CODE",
	fPARAMETER: "PARAMETER", fGATEWAY: "GATEWAY", fMTU: "MTU", fSPI: "SPI",
	fUID: "UID", fGID: "GID", fMARK: "MARK", fUnknown: "?",
	bCE: "CE", bDF: "DF", bMF: "MF", bFRAG: "FRAG", bINCOMPLETE: "INCOMPLETE", bOPT: "OPT",
}

// parseNetfilter reads the line with the kernel's fields from anchor on.
// It sets *groupOUT when it skips a bracketed group holding "OUT=", where
// a later anchor could hide.
func parseNetfilter(line []byte, anchor int, h *Hit, groupOUT *bool) error {
	oldPrefix, oldIn, oldOut := h.Prefix, h.In, h.Out
	*h = Hit{Kind: Netfilter}
	f, reason := parseFrame(line, h)
	if reason != "" {
		return malformed(Netfilter, reason)
	}
	if f.facility != facUnknown && f.facility != facKern {
		return malformed(Netfilter, "the framing gives a facility other than kern")
	}
	start := len(line) - len(f.msg)
	if anchor < start {
		return malformed(Netfilter, "IN= inside the syslog header")
	}
	prefix := bytes.TrimSpace(line[start:anchor])
	if bytes.Contains(prefix, keyKern) {
		return malformed(Netfilter, "unrecognised header before the kernel tag")
	}
	// /dev/kmsg escapes bytes below ' ', at or above 0x7f and '\' as
	// \xNN, and readers of it (rsyslog's imkmsg, journald) pass that on.
	if bytes.IndexByte(prefix, '\\') >= 0 {
		h.Prefix = string(unescapeKmsg(prefix))
	} else if string(prefix) == oldPrefix {
		h.Prefix = oldPrefix
	} else {
		h.Prefix = internPrefix(prefix)
	}

	st := fieldReader{h: h}
	err := st.read(line[anchor:])
	*groupOUT = st.groupOUT
	if err != nil {
		return err
	}
	seen, src, dst := &st.seen, st.src, st.dst
	switch {
	case seen[0]&(1<<fSRC) == 0 || seen[0]&(1<<fDST) == 0:
		return malformed(Netfilter, "no SRC= or DST=")
	case src.Is4() != dst.Is4():
		return malformed(Netfilter, "SRC= and DST= of different families")
	case seen[0]&(1<<fLEN) == 0:
		return malformed(Netfilter, "no LEN=")
	case src.Is4() && seen[0]&(1<<fTTL) == 0:
		return malformed(Netfilter, "IPv4 without TTL=")
	case src.Is6() && seen[0]&(1<<fHOPLIMIT) == 0:
		return malformed(Netfilter, "IPv6 without HOPLIMIT=")
	case seen[0]&(1<<fPROTO) == 0:
		return malformed(Netfilter, "no PROTO=")
	case h.Proto == ProtoICMP && !src.Is4(), h.Proto == ProtoICMPv6 && !src.Is6():
		return malformed(Netfilter, "ICMP version does not match the address family")
	}
	noTransport := st.frag || h.Incomplete
	switch h.Proto {
	case ProtoTCP, ProtoUDP:
		if st.sawPorts != 2 && !noTransport {
			return malformed(Netfilter, "no SPT= and DPT=")
		}
		if st.frag && st.sawPorts != 0 {
			return malformed(Netfilter, "ports on a non-first fragment")
		}
	case ProtoICMP, ProtoICMPv6:
		if seen[1]&(1<<fTYPE|1<<fCODE) != 1<<fTYPE|1<<fCODE && !noTransport {
			return malformed(Netfilter, "no ICMP TYPE= and CODE=")
		}
	}
	h.Fragment = st.frag
	h.Src, h.Dst = src, dst
	h.In = reuse(oldIn, st.in)
	h.Out = reuse(oldOut, st.out)
	return nil
}

// fieldReader is the state of reading the kernel's fields of one line.
type fieldReader struct {
	h        *Hit
	groupOUT bool      // an "OUT=" inside a skipped group
	seen     [2]uint64 // keys and bare words seen, per section
	sec      int       // 0 before PROTO=, 1 from it on
	src, dst netip.Addr
	in, out  []byte
	frag     bool
	udplite  bool
	sawPorts int
}

// read reads the fields in s, from the kernel's IN= to the end of the
// line: the usual line with readCommon, any other with readTokens.
func (st *fieldReader) read(s []byte) error {
	if st.readCommon(s) {
		return nil
	}
	return st.readTokens(s)
}

// readTokens reads s token by token. Most tokens are a short KEY=, and
// most keys are the one the kernel prints after the previous key: the
// next eight bytes, read as one word, are compared with that key first
// (nextKey). Other tokens go to other, which handles them in full or
// finds their key.
func (st *fieldReader) readTokens(s []byte) error {
	prev := uint(fUnknown) // the last key read, for nextKey
	for i := 0; i < len(s); {
		w := word8(s, i)
		var k, vs int
		if p := &nextKey[prev&63]; w&p.mask == p.word {
			k, vs = int(p.k), i+int(p.n)
		} else {
			var err error
			if i, k, vs, err = st.other(s, i, w); err != nil {
				return err
			}
			if k < 0 {
				continue
			}
		}
		sec := st.sec & 1
		if (sectionBad[sec]|st.seen[sec])&(1<<k) != 0 {
			return keyError(k, sec)
		}
		st.seen[sec] |= 1 << k
		e, ok := st.value(s, k, vs)
		if !ok {
			e = nextSpace(s, vs)
			return malformed(Netfilter, "bad "+keyNames[k]+"= value "+quoteShort(s[vs:e]))
		}
		i = e + 1 // past the space, or past the end
		prev = uint(k)
	}
	return nil
}

// keyError says why key k may not appear in section sec.
func keyError(k, sec int) error {
	if sec == 0 && transportOnly&(1<<k) != 0 {
		return malformed(Netfilter, keyNames[k]+"= before PROTO=")
	}
	if sec == 1 && headerOnly&(1<<k) != 0 {
		return malformed(Netfilter, keyNames[k]+"= after PROTO=")
	}
	return malformed(Netfilter, "duplicate "+keyNames[k]+"=")
}

// value reads the value of key k at s[vs:], up to the next space, into
// st; e is that space (or the end of s). On !ok the caller reports the
// value as bad.
func (st *fieldReader) value(s []byte, k, vs int) (e int, ok bool) {
	h := st.h
	switch k {
	case fIN, fOUT, fPHYSIN, fPHYSOUT:
		e = nextSpace(s, vs)
		val := s[vs:e]
		ok = len(val) == 0 || validIfname(val)
		if k == fIN {
			st.in = val
		} else if k == fOUT {
			st.out = val
		}
		return e, ok
	case fSRC:
		if st.src, e, ok = ip4At(s, vs); !ok {
			e = nextSpace(s, vs)
			st.src, ok = parseAddr(s[vs:e])
		}
		return e, ok
	case fDST:
		if st.dst, e, ok = ip4At(s, vs); !ok {
			e = nextSpace(s, vs)
			st.dst, ok = parseAddr(s[vs:e])
		}
		return e, ok
	case fGATEWAY:
		e = nextSpace(s, vs)
		_, ok = parseAddr(s[vs:e])
		return e, ok
	case fLEN, fTTL, fID, fTC, fHOPLIMIT, fFLOWLBL, fSEQ, fACK, fWINDOW, fURGP,
		fPARAMETER, fMTU, fUID, fGID, fVID:
		_, e, ok = decimalAt(s, vs, 10, 1<<63)
		return e, ok
	case fTOS, fPREC, fRES, fMACPROTO, fVPROTO, fMARK, fSPI:
		e = nextSpace(s, vs)
		return e, isHex(s[vs:e]) && e-vs <= 10
	case fPROTO:
		e = nextSpace(s, vs)
		val := s[vs:e]
		st.sec = 1
		h.Proto, ok = protoOf(val)
		st.udplite = string(val) == "UDPLITE"
		return e, ok
	case fSPT, fDPT:
		var v uint64
		v, e, ok = decimalAt(s, vs, 20, 65535)
		st.sawPorts++
		switch {
		case st.udplite:
			// ports logged, but not a protocol a knock uses
		case h.Proto != ProtoTCP && h.Proto != ProtoUDP:
			ok = false
		case k == fSPT:
			h.SrcPort = uint16(v)
		default:
			h.DstPort = uint16(v)
		}
		return e, ok
	case fTYPE, fCODE:
		var v uint64
		v, e, ok = decimalAt(s, vs, 20, 255)
		if k == fTYPE {
			h.ICMPType = uint8(v)
		} else {
			h.ICMPCode = uint8(v)
		}
		return e, ok && (h.Proto == ProtoICMP || h.Proto == ProtoICMPv6)
	}
	// fMAC, fMACSRC, fMACDST: not used; vendor and sanitised forms vary
	return nextSpace(s, vs), true
}

// other handles the token at s[i:] that is not the predicted key; w is
// its first eight bytes. It skips a space, a bracketed group or a bare
// word, or a key it does not know, and returns the next index and k = -1;
// for a known key it returns k and the index vs of its value.
func (st *fieldReader) other(s []byte, i int, w uint64) (next, k, vs int, err error) {
	h := st.h
	if s[i] == ' ' {
		return i + 1, -1, 0, nil
	}
	switch s[i] {
	case '[':
		// an ICMP error's inner packet, or "INCOMPLETE [N bytes]"
		if st.sec == 0 {
			return 0, 0, 0, malformed(Netfilter, "unexpected [ before PROTO=")
		}
		end := groupEnd(s, i)
		if end < 0 {
			return 0, 0, 0, malformed(Netfilter, "unterminated [")
		}
		if bytes.Contains(s[i:end], keyOUT) {
			st.groupOUT = true
		}
		return end, -1, 0, nil
	case '(', ')', ']':
		return 0, 0, 0, malformed(Netfilter, "unexpected "+string(s[i]))
	}
	// the '=' and the space in the first eight bytes
	weq, wsp := firstByte(w, '='*lows), firstByte(w, ' '*lows)
	if weq < wsp && weq > 0 {
		if k = keyOf(w&(1<<(8*weq)-1), weq); k >= 0 {
			return i, k, i + weq + 1, nil
		}
	}
	e := i + wsp
	if wsp == 8 {
		e = nextSpace(s, i)
	}
	tok := s[i:e]
	eq := -1
	if weq < wsp {
		eq = weq
	} else if wsp == 8 {
		eq = bytes.IndexByte(tok, '=')
	}
	if eq >= 0 {
		// KEY=VALUE
		key := tok[:eq]
		if k = fieldKey(key); k == fUnknown {
			// A field this parser does not know (a newer kernel, a
			// vendor patch): tolerated and ignored, never used.
			if !isUpperKey(key) {
				return 0, 0, 0, malformed(Netfilter, "bad key "+quoteShort(key))
			}
			return e + 1, -1, 0, nil
		}
		return i, k, i + eq + 1, nil
	}
	// a bare word
	next = e + 1 // past the space, or past the end
	sec := st.sec & 1
	if sec == 1 && h.Proto == ProtoTCP {
		if fl := tcpFlag(tok); fl != 0 {
			if h.Flags&fl != 0 {
				return 0, 0, 0, malformed(Netfilter, "duplicate TCP flag "+string(tok))
			}
			h.Flags |= fl
			return next, -1, 0, nil
		}
	}
	b := -1
	switch {
	case string(tok) == "OPT":
		b = bOPT
		for next < len(s) && s[next] == ' ' {
			next++
		}
		if next >= len(s) || s[next] != '(' {
			return 0, 0, 0, malformed(Netfilter, "OPT without (")
		}
		end := groupEnd(s, next)
		if end < 0 {
			return 0, 0, 0, malformed(Netfilter, "unterminated OPT (")
		}
		if bytes.Contains(s[next:end], keyOUT) {
			st.groupOUT = true
		}
		next = end
		// IPv6 with old kernels: one OPT ( ) per extension header
		if sec == 0 {
			return next, -1, 0, nil
		}
	case string(tok) == "INCOMPLETE":
		b = bINCOMPLETE
		h.Incomplete = true
	case sec == 0 && string(tok) == "CE":
		b = bCE
	case sec == 0 && string(tok) == "DF":
		b = bDF
	case sec == 0 && string(tok) == "MF":
		b = bMF
	case sec == 0 && len(tok) > 5 && string(tok[:5]) == "FRAG:":
		b = bFRAG
		v, ok := atou(tok[5:], 65535)
		if !ok {
			return 0, 0, 0, malformed(Netfilter, "bad FRAG:")
		}
		st.frag = v != 0
	case sec == 0 && string(tok) == "ARP":
		return 0, 0, 0, malformed(Netfilter, "an ARP packet: no IP addresses or ports")
	case sec == 0 && len(tok) > 3 && string(tok[:3]) == "ID:":
		// IPv6 fragment identification
		if !isHex(tok[3:]) {
			return 0, 0, 0, malformed(Netfilter, "bad ID:")
		}
		return next, -1, 0, nil
	default:
		return 0, 0, 0, malformed(Netfilter, "unexpected word "+quoteShort(tok))
	}
	if st.seen[sec]&(1<<b) != 0 {
		return 0, 0, 0, malformed(Netfilter, "duplicate "+keyNames[b])
	}
	st.seen[sec] |= 1 << b
	return next, -1, 0, nil
}

// internedPrefixes holds the first maxInterned log prefixes seen (copy on
// write), so lines that alternate between a few rules' prefixes (ufw's
// BLOCK, ALLOW and AUDIT, a knock rule among them) find their string
// here instead of allocating one each time the prefix changes. It only
// grows, and only to maxInterned short strings: prefixes seen later, or
// from a log that invents a new one per line, are allocated as before.
var internedPrefixes atomic.Pointer[[]string]

const maxInterned = 16

func internPrefix(b []byte) string {
	p := internedPrefixes.Load()
	if p != nil {
		for _, s := range *p {
			if s == string(b) {
				return s
			}
		}
	}
	s := string(b)
	if n := 0; len(s) <= 128 {
		if p != nil {
			n = len(*p)
		}
		if n < maxInterned {
			q := make([]string, n+1)
			if p != nil {
				copy(q, *p)
			}
			q[n] = s
			internedPrefixes.CompareAndSwap(p, &q) // a lost race only skips the add
		}
	}
	return s
}

// reuse returns old when b spells it, avoiding a new string.
func reuse(old string, b []byte) string {
	if string(b) == old {
		return old
	}
	switch string(b) {
	case "":
		return ""
	case "lo":
		return "lo"
	case "eth0":
		return "eth0"
	}
	return string(b)
}

// groupEnd returns the index just past the "(...)" or "[...]" group that
// opens at s[i], or -1. Square brackets nest (an ICMP error's inner packet
// may hold "INCOMPLETE [N bytes]"); parentheses hold hex or nothing.
func groupEnd(s []byte, i int) int {
	open := s[i]
	if open == '(' {
		e := bytes.IndexByte(s[i:], ')')
		if e < 0 {
			return -1
		}
		return i + e + 1
	}
	depth := 0
	for k := i; k < len(s); k++ {
		switch s[k] {
		case '[':
			depth++
		case ']':
			depth--
			if depth == 0 {
				return k + 1
			}
		}
	}
	return -1
}

func tcpFlag(w []byte) Flags {
	switch string(w) {
	case "FIN":
		return FIN
	case "SYN":
		return SYN
	case "RST":
		return RST
	case "PSH":
		return PSH
	case "ACK":
		return ACK
	case "URG":
		return URG
	case "ECE":
		return ECE
	case "CWR":
		return CWR
	}
	return 0
}

func protoOf(v []byte) (Proto, bool) {
	switch string(v) {
	case "TCP":
		return ProtoTCP, true
	case "UDP":
		return ProtoUDP, true
	case "ICMP":
		return ProtoICMP, true
	case "ICMPv6":
		return ProtoICMPv6, true
	case "UDPLITE", "AH", "ESP":
		return ProtoOther, true
	}
	_, ok := atou(v, 255)
	return ProtoOther, ok
}

// validIfname accepts Linux interface names as they appear in logs: 1 to
// 15 bytes of letters, digits, '_' and '-', optionally followed by VLAN
// suffixes ".<digits>" (eth1.999, vmbr0.94).
func validIfname(b []byte) bool {
	if len(b) == 0 || len(b) > 15 {
		return false
	}
	dot := false
	for i, c := range b {
		switch {
		case c == '.':
			if i == 0 || i == len(b)-1 || b[i-1] == '.' {
				return false
			}
			dot = true
		case isDigit(c):
		case dot:
			return false
		case isLetter(c) || c == '_' || c == '-':
		default:
			return false
		}
	}
	return true
}

func isUpperKey(k []byte) bool {
	if len(k) == 0 || len(k) > 16 || !isLetter(k[0]) {
		return false
	}
	for _, c := range k {
		if !isLetter(c) && !isDigit(c) && c != '_' {
			return false
		}
	}
	return true
}

func quoteShort(b []byte) string {
	if len(b) > 32 {
		b = b[:32]
	}
	out := make([]byte, 0, len(b)+2)
	out = append(out, '"')
	for _, c := range b {
		if c < ' ' || c >= 0x7f || c == '"' || c == '\\' {
			out = append(out, '\\', 'x', "0123456789abcdef"[c>>4], "0123456789abcdef"[c&15])
			continue
		}
		out = append(out, c)
	}
	return string(append(out, '"'))
}

// unescapeKmsg undoes /dev/kmsg's \xNN escaping of bytes below ' ', at or
// above 0x7f, and of the backslash itself.
func unescapeKmsg(b []byte) []byte {
	out := make([]byte, 0, len(b))
	for i := 0; i < len(b); i++ {
		if b[i] == '\\' && i+3 < len(b) && b[i+1] == 'x' {
			hi, lo := unhex(b[i+2]), unhex(b[i+3])
			if hi >= 0 && lo >= 0 {
				out = append(out, byte(hi<<4|lo))
				i += 3
				continue
			}
		}
		out = append(out, b[i])
	}
	return out
}

// pveAnchor finds the fields of a pvefw-logger line, which may lack IN=
// or OUT=: the first token after its header that starts with either.
func pveAnchor(line []byte) int {
	var scratch Hit
	msg, ok := pveHeader(line, &scratch)
	if !ok {
		return -1
	}
	start := len(line) - len(msg)
	for i := 0; i < len(msg); i++ {
		if i > 0 && msg[i-1] != ' ' {
			continue
		}
		if bytes.HasPrefix(msg[i:], keyIN) || bytes.HasPrefix(msg[i:], []byte("OUT=")) {
			return start + i
		}
	}
	return -1
}

// IndexSRC returns the index of the first "SRC=" in b, or -1. Every
// netfilter line holds one; a line without it or "ipfw: " is not firewall
// output (Parse returns ErrNotFirewall), so a reader may skip such lines
// without calling Parse.
//
// It looks for the 'R' and checks the byte before and the two after:
// bytes.Index, led by 'S', stops every few bytes in log text (SHA256,
// Started, Session, SYN), and even '=' (URLs, key=value daemons, every
// other firewall field) is several times as common as an upper-case 'R'.
// On the 1M-line mix of bench/ this is about 3x faster than a search led
// by '=' and 10x faster than bytes.Index.
func IndexSRC(b []byte) int {
	off := 0
	for {
		i := bytes.IndexByte(b[off:], 'R')
		if i < 0 {
			return -1
		}
		i += off
		if i >= 1 && i+2 < len(b) && b[i-1] == 'S' && b[i+1] == 'C' && b[i+2] == '=' {
			return i - 1
		}
		off = i + 1
	}
}

// IndexIPFW returns the index of the first "ipfw: " in b, or -1. It looks
// for each 'f' with one byte search and checks the bytes around it.
// bytes.Index(b, "fw: ") does the same with more work per 'f'. Leading
// with 'w' is faster where 'w' is rarer (the 1M mix of bench/: 15.7
// against 19.3 ns per unrelated line) but slower on text rich in "with"
// and "window" (logparse's own mix: 28.0 against 18.2); per line 'f' is
// the steadier (bytes.Index: 25.5 and 23.1). On a long buffer (a reader's
// whole chunk) with no match in its first KiB, the next 4 KiB are
// counted and the rarer of 'f' and 'w' leads the rest of the search:
// about 9% less CPU for knockdaemon parse on the 1M mix.
func IndexIPFW(b []byte) int {
	lead, back := byte('f'), 2 // the lead byte, and its offset in "ipfw: "
	sampled := false
	for off := 0; ; {
		if !sampled && off >= 1<<10 && len(b)-off >= 8<<10 {
			sampled = true
			sample := b[off : off+4<<10]
			if bytes.Count(sample, keyW) < bytes.Count(sample, keyF) {
				lead, back = 'w', 3
			}
		}
		i := bytes.IndexByte(b[off:], lead)
		if i < 0 {
			return -1
		}
		i += off
		if s := i - back; s >= 0 && s+6 <= len(b) && string(b[s:s+6]) == "ipfw: " {
			return s
		}
		off = i + 1
	}
}
