// Package config loads knockdaemon's TOML configuration strictly: an
// unknown key, a wrong type or a value out of range is an error naming the
// file and the line, and nothing is silently ignored. Defaults are filled
// in for every key that is absent. Load checks the file alone; LoadKeys
// reads the users' secrets, refusing key and passphrase files that others
// can read. The schema is docs/ARCHITECTURE.md's and is documented key by
// key in docs/CONFIG.md.
package config

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/knockdaemon/knock/door"
	"github.com/knockdaemon/knock/logparse"
	"github.com/knockdaemon/knock/rules"
)

// DefaultPath is where the daemon looks for its configuration.
const DefaultPath = "/etc/knockdaemon/knockdaemon.toml"

// maxConfigSize bounds what Load reads: a config is a few kilobytes.
const maxConfigSize = 4 << 20

// Config is a loaded, validated configuration.
type Config struct {
	Path    string  `toml:"-"`
	Daemon  Daemon  `toml:"daemon"`
	Source  Source  `toml:"source"`
	Knock   Knock   `toml:"knock"`
	Backend Backend `toml:"backend"`
	Users   []User  `toml:"-"` // decoded one by one, see Parse
	// Doors are the knockd-style plain-sequence doors ([[door]],
	// docs/DOORS.md), compiled, in file order.
	Doors []*door.Door `toml:"-"`
	// DoorLines are the lines of the [[door]] headers, by door.
	DoorLines []int `toml:"-"`
}

// Daemon is the [daemon] table.
type Daemon struct {
	StateFile     string `toml:"state_file"`
	ControlSocket string `toml:"control_socket"`
	CloseOnExit   bool   `toml:"close_on_exit"`
	LogFormat     string `toml:"log_format"` // text | json
	LogOutput     string `toml:"log_output"` // stderr | syslog
	LogLevel      string `toml:"log_level"`  // debug | info | warn | error
}

// Source is the [source] table.
type Source struct {
	Type   string `toml:"type"` // auto | kmsg | file | journald | stdin
	Path   string `toml:"path"`
	Prefix string `toml:"prefix"`
}

// Knock is the [knock] table.
type Knock struct {
	Base                int      `toml:"base"`
	UDP                 bool     `toml:"udp"`
	TCPFlags            string   `toml:"tcp_flags"`
	SequenceTimeout     Duration `toml:"sequence_timeout"`
	MaxSkew             Duration `toml:"max_skew"`
	LockoutFailures     int      `toml:"lockout_failures"`
	Lockout             Duration `toml:"lockout"`
	MaxSources          int      `toml:"max_sources"`
	MaxHits             int      `toml:"max_hits"`
	StaticReplayHorizon Duration `toml:"static_replay_horizon"`

	// FlagsSet and FlagsClear come from TCPFlags: a TCP hit is a knock
	// when every flag in FlagsSet is set and every flag in FlagsClear is
	// clear.
	FlagsSet   logparse.Flags `toml:"-"`
	FlagsClear logparse.Flags `toml:"-"`
}

// Backend is the [backend] table.
type Backend struct {
	Type      string `toml:"type"` // iptables | nftables | ipset | ipfw | exec | dry-run
	Netns     string `toml:"netns"`
	Chain     string `toml:"chain"`
	Table     string `toml:"table"`
	NftChain  string `toml:"nft_chain"`
	Set       string `toml:"set"`
	RuleRange string `toml:"rule_range"`
	Open      string `toml:"open"`
	Close     string `toml:"close"`

	// RuleFirst and RuleLast come from RuleRange.
	RuleFirst, RuleLast int `toml:"-"`
}

