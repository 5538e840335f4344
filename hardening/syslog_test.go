package hardening

import (
	"bufio"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/knockdaemon/knock/cipher"
	"github.com/knockdaemon/knock/daemon"
	"github.com/knockdaemon/knock/internal/netnstest"
	"github.com/knockdaemon/knock/internal/rsyslogtest"
	"github.com/knockdaemon/knock/logsource"
)

// newSyslogd starts an rsyslogd of the test's own in dir: it listens on a
// private /dev/log-like socket (any local user may write to it) and writes
// what it gets to files by the given output rules, as a distribution's
// rsyslog writes kern.log.
func newSyslogd(t *testing.T, dir, rules string) *rsyslogtest.Server {
	t.Helper()
	return rsyslogtest.Start(t, dir, rsyslogtest.Options{Socket: true, Rules: rules})
}

// kernelMsg is the knock's LOG line as a syslog datagram with the tag
// "kernel", the way a forger (or this test) writes it to /dev/log.
func kernelMsg(line string) string {
	i := strings.Index(line, "kernel: ")
	return "<4>Nov 21 06:00:00 " + line[i:]
}

// TestLogChurnExactlyOnce follows a kern.log written by a real rsyslogd
// while knocks keep arriving and the log rotates (rename + HUP),
// disappears (unlink + HUP), is truncated (copytruncate), rsyslogd
// restarts, and the daemon itself restarts (resuming at its saved
// position). Every knock that reached the log is processed exactly once:
// as many accepted events as knocks sent, no rejection at all (a line read
// twice would make a replay), every source opened once.
func TestLogChurnExactlyOnce(t *testing.T) {
	e := newEnv(t)
	logDir := filepath.Join(e.dir, "log")
	if err := os.Mkdir(logDir, 0o755); err != nil {
		t.Fatal(err)
	}
	kern := filepath.Join(logDir, "kern.log")
	if err := os.WriteFile(kern, nil, 0o644); err != nil { // rsyslogd creates it only on the first message
		t.Fatal(err)
	}
	sd := newSyslogd(t, logDir, fmt.Sprintf("*.* action(type=\"omfile\" file=%q template=\"RSYSLOG_TraditionalFileFormat\")", kern))
	conf := e.config(cfg{source: "file", path: kern, logLevel: "debug", user: "ports = [\"20000-29999\"]\nmax_minutes = 60\n"})
	procs := []*proc{e.start(conf, nil)}
	time.Sleep(300 * time.Millisecond) // the file source opens and seeks

	const knocks = 60
	var (
		mu     sync.Mutex
		paused bool
		sent   int
	)
	resume := make(chan struct{})
	errc := make(chan error, 1)
	var unlinked *os.File
	var resumeAt logsource.Position
	go func() {
		w := sd.Sender()
		defer w.Close()
		for k := 0; k < knocks; k++ {
			mu.Lock()
			for paused {
				mu.Unlock()
				<-resume
				mu.Lock()
			}
			src := netip.AddrFrom4([4]byte{198, 18, 90, byte(k + 1)})
			lines := e.seqLines(src, cipher.Request{Port: uint16(20000 + k), Time: 1})
			mu.Unlock()
			for _, l := range lines {
				if err := w.Send(kernelMsg(l)); err != nil {
					errc <- err
					return
				}
				time.Sleep(2 * time.Millisecond)
			}
			mu.Lock()
			sent++
			mu.Unlock()
			time.Sleep(40 * time.Millisecond)
		}
		errc <- nil
	}()
	accepted := func() int {
		n := 0
		for _, p := range procs {
			n += p.Count(map[string]string{"event": "accepted"})
		}
		return n
	}
	// waitCaught pauses the sender and waits until every knock sent so
	// far is accepted.
	waitCaught := func(what string) {
		mu.Lock()
		paused = true
		mu.Unlock()
		time.Sleep(100 * time.Millisecond) // a knock in flight completes
		mu.Lock()
		want := sent
		mu.Unlock()
		// Until all are accepted, or nothing moves for 2 s (a knock
		// rsyslogd lost while restarting never completes; the ground
		// truth at the end accounts for it).
		deadline := time.Now().Add(20 * time.Second)
		last, lastMove := accepted(), time.Now()
		for last < want && time.Now().Before(deadline) && time.Since(lastMove) < 2*time.Second {
			time.Sleep(20 * time.Millisecond)
			if n := accepted(); n != last {
				last, lastMove = n, time.Now()
			}
		}
		if last < want {
			t.Logf("before %s: %d of %d knocks accepted", what, last, want)
		}
	}
	unpause := func() {
		mu.Lock()
		paused = false
		mu.Unlock()
		select {
		case resume <- struct{}{}:
		case <-time.After(100 * time.Millisecond):
		}
	}
	steps := []struct {
		name string
		do   func()
	}{
		{"rotate (rename, HUP)", func() {
			if err := os.Rename(kern, kern+".1"); err != nil {
				t.Fatal(err)
			}
			time.Sleep(50 * time.Millisecond)
			sd.HUP()
		}},
		{"disappear and reappear (unlink, HUP)", func() {
			// Keep the unlinked file readable for the ground truth.
			f, err := os.Open(kern)
			if err != nil {
				t.Fatal(err)
			}
			unlinked = f
			t.Cleanup(func() { f.Close() })
			if err := os.Remove(kern); err != nil {
				t.Fatal(err)
			}
			time.Sleep(300 * time.Millisecond)
			sd.HUP()
		}},
		{"copytruncate", func() {
			// Truncation destroys what no one has read yet; the test
			// truncates when the daemon has caught up, with the sender
			// paused, so that every knock that reached the log stays
			// readable.
			waitCaught("copytruncate")
			data, err := os.ReadFile(kern)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(kern+".2", data, 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.Truncate(kern, 0); err != nil {
				t.Fatal(err)
			}
			unpause()
		}},
		{"rsyslogd restarts", func() {
			sd.Stop()
			time.Sleep(200 * time.Millisecond)
			sd.Start()
		}},
		{"knockdaemon restarts (resumes at its saved position)", func() {
			// A sequence in progress is not carried over a restart (the
			// assembler is not persisted): stop between knocks. Knocks
			// go on arriving while the daemon is down.
			waitCaught("the daemon restart")
			p := procs[len(procs)-1]
			p.Stop()
			unpause()
			time.Sleep(300 * time.Millisecond)
			if st, err := daemon.LoadState(filepath.Join(e.dir, "state.json")); err == nil {
				resumeAt = st.Position
			}
			procs = append(procs, e.start(conf, nil))
		}},
		{"rotate again", func() {
			if err := os.Rename(kern, kern+".3"); err != nil {
				t.Fatal(err)
			}
			sd.HUP()
		}},
	}
	for _, s := range steps {
		time.Sleep(350 * time.Millisecond)
		mu.Lock()
		n := sent
		mu.Unlock()
		t.Logf("%s after %d knocks sent", s.name, n)
		s.do()
	}
	select {
	case err := <-errc:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("the sender did not finish")
	}
	deadline := time.Now().Add(15 * time.Second)
	for accepted() < knocks && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond)

	// What reached the log: the knocks whose eight lines are in one of
	// the files rsyslogd wrote (a datagram in flight when rsyslogd stops
	// can be lost before it reaches any file; that is not the daemon's
	// to see).
	reached := map[string]map[string]bool{}
	where := map[string][]string{} // src -> "file:line" of its knocks
	readLines := func(name string, r io.Reader) {
		sc := bufio.NewScanner(r)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for ln := 1; sc.Scan(); ln++ {
			f := strings.Fields(sc.Text())
			var src, spt string
			for _, kv := range f {
				if v, ok := strings.CutPrefix(kv, "SRC="); ok {
					src = v
				} else if v, ok := strings.CutPrefix(kv, "SPT="); ok {
					spt = v
				}
			}
			if src != "" && strings.Contains(sc.Text(), e.prefix) {
				if reached[src] == nil {
					reached[src] = map[string]bool{}
				}
				reached[src][spt] = true
				where[src] = append(where[src], fmt.Sprintf("%s:%d", filepath.Base(name), ln))
			}
		}
	}
	for _, name := range []string{kern + ".1", kern + ".2", kern + ".3", kern} {
		if f, err := os.Open(name); err == nil {
			readLines(name, f)
			f.Close()
		}
	}
	if unlinked != nil {
		if _, err := unlinked.Seek(0, io.SeekStart); err == nil {
			readLines("(unlinked kern.log)", unlinked)
		}
	}
	complete := 0
	for src, spts := range reached {
		if len(spts) == 8 {
			complete++
		} else {
			t.Logf("%s: only %d of its 8 knocks reached the log (lost by rsyslogd)", src, len(spts))
		}
	}

	for _, p := range procs {
		for _, ev := range p.Events(0, map[string]string{"msg": "malformed firewall line"}) {
			t.Errorf("the daemon read a malformed line (a line the source cut or spliced?): %v", ev)
		}
	}
	opened := map[string]int{}
	rejected := 0
	for _, p := range procs {
		for _, ev := range p.Events(0, map[string]string{"event": "accepted"}) {
			opened[ev.Get("src")]++
		}
		for _, ev := range p.Events(0, map[string]string{"event": "rejected"}) {
			rejected++
			t.Errorf("rejected: %v", ev)
		}
	}
	// The second run resumed at the saved position and read every line
	// after it exactly once (the file it followed became kern.log.3).
	if b, err := os.ReadFile(kern + ".3"); err != nil || resumeAt.Offset == 0 || resumeAt.Offset > int64(len(b)) {
		t.Errorf("no resume position to check (%+v, %v)", resumeAt, err)
	} else {
		// ... and then the kern.log rsyslogd made after the last rotation.
		after := strings.Count(string(b[resumeAt.Offset:]), "\n")
		nb, _ := os.ReadFile(kern)
		newer := strings.Count(string(nb), "\n")
		if read := status(t, conf).Counters.Lines; uint64(after+newer) != read {
			t.Errorf("the second run read %d lines, want the %d after its resume offset %d and the %d of the new kern.log",
				read, after, resumeAt.Offset, newer)
		} else {
			t.Logf("the second run resumed at offset %d and read the %d lines after it and the %d of the new kern.log", resumeAt.Offset, after, newer)
		}
	}
	acc := accepted()
	t.Logf("%d knocks sent, %d reached the log whole, %d accepted, %d rejected, %d daemon runs", knocks, complete, acc, rejected, len(procs))
	if complete < knocks-2 {
		t.Errorf("only %d of %d knocks reached the log: the test shows little", complete, knocks)
	}
	for src, n := range opened {
		if n != 1 {
			t.Errorf("%s accepted %d times", src, n)
		}
		if len(reached[src]) != 8 {
			t.Errorf("%s accepted, yet only %d of its lines are in the log files", src, len(reached[src]))
		}
	}
	for src, spts := range reached {
		if len(spts) == 8 && opened[src] != 1 {
			t.Errorf("the knock from %s reached the log (%s) and was accepted %d times, want once", src, strings.Join(where[src], " "), opened[src])
		}
	}
	if t.Failed() {
		// Where the lost lines are, against what the second run read.
		if b, err := os.ReadFile(kern + ".3"); err == nil {
			after := 0
			if resumeAt.Offset <= int64(len(b)) {
				after = strings.Count(string(b[resumeAt.Offset:]), "\n")
			}
			st := status(t, conf)
			t.Logf("second run resumed at %+v; kern.log.3 holds %d bytes, %d lines after that offset; the second run read %d lines",
				resumeAt, len(b), after, st.Counters.Lines)
			for src, w := range where {
				if opened[src] == 0 && len(w) > 0 {
					var first, lastOff int
					var ln int
					for i, c := range b {
						if c == '\n' {
							ln++
							if fmt.Sprintf("kern.log.3:%d", ln) == w[0] {
								first = i + 1
							}
							if fmt.Sprintf("kern.log.3:%d", ln) == w[len(w)-1] {
								lastOff = i + 1
							}
						}
					}
					t.Logf("lost knock %s: bytes %d..%d of kern.log.3", src, first, lastOff)
				}
			}
		}
	}
}

