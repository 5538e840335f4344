package logsource

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nxadm/tail"
	"github.com/nxadm/tail/util"
)

// TestTailLineOffsetIsLineEnd pins what the File source relies on in
// nxadm/tail: SeekInfo.Offset is the offset just past the line's
// newline, also for a line completed after a wait (CompleteLines), and
// an empty line is a line.
func TestTailLineOffsetIsLineEnd(t *testing.T) {
	path := filepath.Join(t.TempDir(), "kern.log")
	appendFile(t, path, "skipped\nab\n\ncd\npart")
	tl, err := tail.TailFile(path, tailConfig(8))
	if err != nil {
		t.Fatal(err)
	}
	defer tl.Stop()
	next := func() *tail.Line {
		t.Helper()
		select {
		case l := <-tl.Lines:
			return l
		case <-time.After(10 * time.Second):
			t.Fatal("no line from tail")
			return nil
		}
	}
	want := []struct {
		text string
		end  int64
	}{{"ab", 11}, {"", 12}, {"cd", 15}, {"partial", 23}}
	for i, w := range want {
		if i == 3 {
			appendFile(t, path, "ial\n")
		}
		l := next()
		if l.Text != w.text || l.SeekInfo.Offset != w.end {
			t.Fatalf("line %d = %q at %d, want %q ending at %d", i, l.Text, l.SeekInfo.Offset, w.text, w.end)
		}
		if start, end := lineSpan(l); end-start != int64(len(w.text))+1 {
			t.Fatalf("span %d-%d", start, end)
		}
	}
}

// TestTailFatalDoesNotExit: util.Fatal, which nxadm/tail's polling
// watcher calls on an unexpected stat error, ends the calling goroutine
// instead of the process.
func TestTailFatalDoesNotExit(t *testing.T) {
	before := tailFatals.Load()
	done := make(chan struct{})
	go func() {
		defer close(done)
		util.Fatal("Failed to stat file %v: %v", "/var/log/kern.log", "permission denied")
		t.Error("util.Fatal returned")
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the goroutine calling util.Fatal did not end")
	}
	if tailFatals.Load() != before+1 {
		t.Fatalf("fatal calls counted %d, want %d", tailFatals.Load(), before+1)
	}
}

// TestFileSupervisorRestartsTail breaks the running tail in the ways the
// supervisor must survive, then checks that the next lines arrive once,
// in order, from the last delivered position.
func TestFileSupervisorRestartsTail(t *testing.T) {
	cases := []struct {
		name     string
		sabotage func(t *testing.T, tr *tracked, path string)
	}{
		{"tail ended", func(t *testing.T, tr *tracked, path string) {
			tr.tl.Kill(nil)
			_ = tr.tl.Wait()
		}},
		{"tail stalled: it follows a file that never grows", func(t *testing.T, tr *tracked, path string) {
			_ = tr.stopTail()
			other := filepath.Join(t.TempDir(), "other")
			appendFile(t, other, "")
			tl, err := tail.TailFile(other, tailConfig(0))
			if err != nil {
				t.Fatal(err)
			}
			tr.tl = tl
		}},
		{"tail skipped past the delivered offset", func(t *testing.T, tr *tracked, path string) {
			_ = tr.stopTail()
			tl, err := tail.TailFile(fdPath(tr.f), tailConfig(tr.off+4)) // past "2a\n" and into "2b"
			if err != nil {
				t.Fatal(err)
			}
			tr.tl = tl
		}},
		{"tail went back to the start", func(t *testing.T, tr *tracked, path string) {
			_ = tr.stopTail()
			tl, err := tail.TailFile(fdPath(tr.f), tailConfig(0))
			if err != nil {
				t.Fatal(err)
			}
			tr.tl = tl
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "kern.log")
			appendFile(t, path, "")
			s := newStepper(t, path, FileOptions{})
			s.src.stall = 200 * time.Millisecond
			s.src.wake = 0 // restarts, not wake-ups, are under test
			appendFile(t, path, "1\n")
			s.expect("1")
			if s.src.cur.tl == nil {
				t.Fatal("no tail running")
			}
			tc.sabotage(t, s.src.cur, path)
			appendFile(t, path, "2a\n2b\n")
			s.expect("2a", "2b")
			appendFile(t, path, "3\n")
			s.expect("3")
			st := s.src.Stats()
			if st.Restarts == 0 || st.Truncations != 0 {
				t.Fatalf("stats = %+v, want a restart and no truncation", st)
			}
			t.Logf("stats %+v", st)
		})
	}
}

