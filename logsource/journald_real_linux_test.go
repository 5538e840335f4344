package logsource

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/knockdaemon/knock/internal/journaldtest"
	"github.com/knockdaemon/knock/internal/netnstest"
)

// These tests run the Journald source against a real systemd-journald
// reading the real /dev/kmsg, fed by real netfilter LOG lines from a
// network namespace. journald runs in a mount namespace of its own (see
// journaldtest); journalctl is started inside it with nsenter.

// realJournald is a systemd-journald of the test's own.
type realJournald struct{ *journaldtest.Journald }

func startRealJournald(t *testing.T) *realJournald {
	t.Helper()
	return &realJournald{journaldtest.Start(t)}
}

// source returns a Journald source that runs the real journalctl inside
// journald's namespace with the default arguments. nsenter execs
// journalctl, so the supervised child is journalctl itself.
func (r *realJournald) source(opts JournaldOptions) *Journald {
	opts.Command = "nsenter"
	opts.Args = r.In(append([]string{"journalctl"}, DefaultJournaldArgs...)...)[1:]
	return NewJournald(opts)
}

// kernelLogNet is a client and server namespace whose server logs every
// TCP SYN to the knock ports with a LOG rule of a unique prefix. Nothing
// listens, so each SYN is answered by a reset at once: one connection
// attempt is exactly one LOG line, and attempts made one after another
// are logged in that order.
type kernelLogNet struct {
	n      *netnstest.Net
	prefix string
	sent   sync.Map // DPT -> time the SYN was sent
}

func newKernelLogNet(t *testing.T) *kernelLogNet {
	t.Helper()
	netnstest.Require(t, "iptables")
	k := &kernelLogNet{n: netnstest.New(t), prefix: "kj" + netnstest.RandHex(4) + ": "}
	netnstest.EnableNFLogAllNetns(t)
	netnstest.MustExec(t, k.n.Server, "iptables", "-w", "-A", "INPUT", "-p", "tcp", "--syn",
		"--dport", "745:1000", "-j", "LOG", "--log-prefix", k.prefix)
	return k
}

// knock sends one SYN to port (745..1000) of the server.
func (k *kernelLogNet) knock(port int) {
	k.sent.Store(port, time.Now())
	addr := netip.AddrPortFrom(k.n.Client.ServerIP4, uint16(port)).String()
	_ = netnstest.Dial(k.n.Client.NS, "tcp4", addr, 500*time.Millisecond)
}

// ourPort returns the destination port of a LOG line with the test's
// prefix, or false for any other line (the host's kernel log carries
// other tests' lines too).
func (k *kernelLogNet) ourPort(line string) (int, bool) {
	if !strings.Contains(line, k.prefix) {
		return 0, false
	}
	_, rest, ok := strings.Cut(line, " DPT=")
	if !ok {
		return 0, false
	}
	end := strings.IndexByte(rest, ' ')
	if end < 0 {
		end = len(rest)
	}
	p, err := strconv.Atoi(rest[:end])
	return p, err == nil
}

// hits collects the test's LOG lines delivered by a source.
type hits struct {
	k       *kernelLogNet
	mu      sync.Mutex
	ports   []int
	lines   []string
	delays  map[int]time.Duration // by DPT: from the SYN to Line.Received
	foreign []string              // lines with the prefix that are not kernel LOG lines of ours
}

func (h *hits) emit(l Line) {
	text := string(l.Text)
	if !strings.Contains(text, h.k.prefix) {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	p, ok := h.k.ourPort(text)
	if !ok || !strings.Contains(text, " kernel: ") || !strings.Contains(text, "SRC="+h.k.n.Client.IP4.String()+" ") {
		h.foreign = append(h.foreign, text)
		return
	}
	h.ports = append(h.ports, p)
	h.lines = append(h.lines, text)
	if at, ok := h.k.sent.Load(p); ok {
		if h.delays == nil {
			h.delays = map[int]time.Duration{}
		}
		h.delays[p] = l.Received.Sub(at.(time.Time))
	}
}

func (h *hits) snapshot() (ports []int, foreign []string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.ports), slices.Clone(h.foreign)
}

