//go:build unix

package rules

import (
	"bufio"
	"errors"
	"io"
	"strings"
	"testing"
	"time"
)

func TestExecRunnerStream(t *testing.T) {
	r := new(ExecRunner)

	// Merged: a line written comes back on Output, as does stderr, in
	// order.
	s, err := r.StartStream([]string{"sh", "-c", `read l; echo "out:$l"; echo "err:$l" >&2; cat`}, true)
	must(t, "start", err)
	if s.Pid() <= 0 || s.Errors() != nil {
		t.Fatalf("pid %d, errors %v", s.Pid(), s.Errors())
	}
	if _, err := io.WriteString(s, "hello\nagain\n"); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(s.Output())
	for _, want := range []string{"out:hello", "err:hello", "again"} {
		got, err := br.ReadString('\n')
		if err != nil || strings.TrimSpace(got) != want {
			t.Fatalf("read %q, %v; want %q", got, err, want)
		}
	}
	must(t, "close", s.Close())
	must(t, "close again", s.Close())

	// Separate standard error.
	s, err = r.StartStream([]string{"sh", "-c", `echo to-err >&2; echo to-out`}, false)
	must(t, "start", err)
	e, _ := io.ReadAll(s.Errors())
	o, _ := io.ReadAll(s.Output())
	if string(e) != "to-err\n" || string(o) != "to-out\n" {
		t.Fatalf("stderr %q, stdout %q", e, o)
	}
	must(t, "close", s.Close())

	// Kill ends a child that ignores its input; Close reports it.
	s, err = r.StartStream([]string{"sleep", "60"}, true)
	must(t, "start", err)
	start := time.Now()
	s.Kill()
	if err := s.Close(); err == nil || time.Since(start) > 5*time.Second {
		t.Fatalf("Close after Kill = %v after %v", err, time.Since(start))
	}

	// A child that does not exit when its input closes is killed by
	// Close after the grace period.
	s, err = r.StartStream([]string{"sh", "-c", "trap '' HUP; exec sleep 60"}, true)
	must(t, "start", err)
	start = time.Now()
	if err := s.Close(); err == nil || time.Since(start) > streamStopGrace+3*time.Second {
		t.Fatalf("Close of a child ignoring EOF = %v after %v", err, time.Since(start))
	}

	if _, err := r.StartStream([]string{"no-such-tool-knockdaemon"}, true); !errors.Is(err, ErrNotFound) {
		t.Fatalf("StartStream of a missing tool = %v, want ErrNotFound", err)
	}
	if _, err := r.StartStream(nil, true); err == nil {
		t.Fatal("StartStream of nothing succeeded")
	}
}
