package logsource

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"syscall"
	"time"
)

// DefaultKmsgPath is the Linux kernel log device.
const DefaultKmsgPath = "/dev/kmsg"

// KmsgOptions tune a Kmsg source.
type KmsgOptions struct {
	Path   string           // default DefaultKmsgPath
	Now    func() time.Time // clock for Line.Received; nil means time.Now
	Logger *slog.Logger     // overwritten records are logged here; nil discards
	// Resume is the position of the last record handled before a restart
	// (Position.Boot, Seq and Stamp). When it is from the running boot,
	// Run starts after that record instead of at the newest one.
	Resume Position
	// MaxAge bounds what a resume delivers: a record that arrived longer
	// ago is skipped, never delivered. Default DefaultResumeMaxAge.
	MaxAge time.Duration
	// Prime, when positive, has a resume deliver again the records that
	// arrived within Prime before the resume point (and within MaxAge of
	// now), before the records after it. Their Position is at or before
	// Resume: a consumer that rebuilds state from them (the daemon's
	// partial knock sequences) tells them apart that way. 0: none.
	Prime time.Duration
	// BootIDPath is read for the running boot's id; default
	// DefaultBootIDPath.
	BootIDPath string
}

// DefaultBootIDPath holds the running boot's random id (Linux).
const DefaultBootIDPath = "/proc/sys/kernel/random/boot_id"

// DefaultResumeMaxAge is how old a line may be and still be delivered when
// a source resumes after a restart: the default max_skew (60s), which is
// how long a timed knock stays valid, plus the default sequence_timeout
// (10s).
const DefaultResumeMaxAge = 70 * time.Second

// Kmsg reads the kernel log from /dev/kmsg (Linux), starting after the
// newest record: old records would replay old knocks. Only the kernel
// writes kernel-facility records there (a record written to /dev/kmsg
// from user space gets the user facility, prio >= 8), so LOG lines read
// here cannot be forged by local users.
//
// One read returns one record, "prio,seq,ts,flags[,...];message" followed
// by continuation lines (" KEY=value") that are dropped; the first line is
// delivered as it is (logparse handles the framing and \xNN escapes).
// Records overwritten in the ring buffer before they were read (EPIPE)
// are counted in Stats.Lost from the sequence-number gap, and reading
// goes on.
//
// Resume: with KmsgOptions.Resume from the running boot (the boot id
// /proc/sys/kernel/random/boot_id, under which sequence numbers are
// unique), Run reads from the oldest record still in the ring buffer and
// delivers the records after Resume.Seq: the records logged while the
// daemon was down are not lost. Records overwritten in the meantime are
// counted in Stats.Lost and logged; records that arrived more than MaxAge
// ago are skipped, so an old knock is never replayed. A resumed record's
// Line.Received is when it arrived, not when it was read: the record's
// kernel time stamp (microseconds since boot) is put on the wall clock
// with the pair (Resume.Stamp, time stamp of the record Resume.Seq) when
// that record is still in the ring, else with the current offset between
// the wall clock and CLOCK_MONOTONIC (the kernel's clock may drift from
// CLOCK_MONOTONIC by seconds over a long uptime; the saved pair does not
// have that error). Received is never later than the time the record was
// read. Ready is closed once the records of the resume have been
// delivered. Without a Resume from this boot, Run starts at the newest
// record. Every delivered line carries its Position (Boot, Seq, and
// Stamp = Received in unix microseconds).
//
// With KmsgOptions.Prime, a resume first delivers again the records
// handled before the restart that arrived within Prime before the resume
// point (positions at or before it): the daemon rebuilds from them the
// knock sequences the restart cut in two.
//
// Run may be called again after it returned, not concurrently; it
// resumes after the last record delivered.
type Kmsg struct {
	path     string
	bootPath string
	now      func() time.Time
	mono     func() (int64, bool) // CLOCK_MONOTONIC in microseconds
	log      *slog.Logger
	maxAge   time.Duration
	c        counters
	rdy      readiness

	haveSeq bool
	lastSeq uint64

	pos  Position // of the last record delivered, or the resume point
	boot string   // this boot's id ("" when unknown: no position)

	startMu sync.Mutex
	start   Position

	// During a resume's backlog: records up to skipTo are skipped, and
	// offset (unix microseconds minus the record time stamp) dates the
	// others.
	backlog bool
	resumed bool // the backlog just ended: the live reading goes on from it
	skipTo  uint64
	offset  int64
	tooOld  uint64 // records skipped by age in this backlog
	again   uint64 // records delivered in this backlog
	primed  uint64 // records delivered again to prime the consumer
	prime   time.Duration
}

