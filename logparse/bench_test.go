package logparse

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/knockdaemon/knock/bench/mixlog"
)

// mixData is a realistic kernel/syslog file: lines of about 240 bytes,
// nine in ten unrelated (daemons, kernel chatter, other firewall rules
// would be hits too, so they are counted in the tenth), one in ten a knock hit.
func mixData(lines int) []byte {
	noise := []string{
		"Nov 21 05:20:44 gw sshd[%d]: Accepted publickey for deploy from 198.51.100.%d port 5%04d ssh2: ED25519 SHA256:Zm9vYmFyYmF6cXV4cXV1eGZvb2JhcmJhenF1eHF1dXg gateway session",
		"Nov 21 05:20:44 gw CRON[%d]: pam_unix(cron:session): session opened for user root(uid=0) by (uid=0) host 198.51.100.%d job %d from /etc/cron.d/backup-nightly",
		"Nov 21 05:20:44 gw kernel: [  488.%06d] e1000e 0000:00:19.0 eth0: NIC Link is Up 1000 Mbps Full Duplex, Flow Control: Rx/Tx pci slot %d bus %d",
		"Nov 21 05:20:44 gw systemd[1]: Started session-%d.scope - Session %d of User deploy; unit has finished starting up with result done after %d ms.",
		"Nov 21 05:20:44 gw postfix/smtpd[%d]: connect from mail.example.net[203.0.113.%d] with TLSv1.3 cipher TLS_AES_256_GCM_SHA384 (256/256 bits) id %d",
		"Nov 21 05:20:44 gw dhclient[%d]: DHCPREQUEST for 192.0.2.%d on eth0 to 192.0.2.1 port 67 (xid=0x%x) renewing lease before it expires soon",
		"Nov 21 05:20:44 gw kernel: [  488.%06d] audit: type=1400 audit(1700000000.%d:%d): apparmor=\"STATUS\" operation=\"profile_load\" name=\"nvidia_modprobe\"",
		"Nov 21 05:20:44 gw nginx[%d]: 198.51.100.%d - - \"GET /api/v1/status?id=%d HTTP/1.1\" 200 612 \"-\" \"Mozilla/5.0 (X11; Linux x86_64) curl/8.4\"",
		"Nov 21 05:20:44 gw rsyslogd[%d]: imuxsock: Acquired UNIX socket '/run/systemd/journal/syslog' (fd %d) from systemd.  [v8.2302.0 try %d]",
	}
	const hit = "Nov 21 05:20:44 gw kernel: [  488.204357] knock: IN=eth0 OUT= MAC=02:00:5e:00:53:01:02:00:5e:00:53:02:08:00 SRC=198.51.100.%d DST=203.0.113.5 LEN=60 TOS=0x00 PREC=0x00 TTL=64 ID=%d DF PROTO=TCP SPT=%d DPT=%d WINDOW=64240 RES=0x00 SYN URGP=0 "
	var b bytes.Buffer
	for i := 0; i < lines; i++ {
		if i%10 == 3 {
			fmt.Fprintf(&b, hit, i%200+1, i%65536, 32768+i%28000, 745+i%256)
		} else {
			fmt.Fprintf(&b, noise[i%len(noise)], 1000+i%30000, i%250+1, i%9000+1)
			b.WriteString(" (repeated 3 times, last message within the rate limit window of the journal)")
		}
		b.WriteByte('\n')
	}
	return b.Bytes()
}

// splitLines is the baseline: find the lines and do nothing else.
func splitLines(data []byte, fn func([]byte)) {
	for len(data) > 0 {
		i := bytes.IndexByte(data, '\n')
		if i < 0 {
			fn(data)
			return
		}
		fn(data[:i])
		data = data[i+1:]
	}
}

var sinkN int

