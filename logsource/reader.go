package logsource

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"
)

// ReaderOptions tune a Reader source.
type ReaderOptions struct {
	Now     func() time.Time // clock for Line.Received; nil means time.Now
	MaxLine int              // longest line delivered; 0 means DefaultMaxLine
}

// Reader delivers the lines of an io.Reader (standard input, a pipe, a
// file read once) and ends at EOF. A last line without a newline is
// delivered at EOF. Line.Pos is zero.
type Reader struct {
	r    io.Reader
	name string
	opts ReaderOptions
	now  func() time.Time
	c    counters
}

// NewReader returns a source reading r; name is what String reports.
// For standard input use NewStdin, which makes a pipe interruptible.
func NewReader(r io.Reader, name string) *Reader {
	return NewReaderOptions(r, name, ReaderOptions{})
}

// NewReaderOptions is NewReader with options.
func NewReaderOptions(r io.Reader, name string, opts ReaderOptions) *Reader {
	return &Reader{r: r, name: name, opts: opts, now: nowFunc(opts.Now)}
}

func (s *Reader) String() string { return "reader " + s.name }

// Stats returns the source's counters.
func (s *Reader) Stats() Stats { return s.c.snapshot() }

// deadliner is implemented by *os.File (pipes, sockets) and net.Conn.
type deadliner interface{ SetReadDeadline(time.Time) error }

// Run reads until EOF (returning nil), a read error, or the end of ctx
// (returning nil). A read blocked in a reader that supports read
// deadlines (a pipe or socket *os.File, a net.Conn) is interrupted when
// ctx ends; any other reader ends at the first read that returns after it.
func (s *Reader) Run(ctx context.Context, emit func(Line)) error {
	if d, ok := s.r.(deadliner); ok {
		stop := context.AfterFunc(ctx, func() { _ = d.SetReadDeadline(time.Unix(1, 0)) })
		defer stop()
	}
	b := newLineBuf(s.opts.MaxLine, 0)
	for {
		if ctx.Err() != nil {
			return nil
		}
		n, err := s.r.Read(b.space())
		if n > 0 {
			b.commit(n)
			lines := b.emitAll(s.now(), emit)
			s.c.lines.Add(lines)
			s.c.overlong.Store(b.overlong)
		}
		if err == nil {
			continue
		}
		if err == io.EOF {
			if b.w > b.r && !b.skipping {
				// The last line had no newline: the stream is complete,
				// so the line is too.
				emit(Line{Text: b.buf[b.r:b.w], Received: s.now()})
				s.c.lines.Add(1)
			}
			return nil
		}
		if ctx.Err() != nil && errors.Is(err, os.ErrDeadlineExceeded) {
			return nil
		}
		return fmt.Errorf("logsource: read %s: %w", s.name, err)
	}
}
