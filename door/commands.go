package door

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/knockdaemon/knock/internal/clock"
	"github.com/knockdaemon/knock/rules"
)

// Pending is a stop command waiting to run, as persisted in the state
// file so that a restart still runs it.
type Pending struct {
	Door string     `json:"door"`
	Addr netip.Addr `json:"addr"`
	Due  time.Time  `json:"due"`
}

// CommandsConfig is what Commands needs.
type CommandsConfig struct {
	Runner rules.Runner // required; argv only (rules.ExecRunner, wrapped by rules.NetnsRunner)
	Clock  clock.Clock  // nil: the wall clock
	Logger *slog.Logger // nil: discard
	// Persist is called with every pending stop after each change, before
	// Fire returns; it must not call back into Commands.
	Persist func([]Pending) error
	// OpTimeout bounds each command (default 30s).
	OpTimeout time.Duration
	// StopAttempts is how often a failing stop command is tried (default
	// 5, backing off 1s, 2s, 4s, 8s): the daemon cannot tell "already
	// undone" from a real failure for the admin's own commands, so it
	// does not retry forever.
	StopAttempts int
}

// Commands runs command doors the way knockd does — the start command at
// once, the stop command cmd_timeout later — with these differences:
// commands are argument vectors (no shell); %IP% is substituted inside
// arguments from a validated address; a re-knock while the stop is
// pending extends the wait instead of running the start command again
// (which would stack a second firewall rule); pending stops are persisted
// and run after a restart; a failed stop is retried a few times. Commands
// is safe for concurrent use.
type Commands struct {
	cfg CommandsConfig
	log *slog.Logger

	mu      sync.Mutex
	pending map[pkey]*pend
	gen     uint64
	stopped bool
}

type pkey struct {
	door string
	addr netip.Addr
}

type pend struct {
	d        *Door
	due      time.Time
	timer    clock.Timer
	gen      uint64
	attempts int
}

