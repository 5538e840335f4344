package parsecmd

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/urfave/cli/v2"
)

const (
	knockLine = "Nov 21 05:20:44 gw kernel: [  488.204357] knock: IN=eth0 OUT= MAC=02:00:5e:00:53:01:02:00:5e:00:53:02:08:00 SRC=198.51.100.7 DST=203.0.113.5 LEN=60 TOS=0x00 PREC=0x00 TTL=64 ID=1 DF PROTO=TCP SPT=51515 DPT=800 WINDOW=64240 RES=0x00 SYN URGP=0 "
	sshLine   = "Nov 21 05:20:44 gw kernel: [  488.204357] other: IN=eth0 OUT= MAC= SRC=198.51.100.7 DST=203.0.113.5 LEN=60 TOS=0x00 PREC=0x00 TTL=64 ID=1 DF PROTO=TCP SPT=51516 DPT=22 WINDOW=64240 RES=0x00 SYN URGP=0 "
	v6Line    = "Nov 21 05:20:45 gw kernel: knock: IN=eth0 OUT= MAC= SRC=2001:0db8:0000:0000:0000:0000:0000:0007 DST=2001:0db8:0000:0000:0000:0000:0000:0005 LEN=80 TC=0 HOPLIMIT=64 FLOWLBL=1 PROTO=UDP SPT=40000 DPT=1000 LEN=16 "
	badLine   = "Nov 21 05:20:46 gw kernel: knock: IN=eth0 OUT= MAC= SRC=198.51.100.7 SRC=198.51.100.8 DST=203.0.113.5 LEN=60 TTL=64 PROTO=TCP SPT=1 DPT=800 "
	noise     = "Nov 21 05:20:47 gw sshd[99]: Accepted publickey for root from 198.51.100.7 port 51515 ssh2"
	limitLine = "Nov 21 05:20:48 fw kernel: ipfw: limit 100 reached on entry 300"
)

func input(lines ...string) *strings.Reader {
	return strings.NewReader(strings.Join(lines, "\n") + "\n")
}

func TestRunCounts(t *testing.T) {
	var out bytes.Buffer
	s, err := Run(input(knockLine, sshLine, v6Line, badLine, noise, limitLine, ""), &out, Options{Base: 745})
	if err != nil {
		t.Fatal(err)
	}
	want := Summary{Lines: 7, Firewall: 5, Hits: 3, KnockHits: 2, Printed: 2, Malformed: 1, Limits: 1, FromKernel: 3,
		Prefixes: map[string]int{"knock:": 2, "other:": 1}}
	got := s
	got.FirstWhy = nil
	if !reflect.DeepEqual(got, want) {
		t.Errorf("summary %+v, want %+v", got, want)
	}
	if len(s.FirstWhy) != 1 || !strings.Contains(s.FirstWhy[0], "line 4: ") || !strings.Contains(s.FirstWhy[0], "duplicate SRC=") {
		t.Errorf("reasons %q", s.FirstWhy)
	}
	text := out.String()
	for _, w := range []string{
		`line 1: 198.51.100.7:51515 -> 203.0.113.5:800 TCP SYN in=eth0 prefix="knock:"`,
		`line 3: [2001:db8::7]:40000 -> [2001:db8::5]:1000 UDP in=eth0 prefix="knock:"`,
	} {
		if !strings.Contains(text, w+"\n") {
			t.Errorf("output lacks %q:\n%s", w, text)
		}
	}
	if strings.Contains(text, ":22 ") {
		t.Errorf("port 22 printed without --all-ports:\n%s", text)
	}
}

