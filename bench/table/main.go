// Command table reads the output of the go test benchmarks that
// bench/run.sh runs (several packages, concatenated on stdin) and prints
// the issue-8 table: figure, our value, the baseline measured in the same
// run, the ratio, the target and whether it is met.
//
// A row whose benchmark did not run says why: "skipped (run with
// --peers)" for the peer baselines, "not run" otherwise (a benchmark that
// skipped for want of root, or failed: its output above says which).
package main

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"os"
	"regexp"
	"strconv"
	"strings"
)

// results maps a benchmark name (without the -GOMAXPROCS suffix) to its
// metrics by unit.
type results map[string]map[string]float64

var (
	procSuffix = regexp.MustCompile(`-\d+$`)
	skipLine   = regexp.MustCompile(`^\s*--- (SKIP|FAIL): (\S+)`)
)

func parse(r io.Reader) (results, map[string]string) {
	res := results{}
	status := map[string]string{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if m := skipLine.FindStringSubmatch(line); m != nil {
			status[m[2]] = strings.ToLower(m[1])
			continue
		}
		if !strings.HasPrefix(line, "Benchmark") {
			continue
		}
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		if _, err := strconv.Atoi(f[1]); err != nil {
			continue
		}
		name := procSuffix.ReplaceAllString(f[0], "")
		m := map[string]float64{}
		for i := 2; i+1 < len(f); i += 2 {
			if v, err := strconv.ParseFloat(f[i], 64); err == nil {
				m[f[i+1]] = v
			}
		}
		res[name] = m
	}
	return res, status
}

type cell struct {
	v  float64
	ok bool
}

func (r results) get(name, unit string) cell {
	m, ok := r[name]
	if !ok {
		return cell{}
	}
	v, ok := m[unit]
	return cell{v, ok}
}

// row is one line of the table.
type row struct {
	figure string
	ours   cell
	base   cell
	// baseName says what the baseline is.
	baseName string
	// ratio is ours/base unless given.
	ratio cell
	// target: ">= 0.8x", "<= 6 ms"; check tells whether it is met (nil:
	// a figure reported without a target).
	target string
	check  func(ours, ratio float64) bool
	// onRatio: check needs the ratio.
	onRatio bool
	// why a missing value is missing.
	whyOurs, whyBase string
	unit             string
}

func num(v float64, unit string) string {
	switch {
	case unit == "lines/s" || unit == "hits/s":
		switch {
		case v >= 1e6:
			return fmt.Sprintf("%.2f M %s", v/1e6, unit)
		case v >= 1e3:
			return fmt.Sprintf("%.0f k %s", v/1e3, unit)
		}
		return fmt.Sprintf("%.0f %s", v, unit)
	case unit == "ns":
		switch {
		case v >= 1e6:
			return fmt.Sprintf("%.2f ms", v/1e6)
		case v >= 1e3:
			return fmt.Sprintf("%.1f µs", v/1e3)
		}
		return fmt.Sprintf("%.1f ns", v)
	case unit == "":
		return fmt.Sprintf("%.3g", v)
	}
	return fmt.Sprintf("%.2f %s", v, unit)
}

