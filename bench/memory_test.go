package bench

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/knockdaemon/knock/bench/mixlog"
	"github.com/knockdaemon/knock/internal/netnstest"
)

const (
	floodHits    = 1_000_000
	floodSources = 100_000
)

// BenchmarkDaemonMemory runs knockdaemon (stdin source, nftables backend,
// inside the server namespace) and measures:
//
//   - idle RSS (VmRSS) two seconds after start (target <= 15 MB);
//   - a flood of 1,000,000 knock-port hits from 100,000 distinct spoofed
//     sources written into its stdin as fast as it reads: peak RSS
//     (VmHWM, target <= 48 MB) and hits/s (target >= 500,000), against
//     "knockdaemon parse" reading the same bytes from a pipe in the same
//     run (the parser alone: x-parse);
//   - two real knocks in the stream, as the eight log lines of the
//     sequence printed by "knockclient sequence" from the client's
//     address: one in the middle of the flood, one at its end. Both must
//     open their port (checked by connecting from the client namespace)
//     and nothing else may be granted. The end knock's "opened" log stamp
//     ends the timing, so hits/s includes its firewall command.
//
// Two floods: "bursty" (sources in groups of 1000 that each complete
// three candidates: 300,000 decodes and rejections, 100,000 lockouts; the
// expensive case the targets are held to) and "scattered" (round-robin
// over all sources, so the 65,536-source table evicts each before its
// next hit).
func BenchmarkDaemonMemory(b *testing.B) {
	for _, bursty := range []bool{true, false} {
		name := "flood=scattered"
		if bursty {
			name = "flood=bursty"
		}
		b.Run(name, func(b *testing.B) { benchDaemonMemory(b, bursty) })
	}
}

func benchDaemonMemory(b *testing.B, bursty bool) {
	client := bin(b, "knockclient")
	var idle, peak int64
	var rate, parseRate float64
	var ctr counters
	for b.Loop() {
		w := newWorld(b, "nftables")
		conf := w.writeConfig("stdin", "", 0)
		d := w.startDaemon(conf, true)
		pid := d.cmd.Process.Pid
		if comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid)); strings.TrimSpace(string(comm)) != "knockdaemon" {
			b.Fatalf("pid %d is %q, not knockdaemon", pid, comm)
		}
		time.Sleep(2 * time.Second)
		var err error
		if idle, err = procStatus(pid, "VmRSS"); err != nil {
			b.Fatal(err)
		}

		portA, portB := uint16(protBase), uint16(protBase+1)
		netnstest.Listen(b, w.net.Server, "tcp4", fmt.Sprintf(":%d", portA))
		netnstest.Listen(b, w.net.Server, "tcp4", fmt.Sprintf(":%d", portB))
		seqA := w.clientSequence(b, client, portA)
		seqB := w.clientSequence(b, client, portB)
		src := w.net.Client.IP4.String()
		var flood bytes.Buffer
		flood.Grow(floodHits * 250)
		bw := bufio.NewWriter(&flood)
		g := mixlog.New(2, w.prefix)
		k := 0
		for i := range floodHits {
			if i >= floodHits/2 && i%1000 == 0 && k < 8 {
				g.KnockHit(bw, src, seqA[k], false)
				k++
			}
			g.FloodHit(bw, i, floodHits, floodSources, bursty)
		}
		for _, p := range seqB {
			g.KnockHit(bw, src, p, false)
		}
		bw.Flush()
		data := flood.Bytes()

		start := time.Now()
		werr := make(chan error, 1)
		go func() {
			for off := 0; off < len(data); off += 1 << 20 {
				if _, err := d.stdin.Write(data[off:min(len(data), off+1<<20)]); err != nil {
					werr <- err
					return
				}
			}
			werr <- nil
		}()
		var opened []event
		for len(opened) < 2 {
			e, err := d.wait(60*time.Second, func(e event) bool { return e.Event == "opened" })
			if err != nil {
				b.Fatalf("flood: %d openings so far: %v\n%s", len(opened), err, d.logText())
			}
			opened = append(opened, e)
		}
		if err := <-werr; err != nil {
			b.Fatal(err)
		}
		end := opened[1].Time
		for i, want := range []uint16{portA, portB} {
			if e := opened[i]; e.Port != int(want) || e.Addr != src {
				b.Fatalf("opening %d is %s port %d, want %s port %d", i+1, e.Addr, e.Port, src, want)
			}
			if err := netnstest.Dial(w.net.Client.NS, "tcp4", fmt.Sprintf("%s:%d", w.net.Client.ServerIP4, want), time.Second); err != nil {
				b.Fatalf("port %d did not open for the real knock: %v", want, err)
			}
		}
		// Anything else opened shortly after the end would be a grant
		// the flood should not have made.
		if e, err := d.wait(500*time.Millisecond, func(e event) bool { return e.Event == "opened" }); err == nil {
			b.Fatalf("flood opened %s port %d", e.Addr, e.Port)
		}
		if peak, err = procStatus(pid, "VmHWM"); err != nil {
			b.Fatal(err)
		}
		rate = float64(floodHits+16) / end.Sub(start).Seconds()
		ctr = w.counters(b, d.conf)
		if ctr.Hits != floodHits+16 || ctr.Accepted != 2 || ctr.Opened != 2 {
			b.Fatalf("daemon counters after the flood: %+v; want %d hits, 2 accepted, 2 opened", ctr, floodHits+16)
		}
		if bursty && ctr.Candidates < 3*floodSources {
			b.Fatalf("bursty flood made only %d candidates: %+v", ctr.Candidates, ctr)
		}

		// Baseline: the parser alone on the same bytes through a pipe.
		cmd := exec.Command(bin(b, "knockdaemon"), "parse", "--quiet", "--prefix", strings.TrimSpace(w.prefix), "-")
		cmd.Stdin = bytes.NewReader(data)
		pstart := time.Now()
		out, err := cmd.Output()
		if err != nil {
			b.Fatalf("parse: %v", err)
		}
		parseRate = float64(floodHits+16) / time.Since(pstart).Seconds()
		if n := atoiMatch(reKnock, out, 1); n != floodHits+16 {
			b.Fatalf("parse saw %d knock-port hits, want %d", n, floodHits+16)
		}
	}
	b.ReportMetric(float64(idle)/(1<<20), "idle-rss-MB")
	b.ReportMetric(float64(peak)/(1<<20), "flood-peak-rss-MB")
	b.ReportMetric(rate, "flood-hits/s")
	b.ReportMetric(parseRate, "parse-hits/s")
	b.ReportMetric(rate/parseRate, "x-parse")
	b.ReportMetric(float64(ctr.Candidates), "candidates")
	var rej uint64
	for _, n := range ctr.Rejected {
		rej += n
	}
	b.ReportMetric(float64(rej), "rejected")
	b.ReportMetric(float64(ctr.Lockouts), "lockouts")
	b.ReportMetric(float64(ctr.Opened), "opened")
}

