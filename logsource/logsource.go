// Package logsource turns a firewall log into a stream of lines: a log
// file followed across rotation, /dev/kmsg, journalctl -k, or standard
// input.
//
// The File source follows the file with github.com/nxadm/tail under its
// own supervision (rotation, truncation, restarts; see File); the other
// sources read with a reused buffer and allocate nothing per line.
//
// Every source calls emit from the goroutine that runs Run, one complete
// line at a time, without its newline. Line.Text points into a buffer the
// source reuses: it is valid only during the emit call, so a consumer that
// keeps a line copies it. Received is the time the line was read, taken
// from the injected clock, never the time stamp written in the line (syslog
// stamps have no year and no zone, and a reader behind by minutes must not
// age the knocks it reads late). The one exception is a line a kmsg or
// journald source reads again after a daemon restart (Resume): it is dated
// when it was logged, from the record's monotonic time or the journal's
// microsecond stamp, which both carry no such ambiguity, so that a knock
// read late is aged by the truth.
//
// Lines longer than the source's maximum (1 MiB by default) are skipped
// and counted, never fatal. Each source reports its counters through
// Stats.
//
// Sources deliver every line; choosing the firewall lines, and among them
// the configured LOG prefix, is done on the parsed hit (logparse.Hit.Prefix),
// because only the parser knows where a prefix ends.
//
// Which sources local users can forge: /dev/kmsg and the journal's kernel
// transport (journalctl -k) hold only what the kernel logged (a user
// writing to /dev/kmsg gets the user facility). A syslog file such as
// kern.log holds whatever syslog was told: `logger -p kern.warn` from any
// user lands there as a "kernel" line on many configurations.
package logsource

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// Position says where a line was in its log, so a restarted daemon
// resumes without loss or replay. A source fills only its own fields:
//
//   - File: Path, Inode and Offset, the byte just past the line.
//   - Kmsg: Boot, the kernel's boot id (/proc/sys/kernel/random/boot_id)
//     that gives Seq a meaning, and Seq, the record's sequence number.
//   - Journald: Stamp, the entry's time stamp in unix microseconds, and
//     StampN, how many lines with that stamp were delivered up to this
//     one (journald may stamp two entries alike).
//
// Position stays comparable; the zero value means "no position". Every
// field is omitted from JSON when zero, so state files written before a
// field existed load unchanged.
type Position struct {
	Path   string `json:"path,omitempty"`
	Inode  uint64 `json:"inode,omitempty"`
	Offset int64  `json:"offset,omitempty"`
	Boot   string `json:"boot,omitempty"`
	Seq    uint64 `json:"seq,omitempty"`
	Stamp  int64  `json:"stamp,omitempty"`
	StampN int    `json:"stamp_n,omitempty"`
}

// Line is one complete line of the log.
type Line struct {
	Text     []byte // without the newline; valid only during emit
	Received time.Time
	Pos      Position // zero for sources that are not files
}

// Source delivers lines until its context ends.
type Source interface {
	// Run blocks, calling emit from a single goroutine for every line.
	Run(ctx context.Context, emit func(Line)) error
	String() string
}

// DefaultMaxLine is the longest line a source delivers; longer lines are
// skipped and counted in Stats.Overlong.
const DefaultMaxLine = 1 << 20

// Stats are a source's counters since it was made. Every field only grows.
type Stats struct {
	Lines       uint64 `json:"lines"`       // lines delivered to emit
	Overlong    uint64 `json:"overlong"`    // lines longer than the maximum, skipped
	Dropped     uint64 `json:"dropped"`     // incomplete last lines abandoned at rotation or truncation
	Lost        uint64 `json:"lost"`        // kmsg records overwritten before they were read
	Restarts    uint64 `json:"restarts"`    // journalctl restarts; File: tail restarts after a tail ended, stalled or skipped
	Rotations   uint64 `json:"rotations"`   // a new file took the log's path
	Truncations uint64 `json:"truncations"` // the file shrank or was rewritten in place
	Recovered   uint64 `json:"recovered"`   // lines read from a rotated file or a copytruncate copy
	Errors      uint64 `json:"errors"`      // transient read, stat and open errors survived
}

// Counters is implemented by every source of this package, so the daemon
// can report how its input fares.
type Counters interface {
	Stats() Stats
}

// counters are updated by the Run goroutine and read by anyone.
type counters struct {
	lines, overlong, dropped, lost, restarts atomic.Uint64
	rotations, truncations, recovered, errs  atomic.Uint64
}

func (c *counters) snapshot() Stats {
	return Stats{
		Lines:       c.lines.Load(),
		Overlong:    c.overlong.Load(),
		Dropped:     c.dropped.Load(),
		Lost:        c.lost.Load(),
		Restarts:    c.restarts.Load(),
		Rotations:   c.rotations.Load(),
		Truncations: c.truncations.Load(),
		Recovered:   c.recovered.Load(),
		Errors:      c.errs.Load(),
	}
}

// Readier is implemented by the sources that can say when they follow
// their log: a line logged after Ready is closed is delivered. The daemon
// waits for it before it reports that it started.
type Readier interface {
	Ready() <-chan struct{}
}

// readiness is a Ready channel, closed once; its zero value is ready to
// use.
type readiness struct {
	mu     sync.Mutex
	c      chan struct{}
	closed bool
}

func (r *readiness) ch() <-chan struct{} {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.c == nil {
		r.c = make(chan struct{})
	}
	return r.c
}

func (r *readiness) set() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.c == nil {
		r.c = make(chan struct{})
	}
	if !r.closed {
		close(r.c)
		r.closed = true
	}
}

func nowFunc(f func() time.Time) func() time.Time {
	if f == nil {
		return time.Now
	}
	return f
}

func maxLine(n int) int {
	if n <= 0 {
		return DefaultMaxLine
	}
	return n
}