// fileLines reads an open file from its start line by line with a
// bufio.Reader (reset, not reallocated), as a reader of a log file would,
// and calls fn for each line without its newline.
func fileLines(b *testing.B, f *os.File, r *bufio.Reader, fn func([]byte)) {
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		b.Fatal(err)
	}
	r.Reset(f)
	for {
		l, err := r.ReadSlice('\n')
		if len(l) > 0 && l[len(l)-1] == '\n' {
			fn(l[:len(l)-1])
		} else if len(l) > 0 {
			fn(l)
		}
		if err == io.EOF {
			return
		}
		if err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkParseMix parses the synthetic mix (mixData); see benchMix.
func BenchmarkParseMix(b *testing.B) {
	const lines = 20000
	benchMix(b, mixData(lines), lines, lines/10)
}

// BenchmarkParseMixlog parses the first 20,000 lines of the issue-8 mix
// (bench/mixlog, seed 1: the 1M-line file of bench/run.sh), in which a
// sixth of the lines are firewall hits; see benchMix.
func BenchmarkParseMixlog(b *testing.B) {
	const lines = 20000
	var buf bytes.Buffer
	w := bufio.NewWriter(&buf)
	g := mixlog.New(1, "knock: ")
	for i := range lines {
		g.Line(w, i)
	}
	if err := w.Flush(); err != nil {
		b.Fatal(err)
	}
	data := buf.Bytes()
	var h Hit
	hits := 0
	splitLines(data, func(l []byte) {
		if Parse(l, &h) == nil {
			hits++
		}
	})
	benchMix(b, data, lines, hits)
}

// benchMix parses data (lines lines, hits of them hits) and reports
// lines/s and the cost relative to only splitting it into lines, against
// two baselines timed in the same loop:
//
//   - "x-split": parsing the data in memory over finding its lines in
//     memory with bytes.IndexByte (1.0 would be free parsing);
//   - "x-file-split": reading the data from a file with a bufio.Reader and
//     parsing every line, over reading the same file the same way and
//     doing nothing with the lines (issue #3's baseline, "just splitting
//     the file into lines").
//
// Every part is timed in CPU time of the locked thread, so the ratios hold
// on a loaded machine; "cpu-lines/s" and "cpu-ns/line" are the in-memory
// parse rate. Nothing in the loop allocates but Parse (allocs/op).
func benchMix(b *testing.B, data []byte, lines, wantHits int) {
	path := filepath.Join(b.TempDir(), "mix.log")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		b.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	r := bufio.NewReaderSize(f, 64<<10)
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	count := func(l []byte) { sinkN += len(l) }
	var h Hit
	hits := 0
	parse := func(l []byte) {
		if Parse(l, &h) == nil {
			hits++
		}
	}
	var base, cost, fileBase, fileCost time.Duration
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		t0 := threadCPU()
		splitLines(data, count)
		t1 := threadCPU()
		splitLines(data, parse)
		t2 := threadCPU()
		fileLines(b, f, r, count)
		t3 := threadCPU()
		fileLines(b, f, r, parse)
		t4 := threadCPU()
		base += t1 - t0
		cost += t2 - t1
		fileBase += t3 - t2
		fileCost += t4 - t3
	}
	b.StopTimer()
	if hits != 2*b.N*wantHits {
		b.Fatalf("%d hits, want %d", hits, 2*b.N*wantHits)
	}
	if base > 0 && cost > 0 {
		b.ReportMetric(float64(lines*b.N)/cost.Seconds(), "cpu-lines/s")
		b.ReportMetric(float64(cost)/float64(base), "x-split")
		b.ReportMetric(float64(cost)/float64(lines*b.N), "cpu-ns/line")
	}
	if fileBase > 0 && fileCost > 0 {
		b.ReportMetric(float64(fileCost)/float64(fileBase), "x-file-split")
		b.ReportMetric(float64(lines*b.N)/fileCost.Seconds(), "file-lines/s")
	}
	b.ReportMetric(float64(len(data))/float64(lines), "B/line")
}