// NewKmsg returns a /dev/kmsg source.
func NewKmsg(opts KmsgOptions) *Kmsg {
	k := &Kmsg{path: opts.Path, bootPath: opts.BootIDPath, now: nowFunc(opts.Now), log: opts.Logger,
		mono: monotonicMicros, maxAge: opts.MaxAge, pos: opts.Resume, prime: opts.Prime}
	if k.path == "" {
		k.path = DefaultKmsgPath
	}
	if k.bootPath == "" {
		k.bootPath = DefaultBootIDPath
	}
	if k.maxAge <= 0 {
		k.maxAge = DefaultResumeMaxAge
	}
	if k.log == nil {
		k.log = slog.New(slog.DiscardHandler)
	}
	return k
}

func (k *Kmsg) String() string { return "kmsg " + k.path }

// Stats returns the source's counters.
func (k *Kmsg) Stats() Stats { return k.c.snapshot() }

// Ready is closed once Run has opened the device positioned after the
// newest record (after the resumed records, when it resumes): a record
// logged after that is delivered.
func (k *Kmsg) Ready() <-chan struct{} { return k.rdy.ch() }

// StartPosition is where Run began to follow the log once Ready is
// closed: the newest record before the live ones (or the last resumed
// one). A daemon that saves it resumes there after a restart even when it
// handled no record (zero when the boot id is unknown).
func (k *Kmsg) StartPosition() Position {
	k.startMu.Lock()
	defer k.startMu.Unlock()
	return k.start
}

func (k *Kmsg) setStart(p Position) {
	k.startMu.Lock()
	k.start = p
	k.startMu.Unlock()
}

// kmsgBufSize holds any record: the kernel refuses a read smaller than
// the record (EINVAL) and caps records at 8 KiB (CONSOLE_EXT_LOG_MAX).
const kmsgBufSize = 16 << 10

// kmsgRecord returns the first line of a /dev/kmsg record and its
// sequence number (ok false when the header is not "prio,seq,...;").
// See Documentation/ABI/testing/dev-kmsg in the kernel sources.
func kmsgRecord(rec []byte) (line []byte, seq uint64, ok bool) {
	line, seq, _, ok = kmsgHeader(rec)
	return line, seq, ok
}

// kmsgHeader is kmsgRecord that also returns the record's time stamp,
// microseconds on the kernel's clock since boot (ok false when the header
// is not "prio,seq,ts,...;").
func kmsgHeader(rec []byte) (line []byte, seq, ts uint64, ok bool) {
	line = rec
	if i := bytes.IndexByte(rec, '\n'); i >= 0 {
		line = rec[:i]
	}
	semi := bytes.IndexByte(line, ';')
	if semi < 0 {
		return line, 0, 0, false
	}
	head := line[:semi]
	c1 := bytes.IndexByte(head, ',')
	if c1 <= 0 {
		return line, 0, 0, false
	}
	rest := head[c1+1:]
	c2 := bytes.IndexByte(rest, ',')
	if c2 <= 0 {
		return line, 0, 0, false
	}
	if seq, ok = decimal(rest[:c2]); !ok {
		return line, 0, 0, false
	}
	rest = rest[c2+1:]
	c3 := bytes.IndexByte(rest, ',')
	if c3 < 0 {
		c3 = len(rest)
	}
	if ts, ok = decimal(rest[:c3]); !ok {
		return line, 0, 0, false
	}
	return line, seq, ts, true
}

// decimal reads an unsigned decimal number below 2^63.
func decimal(b []byte) (uint64, bool) {
	var n uint64
	if len(b) == 0 {
		return 0, false
	}
	for _, d := range b {
		if d < '0' || d > '9' || n > (1<<63)/10 {
			return 0, false
		}
		n = n*10 + uint64(d-'0')
	}
	return n, n < 1<<63
}

// recordReader is the part of the device the read loop uses.
type recordReader interface {
	Read([]byte) (int, error)
}

