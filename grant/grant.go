// Package grant keeps the openings the daemon has granted: it opens them
// through a rules.Backend, closes them exactly when they expire, extends
// them when the same opening is asked for again, and never gives up on a
// close that failed.
//
// A grant is identified by its Key (address, protocol, port): there is at
// most one grant, and so one firewall opening, per Key.
//
// # Rules the Manager keeps
//
//   - Extending: opening a Key that is already open extends the grant. The
//     new expiry is the later of the current one and now+minutes (unlimited
//     is later than any time), so a short knock never shortens a long grant.
//     The backend's Open is called again with the remaining time, which
//     refreshes kernel timeouts and heals an opening a firewall reload lost.
//     The grant keeps its User and Created.
//   - Expiry is exact: each grant has its own timer, due at Expires. The
//     Timeout handed to the backend is the remaining time rounded up to a
//     whole second, so a kernel timeout never closes an opening early.
//   - Closing is written ahead: the grant is marked "closing" and persisted
//     before the backend's Close runs, and forgotten (and persisted again)
//     only after the Close succeeded. A crash in between leaves a "closing"
//     grant that Restore closes, never a revoked grant that comes back.
//   - A failed Close is never dropped: the grant stays, in state "closing",
//     visible in List and in the persisted snapshot, and the Close is retried
//     with exponential backoff (RetryMin doubling to RetryMax) until it
//     succeeds. Every failure is logged with event=close_failed.
//   - A failed Open leaves no open grant. The backend's Close is called to
//     remove anything half-applied; if that Close fails too, the Key stays as
//     a "closing" grant and is retried like any failed close.
//   - Opening a Key whose close is pending cancels the pending close and
//     opens a fresh grant (Created now, Expires now+minutes): the opening is
//     wanted again, and Open is idempotent in every backend.
//
// # Logging
//
// Open and Close do not log their outcome: they return an Event, and the
// caller logs it with what it knows (the knock source, the key's user). The
// Manager logs what it does on its own — closes on expiry, retries, Restore,
// reconciliation, CloseAll (event=closed with reason=expired|retry|restore|
// reconcile|exit) — and every close_failed, with the attempt count and the
// delay before the next attempt.
//
// # Concurrency
//
// A Manager is safe for concurrent use by the pipeline, its own timers and
// the control socket. One mutex guards everything and is held across
// backend calls: firewall changes are serialised, which is what the
// firewalls want anyway (iptables takes the xtables lock) and which makes
// every interleaving of open, extend, close and retry for a Key simple to
// reason about. Each backend call is bounded by OpTimeout so a hung
// firewall command cannot wedge the Manager; Stop cancels the calls the
// Manager makes on its own. List does not take the mutex: it reads a copy
// published after every change, so status answers while a firewall
// command hangs.
// Timer callbacks take the same mutex and carry a generation number, so a
// callback that lost a race with an extend or a close does nothing.
package grant

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/knockdaemon/knock/internal/clock"
	"github.com/knockdaemon/knock/rules"
)

// MaxMinutes is the longest timed grant; protocol time 255 means "close"
// and is the caller's to map to Close (docs/PROTOCOL.md section 1).
const MaxMinutes = 254

// Key identifies one opening: let Addr reach Proto/Port.
type Key struct {
	Addr  netip.Addr
	Proto string // "tcp" or "udp"
	Port  uint16
}

func (k Key) String() string {
	return fmt.Sprintf("%s %s/%d", k.Addr, k.Proto, k.Port)
}

// normalize returns k with an IPv4-mapped address unmapped, so that
// ::ffff:198.18.0.2 and 198.18.0.2 are one grant, or an error for a key no
// firewall rule should be made of.
func (k Key) normalize() (Key, error) {
	switch {
	case !k.Addr.IsValid():
		return k, errors.New("grant: no address")
	case k.Addr.Zone() != "":
		return k, fmt.Errorf("grant: address %s has a zone", k.Addr)
	}
	k.Addr = k.Addr.Unmap()
	switch {
	case k.Addr.IsUnspecified():
		return k, fmt.Errorf("grant: refusing to open for the unspecified address %s", k.Addr)
	case k.Addr.IsMulticast():
		return k, fmt.Errorf("grant: refusing to open for the multicast address %s", k.Addr)
	case k.Proto != "tcp" && k.Proto != "udp":
		return k, fmt.Errorf("grant: protocol %q is not tcp or udp", k.Proto)
	case k.Port == 0:
		return k, errors.New("grant: port 0")
	}
	return k, nil
}