// clientSequence asks knockclient for the eight ports of a request for
// port (1 minute, the knock's own address), encoded for now.
func (w *world) clientSequence(b *testing.B, client string, port uint16) []int {
	out, err := exec.Command(client, "sequence", "--key-file", w.keyFile, "--port", strconv.Itoa(int(port)),
		"--time", "1", "--at", strconv.FormatInt(time.Now().Unix(), 10)).CombinedOutput()
	if err != nil {
		b.Fatalf("knockclient sequence: %v: %s", err, out)
	}
	var ports []int
	for _, f := range strings.Fields(string(out)) {
		n, err := strconv.Atoi(f)
		if err != nil || n < 745 || n > 1000 {
			b.Fatalf("knockclient sequence printed %q", out)
		}
		ports = append(ports, n)
	}
	if len(ports) != 8 {
		b.Fatalf("knockclient sequence printed %q", out)
	}
	return ports
}

// counters are the daemon's own counts (knockdaemon status --json).
type counters struct {
	Hits       uint64            `json:"hits"`
	Candidates uint64            `json:"candidates"`
	Accepted   uint64            `json:"accepted"`
	Rejected   map[string]uint64 `json:"rejected"`
	Lockouts   uint64            `json:"lockouts"`
	Opened     uint64            `json:"opened"`
}

// counters asks the running daemon for its counters.
func (w *world) counters(b *testing.B, conf string) counters {
	out, err := exec.Command(bin(b, "knockdaemon"), "-c", conf, "status", "--json").Output()
	if err != nil {
		b.Fatalf("knockdaemon status --json: %v: %s", err, out)
	}
	var st struct {
		From     string    `json:"from"`
		Counters *counters `json:"counters"`
	}
	if err := json.Unmarshal(out, &st); err != nil || st.Counters == nil || st.From != "daemon" {
		b.Fatalf("knockdaemon status --json: %v: %s", err, out)
	}
	return *st.Counters
}
