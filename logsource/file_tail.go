package logsource

import (
	"bytes"
	"context"
	"io"
	"log"
	"log/slog"
	"os"
	"runtime"
	"sync/atomic"
	"time"

	"github.com/nxadm/tail"
	"github.com/nxadm/tail/util"
	"github.com/nxadm/tail/watch"
)

// This file is the File source's use of github.com/nxadm/tail (v1.4.11)
// and the checks that supervise it; the rules are in the File doc.

// TailPollInterval is how often a running tail stats its file for new
// data (nxadm/tail's polling watcher, watch.POLL_DURATION). The source
// does not wait for it when it knows of new lines: see TailWake.
const TailPollInterval = 20 * time.Millisecond

// TailWake is how long the source, knowing of complete lines past the
// last one delivered (a change notice, or its own look), waits for the
// tail to hand one over before it starts a new tail there: a tail idle at
// the end of its file notices growth only on its next poll.
const TailWake = time.Millisecond

// tailFatals counts util.Fatal calls made inside nxadm/tail (see init).
var tailFatals atomic.Uint64

func init() {
	// Both are package variables of nxadm/tail, read by its goroutines;
	// set here, before any tail runs.
	watch.POLL_DURATION = TailPollInterval
	// util.Fatal logs to util.LOGGER and then calls os.Exit(1). The only
	// call a File can reach is in the polling watcher's goroutine (a stat
	// error other than "not found"; the other three are excluded by the
	// Config, see the File doc). This writer ends that goroutine instead
	// (runtime.Goexit runs the log package's deferred unlock), before
	// os.Exit is reached; the tail then gets no more change notices, and
	// the supervisor's stall check restarts it.
	util.LOGGER = &util.Logger{Logger: log.New(fatalStop{}, "", 0)}
}

type fatalStop struct{}

func (fatalStop) Write(p []byte) (int, error) {
	tailFatals.Add(1)
	msg := p
	if i := bytes.IndexByte(msg, '\n'); i >= 0 {
		msg = msg[:i]
	}
	slog.Error("nxadm/tail hit util.Fatal; its goroutine ends instead of the process, the log source restarts the tail", "msg", string(msg))
	runtime.Goexit()
	return len(p), nil
}

// tailConfig follows one inode from off: Follow without ReOpen (the
// supervisor decides what the path holds), Poll (no inotify: its
// watchers call util.Fatal), complete lines only.
func tailConfig(off int64) tail.Config {
	return tail.Config{
		Location:      &tail.SeekInfo{Offset: off, Whence: io.SeekStart},
		Follow:        true,
		ReOpen:        false,
		MustExist:     true,
		Poll:          true,
		CompleteLines: true,
		Logger:        tail.DiscardingLogger,
	}
}

// startTail starts a tail of t's inode at t.off, unless a failed tail
// was started too recently.
func (s *File) startTail(t *tracked) bool {
	if t.tl != nil {
		return true
	}
	if time.Now().Before(t.retryAt) {
		return false
	}
	tl, err := tail.TailFile(fdPath(t.f), tailConfig(t.off))
	if err != nil {
		s.tailFailed(t, "cannot start tail", err)
		return false
	}
	t.tl = tl
	return true
}

// stopTail stops t's tail; lines it read past t.off and did not hand
// over are dropped with it (a new tail reads them again).
func (t *tracked) stopTail() error {
	t.held = nil
	if t.tl == nil {
		return nil
	}
	err := t.tl.Stop()
	t.tl = nil
	return err
}

// wakeTail replaces t's tail, idle at an end the file has grown past,
// by one started at t.off, which reads at once. It is not a failure.
func (s *File) wakeTail(t *tracked) {
	s.wakes.Add(1)
	_ = t.stopTail()
	s.startTail(t)
}

// tailFailed stops t's tail after an unexpected end or stall, counts a
// restart, and delays the next start (doubling up to maxTailBackoff) so
// a tail that dies at once cannot spin.
func (s *File) tailFailed(t *tracked, why string, err error) {
	if e := t.stopTail(); err == nil {
		err = e
	}
	s.c.restarts.Add(1)
	t.failures++
	backoff := min(s.poll<<min(t.failures-1, 8), maxTailBackoff)
	if t.failures == 1 {
		backoff = 0 // the first restart is immediate
	}
	t.retryAt = time.Now().Add(backoff)
	if err != nil {
		s.transient("tail", t.name, err)
	}
	s.log.Warn("restarting the tail of the log file at the last delivered line", "path", t.name, "reason", why, "offset", t.off, "err", err)
}

// maxTailBackoff caps the delay between restarts of a failing tail.
const maxTailBackoff = 5 * time.Second

// lineSpan returns where l starts and ends in the file: tail's
// SeekInfo.Offset is the offset just past the line's newline (Tell after
// the line was consumed from its reader).
func lineSpan(l *tail.Line) (start, end int64) {
	end = l.SeekInfo.Offset
	return end - int64(len(l.Text)) - 1, end
}

