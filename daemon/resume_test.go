package daemon

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/knockdaemon/knock/cipher"
	"github.com/knockdaemon/knock/config"
	"github.com/knockdaemon/knock/internal/clock"
	"github.com/knockdaemon/knock/logsource"
)

// feedAt hands the daemon a line that arrived at received, as a source
// that resumed after a restart delivers the lines logged meanwhile.
func (h *harness) feedAt(text string, received time.Time, pos logsource.Position) {
	h.d.handleLine(logsource.Line{Text: []byte(text), Received: received, Pos: pos})
}

// TestResumedKnockIsDecidedAtItsArrival: a knock logged while the daemon
// was down is read after the restart, dated when it arrived. It opens
// while its window is valid and is refused once its window's horizon has
// passed, however it would decrypt at its arrival time.
func TestResumedKnockIsDecidedAtItsArrival(t *testing.T) {
	cases := []struct {
		name     string
		down     time.Duration // from the knock to the restart
		wantOpen bool
	}{
		{"a short restart", 2 * time.Second, true},
		{"within the window's skew", 50 * time.Second, true},
		{"at the window's horizon", 60 * time.Second, true},
		{"past the window's horizon", 61 * time.Second, false},
		{"long past it", 10 * time.Minute, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			clk := clock.NewFake(t0) // t0 starts a window: its horizon is t0+60s
			h := newHarness(t, dir, nil, clk)
			seq := h.sequence(h.keys[alice], "203.0.113.9", cipher.Request{Port: 22, Time: 5})
			clk.Advance(tc.down)
			h2 := newHarness(t, dir, nil, clk)
			for i, l := range seq {
				h2.feedAt(l, t0.Add(time.Duration(i)*time.Millisecond), logsource.Position{})
			}
			if tc.wantOpen {
				h2.wantOpen("203.0.113.9 tcp/22")
				// The opening lasts its minutes from now, not from the knock.
				if got := h2.be.timeout("203.0.113.9 tcp/22"); got != 5*time.Minute {
					t.Errorf("opening timeout %v, want 5m", got)
				}
				return
			}
			h2.wantOpen()
			if h2.log.count("event=rejected", "reason=replay", "src=203.0.113.9") != 1 {
				t.Errorf("stale knock not refused as a possible replay:\n%s", h2.log)
			}
		})
	}
}

// acceptThenCrash runs a daemon with a state directory that opens
// tcp/22 for 203.0.113.9 on alice's knock, then ends it as a crash
// would: no shutdown, only what was written synchronously is saved. It
// returns what a restart needs and the knock's lines.
func acceptThenCrash(t *testing.T) (dir string, be *fakeBackend, clk *clock.Fake, seq []string) {
	t.Helper()
	dir = t.TempDir()
	clk = clock.NewFake(t0)
	be = newFakeBackend()
	h := newHarness(t, dir, be, clk)
	seq = h.sequence(h.keys[alice], "203.0.113.9", cipher.Request{Port: 22, Time: 1})
	for _, l := range seq {
		h.feed(l)
	}
	h.wantOpen("203.0.113.9 tcp/22")
	h.d.grants.Stop()
	return dir, be, clk, seq
}

// TestNoBlockAcceptedTwiceAcrossACrash: a daemon that accepted a knock
// and crashed before it saved its log position reads the same lines
// again after the restart (dated when they arrived). The replay cache
// refuses them while it remembers the block, and the staleness rule once
// it has forgotten it: the block is never accepted twice.
func TestNoBlockAcceptedTwiceAcrossACrash(t *testing.T) {
	for _, down := range []time.Duration{time.Second, 30 * time.Second, 60 * time.Second, 61 * time.Second, 90 * time.Second, time.Hour} {
		t.Run(down.String(), func(t *testing.T) {
			dir, be, clk, seq := acceptThenCrash(t) // the position of these lines is not saved
			clk.Advance(down)
			h2 := newHarness(t, dir, be, clk)
			for _, l := range seq {
				h2.feedAt(l, t0, logsource.Position{})
			}
			if h2.log.count("event=accepted") != 0 {
				t.Fatalf("the block was accepted again after a %v restart:\n%s", down, h2.log)
			}
			if h2.log.count("event=rejected", "reason=replay", "src=203.0.113.9") != 1 {
				t.Errorf("no replay rejection:\n%s", h2.log)
			}
		})
	}
}

