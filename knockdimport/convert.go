package knockdimport

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/knockdaemon/knock/door"
	"github.com/knockdaemon/knock/rules"
)

// Warning is something Convert could not carry over as it was.
type Warning struct {
	Path string
	Line int
	Door string // "" for [options]
	Msg  string
}

func (w Warning) String() string {
	var b strings.Builder
	b.WriteString(w.Path)
	if w.Line > 0 {
		b.WriteString(":" + strconv.Itoa(w.Line))
	}
	b.WriteString(": ")
	if w.Door != "" {
		b.WriteString("[" + w.Door + "] ")
	}
	b.WriteString(w.Msg)
	return b.String()
}

// LookPath finds a command named without a path, as knockd's shell would
// through PATH. Convert uses it to make command paths absolute; tests
// replace it.
var LookPath = func(name string) (string, bool) {
	for _, dir := range []string{"/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"} {
		p := filepath.Join(dir, name)
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() && st.Mode().Perm()&0o111 != 0 {
			return p, true
		}
	}
	return "", false
}

// Result is a converted configuration.
type Result struct {
	TOML     []byte
	Warnings []Warning
	// Doors is how many doors were converted; Refused how many are in
	// TOML only as comments.
	Doors, Refused int
}

// Convert translates f into knockdaemon's configuration. Every door it
// writes compiles (door.Config.Compile) and the set passes door.CheckSet;
// a door that cannot be translated is written commented out, with the
// reason, so that the output always loads.
func Convert(f *File) *Result {
	c := &converter{f: f, names: map[string]bool{}}
	c.run()
	return &Result{TOML: c.out.Bytes(), Warnings: c.warns, Doors: c.doors, Refused: c.refused}
}

type converter struct {
	f        *File
	out      bytes.Buffer
	body     bytes.Buffer
	warns    []Warning
	names    map[string]bool
	doors    int
	refused  int
	compiled []*door.Door
	logged   []door.Step
	targets  []string
}

func (c *converter) warn(line int, d, format string, args ...any) {
	c.warns = append(c.warns, Warning{Path: c.f.Path, Line: line, Door: d, Msg: fmt.Sprintf(format, args...)})
}

func (c *converter) run() {
	o := c.f.Options
	if o.UseSyslog.Set() {
		c.warn(o.UseSyslog.Line, "", "UseSyslog: set log_output = \"syslog\" in your [daemon] table (the output holds only [[door]] tables, to be appended to your configuration)")
	}
	if o.Interface.Set() {
		c.warn(o.Interface.Line, "", "Interface = %s is not translated: knockdaemon reads the firewall log, so the LOG rule decides which interface counts (add -i %s to it, as in the header of the output)", o.Interface.Text, o.Interface.Text)
	}
	if o.LogFile.Set() {
		c.warn(o.LogFile.Line, "", "LogFile = %s is not translated: knockdaemon logs to stderr (journald under systemd) or to syslog ([daemon] log_output)", o.LogFile.Text)
	}
	if o.PidFile.Set() {
		c.warn(o.PidFile.Line, "", "PidFile = %s is not translated: knockdaemon does not fork; the service manager tracks it", o.PidFile.Text)
	}
	for _, d := range c.f.Doors {
		c.door(d)
	}
	if err := door.CheckSet(c.compiled); err != nil {
		for _, e := range strings.Split(err.Error(), "\n") {
			c.warn(0, "", "the doors do not load together: %s; edit the output", e)
		}
	}
	c.header()
	c.out.Write(c.body.Bytes())
}

