package cipher

import (
	"crypto/sha256"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/blowfish"
)

// t0 is a window start (vector 1): at a window start the default skew
// covers 5 windows, the worst case.
var t0 = time.Unix(1767225600, 0)

func testKeys(n int, mode Mode) []Key {
	keys := make([]Key, n)
	for i := range keys {
		keys[i] = Key{Name: fmt.Sprintf("user%d", i), Secret: sha256.Sum256(fmt.Appendf(nil, "test key %d", i)), Mode: mode}
	}
	return keys
}

func mustSeal(t testing.TB, k Key, r Request, now time.Time) [BlockSize]byte {
	t.Helper()
	c, err := Seal(k, r, now)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// collect returns every match Decode offers.
func collect(d *Decoder, block [BlockSize]byte, now time.Time) ([]Match, Result) {
	var ms []Match
	res := d.Decode(block, now, func(m Match) bool { ms = append(ms, m); return false })
	return ms, res
}

// find returns the offered match for key index k, if any.
func find(ms []Match, k int) (Match, bool) {
	for _, m := range ms {
		if m.Key == k {
			return m, true
		}
	}
	return Match{}, false
}

func TestDecoderFindsKeyAmongMany(t *testing.T) {
	keys := testKeys(100, Timed)
	keys[42].Mode = Static
	d := NewDecoder(keys, DefaultMaxSkew)
	r := Request{Allow: netip.MustParseAddr("198.51.100.9"), Port: 2222, Time: 15}
	for _, idx := range []int{0, 42, 99} {
		t.Run(keys[idx].Name, func(t *testing.T) {
			block := mustSeal(t, keys[idx], r, t0)
			ms, res := collect(d, block, t0)
			m, ok := find(ms, idx)
			if !ok {
				t.Fatalf("key %d not among %d matches", idx, len(ms))
			}
			if m.Request != r || m.Name != keys[idx].Name || m.Mode != keys[idx].Mode || !m.At.Equal(t0) {
				t.Fatalf("match %+v", m)
			}
			if keys[idx].Mode == Timed && m.Window != WindowOf(t0) {
				t.Fatalf("window %d, want %d", m.Window, WindowOf(t0))
			}
			// 99 timed keys x 5 windows + 1 static key.
			if res.Trials != 99*5+1 || res.Offered != len(ms) || res.Accepted || res.Reason != ReasonNone {
				t.Fatalf("result %+v with %d matches", res, len(ms))
			}
		})
	}
}

func TestDecoderStopsWhenAccepted(t *testing.T) {
	keys := testKeys(10, Timed)
	d := NewDecoder(keys, DefaultMaxSkew)
	block := mustSeal(t, keys[3], Request{Port: 22, Time: 1}, t0)
	calls := 0
	res := d.Decode(block, t0, func(m Match) bool {
		calls++
		return m.Key == 3
	})
	if !res.Accepted || res.Offered != calls {
		t.Fatalf("result %+v after %d calls", res, calls)
	}
	// Keys are tried in order, each one's windows oldest first: key 3,
	// window W is trial 3*5 + 3 (windows W-2..W+2).
	if res.Trials != 3*5+3 {
		t.Fatalf("stopped after %d trials, want %d", res.Trials, 3*5+3)
	}
}

// TestDecoderSkew checks the window rule of docs/PROTOCOL.md §4:
// window w is tried when |w*30 - now| <= maxSkew.
func TestDecoderSkew(t *testing.T) {
	k := testKeys(1, Timed)[0]
	d := NewDecoder([]Key{k}, 60*time.Second)
	r := Request{Port: 22, Time: 10}
	tests := []struct {
		name   string
		client time.Time // when the client encoded (its window start is t0)
		server time.Time
		ok     bool
	}{
		{"same instant", t0, t0, true},
		{"server 60s after window start", t0, t0.Add(60 * time.Second), true},
		{"server 60s+1ns after window start", t0, t0.Add(60*time.Second + 1), false},
		{"server 60s before window start (client ahead)", t0, t0.Add(-60 * time.Second), true},
		{"server 60s+1ns before window start", t0, t0.Add(-60*time.Second - 1), false},
		{"client behind by 30s", t0.Add(29 * time.Second), t0.Add(59 * time.Second), true},
		{"client ahead by 60s", t0.Add(29 * time.Second), t0.Add(-31 * time.Second), true},
		{"client ahead by 90s", t0, t0.Add(-90 * time.Second), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			block := mustSeal(t, k, r, tt.client)
			ms, res := collect(d, block, tt.server)
			m, ok := find(ms, 0)
			ok = ok && m.Window == WindowOf(tt.client)
			if ok != tt.ok {
				t.Fatalf("accepted=%v, want %v (result %+v)", ok, tt.ok, res)
			}
		})
	}
}

