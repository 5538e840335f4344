package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/knockdaemon/knock/cipher"
)

// TestMain lets the test binary act as knockclient itself (for tests that
// run it as another user): KNOCKCLIENT_TEST_MAIN=1 runs main.
func TestMain(m *testing.M) {
	if os.Getenv("KNOCKCLIENT_TEST_MAIN") == "1" {
		main()
		return
	}
	os.Exit(m.Run())
}

const keyA = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="

// noDNS resolves from /etc/hosts only: tests never send DNS queries.
var noDNS = &net.Resolver{PreferGo: true, Dial: func(context.Context, string, string) (net.Conn, error) {
	return nil, errors.New("no DNS in tests")
}}

type result struct {
	code           int
	stdout, stderr string
}

// runCLI runs knockclient in-process with args and the given environment
// (HOME and XDG_CONFIG_HOME point into a temp dir unless set).
func runCLI(t *testing.T, envm map[string]string, args ...string) result {
	t.Helper()
	if envm == nil {
		envm = map[string]string{}
	}
	if _, ok := envm["HOME"]; !ok {
		envm["HOME"] = t.TempDir()
	}
	var out, errb bytes.Buffer
	e := env{
		stdin:    strings.NewReader(""),
		stdout:   &out,
		stderr:   &errb,
		getenv:   func(k string) string { return envm[k] },
		now:      time.Now,
		resolver: noDNS,
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if d, err := time.ParseDuration(envm["TEST_INTERRUPT_AFTER"]); err == nil {
		ctx, cancel = context.WithTimeout(ctx, d) // as Ctrl-C would, via signal.NotifyContext
		defer cancel()
	}
	code := run(ctx, append([]string{"knockclient"}, args...), e)
	return result{code: code, stdout: out.String(), stderr: errb.String()}
}

func writeFile(t *testing.T, dir, name, content string, mode os.FileMode) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestSequenceVectors runs every protocol test vector through the
// sequence command, so the CLI's flags map onto the protocol exactly.
func TestSequenceVectors(t *testing.T) {
	data, err := os.ReadFile("../cipher/testdata/vectors.json")
	if err != nil {
		t.Fatal(err)
	}
	var f struct {
		Vectors []struct {
			Name, Key, Passphrase, Mode, Allow string
			Unix                               int64
			Port                               int
			Time                               int
			Base                               int
			Ports                              [8]int
		}
	}
	if err := json.Unmarshal(data, &f); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for i, v := range f.Vectors {
		t.Run(v.Name, func(t *testing.T) {
			args := []string{"sequence", "--port", fmt.Sprint(v.Port), "--time", fmt.Sprint(v.Time),
				"--at", fmt.Sprint(v.Unix), "--base", fmt.Sprint(v.Base), "--ip", v.Allow}
			if v.Key != "" {
				args = append(args, "--key-file", writeFile(t, dir, fmt.Sprintf("k%d", i), v.Key+"\n", 0o600))
			} else {
				args = append(args, "--passphrase-file", writeFile(t, dir, fmt.Sprintf("p%d", i), v.Passphrase+"\n", 0o600))
			}
			if v.Mode == "static" {
				args = append(args, "--static")
			}
			r := runCLI(t, nil, args...)
			want := strings.Trim(fmt.Sprint(v.Ports), "[]") + "\n"
			if r.code != 0 || r.stdout != want {
				t.Fatalf("knockclient %s\n= %d %q %q, want %q", strings.Join(args, " "), r.code, r.stdout, r.stderr, want)
			}
		})
	}
}

// TestCLIErrors: bad inputs give a clear message and a named exit code.
func TestCLIErrors(t *testing.T) {
	dir := t.TempDir()
	key := writeFile(t, dir, "good.key", keyA+"\n", 0o600)
	short := writeFile(t, dir, "short.key", "c2hvcnQ=\n", 0o600)
	garbage := writeFile(t, dir, "garbage.key", "not base64 at all!\n", 0o600)
	pass := writeFile(t, dir, "empty.pass", "\n", 0o600)
	badCfg := writeFile(t, dir, "bad.toml", "[profile.a]\nhost = \"h\"\nprot = 22\n", 0o600)
	tests := []struct {
		name string
		args []string
		env  map[string]string
		code int
		msg  string // substring of stderr
	}{
		{"no command shows help", []string{}, nil, exitOK, ""},
		{"unknown command", []string{"frob"}, nil, exitUsage, `knockclient: unknown command "frob"`},
		{"unknown flag", []string{"knock", "--frob", "h"}, nil, exitUsage, "knockclient: flag provided but not defined: -frob"},
		{"unknown flag hint", []string{"sequence", "--frob"}, nil, exitUsage, "knockclient: hint: see 'knockclient sequence --help'"},
		{"port 0", []string{"sequence", "--port", "0", "-k", key}, nil, exitUsage, "knockclient: port 0 is not a valid port"},
		{"port too big", []string{"sequence", "--port", "65536", "-k", key}, nil, exitUsage, "port 65536 out of range 1..65535"},
		{"port not a number", []string{"sequence", "--port", "ssh", "-k", key}, nil, exitUsage, "invalid value \"ssh\" for flag -port"},
		{"no port", []string{"sequence", "-k", key}, nil, exitUsage, "knockclient: no port to open"},
		{"time over 255", []string{"sequence", "-p", "22", "--time", "256", "-k", key}, nil, exitUsage, "time 256 out of range 0..255"},
		{"negative time", []string{"sequence", "-p", "22", "--time", "-1", "-k", key}, nil, exitUsage, "time -1 out of range"},
		{"close contradicts time", []string{"sequence", "-p", "22", "--time", "5", "--close", "-k", key}, nil, exitUsage, "--close and --time 5 contradict"},
		{"bad ip", []string{"sequence", "-p", "22", "--ip", "1.2.3", "-k", key}, nil, exitUsage, `bad --ip: invalid IP address "1.2.3"`},
		{"ipv6 ip with hint", []string{"sequence", "-p", "22", "--ip", "2001:db8::1", "-k", key}, nil, exitUsage, "hint: leave out --ip"},
		{"base too high", []string{"sequence", "-p", "22", "--base", "65281", "-k", key}, nil, exitUsage, "base 65281 out of range 1..65280"},
		{"no key", []string{"sequence", "-p", "22"}, nil, exitUsage, "knockclient: no key given\nknockclient: hint: pass --key-file"},
		{"missing key file", []string{"sequence", "-p", "22", "-k", filepath.Join(dir, "nope.key")}, nil, exitKey, "hint: create one with 'knockclient keygen FILE'"},
		{"short key file", []string{"sequence", "-p", "22", "-k", short}, nil, exitKey, "key file holds 5 bytes, want 32"},
		{"garbage key file", []string{"sequence", "-p", "22", "-k", garbage}, nil, exitKey, "single base64 line"},
		{"key from env missing", []string{"sequence", "-p", "22"}, map[string]string{"KNOCK_KEY_FILE": filepath.Join(dir, "env.key")}, exitKey, "env.key: no such file"},
		{"empty passphrase", []string{"sequence", "-p", "22", "--passphrase-file", pass}, nil, exitKey, "empty passphrase"},
		{"both key kinds", []string{"sequence", "-p", "22", "-k", key, "--passphrase-file", pass}, nil, exitUsage, "not both"},
		{"unknown profile -P", []string{"sequence", "-P", "work", "-k", key, "-p", "22"}, nil, exitConfig, `unknown profile "work"`},
		{"unknown profile arg", []string{"sequence", "work", "-k", key, "-p", "22"}, nil, exitConfig, `unknown profile "work"`},
		{"bad config names file and line", []string{"sequence", "--config", badCfg, "-p", "22", "-k", key}, nil, exitConfig, badCfg + `:3: unknown key "profile.a.prot"`},
		{"missing explicit config", []string{"sequence", "--config", filepath.Join(dir, "none.toml"), "-p", "22", "-k", key}, nil, exitConfig, "none.toml: no such file"},
		{"unresolvable host", []string{"knock", "no-such-host.invalid", "-p", "22", "-k", key}, nil, exitResolve, `cannot resolve host "no-such-host.invalid"`},
		{"not a profile either", []string{"knock", "workbox", "-p", "22", "-k", key}, nil, exitResolve, `hint: "workbox" is not a profile either`},
		{"-4 with ipv6 literal", []string{"knock", "::1", "-4", "-p", "22", "-k", key}, nil, exitResolve, "hint: drop -4/-6"},
		{"-4 and -6", []string{"knock", "127.0.0.1", "-4", "-6", "-p", "22", "-k", key}, nil, exitUsage, "-4 and -6 exclude each other"},
		{"no host", []string{"knock", "-p", "22", "-k", key}, nil, exitUsage, "no host to knock on"},
		{"extra argument", []string{"knock", "127.0.0.1", "ssh", "-p", "22", "-k", key}, nil, exitUsage, "unexpected arguments: ssh\nknockclient: hint: to run a command after knocking, use --then"},
		{"command without --then", []string{"knock", "127.0.0.1", "-p", "22", "-k", key, "--", "true"}, nil, exitUsage, "unexpected command after --: true"},
		{"--then without command", []string{"knock", "127.0.0.1", "-p", "22", "-k", key, "--then"}, nil, exitUsage, "--then needs a command after --"},
		{"bad delay", []string{"knock", "127.0.0.1", "-p", "22", "-k", key, "--delay", "3s"}, nil, exitUsage, "bad --delay: delay 3s out of range"},
		{"keygen without file", []string{"keygen"}, nil, exitUsage, "keygen needs exactly one FILE"},
		{"keygen refuses to overwrite", []string{"keygen", key}, nil, exitKey, "refusing to overwrite"},
		{"too many sequence args", []string{"sequence", "a", "b", "-p", "22", "-k", key}, nil, exitUsage, "too many arguments: a b"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := runCLI(t, tt.env, tt.args...)
			if r.code != tt.code {
				t.Fatalf("exit %d, want %d\nstderr: %s", r.code, tt.code, r.stderr)
			}
			if !strings.Contains(r.stderr, tt.msg) {
				t.Fatalf("stderr %q does not contain %q", r.stderr, tt.msg)
			}
			if tt.code != exitOK {
				for _, l := range strings.Split(strings.TrimSpace(r.stderr), "\n") {
					if !strings.HasPrefix(l, "knockclient: ") {
						t.Fatalf("stderr line %q lacks the knockclient: prefix", l)
					}
				}
				if strings.Contains(r.stderr, "\nknockclient: Error") || strings.Contains(r.stderr, "panic") {
					t.Fatalf("unexpected error style: %q", r.stderr)
				}
			}
		})
	}
}