// look checks t's file against what was delivered: not smaller than
// t.off, and still holding the delivered bytes just before t.off. It
// returns the size it saw, meaningful when the result is drainEOF.
func (s *File) look(t *tracked) (int64, drainResult) {
	size, err := t.size()
	if err != nil {
		s.transient("stat", t.name, err)
		return 0, drainError
	}
	if size < t.off {
		return size, drainShrunk
	}
	if !fpMatches(t.f, t.off, t.fp[:t.fpn], t.scratch[:]) || !t.checkHead(size) {
		return size, drainRewritten
	}
	return size, drainEOF
}

// stopGrace bounds how long pump goes on towards its target once its
// context ended.
const stopGrace = 500 * time.Millisecond

// lookEvery is how often pump looks at the path (a stat) while it takes
// lines.
const lookEvery = time.Millisecond

// maxBatch bounds the lines taken under one fingerprint check.
const maxBatch = 4096

// batchWait bounds how long take waits for the next line of a batch that
// has not reached the pump's target yet.
const batchWait = time.Millisecond

// pump takes lines from t's tail until t.off reaches target: the end
// of the last complete line the file held when the caller looked.
//
// When ctx ends meanwhile, pump still delivers up to target (within
// stopGrace), and nothing past it: those lines were in the file before
// the stop. A tail hands lines over one by one where a read returns a
// writer's whole burst; a stop between two of them would leave the saved
// position inside a burst (a knock's eight hits, written together).
func (s *File) pump(ctx context.Context, t *tracked, target int64, emit func(Line)) drainResult {
	check := time.NewTimer(s.check)
	defer check.Stop()
	wakes := s.wake > 0
	wake := time.NewTimer(time.Hour)
	defer wake.Stop()
	wakeAfter := s.wake
	lastProgress := time.Now()
	idle := wakes && t.tailAtEnd && time.Since(t.lastTake) >= idleAfter
	t.tailAtEnd = false
	tries := 0
	done := ctx.Done()
	var stopping <-chan time.Time
	for t.off < target {
		if !s.startTail(t) {
			return drainError
		}
		if time.Since(s.lastNotice) >= lookEvery {
			// While lines flow, the goroutine taking them looks at the
			// path too: the watchPath goroutine may not get a CPU while
			// a writer fills a file that holds the path for milliseconds.
			s.notice()
		}
		l := t.held
		t.held = nil
		if l == nil && idle {
			// The tail had handed over every line the file held and none
			// since: it waits for its poll. Unless a line is ready after
			// all, a new tail reads the new ones at once.
			idle = false
			select {
			case got, ok := <-t.tl.Lines:
				if ok {
					l = got
				}
			default:
			}
			if l == nil {
				s.wakeTail(t)
				continue
			}
		}
		if l == nil {
			check.Reset(s.check)
			if wakes {
				wake.Reset(wakeAfter)
			}
			select {
			case <-done:
				done = nil
				stopping = time.After(stopGrace)
				continue
			case <-stopping:
				return drainStopped
			case <-s.kick:
				// Something changed in the directory: look at once, not
				// when the tail wakes (a copytruncate must be seen before
				// the next one renames its copy).
				s.notice()
				if _, res := s.look(t); res != drainEOF {
					return res
				}
				continue
			case got, ok := <-t.tl.Lines:
				if !ok {
					err := t.tl.Err()
					s.tailFailed(t, "tail ended", err)
					if tries++; tries > 3 {
						return drainError
					}
					continue
				}
				l = got
			case <-wake.C:
				// The file holds complete lines past t.off and the tail
				// handed none over for wakeAfter: it waits for its own
				// poll (TailPollInterval). A new tail at t.off reads them
				// now. Doubled each time in a row, so a tail that is only
				// slow to get a CPU is not restarted over and over.
				s.wakeTail(t)
				wakeAfter = min(2*wakeAfter, s.check)
				continue
			case <-check.C:
				// No line for a while: look at the file ourselves.
				if _, res := s.look(t); res != drainEOF {
					return res
				}
				if time.Now().Sub(lastProgress) >= s.stall {
					s.tailFailed(t, "tail stalled below the file's end", nil)
					lastProgress = time.Now()
					if tries++; tries > 3 {
						return drainError
					}
				}
				continue
			}
		}
		switch res := s.take(t, l, target, emit); res {
		case drainEOF:
			lastProgress = time.Now()
			t.failures = 0
			wakeAfter = s.wake
		case drainResync:
			s.tailFailed(t, "tail skipped past the last delivered line", nil)
			if tries++; tries > 3 {
				return drainError
			}
		default:
			return res
		}
	}
	if ctx.Err() != nil {
		return drainStopped
	}
	t.tailAtEnd = true
	return drainEOF
}

// idleAfter is how long a tail that got to the end of what the file held
// must have handed nothing over to count as waiting for its poll: one
// that is reading hands a line over every few microseconds.
const idleAfter = 250 * time.Microsecond

