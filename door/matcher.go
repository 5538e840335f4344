package door

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/knockdaemon/knock/internal/clock"
	"github.com/knockdaemon/knock/logparse"
)

// Hit is one logged packet, in the values the matcher needs.
type Hit struct {
	// Src is the knocker. An IPv4-mapped IPv6 address is the same source
	// as its IPv4 address; a zone is ignored.
	Src     netip.Addr
	Proto   Proto
	SrcPort uint16
	DstPort uint16
	Flags   logparse.Flags // TCP only
	// Time is when the log line was received; zero means the clock's
	// Now. A time earlier than one already seen is taken as that time.
	Time time.Time
}

// Outcome says what Add did with a hit.
type Outcome uint8

const (
	// NotDoorPort: no door knocks on this port and protocol; ignored.
	NotDoorPort Outcome = iota + 1
	// Retransmission: same protocol, source port, destination port and
	// TCP flags as the source's previous hit (a retransmitted SYN); ignored.
	Retransmission
	// NoProgress: a door port, but no door advanced (wrong flags, or not
	// the next knock of any door — progress it broke was reset).
	NoProgress
	// Progress: at least one door advanced; none completed.
	Progress
	// Fired: Result.Door completed; the caller runs its action once.
	Fired
	// NotFired: a one-time door completed but its sequence could not be
	// marked as used, so the door did not fire (Add's error says why).
	NotFired
)

func (o Outcome) String() string {
	switch o {
	case NotDoorPort:
		return "not_door_port"
	case Retransmission:
		return "retransmission"
	case NoProgress:
		return "no_progress"
	case Progress:
		return "progress"
	case Fired:
		return "fired"
	case NotFired:
		return "not_fired"
	}
	return fmt.Sprintf("outcome(%d)", uint8(o))
}

// Result is what Add returns.
type Result struct {
	Outcome Outcome
	// Src is the knocker, unmapped, without zone.
	Src netip.Addr
	// Door is the door that fired (Fired, NotFired), nil otherwise.
	Door *Door
	// Sequence is the sequence that was knocked (for a one-time door, the
	// one now used up).
	Sequence []Step
	// Resets counts the doors whose progress this hit broke.
	Resets int
	// Remaining is, for a one-time door that fired, how many unused
	// sequences its file still holds (0: the door is now closed for good).
	Remaining int
}

// Stats are the matcher's counters.
type Stats struct {
	Sources         int    // sources in the table now
	Hits            uint64 // hits on door ports
	Retransmissions uint64
	Resets          uint64 // door progress broken by a wrong knock
	Expired         uint64 // door progress dropped by the sequence timeout
	Evictions       uint64 // sources dropped because the table was full
	Fired           uint64
	NotFired        uint64
}

// DefaultMaxSources bounds the source table.
const DefaultMaxSources = 65536

// Errors for hits the matcher cannot use.
var (
	ErrInvalidSource = errors.New("door: invalid source address")
	ErrInvalidProto  = errors.New("door: protocol is neither tcp nor udp")
)

// Options tune a Matcher.
type Options struct {
	// MaxSources bounds the sources tracked at once (default
	// DefaultMaxSources); when full, the source heard from least
	// recently is dropped (with its progress).
	MaxSources int
}

