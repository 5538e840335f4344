package knock

import "hash/maphash"

// The source index maps a source's 16-byte key to its entry. It is an open
// addressing table with linear probing and backward-shift deletion (no
// tombstones, so the constant insert/delete churn of a spoofed flood never
// lengthens probe chains), kept at most half full, doubling as the table
// grows. A slot holds the low 32 bits of the key's hash (its tag; its low
// bits are the home slot) and the entry number plus one; 0 is empty. The
// hash is hash/maphash with a random seed, as Go's own maps use, so that
// chosen source addresses cannot pile up in one probe chain.
//
// Compared with a map[[16]byte]int32 it does one probe sequence instead of
// three map operations per new source and takes 8 bytes a slot.

const minIndexSlots = 1024

type index struct {
	seed  maphash.Seed
	slots []uint64
	mask  uint32
	n     int
}

func newIndex() index {
	return index{seed: maphash.MakeSeed(), slots: make([]uint64, minIndexSlots), mask: minIndexSlots - 1}
}

func (x *index) hash(key *[16]byte) uint32 {
	return uint32(maphash.Bytes(x.seed, key[:]))
}

// lookup returns the entry for key, or none.
func (a *Assembler) lookup(key *[16]byte, tag uint32) int32 {
	x := &a.index
	for i := tag & x.mask; ; i = (i + 1) & x.mask {
		s := x.slots[i]
		if s == 0 {
			return none
		}
		if uint32(s>>32) == tag {
			if e := int32(uint32(s)) - 1; a.ent(e).key == *key {
				return e
			}
		}
	}
}

// insertIndex adds entry e, whose key is absent, under tag.
func (a *Assembler) insertIndex(tag uint32, e int32) {
	x := &a.index
	if 2*(x.n+1) > len(x.slots) {
		a.growIndex()
	}
	x.put(tag, e)
	x.n++
}

func (x *index) put(tag uint32, e int32) {
	i := tag & x.mask
	for x.slots[i] != 0 {
		i = (i + 1) & x.mask
	}
	x.slots[i] = uint64(tag)<<32 | uint64(uint32(e+1))
}

func (a *Assembler) growIndex() {
	x := &a.index
	old := x.slots
	x.slots = make([]uint64, 2*len(old))
	x.mask = uint32(len(x.slots) - 1)
	for _, s := range old {
		if s != 0 {
			x.put(uint32(s>>32), int32(uint32(s))-1)
		}
	}
}

// deleteIndex removes entry e, which must be present under key.
func (a *Assembler) deleteIndex(key *[16]byte, e int32) {
	x := &a.index
	want := uint64(uint32(e + 1))
	i := x.hash(key) & x.mask
	for x.slots[i]&0xffffffff != want {
		i = (i + 1) & x.mask
	}
	// Backward shift: pull each later member of the cluster that may live
	// at i (its home is not cyclically within (i, j]) into the hole.
	for j := (i + 1) & x.mask; x.slots[j] != 0; j = (j + 1) & x.mask {
		home := uint32(x.slots[j]>>32) & x.mask
		if (j-home)&x.mask < (j-i)&x.mask {
			continue // home in (i, j]: it must stay
		}
		x.slots[i] = x.slots[j]
		i = j
	}
	x.slots[i] = 0
	x.n--
}