// waitPort waits until port was delivered.
func (h *hits) waitPort(t *testing.T, port int, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ports, _ := h.snapshot()
		if slices.Contains(ports, port) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("LOG line of DPT=%d not delivered within %v; delivered %v", port, timeout, ports)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// sortedDelays returns the delays of the given ports, sorted.
func (h *hits) sortedDelays(ports []int) []time.Duration {
	h.mu.Lock()
	defer h.mu.Unlock()
	var d []time.Duration
	for _, p := range ports {
		if v, ok := h.delays[p]; ok {
			d = append(d, v)
		}
	}
	slices.Sort(d)
	return d
}

func (h *hits) maxDelay() time.Duration {
	h.mu.Lock()
	defer h.mu.Unlock()
	var m time.Duration
	for _, d := range h.delays {
		m = max(m, d)
	}
	return m
}

func seq(from, to int) []int {
	var s []int
	for p := from; p <= to; p++ {
		s = append(s, p)
	}
	return s
}

// TestJournaldRealKernelLines: LOG lines logged after the source is
// ready arrive through real journald and journalctl complete, in order,
// once each; lines logged before the source started are not delivered.
func TestJournaldRealKernelLines(t *testing.T) {
	k := newKernelLogNet(t)
	jd := startRealJournald(t)

	// Logged before the source starts: in the journal, never delivered.
	for _, p := range seq(745, 749) {
		k.knock(p)
	}
	jd.WaitCount(t, k.prefix, 5)

	h := &hits{k: k}
	src := jd.source(JournaldOptions{})
	stop := runJournaldFunc(t, src, h.emit)
	waitReady(t, src)
	burst := seq(750, 849)
	for _, p := range burst {
		k.knock(p)
	}
	h.waitPort(t, burst[len(burst)-1], 10*time.Second)
	// One at a time, once journalctl follows: the steady path's latency.
	single := seq(850, 854)
	for _, p := range single {
		k.knock(p)
		h.waitPort(t, p, 5*time.Second)
	}
	want := slices.Concat(burst, single)
	time.Sleep(100 * time.Millisecond) // a duplicate or stray line would show now
	stop()
	ports, foreign := h.snapshot()
	if !slices.Equal(ports, want) {
		t.Errorf("delivered DPT %v,\nwant %v (in order, once each, none from before the start)", ports, want)
	}
	if len(foreign) > 0 {
		t.Errorf("lines with the test's prefix that are not its kernel LOG lines: %q", foreign)
	}
	h.mu.Lock()
	first := h.lines[0]
	h.mu.Unlock()
	// The line is journalctl's short-iso-precise form of the whole LOG record.
	for _, part := range []string{"kernel: " + k.prefix + "IN=", "SRC=" + k.n.Client.IP4.String(), "PROTO=TCP", "DPT=750 ", " SYN "} {
		if !strings.Contains(first, part) {
			t.Errorf("line %q lacks %q", first, part)
		}
	}
	// The burst waits for journalctl to start; single lines take the
	// steady path kernel -> journald -> journal file -> journalctl.
	b, one := h.sortedDelays(burst), h.sortedDelays(single)
	if len(b) == 0 || len(one) == 0 {
		t.Fatalf("no delays measured (burst %d, single %d)", len(b), len(one))
	}
	t.Logf("%d LOG lines through journald, SYN to delivery: burst right after Ready slowest %v; single lines median %v, slowest %v",
		len(ports), b[len(b)-1].Round(time.Millisecond), one[len(one)/2].Round(10*time.Microsecond), one[len(one)-1].Round(10*time.Microsecond))
	if st := src.Stats(); st.Restarts != 0 || st.Dropped != 0 || st.Overlong != 0 {
		t.Errorf("stats = %+v, want no restart, drop or overlong line", st)
	}
}

// runJournaldFunc runs src with emit until stop or the end of the test.
func runJournaldFunc(t *testing.T, src *Journald, emit func(Line)) (stop func()) {
	t.Helper()
	return runSource(t, src, emit, 15*time.Second).stop
}

// TestJournaldRealIgnoresForgedLines: an unprivileged user logs text that
// looks like the test's own LOG line, under the identifier "kernel",
// through every way into the journal a local user has (syslog socket,
// native protocol with a forged _TRANSPORT, stdout stream). journald
// stores them, journalctl without -k shows them as "kernel:" lines, and
// the source, which follows the kernel transport only, delivers none of
// them; the real LOG line logged after them is delivered.
func TestJournaldRealIgnoresForgedLines(t *testing.T) {
	netnstest.Require(t, "runuser", "logger", "systemd-cat")
	k := newKernelLogNet(t)
	jd := startRealJournald(t)
	h := &hits{k: k}
	src := jd.source(JournaldOptions{})
	stop := runJournaldFunc(t, src, h.emit)
	waitReady(t, src)

	const forgedSrc = "198.51.100.9"
	forged := fmt.Sprintf("%sIN=eth0 OUT= MAC=00:00:00:00:00:00:00:00:00:00:00:00:08:00 SRC=%s DST=%s LEN=60 "+
		"TOS=0x00 PREC=0x00 TTL=64 ID=1 DF PROTO=TCP SPT=40000 DPT=800 WINDOW=64240 RES=0x00 SYN URGP=0",
		k.prefix, forgedSrc, k.n.Client.ServerIP4)
	asNobody := []string{"runuser", "-u", "nobody", "--"}
	cases := []struct {
		name  string
		argv  []string
		stdin string
	}{
		{"syslog socket, tag kernel, facility kern", append(slices.Clone(asNobody),
			"logger", "-u", "/run/systemd/journal/dev-log", "-t", "kernel", "-p", "kern.warning", forged), ""},
		{"native protocol with _TRANSPORT=kernel", append(slices.Clone(asNobody), "logger", "--journald"),
			"MESSAGE=" + forged + "\nSYSLOG_IDENTIFIER=kernel\nSYSLOG_FACILITY=0\n_TRANSPORT=kernel\nPRIORITY=4\n"},
		{"stdout stream (systemd-cat -t kernel)", append(slices.Clone(asNobody),
			"systemd-cat", "-t", "kernel", "-p", "warning", "echo", forged), ""},
	}
	for _, tc := range cases {
		cmd := jd.Command(tc.argv...)
		cmd.Stdin = strings.NewReader(tc.stdin)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", tc.name, err, out)
		}
	}
	// journald has them all under the identifier kernel (journalctl
	// prints them as "kernel[PID]: ..."): the threat is real.
	jd.WaitCount(t, "SRC="+forgedSrc+" ", len(cases))
	out, err := jd.Exec("journalctl", "--no-pager", "-q", "-o", "short-iso-precise", "-t", "kernel")
	if err != nil {
		t.Fatalf("journalctl -t kernel: %v\n%s", err, out)
	}
	if n := strings.Count(out, "]: "+forged); n != len(cases) {
		t.Fatalf("journalctl -t kernel shows %d forged lines as the kernel's, want %d:\n%s", n, len(cases), out)
	}

	// A real LOG line logged after them: once it is delivered, a forged
	// line the source let through would have been delivered before it.
	k.knock(900)
	h.waitPort(t, 900, 10*time.Second)
	stop()
	ports, foreign := h.snapshot()
	if len(foreign) > 0 {
		t.Errorf("forged lines delivered: %q", foreign)
	}
	if !slices.Equal(ports, []int{900}) {
		t.Errorf("delivered DPT %v, want only the real 900", ports)
	}
}