// Matcher follows knock sequences on doors, per source.
//
// Semantics (knockd(1), and knockd.c's sniff/process_attempt, where sound):
//   - Progress is kept per source and door. A knock advances a door when
//     it is that door's next (port, protocol) and, for TCP, passes the
//     door's flag rule. A TCP knock failing a door's flag rule is ignored
//     for that door (knockd: "IGNORE tcp packets that don't match").
//   - A knock on any door port that is not a door's next knock resets the
//     source's progress on that door (knockd discards the attempt). Unlike
//     knockd, the same knock then starts that door afresh when it is its
//     first knock, so a knocker who restarts a sequence is not punished
//     twice.
//   - A sequence must complete within the door's timeout, counted from
//     its first knock (knockd's seq_timeout).
//   - A completed door fires once: the source's progress on every door is
//     reset, and the knock is not counted for other doors. When several
//     doors complete on one knock the first in configuration order fires.
//
// knockd's faults it fixes:
//   - A retransmission (same protocol, source port, destination port and
//     flags as the source's previous knock, as a retransmitted SYN is) is not
//     counted again, and does not reset anything.
//   - Progress expires on a timer, which also frees the memory; knockd
//     keeps an abandoned attempt until the next packet arrives.
//   - The source table is bounded (Options.MaxSources, least recently
//     heard dropped first): a flood of spoofed sources costs bounded
//     memory and cannot evict more than it displaces.
//   - A one-time sequence is marked used in its file (atomically: temp
//     file, fsync, rename) before the door fires; if that fails the door
//     does not fire.
//
// Only door ports are followed (NotDoorPort for anything else, without
// taking the lock), as knockd's pcap filter passes only door ports. A
// Matcher is safe for concurrent use.
type Matcher struct {
	clk        clock.Clock
	maxSources int

	ports atomic.Pointer[map[Step]struct{}] // every door's steps; rebuilt when a one-time door moves on

	mu      sync.Mutex
	doors   []*doorState
	srcs    map[netip.Addr]*source
	lru     source // sentinel of the list ordered by last hit, oldest first
	latest  time.Time
	maxTO   time.Duration
	timer   clock.Timer
	timerAt time.Time
	gen     uint64
	closed  bool
	st      Stats
}

type doorState struct {
	d   *Door
	seq []Step // the current sequence; nil for a one-time door with none left
	ot  *OneTime
}

type source struct {
	addr       netip.Addr
	prog       []progress
	lastHit    time.Time
	lastProto  Proto // 0: none
	lastSport  uint16
	lastDport  uint16
	lastFlags  logparse.Flags
	prev, next *source
}

type progress struct {
	stage int // knocks matched so far; 0: none
	start time.Time
}

// NewMatcher returns a Matcher for doors (in configuration order), timed
// by clk. It opens the one-time sequences file of every one-time door and
// fails when one cannot be read or holds a malformed line.
func NewMatcher(doors []*Door, clk clock.Clock, opt Options) (*Matcher, error) {
	if clk == nil {
		return nil, errors.New("door: nil clock")
	}
	if opt.MaxSources < 0 {
		return nil, fmt.Errorf("door: MaxSources %d is negative", opt.MaxSources)
	}
	if opt.MaxSources == 0 {
		opt.MaxSources = DefaultMaxSources
	}
	if err := CheckSet(doors); err != nil {
		return nil, err
	}
	m := &Matcher{clk: clk, maxSources: opt.MaxSources, srcs: make(map[netip.Addr]*source)}
	m.lru.prev, m.lru.next = &m.lru, &m.lru
	for _, d := range doors {
		if d == nil || (d.Sequence == nil && d.OneTime == "") || d.Timeout <= 0 {
			return nil, fmt.Errorf("door: door %v is not compiled", d)
		}
		ds := &doorState{d: d, seq: d.Sequence}
		if d.OneTime != "" {
			ot, err := OpenOneTime(d.OneTime)
			if err != nil {
				return nil, fmt.Errorf("door %q: %w", d.Name, err)
			}
			ds.ot = ot
			ds.seq = ot.Current()
		}
		m.doors = append(m.doors, ds)
		m.maxTO = max(m.maxTO, d.Timeout)
	}
	m.rebuildPortsLocked()
	return m, nil
}

func (m *Matcher) rebuildPortsLocked() {
	ports := make(map[Step]struct{})
	for _, ds := range m.doors {
		for _, s := range ds.seq {
			ports[s] = struct{}{}
		}
	}
	m.ports.Store(&ports)
}

// IsDoorPort reports whether some door currently knocks on port/proto.
func (m *Matcher) IsDoorPort(proto Proto, port uint16) bool {
	_, ok := (*m.ports.Load())[Step{Port: port, Proto: proto}]
	return ok
}

// Sequence returns the current sequence of the named door (for a
// one-time door, the next unused one; nil when none is left).
func (m *Matcher) Sequence(name string) ([]Step, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, ds := range m.doors {
		if ds.d.Name == name {
			return slices.Clone(ds.seq), true
		}
	}
	return nil, false
}