func TestStale(t *testing.T) {
	k := config.Knock{MaxSkew: config.Duration{Duration: 60 * time.Second}, StaticReplayHorizon: config.Duration{Duration: time.Hour}}
	w := cipher.WindowOf(t0)
	cases := []struct {
		name  string
		m     cipher.Match
		wall  time.Time
		stale bool
	}{
		{"timed, before the horizon", cipher.Match{Mode: cipher.Timed, Window: w}, t0.Add(59 * time.Second), false},
		{"timed, at the horizon", cipher.Match{Mode: cipher.Timed, Window: w}, t0.Add(60 * time.Second), false},
		{"timed, past the horizon", cipher.Match{Mode: cipher.Timed, Window: w}, t0.Add(60*time.Second + 1), true},
		{"static, handled as it arrives", cipher.Match{Mode: cipher.Static, At: t0}, t0, false},
		{"static, within the horizon less the slack", cipher.Match{Mode: cipher.Static, At: t0}, t0.Add(time.Hour - staleSlack), false},
		{"static, within the slack of the horizon", cipher.Match{Mode: cipher.Static, At: t0}, t0.Add(time.Hour - staleSlack + 1), true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := stale(tc.m, k, tc.wall); got != tc.stale {
				t.Fatalf("stale = %v, want %v", got, tc.stale)
			}
		})
	}
	t.Run("static, a horizon shorter than twice the slack", func(t *testing.T) {
		k := k
		k.StaticReplayHorizon.Duration = time.Second
		m := cipher.Match{Mode: cipher.Static, At: t0}
		if stale(m, k, t0) || !stale(m, k, t0.Add(500*time.Millisecond+1)) {
			t.Fatal("the slack is not half a short horizon")
		}
	})
}

