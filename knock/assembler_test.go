package knock

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/knockdaemon/knock/internal/clock"
)

var t0 = time.Unix(1_700_000_000, 0)

type fixture struct {
	t   *testing.T
	clk *clock.Fake
	a   *Assembler
}

func newFixture(t *testing.T, cfg Config) *fixture {
	t.Helper()
	clk := clock.NewFake(t0)
	a, err := New(cfg, clk)
	if err != nil {
		t.Fatalf("New(%+v): %v", cfg, err)
	}
	t.Cleanup(a.Close)
	return &fixture{t: t, clk: clk, a: a}
}

func addr(s string) netip.Addr { return netip.MustParseAddr(s) }

// knock sends one TCP hit from src to base+off with a source port derived
// from the offset, as a client opening fresh connections would.
func (f *fixture) knock(src string, off byte) Result {
	f.t.Helper()
	return f.hit(Hit{Src: addr(src), Proto: TCP, SrcPort: 40000 + uint16(off), DstPort: DefaultBase + uint16(off)})
}

func (f *fixture) hit(h Hit) Result {
	f.t.Helper()
	r, err := f.a.Add(h)
	if err != nil {
		f.t.Fatalf("Add(%+v): %v", h, err)
	}
	return r
}

// sequence knocks every offset of seq from src and returns the last result,
// failing if any earlier one is not Stored.
func (f *fixture) sequence(src string, seq []byte) Result {
	f.t.Helper()
	var r Result
	for k, off := range seq {
		r = f.knock(src, off)
		if k < len(seq)-1 && r.Outcome != Stored && r.Outcome != Candidate {
			f.t.Fatalf("knock %d of %s: outcome %v", k, src, r.Outcome)
		}
	}
	return r
}

func (f *fixture) wantOutcome(r Result, want Outcome) {
	f.t.Helper()
	if r.Outcome != want {
		f.t.Fatalf("outcome %v, want %v", r.Outcome, want)
	}
}

func (f *fixture) wantCandidate(r Result, want [8]byte) {
	f.t.Helper()
	if r.Outcome != Candidate {
		f.t.Fatalf("outcome %v, want candidate %v", r.Outcome, want)
	}
	if r.Candidate != want {
		f.t.Fatalf("candidate %v, want %v", r.Candidate, want)
	}
}

// failing knocks offs from src and, as the daemon does for a wrong
// sequence, rejects every candidate. It returns the index of the knock whose
// Reject locked the source, or -1, and fails if a knock after that one was
// not ignored as LockedOut.
func (f *fixture) failing(src string, offs []byte) int {
	f.t.Helper()
	lockedAt := -1
	for k, off := range offs {
		r := f.knock(src, off)
		if lockedAt >= 0 {
			f.wantOutcome(r, LockedOut)
			continue
		}
		if r.Outcome == Candidate {
			if _, locked := f.a.Reject(addr(src)); locked {
				lockedAt = k
			}
		}
	}
	return lockedAt
}

// wrong returns n distinct knock offsets from first on, none in seqA.
func wrong(first byte, n int) []byte {
	var offs []byte
	for off := first; len(offs) < n; off++ {
		if !slices.Contains(seqA, off) {
			offs = append(offs, off)
		}
	}
	return offs
}

var seqA = []byte{10, 200, 3, 255, 0, 77, 78, 9}

func TestCandidateFromEightKnocks(t *testing.T) {
	f := newFixture(t, Config{})
	for k := range 7 {
		f.wantOutcome(f.knock("192.0.2.1", seqA[k]), Stored)
	}
	f.wantCandidate(f.knock("192.0.2.1", seqA[7]), [8]byte(seqA))
	if s := f.a.Stats(); s.Candidates != 1 || s.Hits != 8 || s.Sources != 1 {
		t.Fatalf("stats %+v", s)
	}
}

func TestKnockPortRange(t *testing.T) {
	for _, tc := range []struct {
		name string
		base uint16
		port uint16
		want Outcome
	}{
		{"below base", 745, 744, NotKnockPort},
		{"base itself", 745, 745, Stored},
		{"base+255", 745, 1000, Stored},
		{"base+256", 745, 1001, NotKnockPort},
		{"port 0 with base 1", 1, 0, NotKnockPort},
		{"top of the port space", 65280, 65535, Stored},
		{"just below a high base", 65280, 65279, NotKnockPort},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, Config{Base: tc.base})
			f.wantOutcome(f.hit(Hit{Src: addr("192.0.2.1"), Proto: TCP, SrcPort: 1, DstPort: tc.port}), tc.want)
			wantSources := 0
			if tc.want == Stored {
				wantSources = 1
			}
			if s := f.a.Stats(); s.Sources != wantSources {
				t.Fatalf("sources %d, want %d", s.Sources, wantSources)
			}
		})
	}
}

