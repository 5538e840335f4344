package rules

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"
)

// A session keeps one long-lived firewall command (a Stream) and sends it
// one request line at a time, serialised by a mutex. Completion is known
// from a sentinel: after each request the session writes a harmless line
// whose answer it recognises, and the tool handles its input strictly
// line by line, finishing a command (netlink answers included) before it
// reads the next. Everything the tool printed before the sentinel's
// answer belongs to the request; an error line in it fails the request
// with a *CmdError as a fork would have.
//
// Anything unexpected (no answer within the timeout, the child gone,
// output that does not fit the protocol) kills the child and reports
// errSessionBroken; the backend then runs the same command once as a
// fresh fork, so an opening is never lost to a wedged child. The next
// request starts a new child.
type session struct {
	sr    StreamRunner
	proto sessionProto
	// timeout bounds one request when the context allows longer.
	timeout time.Duration

	mu       sync.Mutex
	st       Stream
	lines    chan string // the reply lines, closed at EOF
	seq      uint64
	disabled error // set when the runner cannot start streams at all
	starts   int   // children started, for tests and logs
}

// sessionProto is what differs between tools.
type sessionProto interface {
	// argv starts the tool in its line-reading mode.
	argv() []string
	// mergeStderr: replies are read from standard output with standard
	// error merged in (nft); otherwise from standard error alone, and
	// standard output is drained and dropped (ipset).
	mergeStderr() bool
	// handshake checks a fresh child and learns what it needs (nft: the
	// sentinel's answer), reading replies with next.
	handshake(write func(string) error, next func() (string, error)) error
	// sentinel is the line written after request number seq, and isEnd
	// recognises its answer.
	sentinel(seq uint64) string
	isEnd(line string, seq uint64) bool
	// failure returns the error text when the reply lines of a request
	// say it failed.
	failure(reply []string) (string, bool)
}

// errSessionBroken: the long-lived child did not answer as expected; it
// has been killed and the command was not confirmed either way.
var errSessionBroken = errors.New("long-lived firewall command broken")

// errUnusable: the tool answered the handshake, but not in a way the
// session can delimit requests with; it is not tried again.
var errUnusable = errors.New("tool unusable as a long-lived child")

// defaultSessionTimeout bounds one request to a long-lived child. A
// netlink commit takes milliseconds; a child that has not answered in
// this time is wedged.
const defaultSessionTimeout = 5 * time.Second

// maxReplyLines bounds what one request may print before its sentinel's
// answer; an error is a few lines.
const maxReplyLines = 256

func newSession(r Runner, p sessionProto) *session {
	sr, ok := r.(StreamRunner)
	if !ok {
		return nil
	}
	return &session{sr: sr, proto: p, timeout: defaultSessionTimeout}
}

