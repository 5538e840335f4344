package logsource

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"
)

// DefaultJournaldArgs follow the kernel transport only (-k: what the
// kernel logged, LOG lines included, which local users cannot forge),
// from now on (-n 0), one line per entry with an ISO 8601 time stamp.
var DefaultJournaldArgs = []string{"-k", "-f", "-o", "short-iso", "-n", "0", "-q", "--no-pager"}

// JournaldOptions tune a Journald source.
type JournaldOptions struct {
	Command    string           // default "journalctl", looked up on PATH
	Args       []string         // default DefaultJournaldArgs
	Now        func() time.Time // clock for Line.Received; nil means time.Now
	Logger     *slog.Logger     // restarts are logged here; nil discards
	MaxLine    int              // 0 means DefaultMaxLine
	MinBackoff time.Duration    // first restart delay, default 250ms
	MaxBackoff time.Duration    // restart delay cap, default 30s
}

// Journald runs journalctl as a supervised child and delivers its output
// lines. When journalctl exits it is started again after a delay that
// doubles from MinBackoff to MaxBackoff (reset after a run of a minute);
// entries logged while it was down are not delivered (it restarts with
// -n 0, so nothing old is replayed). When ctx ends the child gets SIGTERM,
// then SIGKILL after two seconds, and is always waited for: no zombie. On
// Linux the child is also killed if the daemon dies.
type Journald struct {
	cmd        string
	args       []string
	now        func() time.Time
	log        *slog.Logger
	maxLine    int
	min, max   time.Duration
	killDelay  time.Duration
	sleep      func(ctx context.Context, d time.Duration) bool
	stableRun  time.Duration
	c          counters
	rdy        readiness
	lastStderr string
}

// NewJournald returns a journalctl source.
func NewJournald(opts JournaldOptions) *Journald {
	j := &Journald{
		cmd:       opts.Command,
		args:      opts.Args,
		now:       nowFunc(opts.Now),
		log:       opts.Logger,
		maxLine:   opts.MaxLine,
		min:       opts.MinBackoff,
		max:       opts.MaxBackoff,
		killDelay: 2 * time.Second,
		sleep:     sleepCtx,
		stableRun: time.Minute,
	}
	if j.cmd == "" {
		j.cmd = "journalctl"
	}
	if j.args == nil {
		j.args = DefaultJournaldArgs
	}
	if j.log == nil {
		j.log = slog.New(slog.DiscardHandler)
	}
	if j.min <= 0 {
		j.min = 250 * time.Millisecond
	}
	if j.max < j.min {
		j.max = max(30*time.Second, j.min)
	}
	return j
}

func (j *Journald) String() string {
	return "journald (" + j.cmd + " " + strings.Join(j.args, " ") + ")"
}

// Stats returns the source's counters; Restarts counts journalctl restarts.
func (j *Journald) Stats() Stats { return j.c.snapshot() }

// Ready is closed once journalctl was started the first time (it
// follows the journal from its end, -n 0).
func (j *Journald) Ready() <-chan struct{} { return j.rdy.ch() }

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// Run supervises journalctl until ctx ends (returning nil). It fails at
// once only when the command is not found.
func (j *Journald) Run(ctx context.Context, emit func(Line)) error {
	path, err := exec.LookPath(j.cmd)
	if err != nil {
		return fmt.Errorf("logsource: journald source: %w (hint: install systemd's journalctl or choose another source)", err)
	}
	lb := newLineBuf(j.maxLine, 0)
	backoff := j.min
	for {
		started := time.Now()
		err := j.runOnce(ctx, path, lb, emit)
		if ctx.Err() != nil {
			return nil
		}
		if time.Since(started) >= j.stableRun {
			backoff = j.min
		}
		j.c.restarts.Add(1)
		j.log.Warn("journalctl exited, restarting", "err", err, "stderr", j.lastStderr, "in", backoff)
		if !j.sleep(ctx, backoff) {
			return nil
		}
		backoff = min(2*backoff, j.max)
	}
}

// runOnce starts journalctl, delivers its lines until its output ends,
// and reaps it.
func (j *Journald) runOnce(ctx context.Context, path string, lb *lineBuf, emit func(Line)) error {
	pr, pw, err := os.Pipe()
	if err != nil {
		return err
	}
	defer pr.Close()
	stderr := &tailWriter{max: 512}
	cmd := exec.Command(path, j.args...)
	cmd.Stdout = pw
	cmd.Stderr = stderr
	cmd.SysProcAttr = childAttr()
	cmd.WaitDelay = time.Second // a grandchild holding stderr cannot block Wait
	if err := cmd.Start(); err != nil {
		pw.Close()
		return err
	}
	pw.Close()
	j.rdy.set()
	exited := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		t := time.NewTimer(j.killDelay)
		defer t.Stop()
		select {
		case <-exited:
		case <-t.C:
			_ = cmd.Process.Kill()
			// Whoever still holds the pipe must not keep Run waiting.
			_ = pr.SetReadDeadline(time.Now().Add(j.killDelay))
		}
	})
	lb.reset(0)
	readErr := j.read(pr, lb, emit)
	if lb.pending() {
		j.c.dropped.Add(1)
	}
	// Output ended: the child is exiting. Make sure it does, then reap it.
	waitErr := make(chan error, 1)
	go func() { waitErr <- cmd.Wait() }()
	var werr error
	select {
	case werr = <-waitErr:
	case <-time.After(j.killDelay):
		_ = cmd.Process.Kill()
		werr = <-waitErr
	}
	close(exited)
	stop()
	j.lastStderr = strings.TrimSpace(stderr.String())
	if werr == nil {
		werr = errors.New("exited with status 0")
	}
	if readErr != nil {
		return fmt.Errorf("%w (read: %v)", werr, readErr)
	}
	return werr
}

func (j *Journald) read(r *os.File, lb *lineBuf, emit func(Line)) error {
	var seen uint64
	for {
		n, err := r.Read(lb.space())
		if n > 0 {
			lb.commit(n)
			lines := lb.emitAll(j.now(), emit)
			j.c.lines.Add(lines)
			j.c.overlong.Add(lb.overlong - seen)
			seen = lb.overlong
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// tailWriter keeps the last max bytes written (a child's stderr).
type tailWriter struct {
	buf []byte
	max int
}

func (w *tailWriter) Write(p []byte) (int, error) {
	w.buf = append(w.buf, p...)
	if len(w.buf) > w.max {
		w.buf = append(w.buf[:0], w.buf[len(w.buf)-w.max:]...)
	}
	return len(p), nil
}

func (w *tailWriter) String() string { return string(w.buf) }