// State is where a grant is in its life.
type State string

const (
	// StateOpen: the opening is applied and closes at Expires.
	StateOpen State = "open"
	// StateClosing: the opening is to be closed; the close is under way or
	// failed and is being retried.
	StateClosing State = "closing"
)

// Grant is one opening as persisted in the state file.
type Grant struct {
	Addr    netip.Addr `json:"addr"`
	Proto   string     `json:"proto"`
	Port    uint16     `json:"port"`
	User    string     `json:"user,omitempty"` // the key that asked; empty for an orphan found by reconciliation
	Created time.Time  `json:"created"`
	Expires time.Time  `json:"expires,omitzero"` // zero: open until closed
	State   State      `json:"state"`
}

// Key returns the grant's key.
func (g Grant) Key() Key { return Key{Addr: g.Addr, Proto: g.Proto, Port: g.Port} }

// Unlimited reports whether the grant is open until closed.
func (g Grant) Unlimited() bool { return g.Expires.IsZero() }

// Info is a grant as List reports it, for status.
type Info struct {
	Grant
	// Remaining is the time until Expires rounded up to a second; zero for
	// an unlimited or closing grant.
	Remaining time.Duration
	// For a closing grant whose close failed: how often, when the next
	// attempt is due, and the last error.
	Attempts  int
	NextRetry time.Time
	LastError string
}

// Event says what an operation did; its value is the log event name.
type Event string

const (
	Opened      Event = "opened"
	Extended    Event = "extended"
	Closed      Event = "closed"
	CloseFailed Event = "close_failed" // the close failed and is being retried
	OpenFailed  Event = "open_failed"
	NotFound    Event = "not_found" // Close of a Key with no grant; nothing done
)

// ErrStopped is returned by every operation after Stop.
var ErrStopped = errors.New("grant: manager stopped")

// Config is what a Manager needs.
type Config struct {
	Backend rules.Backend // required
	Clock   clock.Clock   // nil: the wall clock
	Logger  *slog.Logger  // nil: discard
	// Persist is called with a snapshot of every grant (sorted by address,
	// protocol, port) after every change — opened, extended, closing,
	// closed — before the operation returns, so that the caller's state
	// file is written before success is reported. It runs with the
	// Manager's lock held and must not call the Manager. When it fails,
	// the Manager logs the error and carries on from memory.
	Persist func([]Grant) error
	// RetryMin and RetryMax bound the backoff between attempts to close
	// (defaults 1s and 60s).
	RetryMin, RetryMax time.Duration
	// OpTimeout bounds each backend call (default 30s).
	OpTimeout time.Duration
}

// Manager owns the grants. Create it with New.
type Manager struct {
	backend   rules.Backend
	clock     clock.Clock
	log       *slog.Logger
	persist   func([]Grant) error
	retryMin  time.Duration
	retryMax  time.Duration
	opTimeout time.Duration

	ctx    context.Context // for calls the Manager makes on its own; cancelled by Stop
	cancel context.CancelFunc

	view atomic.Pointer[[]Info] // what List reports; replaced after every change

	mu      sync.Mutex
	grants  map[Key]*entry
	gen     uint64 // source of timer generations
	stopped bool
}

type entry struct {
	g         Grant
	timer     clock.Timer // expiry (open) or next retry (closing); nil when none
	gen       uint64      // the generation the pending timer belongs to
	attempts  int
	nextRetry time.Time
	lastErr   string
}