// TestJournaldRealSurvivesJournalctlExit: journalctl is killed (SIGKILL,
// as the OOM killer would) or ends (SIGTERM) while LOG lines flow; the
// source starts it again and delivers every line once, in order: those
// journald recorded while no journalctl ran included.
func TestJournaldRealSurvivesJournalctlExit(t *testing.T) {
	k := newKernelLogNet(t)
	jd := startRealJournald(t)
	for i, sig := range []syscall.Signal{syscall.SIGKILL, syscall.SIGTERM} {
		t.Run(sig.String(), func(t *testing.T) {
			h := &hits{k: k}
			src := jd.source(JournaldOptions{MinBackoff: 100 * time.Millisecond})
			pids := make(chan int, 8)
			src.started = func(pid int) { pids <- pid }
			stop := runJournaldFunc(t, src, h.emit)
			waitReady(t, src)
			first := <-pids

			base := 745 + i*100
			before, during, after := seq(base, base+29), seq(base+30, base+59), seq(base+60, base+89)
			for _, p := range before {
				k.knock(p)
			}
			h.waitPort(t, before[len(before)-1], 10*time.Second)
			if err := syscall.Kill(first, sig); err != nil {
				t.Fatalf("kill journalctl %d: %v", first, err)
			}
			// Logged while no journalctl runs (the restart waits
			// MinBackoff after the exit).
			for _, p := range during {
				k.knock(p)
			}
			var second int
			select {
			case second = <-pids:
			case <-time.After(10 * time.Second):
				t.Fatal("journalctl not started again within 10s")
			}
			for _, p := range after {
				k.knock(p)
			}
			h.waitPort(t, after[len(after)-1], 10*time.Second)
			time.Sleep(100 * time.Millisecond) // a replayed line would show now
			stop()
			ports, foreign := h.snapshot()
			want := slices.Concat(before, during, after)
			if !slices.Equal(ports, want) {
				t.Errorf("delivered DPT %v,\nwant %v (each once, in order)", ports, want)
			}
			if len(foreign) > 0 {
				t.Errorf("foreign lines: %q", foreign)
			}
			if st := src.Stats(); st.Restarts != 1 {
				t.Errorf("restarts = %d, want 1 (journalctl %d, then %d)", st.Restarts, first, second)
			}
			t.Logf("journalctl %d killed with %v, %d started again; %d lines, slowest %v",
				first, sig, second, len(ports), h.maxDelay().Round(time.Millisecond))
		})
	}
}
