// Package daemon wires knockdaemon's stages together: log source ->
// logparse -> prefix and flag filter -> knock.Assembler -> cipher.Decoder
// -> per-user policy -> replay cache -> grant.Manager -> rules backend, with
// the state file, the control socket and configuration reloads around it.
//
// The pipeline runs on the source's single emit goroutine; a line that is
// not a knock costs no allocation. Grant expiry and close retries run on the
// grant manager's timers; the control socket answers on its own goroutines.
// The configuration that can change on reload (keys, users, filters) is one
// immutable snapshot swapped atomically.
package daemon

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/knockdaemon/knock/cipher"
	"github.com/knockdaemon/knock/config"
	"github.com/knockdaemon/knock/door"
	"github.com/knockdaemon/knock/grant"
	"github.com/knockdaemon/knock/internal/clock"
	"github.com/knockdaemon/knock/knock"
	"github.com/knockdaemon/knock/logparse"
	"github.com/knockdaemon/knock/logsource"
	"github.com/knockdaemon/knock/replay"
	"github.com/knockdaemon/knock/rules"
	"github.com/knockdaemon/knock/state"
)

// Options are what New needs. Config, Keys, Backend and one of Source and
// OpenSource are required.
type Options struct {
	Config *config.Config
	Keys   []cipher.Key // from Config.LoadKeys, in user order
	Source logsource.Source
	// OpenSource, when Source is nil, makes the source once the state is
	// loaded, resuming at the saved position (file sources).
	OpenSource func(resume logsource.Position) (logsource.Source, error)
	Backend    rules.Backend
	Clock      clock.Clock  // nil: the wall clock
	Logger     *slog.Logger // nil: discard
	// LogLevel, when set, is adjusted on reload to the new log_level.
	LogLevel *slog.LevelVar
	// PositionInterval is how often the log position is written when only
	// it changed (default 1s).
	PositionInterval time.Duration
	// RetryMin and RetryMax bound the backoff of failed closes (defaults
	// 1s and 60s).
	RetryMin, RetryMax time.Duration
	// NoControl disables the control socket (tests of the pipeline alone).
	NoControl bool
	// DoorRunner runs the doors' start and stop commands (default a new
	// rules.ExecRunner, inside [backend] netns when that is set).
	DoorRunner rules.Runner
}

// settings is the part of the configuration that a reload may change.
type settings struct {
	cfg     *config.Config
	users   []*config.User // by key index
	decoder *cipher.Decoder
	prefix  string
	udp     bool
	set     logparse.Flags
	clear   logparse.Flags
	base    uint16
}

// Daemon is one running knockdaemon.
type Daemon struct {
	opt     Options
	clk     clock.Clock
	log     *slog.Logger
	backend rules.Backend
	source  logsource.Source

	cur    atomic.Pointer[settings]
	asm    *knock.Assembler
	grants *grant.Manager
	doors  *door.Service // nil without [[door]]
	replay *replay.Cache
	sw     *state.Writer[State]
	// journal holds the replay entries accepted since the state file
	// was last written (nil when it could not be opened: decide then
	// writes the whole state file before each opening).
	journal *state.Journal[replay.Entry]

	ctr      counters
	started  time.Time
	hit      logparse.Hit // the pipeline goroutine's reusable hit
	reloadMu sync.Mutex

	posMu    sync.Mutex
	pos      logsource.Position // just past the last line handled
	savedPos logsource.Position
	posSeen  bool // a line of this run set pos

	// priming: the source delivers again the lines up to resumedAt (the
	// restored position) first; see prime. Pipeline goroutine only.
	priming   bool
	resumedAt logsource.Position

	stateBroken atomic.Bool // the last state write failed
	stopping    atomic.Bool // shutdown began without the source: drop lines

	logSec     int64 // the second logCount counts in (pipeline goroutine)
	logCount   int
	suppressed atomic.Uint64 // rejection lines left out since the last report
}

// readyWait bounds the wait for a source's readiness.
const readyWait = 10 * time.Second

// sourceStopGrace is how long Run waits for the source to return once
// its context ended.
const sourceStopGrace = 5 * time.Second

// counters are the daemon's statistics, for status. lines, firewall,
// malformed, hits and candidates are written by the pipeline goroutine
// only (see inc); the others also by the control socket and timers.
type counters struct {
	lines, firewall, malformed, hits, candidates, accepted, lockouts atomic.Uint64
	rejected                                                         [numReasons]atomic.Uint64
	opened, extended, closed, openFailed                             atomic.Uint64
}

