package door

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"github.com/knockdaemon/knock/state"
)

// MaxOneTimeSize bounds a one-time sequences file.
const MaxOneTimeSize = 4 << 20

// OneTime is knockd's one_time_sequences file: one sequence per line in
// the syntax of ParseSequence; empty lines and lines starting with '#'
// (after leading white space) are skipped. The first other line is the
// door's current sequence. Once it has been knocked, Use marks its line
// used by putting '#' in front of it — knockd overwrites the first
// character instead, which is why knockd(1) asks for a leading space; a
// '#' in front keeps the line readable and works either way — and the
// next line becomes current. The file is rewritten atomically (temporary
// file in the same directory, fsync, rename, fsync of the directory), so
// a crash leaves either the old or the new file, never half of one, and
// the used mark is on disk before Use returns.
//
// The file is re-read on every Use: sequences appended while the daemon
// runs are picked up, and a sequence removed from the file is no longer
// accepted. A OneTime is safe for concurrent use.
type OneTime struct {
	path string // symlinks resolved: the rename replaces the file, not a link

	mu        sync.Mutex
	cur       []Step
	remaining int
}

// LineError is a malformed line of a one-time sequences file.
type LineError struct {
	Path string
	Line int
	Err  error
}

func (e *LineError) Error() string { return fmt.Sprintf("%s:%d: %v", e.Path, e.Line, e.Err) }
func (e *LineError) Unwrap() error { return e.Err }

// OpenOneTime reads the one-time sequences file at path. A malformed line
// is an error naming it (knockd skips such lines silently, so a typo
// would silently disable a sequence). A file with no unused sequence is
// not an error: the door stays closed (Current is nil) until one is
// appended and the daemon reloads.
func OpenOneTime(path string) (*OneTime, error) {
	real, err := filepath.EvalSymlinks(path)
	if err != nil {
		return nil, fmt.Errorf("one-time sequences: %w", err)
	}
	o := &OneTime{path: real}
	lines, err := o.read()
	if err != nil {
		return nil, err
	}
	if err := o.load(path, lines); err != nil {
		return nil, err
	}
	return o, nil
}

// Reload re-reads the file (the admin appended sequences or edited it)
// and returns the current sequence. A malformed line is an error naming
// it, and the OneTime is left as it was.
func (o *OneTime) Reload() ([]Step, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	lines, err := o.read()
	if err != nil {
		return nil, err
	}
	if err := o.load(o.path, lines); err != nil {
		return nil, err
	}
	return slices.Clone(o.cur), nil
}

// load checks every sequence line of the file (a malformed one is a
// *LineError naming path and the line) and, only when all are good, makes
// the first unused one current.
func (o *OneTime) load(path string, lines []string) error {
	for i, l := range lines {
		t := strings.TrimSpace(l)
		if t == "" || t[0] == '#' {
			continue
		}
		if _, err := ParseSequence(t); err != nil {
			return &LineError{Path: path, Line: i + 1, Err: err}
		}
	}
	o.cur, _, o.remaining = scan(lines)
	return nil
}

// All returns every unused sequence in the file, in file order, as last
// read (for LOG rules that must cover them all).
func (o *OneTime) All() [][]Step {
	o.mu.Lock()
	defer o.mu.Unlock()
	lines, err := o.read()
	if err != nil {
		return nil
	}
	var out [][]Step
	for _, l := range lines {
		t := strings.TrimSpace(l)
		if t == "" || t[0] == '#' {
			continue
		}
		if s, err := ParseSequence(t); err == nil {
			out = append(out, s)
		}
	}
	return out
}

// Path is the file's path (symlinks resolved).
func (o *OneTime) Path() string { return o.path }

// Current returns the sequence to knock now, nil when none is left.
func (o *OneTime) Current() []Step {
	o.mu.Lock()
	defer o.mu.Unlock()
	return slices.Clone(o.cur)
}

// Remaining returns how many unused sequences the file held when last read.
func (o *OneTime) Remaining() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.remaining
}

// Use marks the first unused line holding seq as used, durably, and
// returns the next current sequence (nil when none is left) and how many
// unused sequences remain. When the file no longer holds seq unused (it
// was edited), nothing is written and an error says so: the sequence must
// not be accepted. On a write error the file is unchanged.
func (o *OneTime) Use(seq []Step) ([]Step, int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	lines, err := o.read()
	if err != nil {
		return nil, 0, err
	}
	idx := -1
	for i, l := range lines {
		t := strings.TrimSpace(l)
		if t == "" || t[0] == '#' {
			continue
		}
		if s, err := ParseSequence(t); err == nil && equalSeq(s, seq) {
			idx = i
			break
		}
	}
	if idx < 0 {
		return nil, 0, fmt.Errorf("one-time sequences %s: sequence %s is no longer in the file unused (edited while running?)", o.path, FormatSequence(seq))
	}
	lines[idx] = "#" + lines[idx]
	if err := writeAtomic(o.path, []byte(strings.Join(lines, "\n"))); err != nil {
		return nil, 0, fmt.Errorf("one-time sequences: %w", err)
	}
	o.cur, _, o.remaining = scan(lines)
	return slices.Clone(o.cur), o.remaining, nil
}

// read returns the file's lines (split on \n; a final newline gives a last
// empty line, so joining gives the file back).
func (o *OneTime) read() ([]string, error) {
	f, err := os.Open(o.path)
	if err != nil {
		return nil, fmt.Errorf("one-time sequences: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("one-time sequences: %w", err)
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("one-time sequences %s: not a regular file", o.path)
	}
	data, err := io.ReadAll(io.LimitReader(f, MaxOneTimeSize+1))
	if err != nil {
		return nil, fmt.Errorf("one-time sequences: %w", err)
	}
	if len(data) > MaxOneTimeSize {
		return nil, fmt.Errorf("one-time sequences %s: larger than %d bytes", o.path, MaxOneTimeSize)
	}
	return strings.Split(string(data), "\n"), nil
}

// scan returns the first unused valid sequence, its line index and the
// number of unused valid sequences.
func scan(lines []string) ([]Step, int, int) {
	var (
		cur   []Step
		at    = -1
		count int
	)
	for i, l := range lines {
		t := strings.TrimSpace(l)
		if t == "" || t[0] == '#' {
			continue
		}
		s, err := ParseSequence(t)
		if err != nil {
			continue
		}
		if cur == nil {
			cur, at = s, i
		}
		count++
	}
	return cur, at, count
}

// writeAtomic replaces path with data through state.WriteFileAtomic,
// keeping path's mode and (where the platform has one) its owner.
func writeAtomic(path string, data []byte) error {
	st, err := os.Stat(path)
	if err != nil {
		return err
	}
	return state.WriteFileAtomic(path, data, st.Mode().Perm(), func(f *os.File) error { return chownLike(f, st) })
}