func (c *converter) header() {
	w := &c.out
	fmt.Fprintf(w, "# knockdaemon doors converted from %s by `knockdaemon import-knockd`.\n", safe(c.f.Path))
	w.WriteString("# Read the warnings it printed; docs/DOORS.md describes every key.\n#\n")
	w.WriteString("# Plain knock sequences can be sniffed and replayed by anyone on the path.\n")
	w.WriteString("# Use encrypted knocks ([[user]]) for anything that matters.\n#\n")
	w.WriteString("# knockdaemon sees knocks in the firewall log, so the door ports need a LOG\n")
	w.WriteString("# rule ahead of the rule that drops them. Its prefix must start with\n")
	w.WriteString("# [source] prefix (\"knock:\" by default). For the doors below:\n#\n")
	iface := ""
	if c.f.Options.Interface.Set() {
		iface = "-i " + c.f.Options.Interface.Text + " "
	}
	rules := LogRules(c.logged, iface, "knock:door ")
	for _, rule := range rules {
		w.WriteString("#   " + safe(rule) + "\n")
	}
	if len(rules) == 0 {
		w.WriteString("#   (no door ports known here: list the ports of your one-time sequences)\n")
	}
	w.WriteString("#\n")
	if len(c.targets) > 0 {
		w.WriteString("# Some knockd doors had a Target: add -d ADDRESS to their LOG rule so that\n")
		w.WriteString("# only knocks to that address count (" + safe(strings.Join(c.targets, ", ")) + ").\n#\n")
	}
	if c.f.Options.UseSyslog.Set() {
		// Only [[door]] tables are written, so that the output can be
		// appended to an existing configuration; a [daemon] table here
		// would clash with the one already there.
		w.WriteString("# knockd had UseSyslog: set log_output = \"syslog\" in [daemon].\n#\n")
	}
}

// LogRules returns iptables and ip6tables commands that log knocks on
// steps with prefix (iface: "" or "-i IFACE "). They insert at the top of
// INPUT: LOG does not end the packet's way, so the admin's drop still
// applies after it.
func LogRules(steps []door.Step, iface, prefix string) []string {
	var tcp, udp []string
	seen := map[door.Step]bool{}
	for _, s := range steps {
		if seen[s] {
			continue
		}
		seen[s] = true
		if s.Proto == door.UDP {
			udp = append(udp, strconv.Itoa(int(s.Port)))
		} else {
			tcp = append(tcp, strconv.Itoa(int(s.Port)))
		}
	}
	var out []string
	for _, tool := range []string{"iptables", "ip6tables"} {
		for _, p := range []struct {
			proto string
			ports []string
		}{{"tcp", tcp}, {"udp", udp}} {
			for chunk := range slices.Chunk(p.ports, 15) { // multiport takes at most 15 ports
				out = append(out, fmt.Sprintf("%s -I INPUT %s-p %s -m multiport --dports %s -j LOG --log-prefix %q",
					tool, iface, p.proto, strings.Join(chunk, ","), prefix))
			}
		}
	}
	if len(tcp) > 0 {
		out = append(out, fmt.Sprintf("nft 'insert rule inet filter input %stcp dport { %s } log prefix %q'", nftIface(iface), strings.Join(tcp, ", "), prefix))
	}
	if len(udp) > 0 {
		out = append(out, fmt.Sprintf("nft 'insert rule inet filter input %sudp dport { %s } log prefix %q'", nftIface(iface), strings.Join(udp, ", "), prefix))
	}
	return out
}

func nftIface(iface string) string {
	if iface == "" {
		return ""
	}
	return "iifname " + strings.TrimSpace(strings.TrimPrefix(iface, "-i ")) + " "
}

var validName = func(s string) string {
	b := []byte(s)
	for i, ch := range b {
		if !(ch >= 'a' && ch <= 'z' || ch >= 'A' && ch <= 'Z' || ch >= '0' && ch <= '9' || ch == '_' || ch == '-' || ch == '.') {
			b[i] = '_'
		}
	}
	if len(b) > door.MaxNameLen-4 {
		b = b[:door.MaxNameLen-4]
	}
	return string(b)
}

