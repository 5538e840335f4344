// Package knock assembles knock sequences (docs/PROTOCOL.md §4): per source
// address it keeps the recent hits on the knock ports base..base+255 in
// arrival order, drops retransmissions and expired hits, and whenever a source
// has eight or more hits hands out the last eight as a candidate block for the
// decoder. It locks out sources whose candidates keep failing, and bounds its
// memory so that a flood from spoofed sources cannot grow it.
//
// The main rule of the lockout: a failure is counted once per sequence sent,
// not once per candidate. Candidates slide (every hit after the eighth makes
// one), so a single lost knock leaves seven hits that spoil the first seven
// candidates of the user's retry, and stray hits before a sequence spoil as
// many; counting each of those would lock the user out before their own
// eight knocks were ever tried. So a Reject counts towards the lockout only
// when at least eight new hits (SequenceLen) have been stored for the source
// since its last counted failure (or since it started, was accepted or
// started afresh after expiry or a lockout); every Reject still shows in
// Stats.Rejected, the counted ones in Stats.Failures. Up to seven lost or
// stray knocks therefore cost a user at most one counted failure. A guesser
// is still locked out after LockoutFailures x 8 hits: with the default 3,
// after exactly 24 hits, which make at most 1 + 2 x 8 = 17 candidates per
// lockout period instead of 3. At about 2^-39 success per candidate
// (docs/PROTOCOL.md §5) that is 17 x 2^-39, about 2^-35 a minute with the
// default 60 s lockout: an expected 2^39/17 minutes, some 60,000 years, of
// guessing per source address (against some 350,000 years at 3 candidates a
// minute), which is negligible either way. Failures outlive the source's
// hits for Lockout, so a guesser cannot reset them by pausing.
//
// An Assembler is safe for concurrent use. One mutex guards it; it is shared
// by the caller (normally the daemon's single pipeline goroutine calling Add,
// then Accept or Reject for each candidate) and the expiry timer, which runs
// on the clock's own goroutine. No method calls back into the caller, so the
// caller may hold its own locks while calling in.
//
// Memory is bounded by Config.MaxSources x 80 bytes plus the index (8 bytes
// a slot, at most 4 x MaxSources slots): about 5 MB + 1 MB at the default
// 65536 sources. A source keeps at most eight hits whatever Config.MaxHits
// says: every candidate is the last eight live hits, so an older hit can
// never be part of one. Storage grows in pointer-free chunks as sources
// appear (nothing for the garbage collector to scan) and is reused, never
// returned, after they expire. The hot path (Add of a knock from a known
// source or into a recycled slot) does not allocate.
//
// Time is kept at millisecond resolution: a hit is live for SequenceTimeout
// after it arrived and expires at that instant; a lockout ends Lockout after
// the Reject that began it.
//
// Known limit of the design (as in every log-based knocker): hits from a
// spoofed source address count for that address, so an attacker who can
// spoof a user's address can get it locked out; and under a flood of
// MaxSources new spoofed addresses the least recently active sources,
// lockouts included, are evicted.
package knock

import (
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"time"

	"github.com/knockdaemon/knock/internal/clock"
)

// Proto is the transport protocol of a knock.
type Proto uint8

const (
	TCP Proto = 1
	UDP Proto = 2
)

func (p Proto) String() string {
	switch p {
	case TCP:
		return "tcp"
	case UDP:
		return "udp"
	}
	return fmt.Sprintf("proto(%d)", uint8(p))
}

// Hit is one logged packet towards a knock port, in the plain values the
// assembler needs. The daemon converts logparse.Hit into it (after its own
// TCP-flag and protocol filtering).
type Hit struct {
	// Src is the knock source. An IPv4-mapped IPv6 address is the same source
	// as its IPv4 address; the zone of a link-local address is ignored.
	Src     netip.Addr
	Proto   Proto
	SrcPort uint16
	DstPort uint16
	// Time is when the log line was received. Zero means the clock's Now.
	// Times must not go backwards: an earlier time than one already seen is
	// taken as that latest time.
	Time time.Time
}

// Outcome says what Add did with a hit.
type Outcome uint8

const (
	// NotKnockPort: the destination port is outside base..base+255; ignored.
	NotKnockPort Outcome = iota + 1
	// LockedOut: the source is locked out; the hit was ignored. Reject
	// reported the lockout when it began, so log it there, not per hit.
	LockedOut
	// Retransmission: same protocol, source port and destination port as the
	// source's previous hit (a retransmitted SYN); not a new knock.
	Retransmission
	// Stored: the hit was kept; the source has fewer than eight hits.
	Stored
	// Candidate: the hit was kept and the source's last eight hits form
	// Result.Candidate. The caller must answer with Accept or Reject.
	Candidate
)

