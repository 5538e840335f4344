package rules

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"sync"
	"time"
)

// StreamRunner is a Runner that can also start a long-lived command that
// reads requests on its standard input, one per line: the nftables and
// ipset backends keep one such child ("nft -i", "ipset -") so that an
// opening costs a line written to a pipe instead of a fork and exec.
// Backends use it when their Runner implements it and fall back to Run
// otherwise. The argument vector is never a shell line; the request
// lines are the backends' own, every value in them validated exactly as
// for Run.
type StreamRunner interface {
	Runner
	// StartStream starts argv. With mergeStderr the command's standard
	// error goes to the same pipe as its standard output (Output), so
	// that their order is kept; otherwise Errors reads standard error.
	StartStream(argv []string, mergeStderr bool) (Stream, error)
}

// Stream is a running long-lived command started by a StreamRunner.
type Stream interface {
	// Write writes to the command's standard input.
	Write(p []byte) (int, error)
	// Output reads the command's standard output (and standard error
	// when merged).
	Output() io.Reader
	// Errors reads standard error when it is not merged, else nil.
	Errors() io.Reader
	// Kill ends the command (its process group) at once.
	Kill()
	// Close closes standard input, waits a short while for the command
	// to exit, kills it when it does not, and reaps it. It returns
	// the command's exit error, if any. Close is safe to call twice.
	Close() error
	// Pid is the process id of the command, for logs and tests.
	Pid() int
}

// streamStopGrace is how long Close waits for a command to exit on its
// own after its standard input is closed.
const streamStopGrace = 2 * time.Second

// StartStream starts argv as a long-lived child with pipes for standard
// input and output, in its own process group, with the C locale, as Run
// does. The child ends when its standard input is closed (Close), when it
// is killed, or when the daemon dies (its end of the pipe closes).
func (r *ExecRunner) StartStream(argv []string, mergeStderr bool) (Stream, error) {
	argv, path, err := r.resolve(argv)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(path, argv[1:]...)
	cmd.Args[0] = argv[0]
	cmd.Env = r.environ()
	startInGroup(cmd)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, &CmdError{Argv: argv, ExitCode: -1, Err: err}
	}
	// os.Pipe, not StdoutPipe: the same write end can serve as standard
	// error, which keeps the order of what the command writes to both.
	outR, outW, err := os.Pipe()
	if err != nil {
		stdin.Close()
		return nil, &CmdError{Argv: argv, ExitCode: -1, Err: err}
	}
	cmd.Stdout = outW
	var errR, errW *os.File
	if mergeStderr {
		cmd.Stderr = outW
	} else {
		if errR, errW, err = os.Pipe(); err != nil {
			stdin.Close()
			outR.Close()
			outW.Close()
			return nil, &CmdError{Argv: argv, ExitCode: -1, Err: err}
		}
		cmd.Stderr = errW
	}
	err = cmd.Start()
	// The child holds its own copies of the write ends; closing ours
	// makes the reader see EOF when the child exits.
	outW.Close()
	if errW != nil {
		errW.Close()
	}
	if err != nil {
		stdin.Close()
		outR.Close()
		if errR != nil {
			errR.Close()
		}
		return nil, &CmdError{Argv: argv, ExitCode: -1, Err: err}
	}
	s := &execStream{argv: argv, cmd: cmd, stdin: stdin, out: outR, done: make(chan struct{})}
	if errR != nil {
		s.errs = errR
	}
	go func() {
		s.waitErr = cmd.Wait()
		close(s.done)
	}()
	return s, nil
}

type execStream struct {
	argv    []string
	cmd     *exec.Cmd
	stdin   io.WriteCloser
	out     *os.File
	errs    *os.File // nil when merged
	done    chan struct{}
	waitErr error // set before done is closed
	once    sync.Once
	err     error
}

func (s *execStream) Write(p []byte) (int, error) { return s.stdin.Write(p) }
func (s *execStream) Output() io.Reader           { return s.out }
func (s *execStream) Pid() int                    { return s.cmd.Process.Pid }

func (s *execStream) Errors() io.Reader {
	if s.errs == nil {
		return nil
	}
	return s.errs
}

func (s *execStream) Kill() {
	select {
	case <-s.done:
	default:
		killProcessGroup(s.cmd.Process)
	}
}

func (s *execStream) Close() error {
	s.once.Do(func() {
		s.stdin.Close()
		t := time.NewTimer(streamStopGrace)
		select {
		case <-s.done:
			t.Stop()
		case <-t.C:
			s.Kill()
			<-s.done
		}
		// The readers see EOF now (the child's write ends are closed);
		// closing ours also unblocks a reader still waiting.
		s.out.Close()
		if s.errs != nil {
			s.errs.Close()
		}
		if s.waitErr != nil {
			s.err = &CmdError{Argv: s.argv, ExitCode: -1, Err: fmt.Errorf("long-lived command: %w", s.waitErr)}
		}
	})
	return s.err
}

// StartStream starts argv inside the namespace, as Run does, when the
// inner runner can start streams.
func (n *netnsRunner) StartStream(argv []string, mergeStderr bool) (Stream, error) {
	sr, ok := n.inner.(StreamRunner)
	if !ok {
		return nil, fmt.Errorf("%T cannot start long-lived commands: %w", n.inner, ErrNotSupported)
	}
	full := make([]string, 0, len(argv)+4)
	full = append(full, "ip", "netns", "exec", n.ns)
	full = append(full, argv...)
	return sr.StartStream(full, mergeStderr)
}