func (c *converter) door(kd *Door) {
	name := validName(kd.Name)
	if name != kd.Name {
		c.warn(kd.Line, kd.Name, "renamed to %q: door names are letters, digits, '_', '-' and '.'", name)
	}
	if c.names[name] {
		base := name
		for i := 2; c.names[name]; i++ {
			name = fmt.Sprintf("%s-%d", base, i)
		}
		c.warn(kd.Line, kd.Name, "a second door of this name; renamed to %q", name)
	}
	c.names[name] = true
	for _, r := range kd.Repeated {
		c.warn(kd.Line, kd.Name, "%s given again; knockd uses the last value, so does this conversion", r)
	}

	dc := door.Config{Name: name}
	var notes []string // comments written above the door
	var refuse []string

	if kd.Sequence.Set() && kd.OneTimeSequences.Set() {
		// knockd: the one_time_sequences file overrides the sequence (both
		// fill the same field; the later line wins).
		if kd.OneTimeSequences.Line > kd.Sequence.Line {
			c.warn(kd.Sequence.Line, kd.Name, "both sequence and one_time_sequences: knockd uses the later line, one_time_sequences; sequence dropped")
			kd.Sequence = Value{}
		} else {
			c.warn(kd.OneTimeSequences.Line, kd.Name, "both sequence and one_time_sequences: knockd uses the later line, sequence; one_time_sequences dropped")
			kd.OneTimeSequences = Value{}
		}
	}
	if kd.Sequence.Set() {
		seq, err := door.ParseSequence(kd.Sequence.Text)
		if err != nil {
			refuse = append(refuse, fmt.Sprintf("line %d: sequence: %v", kd.Sequence.Line, err))
		} else {
			dc.Sequence = door.FormatSequence(seq)
			if door.Ascending(seq) {
				c.warn(kd.Sequence.Line, kd.Name, "sequence %s is in ascending order: a sequential port scan (nmap -r) knocks it; consider another order", dc.Sequence)
			}
			if len(seq) == 1 {
				c.warn(kd.Sequence.Line, kd.Name, "a single knock opens this door: any scan of port %s does", dc.Sequence)
			}
		}
	} else {
		dc.OneTimeSequences = kd.OneTimeSequences.Text
		if !filepath.IsAbs(dc.OneTimeSequences) {
			refuse = append(refuse, fmt.Sprintf("line %d: one_time_sequences %q is not an absolute path", kd.OneTimeSequences.Line, dc.OneTimeSequences))
		}
		c.warn(kd.OneTimeSequences.Line, kd.Name, "one-time sequences: knockdaemon reads %s in knockd's format and marks a used line by putting '#' in front of it (knockd overwrites its first character); the LOG rule must cover the ports of every sequence in the file, which the header cannot list", dc.OneTimeSequences)
	}

	timeout := 25
	if kd.SeqTimeout.Set() {
		timeout, _ = seconds(kd.SeqTimeout.Text)
		if timeout == 0 {
			c.warn(kd.SeqTimeout.Line, kd.Name, "seq_timeout 0 makes knockd drop every attempt at the next packet; using 1s")
			timeout = 1
		}
		if timeout > int(door.MaxSequenceTimeout.Seconds()) {
			c.warn(kd.SeqTimeout.Line, kd.Name, "seq_timeout %d is above knockdaemon's limit; using %v", timeout, door.MaxSequenceTimeout)
			timeout = int(door.MaxSequenceTimeout.Seconds())
		}
	} else {
		notes = append(notes, "sequence_timeout: knockd's default")
	}
	dc.SequenceTimeout = fmt.Sprintf("%ds", timeout)

	if kd.TCPFlags.Set() {
		fr, err := door.ParseFlagRule(kd.TCPFlags.Text)
		if err != nil {
			refuse = append(refuse, fmt.Sprintf("line %d: tcpflags: %v", kd.TCPFlags.Line, err))
		} else {
			dc.TCPFlags = fr.String()
		}
	}
	if kd.Target.Set() {
		c.warn(kd.Target.Line, kd.Name, "Target = %s is not translated: restrict this door's LOG rule to -d %s instead", kd.Target.Text, kd.Target.Text)
		c.targets = append(c.targets, kd.Name+": "+kd.Target.Text)
	}

	refuse = append(refuse, c.action(kd, &dc, &notes)...)

	if len(refuse) == 0 {
		d, err := dc.Compile()
		if err != nil {
			refuse = append(refuse, err.Error())
		} else {
			c.compiled = append(c.compiled, d)
			c.logged = append(c.logged, d.Sequence...)
			if d.OneTime != "" {
				if ot, err := door.OpenOneTime(d.OneTime); err == nil {
					for _, l := range ot.All() {
						c.logged = append(c.logged, l...)
					}
				} else {
					c.warn(kd.OneTimeSequences.Line, kd.Name, "cannot read %s here (%v); add the ports of its sequences to the LOG rule yourself", d.OneTime, err)
				}
			}
		}
	}
	w := &c.body
	fmt.Fprintf(w, "# knockd [%s], %s line %d\n", safe(kd.Name), safe(c.f.Path), kd.Line)
	prefix := ""
	if len(refuse) > 0 {
		c.refused++
		for _, r := range refuse {
			c.warn(kd.Line, kd.Name, "door not converted (left commented out): %s", r)
			fmt.Fprintf(w, "# NOT CONVERTED: %s\n", safe(r))
		}
		prefix = "# "
	} else {
		c.doors++
		for _, n := range notes {
			fmt.Fprintf(w, "# %s\n", safe(n))
		}
	}
	writeDoor(w, prefix, &dc)
	w.WriteString("\n")
}