// New returns a Manager with no grants. Call Restore before the first Open
// to take over the grants of a previous run.
func New(cfg Config) (*Manager, error) {
	if cfg.Backend == nil {
		return nil, errors.New("grant: no backend")
	}
	m := &Manager{
		backend:   cfg.Backend,
		clock:     cfg.Clock,
		log:       cfg.Logger,
		persist:   cfg.Persist,
		retryMin:  cfg.RetryMin,
		retryMax:  cfg.RetryMax,
		opTimeout: cfg.OpTimeout,
		grants:    make(map[Key]*entry),
	}
	if m.clock == nil {
		m.clock = clock.Real{}
	}
	if m.log == nil {
		m.log = slog.New(slog.DiscardHandler)
	}
	if m.retryMin <= 0 {
		m.retryMin = time.Second
	}
	if m.retryMax <= 0 {
		m.retryMax = time.Minute
	}
	m.retryMax = max(m.retryMax, m.retryMin)
	if m.opTimeout <= 0 {
		m.opTimeout = 30 * time.Second
	}
	m.ctx, m.cancel = context.WithCancel(context.Background())
	return m, nil
}

// Open grants user's request to let k reach its port for minutes (1..254),
// or until closed when minutes is 0. It returns Opened for a new grant,
// Extended when k was already open (see the package comment for the rule),
// or OpenFailed with the error when the backend refused; on success the
// returned Grant is the grant as it now stands, and it has been persisted.
// When an extend fails the existing grant is left as it was.
func (m *Manager) Open(ctx context.Context, k Key, user string, minutes uint8) (Event, Grant, error) {
	k, err := k.normalize()
	if err != nil {
		return OpenFailed, Grant{}, err
	}
	if minutes > MaxMinutes {
		return OpenFailed, Grant{}, fmt.Errorf("grant: %d minutes is out of range 0..%d (255 means close)", minutes, MaxMinutes)
	}
	return m.OpenFor(ctx, k, user, time.Duration(minutes)*time.Minute)
}