func TestRunOptions(t *testing.T) {
	tests := []struct {
		name     string
		opts     Options
		printed  int
		knock    int
		filtered int
		mustHave string
		mustLack string
	}{
		{name: "all ports prints the ssh hit", opts: Options{Base: 745, AllPorts: true}, printed: 3, knock: 2, mustHave: "203.0.113.5:22 "},
		{name: "prefix filter drops other prefixes", opts: Options{Base: 745, AllPorts: true, Prefix: "knock"}, printed: 2, knock: 2, filtered: 1, mustLack: "other:"},
		{name: "prefix with the trailing space of a --log-prefix", opts: Options{Base: 745, AllPorts: true, Prefix: "knock: "}, printed: 2, knock: 2, filtered: 1},
		{name: "prefix that matches nothing", opts: Options{Base: 745, Prefix: "nope"}, printed: 0, knock: 0, filtered: 3},
		{name: "base moves the range", opts: Options{Base: 900}, printed: 1, knock: 1, mustHave: ":1000 UDP", mustLack: ":800 TCP"},
		{name: "quiet prints nothing", opts: Options{Base: 745, Quiet: true}, printed: 0, knock: 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			s, err := Run(input(knockLine, sshLine, v6Line), &out, tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			if s.Printed != tc.printed || s.KnockHits != tc.knock || s.Filtered != tc.filtered {
				t.Errorf("printed %d knock %d filtered %d, want %d %d %d", s.Printed, s.KnockHits, s.Filtered, tc.printed, tc.knock, tc.filtered)
			}
			if n := strings.Count(out.String(), "\n"); n != tc.printed {
				t.Errorf("%d output lines, want %d:\n%s", n, tc.printed, out.String())
			}
			if tc.mustHave != "" && !strings.Contains(out.String(), tc.mustHave) {
				t.Errorf("output lacks %q:\n%s", tc.mustHave, out.String())
			}
			if tc.mustLack != "" && strings.Contains(out.String(), tc.mustLack) {
				t.Errorf("output has %q:\n%s", tc.mustLack, out.String())
			}
		})
	}
}

