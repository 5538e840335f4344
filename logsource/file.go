package logsource

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nxadm/tail"
)

// DefaultPollInterval is how often a File source checks its path (inode,
// size) when no change notification arrives.
const DefaultPollInterval = 250 * time.Millisecond

// FileOptions tune a File source.
type FileOptions struct {
	// Resume is the Pos of the last line the daemon processed (from its
	// state file). Zero means a fresh start at the end of the file.
	Resume Position
	// Now is the clock for Line.Received; nil means time.Now.
	Now func() time.Time
	// PollInterval is the period of the stat checks; 0 means
	// DefaultPollInterval. On Linux inotify wakes the source at once;
	// the checks are the safety net and the only mechanism elsewhere.
	PollInterval time.Duration
	// MaxLine is the longest line delivered; 0 means DefaultMaxLine.
	MaxLine int
	// Logger receives rotations, truncations and survived errors; nil
	// discards them.
	Logger *slog.Logger
}

// File follows a log file the way `tail -F` should: across rotation by
// rename and create, copytruncate, delete and recreate, truncation, and
// the file vanishing for a while. Every line is delivered exactly once, in
// order, complete, with its exact Position.
//
// Reading is done by github.com/nxadm/tail (v1.4.11), the project's
// library for following log files, under a supervisor that covers its
// known gaps. The split:
//
//   - tail reads: one tail per file, started on the source's own open
//     descriptor of that file (/proc/self/fd/N, so it follows that inode
//     whatever happens to the name) at the offset the supervisor chose,
//     with Follow, CompleteLines, Poll and without ReOpen. It splits the
//     lines and waits for more (a stat every TailPollInterval). Each
//     tail.Line's SeekInfo.Offset is the offset just past its newline;
//     Position.Offset is exactly that, the line starts len(Text)+1 before.
//     A tail idle at the end of its file would see new lines only on its
//     next poll; when the supervisor knows of them (change notice, its own
//     look) it starts a new tail at the last delivered line at once if the
//     tail had handed over everything the file held, else after TailWake
//     without a line (see wakeTail): the file path's latency is the
//     change notice's, not the poll's.
//   - the supervisor (this type) decides everything about the path and
//     the file's content, with its own stat and pread checks on every
//     change notice (an inotify watch of the directory, watch_linux.go)
//     and every PollInterval: which inode the path holds (looked at by the
//     goroutine reading the change notices and by Run's, each free to stat
//     and open while the other is stuck; a new file is opened at once and
//     queued, so a rotated file is never lost to a later rotation),
//     whether the file shrank, whether the 64 bytes
//     before the last delivered line's end and the file's first bytes are
//     still the ones read (a truncated and regrown file; tail only sees a
//     file smaller than at its last stat), and how far tail has to get (the
//     end of the last complete line in the file). Every batch of lines tail
//     hands over must start exactly at the last delivered offset and is
//     checked against the fingerprint before any of it is delivered. On
//     rotation, truncation, a tail that ended, stalled below the file's end
//     or skipped, the tail is stopped and a new one started at the last
//     delivered offset (or 0): no line is lost, repeated or split. Because
//     the tail reads through the descriptor, a rotated file is followed to
//     its real end (lines its writer appends after the rename included);
//     tail's own ReOpen would have skipped them.
//   - what the supervisor reads itself: the rest of a copytruncate copy
//     (a sibling file tail never followed), from the last delivered offset,
//     and copies of content it never saw (below).
//
// Generations the supervisor never saw at the path. It can only open what
// the path holds when it looks. The tail-based File of dbde141..07c1882
// lost whole generations under CPU load (stressed runs: two busy loops,
// two test processes, two CPUs; 3 of 60 runs of TestFileLiveRotation
// here). Traces of failing runs showed the lost file's inode never
// opened, and why no look happened for 10 to 30 ms while that generation
// held the path for a few: Run's thread preempted by the kernel inside a
// look, holding the lock the watching goroutine then waited on; change
// notices waiting in the runtime's network poller, which a scheduler with
// goroutines to run does not consult (sysmon does, after 10 ms); and
// later, two looks ordered wrongly and a copytruncate copy renamed while
// it was being looked for. The reader it had been reverted to has the
// same blind spot, it is only cheaper: beside this source under the same
// load it lost lines in 4 of 150 runs (two rename generations, a
// copytruncate epoch, a delete-and-recreate generation). So:
//
//   - A look's stat and open take no lock. Two goroutines look: the one
//     reading the inotify events, at once (it waits in poll(2), see
//     watch_linux.go), and Run's, every millisecond while lines flow; one
//     preempted thread does not stop the other. A file once open stays
//     readable whatever happens to its name. Each look is numbered before
//     its stat and after its open: a look that ended before the newest
//     file's look began found an older file, read next (its lines may
//     follow some of the newer one's, none is lost); overlapping looks
//     are ordered by what the path holds.
//   - The source remembers every file at the path and among its rotated
//     siblings (device and inode; a file that leaves the directory is
//     forgotten, its inode number may be reused). Whenever the path holds
//     a new inode, or a truncation is handled, it lists the siblings: one
//     it never saw is a generation renamed away between two looks, or a
//     copytruncate copy of content truncated away between two looks (two
//     copytruncates before the source looked). It is opened at once and
//     read whole, oldest first (by mtime, then inode number), between the
//     file it followed and the new one, its lines counted as Recovered;
//     the rule for the old file's end applies to each in turn. A sibling
//     that starts like the file being read is a copy of content the
//     source read: if it holds the bytes before the last delivered
//     offset, it is read from there (the copy of the truncation being
//     handled, renamed before it was found); one that starts like what
//     the file holds now is a copytruncate in progress, read from the
//     file itself.
//
// With these rules, in the same stress (120 runs of each test, half of
// them with -race): no line lost to rotation by rename or copytruncate,
// none in TestFileRestartResumes or the real rsyslog+logrotate test, and
// one loss in TestFileLiveRotation's delete-and-recreate case: two files
// created, filled and deleted within milliseconds of the start, before
// the first look. That is what no follower of a path can recover, and
// this one does not: a generation deleted, compressed or renamed out of
// the rotation names (path.N, path-DATE) before any look opened it, once
// its writer closed it. It takes a file that holds the path for
// milliseconds while the source gets no CPU; logrotate's rename rotation
// keeps the rotated file under a rotation name until its next run.
//
// nxadm/tail and os.Exit: util.Fatal (log, then os.Exit(1)) is called in
// four places. TailFile with ReOpen and no Follow: never, Follow is set.
// The inotify watcher's stat error and the shared inotify tracker's
// fsnotify.NewWatcher failure (too many inotify instances): never, Poll is
// set, so no inotify code of tail runs. The polling watcher's stat error
// other than "not found": its stat is of /proc/self/fd/N, which cannot
// fail while the source holds the descriptor (it closes it only after the
// tail stopped); should it fail anyway, util.LOGGER is replaced (see
// file_tail.go) by a writer that ends that watcher goroutine with
// runtime.Goexit before os.Exit is reached, and the supervisor restarts
// the tail that no longer wakes up. Tail's other messages go to
// tail.DiscardingLogger.
//
// Cost: tail allocates three times and seeks twice per line (Tell), and
// hands lines over one at a time on an unbuffered channel; the supervisor
// adds one pread per batch of lines (the fingerprint). BenchmarkSources,
// bufio.Scanner over the same file in the same run as the baseline: 0.67
// to 0.78 M lines/s, 0.0095 to 0.011 of the scanner's 70 M; the reverted
// own reader did 53 M/s (0.75) on the same machine. Far above any
// kern.log rate; floods are for the stdin Reader, which does not allocate
// per line. Latency (bench BenchmarkLatency/rsyslog-file-nftables: the
// daemon's accepted stamp minus the line's arrival in kern.log, medians):
// 0.04 to 0.3 ms, as with the own reader; a tail left to its own poll
// added 4 to 5 ms. Memory: tail holds a line in full until its
// newline; a line that grows past MaxLine + 64 KiB without one is cut by
// the supervisor, a shorter overlong line is skipped once tail hands it
// over. Idle, each running tail stats its file every TailPollInterval.
//
// The rules:
//
//   - A fresh start (zero Resume) begins at the end of the file: old lines
//     would replay old knocks. An incomplete last line is kept: it is being
//     written now. A file that only appears after the start is read from
//     its beginning, since everything in it is new.
//   - With a Resume whose inode is the file's and whose offset fits the
//     file and ends a line, reading resumes exactly there. If the offset no
//     longer fits (the file was truncated or replaced while the daemon was
//     down), the file is read from its beginning.
//   - If the file at the path is another inode, the rotated file is looked
//     for among the siblings (path.1, path.0, path.N, path-DATE; not
//     compressed ones)
//     by inode and finished from the saved offset; siblings written after
//     it (by mtime: later rotations while the daemon was stopped) are read
//     whole, oldest first; then the new file is read from its beginning.
//     If the saved file is not found (compressed or deleted) the lines
//     after the saved offset are lost; this is logged and the new file is
//     read from its beginning.
//   - On rotation the old file is read to its end before the new one, and
//     kept open: the writer may go on appending to it until it reopens its
//     log (rsyslog does until HUP). It is read before the new file on every
//     wake-up and closed once the new file had data before such a read, so
//     a single writer's lines arrive exactly once and in order.
//   - Truncation (the file shrank, or the bytes before the read offset or
//     the file's first bytes changed: checked after every batch tail
//     hands over, and on every look) restarts the file at offset 0. Before
//     that, a copytruncate copy among the siblings (same bytes before the
//     offset and at the start) is read from the offset, so
//     lines written before the copy and not yet read are not lost. Lines
//     written between logrotate's copy and its truncation are lost: that
//     is copytruncate's own race. A second copytruncate before the source
//     looked again leaves the content in between only in a copy: read
//     whole, see above.
//   - An incomplete line abandoned by rotation or truncation is dropped and
//     counted in Stats.Dropped, never delivered as a fragment.
//   - When Run's context ends while lines are being taken, the lines up to
//     the end the file had when it was last looked at are still delivered
//     (within half a second), none after: a stop does not fall inside a
//     burst the writer wrote at once.
//
// Run may be called once.
type File struct {
	path      string
	dir, base string
	opts      FileOptions
	now       func() time.Time
	log       *slog.Logger
	poll      time.Duration
	c         counters
	ran       atomic.Bool

	cur, old   *tracked   // cur: the file at path; old: a rotated file being finished
	later      []*tracked // rotated files newer than old and older than cur, oldest first
	queue      []*tracked // files that took the path after cur (and generations missed before them), oldest first
	kick       chan struct{}
	lastNotice time.Time

	// lookPath's state, shared with the watchPath goroutine.
	lookSeq              atomic.Uint64 // numbers the looks at the path, in order
	pathMu               sync.Mutex
	newestDev, newestIno uint64 // the newest file opened from the path
	newestFrom, newestTo uint64 // lookSeq before and after the look that opened it
	haveNewest, missing  bool
	incoming             []*tracked       // opened by lookPath, not yet queued
	seen                 map[fileKey]bool // files at the path or among its siblings the source knows of

	errMu   sync.Mutex
	lastErr string

	rdy          readiness
	scan         []byte        // lastLineEnd's buffer
	check, stall time.Duration // pump: look at the file after check without a line; restart a tail stalled for stall
	wake         time.Duration // pump: start a new tail when the running one handed no line over for wake; 0: never
	wakes        atomic.Uint64 // tails replaced by wakeTail
}

