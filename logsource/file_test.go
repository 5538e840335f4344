package logsource

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// got is one delivered line, copied.
type got struct {
	text string
	pos  Position
}

// sink collects lines from any goroutine.
type sink struct {
	mu    sync.Mutex
	lines []got
	n     atomic.Int64
}

func (s *sink) emit(l Line) {
	s.mu.Lock()
	s.lines = append(s.lines, got{string(l.Text), l.Pos})
	s.mu.Unlock()
	s.n.Add(1)
}

func (s *sink) texts() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]string, len(s.lines))
	for i, l := range s.lines {
		out[i] = l.text
	}
	return out
}

// seen reports whether a delivered line ends with suffix.
func (s *sink) seen(suffix string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := len(s.lines) - 1; i >= 0; i-- {
		if strings.HasSuffix(s.lines[i].text, suffix) {
			return true
		}
	}
	return false
}

func (s *sink) last() got {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.lines) == 0 {
		return got{}
	}
	return s.lines[len(s.lines)-1]
}

// waitUntil waits (bounded) until at least n lines arrived, and says
// whether they did.
func (s *sink) waitUntil(n int, within time.Duration) bool {
	deadline := time.Now().Add(within)
	for s.n.Load() < int64(n) {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(2 * time.Millisecond)
	}
	return true
}

// waitFor waits (bounded) until at least n lines arrived.
func (s *sink) waitFor(t *testing.T, n int, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for s.n.Load() < int64(n) {
		if time.Now().After(deadline) {
			t.Fatalf("only %d of %d lines arrived within %v; last %q", s.n.Load(), n, within, s.last().text)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func inode(t *testing.T, path string) uint64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	_, ino := fileID(fi)
	return ino
}

func appendFile(t *testing.T, path, s string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(s); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

// stepper drives a File by hand: start, then step when the test says,
// so races are placed exactly.
type stepper struct {
	t   *testing.T
	src *File
	out *sink
}

// emptyLogStepper makes an empty kern.log in a directory of the test's
// and a stepper on it.
func emptyLogStepper(t *testing.T) (*stepper, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "kern.log")
	appendFile(t, path, "")
	return newStepper(t, path, FileOptions{}), path
}

// copyLog does the copy of logrotate's copytruncate (the older copies
// shifted by one), not the truncation.
func copyLog(path string) {
	os.Rename(path+".1", path+".2")
	data, _ := os.ReadFile(path)
	os.WriteFile(path+".1", data, 0o644)
}

func newStepper(t *testing.T, path string, opts FileOptions) *stepper {
	t.Helper()
	src := NewFile(path, opts)
	if err := src.start(); err != nil {
		t.Fatalf("start: %v", err)
	}
	t.Cleanup(func() { src.cur.close(); src.old.close() })
	return &stepper{t: t, src: src, out: &sink{}}
}

func (s *stepper) step() {
	for range 8 {
		if !s.src.step(context.Background(), s.out.emit) {
			return
		}
	}
}

func (s *stepper) expect(want ...string) {
	s.t.Helper()
	s.step()
	gotLines := s.out.texts()
	s.out.mu.Lock()
	s.out.lines = nil
	s.out.mu.Unlock()
	if strings.Join(gotLines, "|") != strings.Join(want, "|") || len(gotLines) != len(want) {
		s.t.Fatalf("lines = %q, want %q", gotLines, want)
	}
}

func TestFileFreshStartAtEnd(t *testing.T) {
	cases := []struct {
		name    string
		before  string
		after   string
		want    []string
		overlon uint64
	}{
		{"old complete lines are not replayed", "old1\nold2\n", "new1\nnew2\n", []string{"new1", "new2"}, 0},
		{"an incomplete last line is being written now and is kept", "old\npart", "ial\nnew\n", []string{"partial", "new"}, 0},
		{"a file with one incomplete line", "part", "ial\n", []string{"partial"}, 0},
		{"empty file", "", "a\n", []string{"a"}, 0},
		{"incomplete last line already over the maximum is skipped", "old\n" + strings.Repeat("x", 200), "yy\nnew\n", []string{"new"}, 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "kern.log")
			appendFile(t, path, tc.before)
			s := newStepper(t, path, FileOptions{MaxLine: 100})
			s.expect()
			appendFile(t, path, tc.after)
			s.expect(tc.want...)
			if st := s.src.Stats(); st.Overlong != tc.overlon {
				t.Fatalf("overlong = %d, want %d", st.Overlong, tc.overlon)
			}
		})
	}
}