func TestRunJSON(t *testing.T) {
	var out bytes.Buffer
	odd := strings.Replace(knockLine, "knock: ", "kn\"o\\ck\x01: ", 1)
	if _, err := Run(input(knockLine, v6Line, odd), &out, Options{Base: 745, Format: "json"}); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 3 {
		t.Fatalf("%d JSON lines:\n%s", len(lines), out.String())
	}
	var first struct {
		Src, Dst, Proto, Flags, Prefix string
		SrcPort                        uint16 `json:"src_port"`
		DstPort                        uint16 `json:"dst_port"`
	}
	if err := json.Unmarshal([]byte(lines[0]), &first); err != nil {
		t.Fatalf("%v: %s", err, lines[0])
	}
	if first.Src != "198.51.100.7" || first.Dst != "203.0.113.5" || first.Proto != "TCP" ||
		first.SrcPort != 51515 || first.DstPort != 800 || first.Flags != "SYN" || first.Prefix != "knock:" {
		t.Errorf("first hit %+v", first)
	}
	if !strings.Contains(lines[0], `"syslog_time":"Nov 21 05:20:44"`) || strings.Contains(lines[0], `"time"`) {
		t.Errorf("a stamp without a year must stay as written: %s", lines[0])
	}
	var rfc bytes.Buffer
	if _, err := Run(input(strings.Replace(knockLine, "Nov 21 05:20:44", "2026-11-21T05:20:44.5+02:00", 1)), &rfc, Options{Base: 745, Format: "json"}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(rfc.String(), `"time":"2026-11-21T05:20:44.5+02:00"`) {
		t.Errorf("RFC 3339 stamp: %s", rfc.String())
	}
	var third map[string]any
	if err := json.Unmarshal([]byte(lines[2]), &third); err != nil {
		t.Fatalf("odd prefix is not valid JSON: %v: %s", err, lines[2])
	}
	if third["prefix"] != "kn\"o\\ck\x01:" {
		t.Errorf("prefix %q", third["prefix"])
	}
}

func TestRunLongLines(t *testing.T) {
	long := strings.Repeat("x", MaxLine+10)
	var out bytes.Buffer
	s, err := Run(input(knockLine, long, knockLine, long), &out, Options{Base: 745})
	if err != nil {
		t.Fatal(err)
	}
	if s.Lines != 4 || s.TooLong != 2 || s.KnockHits != 2 {
		t.Errorf("summary %+v, want 4 lines, 2 too long, 2 knock hits", s)
	}
	// no final newline, CRLF endings
	s, err = Run(strings.NewReader(knockLine+"\r\n"+knockLine), &out, Options{Base: 745})
	if err != nil || s.Lines != 2 || s.KnockHits != 2 {
		t.Errorf("CRLF and unterminated last line: %+v %v", s, err)
	}
}

func TestRunBadFormat(t *testing.T) {
	if _, err := Run(input(knockLine), &bytes.Buffer{}, Options{Format: "xml"}); err == nil {
		t.Error("format xml accepted")
	}
}

// app runs the command as the daemon's main would, without os.Exit.
func app(args ...string) (stdout, stderr string, code int, err error) {
	return appIn(strings.NewReader(""), args...)
}

func appIn(stdin io.Reader, args ...string) (stdout, stderr string, code int, err error) {
	var o, e bytes.Buffer
	a := &cli.App{
		Name: "knockdaemon", Writer: &o, ErrWriter: &e, Reader: stdin,
		Commands:       []*cli.Command{Command()},
		ExitErrHandler: func(*cli.Context, error) {},
	}
	err = a.Run(append([]string{"knockdaemon", "parse"}, args...))
	if ec, ok := err.(cli.ExitCoder); ok {
		code = ec.ExitCode()
	} else if err != nil {
		code = -1
	}
	return o.String(), e.String(), code, err
}

func TestCommand(t *testing.T) {
	dir := t.TempDir()
	log := filepath.Join(dir, "kern.log")
	if err := os.WriteFile(log, []byte(knockLine+"\n"+noise+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		args []string
		code int
		out  string // in stdout
		err  string // in the error
	}{
		{name: "file", args: []string{log}, out: "knock-port hits:   1"},
		{name: "json keeps stdout to hits", args: []string{"--format", "json", log}, out: `"dst_port":800`},
		{name: "quiet", args: []string{"-q", log}, out: "lines read:        2"},
		{name: "missing file", args: []string{filepath.Join(dir, "nope.log")}, code: ExitInput, err: "no such file"},
		{name: "missing file names the program and hints", args: []string{filepath.Join(dir, "nope.log")}, code: ExitInput, err: "knockdaemon parse: open "},
		{name: "missing file hint", args: []string{filepath.Join(dir, "nope.log")}, code: ExitInput, err: "\nhint: "},
		{name: "directory", args: []string{dir}, code: ExitInput, err: "is a directory"},
		{name: "two files", args: []string{log, log}, code: ExitUsage, err: "at most one"},
		{name: "bad format", args: []string{"--format", "xml", log}, code: ExitUsage, err: "want text or json"},
		{name: "base too high", args: []string{"--base", "65300", log}, code: ExitUsage, err: "base"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out, _, code, err := app(tc.args...)
			if code != tc.code {
				t.Fatalf("exit %d (%v), want %d", code, err, tc.code)
			}
			if tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)) {
				t.Errorf("error %v, want it to say %q", err, tc.err)
			}
			if tc.out != "" && !strings.Contains(out, tc.out) {
				t.Errorf("stdout lacks %q:\n%s", tc.out, out)
			}
		})
	}
	for _, args := range [][]string{{"-"}, {}} {
		out, _, code, err := appIn(input(knockLine, noise), args...)
		if code != 0 || err != nil || !strings.Contains(out, "knock-port hits:   1") || !strings.Contains(out, "lines read:        2") {
			t.Errorf("stdin %q: exit %d %v\n%s", args, code, err, out)
		}
	}
	out, errOut, _, _ := app("--format", "json", log)
	if strings.Contains(out, "lines read") || !strings.Contains(errOut, "lines read") {
		t.Errorf("JSON mode: the summary belongs on stderr\nstdout:\n%s\nstderr:\n%s", out, errOut)
	}
}