func TestInvalidHits(t *testing.T) {
	for _, tc := range []struct {
		name string
		h    Hit
		want error
	}{
		{"zero source", Hit{Proto: TCP, DstPort: 745}, ErrInvalidSource},
		{"no protocol", Hit{Src: addr("192.0.2.1"), DstPort: 745}, ErrInvalidProto},
		{"icmp-like protocol", Hit{Src: addr("192.0.2.1"), Proto: 3, DstPort: 745}, ErrInvalidProto},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, Config{})
			if _, err := f.a.Add(tc.h); err != tc.want {
				t.Fatalf("err %v, want %v", err, tc.want)
			}
			if s := f.a.Stats(); s.Sources != 0 || s.Hits != 0 {
				t.Fatalf("invalid hit changed state: %+v", s)
			}
		})
	}
}

func TestInterleavedSources(t *testing.T) {
	f := newFixture(t, Config{})
	seqB := []byte{1, 2, 3, 4, 5, 6, 7, 8}
	seqC := []byte{250, 251, 252, 253, 254, 255, 0, 1}
	for k := range 7 {
		f.wantOutcome(f.knock("192.0.2.1", seqA[k]), Stored)
		f.wantOutcome(f.knock("2001:db8::1", seqB[k]), Stored)
		f.wantOutcome(f.knock("198.51.100.7", seqC[k]), Stored)
	}
	f.wantCandidate(f.knock("2001:db8::1", seqB[7]), [8]byte(seqB))
	f.wantCandidate(f.knock("192.0.2.1", seqA[7]), [8]byte(seqA))
	f.wantCandidate(f.knock("198.51.100.7", seqC[7]), [8]byte(seqC))
}

func TestMappedIPv4IsTheSameSource(t *testing.T) {
	f := newFixture(t, Config{})
	for k := range 4 {
		f.knock("192.0.2.9", seqA[k])
	}
	for k := 4; k < 7; k++ {
		f.knock("::ffff:192.0.2.9", seqA[k])
	}
	f.wantCandidate(f.knock("192.0.2.9", seqA[7]), [8]byte(seqA))
	if n := f.a.Stats().Sources; n != 1 {
		t.Fatalf("sources %d, want 1", n)
	}
}

func TestRetransmission(t *testing.T) {
	src := addr("192.0.2.1")
	first := Hit{Src: src, Proto: TCP, SrcPort: 5000, DstPort: 800}
	for _, tc := range []struct {
		name string
		next Hit
		want Outcome
	}{
		{"same ports", first, Retransmission},
		{"same destination, new source port", Hit{Src: src, Proto: TCP, SrcPort: 5001, DstPort: 800}, Stored},
		{"same source port, new destination", Hit{Src: src, Proto: TCP, SrcPort: 5000, DstPort: 801}, Stored},
		{"same ports over udp", Hit{Src: src, Proto: UDP, SrcPort: 5000, DstPort: 800}, Stored},
		{"same ports from another source", Hit{Src: addr("192.0.2.2"), Proto: TCP, SrcPort: 5000, DstPort: 800}, Stored},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, Config{})
			f.wantOutcome(f.hit(first), Stored)
			f.wantOutcome(f.hit(tc.next), tc.want)
		})
	}

	t.Run("only the previous hit counts", func(t *testing.T) {
		f := newFixture(t, Config{})
		f.wantOutcome(f.hit(first), Stored)
		f.wantOutcome(f.hit(Hit{Src: src, Proto: TCP, SrcPort: 5001, DstPort: 801}), Stored)
		f.wantOutcome(f.hit(first), Stored)
	})

	t.Run("a retransmission does not break the sequence", func(t *testing.T) {
		f := newFixture(t, Config{})
		for k := range 8 {
			r := f.knock("192.0.2.1", seqA[k])
			if k < 7 {
				f.wantOutcome(f.knock("192.0.2.1", seqA[k]), Retransmission)
				f.wantOutcome(f.knock("192.0.2.1", seqA[k]), Retransmission)
			} else {
				f.wantCandidate(r, [8]byte(seqA))
			}
		}
		if s := f.a.Stats(); s.Retransmissions != 14 || s.Hits != 8 {
			t.Fatalf("stats %+v", s)
		}
	})

	t.Run("recognised after accept", func(t *testing.T) {
		f := newFixture(t, Config{})
		f.wantCandidate(f.sequence("192.0.2.1", seqA), [8]byte(seqA))
		f.a.Accept(src)
		f.wantOutcome(f.knock("192.0.2.1", seqA[7]), Retransmission)
	})

	t.Run("not after the sequence timeout", func(t *testing.T) {
		f := newFixture(t, Config{})
		f.wantOutcome(f.hit(first), Stored)
		f.clk.Advance(DefaultSequenceTimeout)
		f.wantOutcome(f.hit(first), Stored)
	})
}

