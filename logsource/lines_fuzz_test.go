package logsource

import (
	"bytes"
	"testing"
)

// FuzzLineBuf feeds random data in random chunk sizes through lineBuf and
// checks it against a plain split: every complete line up to the maximum
// is delivered once, in order, with the offset just past its newline;
// longer ones are counted; the incomplete tail is held back.
func FuzzLineBuf(f *testing.F) {
	f.Add([]byte("a\nbb\n\nccc"), uint8(1), uint16(2))
	f.Add([]byte("Nov 21 05:20:44 gw kernel: knock: IN=eth0 SRC=198.18.0.2 DPT=800 SYN\n"), uint8(7), uint16(300))
	f.Add(bytes.Repeat([]byte("x"), 1000), uint8(63), uint16(10))
	f.Add([]byte("\n\n\n"), uint8(0), uint16(0))
	f.Fuzz(func(t *testing.T, data []byte, chunk uint8, max uint16) {
		lim := int(max%300) + 1
		step := int(chunk%64) + 1
		const base = 12345
		b := newLineBuf(lim, base)
		var lines [][]byte
		var ends []int64
		for off := 0; off < len(data); {
			sp := b.space()
			n := copy(sp[:min(step, len(sp))], data[off:])
			off += n
			b.commit(n)
			for {
				l, e, ok := b.next()
				if !ok {
					break
				}
				lines = append(lines, bytes.Clone(l))
				ends = append(ends, e)
			}
		}
		var wantLines [][]byte
		var wantEnds []int64
		var overlong uint64
		pos := 0
		for {
			i := bytes.IndexByte(data[pos:], '\n')
			if i < 0 {
				break
			}
			l := data[pos : pos+i]
			pos += i + 1
			if len(l) > lim {
				overlong++
				continue
			}
			wantLines = append(wantLines, l)
			wantEnds = append(wantEnds, base+int64(pos))
		}
		if len(lines) != len(wantLines) {
			t.Fatalf("%d lines, want %d", len(lines), len(wantLines))
		}
		for i := range lines {
			if !bytes.Equal(lines[i], wantLines[i]) || ends[i] != wantEnds[i] {
				t.Fatalf("line %d = %q end %d, want %q end %d", i, lines[i], ends[i], wantLines[i], wantEnds[i])
			}
		}
		tail := len(data) - pos
		if tail > lim {
			overlong++ // counted as soon as it is too long
		}
		if b.overlong != overlong {
			t.Fatalf("overlong = %d, want %d", b.overlong, overlong)
		}
		if b.offset() != base+int64(len(data)) {
			t.Fatalf("offset = %d, want %d", b.offset(), base+len(data))
		}
		if tail <= lim && b.lineStart() != base+int64(pos) {
			t.Fatalf("line start = %d, want %d", b.lineStart(), base+pos)
		}
	})
}
