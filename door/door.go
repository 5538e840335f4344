// Package door serves classic knockd-style doors from the firewall log: a
// door is a plain sequence of port knocks ("7000,8000,9000",
// "2222:udp,3333,4444:udp") that, knocked in order within a sequence
// timeout by one source, opens ports for that source through the rules
// backend, closes them again, or runs the admin's start/stop commands.
//
// Plain sequences are not secret on the wire: anyone who sees the knocks
// can replay them. They exist so that knockd users can move to
// knockdaemon without changing their clients; use encrypted knocks (the
// knock package) for anything that matters.
//
// The Matcher follows knockd's semantics where they are sound and fixes
// its faults; see Matcher. Config is one [[door]] table of the daemon's
// configuration (docs/DOORS.md), Compile turns it into a Door.
package door

import (
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/knockdaemon/knock/rules"
)

// Defaults, as in knockd (SEQ_TIMEOUT, CMD_TIMEOUT).
const (
	DefaultSequenceTimeout = 25 * time.Second
	DefaultCmdTimeout      = 10 * time.Second
)

// Limits on what a door may ask for.
const (
	MaxSequenceTimeout = time.Hour
	MaxOpenFor         = 254 * time.Minute // the longest timed grant
	MaxCmdTimeout      = 24 * time.Hour
	MaxPorts           = 64 // ports one door opens or closes
	MaxNameLen         = 64
)

// ActionKind says what a door does when knocked.
type ActionKind uint8

const (
	// ActOpen opens Ports/Protos for the knocker through the backend, for
	// CmdTimeout (0: until a close door or a revoke closes it).
	ActOpen ActionKind = iota + 1
	// ActClose closes the knocker's openings of Ports/Protos.
	ActClose
	// ActCommand runs the start command, then the stop command
	// CmdTimeout later (when there is one).
	ActCommand
)

func (k ActionKind) String() string {
	switch k {
	case ActOpen:
		return "open"
	case ActClose:
		return "close"
	case ActCommand:
		return "command"
	}
	return fmt.Sprintf("action(%d)", uint8(k))
}

// Action is what a door does.
type Action struct {
	Kind ActionKind
	// Ports and Protos ("tcp", "udp") for ActOpen and ActClose: every
	// port with every protocol.
	Ports  []uint16
	Protos []string
	// Start and Stop are argument templates for ActCommand (%IP% is the
	// knocker's address); Stop may be nil. Start6 and Stop6 are used for
	// IPv6 knockers; they are the IPv4 templates unless configured, and
	// nil when configured empty (do nothing).
	Start, Stop   []string
	Start6, Stop6 []string
}

// Door is one compiled door.
type Door struct {
	Name string
	// Sequence is the fixed sequence; nil for a one-time door.
	Sequence []Step
	// OneTime is the path of the one-time sequences file (knockd's
	// one_time_sequences), "" for a fixed sequence.
	OneTime    string
	Timeout    time.Duration // to complete the sequence, from its first knock
	Flags      FlagRule      // for TCP knocks
	Action     Action
	CmdTimeout time.Duration // ActOpen: how long it stays open (0: until closed); ActCommand: delay before Stop
}

// User is the grant user name of the door's openings: "door:NAME".
func (d *Door) User() string { return "door:" + d.Name }

// OpenConfig is the open or close table of a door.
type OpenConfig struct {
	Ports []string `toml:"ports"` // "22" or "8000-8010"
	Proto string   `toml:"proto"` // tcp (default) | udp | both
}

// Config is one [[door]] table as written in the configuration file;
// docs/DOORS.md describes every key.
type Config struct {
	Name             string      `toml:"name"`
	Sequence         string      `toml:"sequence"`
	OneTimeSequences string      `toml:"one_time_sequences"`
	SequenceTimeout  string      `toml:"sequence_timeout"`
	TCPFlags         string      `toml:"tcp_flags"`
	Open             *OpenConfig `toml:"open"`
	Close            *OpenConfig `toml:"close"`
	CmdTimeout       string      `toml:"cmd_timeout"`
	StartCommand     string      `toml:"start_command"`
	StopCommand      string      `toml:"stop_command"`
	StartCommand6    *string     `toml:"start_command_6"`
	StopCommand6     *string     `toml:"stop_command_6"`
}