func TestStrayLeadingHitsDoNotSpoil(t *testing.T) {
	// Each stray hit before a sequence makes one more failing candidate
	// (stray and real knocks mixed); together they count as one failure,
	// so even seven strays, with the default three failures to a lockout,
	// leave the sequence to be accepted.
	for _, strays := range []int{1, 2, 3, 7} {
		t.Run(fmt.Sprintf("%d strays", strays), func(t *testing.T) {
			f := newFixture(t, Config{LockoutFailures: 3})
			src := addr("192.0.2.1")
			stray := wrong(100, strays)
			all := append(append([]byte{}, stray...), seqA...)
			for k, off := range all {
				r := f.knock("192.0.2.1", off)
				switch {
				case k < 7:
					f.wantOutcome(r, Stored)
				case k < len(all)-1:
					f.wantCandidate(r, [8]byte(all[k-7:k+1]))
					if _, locked := f.a.Reject(src); locked {
						t.Fatal("locked out after a stray hit")
					}
				default:
					f.wantCandidate(r, [8]byte(seqA))
				}
			}
			if !f.a.Accept(src) {
				t.Fatal("Accept found no sequence")
			}
			if s := f.a.Stats(); s.Rejected != uint64(strays) || s.Failures != 1 || s.Lockouts != 0 || s.Accepted != 1 || s.Candidates != uint64(strays)+1 {
				t.Fatalf("stats %+v", s)
			}
		})
	}
}

func TestAcceptConsumesAndResetsFailures(t *testing.T) {
	f := newFixture(t, Config{LockoutFailures: 3})
	src := addr("192.0.2.1")
	// Two wrong sequences (two counted failures), then the right one.
	if k := f.failing("192.0.2.1", wrong(100, 16)); k != -1 {
		t.Fatalf("locked at knock %d of two wrong sequences", k)
	}
	if n := f.a.Stats().Failures; n != 2 {
		t.Fatalf("%d failures after two wrong sequences, want 2", n)
	}
	for k, off := range seqA {
		r := f.knock("192.0.2.1", off)
		if k < 7 {
			f.wantOutcome(r, Candidate)
			if _, locked := f.a.Reject(src); locked {
				t.Fatalf("locked at knock %d of the right sequence", k)
			}
		} else {
			f.wantCandidate(r, [8]byte(seqA))
		}
	}
	if !f.a.Accept(src) {
		t.Fatal("Accept found no sequence")
	}
	// The consumed hits are gone: seven new knocks are not a candidate.
	seqB := []byte{11, 12, 13, 14, 15, 16, 17, 18}
	for k := range 7 {
		f.wantOutcome(f.knock("192.0.2.1", seqB[k]), Stored)
	}
	f.wantCandidate(f.knock("192.0.2.1", seqB[7]), [8]byte(seqB))
	// The two earlier failures were forgotten: this is the first, and two
	// more wrong sequences are needed to lock (the 24th hit since accept).
	if _, locked := f.a.Reject(src); locked {
		t.Fatal("locked after one failure since accept")
	}
	if k := f.failing("192.0.2.1", wrong(120, 16)); k != 15 {
		t.Fatalf("locked at knock %d of the next 16, want 15 (three failures since accept)", k)
	}
}

func TestAcceptRejectWithoutSequence(t *testing.T) {
	f := newFixture(t, Config{})
	if f.a.Accept(addr("192.0.2.1")) {
		t.Fatal("Accept of an unknown source reported true")
	}
	if _, locked := f.a.Reject(addr("192.0.2.1")); locked {
		t.Fatal("Reject of an unknown source locked")
	}
	if f.a.Accept(netip.Addr{}) {
		t.Fatal("Accept of the zero address reported true")
	}
	if s := f.a.Stats(); s.Accepted != 0 || s.Rejected != 0 || s.Sources != 0 {
		t.Fatalf("stats %+v", s)
	}
}

