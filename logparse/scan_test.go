package logparse

import (
	"bytes"
	"math/rand/v2"
	"testing"
)

func FuzzScan(f *testing.F) {
	f.Add([]byte("IN=eth0 OUT= MAC=02:00:5e:00:53:01 SRC=198.51.100.7"), 3)
	f.Add([]byte("                "), 0)
	f.Add([]byte("\xa0\x20\xbd=\x3d\xff"), 1)
	f.Fuzz(func(t *testing.T, s []byte, i int) {
		if i < 0 || i > len(s) {
			return
		}
		want := len(s)
		if k := bytes.IndexByte(s[i:], ' '); k >= 0 {
			want = i + k
		}
		if got := nextSpace(s, i); got != want {
			t.Fatalf("nextSpace(%q, %d) = %d, want %d", s, i, got, want)
		}
	})
}

// TestWord8 compares word8 with the bytes assembled one by one, zero past
// the end, for every start in and just past random slices.
func TestWord8(t *testing.T) {
	r := rand.New(rand.NewPCG(13, 14))
	for n := range 5000 {
		s := make([]byte, r.IntN(24))
		for k := range s {
			s[k] = byte(r.IntN(256))
		}
		for i := 0; i <= len(s)+9; i++ {
			var want uint64
			for k := 7; k >= 0; k-- {
				want <<= 8
				if i+k < len(s) {
					want |= uint64(s[i+k])
				}
			}
			if got := word8(s, i); got != want {
				t.Fatalf("case %d: word8(%x, %d) = %#x, want %#x", n, s, i, got, want)
			}
		}
	}
}
