package testbin

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// DaemonOptions say how Start runs a knockdaemon.
type DaemonOptions struct {
	// Program is the binary; Args its arguments (for example -c CONF run).
	Program string
	Args    []string
	// Wrapper, when set, is the command line the program runs under (for
	// example ip netns exec NS setpriv ...).
	Wrapper []string
	// Env, when not nil, replaces the environment.
	Env []string
	// Stdin, when not nil, is the daemon's standard input and Feed is an
	// error; otherwise standard input is a pipe that Feed writes and Stop
	// closes (EOF ends a stdin source at once).
	Stdin io.Reader
	// LogFile, when set, receives a copy of every output line.
	LogFile string
	// ReadyPath, when set, counts as readiness once it exists: at log
	// levels above info the event=started line is not written, but the
	// control socket is made after the same setup.
	ReadyPath string
	// ReadyTimeout bounds the wait for readiness (default 20s);
	// StopTimeout the wait for an exit after SIGTERM (default 15s).
	ReadyTimeout, StopTimeout time.Duration
	// CleanExit: Stop fails the test unless the daemon exits with status 0
	// (a Kill9 excepted). A data race report in the output always fails it.
	CleanExit bool
}

// Daemon is a running knockdaemon whose output (its JSON log on stderr and
// anything it prints) is captured line by line. Its methods may be called
// from several goroutines.
type Daemon struct {
	t     testing.TB
	o     DaemonOptions
	name  string
	cmd   *exec.Cmd
	stdin io.WriteCloser // nil when o.Stdin is set
	logf  *os.File

	mu      sync.Mutex
	lines   []string
	notify  chan struct{} // closed and replaced on every new line
	killed  bool
	checked bool // checkExit ran

	done chan struct{} // closed when the process has exited
	err  error         // its exit status, valid after done
}

// StartDaemon runs the daemon and waits until it is ready: it has logged
// event=started (after its backend setup and state restore, once its log
// source follows), or o.ReadyPath exists. A daemon that exits or is not
// ready in time fails the test. The test's cleanup stops it and, when the
// test failed, logs the last lines of its output.
func StartDaemon(t testing.TB, o DaemonOptions) *Daemon {
	t.Helper()
	if o.ReadyTimeout <= 0 {
		o.ReadyTimeout = 20 * time.Second
	}
	if o.StopTimeout <= 0 {
		o.StopTimeout = 15 * time.Second
	}
	d := &Daemon{t: t, o: o, name: filepath.Base(o.Program), notify: make(chan struct{}), done: make(chan struct{})}
	var err error
	if o.LogFile != "" {
		if d.logf, err = os.OpenFile(o.LogFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	argv := append(append(append([]string(nil), o.Wrapper...), o.Program), o.Args...)
	d.cmd = exec.Command(argv[0], argv[1:]...)
	d.cmd.Env = o.Env
	d.cmd.SysProcAttr = DieWithParent()
	if o.Stdin != nil {
		d.cmd.Stdin = o.Stdin
	} else if d.stdin, err = d.cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	d.cmd.Stdout, d.cmd.Stderr = pw, pw
	if err := d.cmd.Start(); err != nil {
		pr.Close()
		pw.Close()
		t.Fatalf("start %s: %v", d.name, err)
	}
	pw.Close()
	read := make(chan struct{})
	go func() {
		defer close(read)
		d.read(pr)
	}()
	go func() {
		d.err = d.cmd.Wait()
		// Take in what it wrote last (a race report is written at exit),
		// unless a child of its own still holds the pipe.
		select {
		case <-read:
		case <-time.After(2 * time.Second):
		}
		close(d.done)
	}()
	t.Cleanup(func() {
		d.Stop()
		if d.logf != nil {
			d.logf.Close()
		}
		if t.Failed() {
			t.Logf("%s output (%s), last lines:\n%s", d.name, strings.Join(o.Args, " "), d.Tail(200))
		}
	})
	d.waitReady()
	return d
}

func (d *Daemon) read(r io.ReadCloser) {
	defer r.Close()
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for sc.Scan() {
		line := sc.Text()
		if d.logf != nil {
			fmt.Fprintln(d.logf, line)
		}
		d.mu.Lock()
		d.lines = append(d.lines, line)
		close(d.notify)
		d.notify = make(chan struct{})
		d.mu.Unlock()
	}
}

func (d *Daemon) waitReady() {
	d.t.Helper()
	started := map[string]string{"event": "started"}
	deadline := time.Now().Add(d.o.ReadyTimeout)
	for i := 0; ; i++ {
		if _, ok := d.FindEvent(0, 50*time.Millisecond, started); ok {
			return
		}
		if d.o.ReadyPath != "" {
			if _, err := os.Stat(d.o.ReadyPath); err == nil {
				return
			}
		}
		select {
		case <-d.done:
			d.t.Fatalf("%s exited at start: %v\n%s", d.name, d.err, d.Tail(40))
		default:
		}
		if time.Now().After(deadline) || i > 10_000 {
			d.t.Fatalf("%s did not log event=started within %v:\n%s", d.name, d.o.ReadyTimeout, d.Tail(40))
		}
	}
}

// Pid is the process id (of the wrapper, when there is one).
func (d *Daemon) Pid() int { return d.cmd.Process.Pid }

// Text is everything the daemon printed so far.
func (d *Daemon) Text() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return strings.Join(d.lines, "\n")
}

// Tail is the last n lines the daemon printed.
func (d *Daemon) Tail(n int) string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return strings.Join(d.lines[max(0, len(d.lines)-n):], "\n")
}

