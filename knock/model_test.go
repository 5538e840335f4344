package knock

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"testing"
	"time"
)

// model is a plain, slow restatement of the assembler's rules (no table
// bound): a differential test drives both with the same random hits and
// compares every outcome, candidate and count.
type model struct {
	cfg  Config
	T, L int64 // ms
	srcs map[netip.Addr]*modelSrc

	rejected, failures, lockouts uint64 // as in Stats
}

type modelHit struct {
	t   int64
	dst byte
}

type modelSrc struct {
	hits        []modelHit
	lastT       int64
	hasLast     bool
	lastProto   Proto
	lastSport   uint16
	lastDst     byte
	failures    int // counted failures since the last accept
	fresh       int // hits stored since the last counted failure or (re)start
	locked      bool
	lockedUntil int64
}

func (m *model) add(h Hit, now int64) Result {
	if h.DstPort < m.cfg.Base || h.DstPort-m.cfg.Base > 255 {
		return Result{Outcome: NotKnockPort}
	}
	dst := byte(h.DstPort - m.cfg.Base)
	s := m.srcs[h.Src]
	if s == nil {
		s = &modelSrc{}
		m.srcs[h.Src] = s
	} else if s.locked {
		if now < s.lockedUntil {
			return Result{Outcome: LockedOut}
		}
		*s = modelSrc{}
	} else if age := now - s.lastT; age >= m.T {
		s.hits, s.hasLast, s.fresh = nil, false, 0
		if age >= m.T+m.L {
			s.failures = 0
		}
	}
	if s.hasLast && s.lastProto == h.Proto && s.lastSport == h.SrcPort && s.lastDst == dst {
		return Result{Outcome: Retransmission}
	}
	for len(s.hits) > 0 && now-s.hits[0].t >= m.T {
		s.hits = s.hits[1:]
	}
	if len(s.hits) == m.cfg.MaxHits {
		s.hits = s.hits[1:]
	}
	s.hits = append(s.hits, modelHit{now, dst})
	s.fresh++
	s.lastT, s.hasLast = now, true
	s.lastProto, s.lastSport, s.lastDst = h.Proto, h.SrcPort, dst
	if len(s.hits) < 8 {
		return Result{Outcome: Stored}
	}
	r := Result{Outcome: Candidate}
	for k, x := range s.hits[len(s.hits)-8:] {
		r.Candidate[k] = x.dst
	}
	return r
}

func (m *model) accept(src netip.Addr) {
	s := m.srcs[src]
	s.hits, s.failures, s.fresh = nil, 0, 0
}

// reject counts a failure once per sequence sent: only when eight hits have
// been stored since the last counted one (docs/PROTOCOL.md §5).
func (m *model) reject(src netip.Addr, now int64) bool {
	s := m.srcs[src]
	m.rejected++
	if s.fresh < 8 {
		return false
	}
	s.fresh = 0
	s.failures++
	m.failures++
	if s.failures < m.cfg.LockoutFailures {
		return false
	}
	*s = modelSrc{locked: true, lockedUntil: now + m.L}
	m.lockouts++
	return true
}

func (m *model) counts(now int64) (sources, locked int) {
	for _, s := range m.srcs {
		switch {
		case s.locked && now < s.lockedUntil:
			sources++
			locked++
		case s.locked:
		case now-s.lastT < m.T, s.failures > 0 && now-s.lastT < m.T+m.L:
			sources++
		}
	}
	return sources, locked
}

func TestAgainstModel(t *testing.T) {
	configs := []Config{
		{},
		{MaxHits: 8, LockoutFailures: 1},
		{MaxHits: 9, LockoutFailures: 2, Lockout: 5 * time.Second}, // lockout shorter than the sequence timeout
		{MaxHits: 12, SequenceTimeout: 3 * time.Second, LockoutFailures: 5, Lockout: 20 * time.Second},
		{MaxHits: 10, LockoutFailures: 255, SequenceTimeout: time.Hour}, // rings fill and wrap
	}
	var srcs []netip.Addr
	for k := range 6 {
		srcs = append(srcs, netip.AddrFrom4([4]byte{192, 0, 2, byte(k)}))
		srcs = append(srcs, netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 15: byte(k)}))
	}
	for ci, cfg := range configs {
		for seed := range uint64(8) {
			t.Run(fmt.Sprintf("config %d seed %d", ci, seed), func(t *testing.T) {
				f := newFixture(t, cfg)
				cfg := f.a.Config()
				m := &model{cfg: cfg, T: cfg.SequenceTimeout.Milliseconds(), L: cfg.Lockout.Milliseconds(), srcs: map[netip.Addr]*modelSrc{}}
				rng := rand.New(rand.NewPCG(seed, uint64(ci)))
				last := map[netip.Addr]Hit{}
				// Hits carry receive times that run ahead of the clock
				// (by up to lead) so that expiry on arrival, before the
				// timer had its turn, is exercised as well as the timer.
				lead := rng.IntN(2) == 0
				var now int64 // ms since t0, the latest time seen
				for op := range 4000 {
					step := int64(0)
					switch p := rng.IntN(100); {
					case p < 25:
						step = int64(rng.IntN(2500))
					case p < 27:
						step = int64(5000 + rng.IntN(80_000))
					}
					now += step
					if !lead || rng.IntN(8) == 0 {
						f.clk.Set(t0.Add(time.Duration(now) * time.Millisecond))
					}
					src := srcs[rng.IntN(len(srcs))]
					h := Hit{Src: src, Proto: TCP, SrcPort: uint16(rng.IntN(4)), DstPort: cfg.Base - 2 + uint16(rng.IntN(260))}
					if rng.IntN(10) == 0 {
						h.Proto = UDP
					}
					if prev, ok := last[src]; ok && rng.IntN(5) == 0 {
						h = prev
					}
					last[src] = h
					h.Time = t0.Add(time.Duration(now) * time.Millisecond)
					want := m.add(h, now)
					got, err := f.a.Add(h)
					if err != nil {
						t.Fatalf("op %d: %v", op, err)
					}
					if got != want {
						t.Fatalf("op %d at %dms, %+v: got %v %v, model %v %v", op, now, h, got.Outcome, got.Candidate, want.Outcome, want.Candidate)
					}
					if got.Outcome == Candidate {
						if rng.IntN(6) == 0 {
							m.accept(src)
							if !f.a.Accept(src) {
								t.Fatalf("op %d: Accept after a candidate found nothing", op)
							}
						} else {
							wantLocked := m.reject(src, now)
							until, locked := f.a.Reject(src)
							if locked != wantLocked {
								t.Fatalf("op %d: Reject locked %v, model %v", op, locked, wantLocked)
							}
							if locked && until.Sub(t0).Milliseconds() != now+m.L {
								t.Fatalf("op %d: locked until %v, want %dms", op, until.Sub(t0), now+m.L)
							}
						}
					}
					if s := f.a.Stats(); s.Rejected != m.rejected || s.Failures != m.failures || s.Lockouts != m.lockouts {
						t.Fatalf("op %d: rejected %d failures %d lockouts %d, model %d %d %d", op, s.Rejected, s.Failures, s.Lockouts, m.rejected, m.failures, m.lockouts)
					}
					if f.clk.Now().Sub(t0).Milliseconds() != now {
						continue // the timer is behind; counts may lag
					}
					ws, wl := m.counts(now)
					if s := f.a.Stats(); s.Sources != ws || s.LockedOut != wl {
						t.Fatalf("op %d at %dms: sources %d locked %d, model %d %d", op, now, s.Sources, s.LockedOut, ws, wl)
					}
				}
			})
		}
	}
}