// NewFile returns a source following the log file at path.
func NewFile(path string, opts FileOptions) *File {
	path = filepath.Clean(path)
	s := &File{
		path: path,
		dir:  filepath.Dir(path),
		base: filepath.Base(path),
		opts: opts,
		now:  nowFunc(opts.Now),
		log:  opts.Logger,
		poll: opts.PollInterval,

		scan:  make([]byte, 64<<10),
		kick:  make(chan struct{}, 1),
		check: 4 * TailPollInterval,
		wake:  TailWake,
		stall: 2 * time.Second,
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.poll <= 0 {
		s.poll = DefaultPollInterval
	}
	return s
}

func (s *File) String() string { return "file " + s.path }

// Stats returns the source's counters.
func (s *File) Stats() Stats { return s.c.snapshot() }

// Ready is closed once Run has positioned the source (the file opened at its
// start offset, or known not to exist yet) and watches the path: a line
// written after that is delivered. It stays open when Run fails.
func (s *File) Ready() <-chan struct{} { return s.rdy.ch() }

// fpSize is how many bytes before the read offset are remembered to
// recognise the same file content (truncation, copies).
const fpSize = 64

// tracked is one open file: the source's own descriptor (stat, the
// fingerprint check, the inode of every Position), the tail following
// it, and where the next line starts.
type tracked struct {
	f        *os.File
	name     string
	dev, ino uint64
	off      int64        // just past the last line taken: where the next one starts
	fp       [fpSize]byte // the bytes just before off
	fpn      int
	head     [fpSize]byte // the file's first bytes, as first seen after seek
	headn    int
	scratch  [fpSize]byte
	recovery bool  // lines from here count as Recovered
	missed   bool  // a generation found among the siblings, never seen at the path
	late     bool  // held the path before the newest file, handed over after it
	skipLine bool  // the line at off is the rest of an overlong line
	seen     int64 // the size when a drain last got to its end

	tl        *tail.Tail
	held      *tail.Line // received from tl, not taken yet
	batch     []*tail.Line
	text      []byte    // the line handed to emit, reused
	failures  int       // tail restarts since the last line taken
	lastTake  time.Time // when lines were last taken from tl
	tailAtEnd bool      // tl handed over every complete line the file held at the last look
	retryAt   time.Time

	// A copytruncate copy is read by the source itself (readSelf).
	lb       *lineBuf
	overSeen uint64
}

func (s *File) open(name string) (*tracked, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		return nil, fmt.Errorf("%s is not a regular file (use the stdin source for pipes)", name)
	}
	dev, ino := fileID(fi)
	return &tracked{f: f, name: name, dev: dev, ino: ino}, nil
}

