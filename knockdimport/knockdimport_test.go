package knockdimport

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/knockdaemon/knock/door"
)

// loaded is the converted TOML read back strictly, as the daemon's config
// reads [[door]] tables.
type loaded struct {
	Daemon *struct {
		LogOutput string `toml:"log_output"`
	} `toml:"daemon"`
	Door []door.Config `toml:"door"`
}

func convertFile(t *testing.T, name string) (*Result, loaded, []*door.Door) {
	t.Helper()
	f, err := Load(filepath.Join("testdata", name))
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	r := Convert(f)
	var l loaded
	md, err := toml.Decode(string(r.TOML), &l)
	if err != nil {
		t.Fatalf("output is not TOML: %v\n%s", err, r.TOML)
	}
	if und := md.Undecoded(); len(und) > 0 {
		t.Fatalf("output has keys the schema does not know: %v\n%s", und, r.TOML)
	}
	var doors []*door.Door
	for i := range l.Door {
		d, err := l.Door[i].Compile()
		if err != nil {
			t.Fatalf("door %d does not compile: %v\n%s", i, err, r.TOML)
		}
		doors = append(doors, d)
	}
	if err := door.CheckSet(doors); err != nil {
		t.Fatalf("doors do not load together: %v", err)
	}
	if len(doors) != r.Doors {
		t.Fatalf("Result.Doors %d, output has %d", r.Doors, len(doors))
	}
	return r, l, doors
}

type wantDoor struct {
	name, seq, onetime string
	timeout            time.Duration
	flags              string
	kind               door.ActionKind
	ports              []uint16
	protos             []string
	cmdTimeout         time.Duration
	start              string // argv joined by spaces
	start6Nil          bool
}