// inc adds one to a counter that only the pipeline goroutine writes: a
// load and a store, no locked instruction, and readers still see whole
// values.
func inc(c *atomic.Uint64) { c.Store(c.Load() + 1) }

// Rejection reasons, as logged (docs/ARCHITECTURE.md).
const (
	rCheck = iota
	rPort0
	rNoKey
	rPolicyPort
	rPolicyTime
	rPolicyDelegation
	rPolicySource
	rReplay
	rLockout
	numReasons
)

var reasonNames = [numReasons]string{"check", "port0", "nokey", "policy_port", "policy_time",
	"policy_delegation", "policy_source", "replay", "lockout"}

func reasonIndex(r config.Reason) int {
	switch r {
	case config.PolicyPort:
		return rPolicyPort
	case config.PolicyTime:
		return rPolicyTime
	case config.PolicyDelegation:
		return rPolicyDelegation
	case config.PolicySource:
		return rPolicySource
	}
	return rCheck
}

// New builds a daemon: it checks the options, builds the stages and loads
// nothing yet (Run restores the state).
func New(opt Options) (*Daemon, error) {
	if opt.Config == nil || (opt.Source == nil && opt.OpenSource == nil) || opt.Backend == nil {
		return nil, errors.New("daemon: config, source and backend are required")
	}
	if opt.Clock == nil {
		opt.Clock = clock.Real{}
	}
	if opt.Logger == nil {
		opt.Logger = slog.New(slog.DiscardHandler)
	}
	if opt.PositionInterval <= 0 {
		opt.PositionInterval = time.Second
	}
	d := &Daemon{opt: opt, clk: opt.Clock, log: opt.Logger, backend: opt.Backend, source: opt.Source,
		replay: replay.New(opt.Clock)}
	s, err := newSettings(opt.Config, opt.Keys)
	if err != nil {
		return nil, err
	}
	d.cur.Store(s)
	k := opt.Config.Knock
	d.asm, err = knock.New(knock.Config{
		Base:            uint16(k.Base),
		SequenceTimeout: k.SequenceTimeout.Duration,
		MaxSources:      k.MaxSources,
		MaxHits:         k.MaxHits,
		LockoutFailures: k.LockoutFailures,
		Lockout:         k.Lockout.Duration,
	}, d.clk)
	if err != nil {
		return nil, fmt.Errorf("daemon: %w", err)
	}
	d.sw = state.NewWriter(opt.Config.Daemon.StateFile, State{Version: StateVersion}, state.WriterOptions{
		Clock:    d.clk,
		Interval: opt.PositionInterval,
		OnError: func(err error) {
			d.stateBroken.Store(true)
			d.log.Error("cannot write the state file; carrying on from memory and retrying", "err", err)
		},
		OnRecover: func() {
			d.stateBroken.Store(false)
			d.log.Info("state file written again", "path", opt.Config.Daemon.StateFile)
		},
	})
	d.grants, err = grant.New(grant.Config{
		Backend:  opt.Backend,
		Clock:    d.clk,
		Logger:   d.log,
		Persist:  d.persistGrants,
		RetryMin: opt.RetryMin,
		RetryMax: opt.RetryMax,
	})
	if err != nil {
		d.asm.Close()
		d.replay.Close()
		return nil, fmt.Errorf("daemon: %w", err)
	}
	// Doors open through the same grant manager (user "door:NAME"), for
	// exactly their cmd_timeout (grant.Manager.OpenFor).
	// Their start/stop commands run where the firewall commands run: inside
	// [backend] netns when it is set, as the exec backend's templates do.
	runner := opt.DoorRunner
	if runner == nil {
		runner = rules.NetnsRunner(new(rules.ExecRunner), opt.Config.Backend.Netns)
	}
	d.doors, err = door.NewService(door.ServiceConfig{
		Doors: opt.Config.Doors, Grants: d.grants, Runner: runner, Clock: d.clk, Logger: d.log,
		MaxSources: k.MaxSources,
		PersistPending: func(p []door.Pending) error {
			err := d.sw.UpdateNow(func(s *State) { s.DoorPending = p })
			d.noteStateErr(err)
			return err
		},
	})
	if err != nil {
		d.grants.Stop()
		d.asm.Close()
		d.replay.Close()
		return nil, fmt.Errorf("daemon: doors: %w", err)
	}
	return d, nil
}