// FieldError is a problem with one key of a [[door]] table.
type FieldError struct {
	Key string // TOML key, "" for the table as a whole
	Msg string
}

func (e *FieldError) Error() string {
	if e.Key == "" {
		return e.Msg
	}
	return e.Key + ": " + e.Msg
}

func fieldErr(key, format string, args ...any) *FieldError {
	return &FieldError{Key: key, Msg: fmt.Sprintf(format, args...)}
}

// Compile validates c and returns its door. The one-time sequences file
// is not read here; NewMatcher reads it.
func (c *Config) Compile() (*Door, error) {
	d := &Door{Name: c.Name}
	if err := checkName(c.Name); err != nil {
		return nil, fieldErr("name", "%v", err)
	}
	switch {
	case c.Sequence != "" && c.OneTimeSequences != "":
		return nil, fieldErr("sequence", "give sequence or one_time_sequences, not both")
	case c.Sequence != "":
		seq, err := ParseSequence(c.Sequence)
		if err != nil {
			return nil, fieldErr("sequence", "%v", err)
		}
		d.Sequence = seq
	case c.OneTimeSequences != "":
		if !filepath.IsAbs(c.OneTimeSequences) {
			return nil, fieldErr("one_time_sequences", "%q is not an absolute path", c.OneTimeSequences)
		}
		d.OneTime = filepath.Clean(c.OneTimeSequences)
	default:
		return nil, fieldErr("sequence", "missing: give sequence (such as \"7000,8000,9000\") or one_time_sequences")
	}

	d.Timeout = DefaultSequenceTimeout
	if c.SequenceTimeout != "" {
		t, err := parseDuration(c.SequenceTimeout)
		if err != nil {
			return nil, fieldErr("sequence_timeout", "%v", err)
		}
		if t < time.Second || t > MaxSequenceTimeout {
			return nil, fieldErr("sequence_timeout", "%v is out of range 1s..%v", t, MaxSequenceTimeout)
		}
		d.Timeout = t
	}
	fr, err := ParseFlagRule(c.TCPFlags)
	if err != nil {
		return nil, fieldErr("tcp_flags", "%v", err)
	}
	if fr.Require&fr.Forbid != 0 {
		return nil, fieldErr("tcp_flags", "%q requires a flag both set and clear", c.TCPFlags)
	}
	d.Flags = fr

	hasCmd := c.StartCommand != "" || c.StopCommand != "" || c.StartCommand6 != nil || c.StopCommand6 != nil
	n := 0
	for _, b := range []bool{c.Open != nil, c.Close != nil, hasCmd} {
		if b {
			n++
		}
	}
	if n != 1 {
		return nil, fieldErr("", "a door needs exactly one action: open = {...}, close = {...}, or start_command (found %d)", n)
	}

	var cmdTimeout time.Duration
	hasTimeout := c.CmdTimeout != ""
	if hasTimeout {
		if cmdTimeout, err = parseDuration(c.CmdTimeout); err != nil {
			return nil, fieldErr("cmd_timeout", "%v", err)
		}
		if cmdTimeout < 0 {
			return nil, fieldErr("cmd_timeout", "negative")
		}
	}

	switch {
	case c.Open != nil:
		d.Action, err = compileOpen(ActOpen, "open", c.Open)
		if err != nil {
			return nil, err
		}
		if !hasTimeout {
			return nil, fieldErr("cmd_timeout", "missing: how long the door stays open, such as \"30s\" (\"0s\": until a close door or a revoke closes it)")
		}
		if cmdTimeout != 0 && (cmdTimeout < time.Second || cmdTimeout > MaxOpenFor) {
			return nil, fieldErr("cmd_timeout", "%v is out of range 1s..%v (or 0s for until closed)", cmdTimeout, MaxOpenFor)
		}
		d.CmdTimeout = cmdTimeout
	case c.Close != nil:
		d.Action, err = compileOpen(ActClose, "close", c.Close)
		if err != nil {
			return nil, err
		}
		if hasTimeout {
			return nil, fieldErr("cmd_timeout", "a close door closes at once; cmd_timeout has no meaning here")
		}
	default:
		a := Action{Kind: ActCommand}
		if c.StartCommand == "" {
			return nil, fieldErr("start_command", "missing (stop_command alone would never run)")
		}
		if a.Start, err = compileCommand("start_command", c.StartCommand); err != nil {
			return nil, err
		}
		if c.StopCommand != "" {
			if a.Stop, err = compileCommand("stop_command", c.StopCommand); err != nil {
				return nil, err
			}
		}
		a.Start6, a.Stop6 = a.Start, a.Stop
		if c.StartCommand6 != nil {
			if a.Start6, err = compileCommand("start_command_6", *c.StartCommand6); err != nil {
				return nil, err
			}
		}
		if c.StopCommand6 != nil {
			if a.Stop6, err = compileCommand("stop_command_6", *c.StopCommand6); err != nil {
				return nil, err
			}
		}
		if a.Stop == nil && a.Stop6 == nil {
			if hasTimeout {
				return nil, fieldErr("cmd_timeout", "there is no stop_command to run after it")
			}
		} else {
			d.CmdTimeout = DefaultCmdTimeout
			if hasTimeout {
				if cmdTimeout < time.Second || cmdTimeout > MaxCmdTimeout {
					return nil, fieldErr("cmd_timeout", "%v is out of range 1s..%v", cmdTimeout, MaxCmdTimeout)
				}
				d.CmdTimeout = cmdTimeout
			}
		}
		d.Action = a
	}
	return d, nil
}

