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

// TestKeyTab: the start-up search found a collision-free multiplier, and
// keyOf agrees with fieldKey on every key of up to seven bytes, and
// refuses them with another length or a byte changed.
func TestKeyTab(t *testing.T) {
	if keyMul == 0 {
		t.Fatal("no multiplier found for keyTab: every key takes the slow look-up")
	}
	word := func(s string) uint64 {
		var w uint64
		for j := len(s) - 1; j >= 0; j-- {
			w = w<<8 | uint64(s[j])
		}
		return w
	}
	n := 0
	for k := range fUnknown {
		name := keyNames[k]
		if len(name) > 7 {
			continue
		}
		n++
		if got := keyOf(word(name), len(name)); got != fieldKey([]byte(name)) || got != k {
			t.Errorf("keyOf(%q) = %d, fieldKey gives %d", name, got, fieldKey([]byte(name)))
		}
		if got := keyOf(word(name), len(name)+1); got != -1 {
			t.Errorf("keyOf(%q with a zero byte) = %d, want -1", name, got)
		}
		if got := keyOf(word(name)^0x20, len(name)); got != -1 {
			t.Errorf("keyOf(%q with its first letter's case changed) = %d, want -1", name, got)
		}
	}
	if n < 30 {
		t.Errorf("only %d keys in keyTab", n)
	}
}