func main() {
	peers := flag.Bool("peers", false, "the peer baselines were asked for")
	md := flag.Bool("md", false, "print a Markdown table")
	flag.Parse()
	res, status := parse(os.Stdin)
	whyPeer := "skipped (run with --peers)"
	if *peers {
		whyPeer = "not run (see output)"
	}
	notRun := func(name string) string {
		if status[name] == "fail" {
			return "FAILED (see output)"
		}
		if status[name] == "skip" {
			return "skipped (see output)"
		}
		return "not run (see output)"
	}
	g := res.get
	atMost := func(t float64) func(o, r float64) bool { return func(o, r float64) bool { return o <= t } }
	atLeast := func(t float64) func(o, r float64) bool { return func(o, r float64) bool { return o >= t } }
	ratioAtLeast := func(t float64) func(o, r float64) bool { return func(o, r float64) bool { return r >= t } }

	const p1 = "BenchmarkParse1M"
	var rows []row
	rows = append(rows,
		row{figure: "T1 parse 1M-line mix (wall, median)", ours: g(p1, "parse-lines/s"), base: g(p1, "grep-lines/s"), baseName: "grep -c DPT=",
			ratio: g(p1, "x-grep"), target: ">= 0.8x", check: ratioAtLeast(0.8), onRatio: true, unit: "lines/s", whyOurs: notRun(p1), whyBase: notRun(p1)},
		row{figure: "T1 parse CPU time vs grep (user+sys)", ratio: g(p1, "x-grep-cpu"), baseName: "grep -c DPT=", unit: "", whyOurs: "(ratio only)", whyBase: ""},
		row{figure: "T1 parse vs mawk SRC+DPT extraction", ours: g(p1, "parse-lines/s"), base: g(p1, "mawk-lines/s"), baseName: "mawk",
			ratio: g(p1, "x-mawk"), target: "(report)", unit: "lines/s", whyOurs: notRun(p1), whyBase: notRun(p1)},
		row{figure: "T1 parse vs fail2ban-regex, same rule", ours: g(p1, "parse-lines/s"), base: g(p1, "fail2ban-lines/s"), baseName: "fail2ban-regex",
			ratio: g(p1, "x-fail2ban"), target: ">= 50x", check: ratioAtLeast(50), onRatio: true, unit: "lines/s", whyOurs: notRun(p1), whyBase: whyPeer},
		row{figure: "T1 parse CPU time vs fail2ban-regex (user+sys)", ratio: g(p1, "x-fail2ban-cpu"), baseName: "fail2ban-regex", target: ">= 50x", check: ratioAtLeast(50), onRatio: true,
			unit: "", whyOurs: "(ratio only)", whyBase: whyPeer},
	)
	const kd = "BenchmarkLatency/knockd-iptables"
	for _, c := range []struct{ name, label, target string }{
		{"kmsg-nftables", "kmsg + nftables", "yes"},
		{"kmsg-ipset", "kmsg + ipset", "yes"},
		{"kmsg-iptables", "kmsg + iptables", ""},
		{"rsyslog-file-nftables", "rsyslog file + nftables", ""},
		{"kmsg-nftables-tmpfs-state", "kmsg + nftables, state on tmpfs", ""},
		{"kmsg-ipset-tmpfs-state", "kmsg + ipset, state on tmpfs", ""},
	} {
		n := "BenchmarkLatency/" + c.name
		for _, q := range []struct {
			unit, label string
			t           float64
		}{{"median-ms", "median", 6}, {"p95-ms", "p95", 12}} {
			r := row{figure: fmt.Sprintf("T2 knock->rule %s, %s", q.label, c.label), ours: g(n, q.unit), base: g(kd, q.unit),
				baseName: "knockd (pcap) + iptables", target: "(report)", unit: "ms", whyOurs: notRun(n), whyBase: whyPeer}
			if c.target != "" {
				r.target = fmt.Sprintf("<= %g ms", q.t)
				r.check = atMost(q.t)
			}
			rows = append(rows, r)
		}
	}
	const kn = "BenchmarkLatency/kmsg-nftables"
	var lost, peerLost, lockouts cell
	for _, c := range []string{"kmsg-nftables", "kmsg-ipset", "kmsg-iptables", "rsyslog-file-nftables", "kmsg-nftables-tmpfs-state", "kmsg-ipset-tmpfs-state"} {
		if v := g("BenchmarkLatency/"+c, "lost"); v.ok {
			lost = cell{lost.v + v.v, true}
		}
		if v := g("BenchmarkLatency/"+c, "lockouts"); v.ok {
			lockouts = cell{lockouts.v + v.v, true}
		}
	}
	for _, c := range []string{"knockd-iptables", "fwknop-pcap-iptables", "fwknop-udp-iptables"} {
		if v := g("BenchmarkLatency/"+c, "lost"); v.ok {
			peerLost = cell{peerLost.v + v.v, true}
		}
	}
	rows = append(rows,
		row{figure: "T2 knocks lost (port not open 3 s after), all our rows", ours: lost, base: peerLost, baseName: "all peer rows",
			target: "0", check: func(o, r float64) bool { return o == 0 }, unit: "", whyOurs: notRun(kn), whyBase: whyPeer},
		row{figure: "T2 lockouts of the knocking source, all our rows", ours: lockouts, target: "0", check: func(o, r float64) bool { return o == 0 }, unit: "", whyOurs: notRun(kn)},
	)
	for _, peer := range []struct{ name, label string }{
		{"BenchmarkLatency/fwknop-udp-iptables", "fwknop SPA (UDP server) + iptables"},
		{"BenchmarkLatency/fwknop-pcap-iptables", "fwknop SPA (pcap) + iptables"},
	} {
		for _, q := range []struct{ unit, label string }{{"median-ms", "median"}, {"p95-ms", "p95"}} {
			rows = append(rows, row{figure: fmt.Sprintf("T2 knock->rule %s, kmsg + nftables vs fwknop", q.label), ours: g(kn, q.unit), base: g(peer.name, q.unit),
				baseName: peer.label, target: "(report)", unit: "ms", whyOurs: notRun(kn), whyBase: whyPeer})
		}
	}
	const rf = "BenchmarkLatency/rsyslog-file-nftables"
	for _, q := range []struct{ unit, base, label string }{{"median-ms", "logline-median-ms", "median"}, {"p95-ms", "logline-p95-ms", "p95"}} {
		rows = append(rows, row{figure: fmt.Sprintf("T2 knock->rule %s, kmsg + nftables vs the log path alone", q.label), ours: g(kn, q.unit), base: g(kn, q.base),
			baseName: "LOG line read from /dev/kmsg by the benchmark", target: "(report)", unit: "ms", whyOurs: notRun(kn), whyBase: notRun(kn)})
	}
	for _, q := range []struct{ unit, base, label string }{{"median-ms", "logline-median-ms", "median"}, {"log-accepted-median-ms", "logline-median-ms", "'accepted' stamp median"}} {
		rows = append(rows, row{figure: fmt.Sprintf("T2 rsyslog file + nftables %s vs the line in the file", q.label), ours: g(rf, q.unit), base: g(rf, q.base),
			baseName: "line seen in kern.log by the benchmark (inotify)", target: "(report)", unit: "ms", whyOurs: notRun(rf), whyBase: notRun(rf)})
	}
	rows = append(rows,
		row{figure: "T2 of which log path + parse + decode (kmsg, daemon's 'accepted' stamp, median)", ours: g(kn, "log-accepted-median-ms"), target: "(report)", unit: "ms", whyOurs: notRun(kn)},
	)
	const sv, sa, nf, ns = "BenchmarkOpenPath/state/save", "BenchmarkOpenPath/state/append-dsync", "BenchmarkOpenPath/nft/fork", "BenchmarkOpenPath/nft/session"
	rows = append(rows,
		row{figure: "T2 open path: state.Save before the rule (the path until 06:49)", ours: g(sv, "ns/op"), base: g(sa, "ns/op"), baseName: "O_DSYNC journal append (the daemon's path since)",
			target: "(report)", unit: "ns", whyOurs: notRun(sv), whyBase: notRun(sa)},
		row{figure: "T2 open path: nft add element, one fork each (until 06:44)", ours: g(nf, "ns/op"), base: g(ns, "ns/op"), baseName: "one long-lived nft -i (rules' path since)",
			target: "(report)", unit: "ns", whyOurs: notRun(nf), whyBase: notRun(ns)},
	)
	const mb, ms = "BenchmarkDaemonMemory/flood=bursty", "BenchmarkDaemonMemory/flood=scattered"
	rows = append(rows,
		row{figure: "T3 idle RSS", ours: g(mb, "idle-rss-MB"), base: g(kd, "peer-rss-MB"), baseName: "knockd idle RSS",
			target: "<= 15 MB", check: atMost(15), unit: "MB", whyOurs: notRun(mb), whyBase: whyPeer},
		row{figure: "T3 idle RSS vs fwknopd", ours: g(mb, "idle-rss-MB"), base: g("BenchmarkLatency/fwknop-udp-iptables", "peer-rss-MB"), baseName: "fwknopd (UDP server) idle RSS",
			target: "<= 15 MB", check: atMost(15), unit: "MB", whyOurs: notRun(mb), whyBase: whyPeer},
		row{figure: "T3 flood (bursty, 300k candidates) peak RSS (VmHWM)", ours: g(mb, "flood-peak-rss-MB"),
			target: "<= 48 MB", check: atMost(48), unit: "MB", whyOurs: notRun(mb)},
		row{figure: "T3 flood (bursty) throughput, 2 real knocks opened, 0 other", ours: g(mb, "flood-hits/s"), base: g(mb, "parse-hits/s"), baseName: "knockdaemon parse, same bytes",
			ratio: g(mb, "x-parse"), target: ">= 500 k hits/s", check: atLeast(500000), unit: "hits/s", whyOurs: notRun(mb), whyBase: notRun(mb)},
		row{figure: "T3 flood (scattered, LRU-evicted) peak RSS", ours: g(ms, "flood-peak-rss-MB"),
			target: "<= 48 MB", check: atMost(48), unit: "MB", whyOurs: notRun(ms)},
		row{figure: "T3 flood (scattered) throughput, 2 real knocks opened, 0 other", ours: g(ms, "flood-hits/s"), base: g(ms, "parse-hits/s"), baseName: "knockdaemon parse, same bytes",
			ratio: g(ms, "x-parse"), target: ">= 500 k hits/s", check: atLeast(500000), unit: "hits/s", whyOurs: notRun(ms), whyBase: notRun(ms)},
	)
	const dec, raw = "BenchmarkDecode/Decode/100keys-5windows", "BenchmarkDecode/baseline=raw-500-decrypts"
	rows = append(rows,
		row{figure: "T4 decode 1 candidate, 100 keys x 5 windows", ours: g(dec, "ns/op"), base: g(raw, "ns/op"), baseName: "500 raw Blowfish decrypts",
			target: "< 50 µs", check: func(o, r float64) bool { return o < 50000 }, unit: "ns", whyOurs: notRun(dec), whyBase: notRun(raw)},
		row{figure: "   decode allocs/op", ours: g(dec, "allocs/op"), target: "(report)", unit: "", whyOurs: notRun(dec)},
	)
	const pm, pc = "BenchmarkParseMix", "BenchmarkParse/ipv4-syslog"
	const ah, fl = "BenchmarkAddHot", "BenchmarkFlood"
	rows = append(rows,
		row{figure: "Go: logparse.Parse over the mix, CPU ns/line (vs splitting lines)", ours: g(pm, "cpu-ns/line"), ratio: g(pm, "x-split"), baseName: "bytes.IndexByte line split",
			target: "(report)", unit: "", whyOurs: notRun(pm), whyBase: ""},
		row{figure: "   read from the file, CPU lines/s (ratio: cost over reading + splitting it)", ours: g(pm, "file-lines/s"), ratio: g(pm, "x-file-split"), baseName: "bufio.Reader over the file, lines only",
			target: "(report)", unit: "lines/s", whyOurs: notRun(pm), whyBase: ""},
		row{figure: "Go: logparse.Parse one IPv4 hit, ns/op", ours: g(pc, "ns/op"), target: "(report)", unit: "ns", whyOurs: notRun(pc)},
		row{figure: "   Parse allocs/op (mix; one hit)", ours: g(pm, "allocs/op"), base: g(pc, "allocs/op"), baseName: "one-hit case", target: "0", check: func(o, r float64) bool { return o == 0 }, unit: "", whyOurs: notRun(pm), whyBase: notRun(pc)},
		row{figure: "Go: knock assembler Add (hot source), ns/op", ours: g(ah, "ns/op"), base: g(ah, "baseline-ns/hit"), baseName: "map update per hit",
			ratio: g(ah, "x-baseline"), target: "(report)", unit: "ns", whyOurs: notRun(ah), whyBase: notRun(ah)},
		row{figure: "   Add allocs/op", ours: g(ah, "allocs/op"), target: "0", check: func(o, r float64) bool { return o == 0 }, unit: "", whyOurs: notRun(ah)},
		row{figure: "Go: knock assembler flood 1M hits/100k sources", ours: g(fl, "hits/s"), base: g(fl, "baseline-hits/s"), baseName: "map[netip.Addr]int counting",
			ratio: g(fl, "speed-ratio"), target: "(report)", unit: "hits/s", whyOurs: notRun(fl), whyBase: notRun(fl)},
		row{figure: "   assembler flood heap", ours: g(fl, "heap-MB"), base: g(fl, "baseline-heap-MB"), baseName: "the counting map", target: "(report)", unit: "MB", whyOurs: notRun(fl), whyBase: notRun(fl)},
		row{figure: "Go: parsecmd.Run vs grep -c, CPU, 200k lines", ratio: g("BenchmarkRunVsGrep", "x-grep"), baseName: "grep -c DPT=", target: "(report)", unit: "", whyOurs: "(ratio only)", whyBase: ""},
	)
	printTable(rows, *md)
}

