package logsource

import (
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// liveWriter writes numbered log lines the way a syslog daemon does: one
// O_APPEND descriptor, reopened only when told (the HUP after rotation).
type liveWriter struct {
	t    *testing.T
	path string
	f    *os.File
	next int
	want []string
}

func newLiveWriter(t *testing.T, path string) *liveWriter {
	w := &liveWriter{t: t, path: path}
	w.reopen()
	t.Cleanup(func() { w.f.Close() })
	return w
}

func (w *liveWriter) reopen() {
	w.t.Helper()
	if w.f != nil {
		w.f.Close()
	}
	f, err := os.OpenFile(w.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		w.t.Fatal(err)
	}
	w.f = f
}

func liveLine(i int) string {
	return fmt.Sprintf("Nov 21 05:20:44 host kernel: [  488.%06d] knock: IN=veth0 OUT= SRC=198.18.0.2 DST=198.18.0.1 PROTO=TCP SPT=%d DPT=%d SYN SEQ=%06d",
		i, 30000+i, 745+i%256, i)
}

// write appends n lines, pausing now and then so the source reads in
// the middle of bursts.
func (w *liveWriter) write(n int) {
	w.t.Helper()
	for range n {
		l := liveLine(w.next)
		if _, err := w.f.WriteString(l + "\n"); err != nil {
			w.t.Fatal(err)
		}
		w.want = append(w.want, l)
		w.next++
		if w.next%53 == 0 {
			time.Sleep(200 * time.Microsecond)
		}
	}
}

func mustRename(t *testing.T, from, to string) {
	t.Helper()
	if err := os.Rename(from, to); err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	in, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.Create(to)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}

// traceLog collects a source's log for a failure message.
type traceLog struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *traceLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *traceLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

func (l *traceLog) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(l, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// missingRanges names the written lines (by index) that did not arrive.
func missingRanges(out *sink, want []string) string {
	have := map[string]bool{}
	for _, l := range out.texts() {
		have[l] = true
	}
	var b strings.Builder
	for i := 0; i < len(want); i++ {
		if have[want[i]] {
			continue
		}
		j := i
		for j+1 < len(want) && !have[want[j+1]] {
			j++
		}
		fmt.Fprintf(&b, "[%d-%d] ", i, j)
		i = j
	}
	return b.String()
}

// checkExactlyOnce asserts every written line arrived once, in order,
// with positions that advance by exactly the line length per inode.
func checkExactlyOnce(t *testing.T, out *sink, want []string, path string) {
	t.Helper()
	out.mu.Lock()
	defer out.mu.Unlock()
	if len(out.lines) != len(want) {
		t.Fatalf("%d lines arrived, %d written", len(out.lines), len(want))
	}
	last := map[uint64]int64{}
	for i, l := range out.lines {
		if l.text != want[i] {
			t.Fatalf("line %d = %q, want %q", i, l.text, want[i])
		}
		if l.pos.Path != path || l.pos.Inode == 0 {
			t.Fatalf("line %d position %+v", i, l.pos)
		}
		size := int64(len(l.text) + 1)
		prev, seen := last[l.pos.Inode]
		switch {
		case seen && l.pos.Offset == prev+size:
		case !seen && l.pos.Offset >= size:
		case l.pos.Offset == size:
			// a file read from 0: truncated, or a new file that got a
			// freed inode number again
		default:
			t.Fatalf("line %d offset %d in inode %d, previous line ended at %d (seen %v)", i, l.pos.Offset, l.pos.Inode, prev, seen)
		}
		last[l.pos.Inode] = l.pos.Offset
	}
}

func runFile(t *testing.T, src *File, out *sink) (stop func()) {
	t.Helper()
	return runSource(t, src, out.emit, 10*time.Second).stop
}

// TestFileLiveRotation runs the source against a writer that rotates the
// log while it writes, for each rotation style, several times.
func TestFileLiveRotation(t *testing.T) {
	const poll = 20 * time.Millisecond
	type env struct {
		t   *testing.T
		w   *liveWriter
		out *sink
		dir string
		gen int
	}
	// Older rotations move out of the way under unique names: deleting
	// them would free inode numbers for the next files, and the position
	// check below keys on inode numbers.
	shift := func(e *env) {
		e.gen++
		mustRename(e.t, e.w.path+".1", fmt.Sprintf("%s.1.%d", e.w.path, e.gen))
	}
	cases := []struct {
		name   string
		rotate func(e *env)
	}{
		{"rename and create, writer reopens late", func(e *env) {
			shift(e)
			mustRename(e.t, e.w.path, e.w.path+".1")
			appendFile(e.t, e.w.path, "")
			e.w.write(25) // still into the renamed file until the HUP
			e.w.reopen()
		}},
		{"copytruncate", func(e *env) {
			shift(e)
			copyFile(e.t, e.w.path, e.w.path+".1")
			if err := os.Truncate(e.w.path, 0); err != nil {
				e.t.Fatal(err)
			}
		}},
		{"delete and recreate, writer reopens late", func(e *env) {
			if err := os.Remove(e.w.path); err != nil {
				e.t.Fatal(err)
			}
			e.w.write(25)
			appendFile(e.t, e.w.path, "")
			e.w.write(5)
			e.w.reopen()
		}},
		{"truncate in place", func(e *env) {
			// A plain truncation destroys what was not read yet, so it
			// happens once the source has caught up.
			e.out.waitFor(e.t, len(e.w.want), 10*time.Second)
			if err := os.Truncate(e.w.path, 0); err != nil {
				e.t.Fatal(err)
			}
		}},
		{"disappears for a while, then reappears", func(e *env) {
			e.gen++
			mustRename(e.t, e.w.path, filepath.Join(e.dir, fmt.Sprintf("moved-%d", e.gen)))
			e.w.write(10)
			time.Sleep(4 * poll)
			e.w.write(10)
			appendFile(e.t, e.w.path, "")
			e.w.reopen()
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "kern.log")
			appendFile(t, path, "old line that must not be replayed\n")
			out := &sink{}
			trace := &traceLog{}
			// Resume at the end of the existing content: a deterministic
			// start point (a fresh start races with the first write).
			src := NewFile(path, FileOptions{PollInterval: poll, Resume: Position{Path: path, Inode: inode(t, path), Offset: 35}, Logger: trace.logger()})
			stop := runFile(t, src, out)
			e := &env{t: t, w: newLiveWriter(t, path), out: out, dir: dir}
			for range 4 {
				e.w.write(400)
				tc.rotate(e)
			}
			e.w.write(400)
			if !out.waitUntil(len(e.w.want), 15*time.Second) {
				t.Fatalf("only %d of %d lines arrived within 15s; missing %s; stats %+v\nsource log:\n%s",
					out.n.Load(), len(e.w.want), missingRanges(out, e.w.want), src.Stats(), trace)
			}
			time.Sleep(5 * poll) // anything extra (a duplicate) would arrive now
			stop()
			if n := int(out.n.Load()); n != len(e.w.want) {
				t.Fatalf("%d lines arrived, %d written; stats %+v\nsource log:\n%s", n, len(e.w.want), src.Stats(), trace)
			}
			checkExactlyOnce(t, out, e.w.want, path)
			st := src.Stats()
			if st.Lines != uint64(len(e.w.want)) || st.Dropped != 0 || st.Overlong != 0 {
				t.Fatalf("stats = %+v", st)
			}
			t.Logf("%d lines, stats %+v, generations read from the siblings: %d, tails woken: %d", len(e.w.want), st,
				strings.Count(trace.String(), "did not see at the path"), src.wakes.Load())
		})
	}
}

// TestFileRestartResumes stops the source, writes (and rotates) while it
// is down, and starts a new one from the last delivered position.
func TestFileRestartResumes(t *testing.T) {
	cases := []struct {
		name      string
		whileDown func(w *liveWriter)
	}{
		{"more lines in the same file", func(w *liveWriter) { w.write(300) }},
		{"rotated by rename while down", func(w *liveWriter) {
			w.write(100)
			mustRename(w.t, w.path, w.path+".1")
			w.reopen()
			w.write(100)
		}},
		{"rotated twice while down, nothing compressed", func(w *liveWriter) {
			w.write(50)
			mustRename(w.t, w.path, w.path+".1")
			w.reopen()
			time.Sleep(20 * time.Millisecond) // distinct mtimes for the generations
			w.write(50)
			mustRename(w.t, w.path+".1", w.path+".2")
			mustRename(w.t, w.path, w.path+".1")
			w.reopen()
			w.write(50)
		}},
		{"rotated twice, the older one compressed away", func(w *liveWriter) {
			w.write(50)
			mustRename(w.t, w.path, w.path+".1")
			w.reopen()
			w.write(50)
			mustRename(w.t, w.path+".1", w.path+".2.gz")
			mustRename(w.t, w.path, w.path+".1")
			w.reopen()
			w.write(50)
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "kern.log")
			appendFile(t, path, "")
			w := newLiveWriter(t, path)
			out := &sink{}
			stop := runFile(t, NewFile(path, FileOptions{PollInterval: 20 * time.Millisecond, Resume: Position{Path: path, Inode: inode(t, path)}}), out)
			w.write(500)
			out.waitFor(t, 500, 10*time.Second)
			w.write(7) // may or may not be read before the stop
			time.Sleep(time.Millisecond)
			stop()
			pos := out.last().pos
			tc.whileDown(w)
			out2 := &sink{}
			src2 := NewFile(path, FileOptions{PollInterval: 20 * time.Millisecond, Resume: pos})
			runFile(t, src2, out2)
			w.write(100)
			n1 := int(out.n.Load())
			want := w.want[n1:]
			if tc.name == "rotated twice, the older one compressed away" {
				// The lines after pos in the first file and the whole
				// second file were compressed: lost, as documented.
				want = w.want[len(w.want)-150:]
			}
			out2.waitFor(t, len(want), 10*time.Second)
			time.Sleep(100 * time.Millisecond)
			got := out2.texts()
			if len(got) != len(want) {
				t.Fatalf("after restart %d lines, want %d", len(got), len(want))
			}
			for i := range want {
				if got[i] != want[i] {
					t.Fatalf("line %d after restart = %q, want %q", i, got[i], want[i])
				}
			}
		})
	}
}

// TestFileDirectoryAppearsLater starts with no directory, so no inotify
// watch: the poll timer finds the file, and the watch is set up once the
// directory exists.
func TestFileDirectoryAppearsLater(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "later")
	path := filepath.Join(dir, "kern.log")
	out := &sink{}
	src := NewFile(path, FileOptions{PollInterval: 10 * time.Millisecond})
	stop := runFile(t, src, out)
	time.Sleep(30 * time.Millisecond)
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	w := newLiveWriter(t, path)
	w.write(200)
	out.waitFor(t, 200, 10*time.Second)
	stop()
	checkExactlyOnce(t, out, w.want, path)
}