// Add takes one hit and says what became of it. An error with an Outcome
// other than NotFired means the hit itself is unusable; state is then
// unchanged.
func (m *Matcher) Add(h Hit) (Result, error) {
	if h.Proto != TCP && h.Proto != UDP {
		return Result{}, ErrInvalidProto
	}
	if !h.Src.IsValid() {
		return Result{}, ErrInvalidSource
	}
	if !m.IsDoorPort(h.Proto, h.DstPort) {
		return Result{Outcome: NotDoorPort}, nil
	}
	src := h.Src.Unmap().WithZone("")
	res := Result{Src: src}

	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return Result{Outcome: NoProgress, Src: src}, nil
	}
	now := h.Time
	if now.IsZero() {
		now = m.clk.Now()
	}
	if now.Before(m.latest) {
		now = m.latest
	}
	m.latest = now
	m.st.Hits++

	s := m.srcs[src]
	if s == nil {
		s = m.newSourceLocked(src)
	} else if s.lastProto == h.Proto && s.lastSport == h.SrcPort && s.lastDport == h.DstPort && s.lastFlags == h.Flags {
		m.st.Retransmissions++
		res.Outcome = Retransmission
		return res, nil
	}
	s.lastProto, s.lastSport, s.lastDport, s.lastFlags = h.Proto, h.SrcPort, h.DstPort, h.Flags
	s.lastHit = now
	m.moveBackLocked(s)
	m.armLocked()

	step := Step{Port: h.DstPort, Proto: h.Proto}
	fired := -1
	advanced := false
	for i, ds := range m.doors {
		p := &s.prog[i]
		if p.stage > 0 && now.Sub(p.start) >= ds.d.Timeout {
			p.stage = 0
			m.st.Expired++
		}
		if ds.seq == nil || (h.Proto == TCP && !ds.d.Flags.Match(h.Flags)) {
			continue
		}
		if p.stage > 0 {
			if ds.seq[p.stage] == step {
				p.stage++
				advanced = true
			} else {
				p.stage = 0
				res.Resets++
				m.st.Resets++
			}
		}
		if p.stage == 0 && ds.seq[0] == step {
			p.stage, p.start = 1, now
			advanced = true
		}
		if p.stage == len(ds.seq) && fired < 0 {
			fired = i
		}
	}
	if fired < 0 {
		res.Outcome = NoProgress
		if advanced {
			res.Outcome = Progress
		}
		return res, nil
	}

	// Fire once: the knock is consumed, every door starts afresh.
	for i := range s.prog {
		s.prog[i] = progress{}
	}
	ds := m.doors[fired]
	res.Door = ds.d
	res.Sequence = slices.Clone(ds.seq)
	if ds.ot != nil {
		next, remaining, err := ds.ot.Use(ds.seq)
		if err != nil {
			m.st.NotFired++
			res.Outcome = NotFired
			return res, fmt.Errorf("door %q: one-time sequence not marked as used, door not opened: %w", ds.d.Name, err)
		}
		ds.seq = next
		res.Remaining = remaining
		// Progress on this door was for the used sequence.
		for _, o := range m.srcs {
			o.prog[fired] = progress{}
		}
		m.rebuildPortsLocked()
	}
	m.st.Fired++
	res.Outcome = Fired
	return res, nil
}

func (m *Matcher) newSourceLocked(src netip.Addr) *source {
	var s *source
	if len(m.srcs) >= m.maxSources {
		// Reuse the least recently heard source.
		s = m.lru.next
		m.unlinkLocked(s)
		delete(m.srcs, s.addr)
		m.st.Evictions++
		clear(s.prog)
		if len(s.prog) != len(m.doors) {
			s.prog = make([]progress, len(m.doors))
		}
		*s = source{prog: s.prog}
	} else {
		s = &source{prog: make([]progress, len(m.doors))}
	}
	s.addr = src
	m.srcs[src] = s // detached (prev nil) until Add moves it to the back
	return s
}