// Mark returns the number of output lines so far, so that a wait looks
// only at what comes after it.
func (d *Daemon) Mark() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.lines)
}

// Event is one JSON log line of the daemon.
type Event map[string]any

// Get returns field k as text ("" when absent).
func (e Event) Get(k string) string {
	switch v := e[k].(type) {
	case nil:
		return ""
	case string:
		return v
	case float64:
		return strconv.FormatFloat(v, 'f', -1, 64)
	default:
		return fmt.Sprint(v)
	}
}

// Match reports whether every field in want has that value in e. A wanted
// value "a|b" accepts either.
func (e Event) Match(want map[string]string) bool {
	for k, v := range want {
		got, ok := e.Get(k), false
		for _, alt := range strings.Split(v, "|") {
			if got == alt {
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
	}
	return true
}

// MatchEvents parses JSON log lines and returns the events among them that
// match want (every event for a nil want); other lines are passed over.
func MatchEvents(lines []string, want map[string]string) []Event {
	return matching(lines, want, 0)
}

// matching is MatchEvents, stopping at limit events when limit > 0.
func matching(lines []string, want map[string]string, limit int) []Event {
	var out []Event
	for _, l := range lines {
		if !strings.HasPrefix(l, "{") {
			continue
		}
		var e Event
		if json.Unmarshal([]byte(l), &e) == nil && e.Match(want) {
			out = append(out, e)
			if limit > 0 && len(out) == limit {
				break
			}
		}
	}
	return out
}

// Events returns the log events from line from on that match want (every
// event for a nil want).
func (d *Daemon) Events(from int, want map[string]string) []Event {
	d.mu.Lock()
	lines := d.lines[min(max(from, 0), len(d.lines)):]
	d.mu.Unlock()
	// lines only grows by appending: the slice taken stays valid.
	return matching(lines, want, 0)
}

// Count is the number of events so far that match want.
func (d *Daemon) Count(want map[string]string) int { return len(d.Events(0, want)) }

// FindEvent waits up to timeout for an event after mark that matches want.
// It gives up early when the daemon has exited and everything it wrote
// was looked at.
func (d *Daemon) FindEvent(mark int, timeout time.Duration, want map[string]string) (Event, bool) {
	var found Event
	_, ok := d.scan(mark, timeout, func(l string) bool {
		if evs := matching([]string{l}, want, 1); len(evs) > 0 {
			found = evs[0]
			return true
		}
		return false
	})
	return found, ok
}

// scan waits up to timeout for an output line after mark for which ok is
// true. It gives up early when the daemon has exited and every line it
// wrote was looked at.
func (d *Daemon) scan(mark int, timeout time.Duration, ok func(string) bool) (string, bool) {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		d.mu.Lock()
		lines := d.lines[min(max(mark, 0), len(d.lines)):]
		next, n := d.notify, len(d.lines)
		d.mu.Unlock()
		for _, l := range lines {
			if ok(l) {
				return l, true
			}
		}
		mark = n
		select {
		case <-next:
		case <-d.done:
			if d.Mark() == mark {
				return "", false
			}
		case <-deadline.C:
			return "", false
		}
	}
}

// WaitEvent is FindEvent that fails the test when no such event comes.
func (d *Daemon) WaitEvent(mark int, timeout time.Duration, want map[string]string) Event {
	d.t.Helper()
	e, ok := d.FindEvent(mark, timeout, want)
	if !ok {
		d.t.Fatalf("%s logged no event %v within %v; last lines:\n%s", d.name, want, timeout, d.Tail(30))
	}
	return e
}

// NoEvent fails the test for every event after mark that matches want.
func (d *Daemon) NoEvent(mark int, want map[string]string) {
	d.t.Helper()
	for _, e := range d.Events(mark, want) {
		d.t.Errorf("%s logged %v, want no event %v", d.name, e, want)
	}
}

// WaitLine waits up to timeout for an output line after mark (log or
// anything else the daemon printed) for which ok is true, and fails the
// test if none comes; what names the line in that failure.
func (d *Daemon) WaitLine(mark int, timeout time.Duration, what string, ok func(string) bool) string {
	d.t.Helper()
	l, found := d.scan(mark, timeout, ok)
	if !found {
		d.t.Fatalf("%s printed no %s within %v", d.name, what, timeout)
	}
	return l
}

// Stdin is the writing end of the daemon's standard input pipe (nil when
// DaemonOptions.Stdin was given). Writes after Stop or Kill9 fail.
func (d *Daemon) Stdin() io.Writer {
	if d.stdin == nil {
		return nil
	}
	return d.stdin
}

// Feed writes lines, each with a newline, to the daemon's standard input.
func (d *Daemon) Feed(lines ...string) {
	d.t.Helper()
	if d.stdin == nil {
		d.t.Fatalf("Feed: %s reads a standard input of the test's own", d.name)
	}
	var b strings.Builder
	for _, l := range lines {
		b.WriteString(l)
		b.WriteByte('\n')
	}
	if _, err := io.WriteString(d.stdin, b.String()); err != nil {
		d.t.Fatalf("write to %s's stdin: %v", d.name, err)
	}
}

// Stop ends the daemon as systemd does: EOF on its standard input pipe,
// SIGTERM, and after StopTimeout SIGKILL (a failure). It then checks the
// output for a data race and, with CleanExit, the exit status. Stopping a
// daemon that has exited only checks.
func (d *Daemon) Stop() {
	d.t.Helper()
	select {
	case <-d.done:
	default:
		if d.stdin != nil {
			d.stdin.Close()
		}
		_ = d.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-d.done:
		case <-time.After(d.o.StopTimeout):
			_ = d.cmd.Process.Kill()
			<-d.done
			d.t.Errorf("%s did not exit within %v of SIGTERM", d.name, d.o.StopTimeout)
		}
	}
	d.checkExit()
}

// Kill9 kills the daemon without letting it clean up.
func (d *Daemon) Kill9() {
	d.mu.Lock()
	d.killed = true
	d.mu.Unlock()
	_ = d.cmd.Process.Kill()
	<-d.done
	if d.stdin != nil {
		d.stdin.Close()
	}
}

func (d *Daemon) checkExit() {
	d.t.Helper()
	d.mu.Lock()
	killed, checked := d.killed, d.checked
	d.checked = true
	d.mu.Unlock()
	if checked {
		return
	}
	if strings.Contains(d.Text(), "WARNING: DATA RACE") {
		d.t.Errorf("%s had a data race:\n%s", d.name, d.Text())
	}
	if d.o.CleanExit && !killed && d.err != nil {
		d.t.Errorf("%s exited with %v after SIGTERM, want 0", d.name, d.err)
	}
}