// corpusText is every line of logparse's corpus plus noise, shuffled
// deterministically, so markers sit at every position in a read.
func corpusText(t *testing.T) string {
	t.Helper()
	files, _ := filepath.Glob("../../logparse/testdata/*.jsonl")
	if len(files) == 0 {
		t.Fatal("no logparse corpus")
	}
	var lines []string
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range strings.Split(strings.TrimSpace(string(data)), "\n") {
			var c struct{ Line string }
			if err := json.Unmarshal([]byte(l), &c); err != nil {
				t.Fatal(err)
			}
			if !strings.ContainsAny(c.Line, "\n") {
				lines = append(lines, c.Line, noise)
			}
		}
	}
	r := rand.New(rand.NewPCG(1, 2))
	r.Shuffle(len(lines), func(i, j int) { lines[i], lines[j] = lines[j], lines[i] })
	return strings.Join(lines, "\n")
}

func TestRunMatchesLineByLine(t *testing.T) {
	data := corpusText(t)
	readers := []struct {
		name string
		r    func(string) io.Reader
	}{
		{"whole", func(s string) io.Reader { return strings.NewReader(s) }},
		{"one byte at a time", func(s string) io.Reader { return iotest.OneByteReader(strings.NewReader(s)) }},
		{"half reads", func(s string) io.Reader { return iotest.HalfReader(strings.NewReader(s)) }},
		{"data with EOF", func(s string) io.Reader { return iotest.DataErrReader(strings.NewReader(s)) }},
	}
	for _, opts := range []Options{{Base: 745}, {Base: 745, AllPorts: true, Prefix: "k"}} {
		want, _ := sequential(data, opts) // every line parsed on its own
		for _, rd := range readers {
			for _, tail := range []string{"", "\n"} {
				t.Run(fmt.Sprintf("%s/prefix=%q/tail=%q", rd.name, opts.Prefix, tail), func(t *testing.T) {
					got, err := Run(rd.r(data+tail), io.Discard, opts)
					if err != nil {
						t.Fatal(err)
					}
					if !reflect.DeepEqual(got, want) {
						t.Errorf("got  %+v\nwant %+v", got, want)
					}
				})
			}
		}
	}
}

func TestRunReadError(t *testing.T) {
	boom := errors.New("disk on fire")
	_, err := Run(io.MultiReader(strings.NewReader(knockLine+"\n"), iotest.ErrReader(boom)), io.Discard, Options{Base: 745})
	if !errors.Is(err, boom) {
		t.Errorf("error %v, want %v", err, boom)
	}
}

func TestPrefixTally(t *testing.T) {
	var lines []string
	for i := 0; i < MaxPrefixes+5; i++ {
		lines = append(lines, strings.Replace(knockLine, "knock: ", fmt.Sprintf("p%02d: ", i), 1))
	}
	lines = append(lines, knockLine, knockLine)
	s, err := Run(input(lines...), io.Discard, Options{Base: 745})
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Prefixes) != MaxPrefixes || s.OtherPrefixes != 5+2 {
		t.Errorf("%d prefixes, %d other; want %d and 7", len(s.Prefixes), s.OtherPrefixes, MaxPrefixes)
	}
	var out bytes.Buffer
	if err := WriteSummary(&out, s, Options{Base: 745}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), `"p00:"`) || !strings.Contains(out.String(), "(other prefixes)") {
		t.Errorf("summary:\n%s", out.String())
	}
}

func TestLastNewline(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for n := range 20000 {
		b := make([]byte, r.IntN(40))
		for i := range b {
			b[i] = "\nx\x0a\x8a\x0b\xff"[r.IntN(6)]
		}
		if got, want := lastNewline(b), bytes.LastIndexByte(b, '\n'); got != want {
			t.Fatalf("case %d: lastNewline(%q) = %d, want %d", n, b, got, want)
		}
	}
}
