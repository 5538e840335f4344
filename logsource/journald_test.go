package logsource

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/knockdaemon/knock/internal/netnstest"
)

// fakeJournalctl puts a shell script named journalctl first on PATH. It
// tests the supervision (restarts, backoff, stop, reaping) honestly; it
// does not test journald itself.
func fakeJournalctl(t *testing.T, script string) (state string) {
	t.Helper()
	bin := t.TempDir()
	state = t.TempDir()
	body := "#!/bin/sh\nSTATE=" + state + "\n" + script
	if err := os.WriteFile(filepath.Join(bin, "journalctl"), []byte(body), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", bin+string(os.PathListSeparator)+os.Getenv("PATH"))
	return state
}

type lockedLines struct {
	mu    sync.Mutex
	lines []string
}

func (l *lockedLines) emit(line Line) {
	l.mu.Lock()
	l.lines = append(l.lines, string(line.Text))
	l.mu.Unlock()
}

func (l *lockedLines) get() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.lines...)
}

func TestJournaldRestartsWithBackoff(t *testing.T) {
	fakeJournalctl(t, `
n=$(cat "$STATE/n" 2>/dev/null || echo 0); n=$((n+1)); echo $n > "$STATE/n"
echo "args: $*"
echo "2026-11-21T05:20:44+0000 host kernel: knock: run $n"
printf 'incomplete'
echo "failing on purpose" >&2
exit 3
`)
	j := NewJournald(JournaldOptions{MinBackoff: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond})
	var delays []time.Duration
	j.sleep = func(ctx context.Context, d time.Duration) bool {
		delays = append(delays, d)
		return len(delays) < 5
	}
	out := &lockedLines{}
	if err := j.Run(context.Background(), out.emit); err != nil {
		t.Fatal(err)
	}
	want := []time.Duration{10 * time.Millisecond, 20 * time.Millisecond, 40 * time.Millisecond, 50 * time.Millisecond, 50 * time.Millisecond}
	if len(delays) != len(want) {
		t.Fatalf("delays = %v, want %v", delays, want)
	}
	for i := range want {
		if delays[i] != want[i] {
			t.Fatalf("delays = %v, want %v", delays, want)
		}
	}
	lines := out.get()
	if len(lines) != 10 {
		t.Fatalf("lines = %q, want 2 per run for 5 runs", lines)
	}
	for i := range 5 {
		if !strings.HasPrefix(lines[2*i], "args: -k -f -o short-iso-precise -q --no-pager --since=@") {
			t.Fatalf("argv line = %q", lines[2*i])
		}
		if want := "2026-11-21T05:20:44+0000 host kernel: knock: run " + strconv.Itoa(i+1); lines[2*i+1] != want {
			t.Fatalf("line = %q, want %q", lines[2*i+1], want)
		}
	}
	st := j.Stats()
	if st.Restarts != 5 || st.Lines != 10 || st.Dropped != 5 {
		t.Fatalf("stats = %+v, want restarts 5, lines 10, dropped 5 (the incomplete last lines)", st)
	}
	if j.lastStderr != "failing on purpose" {
		t.Fatalf("stderr kept for the log = %q", j.lastStderr)
	}
}

// runJournald runs j until the returned stop is called; stop reports
// Run's result.
func runJournald(t *testing.T, j *Journald, out *lockedLines) (stop func() error) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- j.Run(ctx, out.emit) }()
	return func() error {
		cancel()
		select {
		case err := <-done:
			return err
		case <-time.After(15 * time.Second):
			t.Fatal("Run did not return after cancel")
			return nil
		}
	}
}