func TestFileAppearsLaterIsReadFromStart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "kern.log")
	s := newStepper(t, path, FileOptions{})
	s.expect()
	appendFile(t, path, "first\nsecond\n")
	s.expect("first", "second")
}

func TestFilePositionsAreExact(t *testing.T) {
	path := filepath.Join(t.TempDir(), "kern.log")
	appendFile(t, path, "")
	s := newStepper(t, path, FileOptions{MaxLine: 10})
	appendFile(t, path, "ab\n\n"+strings.Repeat("z", 11)+"\ncd\nef")
	s.step()
	ino := inode(t, path)
	want := []got{
		{"ab", Position{Path: path, Inode: ino, Offset: 3}},
		{"", Position{Path: path, Inode: ino, Offset: 4}},
		{"cd", Position{Path: path, Inode: ino, Offset: 19}},
	}
	s.out.mu.Lock()
	defer s.out.mu.Unlock()
	if fmt.Sprint(s.out.lines) != fmt.Sprint(want) {
		t.Fatalf("lines = %v, want %v", s.out.lines, want)
	}
	if st := s.src.Stats(); st.Overlong != 1 || st.Lines != 3 {
		t.Fatalf("stats = %+v", st)
	}
}

func TestFileRotationRaces(t *testing.T) {
	t.Run("rename and create: old file finished first, including lines written after the rename", func(t *testing.T) {
		s, path := emptyLogStepper(t)
		w, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer w.Close()
		io.WriteString(w, "1\n")
		s.expect("1")
		io.WriteString(w, "2\n3")
		if err := os.Rename(path, path+".1"); err != nil {
			t.Fatal(err)
		}
		appendFile(t, path, "") // logrotate's create
		s.expect("2")
		io.WriteString(w, "\n4\n") // the writer has not reopened yet
		s.expect("3", "4")
		w.Close()
		appendFile(t, path, "5\n") // after the reopen
		s.expect("5")
		if s.src.old != nil {
			t.Fatal("old file still open after the new one had data")
		}
		if st := s.src.Stats(); st.Rotations != 1 || st.Dropped != 0 {
			t.Fatalf("stats = %+v", st)
		}
	})
	t.Run("rename with an incomplete line that is never finished is dropped, not delivered", func(t *testing.T) {
		s, path := emptyLogStepper(t)
		appendFile(t, path, "1\nfrag")
		os.Rename(path, path+".1")
		appendFile(t, path, "2\n")
		s.expect("1", "2")
		s.expect()
		if st := s.src.Stats(); st.Dropped != 1 {
			t.Fatalf("dropped = %d, want 1", st.Dropped)
		}
	})
	t.Run("truncate and regrow past the offset between two looks is seen by the fingerprint", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "kern.log")
		appendFile(t, path, "")
		s := newStepper(t, path, FileOptions{})
		appendFile(t, path, "aaaa 1\naaaa 2\n")
		s.expect("aaaa 1", "aaaa 2")
		if err := os.Truncate(path, 0); err != nil {
			t.Fatal(err)
		}
		appendFile(t, path, "bbbbbbbb 3\nbbbbbbbb 4\nbbbbbbbb 5\n")
		s.expect("bbbbbbbb 3", "bbbbbbbb 4", "bbbbbbbb 5")
		if st := s.src.Stats(); st.Truncations != 1 {
			t.Fatalf("truncations = %d, want 1", st.Truncations)
		}
	})
	t.Run("truncate to a smaller size", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "kern.log")
		appendFile(t, path, "")
		s := newStepper(t, path, FileOptions{})
		appendFile(t, path, "a long line 1\na long line 2\n")
		s.expect("a long line 1", "a long line 2")
		os.Truncate(path, 0)
		appendFile(t, path, "x\n")
		s.expect("x")
	})
	t.Run("copytruncate: unread lines are read from the copy, then the file from 0", func(t *testing.T) {
		s, path := emptyLogStepper(t)
		appendFile(t, path, "line 1\n")
		s.expect("line 1")
		appendFile(t, path, "line 2\nline 3\nli")
		data, _ := os.ReadFile(path)
		os.WriteFile(path+".1", data, 0o644)
		os.Truncate(path, 0)
		appendFile(t, path, "ne 4 rest of a split line\nline 5 is a longer line than the others\n")
		s.expect("line 2", "line 3", "ne 4 rest of a split line", "line 5 is a longer line than the others")
		st := s.src.Stats()
		if st.Recovered != 2 || st.Truncations != 1 || st.Dropped != 1 {
			t.Fatalf("stats = %+v", st)
		}
	})
	t.Run("delete and recreate: lines written to the deleted file still arrive", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "kern.log")
		appendFile(t, path, "")
		s := newStepper(t, path, FileOptions{})
		w, _ := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
		defer w.Close()
		io.WriteString(w, "1\n")
		s.expect("1")
		os.Remove(path)
		io.WriteString(w, "2\n")
		s.expect("2")
		appendFile(t, path, "")
		io.WriteString(w, "3\n")
		s.expect("3")
		w.Close()
		appendFile(t, path, "4\n")
		s.expect("4")
	})
	t.Run("generations that held the path only between two looks are read from the siblings, in order", func(t *testing.T) {
		dir := t.TempDir()
		path := filepath.Join(dir, "kern.log")
		appendFile(t, path+".9", "an older rotation, there before the start\n")
		appendFile(t, path, "")
		s := newStepper(t, path, FileOptions{})
		appendFile(t, path, "a1\n")
		s.expect("a1")
		appendFile(t, path, "a2\n")
		// Two rotations, and the source does not look in between.
		os.Rename(path, path+".1")
		w, _ := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
		defer w.Close()
		io.WriteString(w, "b1\n")
		os.Rename(path+".1", path+".2")
		os.Rename(path, path+".1")
		appendFile(t, path, "")
		io.WriteString(w, "b2\n") // the writer has not reopened yet
		s.expect("a2", "b1", "b2")
		io.WriteString(w, "b3\n")
		s.expect("b3")
		w.Close()
		appendFile(t, path, "c1\n")
		s.expect("c1")
		if st := s.src.Stats(); st.Rotations != 2 || st.Recovered != 3 || st.Dropped != 0 {
			t.Fatalf("stats = %+v", st)
		}
	})
	t.Run("copytruncate twice between two looks: the copy of the content never seen is read whole", func(t *testing.T) {
		s, path := emptyLogStepper(t)
		copytruncate := func() {
			copyLog(path)
			os.Truncate(path, 0)
		}
		appendFile(t, path, "line 1\n")
		s.expect("line 1")
		appendFile(t, path, "line 2\n")
		copytruncate()
		appendFile(t, path, "line 3 of the epoch never seen\n")
		copytruncate()
		appendFile(t, path, "line 4\n")
		s.expect("line 2", "line 3 of the epoch never seen", "line 4")
		// Later rotations by rename do not read the copies again.
		os.Rename(path+".2", path+".3")
		os.Rename(path+".1", path+".2")
		os.Rename(path, path+".1")
		appendFile(t, path, "line 5\n")
		s.expect("line 5")
		if st := s.src.Stats(); st.Truncations != 2 || st.Recovered != 2 || st.Rotations != 1 {
			t.Fatalf("stats = %+v", st)
		}
	})
	t.Run("copytruncate seen while the next one is copying: the new copy is not read as content never seen", func(t *testing.T) {
		s, path := emptyLogStepper(t)
		appendFile(t, path, "line 1\n")
		s.expect("line 1")
		appendFile(t, path, "line 2\n")
		copyLog(path)
		os.Truncate(path, 0)
		appendFile(t, path, "line 3, after the first truncation\n")
		copyLog(path) // the second copytruncate has copied, not truncated yet
		s.expect("line 2", "line 3, after the first truncation")
		os.Truncate(path, 0)
		appendFile(t, path, "line 4\n")
		s.expect("line 4")
		if st := s.src.Stats(); st.Truncations != 2 || st.Recovered != 1 {
			t.Fatalf("stats = %+v", st)
		}
	})
	t.Run("a look overlapping the one that found the newest file: the file at the path is the newer", func(t *testing.T) {
		s, path := emptyLogStepper(t)
		appendFile(t, path, "a1\n")
		s.expect("a1")
		os.Rename(path, path+".1")
		w, _ := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
		defer w.Close()
		io.WriteString(w, "b1\n")
		// As if the look that found the current file had been preempted
		// across every look after it: every later look overlaps it.
		s.src.pathMu.Lock()
		s.src.newestFrom, s.src.newestTo = 0, 1<<62
		s.src.pathMu.Unlock()
		s.expect("b1")
		io.WriteString(w, "b2\n") // the new file is not closed as an older one
		s.expect("b2")
		if st := s.src.Stats(); st.Rotations != 1 || st.Recovered != 0 {
			t.Fatalf("stats = %+v", st)
		}
	})
	t.Run("gone for a while, then back with the same inode", func(t *testing.T) {
		s, path := emptyLogStepper(t)
		away := filepath.Join(filepath.Dir(path), "away")
		appendFile(t, path, "1\n")
		s.expect("1")
		os.Rename(path, away)
		appendFile(t, away, "2\n")
		s.expect("2")
		os.Rename(away, path)
		appendFile(t, path, "3\n")
		s.expect("3")
		if st := s.src.Stats(); st.Rotations != 0 {
			t.Fatalf("rotations = %d, want 0", st.Rotations)
		}
	})
}