// action translates the door's commands. The typical iptables pair
// becomes open/close through the backend; anything else stays a command.
// It returns reasons to refuse the door.
func (c *converter) action(kd *Door, dc *door.Config, notes *[]string) []string {
	if !kd.StartCommand.Set() && !kd.StartCommand6.Set() {
		if kd.StopCommand.Set() || kd.StopCommand6.Set() {
			return []string{"stop_command without start_command never runs in knockd either"}
		}
		return []string{"no command: the door does nothing"}
	}
	cmdTimeout := 10
	if kd.CmdTimeout.Set() {
		cmdTimeout, _ = seconds(kd.CmdTimeout.Text)
	}

	// Try the backend translation.
	if a, ok := c.translate(kd, cmdTimeout); ok {
		switch a.kind {
		case door.ActOpen:
			dc.Open = &door.OpenConfig{Ports: []string{strconv.Itoa(int(a.port))}, Proto: a.proto}
			if a.until {
				dc.CmdTimeout = "0s"
				*notes = append(*notes, "knockd ran no stop_command: the port stays open until a close door (or knockdaemon revoke) closes it")
				c.warn(kd.StartCommand.Line, kd.Name, "the opening has no time limit (knockd ran no stop_command), as before; consider cmd_timeout = \"1h\" or shorter")
			} else {
				dc.CmdTimeout = fmt.Sprintf("%ds", cmdTimeout)
			}
			c.warn(kd.StartCommand.Line, kd.Name, "iptables commands translated to open = { ports = [\"%d\"], proto = \"%s\" } through the backend: exact expiry, persisted across restarts, a re-knock extends instead of adding a second rule", a.port, a.proto)
		case door.ActClose:
			dc.Close = &door.OpenConfig{Ports: []string{strconv.Itoa(int(a.port))}, Proto: a.proto}
			c.warn(kd.StartCommand.Line, kd.Name, "iptables -D command translated to close = { ports = [\"%d\"], proto = \"%s\" } through the backend", a.port, a.proto)
		}
		*notes = append(*notes, a.notes...)
		return nil
	}

	// Keep the commands.
	var refuse []string
	conv := func(key string, v Value) *string {
		if !v.Set() {
			return nil
		}
		s, why := c.command(kd, key, v)
		if why != "" {
			refuse = append(refuse, fmt.Sprintf("line %d: %s: %s", v.Line, key, why))
		}
		return &s
	}
	if p := conv("start_command", kd.StartCommand); p != nil {
		dc.StartCommand = *p
	}
	if p := conv("stop_command", kd.StopCommand); p != nil {
		dc.StopCommand = *p
	}
	dc.StartCommand6 = conv("start_command_6", kd.StartCommand6)
	dc.StopCommand6 = conv("stop_command_6", kd.StopCommand6)
	if dc.StartCommand == "" {
		if dc.StartCommand6 == nil {
			return append(refuse, "no start_command")
		}
		// knockd: an IPv6-only door. knockdaemon's start_command is required;
		// run nothing for IPv4.
		refuse = append(refuse, "only start_command_6 is set; knockdaemon needs start_command (write the IPv4 command, or a no-op such as /bin/true)")
	}
	if dc.StopCommand != "" || (dc.StopCommand6 != nil && *dc.StopCommand6 != "") {
		dc.CmdTimeout = fmt.Sprintf("%ds", max(cmdTimeout, 1))
		if cmdTimeout == 0 {
			c.warn(kd.CmdTimeout.Line, kd.Name, "cmd_timeout 0: knockd runs stop_command right after start_command; using 1s")
		}
	} else if kd.CmdTimeout.Set() {
		c.warn(kd.CmdTimeout.Line, kd.Name, "cmd_timeout without stop_command has no effect; dropped")
	}
	if len(refuse) == 0 {
		c.warn(kd.StartCommand.Line, kd.Name, "commands kept as start_command/stop_command, run without a shell; their stop is not persisted across a restart of knockdaemon")
	}
	return refuse
}