// take delivers first and the lines the tail has ready after it, as
// one batch checked once: the batch starts at t.off, and the bytes
// just before t.off are still the ones delivered (so the file was not
// truncated and rewritten before the tail read the batch).
func (s *File) take(t *tracked, first *tail.Line, target int64, emit func(Line)) drainResult {
	start, end := lineSpan(first)
	switch {
	case start < t.off:
		// The tail started over: it saw the file shrink and reopened it
		// at 0. A truncation if the file says so; else the lines before
		// t.off were delivered already and the tail is put back.
		if _, res := s.look(t); res != drainEOF {
			return res
		}
		return drainResync
	case start > t.off:
		return drainResync
	}
	batch := append(t.batch[:0], first)
	var wait *time.Timer
	for len(batch) < maxBatch {
		var l *tail.Line
		select {
		case got, ok := <-t.tl.Lines:
			if ok {
				l = got
			}
		default:
			if end >= target {
				break
			}
			// The file holds complete lines up to target: the tail is
			// about to hand them over one by one. Waiting (briefly) for
			// them makes one fingerprint check cover many lines.
			if wait == nil {
				wait = time.NewTimer(batchWait)
				defer wait.Stop()
			}
			select {
			case got, ok := <-t.tl.Lines:
				if ok {
					l = got
				}
			case <-wait.C:
			}
		}
		if l == nil {
			break
		}
		if st, e := lineSpan(l); st != end {
			t.held = l // not contiguous: the next take decides
			break
		} else {
			end = e
		}
		batch = append(batch, l)
	}
	t.batch = batch[:0]
	// Near the start of the file the fingerprint is short or empty: the
	// head tells a rewritten file there.
	if !fpMatches(t.f, t.off, t.fp[:t.fpn], t.scratch[:]) || (t.off < fpSize && !t.checkHead(end)) {
		t.held = nil
		return drainRewritten
	}
	now := s.now()
	var lines, over uint64
	max := maxLine(s.opts.MaxLine)
	for i, l := range batch {
		batch[i] = nil
		_, e := lineSpan(l)
		switch {
		case t.skipLine:
			t.skipLine = false // the rest of an overlong line, counted when it was cut
		case len(l.Text) > max:
			over++
		default:
			t.text = append(t.text[:0], l.Text...)
			emit(Line{Text: t.text, Received: now, Pos: Position{Path: s.path, Inode: t.ino, Offset: e}})
			lines++
		}
		t.pushFPString(l.Text)
		t.pushFPString("\n")
		t.off = e
	}
	t.lastTake = time.Now()
	s.c.lines.Add(lines)
	s.c.overlong.Add(over)
	if t.recovery {
		s.c.recovered.Add(lines)
	}
	return drainEOF
}

// overlongSlack is how far past MaxLine the bytes after the delivered
// offset may reach before the supervisor checks that the line there ends.
const overlongSlack = 64 << 10

// cutOverlong keeps tail from holding an overlong line: tail reads a line
// whole, whatever its length, before handing it over. If the line at t.off
// has no newline within MaxLine bytes, it is skipped here (counted in
// Stats.Overlong) and the tail restarted just past its newline, or, when
// it has none yet, at the file's end with the rest of it skipped too.
func (s *File) cutOverlong(t *tracked, size int64) error {
	max := int64(maxLine(s.opts.MaxLine))
	buf := s.scan
	for off := t.off; off < size; {
		n := min(int64(len(buf)), size-off)
		k, err := t.f.ReadAt(buf[:n], off)
		if int64(k) != n {
			if err == io.EOF {
				return nil // shrank meanwhile: seen on the next look
			}
			return err
		}
		if i := bytes.IndexByte(buf[:n], '\n'); i >= 0 {
			end := off + int64(i) + 1
			if end-t.off-1 <= max {
				return nil // the line ends in time: tail delivers it
			}
			if !t.skipLine {
				s.c.overlong.Add(1)
			}
			t.seek(end)
			return nil
		}
		off += n
	}
	// No newline yet: skip what is there, and the rest when it comes.
	if !t.skipLine {
		s.c.overlong.Add(1)
	}
	t.seek(size)
	t.skipLine = true
	return nil
}

// lastLineEnd returns the end of the last complete line of f between
// from and size (from when there is none), reading backwards.
func lastLineEnd(f *os.File, from, size int64, buf []byte) (int64, error) {
	end := size
	chunk := int64(min(len(buf), 4096))
	for end > from {
		n := min(chunk, end-from)
		k, err := f.ReadAt(buf[:n], end-n)
		if int64(k) != n {
			if err == io.EOF {
				return from, nil // shrank meanwhile: seen on the next look
			}
			return from, err
		}
		if i := bytes.LastIndexByte(buf[:n], '\n'); i >= 0 {
			return end - n + int64(i) + 1, nil
		}
		end -= n
		chunk = int64(len(buf))
	}
	return from, nil
}
