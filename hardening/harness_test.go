package hardening

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/knockdaemon/knock/cipher"
	"github.com/knockdaemon/knock/daemon"
	"github.com/knockdaemon/knock/internal/netnstest"
	"github.com/knockdaemon/knock/internal/testbin"
)

// env is one test's world: a work directory, a LOG prefix of its own, a
// key (alice) and the exec "firewall" that records what it is told.
type env struct {
	t       *testing.T
	id      string
	dir     string
	prefix  string // the [source] prefix; log lines carry prefix+" "
	keyPath string
	key     cipher.Key
	sport   uint16
}

func newEnv(t *testing.T) *env {
	t.Helper()
	needBinaries(t)
	e := &env{t: t, id: netnstest.RandHex(3), sport: 30000}
	e.prefix = "hk" + e.id + ":"
	e.dir = t.TempDir()
	// The user nobody (logger in the syslog tests) must reach into it.
	for _, d := range []string{filepath.Dir(e.dir), e.dir} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	e.keyPath, e.key = e.newKey("alice")
	return e
}

// newKey writes a fresh random key file (mode 0600) for user name.
func (e *env) newKey(name string) (string, cipher.Key) {
	var s [32]byte
	if _, err := rand.Read(s[:]); err != nil {
		e.t.Fatal(err)
	}
	path := filepath.Join(e.dir, name+".key")
	if err := os.WriteFile(path, []byte(base64.StdEncoding.EncodeToString(s[:])+"\n"), 0o600); err != nil {
		e.t.Fatal(err)
	}
	return path, cipher.Key{Name: name, Secret: s, Mode: cipher.Timed}
}

// cfg is what varies in a test's daemon config.
type cfg struct {
	name      string // file name (default knockdaemon.toml)
	source    string // default stdin
	path      string
	stateFile string // default dir/state.json
	backend   string // the [backend] body; default the exec recorder
	user      string // extra lines of alice's [[user]]
	users     string // further [[user]] blocks
	knock     string // extra [knock] lines
	logLevel  string // default info
	keepOpen  bool   // close_on_exit = false
}

// config writes the daemon's config and returns its path.
func (e *env) config(c cfg) string {
	if c.name == "" {
		c.name = "knockdaemon.toml"
	}
	if c.source == "" {
		c.source = "stdin"
	}
	if c.stateFile == "" {
		c.stateFile = filepath.Join(e.dir, "state.json")
	}
	if c.backend == "" {
		c.backend = e.recorder()
	}
	if c.logLevel == "" {
		c.logLevel = "info"
	}
	var b strings.Builder
	fmt.Fprintf(&b, `# hardening test %s
[daemon]
state_file = %q
control_socket = %q
close_on_exit = %t
log_format = "json"
log_output = "stderr"
log_level = %q

[source]
type = %q
`, e.t.Name(), c.stateFile, filepath.Join(e.dir, strings.TrimSuffix(c.name, ".toml")+".sock"), !c.keepOpen, c.logLevel, c.source)
	if c.path != "" {
		fmt.Fprintf(&b, "path = %q\n", c.path)
	}
	fmt.Fprintf(&b, "prefix = %q\n\n[knock]\nbase = 745\n%s\n[backend]\n%s\n", e.prefix, c.knock, c.backend)
	keyLine := fmt.Sprintf("key_file = %q", e.keyPath)
	if strings.Contains(c.user, "key_file") {
		keyLine = ""
	}
	fmt.Fprintf(&b, `
[[user]]
name = "alice"
%s
mode = "timed"
protocol = "tcp"
%s
`, keyLine, withDefault(c.user, `ports = ["22"]`+"\nmax_minutes = 60"))
	b.WriteString(c.users)
	path := filepath.Join(e.dir, c.name)
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		e.t.Fatal(err)
	}
	return path
}

func withDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// recorder returns the [backend] body of an exec backend whose script
// appends "open IP PROTO PORT MINUTES" / "close IP PROTO PORT" to fw.log,
// and fails (exit 3) while the file fail-open or fail-close exists.
func (e *env) recorder() string {
	script := filepath.Join(e.dir, "fw.sh")
	text := `#!/bin/sh
dir=$(dirname "$0")
if [ -e "$dir/fail-$1" ]; then echo "injected failure of $1" >&2; exit 3; fi
echo "$*" >> "$dir/fw.log"
`
	if err := os.WriteFile(script, []byte(text), 0o755); err != nil {
		e.t.Fatal(err)
	}
	return fmt.Sprintf("type = \"exec\"\nopen = %q\nclose = %q\n",
		script+" open %IP% %PROTO% %PORT% %MINUTES%", script+" close %IP% %PROTO% %PORT%")
}

