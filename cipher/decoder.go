package cipher

import (
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/blowfish"
)

// Reason says why Decode offered no match.
type Reason uint8

const (
	// ReasonNone: at least one match was offered (the caller's policy
	// decided about it).
	ReasonNone Reason = iota
	// ReasonCheck: no decryption had a right check byte.
	ReasonCheck
	// ReasonPort0: a decryption had a right check byte but port 0.
	ReasonPort0
	// ReasonNoKey: there was no key (or no timed window) to try.
	ReasonNoKey
)

// String returns the reason as the daemon logs it: "check", "port0",
// "nokey", or "" for ReasonNone.
func (r Reason) String() string {
	switch r {
	case ReasonCheck:
		return "check"
	case ReasonPort0:
		return "port0"
	case ReasonNoKey:
		return "nokey"
	}
	return ""
}

// Match is one decryption of a candidate whose check byte is right and
// whose port is not 0.
type Match struct {
	Key    int    // index of the key in the slice given to NewDecoder
	Name   string // that key's name
	Mode   Mode
	Window int64     // timed mode: the window whose block key decrypted it; static: 0
	At     time.Time // the now given to Decode
	// Request is the decrypted request. Allow is 0.0.0.0 when the request
	// grants the knock source (see Request.AllowsSource).
	Request Request
}

// ReplayUntil returns how long the replay cache must remember the accepted
// (key, block) pair (docs/PROTOCOL.md §4.4): the block must be refused
// again while now is not after the returned time. In timed mode that is the
// last instant any daemon with the same maxSkew would still try the match's
// window (window start + maxSkew); in static mode, where the block never
// expires, it is At + staticHorizon.
func (m Match) ReplayUntil(maxSkew, staticHorizon time.Duration) time.Time {
	if m.Mode == Static {
		return m.At.Add(staticHorizon)
	}
	return time.Unix(m.Window*int64(Window/time.Second), 0).Add(clampSkew(maxSkew))
}

// Result summarises one Decode.
type Result struct {
	Trials   int    // block decryptions made
	Offered  int    // matches passed to fn
	Accepted bool   // fn returned true for the last match offered
	Reason   Reason // when Offered == 0: why nothing was offered
}

// Decoder decrypts candidate blocks with a fixed set of keys. It derives
// each key's cipher once per window and caches the windows within the skew
// plus the next one. A Decoder is safe for concurrent use.
type Decoder struct {
	keys    []Key
	slots   []int32 // per key: index into static or timed, or -1 for an unusable key
	fast    bool    // decryptLanes is usable (see layoutOK)
	static  []bfState
	slow    []blowfish.Cipher // static keys when !fast
	timed   []int             // indexes into keys of the timed keys
	maxSkew time.Duration
	maxWin  int64 // most windows needed at once

	snap  atomic.Pointer[snapshot]
	mu    sync.Mutex // serialises building and publishing snapshots
	ahead atomic.Bool
}

// snapshot is an immutable run of window tables for windows lo, lo+1, ...
type snapshot struct {
	lo     int64
	tables []*windowTable
}

func (s *snapshot) covers(lo, hi int64) bool {
	return s != nil && lo >= s.lo && hi < s.lo+int64(len(s.tables))
}

// windowTable holds one window's cipher for every timed key, indexed like
// Decoder.timed. It is never modified after it is built.
type windowTable struct {
	w      int64
	states []bfState
	slow   []blowfish.Cipher // when !fast
}

func clampSkew(d time.Duration) time.Duration {
	return min(max(d, 0), MaxSkewLimit)
}

// NewDecoder returns a Decoder for keys, which it copies. maxSkew is the
// clock skew tolerated in timed mode: a window w is tried when
// |w*30s - now| <= maxSkew (docs/PROTOCOL.md §4). It is clamped to
// 0..MaxSkewLimit. Keys with an invalid Mode are never tried.
func NewDecoder(keys []Key, maxSkew time.Duration) *Decoder {
	return newDecoder(keys, maxSkew, layoutOK())
}

