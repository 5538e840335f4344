package logparse

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"
)

const fields = "IN=eth0 OUT= MAC= SRC=198.51.100.7 DST=203.0.113.5 LEN=60 TOS=0x00 PREC=0x00 TTL=64 ID=1 DF PROTO=TCP SPT=51515 DPT=800 WINDOW=64240 RES=0x00 SYN URGP=0 "

func TestFramings(t *testing.T) {
	tz := time.FixedZone("", 2*3600)
	tests := []struct {
		name       string
		line       string
		time       time.Time
		uptime     time.Duration
		fromKernel bool
	}{
		{"rsyslog traditional", "Nov 21 05:20:44 gw kernel: [  488.204357] knock: " + fields,
			time.Date(0, 11, 21, 5, 20, 44, 0, time.UTC), 488204357 * time.Microsecond, true},
		{"single-digit day, one space", "Feb 3 08:00:02 gw kernel: knock: " + fields,
			time.Date(0, 2, 3, 8, 0, 2, 0, time.UTC), 0, true},
		{"padded day", "Feb  3 08:00:02 gw kernel: knock: " + fields,
			time.Date(0, 2, 3, 8, 0, 2, 0, time.UTC), 0, true},
		{"no host name", "Oct 12 20:24:53 kernel: knock: " + fields,
			time.Date(0, 10, 12, 20, 24, 53, 0, time.UTC), 0, true},
		{"RFC 3339 with zone", "2026-11-21T05:20:44.204357+02:00 gw kernel: knock: " + fields,
			time.Date(2026, 11, 21, 5, 20, 44, 204357000, tz), 0, true},
		{"RFC 5424", "<4>1 2026-11-21T05:20:44.204357Z gw kernel - - - knock: " + fields,
			time.Date(2026, 11, 21, 5, 20, 44, 204357000, time.UTC), 0, true},
		{"journalctl short-iso", "2026-11-21T05:20:44+0000 gw kernel: knock: " + fields,
			time.Date(2026, 11, 21, 5, 20, 44, 0, time.UTC), 0, true},
		{"journalctl short-unix", "1763702444.204357 gw kernel: knock: " + fields,
			time.Unix(1763702444, 204357000).UTC(), 0, true},
		{"journalctl short-full", "Sat 2026-11-21 05:20:44 UTC gw kernel: knock: " + fields,
			time.Date(2026, 11, 21, 5, 20, 44, 0, time.UTC), 0, true},
		{"journalctl short-precise", "Nov 21 05:20:44.204357 gw kernel: knock: " + fields,
			time.Date(0, 11, 21, 5, 20, 44, 204357000, time.UTC), 0, true},
		{"FreeBSD syslogd -v", "Nov 21 05:20:44 <kern.warn> gw kernel: knock: " + fields,
			time.Date(0, 11, 21, 5, 20, 44, 0, time.UTC), 0, true},
		{"year first", "2002 Sep 15 07:47:04 gw kernel: knock: " + fields,
			time.Date(2002, 9, 15, 7, 47, 4, 0, time.UTC), 0, true},
		{"kmsg record", "4,441,684679879,-;knock: " + fields, time.Time{}, 684679879 * time.Microsecond, true},
		{"dmesg", "[  684.679879] knock: " + fields, time.Time{}, 684679879 * time.Microsecond, false},
		{"dmesg -t", "knock: " + fields, time.Time{}, 0, false},
		{"dmesg -x", "kern  :warn  : [  684.679879] knock: " + fields, time.Time{}, 684679879 * time.Microsecond, false},
		{"dmesg -T", "[Sat Nov 21 06:02:48 2026] knock: " + fields, time.Date(2026, 11, 21, 6, 2, 48, 0, time.UTC), 0, false},
		{"dmesg iso", "2026-11-21T06:02:19,780316+00:00 knock: " + fields, time.Date(2026, 11, 21, 6, 2, 19, 780316000, time.UTC), 0, false},
		{"dmesg -r", "<4>[  684.679879] knock: " + fields, time.Time{}, 684679879 * time.Microsecond, false},
		{"pvefw-logger", "0 2 PVEFW-HOST-IN 20/Jun/2022:13:09:25 +0200 knock: " + fields, time.Date(2022, 6, 20, 13, 9, 25, 0, tz), 0, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var h Hit
			if err := Parse([]byte(tc.line), &h); err != nil {
				t.Fatal(err)
			}
			if h.Prefix != "knock:" || h.DstPort != 800 || h.Src.String() != "198.51.100.7" {
				t.Errorf("fields %+v", h)
			}
			if !h.Time.Equal(tc.time) || h.Time.IsZero() != tc.time.IsZero() {
				t.Errorf("time %v, want %v", h.Time, tc.time)
			}
			if _, off := h.Time.Zone(); !tc.time.IsZero() {
				if _, woff := tc.time.Zone(); off != woff {
					t.Errorf("zone offset %d, want %d", off, woff)
				}
			}
			if h.Uptime != tc.uptime {
				t.Errorf("uptime %v, want %v", h.Uptime, tc.uptime)
			}
			if h.FromKernel != tc.fromKernel {
				t.Errorf("FromKernel %v, want %v", h.FromKernel, tc.fromKernel)
			}
		})
	}
}