// fwLog returns the exec firewall's record, one command a line.
func (e *env) fwLog() []string {
	b, err := os.ReadFile(filepath.Join(e.dir, "fw.log"))
	if err != nil && !os.IsNotExist(err) {
		e.t.Fatal(err)
	}
	return strings.Fields(strings.ReplaceAll(strings.TrimSpace(string(b)), " ", "_"))
}

// fwCount counts the recorded commands that start with op (open, close).
func (e *env) fwCount(op string) int {
	n := 0
	for _, l := range e.fwLog() {
		if strings.HasPrefix(l, op+"_") {
			n++
		}
	}
	return n
}

// hitLine is a kernel LOG line (syslog framing, as in kern.log) of a TCP
// SYN from src to dport under the test's prefix.
func (e *env) hitLine(src netip.Addr, sport, dport uint16) string {
	return fmt.Sprintf("Nov 21 06:00:00 host kernel: [  488.204357] %s IN=eth0 OUT= MAC=00:00:00:00:00:01:00:00:00:00:00:02:08:00 SRC=%s DST=198.18.0.1 LEN=60 TOS=0x00 PREC=0x00 TTL=64 ID=1 DF PROTO=TCP SPT=%d DPT=%d WINDOW=64240 RES=0x00 SYN URGP=0",
		e.prefix, src, sport, dport)
}

// ports encodes req with the test's key at now.
func (e *env) ports(req cipher.Request, now time.Time) [8]uint16 {
	e.t.Helper()
	p, err := cipher.Encode(e.key, req, now, 745)
	if err != nil {
		e.t.Fatal(err)
	}
	return p
}

// seqLines are the eight LOG lines of a knock for req from src, now.
func (e *env) seqLines(src netip.Addr, req cipher.Request) []string {
	var out []string
	for _, p := range e.ports(req, time.Now()) {
		e.sport++
		out = append(out, e.hitLine(src, e.sport, p))
	}
	return out
}

// proc is a running knockdaemon with its JSON log captured.
type proc = testbin.Daemon

// start runs knockdaemon -c conf run, with a pipe on its standard input
// (Feed, Stdin), and waits until it reports that it runs. environ, when
// not nil, replaces the environment.
func (e *env) start(conf string, environ []string) *proc {
	e.t.Helper()
	return e.startWith(conf, environ, nil)
}

// startWith is start with stdin, when not nil, as the daemon's standard
// input (the caller writes to its other end).
func (e *env) startWith(conf string, environ []string, stdin *os.File) *proc {
	e.t.Helper()
	o := testbin.DaemonOptions{
		Program: bins.daemon,
		Args:    []string{"-c", conf, "run"},
		Env:     environ,
		// Ready when it logs that it runs, or (at log levels above info)
		// when its control socket exists: both come after the firewall
		// setup and the state restore. A stdin source loses nothing
		// meanwhile.
		ReadyPath:    strings.TrimSuffix(conf, ".toml") + ".sock",
		ReadyTimeout: 20 * time.Second,
		StopTimeout:  20 * time.Second,
	}
	if stdin != nil {
		o.Stdin = stdin
	}
	return testbin.StartDaemon(e.t, o)
}

// vmHWM returns process pid's peak resident set size in KiB.
func vmHWM(pid int) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return -1
	}
	for _, l := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(l, "VmHWM:"); ok {
			n, _ := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(rest), " kB"))
			return n
		}
	}
	return -1
}

// cpuTime returns process pid's user+system CPU time so far (clock ticks of
// 10 ms, as Linux reports them in /proc/PID/stat).
func cpuTime(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return -1
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	if len(f) < 13 {
		return -1
	}
	ut, _ := strconv.Atoi(f[11])
	st, _ := strconv.Atoi(f[12])
	return time.Duration(ut+st) * 10 * time.Millisecond
}

// ctl runs a knockdaemon command against conf and returns its combined
// output and exit code.
func ctl(conf string, environ []string, args ...string) (string, int) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bins.daemon, append([]string{"-c", conf}, args...)...)
	cmd.Env = environ
	out, err := cmd.CombinedOutput()
	code := 0
	if err != nil {
		code = -1
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		}
	}
	return string(out), code
}

// status asks the running daemon for its status.
func status(t *testing.T, conf string) daemon.Status {
	t.Helper()
	out, code := ctl(conf, nil, "status", "--json")
	if code != 0 {
		t.Fatalf("knockdaemon status: exit %d: %s", code, out)
	}
	var st daemon.Status
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("knockdaemon status --json: %v\n%s", err, out)
	}
	return st
}

// waitLines waits until the daemon has read n lines (status counters).
func waitLines(t *testing.T, conf string, n uint64, timeout time.Duration) daemon.Status {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		st := status(t, conf)
		if st.Counters != nil && st.Counters.Lines >= n {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("daemon read %d of %d lines within %v", st.Counters.Lines, n, timeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func addr(s string) netip.Addr { return netip.MustParseAddr(s) }