func (o Outcome) String() string {
	switch o {
	case NotKnockPort:
		return "not_knock_port"
	case LockedOut:
		return "locked_out"
	case Retransmission:
		return "retransmission"
	case Stored:
		return "stored"
	case Candidate:
		return "candidate"
	}
	return fmt.Sprintf("outcome(%d)", uint8(o))
}

// Result is what Add returns.
type Result struct {
	Outcome Outcome
	// Candidate holds, when Outcome is Candidate, the last eight knocks of the
	// source, oldest first, each as destination port minus base: the
	// ciphertext block C of docs/PROTOCOL.md §3.
	Candidate [SequenceLen]byte
}

// Errors for hits the assembler cannot use.
var (
	ErrInvalidSource = errors.New("knock: invalid source address")
	ErrInvalidProto  = errors.New("knock: protocol is neither tcp nor udp")
)

// Stats are the assembler's counters, for the daemon's status.
type Stats struct {
	Sources   int // sources in the table now, locked-out ones included
	LockedOut int // sources locked out now

	Hits            uint64 // knocks stored
	Retransmissions uint64 // hits dropped as retransmissions
	LockedOutHits   uint64 // hits ignored because their source was locked out
	Candidates      uint64 // candidates handed out
	Accepted        uint64 // Accept calls that consumed a sequence
	Rejected        uint64 // Reject calls for a source with a sequence in progress
	Failures        uint64 // of those, the ones counted towards a lockout
	Lockouts        uint64 // lockouts engaged
	Evictions       uint64 // sources dropped because the table was full
	Expired         uint64 // sources dropped because their time ran out
}

// Entry states.
const (
	stateFree    uint8 = iota
	stateActive        // on the active list, ordered by the time of the last hit
	statePenalty       // no live hits; remembers failures until t
	stateLocked        // locked out until t
)

// sweepBatch bounds the entries one timer run expires, so a mass expiry
// after a flood does not hold the lock for long; the timer re-arms at once
// when more are due.
const sweepBatch = 4096

const (
	chunkShift = 10
	chunkSize  = 1 << chunkShift
	chunkMask  = chunkSize - 1
	none       = -1

	// The low ringHeadBits of entry.ring hold the index of the oldest hit
	// (SequenceLen is 1<<ringHeadBits); the bits above, the number of hits
	// (0..SequenceLen).
	ringHeadBits = 3
	ringHeadMask = SequenceLen - 1
	ringOne      = 1 << ringHeadBits // one hit, in entry.ring
)

// entry is one source. Times are milliseconds since the assembler's epoch.
// Its hits are a ring of SequenceLen: the destination port minus base, and
// the arrival time modulo 2^32 (ages never exceed twice the sequence timeout,
// far below the wrap). It is 80 bytes (TestTableFootprint): the ring's head
// and count share one byte so that fresh fits.
type entry struct {
	times      [SequenceLen]uint32
	dst        [SequenceLen]byte
	key        [16]byte
	prev, next int32
	// t is, for an active entry, the time of its last stored hit (its hits
	// are all dead at t+timeout); for a penalty or locked entry, its deadline.
	t    int64
	ring uint8 // the ring of hits: head and count; see ringHeadBits
	// fresh counts the hits stored since the last counted failure (or since
	// the source started, was accepted or restarted), up to SequenceLen: a
	// Reject counts a failure only when it has reached SequenceLen.
	fresh    uint8
	failures uint8 // counted failures since the last Accept
	state    uint8
	// The previous hit, for the retransmission check; lastProto 0: none.
	lastSport uint16
	lastDst   uint8
	lastProto uint8
}

// hits returns the number of hits in e's ring.
func (e *entry) hits() uint8 { return e.ring >> ringHeadBits }

// slot returns the ring index of e's k-th oldest hit.
func (e *entry) slot(k uint8) uint8 { return (e.ring + k) & ringHeadMask }

// dropOldest removes e's oldest hit; the ring must not be empty.
func (e *entry) dropOldest() {
	e.ring = (e.ring&^ringHeadMask | (e.ring+1)&ringHeadMask) - ringOne
}

// push appends a hit to e's ring, which must not be full, and returns its
// index.
func (e *entry) push() uint8 {
	i := e.slot(e.hits())
	e.ring += ringOne
	return i
}