// OpenFor is Open with an exact duration: the grant expires d from now
// (d at most MaxMinutes minutes), or never when d is 0. Doors use it:
// knockd's cmd_timeout is in seconds.
func (m *Manager) OpenFor(ctx context.Context, k Key, user string, d time.Duration) (Event, Grant, error) {
	k, err := k.normalize()
	if err != nil {
		return OpenFailed, Grant{}, err
	}
	if d < 0 || d > MaxMinutes*time.Minute {
		return OpenFailed, Grant{}, fmt.Errorf("grant: duration %v is out of range 0..%dm", d, MaxMinutes)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.stopped {
		return OpenFailed, Grant{}, ErrStopped
	}
	now := m.clock.Now()
	var exp time.Time
	if d > 0 {
		exp = now.Add(d)
	}

	e := m.grants[k]
	if e != nil && e.g.State == StateOpen {
		newExp := later(e.g.Expires, exp)
		if err := m.backendOpen(ctx, k, newExp, now); err != nil {
			return OpenFailed, e.g, err
		}
		e.g.Expires = newExp
		m.armExpiry(k, e, now)
		m.persistLocked()
		return Extended, e.g, nil
	}

	if err := m.backendOpen(ctx, k, exp, now); err != nil {
		// Remove whatever the failed Open may have applied. This is the
		// Manager's own business, so it runs on the Manager's context:
		// a caller that gave up must not leave a half-applied rule.
		existed := e != nil
		if !existed {
			e = &entry{g: Grant{Addr: k.Addr, Proto: k.Proto, Port: k.Port, User: user, Created: now, State: StateClosing}}
			m.grants[k] = e
		}
		m.stopTimer(e)
		if done := m.tryClose(m.ctx, k, e, ""); existed || !done {
			// A pending close that is now done, or a new one that must
			// survive a restart.
			m.persistLocked()
		}
		return OpenFailed, Grant{}, err
	}
	if e != nil {
		m.stopTimer(e) // the pending close is superseded: the opening is wanted
	}
	e = &entry{g: Grant{Addr: k.Addr, Proto: k.Proto, Port: k.Port, User: user, Created: now, Expires: exp, State: StateOpen}}
	m.grants[k] = e
	m.armExpiry(k, e, now)
	m.persistLocked()
	return Opened, e.g, nil
}

// Close closes k now and forgets its grant. It returns Closed, NotFound
// when k has no grant (the backend is not called), or CloseFailed with the
// error when the backend failed: the grant then stays in state "closing"
// and the close is retried until it succeeds.
func (m *Manager) Close(ctx context.Context, k Key) (Event, error) {
	k, err := k.normalize()
	if err != nil {
		return NotFound, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.stopped {
		return CloseFailed, ErrStopped
	}
	e := m.grants[k]
	if e == nil {
		return NotFound, nil
	}
	if m.closeLocked(ctx, k, e, "") {
		return Closed, nil
	}
	return CloseFailed, fmt.Errorf("grant: close %s: %s (retrying)", k, e.lastErr)
}

// closeLocked marks e closing, persists that, and tries the backend's
// Close; it reports whether the grant is gone.
func (m *Manager) closeLocked(ctx context.Context, k Key, e *entry, reason string) bool {
	m.stopTimer(e)
	if e.g.State != StateClosing {
		e.g.State = StateClosing
		m.persistLocked()
	}
	done := m.tryClose(ctx, k, e, reason)
	if done {
		m.persistLocked()
	}
	return done
}

// tryClose runs the backend's Close for a closing entry. On success it
// forgets the grant (and logs event=closed when reason is set); on failure
// it logs close_failed and schedules the next attempt. It does not persist.
func (m *Manager) tryClose(ctx context.Context, k Key, e *entry, reason string) bool {
	cctx, cancel := context.WithTimeout(ctx, m.opTimeout)
	err := m.backend.Close(cctx, rules.Opening{Addr: k.Addr, Proto: k.Proto, Port: k.Port})
	cancel()
	if err == nil {
		delete(m.grants, k)
		if reason != "" {
			m.log.Info("opening closed", "event", Closed, "reason", reason,
				"addr", k.Addr, "proto", k.Proto, "port", k.Port, "user", e.g.User, "attempts", e.attempts+1)
		}
		return true
	}
	e.attempts++
	e.lastErr = err.Error()
	delay := m.backoff(e.attempts)
	e.nextRetry = m.clock.Now().Add(delay)
	m.gen++
	gen := m.gen
	e.gen = gen
	e.timer = m.clock.AfterFunc(delay, func() { m.retry(k, gen) })
	m.publishLocked()
	m.log.Error("closing an opening failed; retrying", "event", CloseFailed,
		"addr", k.Addr, "proto", k.Proto, "port", k.Port, "user", e.g.User,
		"attempt", e.attempts, "retry_in", delay, "err", err)
	return false
}

// backoff is the delay after the n-th failed attempt: RetryMin doubled
// n-1 times, capped at RetryMax.
func (m *Manager) backoff(n int) time.Duration {
	d := m.retryMin
	for i := 1; i < n; i++ {
		if d >= m.retryMax/2 {
			return m.retryMax
		}
		d *= 2
	}
	return min(d, m.retryMax)
}

func (m *Manager) retry(k Key, gen uint64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	e := m.grants[k]
	if m.stopped || e == nil || e.gen != gen {
		return
	}
	e.timer = nil
	if m.tryClose(m.ctx, k, e, "retry") {
		m.persistLocked()
	}
}

func (m *Manager) expire(k Key, gen uint64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	e := m.grants[k]
	if m.stopped || e == nil || e.gen != gen || e.g.State != StateOpen {
		return
	}
	e.timer = nil
	now := m.clock.Now()
	if e.g.Expires.After(now) {
		// Woken early (the wall clock was stepped back under a grant
		// restored from the state file): wait for the rest.
		m.armExpiry(k, e, now)
		return
	}
	m.closeLocked(m.ctx, k, e, "expired")
}

// armExpiry (re)starts e's expiry timer; an unlimited grant has none.
func (m *Manager) armExpiry(k Key, e *entry, now time.Time) {
	m.stopTimer(e)
	if e.g.Expires.IsZero() {
		return
	}
	m.gen++
	gen := m.gen
	e.gen = gen
	e.timer = m.clock.AfterFunc(e.g.Expires.Sub(now), func() { m.expire(k, gen) })
}

func (m *Manager) stopTimer(e *entry) {
	if e.timer != nil {
		e.timer.Stop()
		e.timer = nil
	}
	e.gen = 0 // no generation is 0: any callback still on its way is void
}

func (m *Manager) backendOpen(ctx context.Context, k Key, exp, now time.Time) error {
	ctx, cancel := context.WithTimeout(ctx, m.opTimeout)
	defer cancel()
	o := rules.Opening{Addr: k.Addr, Proto: k.Proto, Port: k.Port, Timeout: timeout(exp, now)}
	if err := m.backend.Open(ctx, o); err != nil {
		return fmt.Errorf("grant: open %s: %w", k, err)
	}
	return nil
}

// timeout is the time from now to exp rounded up to a whole second, at
// least one second; zero (no limit) when exp is zero.
func timeout(exp, now time.Time) time.Duration {
	if exp.IsZero() {
		return 0
	}
	d := exp.Sub(now)
	if d <= 0 {
		return time.Second
	}
	return (d + time.Second - 1) / time.Second * time.Second
}

// later returns the later of two expiries, where zero (unlimited) is later
// than any time.
func later(a, b time.Time) time.Time {
	if a.IsZero() || b.IsZero() {
		return time.Time{}
	}
	if b.After(a) {
		return b
	}
	return a
}

// persistLocked publishes the grants for List and hands a snapshot to the
// persist hook; it is called after every change.
func (m *Manager) persistLocked() {
	grants := m.publishLocked()
	if m.persist == nil {
		return
	}
	if err := m.persist(grants); err != nil {
		m.log.Error("grants not saved to the state file; carrying on from memory", "err", err)
	}
}

// publishLocked stores a sorted copy of every grant for List, which reads
// it without taking the lock (so status answers while a firewall command
// hangs), and returns the grants as persisted.
func (m *Manager) publishLocked() []Grant {
	grants := make([]Grant, 0, len(m.grants))
	infos := make([]Info, 0, len(m.grants))
	for _, k := range m.sortedKeys() {
		e := m.grants[k]
		grants = append(grants, e.g)
		inf := Info{Grant: e.g}
		if e.g.State == StateClosing {
			inf.Attempts, inf.NextRetry, inf.LastError = e.attempts, e.nextRetry, e.lastErr
		}
		infos = append(infos, inf)
	}
	m.view.Store(&infos)
	return grants
}

func compareKeys(a, b Key) int {
	if c := a.Addr.Compare(b.Addr); c != 0 {
		return c
	}
	if c := cmp.Compare(a.Proto, b.Proto); c != 0 {
		return c
	}
	return cmp.Compare(a.Port, b.Port)
}

// sortedKeys returns the keys in a fixed order, so that what the Manager
// does to many grants at once happens in a reproducible order.
func (m *Manager) sortedKeys() []Key {
	keys := make([]Key, 0, len(m.grants))
	for k := range m.grants {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, compareKeys)
	return keys
}

// Restore takes over the grants of a previous run, as persisted. Grants
// whose time has passed, and grants that were closing, are closed at once;
// the others are applied to the backend again with their remaining time (a
// firewall reload may have lost them) and rescheduled. Then it reconciles:
// every opening the backend's List reports that belongs to no grant is
// closed. A List error (exec backends cannot list) is logged and tolerated;
// a failed close is retried like any other.
//
// An invalid or duplicate entry is skipped and named in the returned
// error; everything valid is restored all the same. A Key the Manager
// already holds keeps its current grant.
func (m *Manager) Restore(ctx context.Context, grants []Grant) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.stopped {
		return ErrStopped
	}
	now := m.clock.Now()
	var errs []error
	restored := make(map[Key]bool)
	for i, g := range grants {
		k, err := g.Key().normalize()
		if err == nil && g.State != StateOpen && g.State != StateClosing {
			err = fmt.Errorf("grant: unknown state %q", g.State)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("grant %d (%s): %w", i, g.Key(), err))
			continue
		}
		if restored[k] {
			errs = append(errs, fmt.Errorf("grant %d (%s): duplicate, skipped", i, k))
			continue
		}
		if m.grants[k] != nil {
			continue
		}
		restored[k] = true
		g.Addr = k.Addr
		m.grants[k] = &entry{g: g}
	}

	for _, k := range m.sortedKeys() {
		e := m.grants[k]
		if !restored[k] {
			continue
		}
		if e.g.State == StateClosing || (!e.g.Expires.IsZero() && !e.g.Expires.After(now)) {
			e.g.State = StateClosing
			m.tryClose(ctx, k, e, "restore")
			continue
		}
		if err := m.backendOpen(ctx, k, e.g.Expires, now); err != nil {
			// Keep the grant: whatever is in the firewall still closes
			// on time, and the next knock re-applies it.
			m.log.Error("re-applying a restored grant failed", "event", OpenFailed, "reason", "restore",
				"addr", k.Addr, "proto", k.Proto, "port", k.Port, "user", e.g.User, "err", err)
		} else {
			m.log.Info("grant restored", "addr", k.Addr, "proto", k.Proto, "port", k.Port, "user", e.g.User,
				"remaining", timeout(e.g.Expires, now))
		}
		m.armExpiry(k, e, now)
	}

	m.reconcile(ctx, now)
	m.persistLocked()
	if len(errs) > 0 {
		return fmt.Errorf("grant: restore skipped %d entries: %w", len(errs), errors.Join(errs...))
	}
	return nil
}