func waitLines(t *testing.T, out *lockedLines, n int) {
	t.Helper()
	for range 500 {
		if len(out.get()) >= n {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("lines = %q, want %d", out.get(), n)
}

func readPid(t *testing.T, state string) int {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(state, "pid"))
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	return pid
}

func TestJournaldStopKillsAndReaps(t *testing.T) {
	cases := []struct {
		name   string
		script string
	}{
		{"child that exits on SIGTERM", `echo $$ > "$STATE/pid"; echo line; exec sleep 600`},
		{"child that ignores SIGTERM is killed", `trap '' TERM; echo $$ > "$STATE/pid"; echo line; exec sleep 600`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			state := fakeJournalctl(t, tc.script)
			j := NewJournald(JournaldOptions{})
			j.killDelay = 200 * time.Millisecond
			out := &lockedLines{}
			stop := runJournald(t, j, out)
			waitLines(t, out, 1)
			pid := readPid(t, state)
			if err := stop(); err != nil {
				t.Fatalf("Run = %v", err)
			}
			// Reaped: no /proc entry, not even a zombie.
			if _, err := os.Stat("/proc/" + strconv.Itoa(pid)); !os.IsNotExist(err) {
				st, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
				t.Fatalf("child %d still exists after Run returned: %s", pid, st)
			}
			if st := j.Stats(); st.Restarts != 0 {
				t.Fatalf("restarts = %d on a clean stop", st.Restarts)
			}
		})
	}
}

func TestJournaldCommandMissing(t *testing.T) {
	j := NewJournald(JournaldOptions{Command: "knocktest-no-such-journalctl"})
	err := j.Run(context.Background(), func(Line) {})
	if err == nil || !strings.Contains(err.Error(), "knocktest-no-such-journalctl") {
		t.Fatalf("err = %v", err)
	}
}

// TestJournaldRealJournalctlAcceptsArgs runs the real journalctl with the
// default arguments: it must stay up (an unknown option would make it
// exit at once and be restarted) and stop cleanly. Whether journald
// delivers kernel lines is not tested here: it needs a running journald.
func TestJournaldRealJournalctlAcceptsArgs(t *testing.T) {
	if _, err := exec.LookPath("journalctl"); err != nil {
		netnstest.Unavailable(t, "journalctl not installed")
	}
	j := NewJournald(JournaldOptions{MinBackoff: time.Millisecond})
	out := &lockedLines{}
	stop := runJournald(t, j, out)
	time.Sleep(500 * time.Millisecond)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if st := j.Stats(); st.Restarts != 0 {
		t.Fatalf("journalctl %v exited by itself %d times (stderr %q)", DefaultJournaldArgs, st.Restarts, j.lastStderr)
	}
}

func TestJournaldBackoffResetsAfterStableRun(t *testing.T) {
	fakeJournalctl(t, "echo line; exit 1\n")
	j := NewJournald(JournaldOptions{MinBackoff: 10 * time.Millisecond, MaxBackoff: time.Second})
	j.stableRun = 0 // every run counts as long enough
	var delays []time.Duration
	j.sleep = func(ctx context.Context, d time.Duration) bool {
		delays = append(delays, d)
		return len(delays) < 3
	}
	if err := j.Run(context.Background(), func(Line) {}); err != nil {
		t.Fatal(err)
	}
	for _, d := range delays {
		if d != 10*time.Millisecond {
			t.Fatalf("delays = %v, want the minimum after every stable run", delays)
		}
	}
}