// close stops the tail, then closes the descriptor it reads through.
func (t *tracked) close() {
	if t != nil && t.f != nil {
		_ = t.stopTail()
		t.f.Close()
		t.f = nil
	}
}

func (t *tracked) size() (int64, error) {
	fi, err := t.f.Stat()
	if err != nil {
		return 0, err
	}
	return fi.Size(), nil
}

// seek restarts reading at off (a running tail is stopped; the next
// drain starts one there) and loads the fingerprint before it.
func (t *tracked) seek(off int64) {
	_ = t.stopTail()
	t.off = off
	t.seen = off
	t.skipLine = false
	t.headn = 0
	t.fpn = 0
	n := int64(fpSize)
	if off < n {
		n = off
	}
	if n > 0 {
		k, _ := t.f.ReadAt(t.fp[:n], off-n)
		if int64(k) == n {
			t.fpn = k
		}
	}
}

// pushFPString is pushFP for a line handed over by the tail.
func (t *tracked) pushFPString(p string) { pushFingerprint(t, p) }

// pushFP appends p, just read, to the fingerprint.
func (t *tracked) pushFP(p []byte) { pushFingerprint(t, p) }

// pushFingerprint appends p to t's fingerprint, the last fpSize bytes
// delivered.
func pushFingerprint[S string | []byte](t *tracked, p S) {
	if len(p) >= fpSize {
		copy(t.fp[:], p[len(p)-fpSize:])
		t.fpn = fpSize
		return
	}
	keep := min(fpSize-len(p), t.fpn)
	copy(t.fp[:], t.fp[t.fpn-keep:t.fpn])
	copy(t.fp[keep:], p)
	t.fpn = keep + len(p)
}

// fpMatches reports whether f holds the fingerprint just before off;
// scratch is a buffer of fpSize bytes.
func fpMatches(f *os.File, off int64, fp, scratch []byte) bool {
	if len(fp) == 0 {
		return true
	}
	b := scratch[:len(fp)]
	n, _ := f.ReadAt(b, off-int64(len(fp)))
	return n == len(fp) && bytes.Equal(b, fp)
}

// checkHead compares the file's first bytes with the ones seen before
// (and remembers more of them, up to fpSize, as the file grows). A
// mismatch means the file was rewritten, even where the fingerprint
// before the offset cannot tell: at offset 0, before anything was
// delivered from it.
func (t *tracked) checkHead(size int64) bool {
	n := max(int(min(int64(fpSize), size)), t.headn)
	if n == 0 {
		return true
	}
	b := t.scratch[:n]
	k, _ := t.f.ReadAt(b, 0)
	if k < t.headn || !bytes.Equal(b[:t.headn], t.head[:t.headn]) {
		return false
	}
	copy(t.head[:], b[:k])
	t.headn = k
	return true
}

// noteHead remembers the first bytes of a file about to be read from 0,
// at once: a truncation before anything was read from it is then seen
// (the writer may already be filling it, and rotate it again, before the
// tail hands over a line).
func (t *tracked) noteHead() {
	if size, err := t.size(); err == nil {
		t.checkHead(size)
	}
}

// atLineStart reports whether off is 0 or just past a newline in f.
func atLineStart(f *os.File, off int64) bool {
	if off == 0 {
		return true
	}
	var b [1]byte
	n, _ := f.ReadAt(b[:], off-1)
	return n == 1 && b[0] == '\n'
}