func TestMalformedReasons(t *testing.T) {
	tests := []struct{ name, line, reason string }{
		{"duplicate key", "knock: " + strings.Replace(fields, "LEN=60", "LEN=60 TTL=1", 1), "duplicate TTL="},
		{"transport key in the header", "knock: " + strings.Replace(fields, "LEN=60", "LEN=60 SPT=1", 1), "SPT= before PROTO="},
		{"header key after PROTO", "knock: " + fields + "DST=192.0.2.1", "DST= after PROTO="},
		{"kmsg facility user", "12,1,1,-;knock: " + fields, "facility"},
		{"pid in the tag", "Nov 21 05:20:44 gw kernel[1]: knock: " + fields, "process"},
		{"bad ipfw action", "ipfw: 1 Frobnicate TCP 192.0.2.1:1 192.0.2.2:2 in via em0", "unknown action"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var h Hit
			err := Parse([]byte(tc.line), &h)
			var me *MalformedError
			if !errors.As(err, &me) {
				t.Fatalf("error %v, want a MalformedError", err)
			}
			if !strings.Contains(me.Reason, tc.reason) || !strings.Contains(err.Error(), tc.reason) {
				t.Errorf("reason %q, want it to say %q", me.Reason, tc.reason)
			}
		})
	}
}

func TestLimitNotice(t *testing.T) {
	var h Hit
	err := Parse([]byte("Nov 21 05:20:44 fw kernel: ipfw: limit 100 reached on entry 1400"), &h)
	var ln *LimitNotice
	if !errors.As(err, &ln) {
		t.Fatalf("error %v, want a LimitNotice", err)
	}
	if ln.Limit != 100 || ln.Rule != 1400 || ln.Time.Month() != time.November {
		t.Errorf("notice %+v", ln)
	}
	if got := ln.Error(); got != "ipfw: logging limit 100 reached on rule 1400" {
		t.Errorf("message %q", got)
	}
}

// A reused Hit must not keep strings from an earlier line.
func TestHitReuse(t *testing.T) {
	var h Hit
	lines := []struct{ line, prefix, in, out string }{
		{"knock: " + fields, "knock:", "eth0", ""},
		{"other: " + strings.Replace(fields, "IN=eth0 OUT=", "IN= OUT=wan1", 1), "other:", "", "wan1"},
		{"knock: " + fields, "knock:", "eth0", ""},
	}
	for i, l := range lines {
		if err := Parse([]byte(l.line), &h); err != nil {
			t.Fatal(err)
		}
		if h.Prefix != l.prefix || h.In != l.in || h.Out != l.out {
			t.Errorf("line %d: prefix %q in %q out %q, want %q %q %q", i, h.Prefix, h.In, h.Out, l.prefix, l.in, l.out)
		}
	}
	if err := Parse([]byte("nothing here"), &h); err != ErrNotFirewall {
		t.Fatalf("error %v", err)
	}
}