func newSettings(c *config.Config, keys []cipher.Key) (*settings, error) {
	if len(keys) != len(c.Users) {
		return nil, fmt.Errorf("daemon: %d keys for %d users", len(keys), len(c.Users))
	}
	s := &settings{
		cfg:     c,
		decoder: cipher.NewDecoder(keys, c.Knock.MaxSkew.Duration),
		prefix:  c.Source.Prefix,
		udp:     c.Knock.UDP,
		set:     c.Knock.FlagsSet,
		clear:   c.Knock.FlagsClear,
		base:    uint16(c.Knock.Base),
	}
	for i := range c.Users {
		if keys[i].Name != c.Users[i].Name {
			return nil, fmt.Errorf("daemon: key %d is %q, user is %q", i, keys[i].Name, c.Users[i].Name)
		}
		s.users = append(s.users, &c.Users[i])
	}
	return s, nil
}

// persistGrants is the grant manager's Persist: grants are written before
// an open or close is reported.
func (d *Daemon) persistGrants(gs []grant.Grant) error {
	err := d.sw.UpdateNow(func(s *State) { s.Grants = gs })
	d.noteStateErr(err)
	return err
}

func (d *Daemon) noteStateErr(err error) {
	if err != nil {
		if !d.stateBroken.Swap(true) {
			d.log.Error("cannot write the state file; carrying on from memory and retrying", "err", err)
		}
	}
}