// User is one [[user]]: a key and what it may open.
type User struct {
	Name           string   `toml:"name"`
	KeyFile        string   `toml:"key_file"`
	PassphraseFile string   `toml:"passphrase_file"`
	Mode           string   `toml:"mode"` // timed | static
	Ports          []string `toml:"ports"`
	Protocol       string   `toml:"protocol"` // tcp | udp | both
	MaxMinutes     int      `toml:"max_minutes"`
	AllowUnlimited bool     `toml:"allow_unlimited"`
	DelegateTo     []string `toml:"delegate_to"`
	Sources        []string `toml:"sources"`

	// Policy is what the fields above allow, ready for checking.
	Policy Policy `toml:"-"`
	// Line is where the user's [[user]] header is in the file.
	Line int `toml:"-"`
}

// Duration is a Go duration string in the file ("30s", "1m"). A bare
// number is refused: "10" would otherwise mean ten nanoseconds.
type Duration struct{ time.Duration }

// UnmarshalText parses a duration string.
func (d *Duration) UnmarshalText(b []byte) error {
	s := string(b)
	v, err := time.ParseDuration(s)
	if err != nil {
		if _, nerr := strconv.ParseFloat(s, 64); nerr == nil {
			return fmt.Errorf("duration %q has no unit: write it as a string such as \"%ss\"", s, s)
		}
		return fmt.Errorf("invalid duration %q (want a string such as \"30s\" or \"1m\")", s)
	}
	d.Duration = v
	return nil
}

// MarshalText writes the duration back as a string.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// Default returns the configuration with every default filled in and no
// users.
func Default() *Config {
	return &Config{
		Path: DefaultPath,
		Daemon: Daemon{
			StateFile:     "/var/lib/knockdaemon/state.json",
			ControlSocket: "/run/knockdaemon/control.sock",
			CloseOnExit:   true,
			LogFormat:     "text",
			LogOutput:     "stderr",
			LogLevel:      "info",
		},
		Source: Source{Type: "auto", Path: "/var/log/kern.log", Prefix: "knock:"},
		Knock: Knock{
			Base:                745,
			TCPFlags:            "syn",
			SequenceTimeout:     Duration{10 * time.Second},
			MaxSkew:             Duration{60 * time.Second},
			LockoutFailures:     3,
			Lockout:             Duration{60 * time.Second},
			MaxSources:          65536,
			MaxHits:             16,
			StaticReplayHorizon: Duration{24 * time.Hour},
			FlagsSet:            logparse.SYN,
			FlagsClear:          logparse.ACK,
		},
		Backend: Backend{
			Type:      "iptables",
			Chain:     "KNOCKDAEMON",
			Table:     "inet filter",
			NftChain:  "input",
			Set:       "knockdaemon",
			RuleRange: "10000-10999",
			RuleFirst: 10000,
			RuleLast:  10999,
		},
	}
}

func defaultUser() User {
	return User{Mode: "timed", Protocol: "tcp", MaxMinutes: 60}
}

// Error is a configuration error at a place in the file.
type Error struct {
	Path string
	Line int // 0 when the problem has no single line
	Msg  string
}

func (e *Error) Error() string {
	// One problem, one line: the decoder quotes raw input (a token with
	// its newline) in some messages.
	msg := strings.NewReplacer("\n", `\n`, "\r", `\r`).Replace(e.Msg)
	if e.Line > 0 {
		return fmt.Sprintf("%s:%d: %s", e.Path, e.Line, msg)
	}
	return fmt.Sprintf("%s: %s", e.Path, msg)
}

// Errors is every problem found in one file, in file order.
type Errors []*Error

func (es Errors) Error() string {
	var b strings.Builder
	for i, e := range es {
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(e.Error())
	}
	return b.String()
}

// Load reads and validates the configuration at path.
func Load(path string) (*Config, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	if !st.Mode().IsRegular() {
		return nil, &Error{Path: path, Msg: "not a regular file"}
	}
	buf, err := io.ReadAll(io.LimitReader(f, maxConfigSize+1))
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	if len(buf) > maxConfigSize {
		return nil, &Error{Path: path, Msg: fmt.Sprintf("file larger than %d bytes", maxConfigSize)}
	}
	return Parse(path, buf)
}

