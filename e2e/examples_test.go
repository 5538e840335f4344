package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/knockdaemon/knock/client"
	"github.com/knockdaemon/knock/config"
	"github.com/knockdaemon/knock/internal/netnstest"
)

// Every example daemon config loads with the real, strict config loader
// and says what its file name promises.
func TestExampleConfigsLoad(t *testing.T) {
	paths, err := filepath.Glob("../examples/knockdaemon-*.toml")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{"iptables": false, "nftables": false, "ipset": false, "ipfw": false}
	for _, p := range paths {
		name := strings.TrimSuffix(strings.TrimPrefix(filepath.Base(p), "knockdaemon-"), ".toml")
		backend := name
		if name == "doors" {
			backend = "iptables"
		}
		t.Run(name, func(t *testing.T) {
			c, err := config.Load(p)
			if err != nil {
				t.Fatalf("examples/%s does not load:\n%v", filepath.Base(p), err)
			}
			if c.Backend.Type != backend {
				t.Errorf("examples/%s: backend.type = %q, want %q", filepath.Base(p), c.Backend.Type, backend)
			}
			if name == "doors" && len(c.Doors) != 2 {
				t.Errorf("examples/%s: %d doors, want the open/close pair", filepath.Base(p), len(c.Doors))
			}
			if len(c.Users) == 0 {
				t.Errorf("examples/%s has no [[user]]", filepath.Base(p))
			}
			for _, u := range c.Users {
				if u.Policy.AllowUnlimited {
					t.Errorf("examples/%s: user %s allows unlimited openings; examples must show the safe default", filepath.Base(p), u.Name)
				}
			}
		})
		if _, ok := want[backend]; ok {
			want[backend] = true
		}
	}
	for b, seen := range want {
		if !seen {
			t.Errorf("no examples/knockdaemon-%s.toml", b)
		}
	}
}

// The shell scripts parse with a POSIX shell (dash here; FreeBSD's sh
// for the rc.d script and ipfw.rules is POSIX too).
func TestExampleScriptsParse(t *testing.T) {
	for _, f := range []string{"iptables.sh", "ipfw.rules", "rc.d/knockdaemon"} {
		t.Run(f, func(t *testing.T) {
			p := filepath.Join("../examples", f)
			if out, err := exec.Command("sh", "-n", p).CombinedOutput(); err != nil {
				t.Errorf("sh -n examples/%s: %v\n%s", f, err, out)
			}
			st, err := os.Stat(p)
			if err != nil {
				t.Fatal(err)
			}
			if st.Mode().Perm()&0o111 == 0 {
				t.Errorf("examples/%s is not executable", f)
			}
		})
	}
	// The ipfw rules log the knock ports and leave the daemon's rule
	// range free, before the deny of the protected port.
	text, err := os.ReadFile("../examples/ipfw.rules")
	if err != nil {
		t.Fatal(err)
	}
	rules := string(text)
	for _, s := range []string{"deny log tcp from any to me 745-1000", "check-state", "keep-state"} {
		if !strings.Contains(rules, s) {
			t.Errorf("examples/ipfw.rules lacks %q", s)
		}
	}
	for _, line := range strings.Split(rules, "\n") {
		f := strings.Fields(line)
		if len(f) > 2 && f[0] == "$add" && f[1] >= "10000" && f[1] <= "10999" && len(f[1]) == 5 {
			t.Errorf("examples/ipfw.rules uses rule %s, inside knockdaemon's rule_range 10000-10999", f[1])
		}
	}
	sys, err := os.ReadFile("../examples/syslog.conf.ipfw")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(sys), "security.*") || !strings.Contains(string(sys), "/var/log/security") {
		t.Errorf("examples/syslog.conf.ipfw does not send security.* to /var/log/security")
	}
}