func TestDecoderWindowsCount(t *testing.T) {
	d := NewDecoder(testKeys(1, Timed), 60*time.Second)
	for _, tt := range []struct {
		name   string
		now    time.Time
		lo, hi int64
	}{
		{"window start", t0, WindowOf(t0) - 2, WindowOf(t0) + 2},
		{"inside window", t0.Add(10 * time.Second), WindowOf(t0) - 1, WindowOf(t0) + 2},
		{"near epoch clamps at 0", time.Unix(10, 0), 0, 2},
		{"before epoch", time.Unix(-1000, 0), 0, -32},
	} {
		t.Run(tt.name, func(t *testing.T) {
			lo, hi := d.Windows(tt.now)
			if lo != tt.lo || hi != tt.hi {
				t.Fatalf("Windows = %d..%d, want %d..%d", lo, hi, tt.lo, tt.hi)
			}
		})
	}
	t.Run("no window means nokey", func(t *testing.T) {
		res := d.Decode([8]byte{}, time.Unix(-1000, 0), nil)
		if res.Reason != ReasonNoKey || res.Trials != 0 {
			t.Fatalf("result %+v", res)
		}
	})
	t.Run("skew clamped", func(t *testing.T) {
		if NewDecoder(nil, -time.Second).MaxSkew() != 0 || NewDecoder(nil, 48*time.Hour).MaxSkew() != MaxSkewLimit {
			t.Fatal("skew not clamped")
		}
	})
}

func TestDecoderReasons(t *testing.T) {
	k := Key{Name: "s", Secret: seqSecret(), Mode: Static}
	bf, err := blowfish.NewCipher(k.Secret[:])
	if err != nil {
		t.Fatal(err)
	}
	encrypt := func(p [8]byte) [8]byte {
		var c [8]byte
		bf.Encrypt(c[:], p[:])
		return c
	}
	port0 := [8]byte{1, 2, 3, 4, 0, 0, 7, 1 + 2 + 3 + 4 + 7}
	badCheck := [8]byte{0, 0, 0, 0, 0, 22, 10, 0x21}
	good := [8]byte{0, 0, 0, 0, 0, 22, 10, 0x20}
	d := NewDecoder([]Key{k}, DefaultMaxSkew)
	for _, tt := range []struct {
		name    string
		d       *Decoder
		block   [8]byte
		reason  Reason
		offered int
	}{
		{"bad check", d, encrypt(badCheck), ReasonCheck, 0},
		{"port 0", d, encrypt(port0), ReasonPort0, 0},
		{"good", d, encrypt(good), ReasonNone, 1},
		{"no keys", NewDecoder(nil, DefaultMaxSkew), encrypt(good), ReasonNoKey, 0},
		{"only invalid-mode keys", NewDecoder([]Key{{Name: "bad", Mode: 7}}, DefaultMaxSkew), encrypt(good), ReasonNoKey, 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			res := tt.d.Decode(tt.block, t0, func(Match) bool { return false })
			if res.Reason != tt.reason || res.Offered != tt.offered {
				t.Fatalf("result %+v, want reason %q offered %d", res, tt.reason, tt.offered)
			}
		})
	}
	for r, s := range map[Reason]string{ReasonNone: "", ReasonCheck: "check", ReasonPort0: "port0", ReasonNoKey: "nokey"} {
		if r.String() != s {
			t.Errorf("Reason(%d).String() = %q, want %q", r, r.String(), s)
		}
	}
}

func TestReplayUntil(t *testing.T) {
	k := testKeys(1, Timed)[0]
	d := NewDecoder([]Key{k}, 60*time.Second)
	now := t0.Add(7 * time.Second)
	block := mustSeal(t, k, Request{Port: 22}, now)
	ms, _ := collect(d, block, now)
	m, ok := find(ms, 0)
	if !ok {
		t.Fatal("no match")
	}
	until := m.ReplayUntil(60*time.Second, 24*time.Hour)
	if want := t0.Add(60 * time.Second); !until.Equal(want) {
		t.Fatalf("timed ReplayUntil = %v, want %v", until, want)
	}
	// The replay horizon must cover every instant at which the decoder
	// would still accept the block, and nothing needs to be kept after.
	if _, res := collect(d, block, until); res.Offered == 0 {
		t.Fatal("block not accepted at ReplayUntil: horizon too long")
	}
	if ms, _ := collect(d, block, until.Add(1)); func() bool { _, ok := find(ms, 0); return ok && ms[0].Window == m.Window }() {
		t.Fatal("block still accepted after ReplayUntil: horizon too short")
	}
	sm := Match{Mode: Static, At: now}
	if got := sm.ReplayUntil(60*time.Second, 24*time.Hour); !got.Equal(now.Add(24 * time.Hour)) {
		t.Fatalf("static ReplayUntil = %v", got)
	}
}

