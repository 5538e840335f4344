package knock

import (
	"math/rand/v2"
	"testing"
)

// checkIndex verifies the table invariants: the count is right, every
// occupied slot names a live entry with that key's tag, and is reachable
// from its home slot without crossing an empty slot (what lookup relies on).
func checkIndex(t *testing.T, a *Assembler, want map[[16]byte]int32) {
	t.Helper()
	x := &a.index
	if x.n != len(want) {
		t.Fatalf("index holds %d, want %d", x.n, len(want))
	}
	seen := 0
	for i, s := range x.slots {
		if s == 0 {
			continue
		}
		seen++
		e := int32(uint32(s)) - 1
		key := a.ent(e).key
		tag := uint32(s >> 32)
		if x.hash(&key) != tag {
			t.Fatalf("slot %d: tag %#x, key hashes to %#x", i, tag, x.hash(&key))
		}
		for j := tag & x.mask; j != uint32(i); j = (j + 1) & x.mask {
			if x.slots[j] == 0 {
				t.Fatalf("slot %d unreachable from its home %d: empty slot %d between", i, tag&x.mask, j)
			}
		}
	}
	if seen != len(want) {
		t.Fatalf("%d occupied slots, want %d", seen, len(want))
	}
	for k, e := range want {
		if got := a.lookup(&k, x.hash(&k)); got != e {
			t.Fatalf("lookup %x = %d, want %d", k, got, e)
		}
	}
}

func TestIndexChurn(t *testing.T) {
	for _, tc := range []struct {
		name    string
		sources int
		keys    int
	}{
		{"half full small table", minIndexSlots / 2, 2000},
		{"growing", 5000, 20000},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, Config{MaxSources: tc.sources})
			a := f.a
			rng := rand.New(rand.NewPCG(7, uint64(tc.sources)))
			want := map[[16]byte]int32{}
			a.mu.Lock()
			defer a.mu.Unlock()
			for op := range 30_000 {
				var k [16]byte
				k[0], k[1], k[2] = byte(rng.IntN(tc.keys)), byte(rng.IntN(tc.keys)>>8), 1
				if e, ok := want[k]; ok {
					a.freeLocked(e)
					delete(want, k)
				} else if len(want) < tc.sources {
					want[k] = a.allocLocked(&k, a.index.hash(&k))
					a.pushBack(&a.active, want[k])
				}
				if op%997 == 0 {
					checkIndex(t, a, want)
				}
				// A missing key is not found.
				var miss [16]byte
				miss[0], miss[3] = byte(op), 2
				if a.lookup(&miss, a.index.hash(&miss)) != none {
					t.Fatalf("found a key never inserted")
				}
			}
			checkIndex(t, a, want)
			if tc.sources > minIndexSlots/2 && len(a.index.slots) < 2*tc.sources {
				t.Fatalf("index did not grow: %d slots for up to %d sources (holding %d)", len(a.index.slots), tc.sources, a.index.n)
			}
		})
	}
}