// reconcile closes every opening the backend owns that no grant explains.
func (m *Manager) reconcile(ctx context.Context, now time.Time) {
	lctx, cancel := context.WithTimeout(ctx, m.opTimeout)
	openings, err := m.backend.List(lctx)
	cancel()
	if err != nil {
		m.log.Warn("cannot list the backend's openings; openings left by a crash are not reconciled",
			"backend", m.backend.Name(), "err", err)
		return
	}
	slices.SortFunc(openings, func(a, b rules.Opening) int {
		return compareKeys(Key{a.Addr, a.Proto, a.Port}, Key{b.Addr, b.Proto, b.Port})
	})
	for _, o := range openings {
		k, err := Key{Addr: o.Addr, Proto: o.Proto, Port: o.Port}.normalize()
		if err != nil {
			m.log.Warn("backend lists an opening that is not a valid grant; left alone",
				"backend", m.backend.Name(), "addr", o.Addr, "proto", o.Proto, "port", o.Port, "err", err)
			continue
		}
		if m.grants[k] != nil {
			continue
		}
		e := &entry{g: Grant{Addr: k.Addr, Proto: k.Proto, Port: k.Port, Created: now, State: StateClosing}}
		m.grants[k] = e
		m.tryClose(ctx, k, e, "reconcile")
	}
}