// lastLineStart finds where the last, possibly incomplete, line of f
// starts. skip is true when that line is already longer than max.
func lastLineStart(f *os.File, size int64, max int) (start int64, skip bool, err error) {
	if size == 0 || atLineStart(f, size) {
		return size, false, nil
	}
	buf := make([]byte, 64<<10)
	end := size
	limit := max64(size-int64(max)-1, 0)
	for end > limit {
		n := min(int64(len(buf)), end-limit)
		k, err := f.ReadAt(buf[:n], end-n)
		if int64(k) != n {
			if err == nil {
				err = io.ErrUnexpectedEOF
			}
			return 0, false, err
		}
		if i := bytes.LastIndexByte(buf[:n], '\n'); i >= 0 {
			return end - n + int64(i) + 1, false, nil
		}
		end -= n
	}
	if limit == 0 {
		return 0, false, nil
	}
	return size, true, nil
}

func max64(a, b int64) int64 {
	if a > b {
		return a
	}
	return b
}

// Run follows the file until ctx ends (returning nil). It returns an
// error only when the file exists at the start but cannot be opened or
// read; later errors are logged, counted and retried.
func (s *File) Run(ctx context.Context, emit func(Line)) error {
	if !s.ran.CompareAndSwap(false, true) {
		return errors.New("logsource: File.Run called twice")
	}
	var stopWatch func()
	defer func() {
		if stopWatch != nil {
			stopWatch() // before the files are closed: it may be opening one
		}
		s.cur.close()
		s.old.close()
		for _, t := range s.later {
			t.close()
		}
		for _, t := range s.queue {
			t.close()
		}
		for _, t := range s.takeIncoming() {
			t.close()
		}
	}()
	if err := s.start(); err != nil {
		return err
	}
	w, err := newWatcher(s.dir, s.base, s.lookPath)
	if err != nil {
		s.log.Warn("no change notification, polling", "path", s.path, "interval", s.poll, "err", err)
		w = nil
	}
	s.rdy.set()
	wctx, cancel := context.WithCancel(ctx)
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		s.watchPath(wctx, w)
	}()
	stopWatch = func() { cancel(); <-watched }
	tick := time.NewTicker(s.poll)
	defer tick.Stop()
	for {
		again := s.step(ctx, emit)
		if ctx.Err() != nil {
			return nil
		}
		if again {
			continue
		}
		// Lines the tail reads between two looks are taken at once.
		var lines <-chan *tail.Line
		t := s.old
		if t == nil {
			t = s.cur
		}
		if t != nil && t.tl != nil && t.held == nil {
			lines = t.tl.Lines
		}
		select {
		case <-ctx.Done():
			return nil
		case l, ok := <-lines:
			if ok {
				t.held = l
			} else {
				s.tailFailed(t, "tail ended", t.tl.Err())
			}
		case <-s.kick:
		case <-tick.C:
		}
	}
}

// watchPath runs beside Run: on every change notice and every poll
// interval it looks at the path (lookPath), so a file that holds the path
// only briefly is opened even while Run is busy in emit, and it wakes
// Run. It owns w.
func (s *File) watchPath(ctx context.Context, w *watcher) {
	defer func() {
		if w != nil {
			w.close()
		}
	}()
	var wake <-chan struct{}
	if w != nil {
		wake = w.C
	}
	tick := time.NewTicker(s.poll)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-wake:
			// The watcher looked at the path already.
		case <-tick.C:
			if w != nil {
				w.refresh()
			} else if nw, err := newWatcher(s.dir, s.base, s.lookPath); err == nil {
				// The directory appeared, or inotify is available again.
				w, wake = nw, nw.C
			}
			s.lookPath()
		}
		select {
		case s.kick <- struct{}{}:
		default:
		}
	}
}

func (s *File) start() error {
	s.pathMu.Lock()
	s.markSeen()
	s.pathMu.Unlock()
	r := s.opts.Resume
	if r.Path != "" && filepath.Clean(r.Path) != s.path {
		s.log.Warn("saved log position is for another file, starting at the end",
			"path", s.path, "saved_path", r.Path)
		r = Position{}
	}
	t, err := s.open(s.path)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("logsource: %w", err)
	}
	if t == nil {
		s.log.Info("log file does not exist yet, waiting for it", "path", s.path)
		s.missing = true
	}
	if r.Inode == 0 {
		if t != nil {
			size, err := t.size()
			if err != nil {
				t.close()
				return fmt.Errorf("logsource: %w", err)
			}
			start, skip, err := lastLineStart(t.f, size, maxLine(s.opts.MaxLine))
			if err != nil {
				t.close()
				return fmt.Errorf("logsource: read %s: %w", s.path, err)
			}
			t.seek(start)
			if skip {
				t.skipLine = true
				s.c.overlong.Add(1)
			}
			s.cur = t
			s.setNewest(t)
		}
		return nil
	}
	if t != nil && t.ino == r.Inode {
		size, err := t.size()
		if err != nil {
			t.close()
			return fmt.Errorf("logsource: %w", err)
		}
		if r.Offset >= 0 && r.Offset <= size && atLineStart(t.f, r.Offset) {
			t.seek(r.Offset)
		} else {
			s.c.truncations.Add(1)
			s.log.Warn("saved log position no longer fits the file (truncated or replaced while stopped), reading it from the start",
				"path", s.path, "offset", r.Offset, "size", size)
			t.seek(0)
		}
		s.cur = t
		s.setNewest(t)
		return nil
	}
	// The path holds another file: the one we read was rotated while the
	// daemon was stopped. Finish it first if it is still around.
	if name := s.findInode(r.Inode); name != "" {
		o, err := s.open(name)
		switch {
		case err != nil:
			s.log.Warn("cannot open the rotated log file, lines after the saved position are lost",
				"path", name, "err", err)
		case o.ino != r.Inode:
			o.close()
		default:
			size, _ := o.size()
			if r.Offset >= 0 && r.Offset <= size && atLineStart(o.f, r.Offset) {
				o.seek(r.Offset)
				o.recovery = true
				s.old = o
				s.later = s.openLater(s.newerSiblings(o, t))
				s.log.Info("finishing the rotated log file from the saved position",
					"path", name, "offset", r.Offset, "newer_rotated_files", len(s.later))
			} else {
				o.close()
				s.log.Warn("saved position does not fit the rotated log file, its unread lines are lost",
					"path", name, "offset", r.Offset, "size", size)
			}
		}
	} else {
		s.log.Warn("the log file was rotated while stopped and the old one is gone (compressed or deleted); lines after the saved position are lost",
			"path", s.path, "inode", r.Inode, "offset", r.Offset)
	}
	if t != nil {
		s.c.rotations.Add(1)
		t.seek(0)
		s.cur = t
		s.setNewest(t)
	}
	return nil
}