// Run restores the state, prepares the firewall, serves the control
// socket and follows the log until ctx ends or the source fails. On the way
// out it closes every opening when close_on_exit is set and flushes the
// state. The returned error is nil after a clean stop.
func (d *Daemon) Run(ctx context.Context) error {
	d.started = d.clk.Now()
	cfg := d.cur.Load().cfg
	// Everything that can refuse to start is tried before the firewall
	// is touched: nothing is half-applied by a daemon that cannot run.
	var ctl *net.UnixListener
	if !d.opt.NoControl {
		var err error
		if ctl, err = listenControl(cfg.Daemon.ControlSocket); err != nil {
			d.grants.Stop()
			d.asm.Close()
			d.replay.Close()
			return err
		}
	}
	closeCtl := func() {
		if ctl != nil {
			ctl.Close()
		}
		// The run ends before it began: stop the timers, write nothing
		// (the state file may be a newer daemon's).
		d.asm.Close()
		d.replay.Close()
	}
	st, err := d.restoreState()
	if err != nil {
		closeCtl()
		d.grants.Stop()
		return err
	}
	if d.source == nil {
		src, err := d.opt.OpenSource(st.Position)
		if err != nil {
			closeCtl()
			d.grants.Stop()
			return fmt.Errorf("log source: %w", err)
		}
		d.source = src
	}
	if err := d.backend.Setup(ctx); err != nil {
		closeCtl()
		d.grants.Stop()
		return &FirewallError{Op: "setup", Backend: d.backend.Name(), Err: err}
	}
	d.openJournal()
	if err := d.grants.Restore(ctx, st.Grants); err != nil {
		d.log.Warn("some saved grants were skipped", "err", err)
	}
	if err := d.doors.Restore(st.DoorPending); err != nil {
		d.log.Error("pending door stop commands not restored", "err", err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	if ctl != nil {
		wg.Add(1)
		go func() { defer wg.Done(); d.serveControl(runCtx, ctl) }()
	}
	wg.Add(1)
	go func() { defer wg.Done(); d.positionLoop(runCtx) }()

	srcDone := make(chan error, 1)
	go func() { srcDone <- d.source.Run(runCtx, d.handleLine) }()
	var srcErr error
	srcEnded := false
	// A source that can say when it follows the log (kmsg seeked to the
	// end, the file open) is waited for, so that event=started means a
	// knock sent now is seen.
	if r, ok := d.source.(interface{ Ready() <-chan struct{} }); ok {
		select {
		case <-r.Ready():
			d.noteStart()
		case srcErr = <-srcDone:
			srcEnded = true
		case <-time.After(readyWait):
			d.log.Warn("log source not ready yet; starting anyway", "source", d.source.String())
		case <-ctx.Done():
		}
	}
	d.log.Info("knockdaemon running", "event", "started", "source", d.source.String(), "backend", d.backend.Name(),
		"users", len(cfg.Users), "grants", len(st.Grants), "state", cfg.Daemon.StateFile)
	if !srcEnded {
		select {
		case srcErr = <-srcDone:
		case <-ctx.Done():
			select {
			case srcErr = <-srcDone:
			case <-time.After(sourceStopGrace):
				// A reader that cannot be interrupted (a plain io.Reader)
				// must not keep the openings open: stop without it.
				d.stopping.Store(true)
				d.log.Warn("log source did not stop in time; shutting down without it", "source", d.source.String())
			}
		}
	}
	cancel()
	wg.Wait()
	if ctx.Err() == nil && srcErr == nil {
		d.log.Info("log source ended", "source", d.source.String())
	}
	return errors.Join(srcErrIfReal(srcErr, ctx), d.shutdown())
}

// FirewallError is a backend that failed before the daemon could run.
type FirewallError struct {
	Op, Backend string
	Err         error
}

func (e *FirewallError) Error() string {
	return fmt.Sprintf("firewall %s (%s): %v", e.Op, e.Backend, e.Err)
}

func (e *FirewallError) Unwrap() error { return e.Err }

func srcErrIfReal(err error, ctx context.Context) error {
	if err == nil || errors.Is(err, context.Canceled) && ctx.Err() != nil {
		return nil
	}
	return fmt.Errorf("log source: %w", err)
}

func (d *Daemon) restoreState() (State, error) {
	cfg := d.cur.Load().cfg
	path := cfg.Daemon.StateFile
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		d.log.Error("cannot create the state file's directory; carrying on from memory", "err", err)
	}
	_ = state.RemoveStaleTemps(path)
	st, err := LoadState(path)
	if err != nil {
		var ve *state.VersionError
		if errors.As(err, &ve) {
			return st, err
		}
		// A corrupt file must not stop the daemon from closing what it
		// can: keep it aside, start from what the firewall lists.
		aside := path + ".corrupt"
		d.log.Error("state file unreadable; moved aside, reconciling from the firewall", "err", err, "moved_to", aside)
		_ = renameAside(path, aside)
		st = State{Version: StateVersion}
	}
	if err := d.replay.Load(st.Replay); err != nil {
		d.log.Warn("some saved replay entries were skipped", "err", err)
	}
	d.posMu.Lock()
	d.pos, d.savedPos = st.Position, st.Position
	d.posMu.Unlock()
	d.resumedAt = st.Position
	d.priming = st.Position.Path == "" && st.Position != (logsource.Position{})
	d.sw.View(func(s *State) {
		s.Version = StateVersion
		s.Grants = st.Grants
		s.Replay = d.replay.Entries()
		s.Position = st.Position
		s.DoorPending = st.DoorPending
	})
	return st, nil
}

// openJournal opens the replay journal beside the state file and loads
// its entries after the state file's (an entry in both is harmless). It
// runs once the firewall is set up, so a daemon that cannot start
// creates no file. Without a journal, decide writes the whole state file
// before each opening.
func (d *Daemon) openJournal() {
	jpath := JournalPath(d.cur.Load().cfg.Daemon.StateFile)
	j, recs, info, err := state.OpenJournal[replay.Entry](jpath)
	if err != nil {
		d.log.Error("cannot open the replay journal; writing the whole state file before each opening instead", "err", err)
		return
	}
	if err := d.replay.Load(recs); err != nil {
		d.log.Warn("some journaled replay entries were skipped", "err", err)
	}
	if info.Torn || info.Damaged > 0 {
		d.log.Warn("replay journal had damaged records (a crash while writing?); they were skipped",
			"path", jpath, "torn_tail", info.Torn, "damaged", info.Damaged, "read", info.Records)
	}
	d.sw.View(func(s *State) { s.Replay = d.replay.Entries() })
	d.journal = j
	d.sw.SetJournal(j)
}

// JournalPath is the replay journal kept beside the state file.
func JournalPath(stateFile string) string { return stateFile + ".journal" }

func (d *Daemon) shutdown() error {
	cfg := d.cur.Load().cfg
	var errs []error
	{
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		d.doors.Close(ctx, cfg.Daemon.CloseOnExit)
		cancel()
	}
	if cfg.Daemon.CloseOnExit {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		if err := d.grants.CloseAll(ctx); err != nil {
			d.log.Error("openings left in the firewall at exit; the next start closes them", "err", err)
			errs = append(errs, err)
		}
		cancel()
	}
	d.reportSuppressed()
	d.grants.Stop()
	d.asm.Close()
	d.replay.Close()
	d.savePosition()
	if err := d.sw.Close(); err != nil {
		d.log.Error("final state write failed", "err", err)
		errs = append(errs, fmt.Errorf("state file: %w", err))
	}
	if d.journal != nil {
		_ = d.journal.Close()
	}
	// A backend's long-lived firewall command (nftables) ends here; it
	// would also end with the daemon, when its input pipe closes.
	if s, ok := d.backend.(interface{ Stop() error }); ok {
		_ = s.Stop()
	}
	d.log.Info("knockdaemon stopped", "close_on_exit", cfg.Daemon.CloseOnExit)
	return errors.Join(errs...)
}

// positionLoop writes the log position when it moved, coalesced.
func (d *Daemon) positionLoop(ctx context.Context) {
	t := time.NewTicker(d.opt.PositionInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			d.savePosition()
			d.reportSuppressed()
		}
	}
}