// command checks one knockd command for knockdaemon: no shell syntax, an
// absolute command path. It returns the command to write and, when it
// cannot be used, why.
func (c *converter) command(kd *Door, key string, v Value) (string, string) {
	cmd := v.Text
	if cmd == "" {
		return "", ""
	}
	if s := door.ShellSyntax(cmd); s != "" {
		return cmd, fmt.Sprintf("%q needs a shell (%q), and knockdaemon runs commands without one; put the commands in a script and call the script", cmd, s)
	}
	argv, err := rules.SplitArgs(cmd)
	if err != nil {
		return cmd, err.Error()
	}
	if len(argv) == 0 {
		return "", ""
	}
	if !filepath.IsAbs(argv[0]) {
		p, ok := LookPath(argv[0])
		if !ok {
			return cmd, fmt.Sprintf("%q: command %q not found; knockdaemon needs an absolute path", cmd, argv[0])
		}
		c.warn(v.Line, kd.Name, "%s: %q is run as %s (knockdaemon needs an absolute path)", key, argv[0], p)
		cmd = p + cmd[strings.Index(cmd, argv[0])+len(argv[0]):]
	}
	return cmd, ""
}

type translated struct {
	kind  door.ActionKind
	port  uint16
	proto string
	until bool // open with no stop command
	notes []string
}

