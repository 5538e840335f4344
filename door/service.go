package door

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/knockdaemon/knock/internal/clock"
	"github.com/knockdaemon/knock/logparse"
	"github.com/knockdaemon/knock/rules"
)

// ServiceConfig is what the daemon gives the doors.
type ServiceConfig struct {
	Doors  []*Door      // compiled, in configuration order
	Grants Grants       // the daemon's grant manager (open and close doors)
	Runner rules.Runner // runs start/stop commands (argv only)
	Clock  clock.Clock  // nil: the wall clock
	Logger *slog.Logger // nil: discard
	// PersistPending saves the pending stop commands (state file) after
	// every change.
	PersistPending func([]Pending) error
	MaxSources     int // source table bound (default DefaultMaxSources)
}

// Service is the doors as the daemon runs them: a Matcher fed with parsed
// log hits, whose fired doors an Executor carries out. It is safe for
// concurrent use; HandleHit blocks while a fired door's firewall change or
// command runs, as the daemon's pipeline does for encrypted knocks.
type Service struct {
	m    *Matcher
	ex   *Executor
	cmds *Commands
	log  *slog.Logger
	clk  clock.Clock
}

// NewService builds the doors. With no doors it returns nil and no error:
// a nil *Service handles no hit.
func NewService(cfg ServiceConfig) (*Service, error) {
	if len(cfg.Doors) == 0 {
		return nil, nil
	}
	if cfg.Clock == nil {
		cfg.Clock = clock.Real{}
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	needGrants, needCmds := false, false
	for _, d := range cfg.Doors {
		switch d.Action.Kind {
		case ActOpen, ActClose:
			needGrants = true
		case ActCommand:
			needCmds = true
		}
	}
	if needGrants && cfg.Grants == nil {
		return nil, errors.New("door: open and close doors need the grant manager")
	}
	m, err := NewMatcher(cfg.Doors, cfg.Clock, Options{MaxSources: cfg.MaxSources})
	if err != nil {
		return nil, err
	}
	s := &Service{m: m, log: log, clk: cfg.Clock, ex: &Executor{Grants: cfg.Grants, Logger: log}}
	if needCmds || cfg.Runner != nil {
		if cfg.Runner == nil {
			m.Close()
			return nil, errors.New("door: command doors need a command runner")
		}
		s.cmds, err = NewCommands(CommandsConfig{Runner: cfg.Runner, Clock: cfg.Clock, Logger: log, Persist: cfg.PersistPending})
		if err != nil {
			m.Close()
			return nil, err
		}
		s.ex.Commands = s.cmds
	}
	return s, nil
}

// HandleHit feeds one parsed firewall hit (already filtered by the log
// prefix) received at the given time. It reports whether the hit was on a
// door port — the caller then need not look at it as an encrypted knock.
func (s *Service) HandleHit(ctx context.Context, h *logparse.Hit, received time.Time) bool {
	if s == nil {
		return false
	}
	var p Proto
	switch h.Proto {
	case logparse.ProtoTCP:
		p = TCP
	case logparse.ProtoUDP:
		p = UDP
	default:
		return false
	}
	if !s.m.IsDoorPort(p, h.DstPort) {
		return false
	}
	res, err := s.m.Add(Hit{Src: h.Src, Proto: p, SrcPort: h.SrcPort, DstPort: h.DstPort, Flags: h.Flags, Time: received})
	switch {
	case res.Outcome == NotFired:
		s.log.Error("door not opened", "event", "open_failed", "door", res.Door.Name, "src", res.Src, "err", err)
	case err != nil:
		s.log.Debug("door hit unusable", "err", err)
	case res.Outcome == Fired:
		attrs := []any{"event", "accepted", "door", res.Door.Name, "user", res.Door.User(), "src", res.Src}
		if res.Door.OneTime != "" {
			attrs = append(attrs, "one_time_left", res.Remaining)
		}
		s.log.Info("door knocked", attrs...)
		if res.Door.OneTime != "" && res.Remaining == 0 {
			s.log.Warn("one-time sequences used up; the door stays closed until sequences are added and the daemon reloads",
				"door", res.Door.Name, "file", res.Door.OneTime)
		}
		_ = s.ex.Fire(ctx, res.Door, res.Src) // every outcome is logged there
	}
	return true
}

// Restore takes over the pending stop commands of a previous run.
func (s *Service) Restore(pending []Pending) error {
	if s == nil || s.cmds == nil {
		if len(pending) > 0 {
			return errors.New("door: the state file has pending door stop commands but no command door is configured; undo them by hand")
		}
		return nil
	}
	return s.cmds.Restore(s.m.doorList(), pending)
}

// Reload re-reads the one-time sequences files (call it on SIGHUP).
func (s *Service) Reload() error {
	if s == nil {
		return nil
	}
	return s.m.ReloadOneTime()
}

// Pending returns the pending stop commands.
func (s *Service) Pending() []Pending {
	if s == nil || s.cmds == nil {
		return nil
	}
	return s.cmds.List()
}

// Stats returns the matcher's counters.
func (s *Service) Stats() Stats {
	if s == nil {
		return Stats{}
	}
	return s.m.Stats()
}

// Close stops the doors. With runStops (close_on_exit) every pending stop
// command runs now; otherwise they stay persisted for the next start.
func (s *Service) Close(ctx context.Context, runStops bool) {
	if s == nil {
		return
	}
	s.m.Close()
	if s.cmds != nil {
		if runStops {
			if n := s.cmds.RunAll(ctx); n > 0 {
				s.log.Error("door stop commands failed at exit; they run again at the next start", "failed", n)
			}
		}
		s.cmds.Stop()
	}
}