func (d *Daemon) savePosition() {
	d.posMu.Lock()
	pos := d.pos
	changed := pos != d.savedPos
	d.savedPos = pos
	d.posMu.Unlock()
	if changed {
		d.sw.Update(func(s *State) { s.Position = pos })
	}
}

func (d *Daemon) notePos(p logsource.Position) {
	if p == (logsource.Position{}) {
		return
	}
	d.posMu.Lock()
	d.pos = p
	d.posSeen = true
	d.posMu.Unlock()
}

// noteStart takes the position where a ready source began to follow the
// log (kmsg: its newest record; journald: its start time), unless a line
// of this run already moved it: a daemon restarted before it handled any
// line then resumes there instead of at the newest record, and loses
// nothing logged in between.
func (d *Daemon) noteStart() {
	sp, ok := d.source.(interface{ StartPosition() logsource.Position })
	if !ok {
		return
	}
	p := sp.StartPosition()
	if p == (logsource.Position{}) {
		return
	}
	d.posMu.Lock()
	if !d.posSeen {
		d.pos = p
	}
	d.posMu.Unlock()
	d.savePosition()
}

// handleLine is the pipeline for one line. It runs on the source's emit
// goroutine only.
func (d *Daemon) handleLine(l logsource.Line) {
	if d.stopping.Load() {
		return
	}
	if d.priming && d.primed(l) {
		return
	}
	inc(&d.ctr.lines)
	d.process(l)
	// The position moves past the line only once it has been handled, so
	// a crash never skips a knock that was still being decided.
	d.notePos(l.Pos)
}

// primed hands l to prime when it is at or before the resume point, and
// reports whether it did. The first line past the resume point ends the
// primes (a line without a position says nothing about where the source
// is).
//
//go:noinline
func (d *Daemon) primed(l logsource.Line) bool {
	if primes(l.Pos, d.resumedAt) {
		d.prime(l)
		return true
	}
	d.priming = l.Pos == (logsource.Position{})
	return false
}

// primes reports whether a line at p is at or before the resume point r
// of a kmsg or journald source: a line handled before the restart, which
// the source delivers again (logsource.KmsgOptions.Prime) so that a knock
// whose eight lines straddle the restart is assembled whole.
func primes(p, r logsource.Position) bool {
	switch {
	case p.Path != "" || r.Path != "":
		return false
	case p.Boot != "" && p.Boot == r.Boot:
		return p.Seq <= r.Seq
	case p.Boot == "" && r.Boot == "" && p.Stamp != 0 && r.Stamp != 0:
		return p.Stamp < r.Stamp || p.Stamp == r.Stamp && p.StampN <= r.StampN
	}
	return false
}

// prime feeds a line handled before the restart to the assembler only,
// to rebuild the partial sequences the restart lost. A candidate it
// completes was decided before the restart: it is never decided again
// (no opening, no rejection, no failure counted). Only an acceptance is
// mirrored, so that the assembler forgets that sequence's hits as it did
// then: the replay cache (restored) says which block was accepted.
func (d *Daemon) prime(l logsource.Line) {
	h := &d.hit
	if logparse.Parse(l.Text, h) != nil {
		return
	}
	s := d.cur.Load()
	if !strings.HasPrefix(h.Prefix, s.prefix) || l.Received.IsZero() {
		return
	}
	proto, ok := knockHit(s, h)
	if !ok {
		return
	}
	res, err := d.asm.Add(knock.Hit{Src: h.Src, Proto: proto, SrcPort: h.SrcPort, DstPort: h.DstPort, Time: l.Received})
	if err != nil || res.Outcome != knock.Candidate {
		return
	}
	block := res.Candidate
	accepted := false
	s.decoder.Decode(block, l.Received, func(m cipher.Match) bool {
		accepted = d.replay.Seen(m.Name, block, l.Received)
		return accepted
	})
	if accepted {
		d.asm.Accept(h.Src.Unmap())
	}
}