// translate recognises knockd's typical commands:
//
//	start: iptables -A INPUT -s %IP% -p tcp --dport 22 -j ACCEPT   (or -I INPUT [N])
//	stop:  iptables -D INPUT -s %IP% -p tcp --dport 22 -j ACCEPT   (optional)
//
// and the same for ip6tables in start_command_6/stop_command_6, or a lone
// -D as a close door. Anything else is not translated.
func (c *converter) translate(kd *Door, cmdTimeout int) (translated, bool) {
	start, ok := parseIPTables(kd.StartCommand.Text, false)
	if !ok {
		return translated{}, false
	}
	var stop *ipRule
	if kd.StopCommand.Set() {
		s, ok := parseIPTables(kd.StopCommand.Text, false)
		if !ok || s.op != "D" || !start.same(s) || start.op == "D" {
			return translated{}, false
		}
		stop = &s
	}
	// IPv6: knockd falls back to the IPv4 commands; an explicit IPv6 pair
	// must be the same rule for ip6tables.
	if kd.StartCommand6.Set() || kd.StopCommand6.Set() {
		if kd.StartCommand6.Set() != kd.StartCommand.Set() || kd.StopCommand6.Set() != kd.StopCommand.Set() {
			return translated{}, false
		}
		s6, ok := parseIPTables(kd.StartCommand6.Text, true)
		if !ok || s6.op != start.op || !s6.same(start) {
			return translated{}, false
		}
		if stop != nil {
			t6, ok := parseIPTables(kd.StopCommand6.Text, true)
			if !ok || t6.op != "D" || !t6.same(*stop) {
				return translated{}, false
			}
		}
	}
	t := translated{port: start.port, proto: start.proto}
	if start.noProto {
		t.notes = append(t.notes, "knockd's command had --dport without -p tcp, which iptables refuses; translated as tcp")
		c.warn(kd.StartCommand.Line, kd.Name, "the command has --dport without -p, which iptables refuses (\"unknown option --dport\"); translated as tcp")
	}
	if !kd.StartCommand6.Set() {
		t.notes = append(t.notes, "IPv6 knockers get the same opening (knockd ran the iptables command with their IPv6 address, which fails)")
	}
	switch {
	case start.op == "D":
		if kd.CmdTimeout.Set() {
			c.warn(kd.CmdTimeout.Line, kd.Name, "cmd_timeout on a door that only deletes a rule has no effect; dropped")
		}
		t.kind = door.ActClose
	case stop == nil:
		t.kind, t.until = door.ActOpen, true
		if kd.CmdTimeout.Set() {
			c.warn(kd.CmdTimeout.Line, kd.Name, "cmd_timeout without stop_command has no effect; dropped")
		}
	default:
		t.kind = door.ActOpen
		if cmdTimeout < 1 {
			return translated{}, false // kept as commands, with a warning there
		}
		if cmdTimeout > int(door.MaxOpenFor.Seconds()) {
			return translated{}, false
		}
	}
	return t, true
}

type ipRule struct {
	op      string // A, I, D
	chain   string
	proto   string
	port    uint16
	noProto bool
}

func (r ipRule) same(o ipRule) bool {
	return r.chain == o.chain && r.proto == o.proto && r.port == o.port
}

// parseIPTables parses "iptables -A INPUT -s %IP% -p tcp --dport 22 -j
// ACCEPT" in any option order; six reports whether ip6tables is expected.
// Any option beyond these makes it not the typical rule.
func parseIPTables(cmd string, six bool) (ipRule, bool) {
	var r ipRule
	if door.ShellSyntax(cmd) != "" {
		return r, false
	}
	argv, err := rules.SplitArgs(cmd)
	if err != nil || len(argv) < 2 {
		return r, false
	}
	tool := filepath.Base(argv[0])
	want := "iptables"
	if six {
		want = "ip6tables"
	}
	if tool != want && tool != want+"-legacy" && tool != want+"-nft" {
		return r, false
	}
	var src, target string
	var dport string
	for i := 1; i < len(argv); i++ {
		a := argv[i]
		next := func() (string, bool) {
			if i+1 >= len(argv) {
				return "", false
			}
			i++
			return argv[i], true
		}
		var ok bool
		switch a {
		case "-A", "--append", "-I", "--insert", "-D", "--delete":
			if r.op != "" {
				return r, false
			}
			r.op = map[string]string{"-A": "A", "--append": "A", "-I": "I", "--insert": "I", "-D": "D", "--delete": "D"}[a]
			if r.chain, ok = next(); !ok {
				return r, false
			}
			if r.op == "I" && i+1 < len(argv) {
				if _, err := strconv.Atoi(argv[i+1]); err == nil {
					i++ // rule number
				}
			}
		case "-s", "--source", "--src":
			if src, ok = next(); !ok {
				return r, false
			}
		case "-p", "--protocol":
			if r.proto, ok = next(); !ok {
				return r, false
			}
		case "--dport", "--destination-port":
			if dport, ok = next(); !ok {
				return r, false
			}
		case "-m", "--match":
			m, ok := next()
			if !ok || (m != "tcp" && m != "udp") {
				return r, false
			}
		case "-j", "--jump":
			if target, ok = next(); !ok {
				return r, false
			}
		case "-w", "--wait":
			if i+1 < len(argv) {
				if _, err := strconv.Atoi(argv[i+1]); err == nil {
					i++
				}
			}
		default:
			return r, false
		}
	}
	if r.op == "" || r.chain != "INPUT" || target != "ACCEPT" || (src != "%IP%" && src != "%IP%/32" && src != "%IP%/128") || dport == "" {
		return r, false
	}
	n, err := strconv.Atoi(dport)
	if err != nil || n < 1 || n > 65535 {
		return r, false
	}
	r.port = uint16(n)
	switch strings.ToLower(r.proto) {
	case "tcp", "udp":
		r.proto = strings.ToLower(r.proto)
	case "":
		r.proto, r.noProto = "tcp", true
	default:
		return r, false
	}
	return r, true
}

