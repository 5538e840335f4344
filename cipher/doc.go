// Package cipher implements knock protocol v1 (docs/PROTOCOL.md): secrets
// from key files and passphrases, the timed and static block keys, the
// eight-byte request block, its encryption into eight knock ports, and a
// Decoder that tries a candidate block against every configured key and
// every clock window within the allowed skew.
//
// The Blowfish key schedule is expensive (it runs the cipher 521 times), so
// the Decoder derives each key's per-window cipher once, keeps the windows
// within the skew plus the next one, and evicts the rest: decoding a
// candidate costs only block decryptions and does not allocate.
//
// Keys, Requests and Matches are plain values. A Decoder is safe for
// concurrent use by multiple goroutines.
package cipher