// knockHit reports whether h, a hit under the configured prefix, is a
// knock (in the knock ports, with the configured flags, or UDP when
// allowed) and its protocol.
func knockHit(s *settings, h *logparse.Hit) (knock.Proto, bool) {
	if h.DstPort < s.base || int(h.DstPort) > int(s.base)+255 {
		return 0, false
	}
	switch h.Proto {
	case logparse.ProtoTCP:
		if h.Flags&s.set != s.set || h.Flags&s.clear != 0 {
			return 0, false
		}
		return knock.TCP, true
	case logparse.ProtoUDP:
		return knock.UDP, s.udp
	}
	return 0, false
}

func (d *Daemon) process(l logsource.Line) {
	h := &d.hit
	if err := logparse.Parse(l.Text, h); err != nil {
		if err != logparse.ErrNotFirewall {
			d.parseError(err)
		}
		return
	}
	inc(&d.ctr.firewall)
	s := d.cur.Load()
	if !strings.HasPrefix(h.Prefix, s.prefix) {
		return
	}
	now := l.Received
	if now.IsZero() {
		now = d.clk.Now()
	}
	// Door ports come first: they lie outside the knock range.
	if d.doors != nil && d.doors.HandleHit(context.Background(), h, now) {
		return
	}
	proto, ok := knockHit(s, h)
	if !ok {
		return
	}
	inc(&d.ctr.hits)
	res, err := d.asm.Add(knock.Hit{Src: h.Src, Proto: proto, SrcPort: h.SrcPort, DstPort: h.DstPort, Time: now})
	if err != nil || res.Outcome != knock.Candidate {
		return
	}
	inc(&d.ctr.candidates)
	d.decide(s, h.Src.Unmap(), res.Candidate, now)
}

// parseError handles a firewall line that is not a usable hit.
func (d *Daemon) parseError(err error) {
	var limit *logparse.LimitNotice
	if errors.As(err, &limit) {
		// ipfw stopped logging a rule: knocks on it are no longer seen.
		d.log.Warn("the firewall's logging limit was reached: knocks may be missed until it is reset (ipfw resetlog, or raise net.inet.ip.fw.verbose_limit)",
			"limit", limit.Limit, "rule", limit.Rule)
		return
	}
	inc(&d.ctr.malformed)
	if d.log.Enabled(context.Background(), slog.LevelDebug) {
		d.log.Debug("malformed firewall line", "err", err)
	}
}

// decide runs one candidate through the decoder, the policies and the
// replay cache, and applies an accepted request.
func (d *Daemon) decide(s *settings, src netip.Addr, block [8]byte, now time.Time) {
	var (
		acc      cipher.Match
		accepted bool
		reason   = -1
		refused  cipher.Match
	)
	// now is when the line arrived (a resumed line arrived before the
	// restart); wall is the time of this decision.
	wall := d.clk.Now()
	res := s.decoder.Decode(block, now, func(m cipher.Match) bool {
		u := s.users[m.Key]
		if r := u.Policy.Check(src, m.Request.Allow, m.Request.Port, m.Request.Time); r != config.Allowed {
			if reason < 0 {
				reason, refused = reasonIndex(r), m
			}
			return false
		}
		if d.replay.Seen(m.Name, block, now) || stale(m, s.cfg.Knock, wall) {
			if reason < 0 {
				reason, refused = rReplay, m
			}
			return false
		}
		acc, accepted = m, true
		return true
	})
	if !accepted {
		if reason < 0 {
			switch res.Reason {
			case cipher.ReasonPort0:
				reason = rPort0
			case cipher.ReasonNoKey:
				reason = rNoKey
			default:
				reason = rCheck
			}
		}
		d.reject(src, reason, refused, now)
		return
	}

	u := s.users[acc.Key]
	until := acc.ReplayUntil(s.cfg.Knock.MaxSkew.Duration, s.cfg.Knock.StaticReplayHorizon.Duration)
	d.replay.Add(acc.Name, block, until)
	d.asm.Accept(src)
	d.ctr.accepted.Add(1)
	target := config.Target(src, acc.Request.Allow)
	d.log.Info("knock accepted", "event", "accepted", "src", src, "user", u.Name, "target", target,
		"port", acc.Request.Port, "proto", u.Protocol, "minutes", minutesAttr(acc.Request.Time))
	// The replay entry is on disk before the firewall changes: a crash
	// after the open can never let the same sequence in twice. One
	// O_DSYNC append to the journal; the state file absorbs it on its
	// next (coalesced) write. The state in memory is updated first, so
	// that write's snapshot holds every entry the journal drops.
	var err error
	if d.journal != nil {
		d.sw.Update(func(st *State) { st.Replay = d.replay.Entries() })
		if err = d.journal.Append(replay.Entry{Key: acc.Name, Block: hex.EncodeToString(block[:]), Until: until}); err != nil {
			err = d.sw.Flush()
		}
	} else {
		err = d.sw.UpdateNow(func(st *State) { st.Replay = d.replay.Entries() })
	}
	d.noteStateErr(err)
	d.apply(u, src, target, acc.Request.Port, acc.Request.Time)
}

