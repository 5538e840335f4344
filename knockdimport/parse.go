// Package knockdimport reads a knockd configuration file (knockd.conf, as
// knockd 0.8 reads it) and writes the equivalent knockdaemon [[door]]
// configuration (docs/DOORS.md), with a warning for everything that cannot
// be carried over. `knockdaemon import-knockd FILE` is its command line.
//
// Parse follows knockd's parseconfig: lines are trimmed; empty lines and
// lines starting with '#' are skipped; "[name]" starts a section, and the
// section "options" (exactly, as knockd compares it) holds the global
// directives; a directive is "Key = value" with the key case-insensitive
// and the value the rest of the line; "UseSyslog" is the only directive
// without a value. Unlike knockd, a number that is not a number is an
// error (knockd's atoi makes it 0), and every error names its line.
package knockdimport

import (
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
)

// MaxSize bounds the knockd.conf Parse accepts.
const MaxSize = 1 << 20

// Value is one directive's value and where it was.
type Value struct {
	Text string
	Line int // 0: not set
}

// Set reports whether the directive was given.
func (v Value) Set() bool { return v.Line > 0 }

// Options is the [options] section.
type Options struct {
	UseSyslog Value // Text is "" (the directive has no value)
	LogFile   Value
	PidFile   Value
	Interface Value
}

// Door is one knock/event section.
type Door struct {
	Name string
	Line int // of the [name] header

	Sequence         Value
	OneTimeSequences Value
	SeqTimeout       Value // SEQ_TIMEOUT or TIMEOUT
	TCPFlags         Value
	Target           Value
	StartCommand     Value // START_COMMAND or COMMAND
	StartCommand6    Value // START_COMMAND_6 or COMMAND_6
	StopCommand      Value
	StopCommand6     Value
	CmdTimeout       Value

	// Repeated lists directives given more than once (knockd keeps the
	// last), as "KEY (line N)".
	Repeated []string
}

// File is a parsed knockd.conf.
type File struct {
	Path    string
	Options Options
	Doors   []*Door
}

// Error is a knockd.conf problem at a line.
type Error struct {
	Path string
	Line int
	Msg  string
}

func (e *Error) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("%s:%d: %s", e.Path, e.Line, e.Msg)
	}
	return fmt.Sprintf("%s: %s", e.Path, e.Msg)
}

// Parse reads data as the knockd.conf at path.
func Parse(path string, data []byte) (*File, error) {
	if len(data) > MaxSize {
		return nil, &Error{Path: path, Msg: fmt.Sprintf("larger than %d bytes; is this a knockd.conf?", MaxSize)}
	}
	f := &File{Path: path}
	errf := func(line int, format string, args ...any) error {
		return &Error{Path: path, Line: line, Msg: fmt.Sprintf(format, args...)}
	}
	var (
		section string
		door    *Door
	)
	text := strings.TrimPrefix(string(data), "\ufeff") // a byte order mark from a Windows editor
	for i, raw := range strings.Split(text, "\n") {
		n := i + 1
		if strings.IndexByte(raw, 0) >= 0 {
			return nil, errf(n, "NUL byte; is this a knockd.conf?")
		}
		line := strings.TrimSpace(raw)
		if line == "" || line[0] == '#' {
			continue
		}
		if line[0] == '[' && line[len(line)-1] == ']' {
			section = line[1 : len(line)-1]
			if section == "" {
				return nil, errf(n, "bad section name \"[]\"")
			}
			if section == "options" {
				door = nil
				continue
			}
			door = &Door{Name: section, Line: n}
			f.Doors = append(f.Doors, door)
			continue
		}
		if line[0] == '[' {
			return nil, errf(n, "section header %q has no closing ']'", line)
		}
		if section == "" {
			return nil, errf(n, "%q is outside any section; every directive belongs to [options] or a door section", line)
		}
		key, val, hasVal := strings.Cut(line, "=")
		key = strings.ToUpper(strings.TrimSpace(key))
		val = strings.TrimSpace(val)
		if !hasVal {
			if key == "USESYSLOG" {
				f.Options.UseSyslog = Value{Line: n}
				continue
			}
			return nil, errf(n, "syntax error: %q is not \"key = value\"", line)
		}
		if door == nil {
			var v *Value
			switch key {
			case "LOGFILE":
				v = &f.Options.LogFile
			case "PIDFILE":
				v = &f.Options.PidFile
			case "INTERFACE":
				v = &f.Options.Interface
			default:
				return nil, errf(n, "unknown directive %q in [options] (knockd knows UseSyslog, LogFile, PidFile, Interface)", key)
			}
			*v = Value{Text: val, Line: n}
			continue
		}
		var v *Value
		switch key {
		case "SEQUENCE":
			v = &door.Sequence
		case "ONE_TIME_SEQUENCES":
			v = &door.OneTimeSequences
		case "SEQ_TIMEOUT", "TIMEOUT":
			v = &door.SeqTimeout
		case "TCPFLAGS":
			v = &door.TCPFlags
		case "TARGET":
			v = &door.Target
		case "START_COMMAND", "COMMAND":
			v = &door.StartCommand
		case "START_COMMAND_6", "COMMAND_6":
			v = &door.StartCommand6
		case "STOP_COMMAND":
			v = &door.StopCommand
		case "STOP_COMMAND_6":
			v = &door.StopCommand6
		case "CMD_TIMEOUT":
			v = &door.CmdTimeout
		case "LOGFILE", "PIDFILE", "INTERFACE":
			return nil, errf(n, "%q belongs in [options], not in door [%s]", key, door.Name)
		default:
			return nil, errf(n, "unknown directive %q in door [%s]", key, door.Name)
		}
		if v.Set() {
			door.Repeated = append(door.Repeated, fmt.Sprintf("%s (line %d)", key, n))
		}
		*v = Value{Text: val, Line: n}
	}
	for _, d := range f.Doors {
		if !d.Sequence.Set() && !d.OneTimeSequences.Set() {
			return nil, errf(d.Line, "door [%s] has no sequence (and no one_time_sequences)", d.Name)
		}
		for _, v := range []struct {
			name string
			v    Value
		}{{"seq_timeout", d.SeqTimeout}, {"cmd_timeout", d.CmdTimeout}} {
			if v.v.Set() {
				if _, err := seconds(v.v.Text); err != nil {
					return nil, errf(v.v.Line, "door [%s]: %s: %v", d.Name, v.name, err)
				}
			}
		}
	}
	return f, nil
}

// seconds parses a knockd timeout: a whole number of seconds.
func seconds(s string) (int, error) {
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("%q is not a number of seconds", s)
	}
	return n, nil
}

// Load reads and parses the knockd.conf at path.
func Load(path string) (*File, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxSize+1))
	if err != nil {
		return nil, err
	}
	return Parse(path, data)
}