// TestFileWakesAnIdleTail: a tail idle at the end of its file notices
// growth only on its next poll (TailPollInterval); the source, which knows
// of the new lines from its own look, starts a new tail at the last
// delivered line instead of waiting for that poll.
func TestFileWakesAnIdleTail(t *testing.T) {
	path := filepath.Join(t.TempDir(), "kern.log")
	appendFile(t, path, "")
	s := newStepper(t, path, FileOptions{})
	s.src.check = time.Hour // no other look or restart while waiting
	appendFile(t, path, "0\n")
	s.expect("0")
	for i := 1; i <= 5; i++ {
		time.Sleep(3 * TailPollInterval / 2) // the tail polls and finds nothing: idle
		appendFile(t, path, fmt.Sprintf("%d\n", i))
		s.expect(fmt.Sprint(i))
	}
	// The tail's own poll may come first once in a while (within TailWake
	// of the write: about one round in twenty), not five times in a row.
	if s.src.wakes.Load() == 0 {
		t.Fatal("the idle tail was never woken; every line waited for the tail's poll")
	}
	if st := s.src.Stats(); st.Restarts != 0 || st.Lines != 6 {
		t.Fatalf("stats = %+v", st)
	}
	t.Logf("%d of 5 lines read by a woken tail", s.src.wakes.Load())
}

// TestFileRunStaysWithTailAcrossManyRotations: ten rotations by rename
// and create, each file finished through its tail (lines written to it
// after the rename included) before the next one: every line once, every
// rotation counted, no tail needed a restart.
func TestFileRunStaysWithTailAcrossManyRotations(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "kern.log")
	appendFile(t, path, "")
	out := &sink{}
	src := NewFile(path, FileOptions{PollInterval: 20 * time.Millisecond, Resume: Position{Path: path, Inode: inode(t, path)}})
	stop := runFile(t, src, out)
	w := newLiveWriter(t, path)
	for i := range 10 {
		w.write(100)
		// Rotation as logrotate does it (rename, create, the writer
		// reopens a little later), once the source caught up: a file
		// that holds the path for less than a look is another matter.
		out.waitFor(t, len(w.want), 10*time.Second)
		mustRename(t, path, filepath.Join(dir, "kern.log."+strings.Repeat("1", i+1)))
		appendFile(t, path, "")
		w.write(20)
		w.reopen()
	}
	w.write(100)
	out.waitFor(t, len(w.want), 15*time.Second)
	time.Sleep(100 * time.Millisecond)
	stop()
	checkExactlyOnce(t, out, w.want, path)
	if st := src.Stats(); st.Rotations != 10 || st.Restarts != 0 {
		t.Fatalf("stats = %+v", st)
	}
}

// TestFileStopDoesNotCutABurst: once a line of a burst the writer wrote
// at once (a knock's eight hits) was delivered, a stop still delivers
// the rest of it: the lines were in the file before the stop, and a
// saved position inside the burst would lose the knock.
func TestFileStopDoesNotCutABurst(t *testing.T) {
	for i := range 20 {
		path := filepath.Join(t.TempDir(), "kern.log")
		appendFile(t, path, "")
		out := &sink{}
		src := NewFile(path, FileOptions{PollInterval: 20 * time.Millisecond})
		stop := runFile(t, src, out)
		waitReady(t, src)
		var burst strings.Builder
		for k := range 8 {
			fmt.Fprintf(&burst, "round %d hit %d\n", i, k)
		}
		appendFile(t, path, burst.String())
		out.waitFor(t, 1, 10*time.Second)
		stop()
		if n := out.n.Load(); n != 8 {
			t.Fatalf("round %d: %d of the 8 lines written together were delivered", i, n)
		}
	}
}

// TestFileOverlongLineIsCutBeforeTailHoldsIt: a line far longer than
// MaxLine is skipped by the supervisor (tail would hold it whole), counted
// once, and the lines around it arrive with exact positions.
func TestFileOverlongLineIsCutBeforeTailHoldsIt(t *testing.T) {
	long := strings.Repeat("x", 300<<10)
	cases := []struct {
		name   string
		writes []string
	}{
		{"written whole (tail reads it, the length check skips it)", []string{"a\n" + long + "\nb\n"}},
		{"still growing when looked at (the supervisor cuts it)", []string{"a\n" + long, long, "\nb\n"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "kern.log")
			appendFile(t, path, "")
			s := newStepper(t, path, FileOptions{MaxLine: 100})
			var want []string
			size := int64(0)
			for i, w := range tc.writes {
				appendFile(t, path, w)
				size += int64(len(w))
				if i == 0 {
					want = append(want, "a")
				}
				if i == len(tc.writes)-1 {
					want = append(want, "b")
				}
				s.step()
			}
			got := s.out.texts()
			if strings.Join(got, "|") != strings.Join(want, "|") {
				t.Fatalf("lines = %.80q, want %q", got, want)
			}
			if last := s.out.last(); last.pos.Offset != size {
				t.Fatalf("last position %d, want %d", last.pos.Offset, size)
			}
			if st := s.src.Stats(); st.Overlong != 1 || st.Lines != 2 {
				t.Fatalf("stats = %+v", st)
			}
		})
	}
}