func TestParseJournalStamp(t *testing.T) {
	at := time.Date(2026, 11, 21, 8, 43, 17, 426555000, time.UTC).UnixMicro()
	cases := []struct {
		name string
		line string
		want int64
		ok   bool
	}{
		{"short-iso-precise, systemd 252", "2026-11-21T08:43:17.426555+0000 vm kernel: x", at, true},
		{"colon in the zone", "2026-11-21T08:43:17.426555+00:00 vm kernel: x", at, true},
		{"Z", "2026-11-21T08:43:17.426555Z vm kernel: x", at, true},
		{"zone east of UTC", "2026-11-21T09:43:17.426555+0100 vm kernel: x", at, true},
		{"zone west of UTC", "2026-11-21T03:13:17.426555-05:30 vm kernel: x", at, true},
		{"short-iso, whole seconds", "2026-11-21T08:43:17+0000 vm kernel: x", at - 426555, true},
		{"milliseconds", "2026-11-21T08:43:17.426+0000 vm kernel: x", at - 555, true},
		{"nanoseconds are cut to microseconds", "2026-11-21T08:43:17.426555999+0000 x", at, true},
		{"stamp alone", "2026-11-21T08:43:17.426555+0000", at, true},
		{"short format", "Nov 21 08:43:17 vm kernel: x", 0, false},
		{"no zone", "2026-11-21T08:43:17.426555 vm kernel: x", 0, false},
		{"empty fraction", "2026-11-21T08:43:17.+0000 vm kernel: x", 0, false},
		{"month 13", "2026-13-21T08:43:17.426555+0000 x", 0, false},
		{"hour 24", "2026-11-21T24:43:17.426555+0000 x", 0, false},
		{"letter in the year", "20x6-11-21T08:43:17.426555+0000 x", 0, false},
		{"zone cut short", "2026-11-21T08:43:17.426555+00", 0, false},
		{"zone followed by text", "2026-11-21T08:43:17.426555+0000x", 0, false},
		{"empty", "", 0, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := parseJournalStamp([]byte(tc.line))
			if ok != tc.ok || (ok && got != tc.want) {
				t.Fatalf("parseJournalStamp(%q) = %d, %v; want %d, %v", tc.line, got, ok, tc.want, tc.ok)
			}
		})
	}
	if n := testing.AllocsPerRun(100, func() { parseJournalStamp([]byte(cases[0].line)) }); n != 0 {
		t.Errorf("parseJournalStamp allocates %v times", n)
	}
}

// TestJournaldResumesAfterLastLine: a fake journalctl that shows what a
// real one would from --since on. The second run starts at the stamp of
// the last line delivered; the lines of that microsecond already
// delivered are skipped once, a new line of the same microsecond is not.
func TestJournaldResumesAfterLastLine(t *testing.T) {
	state := fakeJournalctl(t, `
n=$(cat "$STATE/n" 2>/dev/null || echo 0); n=$((n+1)); echo $n > "$STATE/n"
for a; do case $a in --since=*) echo "$a" >> "$STATE/since";; esac; done
if [ $n = 1 ]; then
  echo "2026-11-21T08:43:17.000001+0000 vm kernel: a"
  echo "2026-11-21T08:43:17.000002+0000 vm kernel: b"
  echo "2026-11-21T08:43:17.000002+0000 vm kernel: c"
  exit 1
fi
echo "2026-11-21T08:43:17.000002+0000 vm kernel: b"
echo "2026-11-21T08:43:17.000002+0000 vm kernel: c"
echo "2026-11-21T08:43:17.000002+0000 vm kernel: d"
echo "2026-11-21T08:43:17.000002+0000 vm kernel: b"
echo "2026-11-21T08:43:18.000000+0000 vm kernel: e"
exit 1
`)
	j := NewJournald(JournaldOptions{})
	runs := 0
	j.sleep = func(context.Context, time.Duration) bool { runs++; return runs < 2 }
	out := &lockedLines{}
	start := time.Now()
	if err := j.Run(context.Background(), out.emit); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, l := range out.get() {
		got = append(got, l[len(l)-1:])
	}
	// The second b is new: only one b of that microsecond was delivered.
	if want := []string{"a", "b", "c", "d", "b", "e"}; !slices.Equal(got, want) {
		t.Fatalf("delivered %q, want %q", got, want)
	}
	b, err := os.ReadFile(filepath.Join(state, "since"))
	if err != nil {
		t.Fatal(err)
	}
	since := strings.Fields(string(b))
	if len(since) != 2 {
		t.Fatalf("--since arguments %q, want one per run", since)
	}
	first, err := strconv.ParseFloat(strings.TrimPrefix(since[0], "--since=@"), 64)
	if err != nil || first < float64(start.Unix())-1 || first > float64(time.Now().Unix())+1 {
		t.Errorf("first run %s, want the time Run began (%v)", since[0], start)
	}
	if want := "--since=@" + strconv.FormatInt(time.Date(2026, 11, 21, 8, 43, 17, 0, time.UTC).Unix(), 10) + ".000002"; since[1] != want {
		t.Errorf("second run %s, want %s (the last line delivered)", since[1], want)
	}
	if st := j.Stats(); st.Lines != 6 || st.Restarts != 2 {
		t.Errorf("stats = %+v, want 6 lines (skipped ones not counted), 2 restarts", st)
	}
}
