package rules

import (
	"context"
	"io"
	"strings"
	"sync"
)

// FakeRunner is a Runner for tests: it records every argument vector and
// answers from a script. Commands are keyed by FormatArgv(argv); a command
// without a scripted answer succeeds with no output, unless Default is set.
// It is safe for concurrent use.
type FakeRunner struct {
	// Default answers commands that have no scripted answer left.
	Default func(argv []string) ([]byte, error)

	mu     sync.Mutex
	calls  [][]string
	script map[string][]fakeAnswer
}

type fakeAnswer struct {
	out    []byte
	err    error
	sticky bool
}

// On scripts the next answer to the command line (as FormatArgv renders
// it). Answers for one command are used once each, in the order they were
// added; see Always for an answer that repeats.
func (f *FakeRunner) On(line string, out string, err error) *FakeRunner {
	return f.add(line, fakeAnswer{out: []byte(out), err: err})
}

// Always scripts an answer that is given every time the command is run.
func (f *FakeRunner) Always(line string, out string, err error) *FakeRunner {
	return f.add(line, fakeAnswer{out: []byte(out), err: err, sticky: true})
}

// Fail scripts a failure with an exit status and standard error, as the
// tool would answer; the backend's classifier then recognises it.
func (f *FakeRunner) Fail(line string, exitCode int, stderr string) *FakeRunner {
	return f.On(line, "", &CmdError{ExitCode: exitCode, Stderr: stderr})
}

func (f *FakeRunner) add(line string, a fakeAnswer) *FakeRunner {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.script == nil {
		f.script = make(map[string][]fakeAnswer)
	}
	f.script[line] = append(f.script[line], a)
	return f
}

// Run records argv and returns the scripted answer.
func (f *FakeRunner) Run(ctx context.Context, argv []string) ([]byte, error) {
	argv = append([]string(nil), argv...)
	line := FormatArgv(argv)
	f.mu.Lock()
	f.calls = append(f.calls, argv)
	var (
		a  fakeAnswer
		ok bool
	)
	if q := f.script[line]; len(q) > 0 {
		a, ok = q[0], true
		if !a.sticky {
			f.script[line] = q[1:]
		}
	}
	def := f.Default
	f.mu.Unlock()
	if err := ctx.Err(); err != nil {
		return nil, &CmdError{Argv: argv, ExitCode: -1, Err: err}
	}
	if !ok {
		if def != nil {
			return def(argv)
		}
		return nil, nil
	}
	if a.err != nil {
		// Give every caller its own copy with the real argv, so that the
		// classifier can mark it without touching the script.
		if ce, isCmd := a.err.(*CmdError); isCmd {
			c := *ce
			c.Argv = argv
			return nil, &c
		}
		return nil, a.err
	}
	return append([]byte(nil), a.out...), nil
}

// Calls returns the commands run so far, one FormatArgv line each.
func (f *FakeRunner) Calls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]string, len(f.calls))
	for i, c := range f.calls {
		out[i] = FormatArgv(c)
	}
	return out
}

// Argvs returns the recorded argument vectors.
func (f *FakeRunner) Argvs() [][]string {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([][]string, len(f.calls))
	for i, c := range f.calls {
		out[i] = append([]string(nil), c...)
	}
	return out
}

// Reset forgets the recorded calls (the script stays).
func (f *FakeRunner) Reset() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = nil
}

// String lists the recorded calls, one per line, for test failures.
func (f *FakeRunner) String() string { return strings.Join(f.Calls(), "\n") }

// FakeStreamRunner is a FakeRunner that can also start long-lived
// commands (StreamRunner), for tests of the nftables and ipset backends'
// long-lived children: it records every line written to a stream and
// answers from Answer. Commands run with Run go to the embedded
// FakeRunner as before. It is safe for concurrent use.
type FakeStreamRunner struct {
	FakeRunner
	// Answer returns the lines the tool prints in reply to line (on the
	// merged output, or on standard error when not merged). hang true
	// makes the fake print nothing ever again, as a wedged child.
	Answer func(argv []string, line string) (reply []string, hang bool)
	// StartErr, when set, fails every StartStream.
	StartErr error

	smu     sync.Mutex
	starts  []string
	written []string
	live    []*fakeStream
}

// StartStream records argv and returns a fake stream answering with
// Answer.
func (f *FakeStreamRunner) StartStream(argv []string, mergeStderr bool) (Stream, error) {
	f.smu.Lock()
	defer f.smu.Unlock()
	f.starts = append(f.starts, FormatArgv(argv))
	if f.StartErr != nil {
		return nil, f.StartErr
	}
	pr, pw := io.Pipe()
	s := &fakeStream{f: f, argv: append([]string(nil), argv...), merged: mergeStderr, r: pr, w: pw, pid: 1000 + len(f.starts)}
	f.live = append(f.live, s)
	return s, nil
}

// Starts returns the long-lived commands started so far.
func (f *FakeStreamRunner) Starts() []string {
	f.smu.Lock()
	defer f.smu.Unlock()
	return append([]string(nil), f.starts...)
}

// Written returns every line written to any stream, in order.
func (f *FakeStreamRunner) Written() []string {
	f.smu.Lock()
	defer f.smu.Unlock()
	return append([]string(nil), f.written...)
}

// KillAll makes every running fake child exit, as a kill would.
func (f *FakeStreamRunner) KillAll() {
	f.smu.Lock()
	live := f.live
	f.live = nil
	f.smu.Unlock()
	for _, s := range live {
		s.Kill()
	}
}

type fakeStream struct {
	f      *FakeStreamRunner
	argv   []string
	merged bool
	r      *io.PipeReader
	w      *io.PipeWriter
	pid    int

	mu     sync.Mutex
	buf    []byte
	hung   bool
	closed bool
}

func (s *fakeStream) Write(p []byte) (int, error) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return 0, io.ErrClosedPipe
	}
	s.buf = append(s.buf, p...)
	var lines []string
	for {
		i := strings.IndexByte(string(s.buf), '\n')
		if i < 0 {
			break
		}
		lines = append(lines, string(s.buf[:i]))
		s.buf = s.buf[i+1:]
	}
	s.mu.Unlock()
	for _, l := range lines {
		s.f.smu.Lock()
		s.f.written = append(s.f.written, l)
		answer := s.f.Answer
		s.f.smu.Unlock()
		s.mu.Lock()
		hung := s.hung
		s.mu.Unlock()
		if hung || answer == nil {
			continue
		}
		reply, hang := answer(s.argv, l)
		if hang {
			s.mu.Lock()
			s.hung = true
			s.mu.Unlock()
			continue
		}
		for _, r := range reply {
			if _, err := io.WriteString(s.w, r+"\n"); err != nil {
				return 0, err
			}
		}
	}
	return len(p), nil
}

func (s *fakeStream) Output() io.Reader {
	if s.merged {
		return s.r
	}
	return strings.NewReader("")
}

func (s *fakeStream) Errors() io.Reader {
	if s.merged {
		return nil
	}
	return s.r
}

func (s *fakeStream) Kill() {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	s.w.Close()
}

func (s *fakeStream) Close() error { s.Kill(); return nil }
func (s *fakeStream) Pid() int     { return s.pid }
