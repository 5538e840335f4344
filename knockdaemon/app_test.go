package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/knockdaemon/knock/cipher"
	"github.com/knockdaemon/knock/config"
	"github.com/knockdaemon/knock/daemon"
	"github.com/knockdaemon/knock/grant"
	"github.com/knockdaemon/knock/state"
)

// syncBuf is a bytes.Buffer safe for a writer and a reader at once.
type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

type result struct {
	code           int
	stdout, stderr string
}

func runApp(t *testing.T, stdin io.Reader, args ...string) result {
	t.Helper()
	if stdin == nil {
		stdin = strings.NewReader("")
	}
	var out, errb syncBuf
	code := run(append([]string{"knockdaemon"}, args...), stdin, &out, &errb)
	return result{code, out.String(), errb.String()}
}

// setup writes a config with one user and its key into a temp dir.
func setup(t *testing.T, extra string) (dir, cfgPath string, key cipher.Key) {
	t.Helper()
	dir = t.TempDir()
	keyPath := filepath.Join(dir, "alice.key")
	if err := cipher.KeyGen(keyPath); err != nil {
		t.Fatal(err)
	}
	secret, err := cipher.LoadKeyFile(keyPath)
	if err != nil {
		t.Fatal(err)
	}
	cfgPath = filepath.Join(dir, "knock.toml")
	doc := fmt.Sprintf(`[daemon]
state_file = "%[1]s/state.json"
control_socket = "%[1]s/control.sock"
[source]
type = "stdin"
[[user]]
name = "alice"
key_file = "%[1]s/alice.key"
ports = ["22"]
%[2]s`, dir, extra)
	if err := os.WriteFile(cfgPath, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	return dir, cfgPath, cipher.Key{Name: "alice", Secret: secret, Mode: cipher.Timed}
}

func TestErrors(t *testing.T) {
	dir, cfgPath, _ := setup(t, "")
	bad := filepath.Join(dir, "bad.toml")
	if err := os.WriteFile(bad, []byte("[knock]\nbase = 70000\n[[user]]\nname = \"a\"\nkey_file = \"/k\"\nports = [\"22\"]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	unknown := filepath.Join(dir, "unknown.toml")
	if err := os.WriteFile(unknown, []byte("[daemon]\n\nstate_fil = \"x\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	world := filepath.Join(dir, "world.toml")
	worldKey := filepath.Join(dir, "world.key")
	data, _ := os.ReadFile(filepath.Join(dir, "alice.key"))
	if err := os.WriteFile(worldKey, data, 0o644); err != nil {
		t.Fatal(err)
	}
	os.Chmod(worldKey, 0o644)
	cfgData, _ := os.ReadFile(cfgPath)
	if err := os.WriteFile(world, bytes.ReplaceAll(cfgData, []byte("alice.key"), []byte("world.key")), 0o600); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name     string
		args     []string
		code     int
		stderr   []string
		noStdout bool
	}{
		{"missing config", []string{"-c", filepath.Join(dir, "none.toml"), "check"}, exitConfig,
			[]string{"knockdaemon: config: open ", "no such file", "hint: create it"}, true},
		{"config value out of range names file and line", []string{"-c", bad, "check"}, exitConfig,
			[]string{"knockdaemon: " + bad + ":2: knock.base 70000"}, true},
		{"unknown key names file and line", []string{"-c", unknown, "run"}, exitConfig,
			[]string{"knockdaemon: " + unknown + ":3: unknown key \"daemon.state_fil\""}, true},
		{"world-readable key file", []string{"-c", world, "check"}, exitConfig,
			[]string{"world.key has mode 0644", "hint: chmod 600 " + worldKey}, false},
		{"unknown flag", []string{"-c", cfgPath, "--bogus"}, exitUsage, []string{"knockdaemon: flag provided but not defined"}, false},
		{"unknown command", []string{"-c", cfgPath, "frobnicate"}, exitUsage, []string{`unknown command "frobnicate"`}, true},
		{"bad --source", []string{"-c", cfgPath, "--source", "pcap", "check"}, exitUsage, []string{`--source "pcap"`}, true},
		{"revoke without address", []string{"-c", cfgPath, "revoke"}, exitUsage, []string{"revoke: want ADDR [PORT]"}, true},
		{"revoke with a bad address", []string{"-c", cfgPath, "revoke", "example.com"}, exitUsage, []string{`"example.com" is not an IP address`}, true},
		{"revoke with a bad port", []string{"-c", cfgPath, "revoke", "192.0.2.1", "0"}, exitUsage, []string{`"0" is not a port`}, true},
		{"keygen without file", []string{"keygen"}, exitUsage, []string{"keygen: want exactly one FILE"}, true},
		{"keygen refuses to overwrite", []string{"keygen", filepath.Join(dir, "alice.key")}, exitRuntime, []string{"already exists"}, true},
		{"unreadable log file", []string{"-c", cfgPath, "--source", "file", "--path", filepath.Join(dir, "no.log"), "check"}, exitRuntime,
			[]string{"log source file " + filepath.Join(dir, "no.log") + " is not readable", "hint: "}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := runApp(t, nil, tc.args...)
			if r.code != tc.code {
				t.Errorf("exit %d, want %d\nstderr: %s", r.code, tc.code, r.stderr)
			}
			for _, s := range tc.stderr {
				if !strings.Contains(r.stderr, s) {
					t.Errorf("stderr %q does not contain %q", r.stderr, s)
				}
			}
			for _, line := range strings.Split(strings.TrimSpace(r.stderr), "\n") {
				if !strings.HasPrefix(line, "knockdaemon: ") && !strings.HasPrefix(line, "hint: ") && !strings.HasPrefix(line, "Incorrect Usage") {
					t.Errorf("stderr line %q has neither the program prefix nor hint:", line)
				}
			}
			if tc.noStdout && r.stdout != "" {
				t.Errorf("stdout = %q, want nothing", r.stdout)
			}
		})
	}
}

func TestCheckDoors(t *testing.T) {
	_, good, _ := setup(t, `
[[door]]
name          = "wake"
sequence      = "4000:udp,3000:udp"
start_command = "/bin/true %IP%"
`)
	r := runApp(t, nil, "-c", good, "--source", "stdin", "check")
	if !strings.Contains(r.stdout, "1 doors") || !strings.Contains(r.stdout, "doors: ok (1)") {
		t.Errorf("check output lacks the doors:\n%s\n%s", r.stdout, r.stderr)
	}
	_, bad, _ := setup(t, `
[[door]]
name          = "openHTTPS"
sequence      = "12345,54321,24680,13579"
start_command = "/usr/local/sbin/knock_add-missing -i -c INPUT -p tcp -d 443 -f %IP%"
`)
	r = runApp(t, nil, "-c", bad, "check")
	if r.code != exitConfig || !strings.Contains(r.stderr, `knockdaemon: door "openHTTPS": start_command: stat /usr/local/sbin/knock_add-missing`) ||
		!strings.Contains(r.stderr, "hint: ") {
		t.Errorf("exit %d, stderr:\n%s", r.code, r.stderr)
	}
}

func TestCheckMissingFirewallBinary(t *testing.T) {
	tests := []struct {
		name, backend, want string
	}{
		// ipfw is FreeBSD's: never installed on the Linux test hosts.
		{"ipfw on linux", "[backend]\ntype = \"ipfw\"\n", "firewall backend ipfw is not usable"},
		{"exec command missing", "[backend]\ntype = \"exec\"\nopen = \"/nonexistent/fw-open %IP%\"\nclose = \"/nonexistent/fw-close %IP%\"\n",
			"firewall backend exec is not usable"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, cfgPath, _ := setup(t, tc.backend)
			r := runApp(t, nil, "-c", cfgPath, "check")
			if r.code != exitFirewall {
				t.Fatalf("exit %d, want %d\nstdout: %s\nstderr: %s", r.code, exitFirewall, r.stdout, r.stderr)
			}
			if !strings.Contains(r.stderr, "knockdaemon: "+tc.want) || !strings.Contains(r.stderr, "\nhint: ") {
				t.Errorf("stderr = %q", r.stderr)
			}
			for _, line := range strings.Split(strings.TrimSpace(r.stderr), "\n") {
				if !strings.HasPrefix(line, "knockdaemon: ") && !strings.HasPrefix(line, "hint: ") {
					t.Errorf("stderr line %q has neither the program prefix nor hint:", line)
				}
			}
			if !strings.Contains(r.stdout, "keys: ok") {
				t.Errorf("config and keys were not reported ok first: %q", r.stdout)
			}
			// The same refusal stops run before anything is set up.
			r = runApp(t, nil, "-c", cfgPath, "run")
			if r.code != exitFirewall {
				t.Errorf("run: exit %d, want %d: %s", r.code, exitFirewall, r.stderr)
			}
		})
	}
}

func TestKeygen(t *testing.T) {
	p := filepath.Join(t.TempDir(), "new.key")
	r := runApp(t, nil, "keygen", p)
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600", fi.Mode().Perm())
	}
	if _, err := cipher.LoadKeyFile(p); err != nil {
		t.Errorf("written key does not load: %v", err)
	}
}

func TestVersion(t *testing.T) {
	r := runApp(t, nil, "--version")
	if r.code != 0 || !strings.HasPrefix(r.stdout, "knockdaemon ") || !strings.Contains(r.stdout, "go1.") {
		t.Errorf("--version: %d %q", r.code, r.stdout)
	}
	r = runApp(t, nil, "--help")
	if !strings.Contains(r.stdout, "EXIT STATUS") || !strings.Contains(r.stdout, "4  firewall error") {
		t.Errorf("--help does not document the exit codes:\n%s", r.stdout)
	}
}

func knockLines(t *testing.T, k cipher.Key, src string, port uint16, minutes uint8) string {
	t.Helper()
	ports, err := cipher.Encode(k, cipher.Request{Port: port, Time: minutes}, time.Now(), 745)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for i, p := range ports {
		fmt.Fprintf(&b, "Nov 21 06:00:00 host kernel: [  488.2] knock: IN=eth0 OUT= MAC=00:00:00:00:00:01:00:00:00:00:00:02:08:00 SRC=%s DST=192.0.2.1 LEN=60 TOS=0x00 PREC=0x00 TTL=64 ID=1 DF PROTO=TCP SPT=%d DPT=%d WINDOW=64240 RES=0x00 SYN URGP=0\n",
			src, 41000+i, p)
	}
	return b.String()
}

// pipe is a real pipe, as standard input is: its reads can be interrupted.
func pipe(t *testing.T) (*os.File, *os.File) {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close(); w.Close() })
	return r, w
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for i := 0; i < 500; i++ {
		if cond() {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s", what)
}

// TestRunDryRun runs the daemon in-process on a stdin pipe with the dry-run
// backend: a knock is accepted and the iptables command printed; status
// answers from the running daemon over the control socket; a SIGHUP with a
// broken config is refused and the daemon keeps its grant; SIGTERM closes
// every opening and stops with exit 0.
func TestRunDryRun(t *testing.T) {
	dir, cfgPath, key := setup(t, "")
	pr, pw := pipe(t)
	var out, errb syncBuf
	sigs := make(chan os.Signal, 1)
	e := &env{stdin: pr, stdout: &out, stderr: &errb, signals: sigs}
	done := make(chan int, 1)
	go func() { done <- e.main([]string{"knockdaemon", "-c", cfgPath, "--dry-run"}) }()

	if _, err := io.WriteString(pw, knockLines(t, key, "198.51.100.7", 22, 10)); err != nil {
		t.Fatal(err)
	}
	const rule = "iptables -w -A KNOCKDAEMON -s 198.51.100.7 -p tcp -m tcp --dport 22"
	waitFor(t, "the dry-run open", func() bool { return strings.Contains(out.String(), rule) })

	// The dry run uses its own temporary state and socket: the real ones
	// are untouched.
	if _, err := os.Stat(filepath.Join(dir, "state.json")); !os.IsNotExist(err) {
		t.Errorf("dry run wrote the real state file: %v", err)
	}

	good, err := os.ReadFile(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cfgPath, []byte("[daemon\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	sigs <- syscall.SIGHUP
	waitFor(t, "the refused reload", func() bool { return strings.Contains(errb.String(), "reload refused") })

	// A valid new config (port 2222 added) is taken without dropping the
	// grant: the old opening is still closed at exit below.
	if err := os.WriteFile(cfgPath, []byte(strings.Replace(string(good), `ports = ["22"]`, `ports = ["22", "2222"]`, 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	sigs <- syscall.SIGHUP
	waitFor(t, "the reload", func() bool { return strings.Contains(errb.String(), "configuration reloaded") })
	if _, err := io.WriteString(pw, knockLines(t, key, "198.51.100.8", 2222, 10)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "an open allowed only by the new config", func() bool {
		return strings.Contains(out.String(), "iptables -w -A KNOCKDAEMON -s 198.51.100.8 -p tcp -m tcp --dport 2222")
	})

	sigs <- syscall.SIGTERM
	select {
	case code := <-done:
		if code != 0 {
			t.Fatalf("exit %d\n%s", code, errb.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatal("daemon did not stop on SIGTERM")
	}
	if !strings.Contains(out.String(), "iptables -w -D KNOCKDAEMON -s 198.51.100.7 -p tcp -m tcp --dport 22") {
		t.Errorf("close_on_exit did not close the opening:\n%s", out.String())
	}
	if !strings.Contains(errb.String(), "event=accepted") || !strings.Contains(errb.String(), "event=opened") {
		t.Errorf("log lacks accepted/opened:\n%s", errb.String())
	}
}

// TestStatusAndRevoke runs a real daemon (exec backend writing to a file)
// and uses status and revoke through the control socket, then again from
// the state file after it stopped.
func TestStatusAndRevoke(t *testing.T) {
	dir, cfgPath, key := setup(t, "")
	fw := filepath.Join(dir, "fw.log")
	script := filepath.Join(dir, "fw.sh")
	if err := os.WriteFile(script, []byte("#!/bin/sh\necho \"$@\" >> "+fw+"\n"), 0o700); err != nil {
		t.Fatal(err)
	}
	cfgData, _ := os.ReadFile(cfgPath)
	cfgData = append(cfgData, []byte(fmt.Sprintf("[backend]\ntype = \"exec\"\nopen = \"%[1]s open %%IP%% %%PROTO%% %%PORT%%\"\nclose = \"%[1]s close %%IP%% %%PROTO%% %%PORT%%\"\n[daemon]\nclose_on_exit = false\n", script))...)
	// [daemon] appears twice now: rewrite it properly instead.
	doc := strings.Replace(string(cfgData), "[daemon]\nclose_on_exit = false\n", "", 1)
	doc = strings.Replace(doc, "[daemon]\n", "[daemon]\nclose_on_exit = false\n", 1)
	if err := os.WriteFile(cfgPath, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}

	pr, pw := pipe(t)
	var out, errb syncBuf
	sigs := make(chan os.Signal, 1)
	e := &env{stdin: pr, stdout: &out, stderr: &errb, signals: sigs}
	done := make(chan int, 1)
	go func() { done <- e.main([]string{"knockdaemon", "-c", cfgPath}) }()
	defer func() {
		if t.Failed() {
			t.Logf("daemon log:\n%s", errb.String())
		}
	}()
	io.WriteString(pw, knockLines(t, key, "198.51.100.7", 22, 10))
	waitFor(t, "the open", func() bool { b, _ := os.ReadFile(fw); return strings.Contains(string(b), "open 198.51.100.7 tcp 22") })

	r := runApp(t, nil, "-c", cfgPath, "status", "--json")
	var st daemon.Status
	if err := json.Unmarshal([]byte(r.stdout), &st); err != nil {
		t.Fatalf("status --json: %v\n%s%s", err, r.stdout, r.stderr)
	}
	if st.From != "daemon" || len(st.Grants) != 1 || st.Grants[0].Remaining < 590 || st.Counters.Accepted != 1 {
		t.Errorf("status = %+v", st)
	}
	r = runApp(t, nil, "-c", cfgPath, "status")
	if !strings.Contains(r.stdout, "from: the running daemon") || !strings.Contains(r.stdout, "198.51.100.7") {
		t.Errorf("status:\n%s", r.stdout)
	}
	io.WriteString(pw, knockLines(t, key, "198.51.100.8", 22, 11)) // another block: the same one from another source is a replay
	waitFor(t, "the second open", func() bool { b, _ := os.ReadFile(fw); return strings.Contains(string(b), "open 198.51.100.8 tcp 22") })
	r = runApp(t, nil, "-c", cfgPath, "revoke", "198.51.100.7", "22")
	if r.code != 0 || !strings.Contains(r.stdout, "closed 198.51.100.7 tcp/22") {
		t.Errorf("revoke via the daemon: %d %q %q", r.code, r.stdout, r.stderr)
	}

	fwBefore, _ := os.ReadFile(fw)
	r = runApp(t, nil, "-c", cfgPath, "run")
	if r.code != exitRuntime || !strings.Contains(r.stderr, "another knockdaemon is running") {
		t.Errorf("second daemon: %d %q", r.code, r.stderr)
	}
	if fwAfter, _ := os.ReadFile(fw); !bytes.Equal(fwBefore, fwAfter) {
		t.Errorf("a refused second daemon touched the firewall:\n%s", fwAfter[len(fwBefore):])
	}

	r = runApp(t, nil, "-c", cfgPath, "teardown")
	if r.code != exitUsage || !strings.Contains(r.stderr, "the daemon is running") {
		t.Errorf("teardown while running: %d %q", r.code, r.stderr)
	}

	sigs <- syscall.SIGTERM
	if code := <-done; code != 0 {
		t.Fatalf("exit %d\n%s", code, errb.String())
	}
	if _, err := os.Stat(filepath.Join(dir, "control.sock")); !os.IsNotExist(err) {
		t.Errorf("control socket left behind: %v", err)
	}
	// close_on_exit = false: the second grant survives in the state file.
	r = runApp(t, nil, "-c", cfgPath, "status")
	if !strings.Contains(r.stdout, "from: the state file") || !strings.Contains(r.stdout, "198.51.100.8") || strings.Contains(r.stdout, "198.51.100.7") {
		t.Errorf("status from the state file:\n%s%s", r.stdout, r.stderr)
	}
	r = runApp(t, nil, "-c", cfgPath, "revoke", "198.51.100.8")
	if r.code != 0 || !strings.Contains(r.stdout, "closed 198.51.100.8 tcp/22") {
		t.Errorf("revoke without the daemon: %d %q %q", r.code, r.stdout, r.stderr)
	}
	b, _ := os.ReadFile(fw)
	if !strings.Contains(string(b), "close 198.51.100.8 tcp 22") {
		t.Errorf("the backend was not asked to close:\n%s", b)
	}
	r = runApp(t, nil, "-c", cfgPath, "status", "--json")
	st = daemon.Status{}
	if err := json.Unmarshal([]byte(r.stdout), &st); err != nil || st.From != "state file" || len(st.Grants) != 0 {
		t.Errorf("state file still holds grants after revoke: %v %+v", err, st)
	}
}

func TestImportKnockd(t *testing.T) {
	r := runApp(t, nil, "import-knockd", "../knockdimport/testdata/debian-knockd.conf")
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	// The output is a configuration the daemon accepts as it is.
	c, err := config.Parse("imported.toml", []byte(r.stdout))
	if err != nil {
		t.Fatalf("imported TOML does not load: %v\n%s", err, r.stdout)
	}
	if len(c.Doors) != 3 {
		t.Errorf("%d doors, want 3", len(c.Doors))
	}
	r = runApp(t, nil, "import-knockd", "../knockdimport/testdata/bad-key.conf")
	if r.code != exitConfig || !strings.Contains(r.stderr, "knockdaemon: import-knockd: ../knockdimport/testdata/bad-key.conf:3:") {
		t.Errorf("bad knockd.conf: exit %d %q", r.code, r.stderr)
	}
}

func TestTeardown(t *testing.T) {
	dir, cfgPath, _ := setup(t, "[backend]\ntype = \"dry-run\"\n")
	// A grant left in the state file by a stopped daemon.
	st := daemon.State{Version: daemon.StateVersion, Grants: []grant.Grant{{
		Addr: netip.MustParseAddr("198.51.100.7"), Proto: "tcp", Port: 22, User: "alice",
		Created: time.Now(), Expires: time.Now().Add(time.Hour), State: grant.StateOpen}}}
	if err := state.Save(filepath.Join(dir, "state.json"), st); err != nil {
		t.Fatal(err)
	}
	r := runApp(t, nil, "-c", cfgPath, "teardown")
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	if !strings.Contains(r.stdout, "iptables -w -D INPUT -j KNOCKDAEMON") || !strings.Contains(r.stdout, "iptables -w -X KNOCKDAEMON") {
		t.Errorf("teardown did not remove the chain:\n%s", r.stdout)
	}
	got, err := daemon.LoadState(filepath.Join(dir, "state.json"))
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Grants) != 0 {
		t.Errorf("grants left in the state file after teardown: %+v", got.Grants)
	}
}
