package logsource

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// DefaultJournaldArgs follow the kernel transport only (-k: what the
// kernel logged, LOG lines included, which local users cannot forge), one
// line per entry with a time stamp to the microsecond (short-iso-precise,
// which the source uses to resume; see Journald). Run appends the start
// point, --since=@SECONDS.MICROSECONDS, so these must not position the
// output themselves (no -n, --since, --cursor).
var DefaultJournaldArgs = []string{"-k", "-f", "-o", "short-iso-precise", "-q", "--no-pager"}

// JournaldOptions tune a Journald source.
type JournaldOptions struct {
	Command    string           // default "journalctl", looked up on PATH
	Args       []string         // default DefaultJournaldArgs; Run appends --since
	Now        func() time.Time // clock for Line.Received; nil means time.Now
	Logger     *slog.Logger     // restarts are logged here; nil discards
	MaxLine    int              // 0 means DefaultMaxLine
	MinBackoff time.Duration    // first restart delay, default 250ms
	MaxBackoff time.Duration    // restart delay cap, default 30s
	// Resume is the position of the last line handled before a restart
	// (Position.Stamp and StampN): Run starts there instead of at the
	// time it began, so the entries journald recorded meanwhile are not
	// lost.
	Resume Position
	// MaxAge bounds a resume: entries stamped longer ago than that are
	// not read again. Default DefaultResumeMaxAge.
	MaxAge time.Duration
	// Prime, when positive, has a resume start Prime before Resume.Stamp
	// (within MaxAge): the lines up to the resume point come again first,
	// their Position at or before Resume, for a consumer that rebuilds
	// state from them (see KmsgOptions.Prime). 0: none.
	Prime time.Duration
}

