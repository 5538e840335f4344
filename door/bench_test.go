package door

import (
	"net/netip"
	"testing"

	"github.com/knockdaemon/knock/internal/clock"
	"github.com/knockdaemon/knock/logparse"
)

func benchMatcher(b *testing.B) *Matcher {
	clk := clock.NewFake(t0)
	m, err := NewMatcher(sshDoors(b), clk, Options{MaxSources: 4096})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { m.Close() })
	return m
}

// BenchmarkMatcherDoorKnocks: knocks on door ports from 4096 sources
// (the table's bound), in a pattern that keeps progressing and resetting.
func BenchmarkMatcherDoorKnocks(b *testing.B) {
	m := benchMatcher(b)
	ports := []uint16{7000, 8000, 9000, 8000}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		src := netip.AddrFrom4([4]byte{10, 0, byte(i >> 8 & 15), byte(i)})
		if _, err := m.Add(Hit{Src: src, Proto: TCP, SrcPort: uint16(i), DstPort: ports[i&3], Flags: logparse.SYN}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkMatcherFlood: every knock from a new source, so every knock
// evicts the least recently heard one.
func BenchmarkMatcherFlood(b *testing.B) {
	m := benchMatcher(b)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		src := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
		if _, err := m.Add(Hit{Src: src, Proto: TCP, SrcPort: uint16(i), DstPort: 7000, Flags: logparse.SYN}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkMatcherOtherPort: the cost of a hit that is no door's (knock
// range, other logged traffic): no lock, no allocation.
func BenchmarkMatcherOtherPort(b *testing.B) {
	m := benchMatcher(b)
	src := netip.MustParseAddr("198.18.0.2")
	b.ReportAllocs()
	for b.Loop() {
		if _, err := m.Add(Hit{Src: src, Proto: TCP, SrcPort: 1, DstPort: 801, Flags: logparse.SYN}); err != nil {
			b.Fatal(err)
		}
	}
}