// CloseAll closes every grant now (close_on_exit). Each close that fails
// stays in state "closing", persisted, and is retried until Stop; the
// returned error names them.
func (m *Manager) CloseAll(ctx context.Context) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.stopped {
		return ErrStopped
	}
	keys := m.sortedKeys()
	if len(keys) == 0 {
		return nil
	}
	for _, k := range keys {
		e := m.grants[k]
		m.stopTimer(e)
		e.g.State = StateClosing
	}
	m.persistLocked()
	var errs []error
	for _, k := range keys {
		e := m.grants[k]
		if !m.tryClose(ctx, k, e, "exit") {
			errs = append(errs, fmt.Errorf("%s: %s", k, e.lastErr))
		}
	}
	m.persistLocked()
	if len(errs) > 0 {
		return fmt.Errorf("grant: %d of %d openings not closed: %w", len(errs), len(keys), errors.Join(errs...))
	}
	return nil
}

// List returns every grant, sorted by address, protocol and port, as of
// the last completed change. It never waits for a firewall command.
func (m *Manager) List() []Info {
	p := m.view.Load()
	if p == nil {
		return []Info{}
	}
	now := m.clock.Now()
	out := slices.Clone(*p)
	for i := range out {
		if g := out[i].Grant; g.State == StateOpen && g.Expires.After(now) {
			out[i].Remaining = timeout(g.Expires, now)
		}
	}
	return out
}

// Stop stops every timer and cancels backend calls in flight, without
// closing anything: the grants stay in the firewall and in the last
// persisted snapshot, for the next run's Restore. Every later call returns
// ErrStopped. Stop is idempotent.
func (m *Manager) Stop() {
	m.cancel()
	m.mu.Lock()
	defer m.mu.Unlock()
	m.stopped = true
	for _, e := range m.grants {
		m.stopTimer(e)
	}
}