func (m *Matcher) unlinkLocked(s *source) {
	if s.prev == nil {
		return
	}
	s.prev.next = s.next
	s.next.prev = s.prev
	s.prev, s.next = nil, nil
}

func (m *Matcher) moveBackLocked(s *source) {
	m.unlinkLocked(s)
	s.prev = m.lru.prev
	s.next = &m.lru
	m.lru.prev.next = s
	m.lru.prev = s
}

// armLocked makes sure a timer is due when the oldest source's progress
// has all expired.
func (m *Matcher) armLocked() {
	first := m.lru.next
	if first == &m.lru || m.closed {
		return
	}
	due := first.lastHit.Add(m.maxTO)
	if m.timer != nil && !m.timerAt.After(due) {
		return
	}
	if m.timer != nil {
		m.timer.Stop()
	}
	m.gen++
	gen := m.gen
	m.timerAt = due
	d := due.Sub(m.clk.Now())
	m.timer = m.clk.AfterFunc(max(d, 0), func() { m.sweep(gen) })
}

// sweepBatch bounds the sources one timer run drops, so that a mass expiry
// after a flood does not hold the lock for long.
const sweepBatch = 4096

// sweep drops every source whose last knock is older than the longest
// door timeout: all its progress has expired.
func (m *Matcher) sweep(gen uint64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if gen != m.gen || m.closed {
		return
	}
	m.timer = nil
	now := m.clk.Now()
	if now.Before(m.latest) {
		now = m.latest
	}
	for n := 0; n < sweepBatch; n++ {
		s := m.lru.next
		if s == &m.lru || now.Sub(s.lastHit) < m.maxTO {
			break
		}
		for i := range s.prog {
			if s.prog[i].stage > 0 {
				m.st.Expired++
			}
		}
		m.unlinkLocked(s)
		delete(m.srcs, s.addr)
	}
	m.armLocked()
}

// Progress returns how many knocks of the named door src has matched so
// far (0 when none, or when they have expired).
func (m *Matcher) Progress(src netip.Addr, name string) int {
	src = src.Unmap().WithZone("")
	m.mu.Lock()
	defer m.mu.Unlock()
	s := m.srcs[src]
	if s == nil {
		return 0
	}
	now := m.clk.Now()
	if now.Before(m.latest) {
		now = m.latest
	}
	for i, ds := range m.doors {
		if ds.d.Name == name {
			p := s.prog[i]
			if p.stage > 0 && now.Sub(p.start) < ds.d.Timeout {
				return p.stage
			}
			return 0
		}
	}
	return 0
}

// Stats returns the counters.
func (m *Matcher) Stats() Stats {
	m.mu.Lock()
	defer m.mu.Unlock()
	st := m.st
	st.Sources = len(m.srcs)
	return st
}

// Close stops the timer and closes one-time sequence files; later hits
// make no progress.
func (m *Matcher) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil
	}
	m.closed = true
	if m.timer != nil {
		m.timer.Stop()
		m.timer = nil
	}
	return nil
}

// doorList returns the doors in configuration order.
func (m *Matcher) doorList() []*Door {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]*Door, len(m.doors))
	for i, ds := range m.doors {
		out[i] = ds.d
	}
	return out
}

// ReloadOneTime re-reads the one-time sequences file of every one-time
// door (on SIGHUP: sequences appended to a used-up file open the door
// again). A door whose current sequence changed loses the progress knocked
// on the old one. It returns the errors (a door whose file cannot be read
// keeps its sequence).
func (m *Matcher) ReloadOneTime() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	var errs []error
	changed := false
	for i, ds := range m.doors {
		if ds.ot == nil {
			continue
		}
		seq, err := ds.ot.Reload()
		if err != nil {
			errs = append(errs, fmt.Errorf("door %q: %w", ds.d.Name, err))
			continue
		}
		if equalSeq(seq, ds.seq) && (seq == nil) == (ds.seq == nil) {
			continue
		}
		ds.seq = seq
		changed = true
		for _, s := range m.srcs {
			s.prog[i] = progress{}
		}
	}
	if changed {
		m.rebuildPortsLocked()
	}
	return errors.Join(errs...)
}
