package config

import (
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/knockdaemon/knock/logparse"
)

const goodConfig = `# a full config
[daemon]
state_file     = "/tmp/state.json"
control_socket = "/tmp/control.sock"
close_on_exit  = false
log_format     = "json"
log_output     = "stderr"
log_level      = "debug"

[source]
type   = "file"
path   = "/var/log/kern.log"
prefix = "knock:"

[knock]
base             = 2000
udp              = true
tcp_flags        = "syn,!rst"
sequence_timeout = "5s"
max_skew         = "30s"
lockout_failures = 5
lockout          = "2m"
max_sources      = 1000
max_hits         = 32
static_replay_horizon = "12h"

[backend]
type  = "nftables"
netns = "guarded"
chain = "KNOCK"
table = "inet fw"
nft_chain = "in"
set   = "knockset"
rule_range = "20000-20099"

[[user]]
name        = "alice"
key_file    = "/etc/knockdaemon/alice.key"
ports       = ["22", "8000-8010"]
protocol    = "both"
max_minutes = 120
allow_unlimited = true
delegate_to = ["198.51.100.0/24"]
sources     = ["203.0.113.0/24", "2001:db8::/32", "192.0.2.7"]

[[user]]
name            = "bob"
passphrase_file = "/etc/knockdaemon/bob.pass"
mode            = "static"
ports           = [
  "443",
]
`

func TestParseGood(t *testing.T) {
	c, err := Parse("knock.toml", []byte(goodConfig))
	if err != nil {
		t.Fatal(err)
	}
	if c.Daemon.CloseOnExit || c.Daemon.LogFormat != "json" || c.Daemon.StateFile != "/tmp/state.json" {
		t.Errorf("daemon = %+v", c.Daemon)
	}
	if c.Source.Type != "file" || c.Source.Prefix != "knock:" {
		t.Errorf("source = %+v", c.Source)
	}
	k := c.Knock
	if k.Base != 2000 || !k.UDP || k.SequenceTimeout.Duration != 5*time.Second || k.Lockout.Duration != 2*time.Minute ||
		k.LockoutFailures != 5 || k.MaxSources != 1000 || k.MaxHits != 32 || k.StaticReplayHorizon.Duration != 12*time.Hour {
		t.Errorf("knock = %+v", k)
	}
	if k.FlagsSet != logparse.SYN || k.FlagsClear != logparse.RST|logparse.ACK {
		t.Errorf("flags set %v clear %v", k.FlagsSet, k.FlagsClear)
	}
	if c.Backend.Type != "nftables" || c.Backend.Netns != "guarded" || c.Backend.RuleFirst != 20000 || c.Backend.RuleLast != 20099 {
		t.Errorf("backend = %+v", c.Backend)
	}
	if len(c.Users) != 2 {
		t.Fatalf("users = %d", len(c.Users))
	}
	a, b := c.Users[0], c.Users[1]
	if a.Line != 36 || b.Line != 46 {
		t.Errorf("user lines %d %d, want 36 46", a.Line, b.Line)
	}
	if a.Mode != "timed" || len(a.Policy.Protos) != 2 || a.Policy.MaxMinutes != 120 || !a.Policy.AllowUnlimited {
		t.Errorf("alice = %+v", a)
	}
	if got := a.Policy.Ports; len(got) != 2 || got[1] != (PortRange{8000, 8010}) {
		t.Errorf("alice ports = %v", got)
	}
	if got := a.Policy.Sources; len(got) != 3 || got[2] != netip.MustParsePrefix("192.0.2.7/32") {
		t.Errorf("alice sources = %v", got)
	}
	if b.Mode != "static" || b.Protocol != "tcp" || b.MaxMinutes != 60 || b.AllowUnlimited || b.Policy.Protos[0] != "tcp" {
		t.Errorf("bob defaults = %+v", b)
	}
}

