package testbin

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// fakeDaemon is a shell script that speaks like knockdaemon: a JSON
// started event, then one event per line read from standard input, and a
// clean exit on EOF. onTerm and ignoreTerm come first: a clean exit on
// SIGTERM too, or SIGTERM ignored.
const (
	onTerm     = `trap 'echo "{\"event\":\"stopped\",\"why\":\"term\"}"; exit 0' TERM`
	ignoreTerm = `trap '' TERM`
	fakeDaemon = `
echo 'not json, a banner'
echo '{"msg":"knockdaemon running","event":"started","n":1}'
while read -r line; do
	echo "{\"event\":\"got\",\"line\":\"$line\",\"n\":2}"
done
echo '{"event":"stopped","why":"eof"}'
`
)

func startFake(t *testing.T, o DaemonOptions) *Daemon {
	t.Helper()
	if _, err := os.Stat("/bin/sh"); err != nil {
		t.Skipf("no /bin/sh: %v", err)
	}
	o.Program = "/bin/sh"
	if o.Args == nil {
		o.Args = []string{"-c", onTerm + fakeDaemon}
	}
	return StartDaemon(t, o)
}

func TestDaemonFeedWaitAndStopOnEOF(t *testing.T) {
	log := filepath.Join(t.TempDir(), "daemon.log")
	// Deaf to SIGTERM: only the EOF Stop sends first ends it in time.
	d := startFake(t, DaemonOptions{LogFile: log, CleanExit: true, StopTimeout: 5 * time.Second,
		Args: []string{"-c", ignoreTerm + fakeDaemon}})
	m := d.Mark()
	if m < 2 {
		t.Fatalf("Mark after readiness = %d, want the banner and the started line", m)
	}
	d.Feed("a", "b")
	e := d.WaitEvent(m, 5*time.Second, map[string]string{"event": "got", "line": "b"})
	if e.Get("n") != "2" || e.Get("missing") != "" {
		t.Errorf("event %v: Get(n) = %q, Get(missing) = %q", e, e.Get("n"), e.Get("missing"))
	}
	if n := d.Count(map[string]string{"event": "got"}); n != 2 {
		t.Errorf("Count(got) = %d, want 2", n)
	}
	if n := len(d.Events(0, nil)); n != 3 {
		t.Errorf("Events(0, nil) has %d events, want 3 (the banner is no event)", n)
	}
	if n := len(d.Events(m+1, map[string]string{"event": "got"})); n != 1 {
		t.Errorf("Events after the first got = %d, want 1", n)
	}
	if l := d.WaitLine(0, time.Second, "banner", func(l string) bool { return strings.HasSuffix(l, "banner") }); l != "not json, a banner" {
		t.Errorf("WaitLine found %q", l)
	}
	if _, ok := d.FindEvent(d.Mark(), 100*time.Millisecond, map[string]string{"event": "never"}); ok {
		t.Error("FindEvent found an event that was never logged")
	}
	if !(Event{"line": "b"}).Match(map[string]string{"line": "a|b"}) || (Event{"line": "c"}).Match(map[string]string{"line": "a|b"}) {
		t.Error("Match does not treat a|b as either")
	}
	start := time.Now()
	d.Stop() // closes stdin first: the EOF path
	if took := time.Since(start); took > 4*time.Second {
		t.Errorf("Stop took %v: standard input was not closed", took)
	}
	if _, ok := d.FindEvent(m, time.Second, map[string]string{"event": "stopped", "why": "eof"}); !ok {
		t.Errorf("Stop did not end standard input first:\n%s", d.Text())
	}
	b, err := os.ReadFile(log)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.TrimSpace(string(b)); got != d.Text() {
		t.Errorf("log file holds\n%s\nwant the captured output\n%s", got, d.Text())
	}
}

func TestDaemonStopBySIGTERMAndOwnStdin(t *testing.T) {
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer pw.Close()
	d := startFake(t, DaemonOptions{Stdin: pr, CleanExit: true})
	pr.Close()
	if d.Stdin() != nil {
		t.Error("Stdin() is not nil with a standard input of the test's own")
	}
	fmt.Fprintln(pw, "x")
	d.WaitEvent(0, 5*time.Second, map[string]string{"event": "got", "line": "x"})
	d.Stop() // the pipe stays open: only SIGTERM ends it
	if _, ok := d.FindEvent(0, time.Second, map[string]string{"event": "stopped", "why": "term"}); !ok {
		t.Errorf("the daemon was not stopped by SIGTERM:\n%s", d.Text())
	}
}

func TestDaemonReadyPathAndKill9(t *testing.T) {
	ready := filepath.Join(t.TempDir(), "control.sock")
	// Silent, as at log level warn: only the path says it is ready.
	d := startFake(t, DaemonOptions{ReadyPath: ready, CleanExit: true, Args: []string{"-c",
		fmt.Sprintf("touch %q; exec sleep 60", ready)}})
	if d.Mark() != 0 {
		t.Fatalf("the silent daemon printed %q", d.Text())
	}
	start := time.Now()
	d.Kill9()
	if time.Since(start) > 5*time.Second {
		t.Errorf("Kill9 took %v", time.Since(start))
	}
	if _, ok := d.FindEvent(0, 5*time.Second, map[string]string{"event": "any"}); ok {
		t.Error("an event from a silent daemon")
	}
	// The cleanup's Stop must not report the kill as an unclean exit.
}
