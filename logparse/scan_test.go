package logparse

import (
	"bytes"
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
