package logsource

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
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
}

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
// Run may be called again after it returned, not concurrently.
type Kmsg struct {
	path string
	now  func() time.Time
	log  *slog.Logger
	c    counters
	rdy  readiness

	haveSeq bool
	lastSeq uint64
}

// NewKmsg returns a /dev/kmsg source.
func NewKmsg(opts KmsgOptions) *Kmsg {
	k := &Kmsg{path: opts.Path, now: nowFunc(opts.Now), log: opts.Logger}
	if k.path == "" {
		k.path = DefaultKmsgPath
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
// newest record: a record logged after that is delivered.
func (k *Kmsg) Ready() <-chan struct{} { return k.rdy.ch() }

// kmsgBufSize holds any record: the kernel refuses a read smaller than
// the record (EINVAL) and caps records at 8 KiB (CONSOLE_EXT_LOG_MAX).
const kmsgBufSize = 16 << 10

// kmsgRecord returns the first line of a /dev/kmsg record and its
// sequence number (ok false when the header is not "prio,seq,...;").
// See Documentation/ABI/testing/dev-kmsg in the kernel sources.
func kmsgRecord(rec []byte) (line []byte, seq uint64, ok bool) {
	line = rec
	if i := bytes.IndexByte(rec, '\n'); i >= 0 {
		line = rec[:i]
	}
	semi := bytes.IndexByte(line, ';')
	if semi < 0 {
		return line, 0, false
	}
	head := line[:semi]
	c1 := bytes.IndexByte(head, ',')
	if c1 <= 0 {
		return line, 0, false
	}
	rest := head[c1+1:]
	c2 := bytes.IndexByte(rest, ',')
	if c2 <= 0 {
		return line, 0, false
	}
	for _, d := range rest[:c2] {
		if d < '0' || d > '9' || seq > (1<<63)/10 {
			return line, 0, false
		}
		seq = seq*10 + uint64(d-'0')
	}
	return line, seq, true
}

// recordReader is the part of the device the read loop uses.
type recordReader interface {
	Read([]byte) (int, error)
}

// readRecords is Run's loop, apart from the device so it can be tested
// with injected EPIPE.
func (k *Kmsg) readRecords(ctx context.Context, r recordReader, emit func(Line)) error {
	// A new Run starts after the newest record: the jump from the last
	// run's sequence number is not a loss.
	k.haveSeq = false
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
			return fmt.Errorf("logsource: read %s: %w", k.path, err)
		}
		if n == 0 {
			return fmt.Errorf("logsource: read %s: unexpected end of file", k.path)
		}
		k.record(buf[:n], emit)
	}
}

func (k *Kmsg) record(rec []byte, emit func(Line)) {
	line, seq, ok := kmsgRecord(rec)
	if ok {
		if k.haveSeq && seq > k.lastSeq+1 {
			lost := seq - k.lastSeq - 1
			k.c.lost.Add(lost)
			k.log.Warn("kernel log records lost", "path", k.path, "lost", lost)
		}
		k.haveSeq, k.lastSeq = true, seq
	}
	k.c.lines.Add(1)
	emit(Line{Text: line, Received: k.now()})
}