func TestConvertFixtures(t *testing.T) {
	tests := []struct {
		file     string
		syslog   bool
		doors    []wantDoor
		refused  int
		warnings []string
	}{
		{
			file: "debian-knockd.conf", syslog: true,
			doors: []wantDoor{
				{name: "openSSH", seq: "7000,8000,9000", timeout: 5 * time.Second, flags: "syn", kind: door.ActOpen, ports: []uint16{22}, protos: []string{"tcp"}, cmdTimeout: 0},
				{name: "closeSSH", seq: "9000,8000,7000", timeout: 5 * time.Second, flags: "syn", kind: door.ActClose, ports: []uint16{22}, protos: []string{"tcp"}},
				{name: "openHTTPS", seq: "12345,54321,24680,13579", timeout: 5 * time.Second, flags: "syn", kind: door.ActCommand,
					start: "/usr/local/sbin/knock_add -i -c INPUT -p tcp -d 443 -f %IP%"},
			},
			warnings: []string{
				"debian-knockd.conf:5: [openSSH] sequence 7000,8000,9000 is in ascending order",
				"debian-knockd.conf:2: UseSyslog: set log_output",
				"debian-knockd.conf:7: [openSSH] iptables commands translated to open",
				"debian-knockd.conf:7: [openSSH] the opening has no time limit",
				"debian-knockd.conf:13: [closeSSH] iptables -D command translated to close",
				"debian-knockd.conf:19: [openHTTPS] commands kept",
			},
		},
		{
			file: "man-example1.conf",
			doors: []wantDoor{
				{name: "openSSH", seq: "7000,8000,9000", timeout: 10 * time.Second, flags: "syn", kind: door.ActOpen, ports: []uint16{22}, protos: []string{"tcp"}},
				{name: "closeSSH", seq: "9000,8000,7000", timeout: 10 * time.Second, flags: "syn", kind: door.ActClose, ports: []uint16{22}, protos: []string{"tcp"}},
			},
			warnings: []string{
				"man-example1.conf:2: LogFile = /var/log/knockd.log is not translated",
				"man-example1.conf:8: [openSSH] the command has --dport without -p",
			},
		},
		{
			file: "man-example2.conf",
			doors: []wantDoor{
				{name: "opencloseSSH", seq: "2222:udp,3333,4444:udp", timeout: 15 * time.Second, flags: "syn,ack", kind: door.ActCommand, cmdTimeout: 5 * time.Second,
					start: "/usr/sbin/iptables -A INPUT -s %IP% -p tcp --syn -j ACCEPT"},
			},
			warnings: []string{"man-example2.conf:8: [opencloseSSH] commands kept"},
		},
		{
			file: "man-example3.conf",
			doors: []wantDoor{
				{name: "opencloseSMTP", onetime: "/etc/knockd/smtp_sequences", timeout: 15 * time.Second, flags: "fin,!ack", kind: door.ActOpen,
					ports: []uint16{25}, protos: []string{"tcp"}, cmdTimeout: 5 * time.Second},
			},
			warnings: []string{"man-example3.conf:5: [opencloseSMTP] one-time sequences", "man-example3.conf:8: [opencloseSMTP] iptables commands translated to open"},
		},
		{
			file: "man-example4.conf",
			doors: []wantDoor{
				{name: "opencloseSMTP", onetime: "/etc/knockd/smtp_sequences", timeout: 15 * time.Second, flags: "fin,!ack", kind: door.ActOpen,
					ports: []uint16{25}, protos: []string{"tcp"}, cmdTimeout: 5 * time.Second},
			},
		},
		{
			file: "udp-doors.conf", syslog: true, refused: 1,
			doors: []wantDoor{
				{name: "openDNS", seq: "1111:udp,2222:udp,3333:udp", timeout: 20 * time.Second, kind: door.ActOpen, ports: []uint16{53}, protos: []string{"udp"}, cmdTimeout: time.Minute},
			},
			warnings: []string{
				"udp-doors.conf:4: Interface = eth1 is not translated",
				"udp-doors.conf:15: [wake] Target = 192.168.1.10 is not translated",
				`udp-doors.conf:13: [wake] door not converted (left commented out): line 16: start_command: "etherwake 00:11:22:33:44:55": command "etherwake" not found`,
			},
		},
		{
			file: "shell.conf", refused: 2,
			doors: []wantDoor{
				{name: "quoted", seq: "5000,6000,4000", timeout: 25 * time.Second, kind: door.ActCommand, start: "/usr/bin/logger -t knockd door opened; by %IP%", start6Nil: true},
			},
			warnings: []string{
				`shell.conf:1: [openSSH] door not converted (left commented out): line 3: start_command:`,
				`needs a shell ("&&")`,
				`needs a shell (">")`,
			},
		},
		{
			file: "mixed.conf",
			doors: []wantDoor{
				{name: "open_ssh", seq: "6000,5000,7000", timeout: 8 * time.Second, flags: "syn,!ack", kind: door.ActOpen, ports: []uint16{22}, protos: []string{"tcp"}},
				{name: "open_ssh-2", seq: "6001,5001,7001", timeout: 25 * time.Second, kind: door.ActClose, ports: []uint16{22}, protos: []string{"tcp"}},
			},
			warnings: []string{
				"mixed.conf:2: PidFile",
				`mixed.conf:4: [open ssh] renamed to "open_ssh"`,
				"START_COMMAND (line 9) given again",
				`a second door of this name; renamed to "open_ssh-2"`,
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.file, func(t *testing.T) {
			r, l, doors := convertFile(t, tc.file)
			if l.Daemon != nil {
				t.Errorf("the output has a [daemon] table; it must hold only [[door]] tables, to be appended to a configuration")
			}
			if strings.Contains(string(r.TOML), `# knockd had UseSyslog: set log_output = "syslog" in [daemon].`) != tc.syslog {
				t.Errorf("UseSyslog comment present: want %v", tc.syslog)
			}
			if r.Refused != tc.refused {
				t.Errorf("refused %d, want %d", r.Refused, tc.refused)
			}
			if len(doors) != len(tc.doors) {
				t.Fatalf("%d doors, want %d\n%s", len(doors), len(tc.doors), r.TOML)
			}
			for i, w := range tc.doors {
				d := doors[i]
				a := d.Action
				if d.Name != w.name || door.FormatSequence(d.Sequence) != w.seq || d.OneTime != w.onetime || d.Timeout != w.timeout ||
					d.Flags.String() != w.flags || a.Kind != w.kind || !slices.Equal(a.Ports, w.ports) || !slices.Equal(a.Protos, w.protos) ||
					d.CmdTimeout != w.cmdTimeout || strings.Join(a.Start, " ") != w.start || (a.Start6 == nil) != (w.start6Nil || w.start == "") {
					t.Errorf("door %d:\n got %+v %+v\nwant %+v", i, d, a, w)
				}
			}
			var all []string
			for _, w := range r.Warnings {
				all = append(all, w.String())
			}
			joined := strings.Join(all, "\n")
			for _, w := range tc.warnings {
				if !strings.Contains(joined, w) {
					t.Errorf("no warning %q in:\n%s", w, joined)
				}
			}
		})
	}
}

func TestConvertLogRules(t *testing.T) {
	r, _, _ := convertFile(t, "man-example2.conf")
	for _, want := range []string{
		`#   iptables -I INPUT -p tcp -m multiport --dports 3333 -j LOG --log-prefix "knock:door "`,
		`#   iptables -I INPUT -p udp -m multiport --dports 2222,4444 -j LOG --log-prefix "knock:door "`,
		`#   nft 'insert rule inet filter input udp dport { 2222, 4444 } log prefix "knock:door "'`,
		"# Plain knock sequences can be sniffed and replayed by anyone on the path.",
	} {
		if !strings.Contains(string(r.TOML), want+"\n") {
			t.Errorf("output lacks %q:\n%s", want, r.TOML)
		}
	}
	// Refused doors' ports are not logged.
	r, _, _ = convertFile(t, "shell.conf")
	if strings.Contains(string(r.TOML), "7001") && strings.Contains(string(r.TOML), "--dports 7001") {
		t.Errorf("LOG rule lists the ports of a door that was not converted:\n%s", r.TOML)
	}
	// More than 15 ports are split over several multiport rules.
	var steps []door.Step
	for p := range uint16(20) {
		steps = append(steps, door.Step{Port: 1000 + p, Proto: door.TCP})
	}
	rules := LogRules(steps, "", "knock:door ")
	if len(rules) != 5 || !strings.Contains(rules[0], "1000,") || !strings.Contains(rules[1], "--dports 1015,1016,1017,1018,1019 ") {
		t.Errorf("rules for 20 ports: %q", rules)
	}
}

func TestConvertOneTimeFileReadable(t *testing.T) {
	dir := t.TempDir()
	seqs := filepath.Join(dir, "seqs")
	os.WriteFile(seqs, []byte(" 1000,2000:udp,3000\n#4000,5000\n 6000,7000\n"), 0o600)
	conf := "[ot]\none_time_sequences = " + seqs + "\nstart_command = /bin/true\n"
	f, err := Parse("ot.conf", []byte(conf))
	if err != nil {
		t.Fatal(err)
	}
	out := string(Convert(f).TOML)
	for _, want := range []string{"--dports 1000,3000,6000,7000 ", "-p udp -m multiport --dports 2000 "} {
		if !strings.Contains(out, want) {
			t.Errorf("LOG rules do not cover the file's sequences (%q):\n%s", want, out)
		}
	}
}

func TestParseWindowsFile(t *testing.T) {
	data := "\ufeff[options]\r\n\tUseSyslog\r\n\r\n[openSSH]\r\n\tsequence = 7000,8000,9000\r\n\tcommand = /sbin/iptables -A INPUT -s %IP% -p tcp --dport 22 -j ACCEPT\r\n"
	f, err := Parse("win.conf", []byte(data))
	if err != nil {
		t.Fatal(err)
	}
	if !f.Options.UseSyslog.Set() || len(f.Doors) != 1 || f.Doors[0].Sequence.Text != "7000,8000,9000" ||
		f.Doors[0].StartCommand.Text != "/sbin/iptables -A INPUT -s %IP% -p tcp --dport 22 -j ACCEPT" {
		t.Fatalf("parsed %+v %+v", f.Options, f.Doors[0])
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct{ file, want string }{
		{"bad-outside.conf", "bad-outside.conf:1: \"sequence = 1,2,3\" is outside any section"},
		{"bad-option.conf", `bad-option.conf:4: unknown directive "VERBOSE" in [options]`},
		{"bad-nosequence.conf", "bad-nosequence.conf:5: door [b] has no sequence"},
		{"bad-timeout.conf", `bad-timeout.conf:3: door [a]: seq_timeout: "ten" is not a number of seconds`},
		{"bad-syntax.conf", `bad-syntax.conf:3: syntax error: "command" is not "key = value"`},
		{"bad-header.conf", `bad-header.conf:1: section header "[a" has no closing ']'`},
		{"bad-key.conf", `bad-key.conf:3: unknown directive "FROBNICATE" in door [a]`},
	}
	for _, tc := range tests {
		t.Run(tc.file, func(t *testing.T) {
			f, err := Load(filepath.Join("testdata", tc.file))
			if err == nil {
				t.Fatalf("no error; parsed %+v", f)
			}
			if !strings.HasPrefix(err.Error(), filepath.Join("testdata", tc.want)) {
				t.Fatalf("error %q, want %q", err, tc.want)
			}
		})
	}
	if _, err := Load(filepath.Join("testdata", "missing.conf")); err == nil {
		t.Fatal("missing file: no error")
	}
	if _, err := Parse("x", []byte("[a]\nsequence = 1\x00\n")); err == nil || !strings.Contains(err.Error(), "x:2: NUL") {
		t.Fatalf("NUL byte: %v", err)
	}
}

func TestParseIPTables(t *testing.T) {
	tests := []struct {
		cmd  string
		six  bool
		ok   bool
		want ipRule
	}{
		{"/sbin/iptables -A INPUT -s %IP% -p tcp --dport 22 -j ACCEPT", false, true, ipRule{op: "A", chain: "INPUT", proto: "tcp", port: 22}},
		{"iptables -I INPUT 1 -s %IP% -p udp -m udp --dport 53 -j ACCEPT", false, true, ipRule{op: "I", chain: "INPUT", proto: "udp", port: 53}},
		{"/usr/sbin/iptables -w -D INPUT -p tcp -s %IP% --destination-port 25 -j ACCEPT", false, true, ipRule{op: "D", chain: "INPUT", proto: "tcp", port: 25}},
		{"/sbin/iptables -A INPUT -s %IP% --dport 22 -j ACCEPT", false, true, ipRule{op: "A", chain: "INPUT", proto: "tcp", port: 22, noProto: true}},
		{"/usr/sbin/ip6tables -A INPUT -s %IP% -p tcp --dport 25 -j ACCEPT", true, true, ipRule{op: "A", chain: "INPUT", proto: "tcp", port: 25}},
		{"/usr/sbin/ip6tables -A INPUT -s %IP% -p tcp --dport 25 -j ACCEPT", false, false, ipRule{}},
		{"/usr/sbin/iptables -A INPUT -s %IP% -p tcp --syn -j ACCEPT", false, false, ipRule{}},
		{"/usr/sbin/iptables -A FORWARD -s %IP% -p tcp --dport 22 -j ACCEPT", false, false, ipRule{}},
		{"/usr/sbin/iptables -A INPUT -s 10.0.0.1 -p tcp --dport 22 -j ACCEPT", false, false, ipRule{}},
		{"/usr/sbin/iptables -A INPUT -s %IP% -p tcp --dport 22 -j DROP", false, false, ipRule{}},
		{"/usr/sbin/iptables -A INPUT -s %IP% -p tcp --dport 22:30 -j ACCEPT", false, false, ipRule{}},
		{"/usr/sbin/iptables -A INPUT -s %IP% -p tcp --dport 22 -j ACCEPT -m comment --comment x", false, false, ipRule{}},
		{"/usr/sbin/iptables -A INPUT -s %IP% -p tcp --dport 22 -j ACCEPT; true", false, false, ipRule{}},
		{"/usr/sbin/iptables -A INPUT -s %IP% -p tcp --dport", false, false, ipRule{}},
		{"/usr/local/sbin/knock_add -i -c INPUT -p tcp -d 443 -f %IP%", false, false, ipRule{}},
	}
	for _, tc := range tests {
		t.Run(tc.cmd, func(t *testing.T) {
			r, ok := parseIPTables(tc.cmd, tc.six)
			if ok != tc.ok || (ok && r != tc.want) {
				t.Fatalf("parseIPTables = %+v, %v; want %+v, %v", r, ok, tc.want, tc.ok)
			}
		})
	}
}

func TestQuote(t *testing.T) {
	for _, s := range []string{"", "plain", `a "quoted" \ back`, "tab\tnew\nline\r", "ctl\x01\x7f", "ünïcødé"} {
		var v struct{ S string }
		if _, err := toml.Decode("S = "+Quote(s), &v); err != nil || v.S != s {
			t.Errorf("Quote(%q) = %s decodes to %q, %v", s, Quote(s), v.S, err)
		}
	}
}

func FuzzConvert(f *testing.F) {
	files, _ := filepath.Glob("testdata/*.conf")
	for _, p := range files {
		data, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	LookPath = func(name string) (string, bool) { return "/usr/bin/" + name, true }
	f.Fuzz(func(t *testing.T, data []byte) {
		kf, err := Parse("fuzz.conf", data)
		if err != nil {
			return
		}
		r := Convert(kf)
		var l loaded
		if _, err := toml.Decode(string(r.TOML), &l); err != nil {
			t.Fatalf("output is not TOML: %v\n%s", err, r.TOML)
		}
		var doors []*door.Door
		for i := range l.Door {
			d, err := l.Door[i].Compile()
			if err != nil {
				t.Fatalf("converted door %d does not compile: %v\n%s", i, err, r.TOML)
			}
			doors = append(doors, d)
		}
		if len(doors) != r.Doors {
			t.Fatalf("Result.Doors %d, output has %d", r.Doors, len(doors))
		}
	})
}

func TestRun(t *testing.T) {
	var out, errOut strings.Builder
	refused, err := Run(filepath.Join("testdata", "shell.conf"), &out, &errOut)
	if err != nil || refused != 2 {
		t.Fatalf("Run = %d, %v", refused, err)
	}
	if !strings.Contains(out.String(), `name               = "quoted"`) {
		t.Errorf("stdout lacks the converted door:\n%s", out.String())
	}
	if !strings.Contains(errOut.String(), "warning: testdata/shell.conf:1: [openSSH] door not converted") ||
		!strings.HasSuffix(errOut.String(), "1 door(s) converted, 2 left commented out\n") {
		t.Errorf("stderr:\n%s", errOut.String())
	}
	out.Reset()
	if _, err := Run(filepath.Join("testdata", "bad-key.conf"), &out, &errOut); err == nil || out.Len() != 0 {
		t.Fatalf("malformed file: err %v, stdout %q", err, out.String())
	}
}
