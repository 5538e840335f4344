package logparse

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

func FuzzParse(f *testing.F) {
	for _, c := range readCorpus(f) {
		f.Add([]byte(c.Line))
	}
	f.Add([]byte("IN= OUT= SRC=0.0.0.0 DST=0.0.0.0 LEN=0 TTL=0 PROTO=TCP [[[["))
	f.Add([]byte("ipfw: 1 Forward to [::1]:1 TCP [::1]:1 [::1]:1 in via a (frag 1:1@1+)"))
	f.Fuzz(func(t *testing.T, line []byte) {
		orig := bytes.Clone(line)
		var fresh Hit
		err := Parse(line, &fresh)
		if !bytes.Equal(line, orig) {
			t.Fatal("Parse modified its input")
		}
		// A reused Hit gives the same answer as a fresh one.
		reused := Hit{Prefix: "stale", In: "stale", Out: "stale", Action: "stale", SrcPort: 9, Flags: SYN}
		err2 := Parse(line, &reused)
		if (err == nil) != (err2 == nil) || (err != nil && err.Error() != err2.Error()) {
			t.Fatalf("fresh %v, reused %v", err, err2)
		}
		if err == nil && fresh != reused {
			t.Fatalf("fresh %+v\nreused %+v", fresh, reused)
		}
		if !bytes.Contains(line, keySRC) && !bytes.Contains(line, ipfwHead) && err != ErrNotFirewall {
			t.Fatalf("line without SRC= or ipfw: gave %v", err)
		}
		var me *MalformedError
		var ln *LimitNotice
		switch {
		case err == nil:
			checkHit(t, line, &fresh)
		case err == ErrNotFirewall:
		case errors.As(err, &me):
			if me.Reason == "" || (me.Kind != Netfilter && me.Kind != IPFW) {
				t.Fatalf("malformed without reason or kind: %+v", me)
			}
		case errors.As(err, &ln):
			if ln.Rule < 0 || ln.Rule > 65535 || ln.Limit < 0 {
				t.Fatalf("limit notice %+v", ln)
			}
		default:
			t.Fatalf("unexpected error type %T: %v", err, err)
		}
	})
}

// checkHit asserts what every hit must satisfy.
func checkHit(t *testing.T, line []byte, h *Hit) {
	t.Helper()
	if h.Kind != Netfilter && h.Kind != IPFW {
		t.Fatalf("kind %d", h.Kind)
	}
	if !h.Src.IsValid() || !h.Dst.IsValid() || h.Src.Is4() != h.Dst.Is4() || h.Src.Zone() != "" {
		t.Fatalf("addresses %v %v", h.Src, h.Dst)
	}
	ported := h.Proto == ProtoTCP || h.Proto == ProtoUDP
	if (!ported || h.Fragment || h.Incomplete) && (h.SrcPort != 0 || h.DstPort != 0) && h.Kind == Netfilter {
		t.Fatalf("%v fragment=%v incomplete=%v with ports %d %d", h.Proto, h.Fragment, h.Incomplete, h.SrcPort, h.DstPort)
	}
	if h.Flags != 0 && (h.Proto != ProtoTCP || h.Kind != Netfilter) {
		t.Fatalf("flags %v on %v", h.Flags, h.Proto)
	}
	if (h.ICMPType != 0 || h.ICMPCode != 0) && h.Proto != ProtoICMP && h.Proto != ProtoICMPv6 {
		t.Fatalf("ICMP type on %v", h.Proto)
	}
	if h.Proto == ProtoICMP && !h.Src.Is4() || h.Proto == ProtoICMPv6 && !h.Src.Is6() {
		t.Fatalf("%v with %v", h.Proto, h.Src)
	}
	if h.Prefix != strings.TrimSpace(h.Prefix) {
		t.Fatalf("prefix %q not trimmed", h.Prefix)
	}
	if h.Kind == Netfilter {
		if !bytes.Contains(line, []byte(h.Prefix)) && !bytes.Contains(line, []byte(`\x`)) {
			t.Fatalf("prefix %q not in the line", h.Prefix)
		}
		// the fields come after the prefix: SRC= follows it in the line
		if i := bytes.Index(line, []byte(h.Prefix)); i >= 0 && h.Prefix != "" && !bytes.Contains(line[i+len(h.Prefix):], keySRC) {
			t.Fatalf("no SRC= after the prefix %q", h.Prefix)
		}
		if h.Rule != 0 || h.Action != "" {
			t.Fatalf("ipfw fields on a netfilter hit: %+v", h)
		}
	} else if h.Prefix != "" || h.Rule < 0 || h.Rule > 65535 || h.Action == "" {
		t.Fatalf("ipfw hit %+v", h)
	}
	if h.In != "" && h.Out != "" && h.Kind == IPFW {
		t.Fatalf("ipfw hit with both directions")
	}
}
