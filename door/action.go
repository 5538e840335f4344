package door

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/knockdaemon/knock/grant"
)

// Grants is what a door needs of the grant manager (grant.Manager): its
// openings get exact expiry, persistence, extension on a re-knock and
// closing across restarts. OpenFor opens for d (0: until closed).
type Grants interface {
	OpenFor(ctx context.Context, k grant.Key, user string, d time.Duration) (grant.Event, grant.Grant, error)
	Close(ctx context.Context, k grant.Key) (grant.Event, error)
	List() []grant.Info
}

// Executor carries out what a fired door does. Its zero value is not
// usable: Grants is needed for open and close doors, Commands for command
// doors. It holds no state of its own and is safe for concurrent use when
// they are (grant.Manager and Commands are).
type Executor struct {
	Grants   Grants
	Commands *Commands
	Logger   *slog.Logger // nil: discard
}

// Fire runs d's action for the knocker src and logs every outcome with
// event= (opened extended closed open_failed close_failed
// command_started command_failed), door= and user="door:NAME". It returns
// the errors joined.
//
// A close door closes only openings that doors made (user "door:..."):
// knock packets are easily spoofed, and a plain sequence must not revoke
// an opening an encrypted knock granted.
func (e *Executor) Fire(ctx context.Context, d *Door, src netip.Addr) error {
	log := e.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	src = src.Unmap().WithZone("")
	base := []any{"door", d.Name, "user", d.User(), "src", src}
	switch d.Action.Kind {
	case ActOpen, ActClose:
		if e.Grants == nil {
			return errors.New("door: no grant manager for an open or close door")
		}
		var errs []error
		for _, port := range d.Action.Ports {
			for _, proto := range d.Action.Protos {
				k := grant.Key{Addr: src, Proto: proto, Port: port}
				attrs := slices.Concat(base, []any{"addr", src, "proto", proto, "port", port})
				if d.Action.Kind == ActClose {
					if err := e.close(ctx, k, log, attrs); err != nil {
						errs = append(errs, err)
					}
					continue
				}
				ev, g, err := e.Grants.OpenFor(ctx, k, d.User(), d.CmdTimeout)
				switch ev {
				case grant.Opened, grant.Extended:
					exp := "never"
					if !g.Expires.IsZero() {
						exp = g.Expires.UTC().Format(time.RFC3339)
					}
					log.Info("door opening "+string(ev), append([]any{"event", string(ev), "expires", exp}, attrs...)...)
				default:
					log.Error("door opening failed", append([]any{"event", "open_failed", "err", err}, attrs...)...)
					errs = append(errs, err)
				}
			}
		}
		return errors.Join(errs...)
	case ActCommand:
		if e.Commands == nil {
			return errors.New("door: no command runner for a command door")
		}
		return e.Commands.Fire(ctx, d, src)
	}
	return fmt.Errorf("door %q: unknown action %v", d.Name, d.Action.Kind)
}

func (e *Executor) close(ctx context.Context, k grant.Key, log *slog.Logger, attrs []any) error {
	var owner string
	found := false
	for _, inf := range e.Grants.List() {
		if inf.Addr == k.Addr && inf.Proto == k.Proto && inf.Port == k.Port {
			owner, found = inf.User, true
			break
		}
	}
	switch {
	case !found:
		log.Info("door close for an opening that is not open", append([]any{"event", "closed", "reason", "not_open"}, attrs...)...)
		return nil
	case !strings.HasPrefix(owner, "door:"):
		log.Warn("door close refused: the opening was granted by an encrypted knock", append([]any{"event", "rejected", "reason", "door_not_owner", "owner", owner}, attrs...)...)
		return nil
	}
	ev, err := e.Grants.Close(ctx, k)
	switch ev {
	case grant.Closed:
		log.Info("door closed an opening", append([]any{"event", "closed", "reason", "door"}, attrs...)...)
	case grant.NotFound:
		log.Info("door close for an opening that is not open", append([]any{"event", "closed", "reason", "not_open"}, attrs...)...)
	default:
		log.Error("door close failed; retrying", append([]any{"event", "close_failed", "err", err}, attrs...)...)
		return err
	}
	return nil
}
