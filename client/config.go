package client

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/knockdaemon/knock/cipher"
)

// Duration is a TOML duration written as a Go duration string ("15ms").
type Duration struct{ time.Duration }

// UnmarshalText implements encoding.TextUnmarshaler.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("invalid duration %q (want e.g. \"15ms\", \"10s\")", b)
	}
	d.Duration = v
	return nil
}

// Profile is one named target in the knockclient configuration file. A
// nil field is unset: the command line, then [defaults], then the built-in
// default fill it.
type Profile struct {
	Host           *string      `toml:"host"`
	Port           *int64       `toml:"port"`
	Time           *int64       `toml:"time"`
	IP             *string      `toml:"ip"`
	KeyFile        *string      `toml:"key_file"`
	PassphraseFile *string      `toml:"passphrase_file"`
	Mode           *cipher.Mode `toml:"mode"`
	UDP            *bool        `toml:"udp"`
	Base           *int64       `toml:"base"`
	Delay          *Duration    `toml:"delay"`
	Family         *int64       `toml:"family"`
	WaitOpen       *bool        `toml:"wait_open"`
	WaitTimeout    *Duration    `toml:"wait_timeout"`
	Then           []string     `toml:"then"`
}

// Config is a parsed knockclient configuration file:
//
//	[defaults]               # optional, applies to every profile
//	key_file = "~/.config/knockclient/work.key"
//
//	[profile.work-ssh]
//	host = "gw.example.org"
//	port = 22
//	time = 10
//	then = ["ssh", "gw.example.org"]
//
// Keys: host, port, time, ip, key_file, passphrase_file, mode ("timed" or
// "static"), udp, base, delay, family (4 or 6), wait_open, wait_timeout,
// then. Unknown keys are errors.
type Config struct {
	Path     string             `toml:"-"`
	Defaults Profile            `toml:"defaults"`
	Profiles map[string]Profile `toml:"profile"`
}

// ConfigError is an error in a configuration file, with its line when known.
type ConfigError struct {
	Path string
	Line int // 0 when unknown
	Msg  string
}

func (e *ConfigError) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("%s:%d: %s", e.Path, e.Line, e.Msg)
	}
	return fmt.Sprintf("%s: %s", e.Path, e.Msg)
}

// DefaultConfigPath returns $XDG_CONFIG_HOME/knockclient/config.toml, or
// else $HOME/.config/knockclient/config.toml (%APPDATA% on Windows when
// HOME is unset). getenv is os.Getenv outside tests.
func DefaultConfigPath(getenv func(string) string) (string, error) {
	if x := getenv("XDG_CONFIG_HOME"); x != "" && filepath.IsAbs(x) {
		return filepath.Join(x, "knockclient", "config.toml"), nil
	}
	if h := getenv("HOME"); h != "" {
		return filepath.Join(h, ".config", "knockclient", "config.toml"), nil
	}
	if a := getenv("APPDATA"); a != "" {
		return filepath.Join(a, "knockclient", "config.toml"), nil
	}
	return "", errors.New("cannot find the configuration directory: neither XDG_CONFIG_HOME nor HOME is set")
}

// maxConfigSize bounds the configuration file; it holds a few profiles.
const maxConfigSize = 1 << 20