func TestKeygen(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "new.key")
	r := runCLI(t, nil, "keygen", path)
	if r.code != 0 || !strings.Contains(r.stderr, "wrote a new key to "+path) {
		t.Fatalf("keygen = %+v", r)
	}
	if _, err := cipher.LoadKeyFile(path); err != nil {
		t.Fatalf("generated key does not load: %v", err)
	}
	if runtime.GOOS != "windows" {
		fi, _ := os.Stat(path)
		if fi.Mode().Perm() != 0o600 {
			t.Fatalf("mode %04o", fi.Mode().Perm())
		}
	}
	// The new key works for sequence.
	if r := runCLI(t, nil, "sequence", "-p", "22", "-k", path); r.code != 0 || len(strings.Fields(r.stdout)) != 8 {
		t.Fatalf("sequence with the new key = %+v", r)
	}
}

func TestProfiles(t *testing.T) {
	home := t.TempDir()
	xdg := filepath.Join(home, "xdg")
	if err := os.MkdirAll(filepath.Join(xdg, "knockclient"), 0o700); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(xdg, "knockclient"), "k.key", keyA+"\n", 0o600)
	writeFile(t, filepath.Join(xdg, "knockclient"), "config.toml", `
[defaults]
key_file = "k.key"

[profile.vec1]
port = 22
time = 10

[profile.vec7]
port = 22
time = 255
mode = "static"
`, 0o600)
	e := map[string]string{"HOME": home, "XDG_CONFIG_HOME": xdg}
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"profile as argument (vector 1)", []string{"sequence", "vec1", "--at", "1767225600"}, "763 827 804 961 893 936 880 968\n"},
		{"profile with -P", []string{"sequence", "-P", "vec1", "--at", "1767225600"}, "763 827 804 961 893 936 880 968\n"},
		{"static profile (vector 7)", []string{"sequence", "vec7", "--at", "5"}, "948 931 914 805 892 888 836 793\n"},
		{"flags override the profile", []string{"sequence", "vec7", "--static=false", "--time", "10", "--at", "1767225600"}, "763 827 804 961 893 936 880 968\n"},
		{"flag after positional", []string{"sequence", "vec1", "--base", "40000", "--at", "1767225600"}, "40018 40082 40059 40216 40148 40191 40135 40223\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := runCLI(t, e, tt.args...)
			if r.code != 0 || r.stdout != tt.want {
				t.Fatalf("knockclient %v = %+v, want %q", tt.args, r, tt.want)
			}
		})
	}
	t.Run("KNOCK_KEY_FILE is used without flag or profile key", func(t *testing.T) {
		e2 := map[string]string{"HOME": t.TempDir(), "KNOCK_KEY_FILE": filepath.Join(xdg, "knockclient", "k.key")}
		r := runCLI(t, e2, "sequence", "-p", "22", "-t", "10", "--at", "1767225600")
		if r.code != 0 || r.stdout != "763 827 804 961 893 936 880 968\n" {
			t.Fatalf("%+v", r)
		}
	})
	t.Run("warns about a readable key file", func(t *testing.T) {
		if runtime.GOOS == "windows" {
			t.Skip("no permission bits on Windows")
		}
		p := writeFile(t, t.TempDir(), "open.key", keyA, 0o644)
		if err := os.Chmod(p, 0o644); err != nil {
			t.Fatal(err)
		}
		r := runCLI(t, nil, "sequence", "-p", "22", "-k", p)
		if r.code != 0 || !strings.Contains(r.stderr, "knockclient: warning: key file "+p+" has mode 0644") {
			t.Fatalf("%+v", r)
		}
	})
}

