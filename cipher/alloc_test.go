package cipher

import (
	"net/netip"
	"testing"
)

// TestDecodeDoesNotAllocate pins the hot path at zero allocations once the
// windows are derived (it holds with and without -race).
func TestDecodeDoesNotAllocate(t *testing.T) {
	keys := testKeys(20, Timed)
	keys[3].Mode = Static
	d := NewDecoder(keys, DefaultMaxSkew)
	d.Warm(t0)
	block := mustSeal(t, keys[7], Request{Allow: netip.MustParseAddr("192.0.2.1"), Port: 22, Time: 10}, t0)
	seen := 0
	fn := func(m Match) bool { seen += int(m.Request.Port); return false }
	if a := testing.AllocsPerRun(50, func() { d.Decode(block, t0, fn) }); a != 0 {
		t.Fatalf("Decode allocates %v times per call, want 0", a)
	}
	if seen == 0 {
		t.Fatal("the sealed block was never offered")
	}
}