// safe makes s fit in a TOML comment: valid UTF-8, no control
// characters (a newline would end the comment).
func safe(s string) string {
	return strings.Map(func(r rune) rune {
		if r == utf8.RuneError || (r < 0x20 && r != '\t') || r == 0x7f {
			return '?'
		}
		return r
	}, strings.ToValidUTF8(s, "?"))
}

func writeDoor(w *bytes.Buffer, p string, dc *door.Config) {
	fmt.Fprintf(w, "%s[[door]]\n", p)
	kv := func(k, v string) {
		fmt.Fprintf(w, "%s%-18s = %s\n", p, k, v)
	}
	kv("name", Quote(dc.Name))
	if dc.Sequence != "" {
		kv("sequence", Quote(dc.Sequence))
	}
	if dc.OneTimeSequences != "" {
		kv("one_time_sequences", Quote(dc.OneTimeSequences))
	}
	kv("sequence_timeout", Quote(dc.SequenceTimeout))
	if dc.TCPFlags != "" {
		kv("tcp_flags", Quote(dc.TCPFlags))
	}
	openKV := func(k string, oc *door.OpenConfig) {
		ports := make([]string, len(oc.Ports))
		for i, p := range oc.Ports {
			ports[i] = Quote(p)
		}
		kv(k, fmt.Sprintf("{ ports = [%s], proto = %s }", strings.Join(ports, ", "), Quote(oc.Proto)))
	}
	if dc.Open != nil {
		openKV("open", dc.Open)
	}
	if dc.Close != nil {
		openKV("close", dc.Close)
	}
	if dc.StartCommand != "" {
		kv("start_command", Quote(dc.StartCommand))
	}
	if dc.StopCommand != "" {
		kv("stop_command", Quote(dc.StopCommand))
	}
	if dc.StartCommand6 != nil {
		kv("start_command_6", Quote(*dc.StartCommand6))
	}
	if dc.StopCommand6 != nil {
		kv("stop_command_6", Quote(*dc.StopCommand6))
	}
	if dc.CmdTimeout != "" {
		kv("cmd_timeout", Quote(dc.CmdTimeout))
	}
}

// Quote writes s as a TOML basic string.
func Quote(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"':
			b.WriteString(`\"`)
		case r == '\\':
			b.WriteString(`\\`)
		case r == '\t':
			b.WriteString(`\t`)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\r':
			b.WriteString(`\r`)
		case r == utf8.RuneError || r < 0x20 || r == 0x7f:
			fmt.Fprintf(&b, `\u%04X`, r)
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}