// TestKmsgPositionSaved: the position of the last line handled, whatever
// source it came from, reaches the state file, and a state file written
// before kmsg and journald positions existed loads as it did.
func TestKmsgPositionSaved(t *testing.T) {
	dir := t.TempDir()
	clk := clock.NewFake(t0)
	h := newHarness(t, dir, nil, clk)
	pos := logsource.Position{Boot: "9cd18439-c4cb-4fae-bc65-e7d5b79730de", Seq: 86630, Stamp: t0.UnixMicro()}
	h.feedAt("6,86630,11955160133,-;not a knock", t0, pos)
	h.d.savePosition()
	if err := h.d.sw.Flush(); err != nil {
		t.Fatal(err)
	}
	st, err := LoadState(filepath.Join(dir, "state.json"))
	if err != nil {
		t.Fatal(err)
	}
	if st.Position != pos {
		t.Fatalf("saved position %+v, want %+v", st.Position, pos)
	}
	h2 := newHarness(t, dir, nil, clk)
	if h2.restore.Position != pos {
		t.Fatalf("restored position %+v, want %+v", h2.restore.Position, pos)
	}

	old := filepath.Join(t.TempDir(), "state.json")
	doc := `{"version":1,"grants":[],"replay":[],"position":{"path":"/var/log/kern.log","inode":42,"offset":1000}}`
	if err := os.WriteFile(old, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	st, err = LoadState(old)
	if err != nil {
		t.Fatal(err)
	}
	if want := (logsource.Position{Path: "/var/log/kern.log", Inode: 42, Offset: 1000}); st.Position != want {
		t.Fatalf("old state file position %+v, want %+v", st.Position, want)
	}
	// A file position is still written without the new fields.
	b, err := json.Marshal(st.Position)
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != `{"path":"/var/log/kern.log","inode":42,"offset":1000}` {
		t.Fatalf("file position written as %s", b)
	}
}

// startSource is a source that says where it started.
type startSource struct {
	nullSource
	start logsource.Position
}

func (s startSource) StartPosition() logsource.Position { return s.start }

// TestStartPositionSaved: the position a ready source started at is
// saved when no line moved the position yet, so a daemon restarted
// before it handled a line resumes there; a handled line wins.
func TestStartPositionSaved(t *testing.T) {
	start := logsource.Position{Boot: "b", Seq: 7}
	t.Run("no line handled", func(t *testing.T) {
		h := newHarness(t, "", nil, nil)
		h.d.source = startSource{start: start}
		h.d.noteStart()
		if h.d.pos != start {
			t.Fatalf("position %+v, want the start %+v", h.d.pos, start)
		}
	})
	t.Run("a line handled first", func(t *testing.T) {
		h := newHarness(t, "", nil, nil)
		h.d.source = startSource{start: start}
		later := logsource.Position{Boot: "b", Seq: 9}
		h.feedAt("6,9,1,-;x", t0, later)
		h.d.noteStart()
		if h.d.pos != later {
			t.Fatalf("position %+v, want the handled line's %+v", h.d.pos, later)
		}
	})
}

// kpos is the position of kmsg record seq of one boot.
func kpos(seq uint64) logsource.Position {
	return logsource.Position{Boot: "boot-1", Seq: seq, Stamp: t0.UnixMicro() + int64(seq)}
}

// savePos writes the daemon's log position to its state file now.
func (h *harness) savePos() {
	h.t.Helper()
	h.d.savePosition()
	if err := h.d.sw.Flush(); err != nil {
		h.t.Fatal(err)
	}
}

// TestStraddlingKnock: four hits of a knock are handled, the daemon
// stops (its position saved past them), the other four arrive while it
// is down. The source delivers the handled lines again (primes) before
// the new ones: the knock is assembled whole and opens, once.
func TestStraddlingKnock(t *testing.T) {
	for _, prime := range []bool{true, false} {
		t.Run(map[bool]string{true: "primed", false: "without the primes"}[prime], func(t *testing.T) {
			dir := t.TempDir()
			clk := clock.NewFake(t0)
			h := newHarness(t, dir, nil, clk)
			seq := h.sequence(h.keys[alice], "203.0.113.9", cipher.Request{Port: 22, Time: 5})
			for i, l := range seq[:4] {
				h.feedAt(l, t0, kpos(uint64(i+1)))
			}
			h.savePos()
			h.d.grants.Stop()
			clk.Advance(2 * time.Second)
			h2 := newHarness(t, dir, nil, clk)
			if !h2.d.priming || h2.d.resumedAt != kpos(4) {
				t.Fatalf("restored: priming %v at %+v", h2.d.priming, h2.d.resumedAt)
			}
			if prime {
				for i, l := range seq[:4] {
					h2.feedAt(l, t0, kpos(uint64(i+1)))
				}
			}
			for i, l := range seq[4:] {
				h2.feedAt(l, t0.Add(time.Second), kpos(uint64(i+5)))
			}
			if !prime {
				h2.wantOpen()
				return
			}
			h2.wantOpen("203.0.113.9 tcp/22")
			if n := h2.log.count("event=accepted"); n != 1 {
				t.Errorf("accepted %d times, want once:\n%s", n, h2.log)
			}
			if h2.d.priming {
				t.Error("still priming after a line past the resume point")
			}
			if h2.d.pos != kpos(8) {
				t.Errorf("position %+v, want the last new line's", h2.d.pos)
			}
		})
	}
}

// TestPrimesAreNeverDecided: sequences decided before the restart and
// delivered again as primes are not decided again: an accepted one is not
// accepted (nor refused as a replay), a refused one is not refused or
// counted again. The accepted one's hits are forgotten as they were then,
// so they spoil no candidate of the next knock.
func TestPrimesAreNeverDecided(t *testing.T) {
	dir := t.TempDir()
	clk := clock.NewFake(t0)
	be := newFakeBackend()
	h := newHarness(t, dir, be, clk)
	good := h.sequence(h.keys[alice], "203.0.113.9", cipher.Request{Port: 22, Time: 5})
	var bad []string
	for i := range 8 {
		h.sport++
		bad = append(bad, line("203.0.113.7", "TCP", h.sport, uint16(800+i), "SYN"))
	}
	var n uint64
	for _, l := range append(append([]string(nil), good...), bad...) {
		n++
		h.feedAt(l, t0, kpos(n))
	}
	h.wantOpen("203.0.113.9 tcp/22")
	if h.log.count("event=rejected", "src=203.0.113.7") != 1 {
		t.Fatalf("the bad sequence was not refused once:\n%s", h.log)
	}
	h.savePos()
	h.d.grants.Stop()
	clk.Advance(2 * time.Second)
	h2 := newHarness(t, dir, be, clk)
	n = 0
	for _, l := range append(append([]string(nil), good...), bad...) {
		n++
		h2.feedAt(l, t0, kpos(n))
	}
	if c := h2.log.count("event=accepted") + h2.log.count("event=rejected"); c != 0 {
		t.Fatalf("primes were decided again:\n%s", h2.log)
	}
	if got := h2.d.ctr.rejected[rCheck].Load() + h2.d.ctr.candidates.Load(); got != 0 {
		t.Fatalf("primes counted: %d", got)
	}
	// The next knock of the same source: no candidate mixes its hits
	// with the accepted sequence's.
	for i, l := range h2.sequence(h2.keys[alice], "203.0.113.9", cipher.Request{Port: 8000, Time: 5}) {
		h2.feedAt(l, clk.Now(), kpos(n+uint64(i)+1))
	}
	h2.wantOpen("203.0.113.9 tcp/22", "203.0.113.9 tcp/8000")
	if c := h2.log.count("event=rejected"); c != 0 {
		t.Fatalf("the next knock was spoilt by the primed hits:\n%s", h2.log)
	}
}

func TestPrimes(t *testing.T) {
	k := func(boot string, seq uint64) logsource.Position { return logsource.Position{Boot: boot, Seq: seq} }
	j := func(stamp int64, n int) logsource.Position { return logsource.Position{Stamp: stamp, StampN: n} }
	cases := []struct {
		name string
		p, r logsource.Position
		want bool
	}{
		{"kmsg before", k("a", 3), k("a", 4), true},
		{"kmsg at", k("a", 4), k("a", 4), true},
		{"kmsg after", k("a", 5), k("a", 4), false},
		{"kmsg of another boot", k("b", 3), k("a", 4), false},
		{"journald earlier stamp", j(10, 5), j(11, 1), true},
		{"journald same stamp, handled", j(11, 1), j(11, 1), true},
		{"journald same stamp, new", j(11, 2), j(11, 1), false},
		{"journald later stamp", j(12, 1), j(11, 1), false},
		{"a file", logsource.Position{Path: "/x", Offset: 1}, logsource.Position{Path: "/x", Offset: 2}, false},
		{"no position", logsource.Position{}, k("a", 4), false},
		{"kmsg against journald", k("a", 3), j(11, 1), false},
		{"journald against kmsg", logsource.Position{Stamp: 5, StampN: 1}, logsource.Position{Boot: "a", Seq: 9, Stamp: 9}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := primes(tc.p, tc.r); got != tc.want {
				t.Fatalf("primes(%+v, %+v) = %v, want %v", tc.p, tc.r, got, tc.want)
			}
		})
	}
}

// TestPrimingOutlivesALineWithoutPosition: a line without a position
// (journalctl output without a stamp) among the primes does not end them.
func TestPrimingOutlivesALineWithoutPosition(t *testing.T) {
	h := newHarness(t, "", nil, nil)
	h.d.priming, h.d.resumedAt = true, kpos(5)
	h.feedAt("-- a line of no position --", t0, logsource.Position{})
	if !h.d.priming {
		t.Fatal("a line without a position ended the primes")
	}
	h.feedAt("6,4,1,-;x", t0, kpos(4))
	if !h.d.priming || h.d.ctr.lines.Load() != 1 {
		t.Fatalf("a prime ended the primes or was counted: priming %v, lines %d", h.d.priming, h.d.ctr.lines.Load())
	}
	h.feedAt("6,6,1,-;x", t0, kpos(6))
	if h.d.priming {
		t.Fatal("a line past the resume point did not end the primes")
	}
}