func TestIndexIPFW(t *testing.T) {
	tests := []struct {
		in   string
		want int
	}{
		{"ipfw: 1", 0},
		{"x kernel: ipfw: 1", 10},
		{"fw: 1 ipfw: 2", 6},
		{"pfw: ipf: ipfw:x", -1},
		{"fw: ", -1},
		{"", -1},
	}
	for _, tc := range tests {
		if got := IndexIPFW([]byte(tc.in)); got != tc.want {
			t.Errorf("IndexIPFW(%q) = %d, want %d", tc.in, got, tc.want)
		}
	}
}

func TestStrings(t *testing.T) {
	tests := []struct{ got, want string }{
		{Flags(0).String(), ""},
		{(SYN | ACK).String(), "SYN ACK"},
		{(FIN | SYN | RST | PSH | ACK | URG | ECE | CWR).String(), "FIN SYN RST PSH ACK URG ECE CWR"},
		{ProtoTCP.String(), "TCP"},
		{ProtoICMPv6.String(), "ICMPv6"},
		{ProtoOther.String(), "other"},
		{Netfilter.String(), "netfilter"},
		{IPFW.String(), "ipfw"},
		{Kind(9).String(), "kind(9)"},
		{(&MalformedError{Kind: IPFW, Reason: "x"}).Error(), "malformed ipfw log line: x"},
	}
	for _, tc := range tests {
		if tc.got != tc.want {
			t.Errorf("got %q, want %q", tc.got, tc.want)
		}
	}
}

func TestCRLF(t *testing.T) {
	var h Hit
	if err := Parse([]byte("knock: "+fields+"\r"), &h); err != nil || h.DstPort != 800 {
		t.Errorf("CRLF line: %v %+v", err, h)
	}
	if err := Parse([]byte("ipfw: 1 Deny TCP 192.0.2.1:1 192.0.2.2:800 in via em0\r"), &h); err != nil || h.DstPort != 800 {
		t.Errorf("CRLF ipfw line: %v %+v", err, h)
	}
}

// Parse shares only the zone cache between calls; the race detector
// checks it under concurrent use with changing offsets.
func TestConcurrentParse(t *testing.T) {
	zones := []string{"+02:00", "-05:00", "+00:00", "+05:30"}
	done := make(chan error, len(zones))
	for _, z := range zones {
		go func() {
			line := []byte("2026-11-21T05:20:44.5" + z + " gw kernel: knock: " + fields)
			var h Hit
			for i := 0; i < 2000; i++ {
				if err := Parse(line, &h); err != nil {
					done <- err
					return
				}
				if got := h.Time.Format("-07:00"); got != z && !(z == "+00:00" && got == "+00:00") {
					done <- fmt.Errorf("zone %s, want %s", got, z)
					return
				}
			}
			done <- nil
		}()
	}
	for range zones {
		if err := <-done; err != nil {
			t.Error(err)
		}
	}
}

func TestIPFWActions(t *testing.T) {
	const rest = " TCP 198.51.100.7:51515 203.0.113.5:800 in via em0"
	for _, a := range []string{"Deny", "Reset", "Reject", "Accept", "Count", "Nat", "Reass", "Return",
		"Refuse", "UNKNOWN", "Abort", "Abort6", "Unreach 3", "Unreach6 1", "Unreach", "Divert 8668",
		"Tee 8668", "SkipTo 500", "Pipe 1", "Queue 2", "Call 3", "SetFib 1", "SetDscp 10",
		"Forward to 192.0.2.1:3128", "Forward to [2001:db8::1]:3128"} {
		t.Run(a, func(t *testing.T) {
			var h Hit
			if err := Parse([]byte("ipfw: 100 "+a+rest), &h); err != nil {
				t.Fatal(err)
			}
			if h.Action != a || h.Rule != 100 || h.DstPort != 800 || h.In != "em0" {
				t.Errorf("hit %+v", h)
			}
		})
	}
	for _, bad := range []string{
		"ipfw: 100 Divert TCP 198.51.100.7:1 203.0.113.5:800 in via em0",
		"ipfw: 100 Forward 192.0.2.1 TCP 198.51.100.7:1 203.0.113.5:800 in via em0",
		"ipfw: 70000 Deny TCP 198.51.100.7:1 203.0.113.5:800 in via em0",
		"ipfw: 100 Deny TCP 198.51.100.7:1 203.0.113.5:800 sideways via em0",
		"ipfw: 100 Deny TCP 198.51.100.7:1 203.0.113.5:800 in via 0em",
		"ipfw: 100 Deny TCP 198.51.100.7:1 [2001:db8::5]:800 in via em0",
		"ipfw: 100 Deny ICMPv6:128.0 198.51.100.7 203.0.113.5 in via em0",
		"ipfw: 100 Deny ICMP:8 198.51.100.7 203.0.113.5 in via em0",
		"ipfw: 100 Deny ICMP 198.51.100.7 203.0.113.5 in via em0",
		"ipfw: 100 Deny TCP 198.51.100.7:1 203.0.113.5:800 in via em0 (frag x)",
		"ipfw: 100 Deny TCP [2001:db8::7:1 [2001:db8::5]:800 in via em0",
		"ipfw: 100 Deny P:300 198.51.100.7 203.0.113.5 in via em0",
		"ipfw: 100 Deny GRE 198.51.100.7 203.0.113.5 in via em0",
		"ipfw: 100 Deny TCP 198.51.100.7:1 203.0.113.5:800 [no if",
	} {
		var h Hit
		var me *MalformedError
		if err := Parse([]byte(bad), &h); !errors.As(err, &me) || me.Kind != IPFW {
			t.Errorf("%q: %v, want a malformed ipfw line", bad, err)
		}
	}
}

