package client

import (
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/knockdaemon/knock/cipher"
)

func env(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

const goodConfig = `# knockclient profiles
[defaults]
key_file = "~/.config/knockclient/default.key"
delay = "20ms"

[profile.work-ssh]
host = "gw.example.org"
port = 22
time = 10
then = ["ssh", "gw.example.org"]

[profile."lab box"]
host = "2001:db8::5"
port = 8443
time = 0
passphrase_file = "lab.pass"
mode = "static"
udp = true
base = 40000
family = 6
wait_open = true
wait_timeout = "30s"
ip = "192.0.2.7"
`

func TestParseConfig(t *testing.T) {
	c, err := ParseConfig("/etc/kc/config.toml", []byte(goodConfig), env(map[string]string{"HOME": "/home/u"}))
	if err != nil {
		t.Fatalf("ParseConfig: %v", err)
	}
	if got := strings.Join(c.Names(), ","); got != "lab box,work-ssh" {
		t.Fatalf("Names = %q", got)
	}
	t.Run("defaults fill a profile", func(t *testing.T) {
		p, ok := c.Profile("work-ssh")
		if !ok {
			t.Fatal("no work-ssh")
		}
		if *p.Host != "gw.example.org" || *p.Port != 22 || *p.Time != 10 || p.Delay.Duration != 20*time.Millisecond {
			t.Fatalf("profile %+v", p)
		}
		if *p.KeyFile != "/home/u/.config/knockclient/default.key" {
			t.Fatalf("key_file %q: ~ not expanded from HOME", *p.KeyFile)
		}
		if p.PassphraseFile != nil || p.UDP != nil || p.Mode != nil {
			t.Fatalf("unset fields are set: %+v", p)
		}
		if strings.Join(p.Then, " ") != "ssh gw.example.org" {
			t.Fatalf("then %q", p.Then)
		}
	})
	t.Run("own secret replaces the default key", func(t *testing.T) {
		p, _ := c.Profile("lab box")
		if p.KeyFile != nil {
			t.Fatalf("default key_file leaked into a profile with passphrase_file: %q", *p.KeyFile)
		}
		if *p.PassphraseFile != filepath.Join("/etc/kc", "lab.pass") {
			t.Fatalf("relative passphrase_file %q not resolved against the config dir", *p.PassphraseFile)
		}
		if *p.Mode != cipher.Static || !*p.UDP || *p.Base != 40000 || *p.Family != 6 || !*p.WaitOpen ||
			p.WaitTimeout.Duration != 30*time.Second || *p.IP != "192.0.2.7" || *p.Time != 0 {
			t.Fatalf("profile %+v", p)
		}
	})
	t.Run("unknown profile", func(t *testing.T) {
		if _, ok := c.Profile("nope"); ok {
			t.Fatal("found a profile that does not exist")
		}
	})
}

func TestParseConfigErrors(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want string // the whole message, file:line: ...
	}{
		{"unknown key names file and line", "[profile.a]\nhost = \"h\"\nhots = \"x\"\n", `c.toml:3: unknown key "profile.a.hots"`},
		{"unknown table", "[profiles.a]\nhost = \"h\"\n", `c.toml:1: unknown key "profiles.a"`},
		{"unknown top-level key", "verbose = true\n", `c.toml:1: unknown key "verbose"`},
		{"syntax error", "[profile.a\nhost = 1\n", "c.toml:2: expected '.' or ']'"},
		{"wrong type", "[profile.a]\nport = \"22\"\n", "incompatible types"},
		{"port 0", "[profile.a]\nhost = \"h\"\nport = 0\n", "c.toml:3: profile.a.port: 0 out of range 1..65535"},
		{"port too large", "[profile.a]\nport = 70000\n", "c.toml:2: profile.a.port: 70000 out of range"},
		{"time over 255", "[profile.a]\n\ntime = 256\n", "c.toml:3: profile.a.time: 256 out of range 0..255"},
		{"bad mode", "[profile.a]\nmode = \"weekly\"\n", `c.toml:2: invalid mode "weekly" (want "timed" or "static")`},
		{"bad ip", "[defaults]\nip = \"2001:db8::1\"\n", "c.toml:2: defaults.ip: 2001:db8::1 is not IPv4"},
		{"both secrets", "[profile.a]\nkey_file = \"k\"\npassphrase_file = \"p\"\n", "c.toml:3: profile.a.passphrase_file: set key_file or passphrase_file, not both"},
		{"bad delay", "[profile.a]\ndelay = \"fast\"\n", `invalid duration "fast"`},
		{"delay out of range", "[profile.a]\ndelay = \"5s\"\n", "c.toml:2: profile.a.delay: delay 5s out of range"},
		{"family 5", "[profile.a]\nfamily = 5\n", "c.toml:2: profile.a.family: 5 is not 4 or 6"},
		{"empty then", "[profile.a]\nthen = []\n", "c.toml:2: profile.a.then: empty command"},
		{"base too high", "[profile.a]\nbase = 65300\n", "c.toml:2: profile.a.base: 65300 out of range 1..65280"},
		{"quoted dotted key", "[profile.\"x.y\"]\nhost = \"h\"\n\"bogus\" = 1\n", `c.toml:3: unknown key "profile.\"x.y\".bogus"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseConfig("c.toml", []byte(tt.in), env(nil))
			if err == nil {
				t.Fatalf("no error for %q", tt.in)
			}
			var ce *ConfigError
			if !errors.As(err, &ce) {
				t.Fatalf("error %T %v is not a *ConfigError", err, err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error = %q, want it to contain %q", err, tt.want)
			}
		})
	}
}

func TestLoadConfig(t *testing.T) {
	dir := t.TempDir()
	t.Run("missing is empty when allowed", func(t *testing.T) {
		c, err := LoadConfig(filepath.Join(dir, "none.toml"), true, env(nil))
		if err != nil || len(c.Profiles) != 0 {
			t.Fatalf("LoadConfig = %+v, %v", c, err)
		}
	})
	t.Run("missing is an error when named", func(t *testing.T) {
		if _, err := LoadConfig(filepath.Join(dir, "none.toml"), false, env(nil)); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("LoadConfig = %v", err)
		}
	})
	t.Run("directory", func(t *testing.T) {
		if _, err := LoadConfig(dir, false, env(nil)); err == nil || !strings.Contains(err.Error(), "is a directory") {
			t.Fatalf("LoadConfig(dir) = %v", err)
		}
	})
	t.Run("endless device is bounded", func(t *testing.T) {
		if runtime.GOOS == "windows" {
			t.Skip("no /dev/zero on Windows")
		}
		if _, err := LoadConfig("/dev/zero", false, env(nil)); err == nil || !strings.Contains(err.Error(), "larger than") {
			t.Fatalf("LoadConfig(/dev/zero) = %v", err)
		}
	})
	t.Run("reads a file", func(t *testing.T) {
		p := filepath.Join(dir, "c.toml")
		if err := os.WriteFile(p, []byte(goodConfig), 0o600); err != nil {
			t.Fatal(err)
		}
		c, err := LoadConfig(p, false, env(nil))
		if err != nil || len(c.Profiles) != 2 || c.Path != p {
			t.Fatalf("LoadConfig = %+v, %v", c, err)
		}
	})
}

func TestDefaultConfigPath(t *testing.T) {
	tests := []struct {
		name string
		env  map[string]string
		want string
		err  bool
	}{
		{"xdg wins", map[string]string{"XDG_CONFIG_HOME": "/x", "HOME": "/home/u"}, filepath.Join("/x", "knockclient", "config.toml"), false},
		{"relative xdg ignored", map[string]string{"XDG_CONFIG_HOME": "rel", "HOME": "/home/u"}, filepath.Join("/home/u", ".config", "knockclient", "config.toml"), false},
		{"home", map[string]string{"HOME": "/home/u"}, filepath.Join("/home/u", ".config", "knockclient", "config.toml"), false},
		{"appdata", map[string]string{"APPDATA": "/appdata"}, filepath.Join("/appdata", "knockclient", "config.toml"), false},
		{"nothing", nil, "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := DefaultConfigPath(env(tt.env))
			if (err != nil) != tt.err || got != tt.want {
				t.Fatalf("DefaultConfigPath = %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}

func TestParseAllow(t *testing.T) {
	tests := []struct {
		in, want, err string
	}{
		{"", "invalid IP", ""},
		{"0.0.0.0", "invalid IP", ""},
		{"203.0.113.7", "203.0.113.7", ""},
		{"::ffff:203.0.113.7", "203.0.113.7", ""},
		{"2001:db8::1", "", "is not IPv4"},
		{"999.1.1.1", "", "invalid IP address"},
		{"gw.example.org", "", "invalid IP address"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			a, err := ParseAllow(tt.in)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("ParseAllow error = %v, want %q", err, tt.err)
				}
				return
			}
			if err != nil || a.String() != tt.want {
				t.Fatalf("ParseAllow = %v, %v; want %s", a, err, tt.want)
			}
		})
	}
}

// FuzzParseConfig: the configuration parser and the line finder never
// panic, and errors are *ConfigError with a line inside the file.
func FuzzParseConfig(f *testing.F) {
	f.Add(goodConfig)
	f.Add("[profile.a]\nhost = \"h\"\nhots = \"x\"\n")
	f.Add("[profile.\"x.y\"]\n'bogus' = 1\n")
	f.Add("[[profile]]\nport = 1\n")
	f.Add("[defaults]\nip = \"::1\"\n")
	f.Fuzz(func(t *testing.T, in string) {
		_, err := ParseConfig("f.toml", []byte(in), env(map[string]string{"HOME": "/h"}))
		if err == nil {
			return
		}
		var ce *ConfigError
		if !errors.As(err, &ce) {
			t.Fatalf("error %T %v is not a *ConfigError", err, err)
		}
		if ce.Line < 0 || ce.Line > strings.Count(in, "\n")+1 {
			t.Fatalf("line %d outside the %d-line input", ce.Line, strings.Count(in, "\n")+1)
		}
	})
}
