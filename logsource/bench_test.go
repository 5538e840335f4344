package logsource

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// benchData is a realistic firewall log: mostly unrelated lines, a tenth
// knock hits, rsyslog traditional framing.
func benchData(lines int) []byte {
	var b bytes.Buffer
	for i := range lines {
		if i%10 == 0 {
			fmt.Fprintf(&b, "Nov 21 05:20:44 gw kernel: [  488.%06d] knock: IN=eth0 OUT= MAC=52:54:00:12:34:56:52:54:00:65:43:21:08:00 SRC=198.18.%d.%d DST=198.18.0.1 LEN=60 TOS=0x00 PREC=0x00 TTL=64 ID=%d DF PROTO=TCP SPT=%d DPT=%d WINDOW=64240 RES=0x00 SYN URGP=0\n",
				i%1000000, i>>8&255, i&255, i&65535, 30000+i%30000, 745+i%256)
		} else {
			fmt.Fprintf(&b, "Nov 21 05:20:44 gw systemd[1]: Started session %d of user alice (unit session-%d.scope).\n", i, i)
		}
	}
	return b.Bytes()
}

const benchLines = 200000

func writeBenchFile(tb testing.TB, data []byte) (string, uint64) {
	tb.Helper()
	path := filepath.Join(tb.TempDir(), "kern.log")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		tb.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		tb.Fatal(err)
	}
	_, ino := fileID(fi)
	return path, ino
}

func scanFile(tb testing.TB, path string) int {
	f, err := os.Open(path)
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), DefaultMaxLine)
	n := 0
	for sc.Scan() {
		n += len(sc.Bytes()) & 1 // touch the line
		n++
	}
	return n
}

// readWithFile runs a File source from offset 0 until it delivered want
// lines, and returns the time from the start of Run to the last line.
// Stopping is left out: closing an inotify descriptor waits for an RCU
// grace period in the kernel (about 20 ms), a one-off cost at shutdown.
func readWithFile(tb testing.TB, path string, ino uint64, want int) time.Duration {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	n, sum := 0, 0
	var last time.Time
	src := NewFile(path, FileOptions{Resume: Position{Path: path, Inode: ino}})
	start := time.Now()
	err := src.Run(ctx, func(l Line) {
		sum += len(l.Text) & 1
		n++
		if n == want {
			last = time.Now()
			cancel()
		}
	})
	if err != nil || n != want {
		tb.Fatalf("file source: %d lines, err %v", n, err)
	}
	return last.Sub(start)
}

func readWithReader(tb testing.TB, path string, want int) {
	f, err := os.Open(path)
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	n, sum := 0, 0
	err = NewReader(f, "bench").Run(context.Background(), func(l Line) {
		sum += len(l.Text) & 1
		n++
	})
	if err != nil || n != want {
		tb.Fatalf("reader source: %d lines, err %v", n, err)
	}
}

// BenchmarkSources compares the File and Reader sources with a plain
// bufio.Scanner over the same file, interleaved in the same run so all
// three see the same machine state. Each op reads the whole file (200,000
// lines, about 20 MB) with each of the three. On a shared machine single
// runs are noisy, so the fastest run of each is compared: lines/s and the
// speed relative to the scanner.
func BenchmarkSources(b *testing.B) {
	data := benchData(benchLines)
	path, ino := writeBenchFile(b, data)
	scanFile(b, path) // warm the page cache
	best := func(cur *time.Duration, d time.Duration) {
		if *cur == 0 || d < *cur {
			*cur = d
		}
	}
	var tScan, tFile, tReader time.Duration
	for b.Loop() {
		t0 := time.Now()
		scanFile(b, path)
		t1 := time.Now()
		readWithReader(b, path, benchLines)
		t2 := time.Now()
		best(&tFile, readWithFile(b, path, ino, benchLines))
		best(&tScan, t1.Sub(t0))
		best(&tReader, t2.Sub(t1))
	}
	n := float64(benchLines)
	b.ReportMetric(n/tScan.Seconds(), "scanner-lines/s")
	b.ReportMetric(n/tFile.Seconds(), "file-lines/s")
	b.ReportMetric(n/tReader.Seconds(), "reader-lines/s")
	b.ReportMetric(tScan.Seconds()/tFile.Seconds(), "file/scanner")
	b.ReportMetric(tScan.Seconds()/tReader.Seconds(), "reader/scanner")
	b.ReportMetric(0, "ns/op")
}

// TestNoPerLineAllocation: the Reader (stdin, the flood path) reads
// 200,000 lines with a bounded number of allocations (buffers), not one
// per line. The File source follows through nxadm/tail, which allocates
// per line (the line's string, its strings.Builder copy, the *tail.Line):
// it is held to that and no more.
func TestNoPerLineAllocation(t *testing.T) {
	if testing.Short() {
		t.Skip("reads 20 MB")
	}
	data := benchData(benchLines)
	path, ino := writeBenchFile(t, data)
	cases := []struct {
		name string
		max  float64
		read func()
	}{
		// One allocation per line would be 200,000; buffers, the
		// watcher and the race detector's bookkeeping stay far below.
		{"reader source", 1000, func() { readWithReader(t, path, benchLines) }},
		// nxadm/tail's three per line, plus the tail's and the
		// source's own (a look at the path every millisecond while
		// lines flow): a fourth per line would be 200,000 more.
		{"file source", 3.1 * benchLines, func() { _ = readWithFile(t, path, ino, benchLines) }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			allocs := testing.AllocsPerRun(2, tc.read)
			if allocs > tc.max {
				t.Fatalf("%v allocations for %d lines, want at most %v: an allocation per line crept in", allocs, benchLines, tc.max)
			}
			t.Logf("%v allocations for %d lines", allocs, benchLines)
		})
	}
}