// TestDecodeInvertsEncode is the property test: for random keys, modes,
// requests and clocks, decoding the encoded ports offers the request with
// the right key and window.
func TestDecodeInvertsEncode(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	rng := rand.New(rand.NewPCG(seed, 17))
	t.Logf("seed %d", seed)
	keys := testKeys(20, Timed)
	for i := range keys {
		if rng.IntN(3) == 0 {
			keys[i].Mode = Static
		}
	}
	d := NewDecoder(keys, DefaultMaxSkew)
	// The clock moves forward by random steps (sometimes across several
	// windows), as a daemon's does; each case is otherwise independent.
	clientClock := time.Unix(1700000000+rng.Int64N(100000000), 0)
	for n := range 150 {
		var r Request
		if rng.IntN(2) == 0 {
			r.Allow = netip.AddrFrom4([4]byte{byte(rng.Uint32()), byte(rng.Uint32()), byte(rng.Uint32()), byte(rng.Uint32())})
		}
		r.Port = uint16(1 + rng.IntN(65535))
		r.Time = uint8(rng.IntN(256))
		ki := rng.IntN(len(keys))
		base := uint16(1 + rng.IntN(MaxBase))
		clientClock = clientClock.Add(time.Duration(rng.Int64N(int64(20 * time.Second))))
		if rng.IntN(50) == 0 {
			clientClock = clientClock.Add(time.Duration(rng.Int64N(int64(time.Hour))))
		}
		client := clientClock
		// A server clock whose distance to the client's window start is
		// within the skew.
		ws := time.Unix(WindowOf(client)*30, 0)
		server := ws.Add(time.Duration(rng.Int64N(int64(2*DefaultMaxSkew+1))) - DefaultMaxSkew)

		ports, err := Encode(keys[ki], r, client, base)
		if err != nil {
			t.Fatalf("case %d (seed %d): Encode: %v", n, seed, err)
		}
		block, err := BlockFromPorts(ports, base)
		if err != nil {
			t.Fatal(err)
		}
		found := false
		d.Decode(block, server, func(m Match) bool {
			if m.Key == ki && (keys[ki].Mode == Static || m.Window == WindowOf(client)) {
				want := r
				if !want.Allow.IsValid() {
					want.Allow = netip.IPv4Unspecified()
				}
				if m.Request != want {
					t.Fatalf("case %d (seed %d): decoded %v, want %v", n, seed, m.Request, want)
				}
				found = true
				return true
			}
			return false
		})
		if !found {
			t.Fatalf("case %d (seed %d): key %d (%v) request %v not found (client %v server %v)",
				n, seed, ki, keys[ki].Mode, r, client, server)
		}
	}
}

// TestDecoderCacheFollowsClock moves the clock across many windows and
// checks that the cache stays small and decoding stays right.
func TestDecoderCacheFollowsClock(t *testing.T) {
	keys := testKeys(3, Timed)
	d := NewDecoder(keys, DefaultMaxSkew)
	d.Warm(t0)
	for step := range 40 {
		now := t0.Add(time.Duration(step) * 7 * time.Second)
		block := mustSeal(t, keys[step%3], Request{Port: 22, Time: 5}, now)
		ms, _ := collect(d, block, now)
		if _, ok := find(ms, step%3); !ok {
			t.Fatalf("step %d: not decoded", step)
		}
		if s := d.snap.Load(); len(s.tables) > int(d.maxWin)+1 {
			t.Fatalf("step %d: cache holds %d windows, want at most %d", step, len(s.tables), d.maxWin+1)
		}
	}
	// A jump back in time rebuilds instead of failing.
	past := t0.Add(-time.Hour)
	block := mustSeal(t, keys[1], Request{Port: 80}, past)
	if ms, _ := collect(d, block, past); len(ms) == 0 {
		t.Fatal("not decoded after a clock jump back")
	}
}

