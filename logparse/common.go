package logparse

import "net/netip"

// The usual line: nf_log_syslog's fields for a TCP or UDP packet with no
// IP or TCP options, no UID and no mark, in the kernel's order, one space
// apart. readCommon reads such a line as straight-line code: each key is
// compared with the word the kernel prints there, and each value read by
// the same reader as in fieldReader.value. It gives up (false) at the
// first byte that differs, without touching st, and fieldReader.read then
// reads the line with readTokens; for a line readCommon accepts, both
// give the same fields, the same seen keys and no error
// (TestReadCommonMatchesTokens).

// kword is "KEY=" (or "KEY " for a bare word) as a word to compare with
// the next bytes of the line.
type kword struct {
	w, mask uint64
	n       int
}

func mkword(s string) kword {
	var w uint64
	for j := len(s) - 1; j >= 0; j-- {
		w = w<<8 | uint64(s[j])
	}
	return kword{w: w, mask: 1<<(8*len(s)) - 1, n: len(s)}
}

// at reports whether s[i:] starts with k.
func (k *kword) at(s []byte, i int) bool { return word8(s, i)&k.mask == k.w }

var (
	kwIN, kwOUT, kwMAC, kwSRC, kwDST, kwLEN        = mkword("IN="), mkword("OUT="), mkword("MAC="), mkword("SRC="), mkword("DST="), mkword("LEN=")
	kwTOS, kwPREC, kwTTL, kwID, kwTC, kwHOPLIMIT   = mkword("TOS="), mkword("PREC="), mkword("TTL="), mkword("ID="), mkword("TC="), mkword("HOPLIMIT")
	kwFLOWLBL, kwPROTO, kwSPT, kwDPT, kwSEQ, kwACK = mkword("FLOWLBL="), mkword("PROTO="), mkword("SPT="), mkword("DPT="), mkword("SEQ="), mkword("ACK=")
	kwWINDOW, kwRES, kwURGP                        = mkword("WINDOW="), mkword("RES="), mkword("URGP=")
	kwTCP, kwUDP                                   = mkword("TCP "), mkword("UDP ")
	kwCE, kwDF, kwMF                               = mkword("CE "), mkword("DF "), mkword("MF ")
	kwFlags                                        = [...]kword{mkword("FIN "), mkword("SYN "), mkword("RST "), mkword("PSH "), mkword("ACK "), mkword("URG "), mkword("ECE "), mkword("CWR ")}
)

