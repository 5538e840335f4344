//go:build unix

package logsource

import (
	"context"
	"os"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestPollableBlockingPipeEndsOnCancel: a blocking pipe, as a shell hands
// to a daemon on its standard input, still lets Run end on cancel.
func TestPollableBlockingPipeEndsOnCancel(t *testing.T) {
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
		t.Fatal(err)
	}
	r := os.NewFile(uintptr(p[0]), "blocking-pipe")
	w := os.NewFile(uintptr(p[1]), "blocking-pipe-w")
	defer r.Close()
	defer w.Close()
	if err := r.SetReadDeadline(time.Time{}); err == nil {
		t.Fatal("test setup: the pipe is already pollable")
	}
	pr := pollable(r)
	if pr == r {
		t.Fatal("pollable returned the blocking pipe itself")
	}
	defer pr.Close()
	ctx, cancel := context.WithCancel(context.Background())
	lines := make(chan string, 2)
	done := make(chan error, 1)
	go func() {
		done <- NewReader(pr, "stdin").Run(ctx, func(l Line) { lines <- string(l.Text) })
	}()
	w.WriteString("knock\n")
	select {
	case l := <-lines:
		if l != "knock" {
			t.Fatalf("line = %q", l)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no line")
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run = %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run still blocked in read after cancel")
	}
}

func TestPollableLeavesRegularFiles(t *testing.T) {
	f, err := os.CreateTemp(t.TempDir(), "log")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if pollable(f) != f {
		t.Fatal("a regular file was duplicated")
	}
}
