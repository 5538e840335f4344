package hardening

import (
	"encoding/base64"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/knockdaemon/knock/internal/netnstest"
)

// TestBrokenSetupRefused: a broken config, an unreadable, insecure or
// malformed key file, an unknown backend, a missing or failing firewall
// binary. knockdaemon check and run each print a clear error naming the
// problem and exit non-zero, and nothing is half-applied: in the fresh
// namespace the iptables backend would guard, no chain and no rule exists
// afterwards, and no state file or control socket is left behind.
func TestBrokenSetupRefused(t *testing.T) {
	netnstest.Require(t, "iptables", "ip6tables")
	e := newEnv(t)
	n := netnstest.New(t)
	chain := "HK" + strings.ToUpper(e.id)
	backend := fmt.Sprintf("type = \"iptables\"\nnetns = %q\nchain = %q\n", n.Server, chain)

	// PATH directories: one without iptables, one where ip6tables
	// answers the backend's check but fails everything else (Setup would
	// have created the IPv4 chain by then).
	ipPath, err := exec.LookPath("ip")
	if err != nil {
		t.Fatal(err)
	}
	noFW := filepath.Join(e.dir, "nofw")
	half := filepath.Join(e.dir, "half")
	for _, d := range []string{noFW, half} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(ipPath, filepath.Join(d, "ip")); err != nil {
			t.Fatal(err)
		}
	}
	realIPT, _ := exec.LookPath("iptables")
	realIP6T, _ := exec.LookPath("ip6tables")
	if err := os.Symlink(realIPT, filepath.Join(half, "iptables")); err != nil {
		t.Fatal(err)
	}
	failing := fmt.Sprintf("#!/bin/sh\ncase \" $* \" in *\" -L \"*|*\" -S \"*) exec %s \"$@\";; esac\necho \"ip6tables: injected failure\" >&2\nexit 4\n", realIP6T)
	if err := os.WriteFile(filepath.Join(half, "ip6tables"), []byte(failing), 0o755); err != nil {
		t.Fatal(err)
	}

	write := func(name, text string, mode os.FileMode) string {
		p := filepath.Join(e.dir, name)
		if err := os.WriteFile(p, []byte(text), mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	worldKey := write("world.key", base64.StdEncoding.EncodeToString([]byte(strings.Repeat("k", 32)))+"\n", 0o644)
	shortKey := write("short.key", base64.StdEncoding.EncodeToString([]byte("sixteen bytes!!!"))+"\n", 0o600)
	notBase64 := write("junk.key", "this is not a key\n", 0o600)
	dirKey := filepath.Join(e.dir, "dir.key")
	if err := os.Mkdir(dirKey, 0o700); err != nil {
		t.Fatal(err)
	}
	user := func(key string) string { return fmt.Sprintf("key_file = %q\nports = [\"22\"]\n", key) }
	defPath := "PATH=" + os.Getenv("PATH")

	cases := []struct {
		name string
		c    cfg
		raw  string // when set, the whole config file
		path string // PATH for the daemon
		code int
		want []string // in the error output
	}{
		{name: "toml syntax", raw: "[daemon\nstate_file = 1\n", code: 3, want: []string{"broken.toml:2", "table name"}},
		{name: "unknown key", c: cfg{knock: "lockout_failurs = 3\n"}, code: 3, want: []string{"unknown key", "lockout_failurs"}},
		{name: "wrong type", c: cfg{knock: "sequence_timeout = 10\n"}, code: 3, want: []string{"sequence_timeout"}},
		{name: "missing key file", c: cfg{user: user(filepath.Join(e.dir, "nope.key"))}, code: 3, want: []string{"nope.key", "does not exist"}},
		{name: "key file is a directory", c: cfg{user: user(dirKey)}, code: 3, want: []string{"dir.key"}},
		{name: "world-readable key file", c: cfg{user: user(worldKey)}, code: 3, want: []string{"world.key", "0644", "chmod 600"}},
		{name: "key of 16 bytes", c: cfg{user: user(shortKey)}, code: 3, want: []string{"short.key"}},
		{name: "key not base64", c: cfg{user: user(notBase64)}, code: 3, want: []string{"junk.key"}},
		{name: "unknown backend", c: cfg{backend: "type = \"pf\"\n"}, code: 3, want: []string{"pf"}},
		{name: "no iptables on PATH", c: cfg{backend: backend}, path: noFW, code: 4, want: []string{"iptables"}},
		{name: "ip6tables fails after the check", c: cfg{backend: backend}, path: half, code: -2, want: []string{"ip6tables"}},
	}
	for _, c := range cases {
		t.Run(strings.ReplaceAll(c.name, " ", "_"), func(t *testing.T) {
			c.c.name = "broken.toml"
			c.c.stateFile = filepath.Join(e.dir, "broken-state.json")
			if c.c.backend == "" {
				c.c.backend = backend
			}
			if c.c.user != "" {
				c.c.user += "max_minutes = 60\n"
			}
			conf := e.config(c.c)
			if c.raw != "" {
				write("broken.toml", c.raw, 0o600)
			}
			environ := []string{defPath}
			if c.path != "" {
				environ = []string{"PATH=" + c.path}
			}
			for _, cmd := range []string{"check", "run"} {
				out, code := ctl(conf, environ, cmd)
				switch {
				case cmd == "check" && c.code == -2:
					// The failing ip6tables passes the check by design.
					t.Logf("check: exit %d", code)
				case code == 0:
					t.Errorf("%s: exit 0, want a failure; output:\n%s", cmd, out)
				case c.code > 0 && code != c.code:
					t.Errorf("%s: exit %d, want %d; output:\n%s", cmd, code, c.code, out)
				default:
					for _, w := range c.want {
						if !strings.Contains(out, w) {
							t.Errorf("%s: output does not name %q:\n%s", cmd, w, out)
						}
					}
					if !strings.HasPrefix(out, "knockdaemon: ") && !strings.Contains(out, "\nknockdaemon: ") {
						t.Errorf("%s: no \"knockdaemon: \" error line:\n%s", cmd, out)
					}
				}
			}
			expectNothingApplied(t, n.Server, chain)
			for _, f := range []string{c.c.stateFile, filepath.Join(e.dir, "broken.sock")} {
				if _, err := os.Stat(f); err == nil {
					t.Errorf("%s left behind", f)
					os.Remove(f)
				}
			}
		})
	}

	// The probe can see a chain: a good config sets it up (stdin at EOF
	// ends the run at once), and teardown removes it.
	conf := e.config(cfg{name: "good.toml", backend: backend})
	if out, code := ctl(conf, []string{defPath}, "run"); code != 0 {
		t.Fatalf("good config: run exit %d:\n%s", code, out)
	}
	if out := netnstest.MustExec(t, n.Server, "iptables-save"); !strings.Contains(out, chain) {
		t.Errorf("after a good run, iptables-save shows no chain %s: the probe is blind:\n%s", chain, out)
	}
	if out, code := ctl(conf, []string{defPath}, "teardown"); code != 0 {
		t.Errorf("teardown: exit %d:\n%s", code, out)
	}
	expectNothingApplied(t, n.Server, chain)
}

// expectNothingApplied fails when the namespace holds the chain or any
// rule naming it, in either family.
func expectNothingApplied(t *testing.T, ns, chain string) {
	t.Helper()
	for _, tool := range []string{"iptables-save", "ip6tables-save"} {
		out := netnstest.MustExec(t, ns, tool)
		if strings.Contains(out, chain) {
			t.Errorf("%s in %s shows %s half-applied:\n%s", tool, ns, chain, out)
			netnstest.Exec(ns, "sh", "-c", fmt.Sprintf("for t in iptables ip6tables; do $t -w -D INPUT -j %s; $t -w -F %s; $t -w -X %s; done", chain, chain, chain))
		}
	}
}