type drainResult int

const (
	drainEOF       drainResult = iota
	drainStopped               // ctx ended
	drainRewritten             // the bytes before the offset changed
	drainShrunk                // the file is smaller than the offset
	drainResync                // the tail handed over a line past the offset
	drainError
)

// drain delivers, through t's tail, every complete line t's file holds
// now; a tail not running yet is started at t.off.
func (s *File) drain(ctx context.Context, t *tracked, emit func(Line)) drainResult {
	if ctx.Err() != nil {
		return drainStopped
	}
	size, res := s.look(t)
	if res != drainEOF {
		return res
	}
	if size-t.off > int64(maxLine(s.opts.MaxLine))+overlongSlack {
		if err := s.cutOverlong(t, size); err != nil {
			s.transient("read", t.name, err)
			return drainError
		}
	}
	if !s.startTail(t) {
		return drainError
	}
	target, err := lastLineEnd(t.f, t.off, size, s.scan)
	if err != nil {
		s.transient("read", t.name, err)
		return drainError
	}
	res = s.pump(ctx, t, target, emit)
	if res == drainEOF {
		t.seen = size // past t.off now only an incomplete line
	}
	return res
}

// readSelf reads t to its current end with the source's own reader (a
// copytruncate copy, read once), delivering complete lines.
func (s *File) readSelf(ctx context.Context, t *tracked, emit func(Line)) drainResult {
	for {
		if ctx.Err() != nil {
			return drainStopped
		}
		off := t.lb.offset()
		sp := t.lb.space()
		n, err := t.f.ReadAt(sp, off)
		if n > 0 {
			// Checked after the read: if the bytes before off are still
			// ours, what was read continues them.
			if !fpMatches(t.f, off, t.fp[:t.fpn], t.scratch[:]) {
				return drainRewritten
			}
			t.pushFP(sp[:n])
			t.lb.commit(n)
			s.emitLines(t, emit)
		}
		if err == io.EOF {
			return drainEOF
		}
		if err != nil {
			s.transient("read", t.name, err)
			return drainError
		}
	}
}

func (s *File) emitLines(t *tracked, emit func(Line)) {
	now := s.now()
	var lines uint64
	for {
		text, end, ok := t.lb.next()
		if !ok {
			break
		}
		emit(Line{Text: text, Received: now, Pos: Position{Path: s.path, Inode: t.ino, Offset: end}})
		lines++
	}
	s.c.lines.Add(lines)
	if t.recovery {
		s.c.recovered.Add(lines)
	}
	if d := t.lb.overlong - t.overSeen; d > 0 {
		s.c.overlong.Add(d)
		t.overSeen = t.lb.overlong
	}
}

// follow reads the current file to its end, handling truncation.
func (s *File) follow(ctx context.Context, t *tracked, emit func(Line)) {
	for range 4 { // a truncation restarts the read at most a few times per wake-up
		switch s.drain(ctx, t, emit) {
		case drainRewritten:
			s.truncated(ctx, t, emit, "content before the read offset changed")
		case drainShrunk:
			s.truncated(ctx, t, emit, "file shrank")
		default:
			return
		}
	}
}

// truncated restarts t at offset 0, first reading a copytruncate copy of
// it when one is found.
func (s *File) truncated(ctx context.Context, t *tracked, emit func(Line), why string) {
	s.c.truncations.Add(1)
	off := t.off
	s.log.Warn("log file truncated, reading it again from the start", "path", s.path, "offset", off, "reason", why)
	_ = t.stopTail()
	copied := false
	if t.fpn > 0 || t.headn > 0 {
		if c := s.findCopy(t); c != nil {
			copied = true
			s.pathMu.Lock()
			s.seen[fileKey{c.dev, c.ino}] = true
			s.pathMu.Unlock()
			s.readCopyRest(ctx, t, c, emit)
			c.close()
		}
	}
	// Siblings the source never saw: the copy findCopy missed (renamed
	// by the next rotation while it listed the directory), and copies of
	// content written after it and truncated away before the source
	// looked (copytruncate twice between two looks). Oldest first.
	s.pathMu.Lock()
	missed := s.scanMissed(fileKey{t.dev, t.ino})
	s.pathMu.Unlock()
	for _, u := range missed {
		switch {
		case !copied && (t.fpn > 0 || t.headn > 0) && isCopyOf(u, t):
			copied = true
			s.readCopyRest(ctx, t, u, emit)
		case !sameHead(u, t) && !sameStart(u.f, t.f):
			// Not a copy of what the source read (t's head), nor of what
			// the file holds now (a copytruncate of it in progress, whose
			// content the source reads from the file itself).
			s.c.truncations.Add(1)
			u.lb = newLineBuf(s.opts.MaxLine, 0)
			s.readSelf(ctx, u, emit)
			if u.lb.pending() {
				s.c.dropped.Add(1)
			}
		}
		u.close()
	}
	if !copied && (t.seen > t.off || t.skipLine) {
		s.c.dropped.Add(1) // an incomplete line was waiting for its end
	}
	t.seek(0)
	t.noteHead()
}