// closedPort returns a loopback TCP port with no listener.
func closedPort(t *testing.T) int {
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := l.Addr().(*net.TCPAddr).Port
	l.Close()
	return p
}

// TestKnockLoopback knocks on 127.0.0.1 (the knock ports refuse) and
// exercises --wait-open and --then.
func TestKnockLoopback(t *testing.T) {
	dir := t.TempDir()
	key := writeFile(t, dir, "k.key", keyA+"\n", 0o600)
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	open := fmt.Sprint(l.Addr().(*net.TCPAddr).Port)
	base := fmt.Sprint(45000 + rand.IntN(15000)) // knocks go to refused loopback ports
	tests := []struct {
		name string
		args []string
		code int
		out  string
		err  string
	}{
		{"plain knock", []string{"knock", "127.0.0.1", "-p", open, "-k", key, "--base", base}, 0, "", ""},
		{"udp knock verbose", []string{"knock", "127.0.0.1", "-p", open, "-k", key, "--base", base, "--udp", "-v"}, 0, "", "knock 8/8 udp 127.0.0.1:"},
		{"wait-open succeeds", []string{"knock", "127.0.0.1", "-p", open, "-k", key, "--base", base, "--wait-open"}, 0, "", "knockclient: 127.0.0.1:" + open + " open after "},
		{"then passes exit code", []string{"knock", "127.0.0.1", "-p", open, "-k", key, "--base", base, "--then", "--", "sh", "-c", "echo hello; exit 3"}, 3, "hello\n", ""},
		{"then after wait-open", []string{"knock", "127.0.0.1", "--wait-open", "--then", "-p", open, "-k", key, "--base", base, "-q", "--", "true"}, 0, "", ""},
		{"then command not found", []string{"knock", "127.0.0.1", "-p", open, "-k", key, "--base", base, "--then", "--", "/nonexistent/cmd"}, exitNotFound, "", "cannot run /nonexistent/cmd"},
		{"wait-open times out", []string{"knock", "localhost", "-4", "-p", fmt.Sprint(closedPort(t)), "-k", key, "--base", base, "--wait-open", "--wait-timeout", "400ms", "--then", "--", "echo", "never"}, exitNotOpen, "", "did not open within"},
	}
	if runtime.GOOS == "windows" {
		tests = tests[:3]
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := runCLI(t, nil, tt.args...)
			if r.code != tt.code || r.stdout != tt.out || !strings.Contains(r.stderr, tt.err) {
				t.Fatalf("knockclient %v\n= exit %d stdout %q stderr %q\nwant exit %d stdout %q stderr containing %q",
					tt.args, r.code, r.stdout, r.stderr, tt.code, tt.out, tt.err)
			}
		})
	}
	t.Run("not-open hints name key, clock and log rule", func(t *testing.T) {
		r := runCLI(t, nil, "knock", "127.0.0.1", "-p", fmt.Sprint(closedPort(t)), "-k", key, "--wait-open", "--wait-timeout", "300ms")
		for _, want := range []string{"hint: is the key", "hint: timed keys need the clocks", "LOG the knock ports 745..1000", "answers with a reset"} {
			if !strings.Contains(r.stderr, want) {
				t.Fatalf("stderr %q lacks %q", r.stderr, want)
			}
		}
	})
}