type list struct{ head, tail int32 }

// Assembler turns hits into candidate blocks. Create it with New.
type Assembler struct {
	cfg       Config
	clk       clock.Clock
	epoch     time.Time
	timeoutMs int64
	lockoutMs int64

	mu      sync.Mutex
	index   index     // source key -> entry
	chunks  [][]entry // of chunkSize entries (the last may be shorter)
	used    int32     // entries handed out from chunks so far
	free    int32     // head of the free list, linked through entry.next
	active  list      // ordered by entry.t (time of the last hit)
	penalty list      // ordered by entry.t (deadline), give or take timer lateness
	latest  int64     // latest time seen, ms since epoch
	locked  int

	timer   clock.Timer
	timerAt int64
	armed   bool
	gen     uint64
	closed  bool

	st Stats
}

// New returns an Assembler for cfg (zero fields take defaults), timed by clk.
func New(cfg Config, clk clock.Clock) (*Assembler, error) {
	if clk == nil {
		return nil, errors.New("knock: nil clock")
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.WithDefaults()
	return &Assembler{
		cfg:       cfg,
		clk:       clk,
		epoch:     clk.Now(),
		timeoutMs: cfg.SequenceTimeout.Milliseconds(),
		lockoutMs: cfg.Lockout.Milliseconds(),
		index:     newIndex(),
		free:      none,
		active:    list{none, none},
		penalty:   list{none, none},
	}, nil
}

// Config returns the assembler's configuration, defaults filled in.
func (a *Assembler) Config() Config { return a.cfg }

// Add takes one hit and says what became of it. A hit outside the knock ports
// costs no lock. An error means the hit itself is unusable (invalid source or
// protocol); the assembler's state is unchanged.
func (a *Assembler) Add(h Hit) (Result, error) {
	if h.Proto != TCP && h.Proto != UDP {
		return Result{}, ErrInvalidProto
	}
	if !h.Src.IsValid() {
		return Result{}, ErrInvalidSource
	}
	if h.DstPort < a.cfg.Base || h.DstPort-a.cfg.Base > 255 {
		return Result{Outcome: NotKnockPort}, nil
	}
	key := h.Src.Unmap().As16()
	dst := uint8(h.DstPort - a.cfg.Base)

	a.mu.Lock()
	defer a.mu.Unlock()
	now := a.stampLocked(h.Time)

	tag := a.index.hash(&key)
	i := a.lookup(&key, tag)
	var e *entry
	if i != none {
		e = a.ent(i)
		switch e.state {
		case stateLocked:
			if now < e.t {
				a.st.LockedOutHits++
				return Result{Outcome: LockedOut}, nil
			}
			// The lockout is over (the timer has not run yet): start afresh.
			a.unlink(&a.penalty, i)
			a.locked--
			e.failures = 0
			a.restart(e)
			a.pushBack(&a.active, i)
		case statePenalty:
			if now >= e.t {
				e.failures = 0
			}
			a.unlink(&a.penalty, i)
			a.restart(e)
			a.pushBack(&a.active, i)
		default: // stateActive
			if age := now - e.t; age >= a.timeoutMs {
				// Every hit has expired and the timer has not run yet: do
				// what it would have done.
				a.restart(e)
				if age >= a.timeoutMs+a.lockoutMs {
					e.failures = 0
				}
			}
		}
	} else {
		i = a.allocLocked(&key, tag)
		e = a.ent(i)
	}

	if e.lastProto == uint8(h.Proto) && e.lastSport == h.SrcPort && e.lastDst == dst {
		a.st.Retransmissions++
		return Result{Outcome: Retransmission}, nil
	}

	// Drop expired hits from the front (hits arrive in time order), then
	// the oldest when the ring is full.
	for e.hits() > 0 && int64(uint32(now)-e.times[e.slot(0)]) >= a.timeoutMs {
		e.dropOldest()
	}
	if e.hits() == SequenceLen {
		e.dropOldest()
	}
	slot := e.push()
	e.times[slot] = uint32(now)
	e.dst[slot] = dst
	if e.fresh < SequenceLen {
		e.fresh++
	}
	e.t = now
	e.lastProto, e.lastSport, e.lastDst = uint8(h.Proto), h.SrcPort, dst
	if a.active.tail != i {
		a.unlink(&a.active, i)
		a.pushBack(&a.active, i)
	}
	a.st.Hits++
	a.armLocked()

	if e.hits() < SequenceLen {
		return Result{Outcome: Stored}, nil
	}
	// A full ring: slot 0 is the oldest of the last eight.
	r := Result{Outcome: Candidate}
	for k := range uint8(SequenceLen) {
		r.Candidate[k] = e.dst[e.slot(k)]
	}
	a.st.Candidates++
	return r, nil
}

// Accept tells the assembler that src's latest candidate was accepted: its
// hits are consumed (a later hit starts a new sequence; a retransmission of
// the last knock is still recognised) and its failure count is reset. It
// reports false when src has no sequence in progress (nothing to consume).
func (a *Assembler) Accept(src netip.Addr) bool {
	if !src.IsValid() {
		return false
	}
	key := src.Unmap().As16()
	a.mu.Lock()
	defer a.mu.Unlock()
	i := a.lookup(&key, a.index.hash(&key))
	if i == none {
		return false
	}
	e := a.ent(i)
	if e.state != stateActive {
		return false
	}
	e.ring = 0
	e.fresh = 0
	e.failures = 0
	a.st.Accepted++
	return true
}

// Reject tells the assembler that src's latest candidate failed. The hits
// stay, so that the next hit forms a new candidate (a stray hit before a
// sequence does not spoil it). The failure counts towards a lockout only when
// at least SequenceLen hits have been stored for src since its last counted
// failure (see the package comment: one failure per sequence sent, not per
// sliding candidate). After Config.LockoutFailures counted failures with no
// Accept between them the source is locked out: its hits are dropped and it
// is ignored until the returned time; locked reports that this call began
// the lockout (log it once, here). Reject of a source with no sequence in
// progress does nothing and returns locked false.
func (a *Assembler) Reject(src netip.Addr) (until time.Time, locked bool) {
	if !src.IsValid() {
		return time.Time{}, false
	}
	key := src.Unmap().As16()
	a.mu.Lock()
	defer a.mu.Unlock()
	i := a.lookup(&key, a.index.hash(&key))
	if i == none {
		return time.Time{}, false
	}
	e := a.ent(i)
	if e.state != stateActive {
		return time.Time{}, false
	}
	a.st.Rejected++
	if e.fresh < SequenceLen {
		return time.Time{}, false // the tail of a sequence already counted
	}
	e.fresh = 0
	a.st.Failures++
	if e.failures < 255 {
		e.failures++
	}
	if int(e.failures) < a.cfg.LockoutFailures {
		return time.Time{}, false
	}
	now := a.stampLocked(time.Time{})
	a.unlink(&a.active, i)
	e.state = stateLocked
	e.ring = 0
	e.lastProto = 0
	e.t = now + a.lockoutMs
	a.pushBack(&a.penalty, i)
	a.locked++
	a.st.Lockouts++
	a.armLocked()
	return a.epoch.Add(time.Duration(e.t) * time.Millisecond), true
}

// Stats returns the counters.
func (a *Assembler) Stats() Stats {
	a.mu.Lock()
	defer a.mu.Unlock()
	s := a.st
	s.Sources = a.index.n
	s.LockedOut = a.locked
	return s
}

// Close stops the expiry timer. The assembler still answers afterwards, but
// hits then expire only when their source sends again; do not use it after
// Close except to read Stats.
func (a *Assembler) Close() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.closed = true
	if a.armed {
		a.timer.Stop()
		a.armed = false
	}
	a.gen++
}