// readCopyRest reads c, a copytruncate copy of t's content, from t's
// offset: it holds the same bytes up to there and goes on from the line
// the tail was in.
func (s *File) readCopyRest(ctx context.Context, t, c *tracked, emit func(Line)) {
	s.log.Info("reading the rest of the copytruncate copy", "path", c.name, "offset", t.off)
	c.lb = newLineBuf(s.opts.MaxLine, t.off)
	c.lb.skipping = t.skipLine
	c.fp, c.fpn, c.recovery = t.fp, t.fpn, true
	s.readSelf(ctx, c, emit)
	if c.lb.pending() {
		s.c.dropped.Add(1)
	}
}

// lookPath opens a file that took the log's path since the last look
// and leaves it for notice: held open, its lines stay readable even when
// it is rotated away again before its turn. It is called by the
// watchPath goroutine and by notice.
//
// The stat and the open happen outside pathMu, which guards only the
// hand-over: under CPU load the kernel can preempt a thread for tens of
// milliseconds, and the other goroutine that looks must not wait behind
// one preempted in the middle of a look. (Seen in a runtime trace of a
// lost generation: Run's thread preempted for 31 ms inside lookPath,
// watchPath blocked on the lock all that time, and the file that took the
// path and was deleted meanwhile never opened.) A file once open stays
// readable whatever happens to its name.
func (s *File) lookPath() {
	from := s.lookSeq.Add(1)
	fi, err := os.Stat(s.path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			s.noteMissing(true)
			return
		}
		s.transient("stat", s.path, err)
		return
	}
	if dev, ino := fileID(fi); s.isNewest(dev, ino) {
		s.noteMissing(false)
		return
	}
	t, err := s.open(s.path)
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			s.transient("open", s.path, err)
		}
		return
	}
	to := s.lookSeq.Add(1)
	s.noteMissing(false)
	t.seek(0)
	t.noteHead()
	s.pathMu.Lock()
	defer s.pathMu.Unlock()
	k := fileKey{t.dev, t.ino}
	if s.haveNewest && t.dev == s.newestDev && t.ino == s.newestIno {
		t.close()
		return
	}
	older := false // t held the path before the newest file handed over
	if s.haveNewest {
		switch {
		case to < s.newestFrom:
			older = true // this look ended before that one began
		case from > s.newestTo:
			// this look began after that one ended: t is newer
		default:
			// The two looks overlapped (one goroutine was preempted in
			// the middle of its look): the file at the path now, if it
			// is one of the two, is the newer. Taking a newer file for
			// an older one would close it while its writer still writes.
			if fi, err := os.Stat(s.path); err == nil {
				dev, ino := fileID(fi)
				older = dev == s.newestDev && ino == s.newestIno
			}
		}
	}
	if older && s.seen[k] {
		t.close()
		return
	}
	if older {
		// The other goroutine handed over a newer file while this one
		// was opening t, which held the path before it.
		t.late = true
		s.seen[k] = true
		s.incoming = append(s.incoming, t)
		return
	}
	if s.haveNewest {
		// Generations that held the path between the last look and this
		// one were renamed away unseen: they are among the siblings.
		s.incoming = append(s.incoming, s.scanMissed(k)...)
	}
	s.seen[k] = true
	s.log.Debug("new file at the path", "path", s.path, "inode", t.ino, "head_bytes", t.headn)
	s.newestDev, s.newestIno, s.newestFrom, s.newestTo, s.haveNewest = t.dev, t.ino, from, to, true
	s.incoming = append(s.incoming, t)
}

// isNewest reports whether dev, ino is the newest file opened from the
// path.
func (s *File) isNewest(dev, ino uint64) bool {
	s.pathMu.Lock()
	defer s.pathMu.Unlock()
	return s.haveNewest && dev == s.newestDev && ino == s.newestIno
}

// noteMissing records whether the path exists, logging when it goes.
func (s *File) noteMissing(missing bool) {
	s.pathMu.Lock()
	gone := missing && !s.missing
	s.missing = missing
	s.pathMu.Unlock()
	if gone {
		s.log.Info("log file gone, still reading the open one until a new file appears", "path", s.path)
	}
}

// fileKey names a file (not a path).
type fileKey struct{ dev, ino uint64 }

// markSeen records, with pathMu held, the files at the path and among its
// siblings now: files the source knows of. At the start those are the
// log and its older rotations; later, every file read or classified.
func (s *File) markSeen() {
	if s.seen == nil {
		s.seen = map[fileKey]bool{}
	}
	for _, name := range append(s.siblings(), s.path) {
		if fi, err := os.Stat(name); err == nil {
			dev, ino := fileID(fi)
			s.seen[fileKey{dev, ino}] = true
		}
	}
}

// scanMissed, with pathMu held, opens the siblings the source never saw:
// generations that took the path and were rotated away between two looks
// (the supervisor did not run for the few milliseconds they held it), or
// copytruncate copies made of content it never read. They are returned
// oldest first (by modification time, then inode number) and marked seen.
// Seen files no longer at the path or among the siblings are forgotten
// first: their inode numbers may be given to new files. cur is the file
// at the path now.
func (s *File) scanMissed(cur fileKey) []*tracked {
	type gen struct {
		t     *tracked
		mtime time.Time
	}
	present := map[fileKey]bool{cur: true}
	if fi, err := os.Stat(s.path); err == nil {
		dev, ino := fileID(fi)
		present[fileKey{dev, ino}] = true // the path may hold a newer file already
	}
	var gens []gen
	for _, name := range s.siblings() {
		fi, err := os.Stat(name)
		if err != nil || !fi.Mode().IsRegular() {
			continue
		}
		dev, ino := fileID(fi)
		k := fileKey{dev, ino}
		present[k] = true
		if s.seen[k] {
			continue
		}
		t, err := s.open(name)
		if err != nil {
			s.transient("open", name, err)
			continue
		}
		if t.dev != dev || t.ino != ino {
			t.close() // renamed again meanwhile: the next scan sees it
			continue
		}
		s.seen[k] = true
		t.seek(0)
		t.noteHead()
		t.recovery, t.missed = true, true
		gens = append(gens, gen{t, fi.ModTime()})
	}
	for k := range s.seen {
		if !present[k] {
			delete(s.seen, k)
		}
	}
	sort.SliceStable(gens, func(i, j int) bool {
		if !gens[i].mtime.Equal(gens[j].mtime) {
			return gens[i].mtime.Before(gens[j].mtime)
		}
		return gens[i].t.ino < gens[j].t.ino
	})
	out := make([]*tracked, len(gens))
	for i, g := range gens {
		out[i] = g.t
		s.log.Warn("found a rotated log file the source did not see at the path, reading it whole",
			"path", g.t.name, "inode", g.t.ino)
	}
	return out
}