func checkName(s string) error {
	if s == "" {
		return errors.New("missing")
	}
	if len(s) > MaxNameLen {
		return fmt.Errorf("longer than %d characters", MaxNameLen)
	}
	for _, c := range []byte(s) {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == '.') {
			return fmt.Errorf("%q: use letters, digits, '_', '-' and '.' only", s)
		}
	}
	return nil
}

func parseDuration(s string) (time.Duration, error) {
	d, err := time.ParseDuration(s)
	if err != nil {
		if strings.Trim(s, "0123456789") == "" {
			return 0, fmt.Errorf("duration %q has no unit: write it such as \"%ss\"", s, s)
		}
		return 0, fmt.Errorf("invalid duration %q (want a string such as \"30s\" or \"1m\")", s)
	}
	return d, nil
}

func compileOpen(kind ActionKind, key string, oc *OpenConfig) (Action, error) {
	a := Action{Kind: kind}
	if len(oc.Ports) == 0 {
		return a, fieldErr(key+".ports", "missing: the ports to %s, such as [\"22\"]", key)
	}
	seen := map[uint16]bool{}
	for _, p := range oc.Ports {
		lo, hi, isRange := strings.Cut(strings.TrimSpace(p), "-")
		first, err := parsePort(lo)
		if err != nil {
			return a, fieldErr(key+".ports", "%q: %v", p, err)
		}
		last := first
		if isRange {
			if last, err = parsePort(hi); err != nil {
				return a, fieldErr(key+".ports", "%q: %v", p, err)
			}
			if last < first {
				return a, fieldErr(key+".ports", "%q: range ends before it starts", p)
			}
		}
		if int(last-first)+1+len(a.Ports) > MaxPorts {
			return a, fieldErr(key+".ports", "more than %d ports", MaxPorts)
		}
		for n := int(first); n <= int(last); n++ {
			if seen[uint16(n)] {
				return a, fieldErr(key+".ports", "port %d listed twice", n)
			}
			seen[uint16(n)] = true
			a.Ports = append(a.Ports, uint16(n))
		}
	}
	switch strings.ToLower(oc.Proto) {
	case "", "tcp":
		a.Protos = []string{"tcp"}
	case "udp":
		a.Protos = []string{"udp"}
	case "both":
		a.Protos = []string{"tcp", "udp"}
	default:
		return a, fieldErr(key+".proto", "%q: want tcp, udp or both", oc.Proto)
	}
	return a, nil
}

// Placeholders in door commands: knockd's only one.
const PlaceholderIP = "%IP%"