// staleSlack is the largest error allowed in dating a line read late
// (logsource dates a resumed kmsg record from its kernel time stamp), for
// static keys; see stale.
const staleSlack = 2 * time.Second

// stale reports whether m, decoded at its line's arrival time, must be
// refused at wall, the time of the decision, because its replay horizon
// has passed: the replay cache forgets an entry once its horizon is past
// on the wall clock (and does not load it after a restart), so a block
// accepted then could have been accepted before, in the run that a crash
// ended before it saved the log position. For a timed key the horizon
// depends only on the block's window, so the rule is exact; a static
// key's horizon runs from the arrival time, which a resumed line gets
// from a calculation, so staleSlack is taken off. A line handled as it
// arrives is never stale: the decoder accepts a window only up to its
// horizon.
func stale(m cipher.Match, k config.Knock, wall time.Time) bool {
	until := m.ReplayUntil(k.MaxSkew.Duration, k.StaticReplayHorizon.Duration)
	if m.Mode == cipher.Static {
		wall = wall.Add(min(staleSlack, k.StaticReplayHorizon.Duration/2))
	}
	return until.Before(wall)
}

func minutesAttr(t uint8) slog.Value {
	switch t {
	case cipher.TimeUnlimited:
		return slog.StringValue("unlimited")
	case cipher.TimeClose:
		return slog.StringValue("close")
	}
	return slog.IntValue(int(t))
}

func (d *Daemon) reject(src netip.Addr, reason int, m cipher.Match, now time.Time) {
	d.ctr.rejected[reason].Add(1)
	logIt := d.logBudget(now)
	if logIt {
		attrs := []any{"event", "rejected", "reason", reasonNames[reason], "src", src}
		if m.Name != "" {
			attrs = append(attrs, "user", m.Name, "port", m.Request.Port)
		}
		d.log.Info("knock rejected", attrs...)
	}
	if until, locked := d.asm.Reject(src); locked {
		d.ctr.lockouts.Add(1)
		if logIt || d.logBudget(now) {
			d.log.Warn("source locked out", "event", "lockout", "reason", "lockout", "src", src, "until", until.UTC().Format(time.RFC3339))
		}
	}
}

// MaxRejectLogs is how many rejected and lockout lines are logged per
// second. Beyond it (a flood of random knocks) they are counted, not
// logged, and a summary line says how many were left out: the counters
// in status stay exact, and the log cannot be used to fill the disk.
const MaxRejectLogs = 200

// logBudget reports whether one more rejection line may be logged in the
// second of now. Only the pipeline goroutine calls it.
func (d *Daemon) logBudget(now time.Time) bool {
	sec := now.Unix()
	if sec != d.logSec {
		d.logSec, d.logCount = sec, 0
	}
	if d.logCount < MaxRejectLogs {
		d.logCount++
		return true
	}
	d.suppressed.Add(1)
	return false
}

// reportSuppressed logs how many rejection lines were left out.
func (d *Daemon) reportSuppressed() {
	if n := d.suppressed.Swap(0); n > 0 {
		d.log.Warn("rejections not logged one by one: too many (a flood of knocks?); see status for the counters",
			"event", "rejected", "reason", "flood", "suppressed", n)
	}
}