// sameStart reports whether a and b start with the same bytes, over the
// first fpSize bytes or as many as the shorter holds, when that is any.
func sameStart(a, b *os.File) bool {
	var x, y [fpSize]byte
	n, _ := a.ReadAt(x[:], 0)
	m, _ := b.ReadAt(y[:], 0)
	n = min(n, m)
	return n > 0 && bytes.Equal(x[:n], y[:n])
}

// sameHead reports whether u starts with the first bytes of t's current
// content as t remembers them (u is a copy of t), when t remembers any.
func sameHead(u, t *tracked) bool {
	if t.headn == 0 {
		return false
	}
	var b [fpSize]byte
	n, _ := u.f.ReadAt(b[:t.headn], 0)
	return n == t.headn && bytes.Equal(b[:n], t.head[:t.headn])
}

func (s *File) takeIncoming() []*tracked {
	s.pathMu.Lock()
	defer s.pathMu.Unlock()
	in := s.incoming
	s.incoming = nil
	return in
}

// setNewest records t as the newest file from the path (at the start).
func (s *File) setNewest(t *tracked) {
	s.pathMu.Lock()
	defer s.pathMu.Unlock()
	s.newestDev, s.newestIno, s.haveNewest = t.dev, t.ino, true
}

// notice looks at the path and queues the files found there since the
// last look behind cur. It reports whether it found one.
func (s *File) notice() bool {
	s.lastNotice = time.Now()
	s.lookPath()
	found := false
	for _, t := range s.takeIncoming() {
		if s.known(t.dev, t.ino) {
			t.close()
			continue
		}
		if t.missed && (s.cur == nil || sameHead(t, s.cur)) {
			// A copy of the file being read: a copytruncate, read from
			// the last delivered offset once the truncation is seen.
			t.close()
			continue
		}
		if t.late && s.cur != nil {
			// Older than cur, whose lines may have started arriving: read
			// it next, before the rotated files still waiting. Its lines
			// may follow some of cur's, none is lost.
			s.log.Warn("a file that held the log's path before the current one was handed over late; its lines may arrive after some of the current one's",
				"path", s.path, "inode", t.ino)
			t.recovery = true
			if s.old == nil {
				s.old = t
			} else {
				s.later = append([]*tracked{t}, s.later...)
			}
			found = true
			continue
		}
		found = true
		if s.cur == nil {
			s.cur = t // the log appeared: all of it is new
		} else {
			s.queue = append(s.queue, t)
		}
	}
	return found
}

// known reports whether dev, ino is a file the source holds.
func (s *File) known(dev, ino uint64) bool {
	is := func(t *tracked) bool { return t != nil && t.dev == dev && t.ino == ino }
	return (s.old != nil && is(s.old)) || s.anyNewer(is)
}

// anyNewer reports whether f holds for a file after old: cur, or one
// later or queued behind it, tried in that order.
func (s *File) anyNewer(f func(*tracked) bool) bool {
	if s.cur != nil && f(s.cur) {
		return true
	}
	for _, t := range s.later {
		if f(t) {
			return true
		}
	}
	for _, t := range s.queue {
		if f(t) {
			return true
		}
	}
	return false
}

// supervise checks what the path holds now. It reports true when it
// switched to a new file, which should be read at once.
func (s *File) supervise(ctx context.Context, emit func(Line)) bool {
	changed := s.notice()
	if s.old != nil || len(s.later) > 0 {
		return changed
	}
	next := -1 // the next file that took the path; missed generations before it
	for i, t := range s.queue {
		if !t.missed {
			next = i
			break
		}
	}
	if next < 0 {
		return changed
	}
	// Finish the rotated file first; keep it open, its writer may
	// still append to it until it reopens the log. Generations missed
	// between the two are read after it, in order.
	s.follow(ctx, s.cur, emit)
	s.old, s.cur = s.cur, s.queue[next]
	s.later = append(s.later, s.queue[:next]...)
	s.queue = s.queue[next+1:]
	s.c.rotations.Add(uint64(next + 1))
	s.log.Info("log file rotated", "path", s.path, "old_inode", s.old.ino, "new_inode", s.cur.ino, "missed_generations", next)
	return true
}

// newerHadData reports whether a file after old (cur, or one queued
// behind it) holds data.
func (s *File) newerHadData() bool {
	return s.anyNewer(func(t *tracked) bool {
		size, err := t.size()
		return t.off > 0 || (err == nil && size > 0)
	})
}

// step reads whatever is new and checks the path. It reports true when
// it should run again without waiting.
func (s *File) step(ctx context.Context, emit func(Line)) bool {
	for s.old != nil {
		curHadData := s.newerHadData()
		res := s.drain(ctx, s.old, emit)
		if res == drainStopped {
			return false
		}
		// A single writer switches files before it writes to the new
		// one, so once the new file had data before this read, the old
		// one is complete; so is one with a newer rotated file after it.
		if curHadData || res != drainEOF {
			s.closeOld()
			s.nextOld()
			continue
		}
		if s.cur != nil {
			// The new file was empty before the old one was read. What it
			// holds now may have been written after lines the old one is
			// still getting, so it is read only on the next round, after
			// the old one again.
			size, err := s.cur.size()
			switched := s.supervise(ctx, emit)
			return switched || (err == nil && size > 0)
		}
		break
	}
	if s.cur != nil {
		s.follow(ctx, s.cur, emit)
		if ctx.Err() != nil {
			return false
		}
	}
	return s.supervise(ctx, emit)
}