// compileCommand splits a command template into arguments the way the
// exec backend does (rules.SplitArgs: no shell, ever) and checks it. An
// empty template is nil: nothing to run.
func compileCommand(key, tmpl string) ([]string, error) {
	if strings.TrimSpace(tmpl) == "" {
		return nil, nil
	}
	if s := ShellSyntax(tmpl); s != "" {
		return nil, fieldErr(key, "%q needs a shell (%q) but knockdaemon runs commands without one; put the commands in a script and call the script", tmpl, s)
	}
	argv, err := rules.SplitArgs(tmpl)
	if err != nil {
		return nil, fieldErr(key, "%q: %v", tmpl, err)
	}
	if len(argv) == 0 {
		return nil, nil
	}
	if !filepath.IsAbs(argv[0]) {
		return nil, fieldErr(key, "%q: the command must be an absolute path (found %q)", tmpl, argv[0])
	}
	if strings.Contains(argv[0], "%") {
		return nil, fieldErr(key, "%q: the command name cannot hold a placeholder", tmpl)
	}
	for _, a := range argv[1:] {
		for rest := a; ; {
			i := strings.IndexByte(rest, '%')
			if i < 0 {
				break
			}
			j := strings.IndexByte(rest[i+1:], '%')
			if j < 0 {
				break
			}
			word := rest[i : i+j+2]
			if isPlaceholder(word) && word != PlaceholderIP {
				return nil, fieldErr(key, "%q: unknown placeholder %s (doors know %s only)", tmpl, word, PlaceholderIP)
			}
			rest = rest[i+j+1:]
		}
	}
	return argv, nil
}

func isPlaceholder(w string) bool {
	if len(w) < 3 {
		return false
	}
	for _, c := range []byte(w[1 : len(w)-1]) {
		if !(c >= 'A' && c <= 'Z' || c == '_') {
			return false
		}
	}
	return true
}

// Steps returns every (port, protocol) the door's fixed sequence knocks
// on; nil for a one-time door.
func (d *Door) Steps() []Step {
	out := slices.Clone(d.Sequence)
	slices.SortFunc(out, func(a, b Step) int {
		if a.Port != b.Port {
			return int(a.Port) - int(b.Port)
		}
		return int(a.Proto) - int(b.Proto)
	})
	return slices.Compact(out)
}

// CheckSet checks doors as a set: names are unique, and no door's fixed
// sequence contains another's (the shorter would always fire first, and
// a door that fires resets the knocker's progress on every door, so the
// longer could never open), unless their TCP flag rules exclude each
// other. It returns every problem, each naming the doors.
func CheckSet(doors []*Door) error {
	var errs []error
	names := map[string]bool{}
	for _, d := range doors {
		if names[d.Name] {
			errs = append(errs, fmt.Errorf("door %q: name used twice", d.Name))
		}
		names[d.Name] = true
	}
	for i, a := range doors {
		for j, b := range doors {
			if i == j || a.Sequence == nil || b.Sequence == nil || disjointFlags(a.Flags, b.Flags) {
				continue
			}
			if len(a.Sequence) == len(b.Sequence) && i > j {
				continue // reported once, for the pair in order
			}
			if len(b.Sequence) <= len(a.Sequence) && contains(a.Sequence, b.Sequence) {
				if len(a.Sequence) == len(b.Sequence) {
					errs = append(errs, fmt.Errorf("doors %q and %q have the same sequence %s", b.Name, a.Name, FormatSequence(a.Sequence)))
				} else {
					errs = append(errs, fmt.Errorf("door %q can never open: its sequence %s contains the sequence %s of door %q, which fires first", a.Name, FormatSequence(a.Sequence), FormatSequence(b.Sequence), b.Name))
				}
			}
		}
	}
	return errors.Join(errs...)
}

func disjointFlags(a, b FlagRule) bool {
	return a.Require&b.Forbid != 0 || b.Require&a.Forbid != 0
}

// contains reports whether sub occurs in seq as a contiguous run.
func contains(seq, sub []Step) bool {
	for i := 0; i+len(sub) <= len(seq); i++ {
		if equalSeq(seq[i:i+len(sub)], sub) {
			return true
		}
	}
	return false
}
