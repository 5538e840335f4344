package cipher

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"
)

func TestPlaintext(t *testing.T) {
	tests := []struct {
		name string
		r    Request
		want [BlockSize]byte
		err  error
	}{
		{"source zero addr", Request{Port: 22, Time: 10}, [8]byte{0, 0, 0, 0, 0, 0x16, 0x0a, 0x20}, nil},
		{"source 0.0.0.0", Request{Allow: netip.IPv4Unspecified(), Port: 22, Time: 10}, [8]byte{0, 0, 0, 0, 0, 0x16, 0x0a, 0x20}, nil},
		{"delegation, check wraps", Request{Allow: netip.MustParseAddr("192.0.2.10"), Port: 65535, Time: 254},
			[8]byte{192, 0, 2, 10, 0xff, 0xff, 0xfe, byte((192 + 2 + 10 + 255 + 255 + 254) % 256)}, nil},
		{"4in6 is unmapped", Request{Allow: netip.MustParseAddr("::ffff:10.0.0.1"), Port: 1, Time: 1}, [8]byte{10, 0, 0, 1, 0, 1, 1, 13}, nil},
		{"port 0", Request{Port: 0}, [8]byte{}, ErrPortZero},
		{"ipv6 allow", Request{Allow: netip.MustParseAddr("2001:db8::1"), Port: 22}, [8]byte{}, ErrAllowNotIP4},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Plaintext(tt.r)
			if !errors.Is(err, tt.err) {
				t.Fatalf("error = %v, want %v", err, tt.err)
			}
			if err == nil && got != tt.want {
				t.Fatalf("Plaintext = % x, want % x", got, tt.want)
			}
		})
	}
}

func TestRequestString(t *testing.T) {
	for _, tt := range []struct {
		r    Request
		want string
	}{
		{Request{Port: 22, Time: 10}, "allow=source port=22 time=10m"},
		{Request{Allow: netip.MustParseAddr("203.0.113.7"), Port: 443, Time: 0}, "allow=203.0.113.7 port=443 time=unlimited"},
		{Request{Allow: netip.IPv4Unspecified(), Port: 1, Time: 255}, "allow=source port=1 time=close"},
	} {
		t.Run(tt.want, func(t *testing.T) {
			if got := tt.r.String(); got != tt.want {
				t.Fatalf("String() = %q", got)
			}
		})
	}
}

func TestWindowOf(t *testing.T) {
	for _, tt := range []struct {
		name string
		t    time.Time
		want int64
	}{
		{"epoch", time.Unix(0, 0), 0},
		{"29.999s", time.Unix(29, 999999999), 0},
		{"30s", time.Unix(30, 0), 1},
		{"vector 1", time.Unix(1767225600, 0), 58907520},
		{"one ns before epoch", time.Unix(0, -1), -1},
		{"-30s", time.Unix(-30, 0), -1},
		{"-31s", time.Unix(-31, 0), -2},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := WindowOf(tt.t); got != tt.want {
				t.Fatalf("WindowOf = %d, want %d", got, tt.want)
			}
		})
	}
}

func TestCheckBase(t *testing.T) {
	for _, tt := range []struct {
		base uint16
		ok   bool
	}{{0, false}, {1, true}, {745, true}, {MaxBase, true}, {MaxBase + 1, false}, {65535, false}} {
		if err := CheckBase(tt.base); (err == nil) != tt.ok {
			t.Errorf("CheckBase(%d) = %v, want ok=%v", tt.base, err, tt.ok)
		}
	}
}

func TestPortsRoundTrip(t *testing.T) {
	c := [8]byte{0, 1, 2, 127, 128, 200, 254, 255}
	for _, base := range []uint16{1, 745, 40000, MaxBase} {
		p := Ports(c, base)
		if p[0] != base || p[7] != base+255 {
			t.Fatalf("base %d: ports %v", base, p)
		}
		back, err := BlockFromPorts(p, base)
		if err != nil || back != c {
			t.Fatalf("base %d: BlockFromPorts = %v, %v", base, back, err)
		}
	}
	t.Run("port below base", func(t *testing.T) {
		p := Ports(c, 745)
		p[3] = 744
		if _, err := BlockFromPorts(p, 745); err == nil || !strings.Contains(err.Error(), "knock 4: port 744 outside 745..1000") {
			t.Fatalf("error = %v", err)
		}
	})
	t.Run("port above range", func(t *testing.T) {
		p := Ports(c, 745)
		p[7] = 1001
		if _, err := BlockFromPorts(p, 745); err == nil {
			t.Fatal("port 1001 accepted for base 745")
		}
	})
}

func TestEncodeErrors(t *testing.T) {
	k := Key{Name: "a", Secret: seqSecret()}
	now := time.Unix(1767225600, 0)
	for _, tt := range []struct {
		name string
		k    Key
		r    Request
		now  time.Time
		base uint16
		want error
	}{
		{"port 0", k, Request{}, now, 745, ErrPortZero},
		{"ipv6 allow", k, Request{Allow: netip.MustParseAddr("::1"), Port: 22}, now, 745, ErrAllowNotIP4},
		{"base 0", k, Request{Port: 22}, now, 0, ErrBase},
		{"base too high", k, Request{Port: 22}, now, 65281, ErrBase},
		{"timed before 1970", k, Request{Port: 22}, time.Unix(-1, 0), 745, ErrClockBefore},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := Encode(tt.k, tt.r, tt.now, tt.base); !errors.Is(err, tt.want) {
				t.Fatalf("Encode error = %v, want %v", err, tt.want)
			}
		})
	}
	t.Run("invalid mode", func(t *testing.T) {
		if _, err := Encode(Key{Name: "x", Mode: 9}, Request{Port: 22}, now, 745); err == nil || !strings.Contains(err.Error(), "invalid mode") {
			t.Fatalf("Encode with mode 9: %v", err)
		}
	})
	t.Run("static before 1970 is fine", func(t *testing.T) {
		sk := k
		sk.Mode = Static
		a, err := Encode(sk, Request{Port: 22}, time.Unix(-1, 0), 745)
		b, _ := Encode(sk, Request{Port: 22}, now, 745)
		if err != nil || a != b {
			t.Fatalf("static encode depends on the clock: %v %v %v", a, b, err)
		}
	})
}