// NewCommands returns a runner for command doors.
func NewCommands(cfg CommandsConfig) (*Commands, error) {
	if cfg.Runner == nil {
		return nil, errors.New("door: no command runner")
	}
	if cfg.Clock == nil {
		cfg.Clock = clock.Real{}
	}
	if cfg.OpTimeout <= 0 {
		cfg.OpTimeout = 30 * time.Second
	}
	if cfg.StopAttempts <= 0 {
		cfg.StopAttempts = 5
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Commands{cfg: cfg, log: log, pending: map[pkey]*pend{}}, nil
}

// Expand substitutes addr for %IP% in every argument of tmpl after the
// first. addr must be a single host address: it is validated here, so a
// template can never receive anything but an address.
func Expand(tmpl []string, addr netip.Addr) ([]string, error) {
	if err := checkAddr(addr); err != nil {
		return nil, err
	}
	a := addr.Unmap().String()
	out := make([]string, len(tmpl))
	for i, arg := range tmpl {
		if i == 0 {
			out[i] = arg
			continue
		}
		out[i] = strings.ReplaceAll(arg, PlaceholderIP, a)
	}
	return out, nil
}

func checkAddr(a netip.Addr) error {
	switch {
	case !a.IsValid():
		return errors.New("door: no address")
	case a.Zone() != "":
		return fmt.Errorf("door: address %s has a zone", a)
	}
	a = a.Unmap()
	switch {
	case a.IsUnspecified(), a.IsMulticast(), a == netip.AddrFrom4([4]byte{255, 255, 255, 255}):
		return fmt.Errorf("door: refusing to run a command for %s", a)
	}
	return nil
}

func templates(d *Door, addr netip.Addr) (start, stop []string) {
	if addr.Unmap().Is4() {
		return d.Action.Start, d.Action.Stop
	}
	return d.Action.Start6, d.Action.Stop6
}

// Fire runs d's start command for src and schedules its stop command
// d.CmdTimeout later. When a stop for (d, src) is already pending, it only
// moves the stop to now+CmdTimeout (never earlier) and runs nothing. The
// stop is scheduled even when the start command failed, as knockd does,
// so that whatever it half did is undone.
func (c *Commands) Fire(ctx context.Context, d *Door, src netip.Addr) error {
	src = src.Unmap().WithZone("")
	start, stop := templates(d, src)
	attrs := []any{"door", d.Name, "user", d.User(), "src", src}
	if start == nil {
		c.log.Info("door has no command for this address family", append([]any{"event", "command_skipped"}, attrs...)...)
		return nil
	}
	argv, err := Expand(start, src)
	if err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stopped {
		return errors.New("door: commands stopped")
	}
	now := c.cfg.Clock.Now()
	k := pkey{d.Name, src}
	if p := c.pending[k]; p != nil && stop != nil {
		if due := now.Add(d.CmdTimeout); due.After(p.due) {
			p.due = due
			c.armLocked(k, p, now)
			c.persistLocked()
		}
		c.log.Info("door re-knocked; stop command postponed", append([]any{"event", "extended", "stop_at", p.due.UTC().Format(time.RFC3339)}, attrs...)...)
		return nil
	}
	cctx, cancel := context.WithTimeout(ctx, c.cfg.OpTimeout)
	_, runErr := c.cfg.Runner.Run(cctx, argv)
	cancel()
	if runErr != nil {
		c.log.Error("door start command failed", append([]any{"event", "command_failed", "phase", "start", "err", runErr}, attrs...)...)
	} else {
		c.log.Info("door start command ran", append([]any{"event", "command_started", "argv", rules.FormatArgv(argv)}, attrs...)...)
	}
	if stop != nil {
		p := &pend{d: d, due: now.Add(d.CmdTimeout)}
		c.pending[k] = p
		c.armLocked(k, p, now)
		c.persistLocked()
	}
	if runErr != nil {
		return fmt.Errorf("door %q: start command: %w", d.Name, runErr)
	}
	return nil
}

func (c *Commands) armLocked(k pkey, p *pend, now time.Time) {
	if p.timer != nil {
		p.timer.Stop()
	}
	c.gen++
	gen := c.gen
	p.gen = gen
	p.timer = c.cfg.Clock.AfterFunc(max(p.due.Sub(now), 0), func() { c.runStop(k, gen) })
}

func (c *Commands) runStop(k pkey, gen uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	p := c.pending[k]
	if c.stopped || p == nil || p.gen != gen {
		return
	}
	p.timer = nil
	c.stopLocked(context.Background(), k, p, "expired", true)
}

// stopLocked runs the stop command of a pending entry. On failure with
// retry it tries again with backoff until StopAttempts, then gives up
// loudly; without retry the entry stays pending, persisted, with no timer
// (for the next run's Restore).
func (c *Commands) stopLocked(ctx context.Context, k pkey, p *pend, reason string, retry bool) bool {
	_, stop := templates(p.d, k.addr)
	attrs := []any{"door", k.door, "user", p.d.User(), "src", k.addr, "reason", reason}
	var err error
	if stop != nil {
		var argv []string
		if argv, err = Expand(stop, k.addr); err == nil {
			cctx, cancel := context.WithTimeout(ctx, c.cfg.OpTimeout)
			_, err = c.cfg.Runner.Run(cctx, argv)
			cancel()
		}
	}
	p.attempts++
	if err != nil && !retry {
		c.log.Error("door stop command failed; left for the next start", append([]any{"event", "close_failed", "err", err}, attrs...)...)
		return false
	}
	if err == nil || p.attempts >= c.cfg.StopAttempts {
		delete(c.pending, k)
		c.persistLocked()
		if err != nil {
			c.log.Error("door stop command failed; giving up", append([]any{"event", "close_failed", "attempt", p.attempts, "err", err}, attrs...)...)
			return false
		}
		c.log.Info("door stop command ran", append([]any{"event", "closed"}, attrs...)...)
		return true
	}
	delay := time.Second << (p.attempts - 1)
	c.log.Error("door stop command failed; retrying", append([]any{"event", "close_failed", "attempt", p.attempts, "retry_in", delay, "err", err}, attrs...)...)
	now := c.cfg.Clock.Now()
	p.due = now.Add(delay)
	c.armLocked(k, p, now)
	return false
}

func (c *Commands) persistLocked() {
	if c.cfg.Persist == nil {
		return
	}
	if err := c.cfg.Persist(c.listLocked()); err != nil {
		c.log.Error("pending door stop commands not saved to the state file; carrying on from memory", "err", err)
	}
}

func (c *Commands) listLocked() []Pending {
	out := make([]Pending, 0, len(c.pending))
	for k, p := range c.pending {
		out = append(out, Pending{Door: k.door, Addr: k.addr, Due: p.due})
	}
	slices.SortFunc(out, func(a, b Pending) int {
		return cmp.Or(strings.Compare(a.Door, b.Door), a.Addr.Compare(b.Addr))
	})
	return out
}

// List returns the pending stop commands, sorted by door and address.
func (c *Commands) List() []Pending {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.listLocked()
}

// Restore takes over the pending stops of a previous run. A stop whose
// door is no longer configured (or has no stop command now) cannot run and
// is dropped with an error naming it; the others run when due (at once
// when overdue).
func (c *Commands) Restore(doors []*Door, ps []Pending) error {
	byName := map[string]*Door{}
	for _, d := range doors {
		byName[d.Name] = d
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.cfg.Clock.Now()
	var errs []error
	for _, p := range ps {
		d := byName[p.Door]
		var stop []string
		if d != nil && d.Action.Kind == ActCommand {
			_, stop = templates(d, p.Addr)
		}
		if stop == nil {
			errs = append(errs, fmt.Errorf("door %q: stop command for %s due %s cannot run: the door (or its stop command) is no longer configured; undo it by hand", p.Door, p.Addr, p.Due.UTC().Format(time.RFC3339)))
			continue
		}
		if err := checkAddr(p.Addr); err != nil {
			errs = append(errs, err)
			continue
		}
		k := pkey{p.Door, p.Addr.Unmap()}
		if c.pending[k] != nil {
			continue
		}
		e := &pend{d: d, due: p.Due}
		c.pending[k] = e
		c.armLocked(k, e, now)
	}
	c.persistLocked()
	return errors.Join(errs...)
}

// RunAll runs every pending stop command now, once (close_on_exit). A
// stop that fails stays pending in the persisted list, for the next run's
// Restore. It returns how many failed.
func (c *Commands) RunAll(ctx context.Context) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	failed := 0
	keys := make([]pkey, 0, len(c.pending))
	for k := range c.pending {
		keys = append(keys, k)
	}
	for _, k := range keys {
		p := c.pending[k]
		if p.timer != nil {
			p.timer.Stop()
			p.timer = nil
		}
		if !c.stopLocked(ctx, k, p, "exit", false) {
			failed++
		}
	}
	return failed
}

// Stop cancels every timer without running anything: the pending stops
// stay in the last persisted list for the next run's Restore.
func (c *Commands) Stop() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.stopped = true
	for _, p := range c.pending {
		if p.timer != nil {
			p.timer.Stop()
			p.timer = nil
		}
		p.gen = 0
	}
}
