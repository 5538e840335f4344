package config_test

import (
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/knockdaemon/knock/config"
	"github.com/knockdaemon/knock/rules"
)

// FuzzConfigStrict feeds arbitrary bytes to config.Parse (the loader of
// knockdaemon.toml; issue 9) and checks what a daemon relies on: Parse
// never panics; every error names the file; an accepted config is
// deterministic and internally sound, and a key without delegate_to never
// opens for another address. The seeds are the shipped example configs and
// the hand-written files under testdata/fuzz/FuzzConfigStrict.
func FuzzConfigStrict(f *testing.F) {
	examples, _ := filepath.Glob("../examples/knockdaemon*.toml")
	for _, p := range examples {
		if b, err := os.ReadFile(p); err == nil {
			f.Add(b)
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		const path = "fuzz.toml"
		c, err := config.Parse(path, data)
		if err != nil {
			if c != nil {
				t.Fatalf("Parse returned a config and an error %v", err)
			}
			for _, line := range strings.Split(err.Error(), "\n") {
				if !strings.HasPrefix(line, path) {
					t.Fatalf("error line %q does not name the file", line)
				}
			}
			return
		}
		again, err := config.Parse(path, data)
		if err != nil || !reflect.DeepEqual(c, again) {
			t.Fatalf("Parse is not deterministic: %v", err)
		}
		checkConfig(t, c)
	})
}

// TestConfigErrorOneLinePerProblem is the regression test of the
// fuzzer's finding testdata/fuzz/FuzzConfigStrict/a8b7c97d84aef0d2: the
// TOML decoder quoted a token with its newline ('0b\n'), so one problem
// printed as two lines and the second did not name the file.
func TestConfigErrorOneLinePerProblem(t *testing.T) {
	_, err := config.Parse("f.toml", []byte("[[user]]\nname = \"a\"\nkey_file = \"/k\"\nports = [\"22\"]\nmax_minutes = 0b\n"))
	if err == nil {
		t.Fatal("accepted max_minutes = 0b")
	}
	if got := err.Error(); strings.Contains(got, "\n") || !strings.HasPrefix(got, "f.toml:5: ") {
		t.Errorf("error %q: want one line naming f.toml:5", got)
	}
}

// TestDoorsOnlyConfig is the fuzzer's finding
// testdata/fuzz/FuzzConfigStrict/3e3b08b76edbe5e8: a config with a door and
// no [[user]] is valid (the check above had not learnt doors yet), while a
// config with neither is refused.
func TestDoorsOnlyConfig(t *testing.T) {
	c, err := config.Parse("d.toml", []byte("[[door]]\nname = \"ssh\"\nsequence = \"7000,8000,9000\"\nopen = { ports = [\"22\"] }\ncmd_timeout = \"30s\"\n"))
	if err != nil {
		t.Fatalf("doors-only config refused: %v", err)
	}
	if len(c.Users) != 0 || len(c.Doors) != 1 {
		t.Fatalf("users %d, doors %d; want 0 and 1", len(c.Users), len(c.Doors))
	}
	if _, err := config.Parse("e.toml", []byte("[knock]\nbase = 745\n")); err == nil || !strings.Contains(err.Error(), "no [[user]]") {
		t.Fatalf("config with neither users nor doors: err = %v", err)
	}
}

func checkConfig(t *testing.T, c *config.Config) {
	t.Helper()
	// A config may hold only knockd-style doors (a knockd user migrating
	// with import-knockd), but never nothing at all.
	if len(c.Users) == 0 && len(c.Doors) == 0 {
		t.Fatal("accepted a config without users or doors")
	}
	if !slices.Contains(rules.Types, c.Backend.Type) {
		t.Fatalf("accepted backend type %q", c.Backend.Type)
	}
	if !slices.Contains([]string{"auto", "kmsg", "file", "journald", "stdin"}, c.Source.Type) {
		t.Fatalf("accepted source type %q", c.Source.Type)
	}
	k := c.Knock
	if k.Base < 1 || k.Base+255 > 65535 {
		t.Fatalf("accepted knock base %d: the ports base..base+255 do not fit", k.Base)
	}
	if k.SequenceTimeout.Duration <= 0 || k.MaxSkew.Duration < 0 || k.Lockout.Duration < 0 {
		t.Fatalf("accepted durations %v %v %v", k.SequenceTimeout, k.MaxSkew, k.Lockout)
	}
	names := map[string]bool{}
	for _, u := range c.Users {
		if u.Name == "" || names[u.Name] {
			t.Fatalf("accepted user name %q (empty or twice)", u.Name)
		}
		names[u.Name] = true
		if (u.KeyFile == "") == (u.PassphraseFile == "") {
			t.Fatalf("user %q: want exactly one of key_file and passphrase_file, got %q and %q", u.Name, u.KeyFile, u.PassphraseFile)
		}
		p := &u.Policy
		if len(p.Ports) == 0 || len(p.Protos) == 0 {
			t.Fatalf("user %q: accepted a policy without ports or protocols: %+v", u.Name, p)
		}
		for _, proto := range p.Protos {
			if proto != "tcp" && proto != "udp" {
				t.Fatalf("user %q: protocol %q", u.Name, proto)
			}
		}
		for _, r := range p.Ports {
			if r.First == 0 || r.First > r.Last {
				t.Fatalf("user %q: port range %v", u.Name, r)
			}
		}
		if p.MaxMinutes < 1 || p.MaxMinutes > 254 {
			t.Fatalf("user %q: max_minutes %d outside 1..254", u.Name, p.MaxMinutes)
		}
		port := p.Ports[0].First
		src := netip.MustParseAddr("192.0.2.10")
		if len(p.Sources) > 0 {
			src = p.Sources[0].Addr()
		}
		if p.Check(src, netip.AddrFrom4([4]byte{}), 0, 1) == config.Allowed {
			t.Fatalf("user %q: policy allows port 0", u.Name)
		}
		if p.Check(src, netip.AddrFrom4([4]byte{}), port, 255) != config.Allowed && p.Check(src, netip.AddrFrom4([4]byte{}), port, 1) == config.Allowed {
			t.Fatalf("user %q: may open port %d but not close it", u.Name, port)
		}
		if !p.AllowUnlimited && p.Check(src, netip.AddrFrom4([4]byte{}), port, 0) == config.Allowed {
			t.Fatalf("user %q: unlimited opening allowed without allow_unlimited", u.Name)
		}
		if len(p.DelegateTo) == 0 {
			other := netip.MustParseAddr("198.51.100.77")
			if src.Is4() && other != src && p.Check(src, other, port, 1) == config.Allowed {
				t.Fatalf("user %q: no delegate_to, yet a request for %v from %v is allowed", u.Name, other, src)
			}
		}
	}
}
