package rules

import (
	"context"
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
