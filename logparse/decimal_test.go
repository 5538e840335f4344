package logparse

import (
	"math/rand/v2"
	"strconv"
	"testing"
)

// decimalRef is decimalAt spelled the obvious way: the token up to the
// next space, all digits, at most maxLen of them, at most max.
func decimalRef(s []byte, i, maxLen int, max uint64) (uint64, int, bool) {
	e := nextSpace(s, i)
	tok := s[i:e]
	if len(tok) == 0 || len(tok) > maxLen || !isDigits(tok) {
		return 0, e, false
	}
	v, err := strconv.ParseUint(string(tok), 10, 64)
	if err != nil || v > max {
		return 0, e, false
	}
	return v, e, true
}

func TestDecimalAt(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	alphabet := "0123456789 0123456789 x/:\x00\xb0\xb9"
	for n := range 200000 {
		b := randText(r, alphabet, 14)
		i := 0
		if len(b) > 0 {
			i = r.IntN(len(b))
		}
		maxLen := []int{1, 3, 5, 10, 20}[r.IntN(5)]
		max := []uint64{255, 65535, 1 << 63}[r.IntN(3)]
		v, e, ok := decimalAt(b, i, maxLen, max)
		wv, we, wok := decimalRef(b, i, maxLen, max)
		if ok != wok || (ok && (v != wv || e != we)) {
			t.Fatalf("case %d: decimalAt(%q, %d, %d, %d) = %d %d %v, want %d %d %v", n, b, i, maxLen, max, v, e, ok, wv, we, wok)
		}
	}
}

func FuzzDecimalAt(f *testing.F) {
	f.Add([]byte("64240 RES"), 0, 10)
	f.Add([]byte("0000000000000000000000080"), 0, 20)
	f.Fuzz(func(t *testing.T, b []byte, i, maxLen int) {
		if i < 0 || i > len(b) || maxLen < 1 || maxLen > 20 {
			return
		}
		for _, max := range []uint64{255, 65535, 1 << 63} {
			v, e, ok := decimalAt(b, i, maxLen, max)
			wv, we, wok := decimalRef(b, i, maxLen, max)
			if ok != wok || (ok && (v != wv || e != we)) {
				t.Fatalf("decimalAt(%q, %d, %d, %d) = %d %d %v, want %d %d %v", b, i, maxLen, max, v, e, ok, wv, we, wok)
			}
		}
	})
}