func printTable(rows []row, md bool) {
	head := []string{"figure", "ours", "baseline (same run)", "ratio", "target", "met"}
	var table [][]string
	for _, r := range rows {
		ours := r.whyOurs
		if r.ours.ok {
			ours = num(r.ours.v, r.unit)
		}
		base := r.whyBase
		if r.base.ok {
			base = num(r.base.v, r.unit)
			if r.baseName != "" {
				base += " (" + r.baseName + ")"
			}
		} else if r.baseName != "" && r.whyBase == "" {
			base = r.baseName
		} else if r.baseName != "" && !r.base.ok && r.whyBase != "" {
			base = r.baseName + ": " + r.whyBase
			if r.whyOurs == "(ratio only)" && r.ratio.ok {
				base = r.baseName
			}
		}
		ratio := r.ratio
		if !ratio.ok && r.ours.ok && r.base.ok && r.base.v != 0 {
			ratio = cell{r.ours.v / r.base.v, true}
		}
		rs := "—"
		if ratio.ok {
			rs = fmt.Sprintf("%.3gx", ratio.v)
		}
		met := "—"
		if r.check != nil {
			switch {
			case r.onRatio && !ratio.ok:
				met = "n/a"
			case r.ours.ok || (ratio.ok && r.whyOurs == "(ratio only)"):
				if r.check(r.ours.v, ratio.v) {
					met = "yes"
				} else {
					met = "NO"
				}
			default:
				met = "n/a"
			}
		}
		tgt := r.target
		if tgt == "" {
			tgt = "—"
		}
		table = append(table, []string{r.figure, ours, base, rs, tgt, met})
	}
	if md {
		fmt.Println("| " + strings.Join(head, " | ") + " |")
		fmt.Println("|" + strings.Repeat("---|", len(head)))
		for _, t := range table {
			fmt.Println("| " + strings.Join(t, " | ") + " |")
		}
		return
	}
	w := make([]int, len(head))
	for i, h := range head {
		w[i] = len([]rune(h))
	}
	for _, t := range table {
		for i, c := range t {
			w[i] = max(w[i], len([]rune(c)))
		}
	}
	line := func(cs []string) {
		var b strings.Builder
		for i, c := range cs {
			b.WriteString(c)
			if i < len(cs)-1 {
				b.WriteString(strings.Repeat(" ", w[i]-len([]rune(c))+2))
			}
		}
		fmt.Println(b.String())
	}
	line(head)
	for _, t := range table {
		line(t)
	}
}