// forgeAsNobody writes each line to the syslog socket as the user nobody:
// with logger -t kernel (util-linux logger turns the kern facility into
// user, so the line lands in *.* and user.* files such as /var/log/syslog
// or /var/log/messages) or as a raw datagram with priority <4>
// (kern.warning), which imuxsock accepts from anyone, so the line lands in
// kern.* files such as /var/log/kern.log.
func forgeAsNobody(t *testing.T, sock string, raw bool, lines []string) {
	t.Helper()
	var cmd *exec.Cmd
	if raw {
		cmd = exec.Command("runuser", "-u", "nobody", "--", "perl", "-MSocket", "-e",
			`socket(my $s, PF_UNIX, SOCK_DGRAM, 0) or die "socket: $!";
			 while (my $l = <STDIN>) { chomp $l; defined(send($s, "<4>Nov 21 06:00:00 kernel: $l", 0, pack_sockaddr_un($ARGV[0]))) or die "send: $!" }`,
			sock)
	} else {
		cmd = exec.Command("runuser", "-u", "nobody", "--", "logger", "-u", sock, "-t", "kernel", "-p", "kern.warning")
	}
	var b strings.Builder
	for _, l := range lines {
		b.WriteString(l[strings.Index(l, "kernel: ")+len("kernel: "):])
		b.WriteByte('\n')
	}
	cmd.Stdin = strings.NewReader(b.String())
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("forging as nobody: %v: %s", err, out)
	}
}