// nextOld makes the next rotated file in line the one being finished.
func (s *File) nextOld() {
	if s.old == nil && len(s.later) > 0 {
		s.old = s.later[0]
		s.later = s.later[1:]
		s.log.Info("reading a rotated log file the source did not see at the path", "path", s.old.name, "inode", s.old.ino)
	}
}

// openLater opens the rotated files a resume reads whole, before the
// current file: held open, they stay readable whatever rotation does to
// their names meanwhile.
func (s *File) openLater(names []string) []*tracked {
	var out []*tracked
	for _, name := range names {
		t, err := s.open(name)
		if err != nil {
			s.log.Warn("cannot open a rotated log file, its lines are lost", "path", name, "err", err)
			continue
		}
		t.seek(0)
		t.recovery = true
		out = append(out, t)
	}
	return out
}

// newerSiblings lists the rotated files written after o (by mtime,
// oldest first), other than o and cur: generations rotated after o while
// the daemon was stopped, read whole before cur.
func (s *File) newerSiblings(o, cur *tracked) []string {
	ofi, err := o.f.Stat()
	if err != nil {
		return nil
	}
	type gen struct {
		name  string
		mtime time.Time
	}
	var gens []gen
	for _, name := range s.siblings() {
		fi, err := os.Stat(name)
		if err != nil || !fi.Mode().IsRegular() || !fi.ModTime().After(ofi.ModTime()) {
			continue
		}
		dev, ino := fileID(fi)
		if (dev == o.dev && ino == o.ino) || (cur != nil && dev == cur.dev && ino == cur.ino) {
			continue
		}
		gens = append(gens, gen{name, fi.ModTime()})
	}
	sort.SliceStable(gens, func(i, j int) bool { return gens[i].mtime.Before(gens[j].mtime) })
	names := make([]string, len(gens))
	for i, g := range gens {
		names[i] = g.name
	}
	return names
}

// closeOld closes the rotated file once it was drained; bytes past its
// last line are an incomplete line that will never end.
func (s *File) closeOld() {
	if size, err := s.old.size(); s.old.skipLine || (err == nil && size > s.old.off) {
		s.c.dropped.Add(1)
	}
	s.old.close()
	s.old = nil
}

// transient counts and logs an error that the source survives; the same
// error is logged once until another one happens.
func (s *File) transient(op, name string, err error) {
	s.c.errs.Add(1)
	msg := op + " " + name + ": " + err.Error()
	s.errMu.Lock()
	defer s.errMu.Unlock()
	if msg != s.lastErr {
		s.lastErr = msg
		s.log.Warn("log file error, retrying", "op", op, "path", name, "err", err)
	}
}

// siblings lists the files next to the log that rotation may have
// produced (uncompressed, see rotationSuffix): path.1 and path.0 first,
// then the others newest name first (path-20261121, path.2, ...).
func (s *File) siblings() []string {
	ents, err := os.ReadDir(s.dir)
	if err != nil {
		return nil
	}
	var first, rest []string
	for _, e := range ents {
		n := e.Name()
		if len(n) <= len(s.base)+1 || !strings.HasPrefix(n, s.base) {
			continue
		}
		if !rotationSuffix(n[len(s.base):]) || !e.Type().IsRegular() {
			continue
		}
		switch n[len(s.base):] {
		case ".1", ".0":
			first = append(first, filepath.Join(s.dir, n))
		default:
			rest = append(rest, filepath.Join(s.dir, n))
		}
	}
	sort.Strings(first)
	sort.Sort(sort.Reverse(sort.StringSlice(first))) // .1 before .0
	sort.Sort(sort.Reverse(sort.StringSlice(rest)))
	return append(first, rest...)
}

// rotationSuffix reports whether suffix is what rotation appends to a
// log's name: a separator, then digits with separators (".1", ".0",
// "-20261121", "-2026-11-21_10"). Compressed files (".2.gz") and copies
// such as ".bak" or ".old" are not rotated generations of the log.
func rotationSuffix(suffix string) bool {
	if len(suffix) < 2 || (suffix[0] != '.' && suffix[0] != '-') {
		return false
	}
	digits := false
	for _, c := range suffix[1:] {
		switch {
		case c >= '0' && c <= '9':
			digits = true
		case c == '.' || c == '-' || c == '_':
		default:
			return false
		}
	}
	return digits
}

// findInode returns the sibling with inode ino, or "".
func (s *File) findInode(ino uint64) string {
	for _, name := range s.siblings() {
		fi, err := os.Stat(name)
		if err != nil {
			continue
		}
		if _, i := fileID(fi); i == ino {
			return name
		}
	}
	return ""
}

// isCopyOf reports whether c holds t's bytes just before t's offset and
// at its start.
func isCopyOf(c, t *tracked) bool {
	return fpMatches(c.f, t.off, t.fp[:t.fpn], c.scratch[:]) && fpMatches(c.f, int64(t.headn), t.head[:t.headn], c.scratch[:])
}

// findCopy returns an open sibling (not t itself) that holds t's bytes
// just before t's offset: a copytruncate copy.
func (s *File) findCopy(t *tracked) *tracked {
	off := t.off
	for _, name := range s.siblings() {
		fi, err := os.Stat(name)
		if err != nil || fi.Size() < off {
			continue
		}
		if dev, ino := fileID(fi); dev == t.dev && ino == t.ino {
			continue
		}
		c, err := s.open(name)
		if err != nil {
			continue
		}
		if isCopyOf(c, t) {
			return c
		}
		c.close()
	}
	return nil
}
