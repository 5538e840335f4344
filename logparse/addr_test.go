package logparse

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"testing"
)

func TestParseAddr(t *testing.T) {
	tests := []struct {
		in   string
		want string // "" for invalid
	}{
		{"198.51.100.7", "198.51.100.7"},
		{"0.0.0.0", "0.0.0.0"},
		{"255.255.255.255", "255.255.255.255"},
		{"256.1.1.1", ""},
		{"1.2.3", ""},
		{"1.2.3.4.5", ""},
		{"01.2.3.4", ""},
		{"1..3.4", ""},
		{"1.2.3.", ""},
		{"1.2.3.4 ", ""},
		{"1000.2.3.4", ""},
		{"2001:0db8:0000:0000:0000:0000:0000:0007", "2001:db8::7"},
		{"0000:0000:0000:0000:0000:0000:0000:0001", "::1"},
		{"fd00:6b6e:00d8:0000:0000:0000:0000:0002", "fd00:6b6e:d8::2"},
		{"2a0a:1580::a", "2a0a:1580::a"},
		{"::ffff:198.51.100.7", "::ffff:198.51.100.7"},
		{"fe80::1%eth0", ""},
		{"2001:0db8:0000:0000:0000:0000:0000:00007", ""},
		{"2001:0db8:0000:0000:0000:0000:0000", ""},
		{"2001:db8::g", ""},
		{"xxx.xxx.xxx.xxx", ""},
		{"", ""},
	}
	for _, tc := range tests {
		a, ok := parseAddr([]byte(tc.in))
		if tc.want == "" {
			if ok {
				t.Errorf("parseAddr(%q) = %v, want invalid", tc.in, a)
			}
			continue
		}
		if !ok || a != netip.MustParseAddr(tc.want) {
			t.Errorf("parseAddr(%q) = %v %v, want %s", tc.in, a, ok, tc.want)
		}
	}
}

// FuzzParseIP4 checks the fast IPv4 reader against net/netip.
func FuzzParseIP4(f *testing.F) {
	for _, s := range []string{"198.51.100.7", "0.0.0.0", "01.1.1.1", "1.2.3", "255.255.255.256"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, ok := parseIP4([]byte(s))
		want, err := netip.ParseAddr(s)
		wantOK := err == nil && want.Is4()
		if ok != wantOK || (ok && got != want) {
			t.Fatalf("parseIP4(%q) = %v %v, netip says %v %v", s, got, ok, want, err)
		}
	})
}

// TestIP4At compares ip4At with parseAddr on the token up to the next
// space, on random text rich in digits and dots.
func TestIP4At(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 7))
	alphabet := "0123456789..012 :25x\\xb0"
	for n := range 200000 {
		b := randText(r, alphabet, 20)
		a, e, ok := ip4At(b, 0)
		if !ok {
			continue
		}
		want, wok := parseAddr(b[:nextSpace(b, 0)])
		if !wok || want != a || e != nextSpace(b, 0) {
			t.Fatalf("case %d: ip4At(%q) = %v %d, parseAddr gives %v %v", n, b, a, e, want, wok)
		}
	}
	for _, s := range []string{"198.51.100.7", "0.0.0.0 x", "255.255.255.255", "1.2.3.4"} {
		if _, _, ok := ip4At([]byte(s), 0); !ok {
			t.Errorf("ip4At(%q) refused", s)
		}
	}
	for _, s := range []string{"01.2.3.4", "1.2.3.256", "1.2.3", "1.2.3.4.5", "1.2.3.4x", "1..2.3", ""} {
		if _, _, ok := ip4At([]byte(s), 0); ok {
			t.Errorf("ip4At(%q) accepted", s)
		}
	}
}

// TestParseIP6Kernel: the kernel's fully expanded form, in either case,
// reads as the address; a byte changed anywhere gives what netip says.
func TestParseIP6Kernel(t *testing.T) {
	r := rand.New(rand.NewPCG(11, 12))
	for n := range 20000 {
		var a [16]byte
		for i := range a {
			a[i] = byte(r.IntN(256))
		}
		want := netip.AddrFrom16(a)
		var b []byte
		for k := range 8 {
			if k > 0 {
				b = append(b, ':')
			}
			f := "%02x%02x"
			if r.IntN(2) == 0 {
				f = "%02X%02X"
			}
			b = fmt.Appendf(b, f, a[2*k], a[2*k+1])
		}
		if got, ok := parseAddr(b); !ok || got != want {
			t.Fatalf("case %d: parseAddr(%q) = %v %v, want %v", n, b, got, ok, want)
		}
		b[r.IntN(len(b))] = "0:g. x"[r.IntN(6)]
		got, ok := parseAddr(b)
		ref, err := netip.ParseAddr(string(b))
		if wok := err == nil && ref.Is6() && ref.Zone() == ""; ok != wok || (ok && got != ref) {
			t.Fatalf("case %d: parseAddr(%q) = %v %v, netip gives %v %v", n, b, got, ok, ref, err)
		}
	}
}