// file mirrors the document for decoding: users are kept undecoded so
// that each can be decoded alone and its errors placed on its own lines.
type file struct {
	Daemon  *Daemon          `toml:"daemon"`
	Source  *Source          `toml:"source"`
	Knock   *Knock           `toml:"knock"`
	Backend *Backend         `toml:"backend"`
	User    []toml.Primitive `toml:"user"`
	Door    []toml.Primitive `toml:"door"`
}

var lineRE = regexp.MustCompile(`^toml: line (\d+)(?: \(last key "([^"]*)"\))?: `)

// Parse validates data as the configuration file path.
func Parse(path string, data []byte) (*Config, error) {
	c := Default()
	c.Path = path
	pos := locate(data)
	doc := file{Daemon: &c.Daemon, Source: &c.Source, Knock: &c.Knock, Backend: &c.Backend}
	md, err := toml.NewDecoder(strings.NewReader(string(data))).Decode(&doc)
	if err != nil {
		return nil, tomlError(path, err, pos, -1)
	}
	var errs Errors
	add := func(line int, format string, args ...any) {
		errs = append(errs, &Error{Path: path, Line: line, Msg: fmt.Sprintf(format, args...)})
	}
	for i, prim := range doc.User {
		u := defaultUser()
		if err := md.PrimitiveDecode(prim, &u); err != nil {
			return nil, tomlError(path, err, pos, i)
		}
		u.Line = lineOf(pos, "user", i)
		c.Users = append(c.Users, u)
	}
	for i, prim := range doc.Door {
		var dc door.Config
		if err := md.PrimitiveDecode(prim, &dc); err != nil {
			return nil, tomlError(path, err, pos, i)
		}
		line := lineOf(pos, "door", i)
		d, err := dc.Compile()
		if err != nil {
			var fe *door.FieldError
			if errors.As(err, &fe) && fe.Key != "" {
				parts := strings.Split("door."+fe.Key, ".")
				for l := len(parts); l > 1; l-- {
					if n := lineOf(pos, strings.Join(parts[:l], "."), i); n > 0 {
						line = n
						break
					}
				}
			}
			name := fmt.Sprintf("door %d", i+1)
			if dc.Name != "" {
				name = fmt.Sprintf("door %q", dc.Name)
			}
			add(line, "%s: %v", name, err)
			continue
		}
		c.Doors = append(c.Doors, d)
		c.DoorLines = append(c.DoorLines, line)
	}
	// Unknown keys. Keys of array elements are matched to their
	// occurrences in file order.
	// A key inside an inline table ("open = { port = 1 }") is placed on
	// the line of the nearest enclosing key that is written out.
	seen := map[string]int{}
	for _, k := range md.Undecoded() {
		ks := k.String()
		n := seen[ks]
		seen[ks]++
		line := 0
		for l := len(k); l > 0 && line == 0; l-- {
			line = nthLine(pos, toml.Key(k[:l]).String(), n)
			n = 0
		}
		add(line, "unknown key %q", ks)
	}
	if len(errs) > 0 {
		return nil, errs
	}
	if err := door.CheckSet(c.Doors); err != nil {
		for _, e := range strings.Split(err.Error(), "\n") {
			add(0, "%s", e)
		}
		return nil, errs
	}
	c.validate(pos, add)
	if len(errs) > 0 {
		return nil, errs
	}
	return c, nil
}

// tomlError places a decoder error in the file. index is the [[user]]
// element being decoded, or -1.
func tomlError(path string, err error, pos []keyPos, index int) error {
	var pe toml.ParseError
	if errors.As(err, &pe) {
		line := pe.Position.Line
		msg := pe.Message
		if pe.LastKey != "" {
			if index >= 0 {
				if l := lineOf(pos, pe.LastKey, index); l > 0 {
					line = l
				}
			}
			msg = fmt.Sprintf("%s: %s", pe.LastKey, msg)
		}
		return &Error{Path: path, Line: line, Msg: msg}
	}
	msg := err.Error()
	line := 0
	if m := lineRE.FindStringSubmatch(msg); m != nil {
		line, _ = strconv.Atoi(m[1])
		msg = msg[len(m[0]):]
		if m[2] != "" {
			if index >= 0 {
				if l := lineOf(pos, m[2], index); l > 0 {
					line = l
				}
			}
			msg = m[2] + ": " + msg
		}
	} else {
		msg = strings.TrimPrefix(msg, "toml: ")
	}
	return &Error{Path: path, Line: line, Msg: msg}
}

