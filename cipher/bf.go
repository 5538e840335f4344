package cipher

import (
	"encoding/binary"
	"reflect"
	"sync"
	"unsafe"

	"golang.org/x/crypto/blowfish"
)

// bfState is an expanded Blowfish key: the P-array and the four S-boxes,
// laid out exactly like x/crypto's blowfish.Cipher.
//
// Why a copy: a Decoder holds hundreds of expanded keys (4 KiB each), more
// than the CPU caches, and one Blowfish block decryption is 16 dependent
// rounds of S-box loads. Decrypting one block at a time waits for a cache
// miss in every round (about 350 ns per block for 500 keys). decryptLanes
// runs eight independent decryptions in lock step so that their misses
// overlap; for that it needs the tables, which x/crypto keeps unexported.
// The key schedule itself stays x/crypto's.
type bfState struct {
	p              [18]uint32
	s0, s1, s2, s3 [256]uint32
}

// lanes is how many decryptions run in lock step.
const lanes = 16

// layoutOK reports whether blowfish.Cipher has bfState's layout (checked
// by field names, types and offsets) and a copied state decrypts like the
// original. When it is false, Decoders fall back to blowfish.Cipher.Decrypt.
var layoutOK = sync.OnceValue(func() bool {
	ct := reflect.TypeFor[blowfish.Cipher]()
	st := reflect.TypeFor[bfState]()
	if ct.Size() != st.Size() || ct.NumField() != st.NumField() {
		return false
	}
	for i := range st.NumField() {
		cf, sf := ct.Field(i), st.Field(i)
		if cf.Name != sf.Name || cf.Type != sf.Type || cf.Offset != sf.Offset {
			return false
		}
	}
	// Known answer: the copied state must decrypt like x/crypto does.
	key := []byte("knock/v1 blowfish layout check!!")
	c, err := blowfish.NewCipher(key)
	if err != nil {
		return false
	}
	s := (*bfState)(unsafe.Pointer(c))
	src := [8]byte{1, 2, 3, 4, 5, 6, 7, 8}
	var want [8]byte
	c.Decrypt(want[:], src[:])
	var ls [lanes]*bfState
	for i := range ls {
		ls[i] = s
	}
	var out [lanes][BlockSize]byte
	decryptLanes(&ls, &src, &out)
	return out[0] == want && out[lanes-1] == want
})

// expand runs the Blowfish key schedule (x/crypto) for key into st (when
// the layout allows) and into c when it is not nil. key is 32 bytes,
// always valid.
func expand(key []byte, st *bfState, c *blowfish.Cipher) {
	bf, err := blowfish.NewCipher(key)
	if err != nil {
		return // cannot happen: 32-byte keys are valid
	}
	if layoutOK() {
		*st = *(*bfState)(unsafe.Pointer(bf))
	}
	if c != nil {
		*c = *bf
	}
}

// decryptLanes decrypts block with each of the eight states (lanes may
// repeat a state). It is the round sequence of x/crypto's decryptBlock,
// interleaved across lanes.
func decryptLanes(st *[lanes]*bfState, block *[BlockSize]byte, out *[lanes][BlockSize]byte) {
	l := binary.BigEndian.Uint32(block[0:4])
	r := binary.BigEndian.Uint32(block[4:8])
	var xl, xr [lanes]uint32
	for j := range lanes {
		xl[j] = l ^ st[j].p[17]
		xr[j] = r
	}
	for i := 16; i > 0; i -= 2 {
		for j := range lanes {
			c, x := st[j], xl[j]
			xr[j] ^= ((c.s0[byte(x>>24)] + c.s1[byte(x>>16)]) ^ c.s2[byte(x>>8)]) + c.s3[byte(x)] ^ c.p[i]
		}
		for j := range lanes {
			c, x := st[j], xr[j]
			xl[j] ^= ((c.s0[byte(x>>24)] + c.s1[byte(x>>16)]) ^ c.s2[byte(x>>8)]) + c.s3[byte(x)] ^ c.p[i-1]
		}
	}
	for j := range lanes {
		binary.BigEndian.PutUint32(out[j][0:4], xr[j]^st[j].p[0])
		binary.BigEndian.PutUint32(out[j][4:8], xl[j])
	}
}