// Journald runs journalctl as a supervised child and delivers its output
// lines.
//
// Position: Run notes the wall clock when it starts and runs journalctl
// with --since at that microsecond, so every entry journald records after
// Run began is delivered, however long journalctl takes to start (Ready
// is closed once it was started), and nothing older is. journald stamps
// an entry (__REALTIME_TIMESTAMP, which --since compares and
// short-iso-precise prints) when it reads it, after the kernel logged it.
//
// Restarts: when journalctl exits it is started again after a delay that
// doubles from MinBackoff to MaxBackoff (reset after a run of a minute),
// from the time stamp of the last line delivered; the lines with that
// very stamp that were delivered are skipped once when journalctl shows
// them again. So a journalctl that dies, is killed or restarted loses no
// entry and replays none, including the entries journald recorded while
// it was down. This holds while the lines carry short-iso-precise stamps
// and the wall clock does not step back; a line without a stamp it can
// read moves the resume point to the time the line was read.
//
// Latency: journald makes new entries visible to journalctl in batches
// (it posts journal file changes on a timer). Measured on Debian 12
// (systemd 252): a LOG line reaches journald, which reads /dev/kmsg as
// Kmsg does, within a few milliseconds, and the source 250 to 500 ms
// later. Bursts are not rate limited on the kernel transport: 3000 LOG
// lines sent within seconds all arrived.
//
// Resume across a daemon restart: with JournaldOptions.Resume, the first
// run starts at Resume.Stamp (but no earlier than MaxAge before Run
// began) and skips the first Resume.StampN lines stamped Resume.Stamp,
// which were handled before. The entries stamped before Run began are
// delivered with Line.Received = their time stamp (when journald recorded
// them, never later than the time they were read): a knock read late is
// dated when it arrived. Every line with a stamp carries its Position
// (Stamp, StampN). journalctl -k shows the running boot only: a resume
// point from an earlier boot delivers what this boot logged since.
//
// When ctx ends the child gets SIGTERM, then SIGKILL after two seconds,
// and is always waited for: no zombie. On Linux the child is also killed
// if the daemon dies.
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
	started    func(pid int) // test hook: a journalctl was started
	pos        resumePoint
	maxAge     time.Duration
	prime      time.Duration
	resume     Position // the daemon's resume point, until Run takes it
	began      int64    // unix microseconds when Run began: older entries are resumed ones
	// The lines stamped resumeAt up to resumeN were handled before the
	// daemon restarted: each run of journalctl skips them by count.
	resumeAt       int64
	resumeN, rSeen int
	// curAt and curN: the stamp of the last line delivered and how many
	// lines with it were (Position.StampN).
	curAt int64
	curN  int

	startMu sync.Mutex
	start   Position
	skip    int // lines of pos.seen that may come again at the start of a run
	skipped int // lines skipped in the current read
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
		maxAge:    opts.MaxAge,
		prime:     opts.Prime,
		resume:    opts.Resume,
	}
	if j.maxAge <= 0 {
		j.maxAge = DefaultResumeMaxAge
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

// StartPosition is where Run began to follow the journal once Ready is
// closed (the time it began, or where it resumed). A daemon that saves
// it resumes there after a restart even when it handled no line.
func (j *Journald) StartPosition() Position {
	j.startMu.Lock()
	defer j.startMu.Unlock()
	return j.start
}

// Ready is closed once journalctl was started the first time: every
// entry journald records from then on is delivered (see Journald).
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
	// journalctl compares --since with journald's stamps: the real clock.
	now := time.Now().UnixMicro()
	j.began = now
	var start Position // where a daemon that handles nothing resumes
	j.pos = resumePoint{at: now}
	j.curAt, j.curN = 0, 0
	if r := j.resume; r.Stamp != 0 {
		j.resume = Position{} // a later Run starts afresh
		oldest := now - j.maxAge.Microseconds()
		switch {
		case r.Stamp > now:
			// The wall clock went back: start now, as without a resume.
		case r.Stamp >= oldest && j.prime > 0:
			// The lines of the last Prime before the resume point come
			// again; their positions say so (at or before r).
			j.pos.at = max(r.Stamp-j.prime.Microseconds(), oldest)
			start = Position{Stamp: r.Stamp, StampN: max(r.StampN, 0)}
		case r.Stamp >= oldest:
			j.pos.at = r.Stamp
			j.resumeAt, j.resumeN = r.Stamp, max(r.StampN, 0)
			j.curAt, j.curN = r.Stamp, j.resumeN
		default:
			j.pos.at = oldest
		}
		j.log.Info("journald source resumes", "from", time.UnixMicro(j.pos.at).UTC().Format("2006-01-02T15:04:05.000000Z"),
			"saved", time.UnixMicro(r.Stamp).UTC().Format("2006-01-02T15:04:05.000000Z"), "max_age", j.maxAge.String())
	}
	if start == (Position{}) {
		start = Position{Stamp: j.pos.at}
		if j.curAt == j.pos.at {
			start.StampN = j.curN
		}
	}
	j.startMu.Lock()
	j.start = start
	j.startMu.Unlock()
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
		j.log.Warn("journalctl exited, restarting", "err", err, "stderr", j.lastStderr, "in", backoff,
			"resume", time.UnixMicro(j.pos.at).UTC().Format("2006-01-02T15:04:05.000000Z"))
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
	args := append(slices.Clip(j.args), "--since="+sinceArg(j.pos.at))
	// Lines stamped with the start point that were delivered by the last
	// run come again first: skip them once.
	j.skip = j.pos.n
	clear(j.pos.again[:])
	j.rSeen = 0
	cmd := exec.Command(path, args...)
	cmd.Stdout = pw
	cmd.Stderr = stderr
	cmd.SysProcAttr = childAttr()
	cmd.WaitDelay = time.Second // a grandchild holding stderr cannot block Wait
	if err := cmd.Start(); err != nil {
		pw.Close()
		return err
	}
	pw.Close()
	if j.started != nil {
		j.started(cmd.Process.Pid)
	}
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
	deliver := func(l Line) {
		at, ok := parseJournalStamp(l.Text)
		if j.deliver(l.Text, at, ok) {
			if ok {
				l.Pos = Position{Stamp: at, StampN: j.curN}
				if at < j.began {
					// Recorded before Run began: a resumed entry, dated
					// when journald recorded it.
					if t := time.UnixMicro(at); t.Before(l.Received) {
						l.Received = t
					}
				}
			}
			emit(l)
		}
	}
	for {
		n, err := r.Read(lb.space())
		if n > 0 {
			lb.commit(n)
			lines := lb.emitAll(j.now(), deliver)
			j.c.lines.Add(lines - uint64(j.skipped))
			j.skipped = 0
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

// deliver decides whether line is new (true) or one the last run already
// delivered, and moves the resume point past it.
func (j *Journald) deliver(line []byte, at int64, ok bool) bool {
	if !ok {
		// Not a line of short-iso-precise: resume from now on.
		j.skip = 0
		j.pos.at, j.pos.n = time.Now().UnixMicro(), 0
		return true
	}
	if j.resumeN > 0 && at == j.resumeAt && j.rSeen < j.resumeN {
		// Handled before the daemon restarted.
		j.rSeen++
		j.skipped++
		return false
	}
	if j.skip > 0 {
		if at == j.pos.at && j.pos.repeat(line, j.skip) {
			j.skipped++
			return false
		}
		j.skip = 0
	}
	j.pos.add(at, line)
	if at != j.curAt {
		j.curAt, j.curN = at, 0
	}
	j.curN++
	return true
}

// resumeSeen bounds how many lines of one microsecond are remembered; more
// of them (which journald does not write) could be delivered twice after
// a restart.
const resumeSeen = 32

// resumePoint is where a restarted journalctl starts: the stamp of the
// last line delivered (unix microseconds) and the lines delivered with
// that stamp. The line buffers are reused.
type resumePoint struct {
	at    int64
	seen  [resumeSeen][]byte
	again [resumeSeen]bool // seen[i] came again in this run
	n     int
}

func (p *resumePoint) add(at int64, line []byte) {
	if at != p.at {
		p.at, p.n = at, 0
	}
	if p.n < resumeSeen {
		p.seen[p.n] = append(p.seen[p.n][:0], line...)
		p.n++
	}
}

// repeat reports whether line is one of the first n seen lines that has
// not come again yet, and marks it.
func (p *resumePoint) repeat(line []byte, n int) bool {
	for i := range min(n, p.n) {
		if !p.again[i] && bytes.Equal(p.seen[i], line) {
			p.again[i] = true
			return true
		}
	}
	return false
}

// sinceArg formats unix microseconds for journalctl --since.
func sinceArg(us int64) string {
	return "@" + strconv.FormatInt(us/1e6, 10) + "." + fmt.Sprintf("%06d", us%1e6)
}

// parseJournalStamp reads the leading time stamp of a journalctl
// short-iso-precise line, "2026-11-21T08:43:17.426555+0000" (systemd 252;
// "+00:00" and "Z" are read too), as unix microseconds, without
// allocating.
func parseJournalStamp(line []byte) (int64, bool) {
	num := func(b []byte) (int, bool) {
		n := 0
		for _, c := range b {
			if c < '0' || c > '9' {
				return 0, false
			}
			n = n*10 + int(c-'0')
		}
		return n, len(b) > 0
	}
	if len(line) < 20 || line[4] != '-' || line[7] != '-' || line[10] != 'T' || line[13] != ':' || line[16] != ':' {
		return 0, false
	}
	year, ok1 := num(line[0:4])
	month, ok2 := num(line[5:7])
	day, ok3 := num(line[8:10])
	hour, ok4 := num(line[11:13])
	minute, ok5 := num(line[14:16])
	sec, ok6 := num(line[17:19])
	if !(ok1 && ok2 && ok3 && ok4 && ok5 && ok6) || month < 1 || month > 12 || day < 1 || day > 31 ||
		hour > 23 || minute > 59 || sec > 60 {
		return 0, false
	}
	rest := line[19:]
	micro := 0
	if len(rest) > 0 && rest[0] == '.' {
		i := 1
		for i < len(rest) && rest[i] >= '0' && rest[i] <= '9' {
			if i <= 6 {
				micro = micro*10 + int(rest[i]-'0')
			}
			i++
		}
		if i == 1 {
			return 0, false
		}
		for d := i; d <= 6; d++ {
			micro *= 10
		}
		rest = rest[i:]
	}
	offset := 0
	switch {
	case len(rest) >= 1 && rest[0] == 'Z':
		rest = rest[1:]
	case len(rest) >= 5 && (rest[0] == '+' || rest[0] == '-'):
		hh, okh := num(rest[1:3])
		mmText := rest[3:5]
		n := 5
		if rest[3] == ':' && len(rest) >= 6 {
			mmText, n = rest[4:6], 6
		}
		mm, okm := num(mmText)
		if !okh || !okm || hh > 23 || mm > 59 {
			return 0, false
		}
		offset = (hh*60 + mm) * 60
		if rest[0] == '-' {
			offset = -offset
		}
		rest = rest[n:]
	default:
		return 0, false
	}
	if len(rest) > 0 && rest[0] != ' ' {
		return 0, false
	}
	t := time.Date(year, time.Month(month), day, hour, minute, sec, 0, time.UTC)
	return (t.Unix()-int64(offset))*1e6 + int64(micro), true
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