func TestFileResume(t *testing.T) {
	type setup struct {
		path string
		pos  Position // after "a\nb\n"
	}
	prep := func(t *testing.T) setup {
		path := filepath.Join(t.TempDir(), "kern.log")
		appendFile(t, path, "a\nb\n")
		return setup{path, Position{Path: path, Inode: inode(t, path), Offset: 2}}
	}
	cases := []struct {
		name     string
		change   func(t *testing.T, s setup) Position
		want     []string
		recover  uint64
		truncate uint64
	}{
		{"same file: resume exactly at the saved offset", func(t *testing.T, s setup) Position {
			appendFile(t, s.path, "c\n")
			return s.pos
		}, []string{"b", "c"}, 0, 0},
		{"offset at the end: nothing replayed", func(t *testing.T, s setup) Position {
			s.pos.Offset = 4
			return s.pos
		}, nil, 0, 0},
		{"truncated while stopped: read from the start", func(t *testing.T, s setup) Position {
			os.Truncate(s.path, 0)
			appendFile(t, s.path, "x\n")
			s.pos.Offset = 4
			return s.pos
		}, []string{"x"}, 0, 1},
		{"offset not at a line start (inode reused): read from the start", func(t *testing.T, s setup) Position {
			s.pos.Offset = 1
			return s.pos
		}, []string{"a", "b"}, 0, 1},
		{"rotated to path.1 while stopped: finish it, then the new file", func(t *testing.T, s setup) Position {
			appendFile(t, s.path, "c\n")
			os.Rename(s.path, s.path+".1")
			appendFile(t, s.path, "d\n")
			return s.pos
		}, []string{"b", "c", "d"}, 2, 0},
		{"rotated to a dateext name while stopped", func(t *testing.T, s setup) Position {
			os.Rename(s.path, s.path+"-20261121")
			appendFile(t, s.path, "d\n")
			return s.pos
		}, []string{"b", "d"}, 1, 0},
		{"rotated twice while stopped: finish path.2, path.1 whole, then the new file", func(t *testing.T, s setup) Position {
			appendFile(t, s.path, "c\n")
			os.Rename(s.path, s.path+".1")
			appendFile(t, s.path, "d\n")
			os.Rename(s.path+".1", s.path+".2")
			os.Rename(s.path, s.path+".1")
			appendFile(t, s.path, "e\n")
			now := time.Now()
			os.Chtimes(s.path+".2", now.Add(-2*time.Hour), now.Add(-2*time.Hour))
			os.Chtimes(s.path+".1", now.Add(-time.Hour), now.Add(-time.Hour))
			os.WriteFile(s.path+".3", []byte("older generation, never replayed\n"), 0o644)
			os.Chtimes(s.path+".3", now.Add(-3*time.Hour), now.Add(-3*time.Hour))
			os.WriteFile(s.path+".bak", []byte("an admin's copy, never replayed\n"), 0o644)
			return s.pos
		}, []string{"b", "c", "d", "e"}, 3, 0},
		{"rotated and compressed while stopped: the new file from its start", func(t *testing.T, s setup) Position {
			os.Rename(s.path, s.path+".1.gz")
			appendFile(t, s.path, "d\n")
			return s.pos
		}, []string{"d"}, 0, 0},
		{"position saved for another path: fresh start at the end", func(t *testing.T, s setup) Position {
			s.pos.Path = "/var/log/other.log"
			return s.pos
		}, nil, 0, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := prep(t)
			pos := tc.change(t, s)
			st := newStepper(t, s.path, FileOptions{Resume: pos})
			st.expect(tc.want...)
			stats := st.src.Stats()
			if stats.Recovered != tc.recover || stats.Truncations != tc.truncate {
				t.Fatalf("stats = %+v, want recovered %d truncations %d", stats, tc.recover, tc.truncate)
			}
			appendFile(t, s.path, "after\n")
			st.expect("after")
		})
	}
}