// The systemd unit is valid for systemd and grants what the daemon needs
// and nothing more.
func TestExampleSystemdUnit(t *testing.T) {
	text, err := os.ReadFile("../examples/knockdaemon.service")
	if err != nil {
		t.Fatal(err)
	}
	unit := string(text)
	keys := map[string]string{}
	for _, line := range strings.Split(unit, "\n") {
		if k, v, ok := strings.Cut(line, "="); ok && !strings.HasPrefix(line, "#") {
			keys[k] = v
		}
	}
	for k, want := range map[string]string{
		"Restart":        "on-failure",
		"ProtectSystem":  "strict",
		"StateDirectory": "knockdaemon",
		"ExecReload":     "/bin/kill -HUP $MAINPID",
	} {
		if keys[k] != want {
			t.Errorf("knockdaemon.service: %s=%q, want %q", k, keys[k], want)
		}
	}
	if !strings.HasSuffix(keys["ExecStartPre"], " check") {
		t.Errorf("knockdaemon.service: ExecStartPre=%q, want knockdaemon check", keys["ExecStartPre"])
	}
	for _, k := range []string{"CapabilityBoundingSet", "AmbientCapabilities"} {
		caps := strings.Fields(keys[k])
		if len(caps) == 0 || caps[0] != "CAP_NET_ADMIN" {
			t.Errorf("knockdaemon.service: %s=%q, want CAP_NET_ADMIN first", k, keys[k])
		}
		for _, c := range caps {
			if c != "CAP_NET_ADMIN" && c != "CAP_SYSLOG" {
				t.Errorf("knockdaemon.service: %s grants %s; the daemon needs only CAP_NET_ADMIN (and CAP_SYSLOG for /dev/kmsg)", k, c)
			}
		}
	}
	netnstest.Require(t, "systemd-analyze")
	// systemd-analyze verify checks every directive and that the binaries
	// exist; point them at one that does.
	dir := t.TempDir()
	p := filepath.Join(dir, "knockdaemon.service")
	if err := os.WriteFile(p, []byte(strings.ReplaceAll(unit, "/usr/local/sbin/knockdaemon", "/bin/true")), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("systemd-analyze", "verify", p).CombinedOutput()
	if err != nil || len(strings.TrimSpace(string(out))) > 0 {
		t.Errorf("systemd-analyze verify knockdaemon.service: %v\n%s", err, out)
	}
}

// examples/iptables.sh and examples/nftables.conf load into a real kernel
// and do what they say: a SYN to a knock port is logged with the prefix
// and dropped, the protected port is dropped, other ports are untouched.
func TestExampleFirewallsApply(t *testing.T) {
	for _, kind := range []string{"iptables", "nftables"} {
		t.Run(kind, func(t *testing.T) {
			tools := []string{"iptables", "ip6tables"}
			if kind == "nftables" {
				tools = []string{"nft"}
			}
			netnstest.Require(t, tools...)
			n := netnstest.New(t)
			netnstest.EnableNFLogAllNetns(t)
			c := n.Client
			prefix := "knx" + netnstest.RandHex(3) + ": "
			switch kind {
			case "iptables":
				netnstest.MustExec(t, n.Server, "env", "PREFIX="+prefix, "PROTECTED=22", "sh", "../examples/iptables.sh")
			case "nftables":
				text, err := os.ReadFile("../examples/nftables.conf")
				if err != nil {
					t.Fatal(err)
				}
				p := filepath.Join(t.TempDir(), "nftables.conf")
				if err := os.WriteFile(p, []byte(strings.ReplaceAll(string(text), `"knock: "`, fmt.Sprintf("%q", prefix))), 0o644); err != nil {
					t.Fatal(err)
				}
				// Twice: reloading the file must work too.
				netnstest.MustExec(t, n.Server, "nft", "-f", p)
				netnstest.MustExec(t, n.Server, "nft", "-f", p)
			}
			netnstest.Listen(t, n.Server, "tcp", ":22")
			netnstest.Listen(t, n.Server, "tcp", ":800")
			netnstest.Listen(t, n.Server, "tcp", ":2000")
			tap := openTap(t)
			if canConnect(c, c.ServerIP4, 22, closedProbe) {
				t.Errorf("%s: the protected port 22 answers", kind)
			}
			if canConnect(c, c.ServerIP4, 800, closedProbe) {
				t.Errorf("%s: knock port 800 answers; knocks must be dropped", kind)
			}
			if !canConnect(c, c.ServerIP4, 2000, time.Second) {
				t.Errorf("%s: port 2000, not protected, does not answer", kind)
			}
			if canConnect(c, c.ServerIP6, 800, closedProbe) {
				t.Errorf("%s: knock port 800 answers over IPv6", kind)
			}
			var v4, v6 []string
			for i := 0; i < 20 && (len(v4) == 0 || len(v6) == 0); i++ {
				v4 = tap.knockPorts(prefix, c.IP4)
				v6 = tap.knockPorts(prefix, c.IP6)
				time.Sleep(50 * time.Millisecond)
			}
			if len(v4) == 0 || v4[0] != "800" {
				t.Errorf("%s: a SYN to port 800 over IPv4 was logged as %v, want [800]", kind, v4)
			}
			if len(v6) == 0 || v6[0] != "800" {
				t.Errorf("%s: a SYN to port 800 over IPv6 was logged as %v, want [800]", kind, v6)
			}
		})
	}
}

// The client profile example loads with knockclient's own loader, and
// every profile names a host and a port.
func TestExampleClientProfiles(t *testing.T) {
	getenv := func(k string) string {
		if k == "HOME" {
			return "/home/alice"
		}
		return ""
	}
	c, err := client.LoadConfig("../examples/knockclient.toml", false, getenv)
	if err != nil {
		t.Fatalf("examples/knockclient.toml does not load:\n%v", err)
	}
	names := c.Names()
	if len(names) < 2 {
		t.Fatalf("examples/knockclient.toml has profiles %v, want several", names)
	}
	for _, n := range names {
		p, ok := c.Profile(n)
		if !ok {
			t.Errorf("profile %s listed but not found", n)
			continue
		}
		if p.Host == nil || *p.Host == "" || p.Port == nil || *p.Port < 1 || *p.Port > 65535 {
			t.Errorf("profile %s lacks a host or a valid port", n)
		}
		if p.KeyFile == nil && p.PassphraseFile == nil {
			t.Errorf("profile %s has no key_file or passphrase_file (with [defaults])", n)
		}
	}
}