func TestIndexSRC(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int
	}{{"IN= SRC=1", 4}, {"MACSRC=x", 3}, {"nothing", -1}, {"", -1},
		{"=SRC=", 1}, {"RC= SR= C= SRC", -1}, {"a=b SRC=", 4}, {"SRC=SRC=", 0}, {"==SRC===", 2}} {
		if got := IndexSRC([]byte(tc.in)); got != tc.want {
			t.Errorf("IndexSRC(%q) = %d, want %d", tc.in, got, tc.want)
		}
	}
}

// randText returns up to n-1 bytes drawn from alphabet.
func randText(r *rand.Rand, alphabet string, n int) []byte {
	b := make([]byte, r.IntN(n))
	for i := range b {
		b[i] = alphabet[r.IntN(len(alphabet))]
	}
	return b
}

// TestIndexMatchesBytesIndex compares IndexSRC and IndexIPFW with
// bytes.Index on random text rich in the bytes each looks at.
func TestIndexMatchesBytesIndex(t *testing.T) {
	for _, tc := range []struct {
		name     string
		index    func([]byte) int
		needle   string
		alphabet string
		seed     uint64
	}{
		{"IndexSRC", IndexSRC, "SRC=", "SRC= \nx", 8},
		{"IndexIPFW", IndexIPFW, "ipfw: ", "ipfw: \nx", 9},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := rand.New(rand.NewPCG(tc.seed, tc.seed))
			for n := range 20000 {
				b := randText(r, tc.alphabet, 40)
				if got, want := tc.index(b), bytes.Index(b, []byte(tc.needle)); got != want {
					t.Fatalf("case %d: %s(%q) = %d, bytes.Index gives %d", n, tc.name, b, got, want)
				}
			}
		})
	}
}

// TestIndexIPFWLong: on buffers long enough for IndexIPFW to switch its
// lead byte, the first "ipfw: " is still the one bytes.Index finds,
// wherever it is and whichever of 'f' and 'w' is rarer.
func TestIndexIPFWLong(t *testing.T) {
	r := rand.New(rand.NewPCG(10, 10))
	for n := range 300 {
		alphabet := []string{"ffffw x\n", "fwwwww x\n", "ipfw:fw ", "fw: w: x"}[n%4]
		b := make([]byte, 1000+r.IntN(20000))
		for i := range b {
			b[i] = alphabet[r.IntN(len(alphabet))]
		}
		if r.IntN(4) > 0 {
			at := r.IntN(len(b) - 6)
			copy(b[at:], "ipfw: ")
		}
		if got, want := IndexIPFW(b), bytes.Index(b, []byte("ipfw: ")); got != want {
			t.Fatalf("case %d (%d bytes): IndexIPFW = %d, bytes.Index gives %d", n, len(b), got, want)
		}
	}
}