func TestDefaults(t *testing.T) {
	c, err := Parse("min.toml", []byte("[[user]]\nname = \"a\"\nkey_file = \"/k\"\nports = [\"22\"]\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := Default()
	if c.Daemon != want.Daemon || c.Source != want.Source || c.Backend != want.Backend {
		t.Errorf("defaults differ:\n%+v\n%+v", c, want)
	}
	if c.Knock.Base != 745 || c.Knock.SequenceTimeout.Duration != 10*time.Second || c.Knock.MaxSkew.Duration != time.Minute ||
		c.Knock.LockoutFailures != 3 || c.Knock.Lockout.Duration != time.Minute || c.Knock.MaxSources != 65536 ||
		c.Knock.MaxHits != 16 || c.Knock.FlagsSet != logparse.SYN || c.Knock.FlagsClear != logparse.ACK || c.Knock.UDP {
		t.Errorf("knock defaults = %+v", c.Knock)
	}
	if !c.Daemon.CloseOnExit {
		t.Error("close_on_exit must default to true")
	}
}

const userBlock = "\n[[user]]\nname = \"a\"\nkey_file = \"/k\"\nports = [\"22\"]\n"

func TestParseBad(t *testing.T) {
	tests := []struct {
		name string
		doc  string
		line int
		want string
	}{
		{"syntax error", "[daemon]\nstate_file = \"x\n" + userBlock, 2, "state_file"},
		{"unknown table key", "[daemon]\nstate_fil = \"x\"\n" + userBlock, 2, `unknown key "daemon.state_fil"`},
		{"unknown table", "[deamon]\nx = 1\n" + userBlock, 1, `unknown key "deamon"`},
		{"unknown key in second user", userBlock + userBlock[:len(userBlock)-1] + "\nportz = [\"1\"]\n", 11, `unknown key "user.portz"`},
		{"wrong type", "[knock]\nbase = \"745\"\n" + userBlock, 2, "knock.base"},
		{"wrong type in second user", userBlock + "\n[[user]]\nname = \"b\"\nkey_file = \"/k\"\nports = 22\n", 10, "user.ports"},
		{"duration without unit", "[knock]\nlockout = 60\n" + userBlock, 2, "no unit"},
		{"bad duration", "[knock]\nlockout = \"soon\"\n" + userBlock, 2, "invalid duration"},
		{"negative duration", "[knock]\nsequence_timeout = \"-1s\"\n" + userBlock, 2, "must be positive"},
		{"zero duration", "[knock]\nmax_skew = \"0s\"\n" + userBlock, 2, "must be positive"},
		{"base too high", "[knock]\nbase = 65281\n" + userBlock, 2, "base+255"},
		{"base zero", "[knock]\nbase = 0\n" + userBlock, 2, "knock.base"},
		{"unknown tcp flag", "[knock]\ntcp_flags = \"syn,foo\"\n" + userBlock, 2, `unknown flag "foo"`},
		{"contradictory tcp flags", "[knock]\ntcp_flags = \"syn,!syn\"\n" + userBlock, 2, "both set and clear"},
		{"max_hits below 8", "[knock]\nmax_hits = 7\n" + userBlock, 2, "max_hits"},
		{"max_sources zero", "[knock]\nmax_sources = 0\n" + userBlock, 2, "max_sources"},
		{"lockout failures zero", "[knock]\nlockout_failures = 0\n" + userBlock, 2, "lockout_failures"},
		{"unknown backend", "[backend]\ntype = \"pf\"\n" + userBlock, 2, `backend.type "pf"`},
		{"bad chain", "[backend]\nchain = \"A B\"\n" + userBlock, 2, "backend.chain"},
		{"ipset name too long for its IPv6 twin", "[backend]\nset = \"" + strings.Repeat("s", 31) + "\"\n" + userBlock, 2, "backend.set"},
		{"bad table", "[backend]\ntable = \"filter\"\n" + userBlock, 2, "backend.table"},
		{"bad netns", "[backend]\nnetns = \"../x\"\n" + userBlock, 2, "backend.netns"},
		{"bad rule range", "[backend]\nrule_range = \"10-5\"\n" + userBlock, 2, "range ends before"},
		{"exec without templates", "[backend]\ntype = \"exec\"\n" + userBlock, 0, "backend.open must be set"},
		{"exec template with an unknown placeholder", "[backend]\ntype = \"exec\"\nopen = \"/sbin/fw %IP%\"\nclose = \"/sbin/fw %ADDR%\"\n" + userBlock, 4, "unknown placeholder %ADDR%"},
		{"exec template with an open quote", "[backend]\ntype = \"exec\"\nopen = \"/sbin/fw '%IP%\"\nclose = \"/sbin/fw %IP%\"\n" + userBlock, 3, "backend.open"},
		{"bad source type", "[source]\ntype = \"pcap\"\n" + userBlock, 2, "source.type"},
		{"bad log format", "[daemon]\nlog_format = \"xml\"\n" + userBlock, 2, "log_format"},
		{"no users", "[daemon]\n", 0, "no [[user]]"},
		{"user without name", "[[user]]\nkey_file = \"/k\"\nports = [\"22\"]\n", 1, "name must be set"},
		{"duplicate user", userBlock + userBlock, 8, "defined twice (first at line 3)"},
		{"user with no secret", "[[user]]\nname = \"a\"\nports = [\"22\"]\n", 1, "set key_file or passphrase_file"},
		{"user with both secrets", "[[user]]\nname = \"a\"\nkey_file = \"/k\"\npassphrase_file = \"/p\"\nports = [\"22\"]\n", 4, "only one of"},
		{"port zero", "[[user]]\nname = \"a\"\nkey_file = \"/k\"\nports = [\"0\"]\n", 4, "out of range"},
		{"port too big", "[[user]]\nname = \"a\"\nkey_file = \"/k\"\nports = [\"65536\"]\n", 4, "out of range"},
		{"port not a number", "[[user]]\nname = \"a\"\nkey_file = \"/k\"\nports = [\"ssh\"]\n", 4, `"ssh"`},
		{"port range reversed", "[[user]]\nname = \"a\"\nkey_file = \"/k\"\nports = [\"9-8\"]\n", 4, "ends before"},
		{"no ports", "[[user]]\nname = \"a\"\nkey_file = \"/k\"\n", 1, "ports must list"},
		{"bad protocol", "[[user]]\nname = \"a\"\nkey_file = \"/k\"\nports = [\"22\"]\nprotocol = \"sctp\"\n", 5, `protocol "sctp"`},
		{"bad mode", "[[user]]\nname = \"a\"\nkey_file = \"/k\"\nports = [\"22\"]\nmode = \"hotp\"\n", 5, `mode "hotp"`},
		{"max minutes 255", "[[user]]\nname = \"a\"\nkey_file = \"/k\"\nports = [\"22\"]\nmax_minutes = 255\n", 5, "max_minutes 255"},
		{"bad network", "[[user]]\nname = \"a\"\nkey_file = \"/k\"\nports = [\"22\"]\nsources = [\"10.0.0.0/33\"]\n", 5, "not a network"},
		{"network with host bits", "[[user]]\nname = \"a\"\nkey_file = \"/k\"\nports = [\"22\"]\nsources = [\"10.0.0.1/8\"]\n", 5, `did you mean "10.0.0.0/8"`},
		{"ipv6 delegation", "[[user]]\nname = \"a\"\nkey_file = \"/k\"\nports = [\"22\"]\ndelegate_to = [\"2001:db8::/32\"]\n", 5, "only IPv4"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("/etc/k.toml", []byte(tc.doc))
			if err == nil {
				t.Fatal("accepted")
			}
			msg := err.Error()
			if !strings.Contains(msg, tc.want) {
				t.Errorf("error %q does not contain %q", msg, tc.want)
			}
			prefix := "/etc/k.toml: "
			if tc.line > 0 {
				prefix = "/etc/k.toml:" + strconv.Itoa(tc.line) + ": "
			}
			if !strings.HasPrefix(msg, prefix) {
				t.Errorf("error %q does not start with %q", msg, prefix)
			}
		})
	}
}

func TestAllErrorsReported(t *testing.T) {
	_, err := Parse("k.toml", []byte("[knock]\nbase = 0\nmax_hits = 1\n"))
	var es Errors
	if !errors.As(err, &es) {
		t.Fatalf("err = %v, want Errors", err)
	}
	if len(es) != 3 {
		t.Errorf("got %d errors, want 3 (base, max_hits, no users): %v", len(es), err)
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	t.Run("missing file", func(t *testing.T) {
		_, err := Load(filepath.Join(dir, "nope.toml"))
		if err == nil || !errors.Is(err, os.ErrNotExist) {
			t.Errorf("err = %v", err)
		}
	})
	t.Run("directory", func(t *testing.T) {
		_, err := Load(dir)
		if err == nil || !strings.Contains(err.Error(), "not a regular file") {
			t.Errorf("err = %v", err)
		}
	})
	t.Run("good file", func(t *testing.T) {
		p := filepath.Join(dir, "k.toml")
		if err := os.WriteFile(p, []byte(goodConfig), 0o600); err != nil {
			t.Fatal(err)
		}
		c, err := Load(p)
		if err != nil {
			t.Fatal(err)
		}
		if c.Path != p {
			t.Errorf("path = %q", c.Path)
		}
	})
	t.Run("binary garbage", func(t *testing.T) {
		p := filepath.Join(dir, "bin.toml")
		if err := os.WriteFile(p, []byte{0, 1, 2, 0xff, '\n', '[', 0}, 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := Load(p); err == nil || !strings.HasPrefix(err.Error(), p+":") {
			t.Errorf("err = %v", err)
		}
	})
}

func TestParseTCPFlags(t *testing.T) {
	tests := []struct {
		in         string
		set, clear logparse.Flags
		bad        bool
	}{
		{"syn", logparse.SYN, logparse.ACK, false},
		{"SYN, !rst", logparse.SYN, logparse.RST | logparse.ACK, false},
		{"syn,ack", logparse.SYN | logparse.ACK, 0, false},
		{"fin,!ack", logparse.FIN, logparse.ACK, false},
		{"", 0, 0, true},
		{"syn,,", 0, 0, true},
		{"psh,!psh", 0, 0, true},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			set, clear, err := ParseTCPFlags(tc.in)
			if (err != nil) != tc.bad {
				t.Fatalf("err = %v", err)
			}
			if !tc.bad && (set != tc.set || clear != tc.clear) {
				t.Errorf("got %v/%v, want %v/%v", set, clear, tc.set, tc.clear)
			}
		})
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(goodConfig))
	f.Add([]byte(userBlock))
	f.Add([]byte("[[user]]\nname = '''x\n= y'''\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse("f.toml", data)
		if err == nil && len(c.Users) == 0 && len(c.Doors) == 0 {
			t.Fatal("accepted a config without users or doors")
		}
	})
}

func TestRelativePaths(t *testing.T) {
	c, err := Parse("/etc/knockdaemon/knockdaemon.toml", []byte("[daemon]\nstate_file = \"state.json\"\n[source]\npath = \"../log/kern.log\"\n[[user]]\nname = \"a\"\nkey_file = \"keys/a.key\"\nports = [\"22\"]\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c.Daemon.StateFile != "/etc/knockdaemon/state.json" || c.Source.Path != "/etc/log/kern.log" || c.Users[0].KeyFile != "/etc/knockdaemon/keys/a.key" {
		t.Errorf("paths not resolved against the config's directory: %q %q %q", c.Daemon.StateFile, c.Source.Path, c.Users[0].KeyFile)
	}
	if c.Daemon.ControlSocket != "/run/knockdaemon/control.sock" {
		t.Errorf("absolute default changed: %q", c.Daemon.ControlSocket)
	}
}

// TestPrefixAsWrittenInTheLOGRule: admins copy the prefix from
// `--log-prefix "knock: "`, trailing space included; the parser reports
// prefixes trimmed, so the configured one must be trimmed too or nothing
// would ever match.
func TestPrefixAsWrittenInTheLOGRule(t *testing.T) {
	for _, in := range []string{`"knock: "`, `" knock:"`, `"knock:"`} {
		c, err := Parse("p.toml", []byte("[source]\nprefix = "+in+userBlock))
		if err != nil {
			t.Fatal(err)
		}
		if c.Source.Prefix != "knock:" {
			t.Errorf("prefix %s loaded as %q, want \"knock:\"", in, c.Source.Prefix)
		}
	}
}
