package logsource

import (
	"fmt"
	"net"
	"os"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/knockdaemon/knock/internal/netnstest"
)

// writeKmsg writes one record to the real kernel log, with its own open
// so the per-descriptor rate limit of /dev/kmsg never applies.
func writeKmsg(t *testing.T, msg string) {
	t.Helper()
	f, err := os.OpenFile("/dev/kmsg", os.O_WRONLY, 0)
	if err != nil {
		netnstest.Unavailable(t, "cannot write /dev/kmsg: %v", err)
	}
	defer f.Close()
	if _, err := f.WriteString(msg); err != nil {
		t.Fatalf("write /dev/kmsg: %v", err)
	}
}

// kmsgRun starts a Kmsg source and returns a channel of copied lines;
// forbidden (if not empty) counts lines containing it.
func kmsgRun(t *testing.T, opts KmsgOptions, forbidden string, hits *atomic.Int64) (*Kmsg, <-chan string) {
	t.Helper()
	k := NewKmsg(opts)
	lines := make(chan string, 4096)
	runSource(t, k, func(l Line) {
		if forbidden != "" && strings.Contains(string(l.Text), forbidden) {
			hits.Add(1)
		}
		select {
		case lines <- string(l.Text):
		default: // a busy host log; the test looks for its own marker
		}
	}, 5*time.Second)
	return k, lines
}

// await sends (bounded retries) until a line containing marker arrives.
func await(t *testing.T, lines <-chan string, marker string, send func()) string {
	t.Helper()
	for range 60 {
		send()
		deadline := time.After(100 * time.Millisecond)
		for {
			select {
			case l := <-lines:
				if strings.Contains(l, marker) {
					return l
				}
				continue
			case <-deadline:
			}
			break
		}
	}
	t.Fatalf("no kernel record with %q arrived", marker)
	return ""
}

func TestKmsgRealRecords(t *testing.T) {
	netnstest.Require(t)
	if _, err := os.Stat("/dev/kmsg"); err != nil {
		netnstest.Unavailable(t, "no /dev/kmsg: %v", err)
	}
	old := "knocktest-old-" + netnstest.RandHex(6)
	writeKmsg(t, "<4>"+old+"\n")
	at := time.Date(2026, 11, 21, 5, 20, 44, 0, time.UTC)
	var replayed atomic.Int64
	k, lines := kmsgRun(t, KmsgOptions{Now: func() time.Time { return at }}, old, &replayed)
	marker := "knocktest-" + netnstest.RandHex(6)
	n := 0
	line := await(t, lines, marker, func() {
		n++
		writeKmsg(t, fmt.Sprintf("<4>%s record %d\n", marker, n))
	})
	// Written from user space: the user facility (1<<3 | 4 = 12), never
	// the kernel's, which is what makes kmsg unforgeable for LOG lines.
	re := regexp.MustCompile(`^12,\d+,\d+,[^;]*;` + marker + ` record \d+$`)
	if !re.MatchString(line) {
		t.Fatalf("record %q does not match %s", line, re)
	}
	if n := replayed.Load(); n != 0 {
		t.Fatalf("%d records from before the start were delivered", n)
	}
	if st := k.Stats(); st.Lines == 0 || st.Lost != 0 {
		t.Fatalf("stats = %+v", st)
	}
}

func TestKmsgIptablesLogLine(t *testing.T) {
	netnstest.Require(t, "iptables")
	n := netnstest.New(t)
	netnstest.EnableNFLogAllNetns(t)
	prefix := "kt" + netnstest.RandHex(4) + ": "
	netnstest.MustExec(t, n.Server, "iptables", "-w", "-A", "INPUT", "-p", "tcp", "--dport", "811",
		"-j", "LOG", "--log-prefix", prefix)
	_, lines := kmsgRun(t, KmsgOptions{}, "", nil)
	addr := net.JoinHostPort(n.Client.ServerIP4.String(), "811")
	line := await(t, lines, prefix, func() {
		_ = netnstest.Dial(n.Client.NS, "tcp", addr, 50*time.Millisecond)
	})
	t.Logf("captured: %s", line)
	// A real netfilter record: kernel facility, warning level (4).
	for _, want := range []string{
		"4,", ";" + prefix + "IN=" + n.Client.ServerIf + " OUT= ",
		"SRC=" + n.Client.IP4.String() + " DST=" + n.Client.ServerIP4.String(),
		"PROTO=TCP", "DPT=811", " SYN ",
	} {
		if !strings.Contains(line, want) {
			t.Fatalf("LOG record %q lacks %q", line, want)
		}
	}
	if !strings.HasPrefix(line, "4,") {
		t.Fatalf("LOG record %q is not kernel facility, level 4", line)
	}
}
