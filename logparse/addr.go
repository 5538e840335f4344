package logparse

import "net/netip"

// parseAddr reads an IPv4 address in dotted decimal or an IPv6 address.
// The kernel prints IPv6 fully expanded (%pI6: eight groups of four hex
// digits), which is parsed here without allocating; other IPv6 spellings
// (compressed, embedded IPv4) go through netip.ParseAddr. Zones are
// refused: a log line never carries one.
func parseAddr(b []byte) (netip.Addr, bool) {
	// IPv4 has a dot in its first four bytes, IPv6 a colon in its first five
	for i := 0; i < len(b) && i < 5; i++ {
		switch b[i] {
		case '.':
			return parseIP4(b)
		case ':':
			return parseIP6(b)
		}
	}
	return netip.Addr{}, false
}

func parseIP4(b []byte) (netip.Addr, bool) {
	var a [4]byte
	k, v, digits := 0, 0, 0
	for _, c := range b {
		if c == '.' {
			if digits == 0 || k == 3 {
				return netip.Addr{}, false
			}
			a[k] = byte(v)
			k, v, digits = k+1, 0, 0
			continue
		}
		d := int(c) - '0'
		// at most three digits, no leading zero, at most 255
		if d < 0 || d > 9 || digits == 3 || (digits == 1 && v == 0) {
			return netip.Addr{}, false
		}
		v = v*10 + d
		digits++
		if v > 255 {
			return netip.Addr{}, false
		}
	}
	if k != 3 || digits == 0 {
		return netip.Addr{}, false
	}
	a[3] = byte(v)
	return netip.AddrFrom4(a), true
}

func parseIP6(b []byte) (netip.Addr, bool) {
	if len(b) == 39 {
		if a, ok := ip6Full(b); ok {
			return a, true
		}
	}
	var a [16]byte
	i := 0
	for k := 0; k < 8; k++ {
		if k > 0 {
			if i >= len(b) || b[i] != ':' {
				return parseIP6Slow(b)
			}
			i++
		}
		start, v := i, 0
		for i < len(b) && i-start < 4 {
			d := unhex(b[i])
			if d < 0 {
				break
			}
			v = v<<4 | d
			i++
		}
		if i == start {
			return parseIP6Slow(b)
		}
		a[2*k], a[2*k+1] = byte(v>>8), byte(v)
	}
	if i != len(b) {
		return parseIP6Slow(b)
	}
	return netip.AddrFrom16(a), true
}

// ip6Full reads the kernel's form of an IPv6 address (%pI6): 39 bytes,
// eight groups of four hex digits, read at their places.
func ip6Full(b []byte) (netip.Addr, bool) {
	var a [16]byte
	if len(b) != 39 {
		return netip.Addr{}, false
	}
	var bad byte
	for k := range 8 {
		g := b[5*k : 5*k+4]
		d0, d1, d2, d3 := hexVal[g[0]], hexVal[g[1]], hexVal[g[2]], hexVal[g[3]]
		bad |= d0 | d1 | d2 | d3
		if k < 7 && b[5*k+4] != ':' {
			bad = 0xff
		}
		a[2*k], a[2*k+1] = d0<<4|d1, d2<<4|d3
	}
	return netip.AddrFrom16(a), bad <= 15
}

func parseIP6Slow(b []byte) (netip.Addr, bool) {
	if len(b) > 45 {
		return netip.Addr{}, false
	}
	for _, c := range b {
		if c == '%' {
			return netip.Addr{}, false
		}
	}
	a, err := netip.ParseAddr(string(b))
	if err != nil || !a.Is6() {
		return netip.Addr{}, false
	}
	return a, true
}

func unhex(c byte) int {
	if v := hexVal[c]; v <= 15 {
		return int(v)
	}
	return -1
}

// hexVal is the value of a hex digit, 0xff for any other byte.
var hexVal = func() (t [256]byte) {
	for c := range t {
		switch {
		case c >= '0' && c <= '9':
			t[c] = byte(c - '0')
		case c >= 'a' && c <= 'f':
			t[c] = byte(c-'a') + 10
		case c >= 'A' && c <= 'F':
			t[c] = byte(c-'A') + 10
		default:
			t[c] = 0xff
		}
	}
	return t
}()

// atou parses a decimal number of at most max; ok is false for an empty,
// non-decimal or too large value.
func atou(b []byte, max uint64) (uint64, bool) {
	if len(b) == 0 || len(b) > 20 {
		return 0, false
	}
	var v uint64
	for _, c := range b {
		if c < '0' || c > '9' || v > (1<<64-1-9)/10 { // the last: v*10 could wrap
			return 0, false
		}
		v = v*10 + uint64(c-'0')
		if v > max {
			return 0, false
		}
	}
	return v, true
}

func isDigits(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	for _, c := range b {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// isHex accepts hex digits with an optional 0x (TOS=0x00, MARK=0x1a; some
// vendor kernels print TOS=00 or MARK=1a0000).
func isHex(b []byte) bool {
	if len(b) > 2 && b[0] == '0' && (b[1] == 'x' || b[1] == 'X') {
		b = b[2:]
	}
	if len(b) == 0 {
		return false
	}
	for _, c := range b {
		if unhex(c) < 0 {
			return false
		}
	}
	return true
}

// ip4At reads a dotted-quad IPv4 address at s[i:] that ends at a space or
// the end of s, as parseIP4 would, and returns where it ends. ok false
// means "not such an address here"; the caller then reads the token with
// parseAddr, which decides.
func ip4At(s []byte, i int) (netip.Addr, int, bool) {
	var a [4]byte
	for k := range 4 {
		// one to three digits, no leading zero, at most 255
		if i >= len(s) || s[i]-'0' > 9 {
			return netip.Addr{}, i, false
		}
		v := uint(s[i] - '0')
		i++
		if i < len(s) && s[i]-'0' <= 9 {
			if v == 0 {
				return netip.Addr{}, i, false
			}
			v = v*10 + uint(s[i]-'0')
			i++
			if i < len(s) && s[i]-'0' <= 9 {
				v = v*10 + uint(s[i]-'0')
				i++
				if v > 255 {
					return netip.Addr{}, i, false
				}
			}
		}
		a[k] = byte(v)
		if k < 3 {
			if i >= len(s) || s[i] != '.' {
				return netip.Addr{}, i, false
			}
			i++
		}
	}
	if i < len(s) && s[i] != ' ' {
		return netip.Addr{}, i, false
	}
	return netip.AddrFrom4(a), i, true
}