func TestTimeoutByTimer(t *testing.T) {
	f := newFixture(t, Config{SequenceTimeout: 10 * time.Second})
	for k := range 3 {
		f.knock("192.0.2.1", seqA[k])
		f.clk.Advance(time.Second)
	}
	// Last hit at 2s: the source lives until 12s.
	f.clk.Advance(9*time.Second - time.Millisecond)
	if n := f.a.Stats().Sources; n != 1 {
		t.Fatalf("sources at 11.999s: %d, want 1", n)
	}
	f.clk.Advance(time.Millisecond)
	if s := f.a.Stats(); s.Sources != 0 || s.Expired != 1 {
		t.Fatalf("at 12s: %+v, want the source expired", s)
	}
	if n := f.clk.Pending(); n != 0 {
		t.Fatalf("%d timers pending with an empty table", n)
	}
	// A fresh start afterwards needs eight knocks.
	for k := range 7 {
		f.wantOutcome(f.knock("192.0.2.1", seqA[k]), Stored)
	}
	f.wantCandidate(f.knock("192.0.2.1", seqA[7]), [8]byte(seqA))
}

func TestTimerExpiresSourcesInOrder(t *testing.T) {
	f := newFixture(t, Config{SequenceTimeout: 10 * time.Second})
	for k := range 5 {
		f.knock(netip.AddrFrom4([4]byte{192, 0, 2, byte(k)}).String(), 1)
		f.clk.Advance(time.Second)
	}
	// Source k last knocked at k seconds; now 5s.
	for k := range 5 {
		f.clk.Set(t0.Add(time.Duration(10+k) * time.Second))
		if n := f.a.Stats().Sources; n != 4-k {
			t.Fatalf("at %ds: %d sources, want %d", 10+k, n, 4-k)
		}
	}
	if n := f.clk.Pending(); n != 0 {
		t.Fatalf("%d timers pending with an empty table", n)
	}
}

func TestOneTimerForManySources(t *testing.T) {
	f := newFixture(t, Config{})
	for k := range 1000 {
		f.knock(netip.AddrFrom4([4]byte{10, 0, byte(k >> 8), byte(k)}).String(), byte(k))
	}
	if n := f.clk.Pending(); n != 1 {
		t.Fatalf("%d timers pending for 1000 sources, want 1", n)
	}
}

func TestTimeoutOnArrival(t *testing.T) {
	// Hits carry their own receive times while the clock (and so the timer)
	// stands still: expiry must also happen when the next hit arrives.
	at := func(f *fixture, d time.Duration, off byte) Result {
		return f.hit(Hit{Src: addr("192.0.2.1"), Proto: TCP, SrcPort: 40000 + uint16(off), DstPort: 745 + uint16(off), Time: t0.Add(d)})
	}
	t.Run("all hits expired", func(t *testing.T) {
		f := newFixture(t, Config{SequenceTimeout: 10 * time.Second})
		for k := range 7 {
			at(f, 0, seqA[k])
		}
		f.wantOutcome(at(f, 10*time.Second, seqA[7]), Stored)
	})
	t.Run("oldest hits expired", func(t *testing.T) {
		f := newFixture(t, Config{SequenceTimeout: 10 * time.Second})
		for k := range 3 {
			at(f, 0, seqA[k])
		}
		for k := 3; k < 7; k++ {
			at(f, 5*time.Second, seqA[k])
		}
		f.wantCandidate(at(f, 9999*time.Millisecond, seqA[7]), [8]byte(seqA))
		// At 10s the three hits from 0s are gone: five live hits remain.
		f.wantOutcome(at(f, 10*time.Second, 100), Stored)
		f.wantOutcome(at(f, 10*time.Second, 101), Stored)
		f.wantCandidate(at(f, 10*time.Second, 102), [8]byte{seqA[3], seqA[4], seqA[5], seqA[6], seqA[7], 100, 101, 102})
	})
	t.Run("retransmission check forgets an expired hit", func(t *testing.T) {
		f := newFixture(t, Config{SequenceTimeout: 10 * time.Second})
		at(f, 0, 5)
		f.wantOutcome(at(f, 9999*time.Millisecond, 5), Retransmission)
		f.wantOutcome(at(f, 10*time.Second, 5), Stored)
	})
	t.Run("times never go backwards", func(t *testing.T) {
		f := newFixture(t, Config{SequenceTimeout: 10 * time.Second})
		at(f, 20*time.Second, 1)
		// An earlier receive time is taken as 20s, so the hit is not "old".
		for k := range 6 {
			at(f, time.Duration(k)*time.Second, byte(2+k))
		}
		f.wantOutcome(at(f, 29*time.Second, 9), Candidate)
	})
}

