package bench

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"testing"
	"time"
)

// mawkProg extracts SRC and DPT from every firewall line, as an admin's
// one-liner would (and prints how many it saw).
const mawkProg = `/DPT=/ { s = ""; d = ""; for (i = 1; i <= NF; i++) { if (substr($i, 1, 4) == "SRC=") s = substr($i, 5); else if (substr($i, 1, 4) == "DPT=") d = substr($i, 5) } if (s != "" && d != "") n++ } END { print n + 0 }`

// f2bRegex is fail2ban's rule for the same job: knock-port SYNs (745-1000)
// under the "knock: " prefix, the source as <HOST>.
const f2bRegex = `kernel: .*knock: .*SRC=<HOST> .*DPT=(?:74[5-9]|7[5-9]\d|[89]\d\d|1000) `

type timedCmd struct {
	name  string
	argv  []string
	check func(out []byte) error
	wall  []time.Duration
	cpu   []time.Duration
}

func (c *timedCmd) run() error {
	cmd := exec.Command(c.argv[0], c.argv[1:]...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	start := time.Now()
	err := cmd.Run()
	wall := time.Since(start)
	if err != nil {
		return fmt.Errorf("%s: %v: %s", c.name, err, errb.Bytes())
	}
	if err := c.check(out.Bytes()); err != nil {
		return fmt.Errorf("%s: %v (output %q)", c.name, err, out.Bytes())
	}
	c.wall = append(c.wall, wall)
	c.cpu = append(c.cpu, cmd.ProcessState.UserTime()+cmd.ProcessState.SystemTime())
	return nil
}

var (
	reFirewall = regexp.MustCompile(`firewall lines:\s+(\d+)`)
	reKnock    = regexp.MustCompile(`knock-port hits:\s+(\d+)`)
	reLines    = regexp.MustCompile(`lines read:\s+(\d+)`)
	reF2B      = regexp.MustCompile(`Lines: (\d+) lines, \d+ ignored, (\d+) matched`)
)

func atoiMatch(re *regexp.Regexp, out []byte, k int) int {
	m := re.FindSubmatch(out)
	if m == nil {
		return -1
	}
	n, _ := strconv.Atoi(string(m[k]))
	return n
}

// BenchmarkParse1M times "knockdaemon parse --quiet" over the 1,000,000-line
// mix against "grep -c DPT=" and mawk extracting SRC and DPT on the same
// file, interleaved round by round (5 rounds, KNOCK_BENCH_ROUNDS; the
// order rotates), after one warm-up
// round that puts the file in the page cache. Reported: the medians in
// lines/s of wall time, and the ratios (target: x-grep >= 0.8). With
// KNOCK_BENCH_PEERS=1 it also runs fail2ban-regex once with an equivalent
// rule (target: x-fail2ban >= 50).
func BenchmarkParse1M(b *testing.B) {
	knockdaemon := bin(b, "knockdaemon")
	file := mixFile(b)
	grep, err := exec.LookPath("grep")
	if err != nil {
		b.Skip("no grep")
	}
	var grepCount, knockHits int
	parse := &timedCmd{name: "parse", argv: []string{knockdaemon, "parse", "--quiet", file}, check: func(out []byte) error {
		if n := atoiMatch(reLines, out, 1); n != mixLines {
			return fmt.Errorf("read %d lines, want %d", n, mixLines)
		}
		if n := atoiMatch(reFirewall, out, 1); grepCount > 0 && n != grepCount {
			return fmt.Errorf("%d firewall lines, grep counted %d DPT= lines", n, grepCount)
		}
		knockHits = atoiMatch(reKnock, out, 1)
		return nil
	}}
	grepC := &timedCmd{name: "grep", argv: []string{grep, "-c", "DPT=", file}, check: func(out []byte) error {
		n, err := strconv.Atoi(string(bytes.TrimSpace(out)))
		grepCount = n
		return err
	}}
	cmds := []*timedCmd{grepC, parse}
	if mawk, err := exec.LookPath("mawk"); err == nil {
		cmds = append(cmds, &timedCmd{name: "mawk", argv: []string{mawk, mawkProg, file}, check: func(out []byte) error {
			if n, err := strconv.Atoi(string(bytes.TrimSpace(out))); err != nil || n != grepCount {
				return fmt.Errorf("mawk counted %d, grep %d", n, grepCount)
			}
			return nil
		}})
	}
	rounds := 5
	if s := os.Getenv("KNOCK_BENCH_ROUNDS"); s != "" {
		rounds, _ = strconv.Atoi(s)
	}
	for b.Loop() {
		for _, c := range cmds { // warm-up: page cache, binaries
			if err := c.run(); err != nil {
				b.Fatal(err)
			}
			c.wall, c.cpu = nil, nil
		}
		for r := range rounds {
			for k := range cmds {
				if err := cmds[(k+r)%len(cmds)].run(); err != nil {
					b.Fatal(err)
				}
			}
		}
	}
	rate := func(c *timedCmd) float64 { return mixLines / median(c.wall).Seconds() }
	pr := rate(parse)
	b.ReportMetric(pr, "parse-lines/s")
	b.ReportMetric(float64(knockHits), "knock-hits")
	for _, c := range cmds {
		if c == parse {
			continue
		}
		b.ReportMetric(rate(c), c.name+"-lines/s")
		b.ReportMetric(pr/rate(c), "x-"+c.name)
		b.ReportMetric(float64(median(c.cpu))/float64(median(parse.cpu)), "x-"+c.name+"-cpu")
	}
	if peers() {
		f2b, err := exec.LookPath("fail2ban-regex")
		if err != nil {
			b.Fatal("KNOCK_BENCH_PEERS=1 but no fail2ban-regex (run.sh --peers installs it)")
		}
		c := &timedCmd{name: "fail2ban", argv: []string{f2b, "--print-no-missed", "--print-no-ignored", file, f2bRegex}, check: func(out []byte) error {
			if n := atoiMatch(reF2B, out, 1); n != mixLines {
				return fmt.Errorf("fail2ban-regex read %d lines, want %d", n, mixLines)
			}
			if n := atoiMatch(reF2B, out, 2); n != knockHits {
				return fmt.Errorf("fail2ban-regex matched %d lines, parse found %d knock-port hits", n, knockHits)
			}
			return nil
		}}
		// One run: at about 75k lines/s it takes a quarter of a minute.
		if err := c.run(); err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(mixLines/c.wall[0].Seconds(), "fail2ban-lines/s")
		b.ReportMetric(pr/(mixLines/c.wall[0].Seconds()), "x-fail2ban")
		b.ReportMetric(float64(c.cpu[0])/float64(median(parse.cpu)), "x-fail2ban-cpu")
	}
}