func TestDecoderWarmPreparesNextWindow(t *testing.T) {
	d := NewDecoder(testKeys(2, Timed), DefaultMaxSkew)
	d.Warm(t0)
	lo, hi := d.Windows(t0)
	if !d.snap.Load().covers(lo, hi+1) {
		t.Fatalf("after Warm the cache does not cover %d..%d", lo, hi+1)
	}
}

// TestDecoderConcurrent decodes from many goroutines while the clock
// crosses windows; run with -race.
func TestDecoderConcurrent(t *testing.T) {
	keys := testKeys(8, Timed)
	d := NewDecoder(keys, DefaultMaxSkew)
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 30 {
				now := t0.Add(time.Duration(i*13+g) * time.Second)
				block, err := Seal(keys[g], Request{Port: uint16(1000 + g), Time: 3}, now)
				if err != nil {
					errs <- err
					return
				}
				ok := false
				d.Decode(block, now, func(m Match) bool {
					ok = m.Key == g && m.Request.Port == uint16(1000+g)
					return ok
				})
				if !ok {
					errs <- fmt.Errorf("goroutine %d step %d: not decoded", g, i)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestDecodeNilFnCounts(t *testing.T) {
	k := testKeys(1, Static)[0]
	d := NewDecoder([]Key{k}, 0)
	block := mustSeal(t, k, Request{Port: 9}, t0)
	if res := d.Decode(block, t0, nil); res.Offered != 1 || res.Accepted {
		t.Fatalf("result %+v", res)
	}
}

// FuzzDecode: no panic on any block, clock or skew, and every offered
// match must be a real decryption: re-encrypting it gives the block back.
func FuzzDecode(f *testing.F) {
	for _, v := range loadVectors(f) {
		c, err := BlockFromPorts(v.Ports, v.Base)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(c[:], v.Unix, int64(DefaultMaxSkew), v.Mode == "static")
	}
	f.Add([]byte{}, int64(0), int64(-1), false)
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, int64(-1<<62), int64(1<<62), true)
	keys := []Key{
		{Name: "a", Secret: seqSecret(), Mode: Timed},
		{Name: "b", Secret: seqSecret(), Mode: Static},
		{Name: "c", Secret: sha256.Sum256([]byte("knockdaemon test vector key B")), Mode: Timed},
		{Name: "d", Secret: sha256.Sum256([]byte("knockdaemon test vector key B")), Mode: Static},
	}
	decoders := map[int64]*Decoder{}
	f.Fuzz(func(t *testing.T, data []byte, unix int64, skew int64, _ bool) {
		var block [BlockSize]byte
		copy(block[:], data)
		skew = min(max(skew, -1), int64(2*time.Minute)) // keep the cache small per input
		d, ok := decoders[skew]
		if !ok {
			d = NewDecoder(keys, time.Duration(skew))
			decoders[skew] = d
		}
		now := time.Unix(unix, 0)
		res := d.Decode(block, now, func(m Match) bool {
			again, err := Seal(keys[m.Key], m.Request, time.Unix(m.Window*30, 0))
			if err != nil {
				t.Fatalf("offered match %+v does not encode: %v", m, err)
			}
			if again != block {
				t.Fatalf("offered match %+v re-encrypts to % x, not % x", m, again, block)
			}
			return false
		})
		if res.Offered > res.Trials || (res.Offered == 0) == (res.Reason == ReasonNone) {
			t.Fatalf("inconsistent result %+v", res)
		}
	})
}

// BenchmarkEncode measures one client-side encode (HMAC, key schedule,
// one block) against the raw Blowfish key schedule it is dominated by.
func BenchmarkEncode(b *testing.B) {
	k := testKeys(1, Timed)[0]
	r := Request{Port: 22, Time: 10}
	b.Run("baseline=blowfish.NewCipher", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := blowfish.NewCipher(k.Secret[:]); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("Encode/timed", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := Encode(k, r, t0, DefaultBase); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkDecode measures decoding one candidate against 100 timed keys
// x 5 windows (500 block decryptions) next to a baseline of 500 raw
// Blowfish block decryptions in the same run; the decode case also reports
// its ratio to the baseline (x-raw) and the per-trial cost.
func BenchmarkDecode(b *testing.B) {
	keys := testKeys(100, Timed)
	d := NewDecoder(keys, DefaultMaxSkew)
	d.Warm(t0)
	block := mustSeal(b, keys[99], Request{Allow: netip.MustParseAddr("192.0.2.1"), Port: 22, Time: 10}, t0)
	ciphers := make([]*blowfish.Cipher, 500)
	for i := range ciphers {
		bk := BlockKey(&keys[i%100].Secret, Timed, uint64(i))
		ciphers[i], _ = blowfish.NewCipher(bk[:])
	}
	raw := func() {
		var p [8]byte
		for _, c := range ciphers {
			c.Decrypt(p[:], block[:])
		}
	}
	var sink int
	fn := func(m Match) bool { sink += int(m.Request.Port); return false }
	b.Run("baseline=raw-500-decrypts", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			raw()
		}
	})
	b.Run("Decode/100keys-5windows", func(b *testing.B) {
		b.ReportAllocs()
		var res Result
		for b.Loop() {
			res = d.Decode(block, t0, fn)
		}
		if res.Trials != 500 {
			b.Fatalf("%d trials, want 500", res.Trials)
		}
		per := float64(b.Elapsed().Nanoseconds()) / float64(b.N)
		start := time.Now()
		const n = 200
		for range n {
			raw()
		}
		base := float64(time.Since(start).Nanoseconds()) / n
		b.ReportMetric(per/base, "x-raw")
		b.ReportMetric(per/500, "ns/trial")
	})
	_ = sink
}

func TestBlowfishLayout(t *testing.T) {
	if !layoutOK() {
		t.Fatal("x/crypto blowfish.Cipher no longer matches bfState: the decoder runs on its slow path; update bf.go")
	}
}

// TestDecryptLanesMatchesXCrypto compares the batched decryption with
// x/crypto's, lane by lane, for random keys and blocks.
func TestDecryptLanesMatchesXCrypto(t *testing.T) {
	if !layoutOK() {
		t.Fatal("layout check failed")
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for n := range 20 {
		var st [lanes]*bfState
		var cs [lanes]*blowfish.Cipher
		for j := range lanes {
			key := make([]byte, 32)
			for i := range key {
				key[i] = byte(rng.Uint32())
			}
			c, err := blowfish.NewCipher(key)
			if err != nil {
				t.Fatal(err)
			}
			cs[j] = c
			st[j] = new(bfState)
			expand(key, st[j], nil)
		}
		var block [8]byte
		for i := range block {
			block[i] = byte(rng.Uint32())
		}
		var out [lanes][8]byte
		decryptLanes(&st, &block, &out)
		for j := range lanes {
			var want [8]byte
			cs[j].Decrypt(want[:], block[:])
			if out[j] != want {
				t.Fatalf("case %d lane %d: % x, want % x", n, j, out[j], want)
			}
		}
	}
}

// TestDecoderSlowPathAgrees runs the fallback path (x/crypto one block at
// a time) and the batched path on the same inputs.
func TestDecoderSlowPathAgrees(t *testing.T) {
	keys := testKeys(21, Timed)
	keys[5].Mode = Static
	keys[20].Mode = Static
	fast, slow := newDecoder(keys, DefaultMaxSkew, true), newDecoder(keys, DefaultMaxSkew, false)
	rng := rand.New(rand.NewPCG(3, 4))
	for n := range 50 {
		var block [8]byte
		if n%2 == 0 {
			var err error
			block, err = Seal(keys[n%21], Request{Port: uint16(n + 1)}, t0)
			if err != nil {
				t.Fatal(err)
			}
		} else {
			for i := range block {
				block[i] = byte(rng.Uint32())
			}
		}
		mf, rf := collect(fast, block, t0)
		ms, rs := collect(slow, block, t0)
		if fmt.Sprint(mf) != fmt.Sprint(ms) || rf != rs {
			t.Fatalf("case %d: fast %v %+v, slow %v %+v", n, mf, rf, ms, rs)
		}
		if n%2 == 0 {
			if _, ok := find(mf, n%21); !ok {
				t.Fatalf("case %d: sealed block not found", n)
			}
		}
	}
}

// BenchmarkWindowDerive measures deriving one new window for 100 timed
// keys (HMAC + key schedule + table copy per key), which the Decoder does
// ahead of time once per 30 s, against 100 bare x/crypto key schedules.
func BenchmarkWindowDerive(b *testing.B) {
	keys := testKeys(100, Timed)
	d := NewDecoder(keys, DefaultMaxSkew)
	b.Run("baseline=100x-blowfish.NewCipher", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			for i := range keys {
				if _, err := blowfish.NewCipher(keys[i].Secret[:]); err != nil {
					b.Fatal(err)
				}
			}
		}
	})
	b.Run("window/100keys", func(b *testing.B) {
		b.ReportAllocs()
		w := WindowOf(t0)
		for b.Loop() {
			if t := d.table(w); len(t.states) != 100 {
				b.Fatal("short table")
			}
		}
	})
}
