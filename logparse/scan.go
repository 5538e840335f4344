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
