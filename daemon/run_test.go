package daemon

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/knockdaemon/knock/cipher"
	"github.com/knockdaemon/knock/internal/clock"
	"github.com/knockdaemon/knock/logsource"
)

// TestStateUnwritable: with the state file's directory unusable (here: a
// regular file where the directory should be; root ignores mode bits) the
// daemon says so loudly and keeps opening and closing on time from memory.
func TestStateUnwritable(t *testing.T) {
	notDir := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(notDir, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, notDir, nil, nil)
	h.knock(h.keys[alice], "203.0.113.9", cipher.Request{Port: 22, Time: 2})
	h.wantOpen("203.0.113.9 tcp/22")
	if h.log.count("level=ERROR", "state file") == 0 {
		t.Errorf("the failing state file was not logged as an error:\n%s", h.log)
	}
	if !h.d.Status().StateWriteFailing {
		t.Error("status does not report the failing state file")
	}
	h.clk.Advance(2 * time.Minute)
	h.wantOpen()
}

// TestCorruptStateFile: a state file that cannot be trusted is moved aside
// and the daemon starts, reconciling from the firewall.
func TestCorruptStateFile(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "state.json"), []byte(`{"version":1,"grants":[{"addr":`), 0o600); err != nil {
		t.Fatal(err)
	}
	be := newFakeBackend()
	_ = be.Open(context.Background(), rulesOpening("192.0.2.66", "tcp", 22))
	h := newHarness(t, dir, be, nil)
	h.wantOpen() // reconciled away: no grant explains it
	if _, err := os.Stat(filepath.Join(dir, "state.json.corrupt")); err != nil {
		t.Errorf("corrupt file not kept aside: %v", err)
	}
	if h.log.count("level=ERROR", "state file unreadable") != 1 {
		t.Errorf("no error logged:\n%s", h.log)
	}
}

// TestFileSourceResumes runs the daemon twice on a real log file: lines
// written while it was stopped are read after the restart (a knock sent
// then opens), and lines read before the stop are not read again.
func TestFileSourceResumes(t *testing.T) {
	dir := t.TempDir()
	logPath := filepath.Join(dir, "kern.log")
	if err := os.WriteFile(logPath, []byte("Nov 21 06:00:00 host kernel: booting\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c := loadTestConfig(t, dir, "")
	c.Source.Type, c.Source.Path = "file", logPath
	be := newFakeBackend()
	keys := testKeys()
	clk := clock.Real{}

	start := func() (*Daemon, *logBuf, func()) {
		var lb logBuf
		d, err := New(Options{Config: c, Keys: keys, Backend: be, Clock: clk,
			Logger:           slog.New(slog.NewTextHandler(&lb, nil)),
			PositionInterval: 20 * time.Millisecond,
			OpenSource: func(resume logsource.Position) (logsource.Source, error) {
				return OpenSource(c.Source, resume, nil, nil)
			}})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- d.Run(ctx) }()
		return d, &lb, func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Run: %v", err)
				}
			case <-time.After(20 * time.Second):
				t.Fatal("daemon did not stop")
			}
		}
	}
	appendLines := func(lines []string) {
		f, err := os.OpenFile(logPath, os.O_APPEND|os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.WriteString(strings.Join(lines, "\n") + "\n"); err != nil {
			t.Fatal(err)
		}
		f.Close()
	}
	seq := func(src string, minutes uint8) []string {
		h := &harness{t: t, clk: clock.NewFake(time.Now()), keys: keys, sport: 40000}
		return h.sequence(keys[alice], src, cipher.Request{Port: 22, Time: minutes})
	}

	_, _, stop := start()
	time.Sleep(200 * time.Millisecond) // the file source starts at the end
	appendLines(seq("203.0.113.1", 5))
	waitUntil(t, "the first knock", func() bool { return len(be.openings()) == 1 })
	c.Daemon.CloseOnExit = false
	stop()

	// While the daemon is down, a second knock reaches the log.
	appendLines(seq("203.0.113.2", 6))
	d2, lb2, stop2 := start()
	defer func() {
		if t.Failed() {
			st, _ := os.ReadFile(c.Daemon.StateFile)
			t.Logf("state:\n%s\nlog:\n%s", st, lb2)
		}
	}()
	waitUntil(t, "the knock logged while stopped", func() bool { return len(be.openings()) == 2 })
	time.Sleep(100 * time.Millisecond)
	if got := d2.ctr.lines.Load(); got != 8 {
		t.Errorf("restart read %d lines, want exactly the 8 written while stopped", got)
	}
	if n := lb2.count("event=rejected"); n != 0 {
		t.Errorf("old lines were read again (%d rejections):\n%s", n, lb2)
	}
	stop2()
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for i := 0; i < 1000; i++ {
		if cond() {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s", what)
}

type failingSetup struct{ *fakeBackend }

func (failingSetup) Setup(context.Context) error {
	return errors.New("iptables: Permission denied (you must be root)")
}

func TestRunSetupFails(t *testing.T) {
	dir := t.TempDir()
	c := loadTestConfig(t, dir, "")
	d, err := New(Options{Config: c, Keys: testKeys(), Backend: failingSetup{newFakeBackend()}, Source: nullSource{}, NoControl: true})
	if err != nil {
		t.Fatal(err)
	}
	err = d.Run(context.Background())
	var fe *FirewallError
	if !errors.As(err, &fe) || fe.Op != "setup" || !strings.Contains(err.Error(), "Permission denied") {
		t.Errorf("Run = %v, want a *FirewallError for setup", err)
	}
}

func TestNewerStateFileRefused(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "state.json")
	newer := []byte(`{"version": 99, "grants": [], "something_new": true}` + "\n")
	if err := os.WriteFile(path, newer, 0o600); err != nil {
		t.Fatal(err)
	}
	c := loadTestConfig(t, dir, "")
	be := newFakeBackend()
	d, err := New(Options{Config: c, Keys: testKeys(), Backend: be, Source: nullSource{}, NoControl: true})
	if err != nil {
		t.Fatal(err)
	}
	err = d.Run(context.Background())
	if err == nil || !strings.Contains(err.Error(), "version 99") {
		t.Fatalf("Run = %v, want the version refused", err)
	}
	if got, _ := os.ReadFile(path); string(got) != string(newer) {
		t.Errorf("a newer daemon's state file was rewritten:\n%s", got)
	}
	if be.opens != 0 {
		t.Error("the firewall was touched")
	}
}
