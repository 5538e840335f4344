package door

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/knockdaemon/knock/logparse"
)

func TestParseSequence(t *testing.T) {
	tests := []struct {
		in, want, err string
	}{
		{"7000,8000,9000", "7000,8000,9000", ""},
		{"2222:udp,3333:tcp,4444:udp", "2222:udp,3333,4444:udp", ""},
		{" 1000 , 2000:UDP ,3000 ", "1000,2000:udp,3000", ""},
		{"7000", "7000", ""},
		{"", "", "empty sequence"},
		{"7000,,8000", "", "knock 2"},
		{"7000,abc", "", `"abc" is not a port`},
		{"0,1", "", "port 0 out of range"},
		{"65536", "", "out of range"},
		{"7000:icmp", "", `unknown protocol "icmp"`},
		{"-1", "", "not a port"},
		{strings.Repeat("1,", 32) + "1", "", "at most 32"},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			seq, err := ParseSequence(tc.in)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("ParseSequence(%q) = %v, %v; want error %q", tc.in, seq, err, tc.err)
				}
				return
			}
			if err != nil || FormatSequence(seq) != tc.want {
				t.Fatalf("ParseSequence(%q) = %s, %v; want %s", tc.in, FormatSequence(seq), err, tc.want)
			}
			back, err := ParseSequence(FormatSequence(seq))
			if err != nil || !slices.Equal(back, seq) {
				t.Fatalf("round trip of %q: %v %v", tc.in, back, err)
			}
		})
	}
}

func TestAscending(t *testing.T) {
	for in, want := range map[string]bool{
		"7000,8000,9000":         true,
		"9000,8000,7000":         false,
		"7000,7000,8000":         false,
		"7000":                   false,
		"2222:udp,3333,4444:udp": true,
		"2222:udp,1111,1000:udp": false,
	} {
		seq, err := ParseSequence(in)
		if err != nil {
			t.Fatal(err)
		}
		if Ascending(seq) != want {
			t.Errorf("Ascending(%s) = %v, want %v", in, !want, want)
		}
	}
}

func TestFlagRule(t *testing.T) {
	S, A, F, R := logparse.SYN, logparse.ACK, logparse.FIN, logparse.RST
	tests := []struct {
		spec   string
		canon  string
		accept []logparse.Flags
		refuse []logparse.Flags
	}{
		{"", "", []logparse.Flags{0, S, S | A, R}, nil},
		{"syn", "syn", []logparse.Flags{S, S | A}, []logparse.Flags{0, A, F}},
		{"syn,!ack", "syn,!ack", []logparse.Flags{S}, []logparse.Flags{S | A, A}},
		{"SYN, ACK", "syn,ack", []logparse.Flags{S | A}, []logparse.Flags{S, A}},
		{"fin,!ack", "fin,!ack", []logparse.Flags{F}, []logparse.Flags{F | A, S}},
		{"!ack,syn", "syn,!ack", []logparse.Flags{S}, []logparse.Flags{S | A}},
	}
	for _, tc := range tests {
		t.Run(tc.spec, func(t *testing.T) {
			r, err := ParseFlagRule(tc.spec)
			if err != nil {
				t.Fatal(err)
			}
			if r.String() != tc.canon {
				t.Errorf("String %q, want %q", r.String(), tc.canon)
			}
			for _, f := range tc.accept {
				if !r.Match(f) {
					t.Errorf("refuses %v", f)
				}
			}
			for _, f := range tc.refuse {
				if r.Match(f) {
					t.Errorf("accepts %v", f)
				}
			}
		})
	}
	for _, bad := range []string{"sin", "syn,,ack", "syn,!syn", "syn,syn", "!"} {
		t.Run("bad "+bad, func(t *testing.T) {
			if r, err := ParseFlagRule(bad); err == nil {
				t.Fatalf("ParseFlagRule(%q) = %v, want an error", bad, r)
			}
		})
	}
}