// LoadConfig reads and checks the configuration file at path. When
// missingOK is true a missing file gives an empty Config. Relative
// key_file and passphrase_file paths are relative to the file's directory;
// "~/" means home (from getenv("HOME")).
func LoadConfig(path string, missingOK bool, getenv func(string) string) (*Config, error) {
	f, err := os.Open(path)
	if err != nil {
		if missingOK && errors.Is(err, fs.ErrNotExist) {
			return &Config{Path: path}, nil
		}
		return nil, err
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil && fi.IsDir() {
		return nil, &ConfigError{Path: path, Msg: "is a directory"}
	}
	data, err := io.ReadAll(io.LimitReader(f, maxConfigSize+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxConfigSize {
		return nil, &ConfigError{Path: path, Msg: fmt.Sprintf("larger than %d bytes", maxConfigSize)}
	}
	return ParseConfig(path, data, getenv)
}

// ParseConfig parses configuration data read from path (used in messages
// and to resolve relative paths).
func ParseConfig(path string, data []byte, getenv func(string) string) (*Config, error) {
	c := &Config{Path: path}
	md, err := toml.NewDecoder(bytes.NewReader(data)).Decode(c)
	if err != nil {
		var pe toml.ParseError
		if errors.As(err, &pe) {
			return nil, &ConfigError{Path: path, Line: pe.Position.Line, Msg: pe.Message}
		}
		return nil, &ConfigError{Path: path, Msg: strings.TrimPrefix(err.Error(), "toml: ")}
	}
	if und := md.Undecoded(); len(und) > 0 {
		k := und[0]
		return nil, &ConfigError{Path: path, Line: keyLine(data, k), Msg: fmt.Sprintf("unknown key %q", k.String())}
	}
	check := func(section []string, p *Profile) error {
		return p.check(func(field, msg string) error {
			k := append(slices.Clone(section), field)
			return &ConfigError{Path: path, Line: keyLine(data, k), Msg: fmt.Sprintf("%s: %s", strings.Join(k, "."), msg)}
		})
	}
	if err := check([]string{"defaults"}, &c.Defaults); err != nil {
		return nil, err
	}
	for _, name := range c.Names() {
		p := c.Profiles[name]
		if err := check([]string{"profile", name}, &p); err != nil {
			return nil, err
		}
		c.Profiles[name] = p
	}
	dir := filepath.Dir(path)
	home := getenv("HOME")
	fix := func(p **string) {
		if *p == nil {
			return
		}
		s := expandPath(**p, dir, home)
		*p = &s
	}
	fix(&c.Defaults.KeyFile)
	fix(&c.Defaults.PassphraseFile)
	for name, p := range c.Profiles {
		fix(&p.KeyFile)
		fix(&p.PassphraseFile)
		c.Profiles[name] = p
	}
	return c, nil
}

func expandPath(p, dir, home string) string {
	if home != "" && (p == "~" || strings.HasPrefix(p, "~/")) {
		return filepath.Join(home, p[1:])
	}
	if !filepath.IsAbs(p) && !strings.HasPrefix(p, "~") {
		return filepath.Join(dir, p)
	}
	return p
}

// check validates the set fields; bad(field, msg) builds the error.
func (p *Profile) check(bad func(field, msg string) error) error {
	if p.Host != nil && strings.TrimSpace(*p.Host) == "" {
		return bad("host", "empty host")
	}
	if p.Port != nil && (*p.Port < 1 || *p.Port > 65535) {
		return bad("port", fmt.Sprintf("%d out of range 1..65535", *p.Port))
	}
	if p.Time != nil && (*p.Time < 0 || *p.Time > 255) {
		return bad("time", fmt.Sprintf("%d out of range 0..255 (0 = no limit, 255 = close)", *p.Time))
	}
	if p.IP != nil {
		if _, err := ParseAllow(*p.IP); err != nil {
			return bad("ip", err.Error())
		}
	}
	if p.KeyFile != nil && p.PassphraseFile != nil {
		return bad("passphrase_file", "set key_file or passphrase_file, not both")
	}
	if p.KeyFile != nil && *p.KeyFile == "" {
		return bad("key_file", "empty path")
	}
	if p.PassphraseFile != nil && *p.PassphraseFile == "" {
		return bad("passphrase_file", "empty path")
	}
	if p.Base != nil && (*p.Base < 1 || *p.Base > cipher.MaxBase) {
		return bad("base", fmt.Sprintf("%d out of range 1..%d", *p.Base, cipher.MaxBase))
	}
	if p.Delay != nil {
		if err := CheckGap(p.Delay.Duration); err != nil {
			return bad("delay", err.Error())
		}
	}
	if p.Family != nil && *p.Family != 4 && *p.Family != 6 {
		return bad("family", fmt.Sprintf("%d is not 4 or 6", *p.Family))
	}
	if p.WaitTimeout != nil && (p.WaitTimeout.Duration <= 0 || p.WaitTimeout.Duration > MaxWaitTimeout) {
		return bad("wait_timeout", fmt.Sprintf("%v out of range (0, %v]", p.WaitTimeout.Duration, MaxWaitTimeout))
	}
	if p.Then != nil && (len(p.Then) == 0 || p.Then[0] == "") {
		return bad("then", "empty command")
	}
	return nil
}

// MaxWaitTimeout bounds --wait-open's timeout.
const MaxWaitTimeout = 10 * time.Minute

// Names returns the profile names, sorted.
func (c *Config) Names() []string {
	names := make([]string, 0, len(c.Profiles))
	for n := range c.Profiles {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Profile returns the named profile with [defaults] filled in.
func (c *Config) Profile(name string) (Profile, bool) {
	p, ok := c.Profiles[name]
	if !ok {
		return Profile{}, false
	}
	d := c.Defaults
	if p.KeyFile != nil || p.PassphraseFile != nil {
		// A profile's own secret replaces the default one entirely.
		d.KeyFile, d.PassphraseFile = nil, nil
	}
	fill(&p.Host, d.Host)
	fill(&p.Port, d.Port)
	fill(&p.Time, d.Time)
	fill(&p.IP, d.IP)
	fill(&p.KeyFile, d.KeyFile)
	fill(&p.PassphraseFile, d.PassphraseFile)
	fill(&p.Mode, d.Mode)
	fill(&p.UDP, d.UDP)
	fill(&p.Base, d.Base)
	fill(&p.Delay, d.Delay)
	fill(&p.Family, d.Family)
	fill(&p.WaitOpen, d.WaitOpen)
	fill(&p.WaitTimeout, d.WaitTimeout)
	if p.Then == nil {
		p.Then = d.Then
	}
	return p, true
}

// DefaultsProfile returns [defaults] alone (for commands given a bare host).
func (c *Config) DefaultsProfile() Profile { return c.Defaults }

func fill[T any](dst **T, def *T) {
	if *dst == nil {
		*dst = def
	}
}

// keyLine finds the line that defines key (or, for a table, its header or
// first key) in TOML data, or returns 0. It understands table headers and
// dotted, quoted keys, which is what configuration files use.
func keyLine(data []byte, key toml.Key) int {
	var table []string
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 64*1024), maxConfigSize)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		var full []string
		switch {
		case line == "" || line[0] == '#':
			continue
		case strings.HasPrefix(line, "[["):
			end := strings.Index(line, "]]")
			if end < 0 {
				continue
			}
			table = splitKey(line[2:end])
			full = table
		case line[0] == '[':
			end := strings.LastIndex(line, "]")
			if end < 0 {
				continue
			}
			table = splitKey(line[1:end])
			full = table
		default:
			eq := indexOutsideQuotes(line, '=')
			if eq < 0 {
				continue
			}
			full = append(slices.Clone(table), splitKey(line[:eq])...)
		}
		if len(full) >= len(key) && slices.Equal(full[:len(key)], []string(key)) {
			return n
		}
	}
	return 0
}

// splitKey splits a dotted TOML key, removing quotes and spaces.
func splitKey(s string) []string {
	var parts []string
	var cur strings.Builder
	var quote byte
	for i := 0; i < len(s); i++ {
		ch := s[i]
		switch {
		case quote != 0 && ch == quote:
			quote = 0
		case quote != 0:
			cur.WriteByte(ch)
		case ch == '"' || ch == '\'':
			quote = ch
		case ch == '.':
			parts = append(parts, strings.TrimSpace(cur.String()))
			cur.Reset()
		case ch == ' ' || ch == '\t':
		default:
			cur.WriteByte(ch)
		}
	}
	return append(parts, strings.TrimSpace(cur.String()))
}

func indexOutsideQuotes(s string, c byte) int {
	var quote byte
	for i := 0; i < len(s); i++ {
		switch ch := s[i]; {
		case quote != 0 && ch == quote:
			quote = 0
		case quote != 0:
		case ch == '"' || ch == '\'':
			quote = ch
		case ch == c:
			return i
		}
	}
	return -1
}
