package logparse

import (
	"encoding/binary"
	"math/bits"
)

// Eight bytes at a time (SWAR): (x - 0x01..) &^ x & 0x80.. flags the
// lowest zero byte of x exactly (higher flags may be false), so the
// lowest flag of x = word ^ spaces is the first space.
const (
	lows  = 0x0101010101010101
	highs = 0x8080808080808080
)

// nextSpace returns the index of the first ' ' in s at or after i, or len(s).
func nextSpace(s []byte, i int) int {
	for ; i+8 <= len(s); i += 8 {
		x := binary.LittleEndian.Uint64(s[i:]) ^ (' ' * lows)
		if m := (x - lows) &^ x & highs; m != 0 {
			return i + bits.TrailingZeros64(m)>>3
		}
	}
	for ; i < len(s); i++ {
		if s[i] == ' ' {
			return i
		}
	}
	return len(s)
}

// word8 returns the eight bytes of s from i as a little-endian word,
// padded with zero bytes past the end of s.
func word8(s []byte, i int) uint64 {
	n := len(s)
	if i+8 <= n {
		return binary.LittleEndian.Uint64(s[i:])
	}
	if i >= n {
		return 0
	}
	if n >= 8 {
		// the last eight bytes, shifted down to start at i
		return binary.LittleEndian.Uint64(s[n-8:]) >> (8 * uint(i-(n-8)))
	}
	var b [8]byte
	copy(b[:], s[i:])
	return binary.LittleEndian.Uint64(b[:])
}

// firstByte returns the index of the first byte of w equal to the byte
// repeated in pat (c * lows), or 8. The padding of word8 is zero, which
// matches no byte searched for here.
func firstByte(w, pat uint64) int {
	x := w ^ pat
	return bits.TrailingZeros64((x-lows)&^x&highs) >> 3
}

// decimalAt reads the decimal number at s[i:] that ends at a space or the
// end of s: at most maxLen digits and at most max. end is where the digits
// stop; ok is false for no digits, too many, too large a value or a byte
// other than a digit before the space.
func decimalAt(s []byte, i, maxLen int, max uint64) (v uint64, end int, ok bool) {
	// Up to 19 digits cannot overflow: check the limit once at the end.
	j, lim := i, min(len(s), i+min(maxLen, 19))
	for j < lim {
		d := s[j] - '0'
		if d > 9 {
			break
		}
		v = v*10 + uint64(d)
		j++
	}
	if j == lim && maxLen > 19 && j < len(s) && s[j]-'0' <= 9 {
		return decimalLoop(s, i, maxLen, max) // 20 digits or more
	}
	if j == i || v > max || (j < len(s) && s[j] != ' ') {
		return 0, j, false
	}
	return v, j, true
}

// decimalLoop is decimalAt one digit at a time, for 20 digits or more.
func decimalLoop(s []byte, i, maxLen int, max uint64) (v uint64, end int, ok bool) {
	j := i
	for j < len(s) && j-i < maxLen {
		d := s[j] - '0'
		if d > 9 {
			break
		}
		if v > (1<<64-1-9)/10 { // v*10+d could wrap: too large for any max
			return 0, j, false
		}
		v = v*10 + uint64(d)
		if v > max {
			return 0, j, false
		}
		j++
	}
	if j == i || (j < len(s) && s[j] != ' ') {
		return 0, j, false
	}
	return v, j, true
}

// keyTab finds a field key of up to seven bytes by the bytes themselves,
// read as a little-endian integer: slot (key*keyMul)>>56 holds the key and
// its field number plus one (zero: empty). keyMul is chosen at start-up
// so that no two keys share a slot; keyOf falls back to "not here" (the
// caller then uses fieldKey) if none was found.
var (
	keyTab [256]struct {
		key  uint64
		k, n int8
	}
	keyMul uint64
)

func init() {
	var keys [fUnknown]uint64
	for k := range fUnknown {
		if n := keyNames[k]; len(n) <= 7 {
			var w uint64
			for j := len(n) - 1; j >= 0; j-- {
				w = w<<8 | uint64(n[j])
			}
			keys[k] = w
		}
	}
	m := uint64(0x9e3779b97f4a7c15)
	for try := 0; try < 1<<16; try, m = try+1, m+0x632be59bd9b4e01a {
		var used [256]bool
		ok := true
		for _, w := range keys {
			if w == 0 {
				continue
			}
			slot := (w * m) >> 56
			if used[slot] {
				ok = false
				break
			}
			used[slot] = true
		}
		if ok {
			for k, w := range keys {
				if w != 0 {
					e := &keyTab[(w*m)>>56]
					e.key, e.k, e.n = w, int8(k+1), int8(len(keyNames[k]))
				}
			}
			keyMul = m
			return
		}
	}
}

// keyOf returns the field number of the key of n bytes (one to seven)
// whose bytes are w, zero-padded, or -1 when it is not in keyTab. The
// length tells "LEN" from "LEN\x00".
func keyOf(w uint64, n int) int {
	if keyMul == 0 {
		return -1
	}
	e := &keyTab[(w*keyMul)>>56]
	if e.key != w || int(e.n) != n || e.k == 0 {
		return -1
	}
	return int(e.k) - 1
}

// nextKey is the key the kernel prints after a given one (nf_log_syslog's
// fixed order; bare words such as DF or SYN in between do not count), as
// the bytes "KEY=" to compare with the next word: one compare instead of
// finding the '=' and looking the key up. A line in another order only
// takes the longer way. nextKey[fUnknown] is the first key, IN=. An
// entry with no prediction matches no word (mask 0, word 1).
var nextKey [64]struct {
	word, mask uint64
	k, n       int8
}

func init() {
	for k := range nextKey {
		nextKey[k].word = 1
	}
	for _, p := range [][2]int{
		{fUnknown, fIN}, {fIN, fOUT}, {fOUT, fMAC}, {fPHYSIN, fPHYSOUT}, {fPHYSOUT, fMAC},
		{fMAC, fSRC}, {fMACSRC, fMACDST}, {fMACPROTO, fSRC}, {fVID, fMACPROTO},
		{fSRC, fDST}, {fDST, fLEN}, {fLEN, fTOS}, {fTOS, fPREC}, {fPREC, fTTL}, {fTTL, fID},
		{fID, fPROTO}, {fTC, fHOPLIMIT}, {fHOPLIMIT, fFLOWLBL}, {fFLOWLBL, fPROTO},
		{fPROTO, fSPT}, {fSPT, fDPT}, {fDPT, fWINDOW}, {fSEQ, fACK}, {fACK, fWINDOW},
		{fWINDOW, fRES}, {fRES, fURGP}, {fTYPE, fCODE}, {fUID, fGID},
	} {
		name := keyNames[p[1]] + "="
		if len(name) > 8 {
			continue
		}
		var w uint64
		for j := len(name) - 1; j >= 0; j-- {
			w = w<<8 | uint64(name[j])
		}
		e := &nextKey[p[0]]
		e.word, e.mask, e.k, e.n = w, 1<<(8*len(name))-1, int8(p[1]), int8(len(name))
		if len(name) == 8 {
			e.mask = ^uint64(0)
		}
	}
}