var (
	chainRE = regexp.MustCompile(`^[A-Za-z0-9_-]{1,28}$`)
	setRE   = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,30}$`) // ipset names hold 31 bytes; the backend appends "6" for IPv6
	nsRE    = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,64}$`)
	nameRE  = regexp.MustCompile(`^[A-Za-z0-9_.@-]{1,64}$`)
	nftRE   = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_.-]{0,63}$`)
)

func oneOf(v string, allowed ...string) bool {
	for _, a := range allowed {
		if v == a {
			return true
		}
	}
	return false
}

// noRunner lets the config build a backend only to validate it.
type noRunner struct{}

func (noRunner) Run(context.Context, []string) ([]byte, error) {
	return nil, errors.New("config: validation only")
}

// resolve makes a relative path relative to the config file's directory
// (a daemon's working directory is nobody's business).
func (c *Config) resolve(p string) string {
	if p == "" || filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(filepath.Dir(c.Path), p)
}

// validate checks values and derives the parsed forms.
func (c *Config) validate(pos []keyPos, add func(int, string, ...any)) {
	at := func(key string) int { return lineOf(pos, key, -1) }
	c.Daemon.StateFile = c.resolve(c.Daemon.StateFile)
	c.Daemon.ControlSocket = c.resolve(c.Daemon.ControlSocket)
	c.Source.Path = c.resolve(c.Source.Path)
	for i := range c.Users {
		c.Users[i].KeyFile = c.resolve(c.Users[i].KeyFile)
		c.Users[i].PassphraseFile = c.resolve(c.Users[i].PassphraseFile)
	}
	d := &c.Daemon
	if d.StateFile == "" {
		add(at("daemon.state_file"), "daemon.state_file must not be empty")
	}
	if d.ControlSocket == "" {
		add(at("daemon.control_socket"), "daemon.control_socket must not be empty")
	} else if len(d.ControlSocket) > 104 {
		add(at("daemon.control_socket"), "daemon.control_socket is longer than a unix socket path may be (104 bytes)")
	}
	if !oneOf(d.LogFormat, "text", "json") {
		add(at("daemon.log_format"), "daemon.log_format %q: want text or json", d.LogFormat)
	}
	if !oneOf(d.LogOutput, "stderr", "syslog") {
		add(at("daemon.log_output"), "daemon.log_output %q: want stderr or syslog", d.LogOutput)
	}
	if !oneOf(d.LogLevel, "debug", "info", "warn", "error") {
		add(at("daemon.log_level"), "daemon.log_level %q: want debug, info, warn or error", d.LogLevel)
	}

	s := &c.Source
	if !oneOf(s.Type, "auto", "kmsg", "file", "journald", "stdin") {
		add(at("source.type"), "source.type %q: want auto, kmsg, file, journald or stdin", s.Type)
	}
	if s.Type == "file" && s.Path == "" {
		add(at("source.path"), "source.path must be set for type = \"file\"")
	}
	if strings.ContainsAny(s.Prefix, "\n\x00") {
		add(at("source.prefix"), "source.prefix must be one line")
	}
	// The parser reports the LOG prefix without its surrounding white space
	// (the kernel prints "knock: IN=..." for --log-prefix "knock: "), so the
	// prefix copied from the LOG rule must match the same way.
	s.Prefix = strings.TrimSpace(s.Prefix)

	k := &c.Knock
	if k.Base < 1 || k.Base+255 > 65535 {
		add(at("knock.base"), "knock.base %d: want 1..65280 so that base+255 is a port", k.Base)
	}
	// Door ports are handed to the doors before the knock-range filter: a
	// door knock inside the range would swallow encrypted knocks there.
	for i, dr := range c.Doors {
		for _, st := range dr.Steps() {
			if int(st.Port) >= k.Base && int(st.Port) <= k.Base+255 {
				line := lineOf(pos, "door.sequence", i)
				if line == 0 && i < len(c.DoorLines) {
					line = c.DoorLines[i]
				}
				add(line, "door %q: knock %s is inside the knock ports %d-%d of the encrypted knocks; use ports outside them", dr.Name, st, k.Base, k.Base+255)
				break
			}
		}
	}
	set, clear, err := ParseTCPFlags(k.TCPFlags)
	if err != nil {
		add(at("knock.tcp_flags"), "knock.tcp_flags: %v", err)
	}
	k.FlagsSet, k.FlagsClear = set, clear
	for _, dv := range []struct {
		key string
		d   time.Duration
	}{
		{"sequence_timeout", k.SequenceTimeout.Duration},
		{"max_skew", k.MaxSkew.Duration},
		{"lockout", k.Lockout.Duration},
		{"static_replay_horizon", k.StaticReplayHorizon.Duration},
	} {
		if dv.d <= 0 {
			add(at("knock."+dv.key), "knock.%s must be positive", dv.key)
		}
	}
	if k.MaxSkew.Duration > time.Hour {
		add(at("knock.max_skew"), "knock.max_skew %s: at most 1h (each 30s is another window to try per key)", k.MaxSkew)
	}
	if k.SequenceTimeout.Duration > time.Hour {
		add(at("knock.sequence_timeout"), "knock.sequence_timeout %s: at most 1h", k.SequenceTimeout)
	}
	if k.Lockout.Duration > 24*time.Hour {
		add(at("knock.lockout"), "knock.lockout %s: at most 24h", k.Lockout)
	}
	if k.LockoutFailures < 1 || k.LockoutFailures > 255 {
		add(at("knock.lockout_failures"), "knock.lockout_failures %d: want 1..255", k.LockoutFailures)
	}
	if k.MaxSources < 1 || k.MaxSources > 1<<22 {
		add(at("knock.max_sources"), "knock.max_sources %d: want 1..4194304", k.MaxSources)
	}
	if k.MaxHits < 8 || k.MaxHits > 255 {
		add(at("knock.max_hits"), "knock.max_hits %d: want 8..255 (a sequence is 8 knocks)", k.MaxHits)
	}

	b := &c.Backend
	if !oneOf(b.Type, "iptables", "nftables", "ipset", "ipfw", "exec", "dry-run") {
		add(at("backend.type"), "backend.type %q: want iptables, nftables, ipset, ipfw, exec or dry-run", b.Type)
	}
	if b.Netns != "" && !nsRE.MatchString(b.Netns) {
		add(at("backend.netns"), "backend.netns %q is not a namespace name", b.Netns)
	}
	if !chainRE.MatchString(b.Chain) {
		add(at("backend.chain"), "backend.chain %q: want 1 to 28 letters, digits, _ or -", b.Chain)
	}
	if f := strings.Fields(b.Table); len(f) != 2 || !oneOf(f[0], "ip", "ip6", "inet") || !nftRE.MatchString(f[1]) {
		add(at("backend.table"), "backend.table %q: want \"FAMILY NAME\" with family inet, ip or ip6, for example \"inet filter\"", b.Table)
	}
	if !nftRE.MatchString(b.NftChain) {
		add(at("backend.nft_chain"), "backend.nft_chain %q is not a chain name", b.NftChain)
	}
	if !setRE.MatchString(b.Set) {
		add(at("backend.set"), "backend.set %q: want 1 to 30 letters, digits, _, . or - (the IPv6 set adds a 6)", b.Set)
	}
	if r, err := ParsePortRange(b.RuleRange); err != nil {
		add(at("backend.rule_range"), "backend.rule_range: %v", err)
	} else {
		b.RuleFirst, b.RuleLast = int(r.First), int(r.Last)
	}
	if b.Type == "exec" {
		switch {
		case strings.TrimSpace(b.Open) == "":
			add(at("backend.open"), "backend.open must be set for type = \"exec\"")
		case strings.TrimSpace(b.Close) == "":
			add(at("backend.close"), "backend.close must be set for type = \"exec\"")
		default:
			// The backend's own template checks (quoting, placeholders),
			// placed on the template's line.
			if _, err := rules.NewExec(noRunner{}, b.Open, b.Close); err != nil {
				key := "backend.open"
				if strings.Contains(err.Error(), "close template") {
					key = "backend.close"
				}
				add(at(key), "%s: %v", key, err)
			}
		}
	}

	if len(c.Users) == 0 && len(c.Doors) == 0 {
		add(0, "no [[user]]: add at least one user with a key_file or passphrase_file")
	}
	names := map[string]int{}
	for i := range c.Users {
		c.Users[i].validate(pos, i, names, add)
	}
}

func (u *User) validate(pos []keyPos, i int, names map[string]int, add func(int, string, ...any)) {
	at := func(key string) int {
		if l := lineOf(pos, "user."+key, i); l > 0 {
			return l
		}
		return u.Line
	}
	who := fmt.Sprintf("user %d", i+1)
	switch {
	case u.Name == "":
		add(u.Line, "%s: name must be set", who)
	case !nameRE.MatchString(u.Name):
		add(at("name"), "%s: name %q: want 1 to 64 letters, digits, _, ., @ or -", who, u.Name)
	default:
		who = fmt.Sprintf("user %q", u.Name)
		if first, dup := names[u.Name]; dup {
			add(at("name"), "%s is defined twice (first at line %d)", who, first)
		} else {
			names[u.Name] = at("name")
		}
	}
	switch {
	case u.KeyFile == "" && u.PassphraseFile == "":
		add(u.Line, "%s: set key_file or passphrase_file", who)
	case u.KeyFile != "" && u.PassphraseFile != "":
		add(at("passphrase_file"), "%s: set only one of key_file and passphrase_file", who)
	}
	if !oneOf(u.Mode, "timed", "static") {
		add(at("mode"), "%s: mode %q: want timed or static", who, u.Mode)
	}
	p := Policy{MaxMinutes: u.MaxMinutes, AllowUnlimited: u.AllowUnlimited}
	switch u.Protocol {
	case "tcp":
		p.Protos = []string{"tcp"}
	case "udp":
		p.Protos = []string{"udp"}
	case "both":
		p.Protos = []string{"tcp", "udp"}
	default:
		add(at("protocol"), "%s: protocol %q: want tcp, udp or both", who, u.Protocol)
	}
	if len(u.Ports) == 0 {
		add(u.Line, "%s: ports must list at least one port or range, for example [\"22\"]", who)
	}
	for _, s := range u.Ports {
		r, err := ParsePortRange(s)
		if err != nil {
			add(at("ports"), "%s: ports: %v", who, err)
			continue
		}
		p.Ports = append(p.Ports, r)
	}
	if u.MaxMinutes < 1 || u.MaxMinutes > 254 {
		add(at("max_minutes"), "%s: max_minutes %d: want 1..254", who, u.MaxMinutes)
	}
	for _, s := range u.DelegateTo {
		pfx, err := parsePrefix(s)
		if err != nil {
			add(at("delegate_to"), "%s: delegate_to: %v", who, err)
			continue
		}
		if !pfx.Addr().Is4() {
			add(at("delegate_to"), "%s: delegate_to %q: a request names an IPv4 address, so only IPv4 networks can be delegated to", who, s)
			continue
		}
		p.DelegateTo = append(p.DelegateTo, pfx)
	}
	for _, s := range u.Sources {
		pfx, err := parsePrefix(s)
		if err != nil {
			add(at("sources"), "%s: sources: %v", who, err)
			continue
		}
		p.Sources = append(p.Sources, pfx)
	}
	u.Policy = p
}

// parsePrefix accepts a network ("198.51.100.0/24") or a single address.
func parsePrefix(s string) (netip.Prefix, error) {
	if !strings.Contains(s, "/") {
		a, err := netip.ParseAddr(s)
		if err != nil || a.Zone() != "" {
			return netip.Prefix{}, fmt.Errorf("%q is not a network or address", s)
		}
		a = a.Unmap()
		return netip.PrefixFrom(a, a.BitLen()), nil
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%q is not a network (want for example \"198.51.100.0/24\")", s)
	}
	if p.Addr().Is4In6() {
		p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
		if p.Bits() < 0 {
			return netip.Prefix{}, fmt.Errorf("%q is not a network", s)
		}
	}
	if p.Masked() != p {
		return netip.Prefix{}, fmt.Errorf("%q has host bits set; did you mean %q?", s, p.Masked().String())
	}
	return p, nil
}

// PortRange is an inclusive range of ports.
type PortRange struct{ First, Last uint16 }

// Contains reports whether port is in r.
func (r PortRange) Contains(port uint16) bool { return port >= r.First && port <= r.Last }

func (r PortRange) String() string {
	if r.First == r.Last {
		return strconv.Itoa(int(r.First))
	}
	return fmt.Sprintf("%d-%d", r.First, r.Last)
}

// ParsePortRange parses "22" or "8000-8010" (ports 1..65535).
func ParsePortRange(s string) (PortRange, error) {
	lo, hi, isRange := strings.Cut(s, "-")
	first, err := parsePort(lo)
	if err != nil {
		return PortRange{}, fmt.Errorf("%q: %v", s, err)
	}
	last := first
	if isRange {
		if last, err = parsePort(hi); err != nil {
			return PortRange{}, fmt.Errorf("%q: %v", s, err)
		}
		if last < first {
			return PortRange{}, fmt.Errorf("%q: range ends before it starts", s)
		}
	}
	return PortRange{first, last}, nil
}

func parsePort(s string) (uint16, error) {
	if s == "" || len(s) > 5 {
		return 0, errors.New("want a port 1..65535 or a range such as 8000-8010")
	}
	for _, c := range []byte(s) {
		if c < '0' || c > '9' {
			return 0, errors.New("want a port 1..65535 or a range such as 8000-8010")
		}
	}
	n, _ := strconv.Atoi(s)
	if n < 1 || n > 65535 {
		return 0, fmt.Errorf("port %d out of range 1..65535", n)
	}
	return uint16(n), nil
}

var flagNames = map[string]logparse.Flags{
	"fin": logparse.FIN, "syn": logparse.SYN, "rst": logparse.RST, "psh": logparse.PSH,
	"ack": logparse.ACK, "urg": logparse.URG, "ece": logparse.ECE, "cwr": logparse.CWR,
}

// ParseTCPFlags parses knockd's tcpflags spelling: a comma-separated list
// of flags that must be set, "!flag" for a flag that must be clear. ACK
// must be clear unless it is named: a packet with ACK belongs to an
// established exchange and is never a knock.
func ParseTCPFlags(s string) (set, clear logparse.Flags, err error) {
	if strings.TrimSpace(s) == "" {
		return 0, 0, errors.New("empty: want a list such as \"syn\" or \"syn,!ack\"")
	}
	for _, f := range strings.Split(s, ",") {
		f = strings.ToLower(strings.TrimSpace(f))
		neg := strings.HasPrefix(f, "!")
		f = strings.TrimPrefix(f, "!")
		bit, ok := flagNames[f]
		if !ok {
			return 0, 0, fmt.Errorf("unknown flag %q (want fin, syn, rst, psh, ack, urg, ece, cwr, each optionally with !)", f)
		}
		if neg {
			clear |= bit
		} else {
			set |= bit
		}
	}
	if set&clear != 0 {
		return 0, 0, fmt.Errorf("%q requires a flag both set and clear", s)
	}
	if set&logparse.ACK == 0 {
		clear |= logparse.ACK
	}
	return set, clear, nil
}