// newDecoder is NewDecoder with the batched fast path switched by fast
// (tests exercise the fallback with fast = false).
func newDecoder(keys []Key, maxSkew time.Duration, fast bool) *Decoder {
	d := &Decoder{
		keys:    append([]Key(nil), keys...),
		slots:   make([]int32, len(keys)),
		maxSkew: clampSkew(maxSkew),
		fast:    fast,
	}
	d.maxWin = int64(2*d.maxSkew/Window) + 1
	for i := range d.keys {
		k := &d.keys[i]
		switch k.Mode {
		case Static:
			d.slots[i] = int32(len(d.static))
			d.static = append(d.static, bfState{})
			var c *blowfish.Cipher
			if !d.fast {
				d.slow = append(d.slow, blowfish.Cipher{})
				c = &d.slow[len(d.slow)-1]
			}
			expand(k.Secret[:], &d.static[len(d.static)-1], c)
		case Timed:
			d.slots[i] = int32(len(d.timed))
			d.timed = append(d.timed, i)
		default:
			d.slots[i] = -1
		}
	}
	return d
}

// MaxSkew returns the (clamped) skew the Decoder tolerates.
func (d *Decoder) MaxSkew() time.Duration { return d.maxSkew }

// Windows returns the timed windows tried at now: every w >= 0 with
// |w*30s - now| <= maxSkew. hi < lo when there is none.
func (d *Decoder) Windows(now time.Time) (lo, hi int64) {
	a := now.Add(-d.maxSkew)
	lo = WindowOf(a)
	if a.Unix()%30 != 0 || a.Nanosecond() != 0 {
		lo++ // a lies inside window lo: its start is before a
	}
	hi = WindowOf(now.Add(d.maxSkew))
	return max(lo, 0), hi
}

// Warm derives the ciphers for the windows tried at now and for the next
// window, so that the first Decode does not pay for them.
func (d *Decoder) Warm(now time.Time) {
	if len(d.timed) == 0 {
		return
	}
	lo, hi := d.Windows(now)
	if hi < lo {
		return
	}
	if !d.snap.Load().covers(lo, hi) {
		d.build(lo, hi)
	}
	d.extend(hi + 1)
}

// Decode tries block against every key and, for timed keys, every window
// within the skew. Keys are tried in order, each key's windows oldest
// first. fn sees every decryption whose check byte is right and whose port
// is not 0 (with many keys, random blocks pass the check now and then: the
// caller's policy decides), and returns true to accept it and stop. fn may
// be nil to just count. Decode does not allocate on its steady path.
func (d *Decoder) Decode(block [BlockSize]byte, now time.Time, fn func(Match) bool) Result {
	var res Result
	var snap *snapshot
	var lo, hi int64
	if len(d.timed) > 0 {
		lo, hi = d.Windows(now)
		if hi >= lo {
			snap = d.tablesFor(lo, hi)
		}
	}
	port0 := false
	var bt batch
	for i := range d.keys {
		slot := d.slots[i]
		if slot < 0 {
			continue
		}
		if d.keys[i].Mode == Static {
			var c *blowfish.Cipher
			if !d.fast {
				c = &d.slow[slot]
			}
			if bt.add(&d.static[slot], c, i, 0) && d.flush(&bt, &block, now, fn, &res, &port0) {
				return res
			}
			continue
		}
		if snap == nil {
			continue
		}
		for w := lo; w <= hi; w++ {
			t := snap.tables[w-snap.lo]
			var c *blowfish.Cipher
			if !d.fast {
				c = &t.slow[slot]
			}
			if bt.add(&t.states[slot], c, i, w) && d.flush(&bt, &block, now, fn, &res, &port0) {
				return res
			}
		}
	}
	if bt.n > 0 && d.flush(&bt, &block, now, fn, &res, &port0) {
		return res
	}
	if res.Offered == 0 {
		switch {
		case port0:
			res.Reason = ReasonPort0
		case res.Trials == 0:
			res.Reason = ReasonNoKey
		default:
			res.Reason = ReasonCheck
		}
	}
	return res
}

// batch collects up to eight trials (key, window, expanded key) in the
// order they must be offered.
type batch struct {
	n    int
	st   [lanes]*bfState
	slow [lanes]*blowfish.Cipher
	key  [lanes]int
	win  [lanes]int64
}

// add queues a trial and reports whether the batch is full.
func (b *batch) add(st *bfState, slow *blowfish.Cipher, key int, w int64) bool {
	b.st[b.n], b.slow[b.n], b.key[b.n], b.win[b.n] = st, slow, key, w
	b.n++
	return b.n == lanes
}