func TestFileErrors(t *testing.T) {
	t.Run("a directory is a clear error at start", func(t *testing.T) {
		err := NewFile(t.TempDir(), FileOptions{}).Run(context.Background(), func(Line) {})
		if err == nil || !strings.Contains(err.Error(), "not a regular file") {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("Run twice is refused", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "kern.log")
		src := NewFile(path, FileOptions{})
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if err := src.Run(ctx, func(Line) {}); err != nil {
			t.Fatal(err)
		}
		if err := src.Run(ctx, func(Line) {}); err == nil {
			t.Fatal("second Run succeeded")
		}
	})
}

// TestFileOldFileFirstWhenWriterSwitchesMidRead places the writer's
// switch exactly between the last read of the rotated file and the read
// of the new one (from inside emit, after the read that hit EOF): the
// rotated file's last line must still come first.
func TestFileOldFileFirstWhenWriterSwitchesMidRead(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "kern.log")
	appendFile(t, path, "")
	src := NewFile(path, FileOptions{})
	if err := src.start(); err != nil {
		t.Fatal(err)
	}
	defer func() { src.cur.close(); src.old.close() }()
	w, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	appendFile(t, path, "") // the new, still empty, file
	for src.step(context.Background(), func(Line) {}) {
	}
	if src.old == nil {
		t.Fatal("the source did not switch to the new file")
	}
	var got []string
	switched := false
	emit := func(l Line) {
		got = append(got, string(l.Text))
		if string(l.Text) == "A" && !switched {
			switched = true
			io.WriteString(w, "B\n") // the writer's last line to the old file
			appendFile(t, path, "C\n")
		}
	}
	io.WriteString(w, "A\n")
	for range 5 {
		for src.step(context.Background(), emit) {
		}
	}
	if strings.Join(got, ",") != "A,B,C" {
		t.Fatalf("lines = %q, want A, B, C in that order", got)
	}
}

func TestRotationSuffix(t *testing.T) {
	cases := []struct {
		suffix string
		want   bool
	}{
		{".1", true}, {".0", true}, {".12", true}, {"-20261121", true}, {"-2026-11-21_10", true}, {".1.3", true},
		{".2.gz", false}, {".1.xz", false}, {".bak", false}, {".old", false}, {"-old", false},
		{".", false}, {"-", false}, {"", false}, {"1", false}, {"_1", false}, {".-", false},
	}
	for _, tc := range cases {
		t.Run(tc.suffix, func(t *testing.T) {
			if got := rotationSuffix(tc.suffix); got != tc.want {
				t.Fatalf("rotationSuffix(%q) = %v, want %v", tc.suffix, got, tc.want)
			}
		})
	}
}