func TestLockout(t *testing.T) {
	f := newFixture(t, Config{LockoutFailures: 3, Lockout: 60 * time.Second})
	src := addr("192.0.2.1")
	var until time.Time
	// Three wrong sequences: 17 candidates, the third counted failure (the
	// 24th hit) locks.
	for k := range 24 {
		r := f.knock("192.0.2.1", byte(k))
		if k < 7 {
			continue
		}
		f.wantOutcome(r, Candidate)
		u, locked := f.a.Reject(src)
		if locked != (k == 23) {
			t.Fatalf("after knock %d: locked %v", k, locked)
		}
		until = u
	}
	if want := t0.Add(60 * time.Second); !until.Equal(want) {
		t.Fatalf("locked until %v, want %v", until, want)
	}
	if s := f.a.Stats(); s.LockedOut != 1 || s.Lockouts != 1 || s.Sources != 1 {
		t.Fatalf("stats %+v", s)
	}
	// Locked: every hit is ignored, even a full sequence, well past the
	// sequence timeout.
	f.clk.Advance(30 * time.Second)
	for k := range 8 {
		f.wantOutcome(f.knock("192.0.2.1", seqA[k]), LockedOut)
	}
	// Another source is unaffected.
	f.wantCandidate(f.sequence("192.0.2.2", seqA), [8]byte(seqA))
	f.clk.Advance(30*time.Second - time.Millisecond)
	f.wantOutcome(f.knock("192.0.2.1", 1), LockedOut)
	f.clk.Advance(time.Millisecond)
	if s := f.a.Stats(); s.LockedOut != 0 || s.LockedOutHits != 9 {
		t.Fatalf("after the lockout: %+v", s)
	}
	// Afterwards the source starts afresh with no failures: two more wrong
	// sequences do not lock it, a third does.
	if k := f.failing("192.0.2.1", wrong(100, 16)); k != -1 {
		t.Fatalf("locked at knock %d after the lockout: failures survived it", k)
	}
	if k := f.failing("192.0.2.1", wrong(120, 8)); k != 7 {
		t.Fatalf("locked at knock %d of the third sequence after the lockout, want 7", k)
	}
}

func TestBruteForceLockedOutAfterEightHitsPerFailure(t *testing.T) {
	// A guesser sending distinct knocks, every candidate rejected, is
	// locked out at its LockoutFailures x 8th hit, having had 1 + 8 x
	// (LockoutFailures-1) candidates: 24 hits and 17 candidates by default.
	for _, tc := range []struct {
		failures   int
		candidates uint64
	}{
		{1, 1},
		{2, 9},
		{3, 17},
		{5, 33},
	} {
		t.Run(fmt.Sprintf("lockout failures %d", tc.failures), func(t *testing.T) {
			f := newFixture(t, Config{LockoutFailures: tc.failures})
			offs := make([]byte, 8*tc.failures+8)
			for k := range offs {
				offs[k] = byte(k * 37)
			}
			if k := f.failing("192.0.2.1", offs); k != 8*tc.failures-1 {
				t.Fatalf("locked at knock %d, want %d", k, 8*tc.failures-1)
			}
			s := f.a.Stats()
			if s.Candidates != tc.candidates || s.Rejected != tc.candidates || s.Failures != uint64(tc.failures) || s.Lockouts != 1 || s.LockedOutHits != 8 {
				t.Fatalf("stats %+v", s)
			}
		})
	}
}

func TestLostKnockDoesNotLockOut(t *testing.T) {
	// A knock line lost under load leaves seven hits; the user's retry
	// makes seven mixed candidates before its own, which are one counted
	// failure, not seven.
	for _, tc := range []struct {
		name  string
		tries [][]byte // sent before the correct sequence, each one knock short
	}{
		{"first knock lost", [][]byte{seqA[1:]}},
		{"middle knock lost", [][]byte{slices.Delete(slices.Clone(seqA), 3, 4)}},
		{"last knock lost", [][]byte{seqA[:7]}},
		{"one knock lost in each of two tries", [][]byte{seqA[1:], seqA[:7]}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, Config{LockoutFailures: 3})
			src := addr("192.0.2.1")
			var all []byte
			for _, try := range tc.tries {
				all = append(all, try...)
			}
			all = append(all, seqA...)
			for k, off := range all {
				r := f.knock("192.0.2.1", off)
				switch {
				case k < 7:
					f.wantOutcome(r, Stored)
				case k < len(all)-1:
					f.wantOutcome(r, Candidate)
					if _, locked := f.a.Reject(src); locked {
						t.Fatalf("locked out at knock %d of %d", k, len(all))
					}
				default:
					f.wantCandidate(r, [8]byte(seqA))
				}
			}
			if !f.a.Accept(src) {
				t.Fatal("Accept found no sequence")
			}
			s := f.a.Stats()
			if want := uint64(len(all) - 8); s.Rejected != want || s.Failures != uint64(len(tc.tries)) || s.Lockouts != 0 || s.LockedOut != 0 {
				t.Fatalf("stats %+v, want %d rejected and %d failures", s, want, len(tc.tries))
			}
		})
	}
}