// readRecords is Run's loop, apart from the device so it can be tested
// with injected EPIPE. During a resume's backlog it returns nil once a
// read finds no record (EAGAIN on the non-blocking device).
func (k *Kmsg) readRecords(ctx context.Context, r recordReader, emit func(Line)) error {
	if !k.backlog && !k.resumed {
		// A new Run starts after the newest record: the jump from the
		// last run's sequence number is not a loss.
		k.haveSeq = false
	}
	k.resumed = false
	buf := make([]byte, kmsgBufSize)
	for {
		n, err := r.Read(buf)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if errors.Is(err, syscall.EPIPE) {
				// The ring buffer overwrote records we had not read; the
				// kernel moved us to the oldest one left. The gap is
				// counted from the next record's sequence number.
				k.log.Warn("kernel log records overwritten before they were read", "path", k.path)
				continue
			}
			if k.backlog && errors.Is(err, syscall.EAGAIN) {
				return nil // the resumed records are all read
			}
			return fmt.Errorf("logsource: read %s: %w", k.path, err)
		}
		if n == 0 {
			return fmt.Errorf("logsource: read %s: unexpected end of file", k.path)
		}
		k.record(buf[:n], emit)
		if k.backlog && ctx.Err() != nil {
			return nil
		}
	}
}

// startBacklog prepares the reading of the records after the resume
// point, from the oldest one in the ring buffer. monoNow (CLOCK_MONOTONIC
// in microseconds) and wallNow are read together.
func (k *Kmsg) startBacklog(monoNow int64, wallNow time.Time) {
	k.backlog = true
	k.skipTo = k.pos.Seq
	k.haveSeq, k.lastSeq = true, k.pos.Seq
	k.offset = wallNow.UnixMicro() - monoNow
	k.tooOld, k.again, k.primed = 0, 0, 0
}

// endBacklog reports what the resume skipped; the live records that
// follow keep counting gaps from the last record read.
func (k *Kmsg) endBacklog() {
	k.log.Info("kernel log resumed after the last record handled", "path", k.path, "after_seq", k.skipTo,
		"delivered", k.again, "too_old", k.tooOld, "max_age", k.maxAge.String(), "primed", k.primed)
	k.backlog = false
	k.resumed = true
}

// primeRecord delivers again a record handled before the restart when it
// arrived within Prime before the resume point (dated with the offset
// from CLOCK_MONOTONIC, as the resume point dates only what follows it).
// Its Position is at or before KmsgOptions.Resume: the consumer knows it
// for what it is.
func (k *Kmsg) primeRecord(line []byte, seq, ts uint64, now time.Time, emit func(Line)) {
	if k.prime <= 0 || k.pos.Stamp == 0 || k.boot == "" {
		return
	}
	received := time.UnixMicro(k.offset + int64(ts))
	if received.After(now) {
		received = now
	}
	if received.UnixMicro() < k.pos.Stamp-k.prime.Microseconds() || now.Sub(received) > k.maxAge {
		return
	}
	k.primed++
	k.c.lines.Add(1)
	emit(Line{Text: line, Received: received, Pos: Position{Boot: k.boot, Seq: seq, Stamp: received.UnixMicro()}})
}

func (k *Kmsg) record(rec []byte, emit func(Line)) {
	line, seq, ts, ok := kmsgHeader(rec)
	now := k.now()
	received := now
	if k.backlog {
		if !ok {
			return // cannot be placed in time: never replay it
		}
		if seq <= k.skipTo {
			// Handled before the restart. The resume point itself dates
			// the records after it better than CLOCK_MONOTONIC does.
			if seq == k.skipTo && k.pos.Stamp != 0 {
				k.offset = k.pos.Stamp - int64(ts)
			}
			k.primeRecord(line, seq, ts, now, emit)
			return
		}
		received = time.UnixMicro(k.offset + int64(ts))
		if received.After(now) {
			received = now
		}
	}
	if ok {
		if k.haveSeq && seq > k.lastSeq+1 {
			lost := seq - k.lastSeq - 1
			k.c.lost.Add(lost)
			k.log.Warn("kernel log records lost", "path", k.path, "lost", lost)
		}
		k.haveSeq, k.lastSeq = true, seq
	}
	if k.backlog && now.Sub(received) > k.maxAge {
		k.tooOld++
		return
	}
	var pos Position
	if ok && k.boot != "" {
		pos = Position{Boot: k.boot, Seq: seq, Stamp: received.UnixMicro()}
		k.pos = pos
	}
	if k.backlog {
		k.again++
	}
	k.c.lines.Add(1)
	emit(Line{Text: line, Received: received, Pos: pos})
}
