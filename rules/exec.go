package rules

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// Exec runs the admin's own commands, knockd style: an open and a close
// template with the placeholders %IP%, %PORT%, %PROTO% and %MINUTES%
// (the timeout in whole minutes rounded up, 0 for no limit).
//
// A template is split into arguments once, when the backend is made (see
// SplitArgs; no shell is ever involved), and placeholders are replaced
// inside arguments, after the values are validated: an address can never
// become shell syntax or a second argument. The command name itself
// cannot hold a placeholder.
//
// The commands decide idempotency themselves; List is not possible (it
// returns an error wrapping ErrNotSupported), so the daemon cannot
// reconcile openings made by exec templates after a crash.
type Exec struct {
	r           Runner
	open, close []string
}

var placeholderRE = regexp.MustCompile(`%[A-Z_]+%`)

var placeholders = map[string]bool{"%IP%": true, "%PORT%": true, "%PROTO%": true, "%MINUTES%": true}

// NewExec returns the exec backend for the open and close templates; both
// are required.
func NewExec(r Runner, open, close string) (*Exec, error) {
	if r == nil {
		return nil, errors.New("exec: no runner")
	}
	o, err := parseTemplate("open", open)
	if err != nil {
		return nil, err
	}
	c, err := parseTemplate("close", close)
	if err != nil {
		return nil, err
	}
	return &Exec{r: r, open: o, close: c}, nil
}

func parseTemplate(which, t string) ([]string, error) {
	argv, err := SplitArgs(t)
	if err != nil {
		return nil, fmt.Errorf("exec %s template %q: %w", which, t, err)
	}
	if len(argv) == 0 {
		return nil, fmt.Errorf("exec: no %s template (the command to run, for example \"/usr/local/sbin/fw-%s %%IP%% %%PROTO%% %%PORT%%\")", which, which)
	}
	if strings.Contains(argv[0], "%") {
		return nil, fmt.Errorf("exec %s template %q: the command name cannot hold a placeholder", which, t)
	}
	for _, a := range argv {
		for _, p := range placeholderRE.FindAllString(a, -1) {
			if !placeholders[p] {
				return nil, fmt.Errorf("exec %s template %q: unknown placeholder %s (want %%IP%% %%PORT%% %%PROTO%% %%MINUTES%%)", which, t, p)
			}
		}
	}
	return argv, nil
}

// expand substitutes a validated opening into a template.
func expand(tmpl []string, o Opening) []string {
	r := strings.NewReplacer(
		"%IP%", o.Addr.String(),
		"%PORT%", strconv.Itoa(int(o.Port)),
		"%PROTO%", o.Proto,
		"%MINUTES%", strconv.FormatInt(minutes(o.Timeout), 10),
	)
	out := make([]string, len(tmpl))
	out[0] = tmpl[0]
	for i := 1; i < len(tmpl); i++ {
		out[i] = r.Replace(tmpl[i])
	}
	return out
}

// Name is "exec".
func (b *Exec) Name() string { return "exec" }

// Check reports whether both commands can be found.
func (b *Exec) Check(ctx context.Context) error {
	var lp ExecRunner
	for _, t := range [][]string{b.open, b.close} {
		if _, err := lp.LookPath(t[0]); err != nil {
			return fmt.Errorf("exec: %w\nhint: the open and close templates must name an installed command", err)
		}
	}
	return nil
}

// Setup does nothing: the admin's commands own their firewall state.
func (b *Exec) Setup(ctx context.Context) error { return nil }

// Teardown does nothing: the admin's commands own their firewall state.
func (b *Exec) Teardown(ctx context.Context) error { return nil }

// Open runs the open template for o.
func (b *Exec) Open(ctx context.Context, o Opening) error {
	o, err := o.normalize()
	if err != nil {
		return err
	}
	if _, err := b.r.Run(ctx, expand(b.open, o)); err != nil {
		return fmt.Errorf("exec open %s: %w", o, err)
	}
	return nil
}

// Close runs the close template for o.
func (b *Exec) Close(ctx context.Context, o Opening) error {
	o, err := o.normalize()
	if err != nil {
		return err
	}
	if _, err := b.r.Run(ctx, expand(b.close, o)); err != nil {
		return fmt.Errorf("exec close %s: %w", o, err)
	}
	return nil
}

// List is not possible for commands the daemon cannot inspect.
func (b *Exec) List(ctx context.Context) ([]Opening, error) {
	return nil, fmt.Errorf("exec: cannot list openings made by templates: %w", ErrNotSupported)
}
