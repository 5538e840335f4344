package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/knockdaemon/knock/internal/netnstest"
	"github.com/knockdaemon/knock/internal/rsyslogtest"
	"github.com/knockdaemon/knock/internal/testbin"
)

// startRsyslog starts an rsyslogd of the test's own, reading the kernel
// log with imkmsg (each /dev/kmsg reader sees every record, so it neither
// steals lines from the host's syslog daemon nor from another test's) and
// writing a kern.log in the traditional Debian format. It returns once
// that file has lines (imkmsg copies the kernel's ring buffer first): from
// then on the test's lines follow.
func startRsyslog(t *testing.T, w *world) (*rsyslogtest.Server, string) {
	t.Helper()
	dir := filepath.Join(w.dir, "rsyslog")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	kernLog := filepath.Join(dir, "kern.log")
	rs := rsyslogtest.Start(t, dir, rsyslogtest.Options{Kmsg: true, WaitWritten: kernLog,
		Rules: fmt.Sprintf("kern.* action(type=\"omfile\" file=%q template=\"RSYSLOG_TraditionalFileFormat\")", kernLog)})
	return rs, kernLog
}

// Case 7: the flow through a kern.log written by rsyslogd, and
// knockdaemon parse on that file shows the knocks.
func TestSourceRsyslogFile(t *testing.T) {
	t.Parallel()
	w := newWorld(t, opts{})
	_, kernLog := startRsyslog(t, w)
	conf := w.writeConfig(conf{source: "file", path: kernLog})
	d := w.startDaemon(conf, nil)
	flow(t, w, d, conf)

	// An admin checks the log set-up with knockdaemon parse.
	out, err := w.ctl(conf, "parse", "--format", "json", kernLog)
	if err != nil {
		t.Fatalf("knockdaemon parse %s: %v\n%s", kernLog, err, out)
	}
	n := 0
	src := w.net.Client.IP4.String()
	for _, line := range strings.Split(out, "\n") {
		var hit map[string]any
		if json.Unmarshal([]byte(line), &hit) != nil {
			continue
		}
		if fmt.Sprint(hit["src"]) == src && strings.HasPrefix(fmt.Sprint(hit["prefix"]), strings.TrimSpace(w.prefix)) {
			n++
		}
	}
	// Two knocks (open, close) of eight hits each.
	if n != 16 {
		t.Errorf("knockdaemon parse found %d knock hits from %s in %s, want 16:\n%s", n, src, kernLog, out)
	}
}

// Case 7: the flow through standard input, fed by dmesg --follow-new as
// an admin's pipe would be (run --source stdin overrides the config).
func TestSourceStdin(t *testing.T) {
	t.Parallel()
	w := newWorld(t, opts{})
	netnstest.Require(t, "dmesg")
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	dm := exec.Command("dmesg", "--follow-new")
	dm.Stdout = pw
	dm.SysProcAttr = testbin.DieWithParent()
	if err := dm.Start(); err != nil {
		netnstest.Unavailable(t, "dmesg --follow-new: %v", err)
	}
	pw.Close()
	t.Cleanup(func() {
		_ = dm.Process.Kill()
		_ = dm.Wait()
	})
	conf := w.writeConfig(conf{source: "kmsg"})
	d := w.startDaemon(conf, pr, "--source", "stdin")
	pr.Close()
	flow(t, w, d, conf)
}

// Case 9: the kern.log is rotated between knocks, first by rename and a
// new file (logrotate's default, with rsyslogd HUPed), then by
// copytruncate; every knock opens its port.
func TestRotation(t *testing.T) {
	t.Parallel()
	w := newWorld(t, opts{})
	rs, kernLog := startRsyslog(t, w)
	conf := w.writeConfig(conf{source: "file", path: kernLog})
	d := w.startDaemon(conf, nil)
	c := w.net.Client
	srv := c.ServerIP4
	// A rotated file is noticed by the follower's own checks; give it a
	// little more than a fresh knock gets.
	const rotatedWithin = 3 * time.Second

	w.knock(c, srv, portA, 5)
	expectOpenWithin(t, c, srv, portA, openWithin, "port A before any rotation")

	// logrotate's default: rename, then the syslog daemon reopens.
	if err := os.Rename(kernLog, kernLog+".1"); err != nil {
		t.Fatal(err)
	}
	rs.HUP()
	m := d.Mark()
	expectClosed(t, c, srv, portB, "port B before its knock")
	w.knock(c, srv, portB, 5)
	took := expectOpenWithin(t, c, srv, portB, rotatedWithin, "port B after rename+create rotation")
	t.Logf("rename+create: port open %v after the knock", took.Round(time.Millisecond))
	d.WaitEvent(m, 5*time.Second, map[string]string{"event": "opened", "port": "2223"})

	// copytruncate: the content is copied away and the file emptied in
	// place; rsyslogd keeps writing (O_APPEND) to the same file.
	copyFile(t, kernLog, kernLog+".2")
	if err := os.Truncate(kernLog, 0); err != nil {
		t.Fatal(err)
	}
	m = d.Mark()
	expectClosed(t, c, srv, portC, "port C before its knock")
	w.knock(c, srv, portC, 5)
	took = expectOpenWithin(t, c, srv, portC, rotatedWithin, "port C after copytruncate")
	t.Logf("copytruncate: port open %v after the knock", took.Round(time.Millisecond))
	d.WaitEvent(m, 5*time.Second, map[string]string{"event": "opened", "port": "2224"})

	// Every knock was processed exactly once: three acceptances.
	if n := d.Count(map[string]string{"event": "accepted", "src": c.IP4.String()}); n != 3 {
		t.Errorf("the daemon accepted %d knocks across the rotations, want 3", n)
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	in, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.Create(to)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}