// readCommon reads s as the usual line into st, or returns false.
func (st *fieldReader) readCommon(s []byte) bool {
	var (
		seen0, seen1 uint64
		in, out      []byte
		src, dst     netip.Addr
		ok           bool
	)
	// IN=if OUT=if [MAC=...]
	if !kwIN.at(s, 0) {
		return false
	}
	e := nextSpace(s, 3)
	if in = s[3:e]; len(in) > 0 && !validIfname(in) {
		return false
	}
	i := e + 1
	if !kwOUT.at(s, i) {
		return false
	}
	e = nextSpace(s, i+4)
	if out = s[i+4 : e]; len(out) > 0 && !validIfname(out) {
		return false
	}
	i = e + 1
	seen0 = 1<<fIN | 1<<fOUT
	if kwMAC.at(s, i) {
		i = nextSpace(s, i+4) + 1
		seen0 |= 1 << fMAC
	}
	// SRC= DST= LEN=
	if !kwSRC.at(s, i) {
		return false
	}
	if src, e, ok = addrAt(s, i+4); !ok {
		return false
	}
	i = e + 1
	if !kwDST.at(s, i) {
		return false
	}
	if dst, e, ok = addrAt(s, i+4); !ok || src.Is4() != dst.Is4() {
		return false
	}
	i = e + 1
	if i, ok = decimalField(s, i, &kwLEN); !ok {
		return false
	}
	seen0 |= 1<<fSRC | 1<<fDST | 1<<fLEN
	if src.Is4() {
		// TOS= PREC= TTL= ID= [CE] [DF] [MF]
		if i, ok = hexField(s, i, &kwTOS); !ok {
			return false
		}
		if i, ok = hexField(s, i, &kwPREC); !ok {
			return false
		}
		if i, ok = decimalField(s, i, &kwTTL); !ok {
			return false
		}
		if i, ok = decimalField(s, i, &kwID); !ok {
			return false
		}
		seen0 |= 1<<fTOS | 1<<fPREC | 1<<fTTL | 1<<fID
		if kwCE.at(s, i) {
			i += 3
			seen0 |= 1 << bCE
		}
		if kwDF.at(s, i) {
			i += 3
			seen0 |= 1 << bDF
		}
		if kwMF.at(s, i) {
			i += 3
			seen0 |= 1 << bMF
		}
	} else {
		// TC= HOPLIMIT= FLOWLBL=
		if i, ok = decimalField(s, i, &kwTC); !ok {
			return false
		}
		if !kwHOPLIMIT.at(s, i) || i+8 >= len(s) || s[i+8] != '=' {
			return false
		}
		if _, e, ok = decimalAt(s, i+9, 10, 1<<63); !ok {
			return false
		}
		i = e + 1
		if i, ok = decimalField(s, i, &kwFLOWLBL); !ok {
			return false
		}
		seen0 |= 1<<fTC | 1<<fHOPLIMIT | 1<<fFLOWLBL
	}
	// PROTO=TCP|UDP SPT= DPT=
	if !kwPROTO.at(s, i) {
		return false
	}
	proto := ProtoTCP
	switch {
	case kwTCP.at(s, i+6):
	case kwUDP.at(s, i+6):
		proto = ProtoUDP
	default:
		return false
	}
	i += 10
	seen0 |= 1 << fPROTO
	var spt, dpt uint64
	if !kwSPT.at(s, i) {
		return false
	}
	if spt, e, ok = decimalAt(s, i+4, 20, 65535); !ok {
		return false
	}
	i = e + 1
	if !kwDPT.at(s, i) {
		return false
	}
	if dpt, e, ok = decimalAt(s, i+4, 20, 65535); !ok {
		return false
	}
	i = e + 1
	seen1 = 1<<fSPT | 1<<fDPT
	var flags Flags
	if proto == ProtoTCP {
		// [SEQ= ACK=] WINDOW= RES= flags URGP=
		if kwSEQ.at(s, i) {
			if i, ok = decimalField(s, i, &kwSEQ); !ok {
				return false
			}
			if i, ok = decimalField(s, i, &kwACK); !ok {
				return false
			}
			seen1 |= 1<<fSEQ | 1<<fACK
		}
		if i, ok = decimalField(s, i, &kwWINDOW); !ok {
			return false
		}
		if i, ok = hexField(s, i, &kwRES); !ok {
			return false
		}
	flag:
		for {
			w := word8(s, i) & 0xffffffff // the flags are three letters and a space
			for f := range kwFlags {
				if w == kwFlags[f].w {
					if flags&(1<<f) != 0 {
						return false
					}
					flags |= 1 << f
					i += 4
					continue flag
				}
			}
			break
		}
		if i, ok = decimalField(s, i, &kwURGP); !ok {
			return false
		}
		seen1 |= 1<<fWINDOW | 1<<fRES | 1<<fURGP
	} else {
		// LEN=
		if i, ok = decimalField(s, i, &kwLEN); !ok {
			return false
		}
		seen1 |= 1 << fLEN
	}
	for i < len(s) && s[i] == ' ' {
		i++
	}
	if i < len(s) {
		return false
	}
	h := st.h
	h.Proto, h.SrcPort, h.DstPort, h.Flags = proto, uint16(spt), uint16(dpt), flags
	st.seen = [2]uint64{seen0, seen1}
	st.sec, st.sawPorts = 1, 2
	st.src, st.dst, st.in, st.out = src, dst, in, out
	return true
}

// addrAt reads the address value at s[i:] as fieldReader.value does for
// SRC= and DST=.
func addrAt(s []byte, i int) (netip.Addr, int, bool) {
	// the kernel's IPv6 form, 39 bytes with a colon after four
	if e := i + 39; e <= len(s) && s[i+4] == ':' && (e == len(s) || s[e] == ' ') {
		if a, ok := ip6Full(s[i:e]); ok {
			return a, e, true
		}
	}
	if a, e, ok := ip4At(s, i); ok {
		return a, e, true
	}
	e := nextSpace(s, i)
	a, ok := parseAddr(s[i:e])
	return a, e, ok
}

// decimalField reads "KEY=" and a number of at most ten digits, as
// fieldReader.value does for such keys, and returns the index past the
// space after it.
func decimalField(s []byte, i int, k *kword) (int, bool) {
	if !k.at(s, i) {
		return i, false
	}
	// decimalAt(s, vs, 10, 1<<63): one to ten digits (never above the
	// maximum), then a space or the end
	vs := i + k.n
	j, lim := vs, min(len(s), vs+10)
	for j < lim && s[j]-'0' <= 9 {
		j++
	}
	return j + 1, j > vs && (j == len(s) || s[j] == ' ')
}

// hexField reads "KEY=" and a hex value of at most ten bytes, as
// fieldReader.value does for such keys, and returns the index past the
// space after it.
func hexField(s []byte, i int, k *kword) (int, bool) {
	if !k.at(s, i) {
		return i, false
	}
	vs := i + k.n
	// nearly always "0x" and two hex digits
	if w := word8(s, vs); w&0xffff == '0'|'x'<<8 && hexVal[byte(w>>16)]|hexVal[byte(w>>24)] <= 15 &&
		(byte(w>>32) == ' ' || vs+4 == len(s)) {
		return vs + 5, true
	}
	e := nextSpace(s, vs)
	return e + 1, isHex(s[vs:e]) && e-vs <= 10
}