func TestLockoutEndsOnArrival(t *testing.T) {
	f := newFixture(t, Config{LockoutFailures: 1, Lockout: 60 * time.Second})
	src := addr("192.0.2.1")
	f.sequence("192.0.2.1", seqA)
	if _, locked := f.a.Reject(src); !locked {
		t.Fatal("not locked after one failure with LockoutFailures 1")
	}
	h := Hit{Src: src, Proto: TCP, SrcPort: 1, DstPort: 745, Time: t0.Add(60*time.Second - time.Millisecond)}
	f.wantOutcome(f.hit(h), LockedOut)
	h.Time = t0.Add(60 * time.Second)
	f.wantOutcome(f.hit(h), Stored)
	if n := f.a.Stats().LockedOut; n != 0 {
		t.Fatalf("locked out %d after the lockout ended on arrival", n)
	}
}

func TestFailuresOutliveTheSequence(t *testing.T) {
	// A guesser cannot reset its failures by pausing for the sequence
	// timeout: they are remembered for Lockout after its hits expired.
	f := newFixture(t, Config{SequenceTimeout: 10 * time.Second, LockoutFailures: 3, Lockout: 60 * time.Second})
	src := addr("192.0.2.1")
	// Two wrong sequences and seven knocks of a third: two failures.
	if k := f.failing("192.0.2.1", wrong(100, 23)); k != -1 {
		t.Fatalf("locked at knock %d", k)
	}
	f.clk.Advance(30 * time.Second)
	if n := f.a.Stats().Sources; n != 1 {
		t.Fatalf("sources %d: the failures were forgotten with the hits", n)
	}
	f.sequence("192.0.2.1", seqA)
	if _, locked := f.a.Reject(src); !locked {
		t.Fatal("third failure after a pause did not lock")
	}
	if s := f.a.Stats(); s.Failures != 3 || s.Lockouts != 1 {
		t.Fatalf("stats %+v", s)
	}

	t.Run("forgotten after the lockout period", func(t *testing.T) {
		f := newFixture(t, Config{SequenceTimeout: 10 * time.Second, LockoutFailures: 3, Lockout: 60 * time.Second})
		if k := f.failing("192.0.2.1", wrong(100, 16)); k != -1 {
			t.Fatalf("locked at knock %d", k)
		}
		// Last hit at 0s: hits die at 10s, failures at 70s.
		f.clk.Advance(70*time.Second - time.Millisecond)
		if n := f.a.Stats().Sources; n != 1 {
			t.Fatalf("sources %d at 69.999s", n)
		}
		f.clk.Advance(time.Millisecond)
		if n := f.a.Stats().Sources; n != 0 {
			t.Fatalf("sources %d at 70s", n)
		}
		f.sequence("192.0.2.1", seqA)
		if _, locked := f.a.Reject(src); locked {
			t.Fatal("locked by failures older than the lockout period")
		}
	})
}

func TestMaxHitsKeepsTheLastHits(t *testing.T) {
	for _, maxHits := range []int{8, 9, 16, 255} {
		t.Run(map[int]string{8: "8", 9: "9", 16: "16", 255: "255"}[maxHits], func(t *testing.T) {
			f := newFixture(t, Config{MaxHits: maxHits})
			var sent []byte
			for k := range 600 {
				off := byte(k*7 + k/3)
				sent = append(sent, off)
				r := f.knock("192.0.2.1", off)
				if k < 7 {
					f.wantOutcome(r, Stored)
					continue
				}
				f.wantCandidate(r, [8]byte(sent[len(sent)-8:]))
			}
		})
	}
}

func TestMaxSourcesEvictsLeastRecentlyActive(t *testing.T) {
	f := newFixture(t, Config{MaxSources: 4})
	srcs := []string{"192.0.2.1", "192.0.2.2", "192.0.2.3", "192.0.2.4"}
	for _, s := range srcs {
		for k := range 7 {
			f.knock(s, seqA[k])
		}
	}
	// .1 has the oldest activity but a retransmission is no activity; a
	// stored hit from .1 (its eighth) makes .2 the least recently active.
	f.wantOutcome(f.knock("192.0.2.2", seqA[6]), Retransmission)
	f.wantOutcome(f.knock("192.0.2.1", 100), Candidate)
	f.wantOutcome(f.knock("192.0.2.5", 1), Stored)
	if s := f.a.Stats(); s.Sources != 4 || s.Evictions != 1 {
		t.Fatalf("stats %+v", s)
	}
	// .2 lost its progress; .3 and .4 kept theirs.
	f.wantOutcome(f.knock("192.0.2.3", seqA[7]), Candidate)
	f.wantOutcome(f.knock("192.0.2.4", seqA[7]), Candidate)
	f.wantOutcome(f.knock("192.0.2.2", seqA[7]), Stored) // evicts .1 now
	f.wantOutcome(f.knock("192.0.2.1", seqA[7]), Stored)
	if s := f.a.Stats(); s.Sources != 4 || s.Evictions != 3 {
		t.Fatalf("stats %+v", s)
	}
}