func TestInterrupted(t *testing.T) {
	key := writeFile(t, t.TempDir(), "k.key", keyA+"\n", 0o600)
	start := time.Now()
	r := runCLI(t, map[string]string{"TEST_INTERRUPT_AFTER": "400ms"},
		"knock", "127.0.0.1", "-p", fmt.Sprint(closedPort(t)), "-k", key, "--wait-open", "--wait-timeout", "20s")
	if r.code != exitInterrupted || !strings.Contains(r.stderr, "knockclient: interrupted") {
		t.Fatalf("interrupted knock = %+v, want exit %d", r, exitInterrupted)
	}
	if el := time.Since(start); el > 5*time.Second {
		t.Fatalf("took %v to notice the interrupt", el)
	}
}

func TestVersion(t *testing.T) {
	r := runCLI(t, nil, "--version")
	if r.code != 0 || !strings.HasPrefix(r.stdout, "knockclient version ") || !strings.Contains(r.stdout, runtime.Version()) {
		t.Fatalf("--version = %+v", r)
	}
}

func TestHelpDocumentsExitCodes(t *testing.T) {
	for _, args := range [][]string{{"--help"}, {"knock", "--help"}} {
		r := runCLI(t, nil, args...)
		if r.code != 0 || !strings.Contains(r.stdout, "EXIT STATUS:") || !strings.Contains(r.stdout, "7    --wait-open") {
			t.Fatalf("%v: %+v", args, r)
		}
	}
}