// stampLocked converts t (zero: the clock's now) into milliseconds since the
// epoch, never earlier than the latest time already seen.
func (a *Assembler) stampLocked(t time.Time) int64 {
	if t.IsZero() {
		t = a.clk.Now()
	}
	ms := t.Sub(a.epoch).Milliseconds()
	if ms < a.latest {
		return a.latest
	}
	a.latest = ms
	return ms
}

func (a *Assembler) ent(i int32) *entry {
	return &a.chunks[i>>chunkShift][i&chunkMask]
}

// restart makes e an active entry with no hits, keeping its failures: a
// new sequence starts, so fresh does too.
func (a *Assembler) restart(e *entry) {
	e.state = stateActive
	e.ring = 0
	e.fresh = 0
	e.lastProto = 0
}

// allocLocked adds an empty active entry for key, evicting the least recently
// active source when the table is full. The entry is not yet on a list.
func (a *Assembler) allocLocked(key *[16]byte, tag uint32) int32 {
	if a.index.n >= a.cfg.MaxSources {
		a.evictLocked()
	}
	i := a.free
	if i != none {
		a.free = a.ent(i).next
	} else {
		if int(a.used) == len(a.chunks)*chunkSize {
			n := min(chunkSize, a.cfg.MaxSources-int(a.used))
			a.chunks = append(a.chunks, make([]entry, n))
		}
		i = a.used
		a.used++
	}
	*a.ent(i) = entry{key: *key, prev: none, next: none, state: stateActive}
	a.insertIndex(tag, i)
	return i
}