func TestEvictionPicksOldestAcrossLockedAndActive(t *testing.T) {
	f := newFixture(t, Config{MaxSources: 2, LockoutFailures: 1, Lockout: time.Hour})
	f.sequence("192.0.2.1", seqA)
	f.a.Reject(addr("192.0.2.1")) // locked at 0s
	f.clk.Advance(time.Second)
	f.knock("192.0.2.2", 1) // active, last hit at 1s
	f.clk.Advance(time.Second)
	f.knock("192.0.2.3", 1) // evicts the lockout from 0s
	if s := f.a.Stats(); s.LockedOut != 0 || s.Evictions != 1 || s.Sources != 2 {
		t.Fatalf("stats %+v", s)
	}
	f.wantOutcome(f.knock("192.0.2.2", 2), Stored)
	f.wantOutcome(f.knock("192.0.2.1", 2), Stored)
}

func TestFloodIsBoundedAndRealKnockSurvives(t *testing.T) {
	const maxSources = 1000
	f := newFixture(t, Config{MaxSources: maxSources})
	rng := rand.New(rand.NewPCG(1, 2))
	legit := 0
	var got Result
	for k := range 120_000 {
		if k%300 == 150 && legit < 8 {
			got = f.knock("203.0.113.77", seqA[legit])
			legit++
			continue
		}
		src := netip.AddrFrom4([4]byte{10, byte(rng.IntN(2)), byte(rng.IntN(256)), byte(rng.IntN(256))})
		r := f.hit(Hit{Src: src, Proto: TCP, SrcPort: uint16(rng.Uint32()), DstPort: 745 + uint16(rng.IntN(256))})
		if r.Outcome == Candidate {
			f.a.Reject(src)
		}
		if k%1000 == 0 {
			f.clk.Advance(time.Millisecond)
		}
	}
	f.wantCandidate(got, [8]byte(seqA))
	s := f.a.Stats()
	if s.Sources > maxSources {
		t.Fatalf("%d sources, bound %d", s.Sources, maxSources)
	}
	if s.Evictions == 0 {
		t.Fatal("no evictions under a flood of 131072 addresses into 1000 slots")
	}
	if len(f.a.chunks) != 1 || len(f.a.chunks[0]) != maxSources || f.a.used > maxSources {
		t.Fatalf("storage grew past the bound: %d chunks, %d entries", len(f.a.chunks), f.a.used)
	}
	// Everything drains by timer.
	f.clk.Advance(time.Hour)
	if s := f.a.Stats(); s.Sources != 0 || s.LockedOut != 0 {
		t.Fatalf("after an hour: %+v", s)
	}
}