func TestReorderAndSplit(t *testing.T) {
	tests := []struct {
		name      string
		in        string
		args      string
		then      string
		reordered string
	}{
		{"flags after host", "kc knock host --port 22 -t 5", "kc knock host --port 22 -t 5", "", "kc knock --port 22 -t 5 host"},
		{"bool flags take no value", "kc knock host --udp -4 --port 22", "kc knock host --udp -4 --port 22", "", "kc knock --udp -4 --port 22 host"},
		{"then command split", "kc knock host --then -p 22 -- ssh -p 2222 host", "kc knock host --then -p 22", "ssh -p 2222 host", "kc knock --then -p 22 host"},
		{"flag=value", "kc knock host --port=22", "kc knock host --port=22", "", "kc knock --port=22 host"},
		{"global flag first", "kc --help", "kc --help", "", "kc --help"},
		{"-- as a flag value is not a separator", "kc sequence --ip -- x", "kc sequence --ip -- x", "", "kc sequence --ip -- x"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args, then, err := splitThen(strings.Fields(tt.in))
			if err != nil || strings.Join(args, " ") != tt.args || strings.Join(then, " ") != tt.then {
				t.Fatalf("splitThen = %q %q %v", args, then, err)
			}
			if got := strings.Join(reorderArgs(args), " "); got != tt.reordered {
				t.Fatalf("reorderArgs = %q, want %q", got, tt.reordered)
			}
		})
	}
}

// buildSelf copies the test binary (which runs main when
// KNOCKCLIENT_TEST_MAIN=1) to a directory anyone may read.
func buildSelf(t *testing.T) string {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "knockclient-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(self)
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "knockclient")
	if runtime.GOOS == "windows" {
		bin += ".exe"
	}
	if err := os.WriteFile(bin, data, 0o755); err != nil {
		t.Fatal(err)
	}
	return bin
}

// TestBinaryExitCodes runs the real binary (main, os.Exit) for a few cases.
func TestBinaryExitCodes(t *testing.T) {
	bin := buildSelf(t)
	for _, tt := range []struct {
		args []string
		code int
	}{
		{[]string{"sequence", "-p", "0", "-k", "/nonexistent"}, exitUsage},
		{[]string{"sequence", "-p", "22", "-k", "/nonexistent"}, exitKey},
		{[]string{"--version"}, exitOK},
	} {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			cmd := exec.Command(bin, tt.args...)
			cmd.Env = append(os.Environ(), "KNOCKCLIENT_TEST_MAIN=1")
			out, err := cmd.CombinedOutput()
			code := 0
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				code = ee.ExitCode()
			} else if err != nil {
				t.Fatal(err)
			}
			if code != tt.code {
				t.Fatalf("exit %d, want %d: %s", code, tt.code, out)
			}
		})
	}
}