// validLine refuses a request the tool could read as more or less than
// one command: control characters, or a trailing backslash (a
// continuation in nft's and ipset's line readers).
func validLine(line string) error {
	for i := 0; i < len(line); i++ {
		if c := line[i]; c < ' ' || c == 0x7f {
			return fmt.Errorf("request %q: control character", line)
		}
	}
	if line == "" || strings.HasSuffix(line, `\`) {
		return fmt.Errorf("request %q: not one command line", line)
	}
	return nil
}

// do sends one request line and waits for its answer. argv is the
// equivalent command for error messages. A nil session, or one whose
// runner cannot start streams, returns errSessionBroken at once without
// running anything.
func (s *session) do(ctx context.Context, line string, argv []string) error {
	if s == nil {
		return errSessionBroken
	}
	if err := validLine(line); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.disabled != nil {
		return fmt.Errorf("%w: %w", errSessionBroken, s.disabled)
	}
	if err := ctx.Err(); err != nil {
		return &CmdError{Argv: argv, ExitCode: -1, Err: err}
	}
	deadline := time.Now().Add(s.timeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	tctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	if s.st == nil {
		if err := s.start(tctx); err != nil {
			return err
		}
	}
	// Lines left over from an earlier request mean the child is out of
	// step: do not guess which answer belongs to whom.
	select {
	case l, ok := <-s.lines:
		s.kill()
		if !ok {
			return fmt.Errorf("%w: the child exited", errSessionBroken)
		}
		return fmt.Errorf("%w: unexpected output %q", errSessionBroken, l)
	default:
	}
	s.seq++
	seq := s.seq
	if _, err := io.WriteString(s.st, line+"\n"+s.proto.sentinel(seq)+"\n"); err != nil {
		s.kill()
		return fmt.Errorf("%w: write: %v", errSessionBroken, err)
	}
	var reply []string
	for {
		l, err := s.next(tctx)
		if err != nil {
			s.kill()
			if ctx.Err() != nil {
				return &CmdError{Argv: argv, ExitCode: -1, Err: ctx.Err()}
			}
			return fmt.Errorf("%w: %s: %v", errSessionBroken, line, err)
		}
		if s.proto.isEnd(l, seq) {
			break
		}
		if len(reply) == maxReplyLines {
			s.kill()
			return fmt.Errorf("%w: %s: more than %d lines of answer", errSessionBroken, line, maxReplyLines)
		}
		reply = append(reply, l)
	}
	if text, failed := s.proto.failure(reply); failed {
		return &CmdError{Argv: argv, ExitCode: 1, Stderr: text}
	}
	return nil
}

// next returns the next reply line, or an error at EOF or when ctx ends.
func (s *session) next(ctx context.Context) (string, error) {
	select {
	case l, ok := <-s.lines:
		if !ok {
			return "", errors.New("the child exited")
		}
		return l, nil
	case <-ctx.Done():
		return "", fmt.Errorf("no answer: %w", ctx.Err())
	}
}

func (s *session) start(ctx context.Context) error {
	st, err := s.sr.StartStream(s.proto.argv(), s.proto.mergeStderr())
	if errors.Is(err, ErrNotSupported) {
		s.disabled = err
	}
	if err != nil {
		return fmt.Errorf("%w: start: %w", errSessionBroken, err)
	}
	s.starts++
	lines := make(chan string, 64)
	replies := st.Output()
	if !s.proto.mergeStderr() {
		replies = st.Errors()
		// Standard output (prompts, listings nobody asked for) must not
		// fill its pipe and block the child.
		go func() { _, _ = io.Copy(io.Discard, st.Output()) }()
	}
	go readLines(replies, lines)
	s.st, s.lines = st, lines
	write := func(l string) error {
		_, err := io.WriteString(st, l+"\n")
		return err
	}
	if err := s.proto.handshake(write, func() (string, error) { return s.next(ctx) }); err != nil {
		if errors.Is(err, errUnusable) {
			s.disabled = err
		}
		s.kill()
		return fmt.Errorf("%w: start: %w", errSessionBroken, err)
	}
	return nil
}

// readLines sends r's lines (without the newline; over-long lines cut at
// 64 KiB) to out and closes it at EOF or on a read error.
func readLines(r io.Reader, out chan<- string) {
	defer close(out)
	br := bufio.NewReaderSize(r, 4096)
	var b strings.Builder
	for {
		chunk, err := br.ReadSlice('\n')
		if b.Len() < 64<<10 {
			b.Write(chunk[:min(len(chunk), 64<<10-b.Len())])
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		if err != nil {
			if b.Len() > 0 {
				out <- b.String()
			}
			return
		}
		out <- strings.TrimRight(b.String(), "\r\n")
		b.Reset()
	}
}

// kill ends the child; the next request starts a new one.
func (s *session) kill() {
	if s.st == nil {
		return
	}
	s.st.Kill()
	go s.drainAndClose(s.st, s.lines)
	s.st, s.lines = nil, nil
}

func (s *session) drainAndClose(st Stream, lines chan string) {
	_ = st.Close()
	for range lines {
	}
}

// stop closes the child's input and waits for it; the next request
// starts a new one.
func (s *session) stop() error {
	if s == nil {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.st == nil {
		return nil
	}
	st, lines := s.st, s.lines
	s.st, s.lines = nil, nil
	err := st.Close()
	for range lines {
	}
	return err
}

// pid is the running child's process id, 0 when there is none.
func (s *session) pid() int {
	if s == nil {
		return 0
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.st == nil {
		return 0
	}
	return s.st.Pid()
}

// started is how many children the session has started.
func (s *session) started() int {
	if s == nil {
		return 0
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.starts
}
