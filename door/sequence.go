package door

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	assembler "github.com/knockdaemon/knock/knock"
	"github.com/knockdaemon/knock/logparse"
)

// Proto is the transport protocol of one knock, the same type the
// encrypted knocks' assembler uses.
type Proto = assembler.Proto

const (
	TCP = assembler.TCP
	UDP = assembler.UDP
)

// Step is one knock of a sequence: a packet to Port over Proto.
type Step struct {
	Port  uint16
	Proto Proto
}

// String returns the step in knockd's spelling: "7000" for TCP (knockd's
// default protocol), "7000:udp" for UDP.
func (s Step) String() string {
	if s.Proto == UDP {
		return strconv.Itoa(int(s.Port)) + ":udp"
	}
	return strconv.Itoa(int(s.Port))
}

// MaxSteps is the longest sequence, as in knockd (SEQ_MAX).
const MaxSteps = 32

// ParseSequence parses a sequence in knockd's syntax: ports separated by
// commas, each optionally followed by ":tcp" or ":udp" (default tcp), for
// example "7000,8000,9000" or "2222:udp,3333:tcp,4444:udp". White space
// around items is ignored. Unlike knockd (atoi), a port that is not a
// number 1..65535 is an error, not port 0.
func ParseSequence(s string) ([]Step, error) {
	if strings.TrimSpace(s) == "" {
		return nil, errors.New("empty sequence (want ports such as \"7000,8000,9000\" or \"2222:udp,3333\")")
	}
	items := strings.Split(s, ",")
	if len(items) > MaxSteps {
		return nil, fmt.Errorf("%d knocks in the sequence, at most %d", len(items), MaxSteps)
	}
	seq := make([]Step, 0, len(items))
	for i, it := range items {
		it = strings.TrimSpace(it)
		port, proto, hasProto := strings.Cut(it, ":")
		port = strings.TrimSpace(port)
		st := Step{Proto: TCP}
		n, err := parsePort(port)
		if err != nil {
			return nil, fmt.Errorf("knock %d %q: %v", i+1, it, err)
		}
		st.Port = n
		if hasProto {
			switch strings.ToLower(strings.TrimSpace(proto)) {
			case "tcp":
			case "udp":
				st.Proto = UDP
			default:
				return nil, fmt.Errorf("knock %d %q: unknown protocol %q (want tcp or udp)", i+1, it, strings.TrimSpace(proto))
			}
		}
		seq = append(seq, st)
	}
	return seq, nil
}

// FormatSequence writes seq in knockd's syntax, so that ParseSequence
// gives it back.
func FormatSequence(seq []Step) string {
	var b strings.Builder
	for i, s := range seq {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(s.String())
	}
	return b.String()
}

func equalSeq(a, b []Step) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// Ascending reports whether every TCP step of seq has a higher port than
// the TCP step before it, and likewise for UDP, with at least two steps:
// such a sequence is knocked by a sequential port scan (nmap -r) of the
// range, because only the door ports are logged and the scan's other
// probes are never seen.
func Ascending(seq []Step) bool {
	if len(seq) < 2 {
		return false
	}
	var last [3]uint16
	for _, s := range seq {
		if s.Proto > UDP || s.Port <= last[s.Proto] {
			return false
		}
		last[s.Proto] = s.Port
	}
	return true
}

func parsePort(s string) (uint16, error) {
	if s == "" {
		return 0, errors.New("no port")
	}
	if len(s) > 5 {
		return 0, fmt.Errorf("%q is not a port 1..65535", s)
	}
	for _, c := range []byte(s) {
		if c < '0' || c > '9' {
			return 0, fmt.Errorf("%q is not a port 1..65535", s)
		}
	}
	n, _ := strconv.Atoi(s)
	if n < 1 || n > 65535 {
		return 0, fmt.Errorf("port %d out of range 1..65535", n)
	}
	return uint16(n), nil
}

// FlagRule says which TCP flags a knock must have and must not have.
// The zero rule matches every TCP packet, as a knockd door without
// tcpflags does.
type FlagRule struct {
	Require, Forbid logparse.Flags
}