func TestShellSyntax(t *testing.T) {
	tests := []struct{ cmd, want string }{
		{"/sbin/iptables -A INPUT -s %IP% -p tcp --dport 22 -j ACCEPT", ""},
		{"/usr/bin/logger 'a; b | c > d'", ""},
		{`/usr/bin/logger "a; b" \; \|`, ""},
		{"/sbin/iptables -A INPUT -s %IP% -j ACCEPT && /usr/bin/logger ok", "&&"},
		{"/usr/bin/a | /usr/bin/b", "|"},
		{"/usr/bin/a > /tmp/x", ">"},
		{"/usr/bin/a 2>&1", ">"},
		{"/usr/bin/a; /usr/bin/b", ";"},
		{"/usr/bin/a $(id)", "$("},
		{`/usr/bin/a "$HOME"`, "$H"},
		{"/usr/bin/a `id`", "`"},
		{"/usr/bin/a # comment", "#"},
		{"/usr/bin/a x#y", ""},
		{"/usr/bin/a '$HOME'", ""},
		{"/usr/bin/a &", "&"},
	}
	for _, tc := range tests {
		t.Run(tc.cmd, func(t *testing.T) {
			if got := ShellSyntax(tc.cmd); got != tc.want {
				t.Fatalf("ShellSyntax = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestCompile(t *testing.T) {
	ptr := func(s string) *string { return &s }
	good := []struct {
		name  string
		c     Config
		check func(t *testing.T, d *Door)
	}{
		{"open with defaults", Config{Name: "openSSH", Sequence: "7000,8000,9000", Open: &OpenConfig{Ports: []string{"22"}}, CmdTimeout: "30s"},
			func(t *testing.T, d *Door) {
				if d.Timeout != DefaultSequenceTimeout || d.CmdTimeout != 30*time.Second || d.Action.Kind != ActOpen ||
					!slices.Equal(d.Action.Ports, []uint16{22}) || !slices.Equal(d.Action.Protos, []string{"tcp"}) || d.User() != "door:openSSH" {
					t.Fatalf("%+v", d)
				}
			}},
		{"open until closed, both protocols, range", Config{Name: "x", Sequence: "1,2", Open: &OpenConfig{Ports: []string{"8000-8002", "53"}, Proto: "both"}, CmdTimeout: "0s"},
			func(t *testing.T, d *Door) {
				if d.CmdTimeout != 0 || !slices.Equal(d.Action.Ports, []uint16{8000, 8001, 8002, 53}) || len(d.Action.Protos) != 2 {
					t.Fatalf("%+v", d.Action)
				}
			}},
		{"close", Config{Name: "closeSSH", Sequence: "9000,8000,7000", Close: &OpenConfig{Ports: []string{"22"}}},
			func(t *testing.T, d *Door) {
				if d.Action.Kind != ActClose {
					t.Fatalf("%+v", d.Action)
				}
			}},
		{"commands with default cmd_timeout and IPv6 fallback", Config{Name: "c", Sequence: "1,2", TCPFlags: "syn,ack",
			StartCommand: "/usr/sbin/iptables -A INPUT -s %IP% -j ACCEPT", StopCommand: "/usr/sbin/iptables -D INPUT -s %IP% -j ACCEPT"},
			func(t *testing.T, d *Door) {
				if d.CmdTimeout != DefaultCmdTimeout || len(d.Action.Start) != 7 || !slices.Equal(d.Action.Start6, d.Action.Start) ||
					!slices.Equal(d.Action.Stop6, d.Action.Stop) || d.Flags.String() != "syn,ack" {
					t.Fatalf("%+v", d)
				}
			}},
		{"empty IPv6 command means nothing for IPv6", Config{Name: "c", Sequence: "1,2", StartCommand: "/bin/true", StartCommand6: ptr("")},
			func(t *testing.T, d *Door) {
				if d.Action.Start6 != nil || d.Action.Start == nil {
					t.Fatalf("%+v", d.Action)
				}
			}},
		{"one-time", Config{Name: "ot", OneTimeSequences: "/etc/knockd/smtp", StartCommand: "/bin/true"},
			func(t *testing.T, d *Door) {
				if d.OneTime != "/etc/knockd/smtp" || d.Sequence != nil {
					t.Fatalf("%+v", d)
				}
			}},
	}
	for _, tc := range good {
		t.Run(tc.name, func(t *testing.T) {
			d, err := tc.c.Compile()
			if err != nil {
				t.Fatal(err)
			}
			tc.check(t, d)
		})
	}

	open := &OpenConfig{Ports: []string{"22"}}
	bad := []struct {
		name string
		c    Config
		key  string
		msg  string
	}{
		{"no name", Config{Sequence: "1", Open: open, CmdTimeout: "1s"}, "name", "missing"},
		{"bad name", Config{Name: "a b", Sequence: "1", Open: open, CmdTimeout: "1s"}, "name", "letters"},
		{"no sequence", Config{Name: "a", Open: open, CmdTimeout: "1s"}, "sequence", "missing"},
		{"both sequences", Config{Name: "a", Sequence: "1", OneTimeSequences: "/x", Open: open, CmdTimeout: "1s"}, "sequence", "not both"},
		{"relative one-time path", Config{Name: "a", OneTimeSequences: "x", Open: open, CmdTimeout: "1s"}, "one_time_sequences", "absolute"},
		{"bad sequence", Config{Name: "a", Sequence: "1,x", Open: open, CmdTimeout: "1s"}, "sequence", "not a port"},
		{"timeout without unit", Config{Name: "a", Sequence: "1", SequenceTimeout: "10", Open: open, CmdTimeout: "1s"}, "sequence_timeout", "no unit"},
		{"timeout too long", Config{Name: "a", Sequence: "1", SequenceTimeout: "2h", Open: open, CmdTimeout: "1s"}, "sequence_timeout", "out of range"},
		{"bad flags", Config{Name: "a", Sequence: "1", TCPFlags: "syn,nope", Open: open, CmdTimeout: "1s"}, "tcp_flags", "unknown TCP flag"},
		{"no action", Config{Name: "a", Sequence: "1"}, "", "exactly one action"},
		{"two actions", Config{Name: "a", Sequence: "1", Open: open, StartCommand: "/bin/true"}, "", "exactly one action"},
		{"open without cmd_timeout", Config{Name: "a", Sequence: "1", Open: open}, "cmd_timeout", "missing"},
		{"open too long", Config{Name: "a", Sequence: "1", Open: open, CmdTimeout: "5h"}, "cmd_timeout", "out of range"},
		{"open no ports", Config{Name: "a", Sequence: "1", Open: &OpenConfig{}, CmdTimeout: "1s"}, "open.ports", "missing"},
		{"open bad port", Config{Name: "a", Sequence: "1", Open: &OpenConfig{Ports: []string{"0"}}, CmdTimeout: "1s"}, "open.ports", "out of range"},
		{"open port twice", Config{Name: "a", Sequence: "1", Open: &OpenConfig{Ports: []string{"22", "20-25"}}, CmdTimeout: "1s"}, "open.ports", "twice"},
		{"open too many", Config{Name: "a", Sequence: "1", Open: &OpenConfig{Ports: []string{"1000-2000"}}, CmdTimeout: "1s"}, "open.ports", "more than 64"},
		{"open bad proto", Config{Name: "a", Sequence: "1", Open: &OpenConfig{Ports: []string{"22"}, Proto: "icmp"}, CmdTimeout: "1s"}, "open.proto", "want tcp"},
		{"close with cmd_timeout", Config{Name: "a", Sequence: "1", Close: open, CmdTimeout: "1s"}, "cmd_timeout", "closes at once"},
		{"stop without start", Config{Name: "a", Sequence: "1", StopCommand: "/bin/true"}, "start_command", "missing"},
		{"cmd_timeout without stop", Config{Name: "a", Sequence: "1", StartCommand: "/bin/true", CmdTimeout: "5s"}, "cmd_timeout", "no stop_command"},
		{"shell syntax", Config{Name: "a", Sequence: "1", StartCommand: "/bin/true && /bin/false"}, "start_command", "without one"},
		{"relative command", Config{Name: "a", Sequence: "1", StartCommand: "iptables -A INPUT"}, "start_command", "absolute path"},
		{"unknown placeholder", Config{Name: "a", Sequence: "1", StartCommand: "/bin/echo %PORT%"}, "start_command", "unknown placeholder %PORT%"},
		{"unterminated quote", Config{Name: "a", Sequence: "1", StartCommand: "/bin/echo 'x"}, "start_command", "unterminated"},
		{"bad IPv6 stop", Config{Name: "a", Sequence: "1", StartCommand: "/bin/true", StopCommand6: ptr("/bin/a | /bin/b")}, "stop_command_6", "shell"},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			d, err := tc.c.Compile()
			fe, ok := err.(*FieldError)
			if !ok {
				t.Fatalf("Compile = %+v, %v; want a *FieldError", d, err)
			}
			if fe.Key != tc.key || !strings.Contains(fe.Msg, tc.msg) {
				t.Fatalf("error %q (key %q), want key %q and %q", fe, fe.Key, tc.key, tc.msg)
			}
		})
	}
}

// The door's flag bits are logparse's: the daemon hands logparse.Hit.Flags
// over unchanged.
func TestFlagBitsAreLogparse(t *testing.T) {
	r, err := ParseFlagRule("fin,syn,rst,psh,ack,urg,ece,cwr")
	if err != nil {
		t.Fatal(err)
	}
	all := logparse.FIN | logparse.SYN | logparse.RST | logparse.PSH | logparse.ACK | logparse.URG | logparse.ECE | logparse.CWR
	if r.Require != all {
		t.Fatalf("Require %b, want %b", r.Require, all)
	}
}
