// Command genlog writes a realistic, deterministic kern.log/syslog mix for
// the benchmarks of issue 8 (bench/run.sh): by default 1,000,000 lines of
// about 240 bytes, one in ten a netfilter LOG hit on a knock port
// (745..1000) from varied IPv4 and IPv6 sources, the rest the noise of a
// real gateway: sshd, cron, systemd, postfix, nginx, dhclient, kernel
// chatter and other firewall rules (UFW/LOG lines on other ports, which
// also carry "DPT=").
//
// The output depends only on -seed and -lines. With -flood it writes only
// knock-port hits instead, from -sources distinct spoofed addresses, for
// the memory/throughput flood of target 3.
//
//	genlog -lines 1000000 -seed 1 -o kern.log
//	genlog -flood -lines 1000000 -sources 100000 -prefix 'knock: ' -o flood.log
package main

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/knockdaemon/knock/bench/mixlog"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "genlog:", err)
		os.Exit(1)
	}
}

func run() error {
	lines := flag.Int("lines", 1_000_000, "number of lines")
	seed := flag.Uint64("seed", 1, "random seed (same seed, same file)")
	out := flag.String("o", "-", "output file (- for stdout)")
	flood := flag.Bool("flood", false, "write only knock-port hits (target 3's flood)")
	sources := flag.Int("sources", 100_000, "distinct sources in a -flood")
	bursty := flag.Bool("bursty", false, "-flood: sources in groups of 1000 that complete candidates (else scattered round-robin)")
	prefix := flag.String("prefix", "knock: ", "LOG prefix of the knock hits")
	flag.Parse()
	if *lines < 0 || *sources < 1 || *sources > 1<<24 {
		return fmt.Errorf("bad -lines or -sources")
	}
	var w io.Writer = os.Stdout
	if *out != "-" {
		f, err := os.Create(*out)
		if err != nil {
			return err
		}
		defer f.Close()
		w = f
	}
	bw := bufio.NewWriterSize(w, 1<<20)
	g := mixlog.New(*seed, *prefix)
	if *flood {
		for i := range *lines {
			g.FloodHit(bw, i, *lines, *sources, *bursty)
		}
	} else {
		for i := range *lines {
			g.Line(bw, i)
		}
	}
	if err := bw.Flush(); err != nil {
		return err
	}
	if f, ok := w.(*os.File); ok && f != os.Stdout {
		return f.Close()
	}
	return nil
}
