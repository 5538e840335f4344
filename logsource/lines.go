package logsource

import (
	"bytes"
	"time"
)

// minRead is the least free space a read is given; the buffer grows
// (up to the maximum line plus this) only while a long partial line waits
// for its newline.
const (
	minRead    = 16 << 10
	initialBuf = 64 << 10
)

// lineBuf splits a byte stream into complete lines inside one reused
// buffer, tracking the stream offset of every line end. A partial last
// line stays in the buffer until its newline arrives. A line longer than
// max is skipped up to its newline and counted.
//
// Use: read into space(), commit(n), then call next() until it reports
// false.
type lineBuf struct {
	buf      []byte
	r, w     int   // buf[r:w] not yet consumed
	scan     int   // buf[r:scan] is known to hold no newline
	base     int64 // stream offset of buf[0]
	skipping bool  // discarding an overlong line up to its newline
	max      int
	overlong uint64 // lines skipped, cumulative
}

func newLineBuf(max int, base int64) *lineBuf {
	return &lineBuf{max: maxLine(max), base: base}
}

// reset drops everything buffered and restarts the stream at off.
func (b *lineBuf) reset(off int64) {
	b.r, b.w, b.scan = 0, 0, 0
	b.base = off
	b.skipping = false
}

// offset is the stream offset of the next byte to read.
func (b *lineBuf) offset() int64 { return b.base + int64(b.w) }

// lineStart is the stream offset where the pending partial line starts
// (equal to offset when nothing is pending).
func (b *lineBuf) lineStart() int64 { return b.base + int64(b.r) }

// pending reports whether an incomplete line is buffered or being skipped.
func (b *lineBuf) pending() bool { return b.w > b.r || b.skipping }

// space returns the free buffer to read into, after moving a pending
// partial line to the front.
func (b *lineBuf) space() []byte {
	if b.r > 0 {
		n := copy(b.buf, b.buf[b.r:b.w])
		b.base += int64(b.r)
		b.scan -= b.r
		b.w = n
		b.r = 0
	}
	if len(b.buf)-b.w < minRead {
		size := 2 * len(b.buf)
		if size < initialBuf {
			size = initialBuf
		}
		if limit := b.max + 1 + minRead; size > limit {
			size = limit
		}
		if size < b.w+minRead {
			size = b.w + minRead
		}
		nb := make([]byte, size)
		copy(nb, b.buf[:b.w])
		b.buf = nb
	}
	return b.buf[b.w:]
}

// commit records that n bytes were read into space().
func (b *lineBuf) commit(n int) { b.w += n }

// emitAll delivers every complete line in b to emit, all stamped now (they
// arrived in one read), and returns how many it delivered.
func (b *lineBuf) emitAll(now time.Time, emit func(Line)) uint64 {
	var n uint64
	for {
		text, _, ok := b.next()
		if !ok {
			return n
		}
		emit(Line{Text: text, Received: now})
		n++
	}
}

// next returns the next complete line (without its newline) and the stream
// offset just past its newline. The line is valid until the next call to
// space.
func (b *lineBuf) next() (line []byte, end int64, ok bool) {
	for {
		i := bytes.IndexByte(b.buf[b.scan:b.w], '\n')
		if i < 0 {
			switch {
			case b.skipping:
				b.r = b.w
			case b.w-b.r > b.max:
				b.overlong++
				b.skipping = true
				b.r = b.w
			}
			b.scan = b.w
			return nil, 0, false
		}
		e := b.scan + i
		line = b.buf[b.r:e]
		b.r = e + 1
		b.scan = b.r
		if b.skipping {
			b.skipping = false
			continue
		}
		if len(line) > b.max {
			b.overlong++
			continue
		}
		return line, b.base + int64(b.r), true
	}
}