// apply opens, extends or closes target's access to port for every
// protocol of the user's policy.
func (d *Daemon) apply(u *config.User, src, target netip.Addr, port uint16, minutes uint8) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, proto := range u.Policy.Protos {
		k := grant.Key{Addr: target, Proto: proto, Port: port}
		attrs := []any{"src", src, "user", u.Name, "addr", target, "proto", proto, "port", port}
		if minutes == cipher.TimeClose {
			ev, err := d.grants.Close(ctx, k)
			switch ev {
			case grant.Closed:
				d.ctr.closed.Add(1)
				d.log.Info("opening closed", append([]any{"event", "closed", "reason", "request"}, attrs...)...)
			case grant.NotFound:
				d.log.Info("close requested for an opening that is not open", append([]any{"event", "closed", "reason", "not_open"}, attrs...)...)
			default:
				// grant.Manager has logged event=close_failed and retries.
				d.log.Debug("close requested; the firewall refused it for now", append([]any{"err", err}, attrs...)...)
			}
			continue
		}
		ev, g, err := d.grants.Open(ctx, k, u.Name, minutes)
		switch ev {
		case grant.Opened, grant.Extended:
			if ev == grant.Opened {
				d.ctr.opened.Add(1)
			} else {
				d.ctr.extended.Add(1)
			}
			exp := "never"
			if !g.Expires.IsZero() {
				exp = g.Expires.UTC().Format(time.RFC3339)
			}
			d.log.Info("opening "+string(ev), append([]any{"event", string(ev), "expires", exp}, attrs...)...)
		default:
			d.ctr.openFailed.Add(1)
			d.log.Error("opening failed", append([]any{"event", "open_failed", "err", err}, attrs...)...)
		}
	}
}

// Reload applies a new configuration and keys without dropping grants or
// sequences in progress. Settings that only a restart can change (source,
// backend, state file, control socket, the assembler's limits) are kept,
// with a warning naming them.
func (d *Daemon) Reload(c *config.Config, keys []cipher.Key) error {
	d.reloadMu.Lock()
	defer d.reloadMu.Unlock()
	old := d.cur.Load().cfg
	s, err := newSettings(c, keys)
	if err != nil {
		return err
	}
	var restart []string
	if c.Source.Type != old.Source.Type || c.Source.Path != old.Source.Path {
		restart = append(restart, "source")
	}
	if !reflect.DeepEqual(c.Doors, old.Doors) {
		restart = append(restart, "doors")
	}
	if c.Backend != old.Backend {
		restart = append(restart, "backend")
	}
	if c.Daemon.StateFile != old.Daemon.StateFile || c.Daemon.ControlSocket != old.Daemon.ControlSocket {
		restart = append(restart, "daemon.state_file/control_socket")
	}
	ok, nk := old.Knock, c.Knock
	if ok.Base != nk.Base || ok.SequenceTimeout != nk.SequenceTimeout || ok.MaxSources != nk.MaxSources ||
		ok.MaxHits != nk.MaxHits || ok.LockoutFailures != nk.LockoutFailures || ok.Lockout != nk.Lockout {
		restart = append(restart, "knock (base, timeouts, lockout, table limits)")
		// The assembler keeps the old limits, so the filter must keep
		// the old knock ports too.
		s.base = uint16(ok.Base)
	}
	// Keep what cannot change in the settings' config too, so that status
	// and shutdown use what is really in effect.
	merged := *c
	merged.Source.Type, merged.Source.Path = old.Source.Type, old.Source.Path
	merged.Backend = old.Backend
	merged.Daemon.StateFile, merged.Daemon.ControlSocket = old.Daemon.StateFile, old.Daemon.ControlSocket
	merged.Knock.Base = old.Knock.Base
	merged.Doors, merged.DoorLines = old.Doors, old.DoorLines
	s.cfg = &merged
	d.cur.Store(s)
	if d.opt.LogLevel != nil {
		d.opt.LogLevel.Set(ParseLevel(c.Daemon.LogLevel))
	}
	// One-time sequence files are re-read: a used-up door opens again
	// once the admin has appended sequences.
	if err := d.doors.Reload(); err != nil {
		d.log.Error("one-time sequences not reloaded; the doors keep their current sequences", "err", err)
	}
	attrs := []any{"users", len(c.Users), "path", c.Path}
	if len(restart) > 0 {
		attrs = append(attrs, "needs_restart", strings.Join(restart, ", "))
		d.log.Warn("configuration reloaded; some changes take effect only after a restart", attrs...)
	} else {
		d.log.Info("configuration reloaded", attrs...)
	}
	return nil
}

// ParseLevel maps log_level to a slog level (info when unknown).
func ParseLevel(s string) slog.Level {
	switch s {
	case "debug":
		return slog.LevelDebug
	case "warn":
		return slog.LevelWarn
	case "error":
		return slog.LevelError
	}
	return slog.LevelInfo
}