// TestForgedSyslogLines: any local user can write to a syslog daemon's
// /dev/log, so a file source written by such a daemon can be fed forged
// LOG lines (docs/SECURITY.md). The test shows it with a real rsyslogd and
// the user nobody, both ways (logger -t kernel into a *.* file, a raw
// kern.warning datagram into a kern.* file): the forged lines land in the
// files as kernel lines do and the daemon counts them as hits; without the
// key they grant nothing, whatever they carry: a captured knock replayed
// from a spoofed address, random knocks, garbage. The rsyslog filter the
// document recommends ($inputname == "imklog") keeps them out of the file
// altogether.
func TestForgedSyslogLines(t *testing.T) {
	netnstest.Require(t, "logger", "runuser", "perl")
	for _, raw := range []bool{false, true} {
		name := map[bool]string{false: "logger_into_syslog", true: "raw_kern_datagram_into_kern.log"}[raw]
		t.Run(name, func(t *testing.T) { testForged(t, raw) })
	}
}

func testForged(t *testing.T, raw bool) {
	e := newEnv(t)
	logDir := filepath.Join(e.dir, "log")
	if err := os.Mkdir(logDir, 0o755); err != nil {
		t.Fatal(err)
	}
	kernLog := filepath.Join(logDir, "kern.log")
	syslogLog := filepath.Join(logDir, "syslog")
	hardened := filepath.Join(logDir, "kern-imklog.log")
	for _, f := range []string{kernLog, syslogLog, hardened} {
		if err := os.WriteFile(f, nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	sd := newSyslogd(t, logDir, fmt.Sprintf(
		"kern.* action(type=\"omfile\" file=%q template=\"RSYSLOG_TraditionalFileFormat\")\n"+
			"if $inputname == \"imklog\" then action(type=\"omfile\" file=%q template=\"RSYSLOG_TraditionalFileFormat\")\n"+
			"*.* action(type=\"omfile\" file=%q template=\"RSYSLOG_TraditionalFileFormat\")",
		kernLog, hardened, syslogLog))
	followed := syslogLog
	if raw {
		followed = kernLog
	}
	conf := e.config(cfg{source: "file", path: followed})
	p := e.start(conf, nil)
	time.Sleep(300 * time.Millisecond)

	// A legitimate knock (root writes it here; only the key matters),
	// accepted and captured: the attacker replays it from X.
	owner := addr("198.18.95.1")
	captured := e.seqLines(owner, cipher.Request{Port: 22, Time: 1})
	w := sd.Sender()
	defer w.Close()
	mark := p.Mark()
	for _, l := range captured {
		if err := w.Send(kernelMsg(l)); err != nil {
			t.Fatal(err)
		}
	}
	p.WaitEvent(mark, 20*time.Second, map[string]string{"event": "opened", "addr": owner.String()})

	x := addr("198.18.95.66")
	forged := e.resend(captured, owner, x)
	for i := 0; i < 3; i++ { // random knocks for X
		for j := 0; j < 8; j++ {
			e.sport++
			forged = append(forged, e.hitLine(x, e.sport, uint16(745+(i*37+j*91)%256)))
		}
	}
	forged = append(forged, "kernel: "+e.prefix+" IN=eth0 SRC=\xff\xfe DPT=800 SYN")
	forgeAsNobody(t, sd.Sock, raw, forged)

	// Then another legitimate knock: everything before it was handled.
	mark = p.Mark()
	legit := addr("198.18.95.2")
	for _, l := range e.seqLines(legit, cipher.Request{Port: 22, Time: 2}) {
		if err := w.Send(kernelMsg(l)); err != nil {
			t.Fatal(err)
		}
	}
	p.WaitEvent(mark, 20*time.Second, map[string]string{"event": "opened", "addr": legit.String()})

	text, _ := os.ReadFile(followed)
	if !strings.Contains(string(text), "SRC="+x.String()) {
		t.Fatalf("the forged lines did not reach %s; the premise of the test failed:\n%s", followed, text)
	}
	st := status(t, conf)
	t.Logf("forged lines in %s: yes; daemon: hits %d candidates %d accepted %d rejected %v",
		filepath.Base(followed), st.Counters.Hits, st.Counters.Candidates, st.Counters.Accepted, st.Counters.Rejected)
	if st.Counters.Hits < 16+8 {
		t.Errorf("the daemon saw %d hits: the forged lines did not reach it, the test shows nothing", st.Counters.Hits)
	}
	if n := p.Count(map[string]string{"event": "accepted", "src": x.String()}); n != 0 {
		t.Errorf("forged lines from %s were accepted %d times", x, n)
	}
	if st.Counters.Accepted != 2 || e.fwCount("open") != 2 {
		t.Errorf("accepted %d, openings %q: want the two legitimate knocks only", st.Counters.Accepted, e.fwLog())
	}
	if p.Count(map[string]string{"event": "rejected", "src": x.String(), "reason": "replay"}) == 0 {
		t.Errorf("the replayed capture from %s was not rejected as a replay", x)
	}
	// The imklog-only file never holds a forged line.
	if h, _ := os.ReadFile(hardened); strings.Contains(string(h), "SRC=") {
		t.Errorf("forged lines reached the imklog-only file %s:\n%s", hardened, h)
	}
}

// TestKmsgCannotBeForged: /dev/kmsg is writable by root only, and even
// root's records carry the user facility (the kernel never lets a write
// claim facility 0). The daemon following /dev/kmsg reads eight records
// root wrote that spell a valid knock for X, and counts them as malformed
// (not kernel facility), not as hits; nobody cannot write there at all.
func TestKmsgCannotBeForged(t *testing.T) {
	netnstest.Require(t, "runuser")
	e := newEnv(t)
	conf := e.config(cfg{source: "kmsg"})
	p := e.start(conf, nil)
	time.Sleep(300 * time.Millisecond) // the kmsg source seeks to the end

	if out, err := exec.Command("runuser", "-u", "nobody", "--", "sh", "-c", "echo forged > /dev/kmsg").CombinedOutput(); err == nil {
		t.Errorf("the user nobody could write to /dev/kmsg: %s", out)
	}
	x := addr("198.18.96.1")
	f, err := os.OpenFile("/dev/kmsg", os.O_WRONLY, 0)
	if err != nil {
		netnstest.Unavailable(t, "cannot open /dev/kmsg for writing: %v", err)
	}
	defer f.Close()
	// Canary records until the daemon reads them: its kmsg source has
	// seeked to the end by then.
	canary := e.hitLine(addr("198.18.96.99"), 1, 22)
	for i := 0; ; i++ {
		before := status(t, conf).Counters.Malformed
		if _, err := f.WriteString("<4>" + canary[strings.Index(canary, e.prefix):]); err != nil {
			t.Fatal(err)
		}
		time.Sleep(200 * time.Millisecond)
		if status(t, conf).Counters.Malformed > before {
			break
		}
		if i == 50 {
			t.Fatal("the daemon never read a record written to /dev/kmsg")
		}
	}
	before := status(t, conf).Counters
	for _, l := range e.seqLines(x, cipher.Request{Port: 22, Time: 1}) {
		// "<4>" asks for kern.warning; the kernel keeps the level and
		// makes the facility user.
		if _, err := f.WriteString("<4>" + l[strings.Index(l, e.prefix):]); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	var c = before
	for time.Now().Before(deadline) {
		c = status(t, conf).Counters
		if c.Malformed-before.Malformed >= 8 {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	// Other tests' kernel lines may count as malformed too: give the
	// forged records time to be read before the final look.
	time.Sleep(500 * time.Millisecond)
	c = status(t, conf).Counters
	t.Logf("forged /dev/kmsg records: malformed %d, hits %d, accepted %d", c.Malformed-before.Malformed, c.Hits-before.Hits, c.Accepted)
	if c.Malformed-before.Malformed < 8 {
		t.Errorf("the daemon did not see the eight forged records as malformed (%d)", c.Malformed-before.Malformed)
	}
	if c.Hits != before.Hits || c.Accepted != 0 || e.fwCount("open") != 0 {
		t.Errorf("forged kmsg records became hits (%d) or grants (%d, %q)", c.Hits-before.Hits, c.Accepted, e.fwLog())
	}
	if n := p.Count(map[string]string{"event": "accepted"}); n != 0 {
		t.Errorf("%d accepted events", n)
	}
}
