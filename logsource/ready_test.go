package logsource

import (
	"context"
	"path/filepath"
	"testing"
	"time"
)

var (
	_ Readier = (*File)(nil)
	_ Readier = (*Kmsg)(nil)
	_ Readier = (*Journald)(nil)
)

func waitReady(t *testing.T, r Readier) {
	t.Helper()
	select {
	case <-r.Ready():
	case <-time.After(10 * time.Second):
		t.Fatal("source not ready within 10s")
	}
}

// TestFileReady: once Ready is closed, a line written once is delivered,
// whether the file existed at the start or not.
func TestFileReady(t *testing.T) {
	for _, exists := range []bool{true, false} {
		name := map[bool]string{true: "file exists", false: "file appears later"}[exists]
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "kern.log")
			if exists {
				appendFile(t, path, "old line, not replayed\n")
			}
			src := NewFile(path, FileOptions{PollInterval: 20 * time.Millisecond})
			select {
			case <-src.Ready():
				t.Fatal("ready before Run")
			default:
			}
			out := &sink{}
			runFile(t, src, out)
			waitReady(t, src)
			appendFile(t, path, "knock\n")
			out.waitFor(t, 1, 10*time.Second)
			time.Sleep(50 * time.Millisecond)
			if got := out.texts(); len(got) != 1 || got[0] != "knock" {
				t.Fatalf("lines = %q, want the one written after Ready", got)
			}
		})
	}
}

func TestJournaldReady(t *testing.T) {
	fakeJournalctl(t, "exec sleep 30\n")
	j := NewJournald(JournaldOptions{})
	j.killDelay = 100 * time.Millisecond
	stop := runJournald(t, j, &lockedLines{})
	waitReady(t, j)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
}

func TestReadyNotClosedWhenRunFails(t *testing.T) {
	src := NewFile(t.TempDir(), FileOptions{}) // a directory
	if err := src.Run(context.Background(), func(Line) {}); err == nil {
		t.Fatal("Run on a directory succeeded")
	}
	select {
	case <-src.Ready():
		t.Fatal("ready although Run failed")
	default:
	}
}