var flagOrder = []struct {
	name string
	bit  logparse.Flags
}{
	{"fin", logparse.FIN}, {"syn", logparse.SYN}, {"rst", logparse.RST}, {"psh", logparse.PSH},
	{"ack", logparse.ACK}, {"urg", logparse.URG}, {"ece", logparse.ECE}, {"cwr", logparse.CWR},
}

// ParseFlagRule parses knockd's tcpflags spelling: flags separated by
// commas, each set ("syn") or, with "!", clear ("!ack"); case is ignored.
// "" is the zero rule (any flags). Only the flags named matter; unlike the
// encrypted knocks' tcp_flags, ACK is not forbidden implicitly, because
// knockd doors such as "tcpflags = syn,ack" rely on that.
func ParseFlagRule(s string) (FlagRule, error) {
	var r FlagRule
	if strings.TrimSpace(s) == "" {
		return r, nil
	}
	for _, f := range strings.Split(s, ",") {
		f = strings.ToLower(strings.TrimSpace(f))
		name, neg := strings.CutPrefix(f, "!")
		var bit logparse.Flags
		for _, fo := range flagOrder {
			if fo.name == name {
				bit = fo.bit
			}
		}
		if bit == 0 {
			return FlagRule{}, fmt.Errorf("unknown TCP flag %q (want fin, syn, rst, psh, ack, urg, ece, cwr, each optionally with !)", f)
		}
		if (r.Require|r.Forbid)&bit != 0 {
			return FlagRule{}, fmt.Errorf("TCP flag %q named twice in %q", name, s)
		}
		if neg {
			r.Forbid |= bit
		} else {
			r.Require |= bit
		}
	}
	return r, nil
}

// Match reports whether a TCP packet with flags f passes the rule.
func (r FlagRule) Match(f logparse.Flags) bool {
	return f&r.Require == r.Require && f&r.Forbid == 0
}

// String writes the rule in knockd's spelling ("syn,!ack"), "" for the
// zero rule; ParseFlagRule gives it back.
func (r FlagRule) String() string {
	var parts []string
	for _, fo := range flagOrder {
		switch {
		case r.Require&fo.bit != 0:
			parts = append(parts, fo.name)
		case r.Forbid&fo.bit != 0:
			parts = append(parts, "!"+fo.name)
		}
	}
	return strings.Join(parts, ",")
}

// ShellSyntax returns the first piece of shell syntax in cmd that only a
// shell would act on — an unquoted ; & | < > ( ) or newline, a comment
// (# starting a word), a backtick, or a $ expansion outside single
// quotes — or "" when there is none.
// knockd runs its commands through /bin/sh; knockdaemon splits them into
// arguments (rules.SplitArgs) and runs no shell, so such a command would
// not do what it says.
func ShellSyntax(cmd string) string {
	inSingle, inDouble := false, false
	for i := 0; i < len(cmd); i++ {
		c := cmd[i]
		switch {
		case inSingle:
			if c == '\'' {
				inSingle = false
			}
		case c == '\\':
			i++ // an escaped character is literal (in double quotes too, for $ ` " \)
		case c == '`':
			return "`"
		case c == '$':
			if i+1 < len(cmd) && (cmd[i+1] == '(' || cmd[i+1] == '{' || cmd[i+1] == '_' ||
				(cmd[i+1] >= 'a' && cmd[i+1] <= 'z') || (cmd[i+1] >= 'A' && cmd[i+1] <= 'Z') ||
				(cmd[i+1] >= '0' && cmd[i+1] <= '9') || strings.IndexByte("?!#*@$-", cmd[i+1]) >= 0) {
				return cmd[i : i+2]
			}
		case inDouble:
			if c == '"' {
				inDouble = false
			}
		case c == '\'':
			inSingle = true
		case c == '"':
			inDouble = true
		case c == '#' && (i == 0 || cmd[i-1] == ' ' || cmd[i-1] == '\t'):
			return "#"
		case c == ';' || c == '&' || c == '|' || c == '<' || c == '>' || c == '(' || c == ')' || c == '\n':
			j := i + 1
			for j < len(cmd) && j < i+2 && cmd[j] == c {
				j++
			}
			return cmd[i:j]
		}
	}
	return ""
}
