package state

import (
	"encoding/json"
	"fmt"
	"sync"
	"time"

	"github.com/knockdaemon/knock/internal/clock"
)

// WriterOptions tune a Writer. The zero value is usable.
type WriterOptions struct {
	// Clock schedules the delayed writes; nil means the wall clock.
	Clock clock.Clock
	// Interval is the longest a change waits before it is written
	// (default 1s). Updates during the wait ride along in the same write,
	// so a steady stream of changes costs one write per Interval.
	Interval time.Duration
	// MaxRetry caps the backoff between attempts after a failed write
	// (default 1m). The delay starts at Interval and doubles per failure.
	MaxRetry time.Duration
	// OnError is told about every failed background write (disk full,
	// read-only directory). Synchronous Flush and UpdateNow return their
	// error instead. It runs without the Writer's locks held.
	OnError func(error)
	// OnRecover is called once when a write succeeds after failures.
	OnRecover func()
	// Journal, when set, is compacted after every successful write: the
	// records appended before the state snapshot was taken are in the
	// file now (see Journal). That holds only when every record's change
	// is made in the Writer's state (Update) before the record is
	// appended. A failed compaction is reported to OnError and retried
	// with the next write.
	Journal Compactor
}

// Compactor is what a Writer needs of a Journal.
type Compactor interface {
	Mark() int64
	Compact(mark int64) error
}

// Writer holds the state of type T in memory and writes it to one file with
// Save's atomic sequence, coalescing frequent changes. It is safe for
// concurrent use. A failed write never loses the in-memory state: the Writer
// keeps it dirty and retries with backoff until a write succeeds.
type Writer[T any] struct {
	path string
	opt  WriterOptions

	mu       sync.Mutex
	v        T
	seq      uint64      // bumped by every change
	timer    clock.Timer // a pending delayed write, or nil
	closed   bool
	failures int

	wmu     sync.Mutex // serialises file writes, so an older snapshot never lands after a newer one
	written uint64     // seq of the last successful write; guarded by wmu and mu
}

// NewWriter returns a Writer for path holding initial. It writes nothing
// until the first change or Flush.
func NewWriter[T any](path string, initial T, opt WriterOptions) *Writer[T] {
	if opt.Clock == nil {
		opt.Clock = clock.Real{}
	}
	if opt.Interval <= 0 {
		opt.Interval = time.Second
	}
	if opt.MaxRetry < opt.Interval {
		opt.MaxRetry = max(time.Minute, opt.Interval)
	}
	return &Writer[T]{path: path, opt: opt, v: initial}
}

// Path returns the file the Writer writes.
func (w *Writer[T]) Path() string { return w.path }

// Update changes the state with fn and schedules a write within Interval.
// fn runs under the Writer's lock: it must not call the Writer.
func (w *Writer[T]) Update(fn func(*T)) {
	w.mu.Lock()
	defer w.mu.Unlock()
	fn(&w.v)
	w.seq++
	if w.timer == nil && !w.closed {
		w.timer = w.opt.Clock.AfterFunc(w.opt.Interval, w.background)
	}
}

// UpdateNow changes the state with fn and writes it before returning, for
// changes that must be on disk before they are reported (a grant opened).
// On error the change stays in memory and is retried in the background.
func (w *Writer[T]) UpdateNow(fn func(*T)) error {
	w.mu.Lock()
	fn(&w.v)
	w.seq++
	w.mu.Unlock()
	return w.Flush()
}

// View calls fn with the current state under the Writer's lock; fn must not
// keep the pointer or call the Writer.
func (w *Writer[T]) View(fn func(*T)) {
	w.mu.Lock()
	defer w.mu.Unlock()
	fn(&w.v)
}

// Flush writes the state now if it changed since the last successful write.
func (w *Writer[T]) Flush() error {
	w.wmu.Lock()
	defer w.wmu.Unlock()

	// The mark comes before the snapshot: every record appended before
	// it was appended after its change was made in memory, so the
	// snapshot holds it.
	var mark int64
	w.mu.Lock()
	journal := w.opt.Journal
	w.mu.Unlock()
	if journal != nil {
		mark = journal.Mark()
	}
	w.mu.Lock()
	seq := w.seq
	if seq == w.written {
		w.mu.Unlock()
		return nil
	}
	data, err := json.MarshalIndent(&w.v, "", "  ")
	w.mu.Unlock()
	if err != nil {
		err = fmt.Errorf("state: encode %s: %w", w.path, err)
	} else {
		err = writeFile(w.path, append(data, '\n'))
	}

	w.mu.Lock()
	recovered := false
	if err != nil {
		w.failures++
		if w.timer == nil && !w.closed {
			w.timer = w.opt.Clock.AfterFunc(w.backoff(), w.background)
		}
	} else {
		w.written = seq
		recovered = w.failures > 0
		w.failures = 0
		if w.seq == seq && w.timer != nil {
			// Nothing left for the pending write to do.
			w.timer.Stop()
			w.timer = nil
		}
	}
	w.mu.Unlock()
	if recovered && w.opt.OnRecover != nil {
		w.opt.OnRecover()
	}
	if err == nil && journal != nil && mark > 0 {
		if cerr := journal.Compact(mark); cerr != nil && w.opt.OnError != nil {
			w.opt.OnError(cerr)
		}
	}
	return err
}

// SetJournal sets (or, with nil, removes) the journal the Writer
// compacts after each write, as WriterOptions.Journal; for a journal
// opened after the Writer was made (once the state was loaded).
func (w *Writer[T]) SetJournal(j Compactor) {
	w.wmu.Lock()
	defer w.wmu.Unlock()
	w.mu.Lock()
	defer w.mu.Unlock()
	w.opt.Journal = j
}

// backoff is Interval doubled per consecutive failure, capped at MaxRetry.
func (w *Writer[T]) backoff() time.Duration {
	d := w.opt.Interval
	for i := 1; i < w.failures; i++ {
		if d >= w.opt.MaxRetry/2 {
			return w.opt.MaxRetry
		}
		d *= 2
	}
	return min(d, w.opt.MaxRetry)
}

func (w *Writer[T]) background() {
	w.mu.Lock()
	w.timer = nil
	w.mu.Unlock()
	if err := w.Flush(); err != nil && w.opt.OnError != nil {
		w.opt.OnError(err)
	}
}

// Close stops the delayed writes and writes any pending change. Later
// Updates change memory only; Flush still writes.
func (w *Writer[T]) Close() error {
	w.mu.Lock()
	w.closed = true
	if w.timer != nil {
		w.timer.Stop()
		w.timer = nil
	}
	w.mu.Unlock()
	return w.Flush()
}
