package parsecmd

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// mix is about 240-byte lines, nine in ten unrelated, one in ten a knock hit.
func mix(lines int) []byte {
	noise := []string{
		"Nov 21 05:20:44 gw sshd[%d]: Accepted publickey for deploy from 198.51.100.%d port 5%04d ssh2: ED25519 SHA256:Zm9vYmFyYmF6cXV4cXV1eGZvb2JhcmJhenF1eHF1dXg gateway session",
		"Nov 21 05:20:44 gw CRON[%d]: pam_unix(cron:session): session opened for user root(uid=0) by (uid=0) host 198.51.100.%d job %d from /etc/cron.d/backup-nightly",
		"Nov 21 05:20:44 gw kernel: [  488.%06d] e1000e 0000:00:19.0 eth0: NIC Link is Up 1000 Mbps Full Duplex, Flow Control: Rx/Tx pci slot %d bus %d",
		"Nov 21 05:20:44 gw systemd[1]: Started session-%d.scope - Session %d of User deploy; unit has finished starting up with result done after %d ms.",
		"Nov 21 05:20:44 gw postfix/smtpd[%d]: connect from mail.example.net[203.0.113.%d] with TLSv1.3 cipher TLS_AES_256_GCM_SHA384 (256/256 bits) id %d",
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

// processCPU is the CPU time of the whole process: Run parses on worker
// goroutines, so the calling thread's time would miss most of it.
func processCPU() time.Duration {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkRunVsGrep runs the command's core and "grep -c DPT=" on the
// same file in turn and compares their CPU time, of every thread of each
// process (issue 8 wants parse at
// 0.8x grep's speed or better: "x-grep" >= 0.8), and the core against
// just counting the lines ("x-count").
func BenchmarkRunVsGrep(b *testing.B) {
	grep, err := exec.LookPath("grep")
	if err != nil {
		b.Skip("no grep")
	}
	const lines = 200000
	data := mix(lines)
	path := filepath.Join(b.TempDir(), "kern.log")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		b.Fatal(err)
	}
	var grepCPU, runCPU, countCPU time.Duration
	b.SetBytes(int64(len(data)))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		cmd := exec.Command(grep, "-c", "DPT=", path)
		out, err := cmd.Output()
		if err != nil || string(bytes.TrimSpace(out)) != fmt.Sprint(lines/10) {
			b.Fatalf("grep: %v %q", err, out)
		}
		grepCPU += cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()

		f, err := os.Open(path)
		if err != nil {
			b.Fatal(err)
		}
		t0 := processCPU()
		s, err := Run(f, io.Discard, Options{Base: 745, Quiet: true})
		t1 := processCPU()
		f.Close()
		if err != nil || s.KnockHits != lines/10 {
			b.Fatalf("run: %v %+v", err, s)
		}
		runCPU += t1 - t0

		t0 = processCPU()
		if n := bytes.Count(data, []byte{'\n'}); n != lines {
			b.Fatal(n)
		}
		countCPU += processCPU() - t0
	}
	b.StopTimer()
	if runCPU > 0 {
		b.ReportMetric(float64(grepCPU)/float64(runCPU), "x-grep")
		b.ReportMetric(float64(lines*b.N)/runCPU.Seconds(), "cpu-lines/s")
		b.ReportMetric(float64(runCPU)/float64(lines*b.N), "cpu-ns/line")
	}
	if countCPU > 0 {
		b.ReportMetric(float64(runCPU)/float64(countCPU), "x-count")
	}
}