// evictLocked drops the least recently active source: the older of the
// active list's head (by its last hit) and the penalty list's head (by when
// it entered that list).
func (a *Assembler) evictLocked() {
	ai, pi := a.active.head, a.penalty.head
	victim := ai
	if ai == none || (pi != none && a.ent(pi).t-a.lockoutMs < a.ent(ai).t) {
		victim = pi
	}
	if victim == none {
		return
	}
	a.freeLocked(victim)
	a.st.Evictions++
}

func (a *Assembler) freeLocked(i int32) {
	e := a.ent(i)
	switch e.state {
	case stateActive:
		a.unlink(&a.active, i)
	case stateLocked:
		a.locked--
		a.unlink(&a.penalty, i)
	case statePenalty:
		a.unlink(&a.penalty, i)
	}
	a.deleteIndex(&e.key, i)
	e.state = stateFree
	e.prev = none
	e.next = a.free
	a.free = i
}

func (a *Assembler) pushBack(l *list, i int32) {
	e := a.ent(i)
	e.next = none
	e.prev = l.tail
	if l.tail != none {
		a.ent(l.tail).next = i
	} else {
		l.head = i
	}
	l.tail = i
}

// unlink removes i from l; an entry on no list (fresh from allocLocked) has
// prev and next none and is not l's head, so it is left alone.
func (a *Assembler) unlink(l *list, i int32) {
	e := a.ent(i)
	if e.prev != none {
		a.ent(e.prev).next = e.next
	} else if l.head == i {
		l.head = e.next
	} else {
		return
	}
	if e.next != none {
		a.ent(e.next).prev = e.prev
	} else {
		l.tail = e.prev
	}
	e.prev, e.next = none, none
}

// nextDeadlineLocked returns the earliest time at which the timer has work.
func (a *Assembler) nextDeadlineLocked() (int64, bool) {
	var d int64
	ok := false
	if h := a.active.head; h != none {
		d, ok = a.ent(h).t+a.timeoutMs, true
	}
	if h := a.penalty.head; h != none {
		if t := a.ent(h).t; !ok || t < d {
			d, ok = t, true
		}
	}
	return d, ok
}

// armLocked makes sure the one expiry timer is set no later than the
// earliest deadline. In steady state new deadlines lie after the armed one,
// so this costs a comparison.
func (a *Assembler) armLocked() {
	if a.closed {
		return
	}
	next, ok := a.nextDeadlineLocked()
	if !ok || (a.armed && a.timerAt <= next) {
		return
	}
	if a.armed {
		a.timer.Stop()
	}
	a.gen++
	gen := a.gen
	d := a.epoch.Add(time.Duration(next) * time.Millisecond).Sub(a.clk.Now())
	if d < 0 {
		d = 0
	}
	a.timer = a.clk.AfterFunc(d, func() { a.fire(gen) })
	a.timerAt = next
	a.armed = true
}

func (a *Assembler) fire(gen uint64) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed || gen != a.gen {
		return // stopped, or superseded by a later arm
	}
	a.armed = false
	now := a.stampLocked(time.Time{})
	a.expireLocked(now, sweepBatch)
	a.armLocked()
}

// expireLocked handles up to limit due entries: an active source whose hits
// have all expired is dropped, or kept on the penalty list for Lockout when
// it has failures to remember; a penalty or locked entry past its deadline is
// dropped.
func (a *Assembler) expireLocked(now int64, limit int) {
	for range limit {
		if i := a.active.head; i != none && now-a.ent(i).t >= a.timeoutMs {
			e := a.ent(i)
			if e.failures == 0 {
				a.freeLocked(i)
				a.st.Expired++
				continue
			}
			a.unlink(&a.active, i)
			e.state = statePenalty
			e.ring = 0
			e.fresh = 0
			e.lastProto = 0
			e.t += a.timeoutMs + a.lockoutMs
			a.pushBack(&a.penalty, i)
			continue
		}
		if i := a.penalty.head; i != none && now >= a.ent(i).t {
			a.freeLocked(i)
			a.st.Expired++
			continue
		}
		return
	}
}