func BenchmarkParse(b *testing.B) {
	cases := []struct{ name, line string }{
		{"not-firewall", "Nov 21 05:20:44 gw sshd[1234]: Accepted publickey for deploy from 198.51.100.7 port 51515 ssh2: ED25519 SHA256:Zm9vYmFyYmF6cXV4cXV1eGZvb2JhcmJhenF1eHF1dXg gateway session opened"},
		{"ipv4-syslog", "Nov 21 05:20:44 gw kernel: [  488.204357] knock: IN=eth0 OUT= MAC=02:00:5e:00:53:01:02:00:5e:00:53:02:08:00 SRC=198.51.100.7 DST=203.0.113.5 LEN=60 TOS=0x00 PREC=0x00 TTL=64 ID=1 DF PROTO=TCP SPT=51515 DPT=800 WINDOW=64240 RES=0x00 SYN URGP=0 "},
		{"ipv4-kmsg", "4,441,684679879,-;knock: IN=eth0 OUT= MAC=02:00:5e:00:53:01:02:00:5e:00:53:02:08:00 SRC=198.51.100.7 DST=203.0.113.5 LEN=60 TOS=0x00 PREC=0x00 TTL=64 ID=1 DF PROTO=TCP SPT=51515 DPT=800 WINDOW=64240 RES=0x00 SYN URGP=0 "},
		{"ipv6-rfc3339", "2026-11-21T05:20:44.204357+02:00 gw kernel: knock: IN=eth0 OUT= MAC= SRC=2001:0db8:0000:0000:0000:0000:0000:0007 DST=2001:0db8:0000:0000:0000:0000:0000:0005 LEN=80 TC=0 HOPLIMIT=64 FLOWLBL=1 PROTO=TCP SPT=51515 DPT=800 WINDOW=64800 RES=0x00 SYN URGP=0 "},
		{"ipfw", "Nov 21 05:20:44 fw kernel: ipfw: 100 Deny TCP 198.51.100.7:51515 203.0.113.5:800 in via em0"},
		{"malformed", "Nov 21 05:20:44 gw kernel: knock: IN=eth0 OUT= MAC= SRC=198.51.100.7 SRC=198.51.100.8 DST=203.0.113.5 LEN=60 TTL=64 PROTO=TCP SPT=1 DPT=800 "},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			line := []byte(c.line)
			var h Hit
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			b.ReportAllocs()
			b.SetBytes(int64(len(line)))
			t0 := threadCPU()
			for i := 0; i < b.N; i++ {
				_ = Parse(line, &h)
			}
			b.ReportMetric(float64(threadCPU()-t0)/float64(b.N), "cpu-ns/op")
		})
	}
}

func TestAllocations(t *testing.T) {
	tests := []struct {
		name string
		line string
		max  float64
	}{
		{"unrelated line", "Nov 21 05:20:44 gw sshd[1234]: Accepted publickey for deploy from 198.51.100.7 port 51515 ssh2", 0},
		{"SRC= but not the kernel's", "Nov 21 05:20:44 gw app: copied SRC=/a DST=/b", 0},
		{"repeated netfilter hit", "Nov 21 05:20:44 gw kernel: [  488.204357] knock: IN=eth0 OUT= MAC= SRC=198.51.100.7 DST=203.0.113.5 LEN=60 TOS=0x00 PREC=0x00 TTL=64 ID=1 DF PROTO=TCP SPT=51515 DPT=800 WINDOW=64240 RES=0x00 SYN URGP=0 ", 0},
		{"repeated IPv6 hit with a zone offset", "2026-11-21T05:20:44.204357+02:00 gw kernel: knock: IN=eth0 OUT= MAC= SRC=2001:0db8:0000:0000:0000:0000:0000:0007 DST=2001:0db8:0000:0000:0000:0000:0000:0005 LEN=80 TC=0 HOPLIMIT=64 FLOWLBL=1 PROTO=TCP SPT=51515 DPT=800 WINDOW=64800 RES=0x00 SYN URGP=0 ", 0},
		{"repeated ipfw hit", "Nov 21 05:20:44 fw kernel: ipfw: 300 Unreach 3 TCP 198.51.100.7:51515 203.0.113.5:800 in via em0", 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			line := []byte(tc.line)
			var h Hit
			_ = Parse(line, &h) // the first hit fills the strings
			if n := testing.AllocsPerRun(200, func() { _ = Parse(line, &h) }); n > tc.max {
				t.Errorf("%v allocations per line, want at most %v", n, tc.max)
			}
		})
	}
}

// TestAlternatingPrefixes: lines that alternate between a few prefixes
// parse without allocating once each prefix has been seen, and each hit
// carries its own line's prefix.
func TestAlternatingPrefixes(t *testing.T) {
	prefixes := []string{"[UFW BLOCK]", "[UFW AUDIT]", "knock:", "DROP-IN:"}
	var lines [][]byte
	for _, p := range prefixes {
		lines = append(lines, []byte("Nov 21 05:20:44 gw kernel: "+p+" IN=eth0 OUT= MAC= SRC=198.51.100.7 DST=203.0.113.5 LEN=60 TTL=64 PROTO=TCP SPT=51515 DPT=800 "))
	}
	var h Hit
	for _, l := range lines {
		if err := Parse(l, &h); err != nil {
			t.Fatal(err)
		}
	}
	k := 0
	n := testing.AllocsPerRun(200, func() {
		if err := Parse(lines[k%len(lines)], &h); err != nil || h.Prefix != prefixes[k%len(lines)] {
			t.Fatalf("line %d: %v, prefix %q", k, err, h.Prefix)
		}
		k++
	})
	if n != 0 {
		t.Errorf("%v allocations per line, want 0", n)
	}
}