func TestConcurrentUseWithRealTimer(t *testing.T) {
	a, err := New(Config{SequenceTimeout: time.Millisecond, Lockout: time.Millisecond, MaxSources: 64, LockoutFailures: 1}, clock.Real{})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := range 20_000 {
				src := netip.AddrFrom4([4]byte{10, byte(g), 0, byte(k % 100)})
				r, err := a.Add(Hit{Src: src, Proto: UDP, SrcPort: uint16(k), DstPort: 745 + uint16(k%256)})
				if err != nil {
					t.Error(err)
					return
				}
				if r.Outcome == Candidate {
					if k%2 == 0 {
						a.Accept(src)
					} else {
						a.Reject(src)
					}
				}
			}
		}()
	}
	wg.Wait()
	s := a.Stats()
	if s.Sources > 64 || s.LockedOut > s.Sources {
		t.Fatalf("stats out of bounds: %+v", s)
	}
	if s.Hits+s.Retransmissions+s.LockedOutHits != 80_000 {
		t.Fatalf("hits do not add up to 80000: %+v", s)
	}
}

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
		want string // substring of the error; "" means valid
	}{
		{"zero config takes defaults", Config{}, ""},
		{"highest base", Config{Base: 65280}, ""},
		{"base too high", Config{Base: 65281}, "base 65281"},
		{"negative sequence timeout", Config{SequenceTimeout: -time.Second}, "sequence timeout"},
		{"sub-millisecond sequence timeout", Config{SequenceTimeout: time.Microsecond}, "sequence timeout"},
		{"sequence timeout over an hour", Config{SequenceTimeout: 61 * time.Minute}, "sequence timeout"},
		{"negative max sources", Config{MaxSources: -1}, "max sources"},
		{"too many sources", Config{MaxSources: MaxMaxSources + 1}, "max sources"},
		{"max hits below a sequence", Config{MaxHits: 7}, "max hits 7"},
		{"max hits over 255", Config{MaxHits: 256}, "max hits 256"},
		{"negative lockout failures", Config{LockoutFailures: -3}, "lockout failures"},
		{"lockout failures over 255", Config{LockoutFailures: 256}, "lockout failures"},
		{"negative lockout", Config{Lockout: -time.Minute}, "lockout -1m0s"},
		{"lockout over a day", Config{Lockout: 25 * time.Hour}, "lockout 25h0m0s"},
		{"smallest table", Config{MaxSources: 1, MaxHits: 8, LockoutFailures: 1, Lockout: time.Millisecond, SequenceTimeout: time.Millisecond}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Validate()
			_, nerr := New(tc.cfg, clock.NewFake(t0))
			if (err == nil) != (nerr == nil) {
				t.Fatalf("Validate %v but New %v", err, nerr)
			}
			if tc.want == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "knock: ") {
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
	if _, err := New(Config{}, nil); err == nil {
		t.Fatal("New with a nil clock succeeded")
	}
	d := Config{}.WithDefaults()
	if d.Base != 745 || d.SequenceTimeout != 10*time.Second || d.MaxSources != 65536 || d.MaxHits != 16 || d.LockoutFailures != 3 || d.Lockout != time.Minute {
		t.Fatalf("defaults %+v", d)
	}
}

func TestFailureMemoryOnArrival(t *testing.T) {
	// The clock stands still, so only arrival times decide. Last hit at 0s;
	// hits die at 10s; the two failures are remembered until 70s. With
	// penalty, the expiry timer has moved the source to the penalty list
	// before the third sequence arrives.
	for _, tc := range []struct {
		name    string
		at      time.Duration
		penalty bool
		locked  bool
	}{
		{"third failure inside the memory", 70*time.Second - time.Millisecond, false, true},
		{"third failure after the memory", 70 * time.Second, false, false},
		{"penalty entry, timer behind, inside the memory", 70*time.Second - time.Millisecond, true, true},
		{"penalty entry, timer behind, after the memory", 70 * time.Second, true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, Config{SequenceTimeout: 10 * time.Second, LockoutFailures: 3, Lockout: 60 * time.Second})
			src := addr("192.0.2.1")
			hits := 17
			if tc.penalty {
				hits = 16
			}
			if k := f.failing("192.0.2.1", wrong(100, hits)); k != -1 {
				t.Fatalf("locked at knock %d", k)
			}
			if tc.penalty {
				f.clk.Advance(10 * time.Second) // the timer moves the entry to the penalty list
				if n := f.a.Stats().Sources; n != 1 {
					t.Fatalf("sources %d, want the penalty entry", n)
				}
			}
			var r Result
			for k, off := range seqA {
				r = f.hit(Hit{Src: src, Proto: TCP, SrcPort: uint16(k), DstPort: 745 + uint16(off), Time: t0.Add(tc.at)})
			}
			f.wantCandidate(r, [8]byte(seqA))
			if _, locked := f.a.Reject(src); locked != tc.locked {
				t.Fatalf("locked %v, want %v", locked, tc.locked)
			}
		})
	}
}

func TestMassExpiryInBatches(t *testing.T) {
	f := newFixture(t, Config{MaxSources: 3*sweepBatch + 10})
	for k := range 3*sweepBatch + 10 {
		f.knock(netip.AddrFrom4([4]byte{10, 1, byte(k >> 8), byte(k)}).String(), 1)
	}
	f.clk.Advance(DefaultSequenceTimeout)
	if s := f.a.Stats(); s.Sources != 0 || s.Expired != 3*sweepBatch+10 {
		t.Fatalf("after the timeout: %+v", s)
	}
	if n := f.clk.Pending(); n != 0 {
		t.Fatalf("%d timers pending with an empty table", n)
	}
}

func TestCloseStopsTheTimer(t *testing.T) {
	f := newFixture(t, Config{})
	f.knock("192.0.2.1", 1)
	f.a.Close()
	if n := f.clk.Pending(); n != 0 {
		t.Fatalf("%d timers pending after Close", n)
	}
	f.knock("192.0.2.2", 1)
	if n := f.clk.Pending(); n != 0 {
		t.Fatalf("Add after Close armed a timer")
	}
	f.clk.Advance(time.Hour)
	if n := f.a.Stats().Sources; n != 2 {
		t.Fatalf("sources %d: something expired by timer after Close", n)
	}
	// Expiry on arrival still works.
	f.wantOutcome(f.knock("192.0.2.1", 1), Stored)
}