// flush decrypts the queued trials and offers them in order. It reports
// whether fn accepted one; the batch is empty afterwards.
func (d *Decoder) flush(b *batch, block *[BlockSize]byte, now time.Time, fn func(Match) bool, res *Result, port0 *bool) bool {
	n := b.n
	b.n = 0
	var out [lanes][BlockSize]byte
	if d.fast {
		for j := n; j < lanes; j++ {
			b.st[j] = b.st[0] // idle lanes repeat lane 0 (already in cache)
		}
		decryptLanes(&b.st, block, &out)
	} else {
		for j := range n {
			b.slow[j].Decrypt(out[j][:], block[:])
		}
	}
	for j := range n {
		res.Trials++
		ok, z := offer(&out[j], d, b.key[j], b.win[j], now, fn, res)
		if ok {
			return true
		}
		if z {
			*port0 = true
		}
	}
	return false
}

// offer checks plaintext p and hands it to fn. It reports whether fn
// accepted it, and whether p had a right check byte but port 0.
func offer(p *[BlockSize]byte, d *Decoder, key int, w int64, now time.Time, fn func(Match) bool, res *Result) (accepted, port0 bool) {
	if p[7] != checkByte(p) {
		return false, false
	}
	port := uint16(p[4])<<8 | uint16(p[5])
	if port == 0 {
		return false, true
	}
	res.Offered++
	if fn == nil {
		return false, false
	}
	k := &d.keys[key]
	m := Match{
		Key:    key,
		Name:   k.Name,
		Mode:   k.Mode,
		Window: w,
		At:     now,
		Request: Request{
			Allow: netip.AddrFrom4([4]byte{p[0], p[1], p[2], p[3]}),
			Port:  port,
			Time:  p[6],
		},
	}
	if fn(m) {
		res.Accepted = true
		return true, false
	}
	return false, false
}

// tablesFor returns a snapshot holding windows lo..hi, building what is
// missing, and makes sure the next window is being prepared.
func (d *Decoder) tablesFor(lo, hi int64) *snapshot {
	s := d.snap.Load()
	if !s.covers(lo, hi) {
		s = d.build(lo, hi)
	}
	if !s.covers(hi+1, hi+1) && d.ahead.CompareAndSwap(false, true) {
		go func() {
			defer d.ahead.Store(false)
			d.extend(hi + 1)
		}()
	}
	return s
}

// build publishes a snapshot for exactly lo..hi, reusing the tables the
// current one has. It runs under d.mu, so concurrent callers that need the
// same windows wait for one derivation instead of repeating it.
func (d *Decoder) build(lo, hi int64) *snapshot {
	d.mu.Lock()
	defer d.mu.Unlock()
	cur := d.snap.Load()
	if cur.covers(lo, hi) {
		return cur
	}
	n := &snapshot{lo: lo, tables: make([]*windowTable, hi-lo+1)}
	for w := lo; w <= hi; w++ {
		if cur.covers(w, w) {
			n.tables[w-lo] = cur.tables[w-cur.lo]
		} else {
			n.tables[w-lo] = d.table(w)
		}
	}
	d.snap.Store(n)
	return n
}

// extend appends window w to the current snapshot when it directly follows
// it, dropping windows that can no longer be needed together with w. The
// expensive derivation runs outside the lock.
func (d *Decoder) extend(w int64) {
	if s := d.snap.Load(); s == nil || s.covers(w, w) || w != s.lo+int64(len(s.tables)) {
		return
	}
	t := d.table(w)
	d.mu.Lock()
	defer d.mu.Unlock()
	s := d.snap.Load()
	if s.covers(w, w) || w != s.lo+int64(len(s.tables)) {
		return // the clock jumped meanwhile; build handles it
	}
	keep := s.tables
	lo := s.lo
	// Windows before w-maxWin can never be needed together with w.
	if drop := (w - d.maxWin) - lo; drop > 0 {
		keep = keep[drop:]
		lo += drop
	}
	n := &snapshot{lo: lo, tables: make([]*windowTable, 0, len(keep)+1)}
	n.tables = append(append(n.tables, keep...), t)
	d.snap.Store(n)
}

// table derives window w's cipher for every timed key.
func (d *Decoder) table(w int64) *windowTable {
	t := &windowTable{w: w, states: make([]bfState, len(d.timed))}
	if !d.fast {
		t.slow = make([]blowfish.Cipher, len(d.timed))
	}
	for j, i := range d.timed {
		bk := BlockKey(&d.keys[i].Secret, Timed, uint64(w))
		var c *blowfish.Cipher
		if !d.fast {
			c = &t.slow[j]
		}
		expand(bk[:], &t.states[j], c)
		clear(bk[:])
	}
	return t
}
