package e2e

import (
	"strconv"
	"testing"
	"time"
)

// TestResumeKmsgAcrossRestart: knocks sent while the daemon is down (a
// systemd restart, an upgrade, a crash) are read from the kernel's ring
// buffer when it starts again, from where it stopped: the knock opens
// its port within the block's window, a knock whose block is already
// stale opens nothing, and the knock handled before the stop is never
// accepted again, even when a kill -9 ended the daemon before it saved
// its log position.
func TestResumeKmsgAcrossRestart(t *testing.T) {
	t.Parallel()
	for _, stop := range []string{"SIGTERM", "kill -9"} {
		t.Run(stop, func(t *testing.T) {
			t.Parallel()
			w := newWorld(t, opts{})
			conf := w.writeConfig(conf{source: "kmsg"})
			// event=started comes once the records logged meanwhile were
			// read: port B opens at once.
			resumeFlow(t, w, stop, openWithin, func() *daemonProc { return w.startDaemon(conf, nil) })
		})
	}
}

// TestResumeJournaldAcrossRestart is TestResumeKmsgAcrossRestart through
// a real systemd-journald and the daemon's journald source, which resumes
// from the saved time stamp.
func TestResumeJournaldAcrossRestart(t *testing.T) {
	t.Parallel()
	for _, stop := range []string{"SIGTERM", "kill -9"} {
		t.Run(stop, func(t *testing.T) {
			t.Parallel()
			w := newWorld(t, opts{})
			in := startJournald(t)
			conf := w.writeConfig(conf{source: "journald"})
			// journald shows new entries to journalctl in batches, up
			// to half a second late, and event=started does not wait
			// for the entries logged meanwhile.
			resumeFlow(t, w, stop, 3*time.Second, func() *daemonProc { return w.startDaemonWrapped(in, conf, nil) })
		})
	}
}

// resumeFlow: knock with the daemon up, stop it (SIGTERM or kill -9),
// knock meanwhile (one good knock, one stale), start it again.
func resumeFlow(t *testing.T, w *world, stop string, within time.Duration, start func() *daemonProc) {
	t.Helper()
	c := w.net.Client
	srv := c.ServerIP4
	d := start()
	w.knock(c, srv, portA, 5)
	expectOpenWithin(t, c, srv, portA, within, "port A with the daemon up")
	if stop == "SIGTERM" {
		d.Stop() // close_on_exit closes port A
	} else {
		// At once: the log position of port A's knock is most likely
		// not saved yet, so it is read again.
		d.Kill9()
	}

	// The daemon is down.
	w.knock(c, srv, portB, 5)
	// A block from two minutes ago, sent now: past its window's horizon
	// (max_skew 60s), however it is read.
	stale := w.sequence(c, w.clientKey, portC, 5, time.Now().Add(-2*time.Minute))
	w.knockdKnock(c, srv, stale, false)
	time.Sleep(500 * time.Millisecond)
	expectClosed(t, c, srv, portB, "port B while the daemon is down")

	restarted := time.Now()
	d2 := start()
	expectOpenWithin(t, c, srv, portB, within, "port B, knocked while the daemon was down")
	t.Logf("port B open %v after the restart began", time.Since(restarted).Round(time.Millisecond))
	d2.WaitEvent(0, 5*time.Second, map[string]string{"event": "accepted", "port": strconv.Itoa(int(portB)), "src": c.IP4.String()})
	expectClosed(t, c, srv, portC, "port C, whose stale knock was sent while the daemon was down")
	d2.WaitEvent(0, 5*time.Second, map[string]string{"event": "rejected", "src": c.IP4.String()})

	// Nothing accepted twice: port A's block at most comes again as a
	// replay, port B's once.
	if n := d2.Count(map[string]string{"event": "accepted", "port": strconv.Itoa(int(portA))}); n != 0 {
		t.Errorf("port A's knock, handled before the %s, was accepted again after the restart", stop)
	}
	if n := d2.Count(map[string]string{"event": "accepted", "port": strconv.Itoa(int(portB))}); n != 1 {
		t.Errorf("port B's knock accepted %d times, want once", n)
	}
	if n := d2.Count(map[string]string{"event": "accepted", "port": strconv.Itoa(int(portC))}); n != 0 {
		t.Errorf("port C's stale knock was accepted")
	}
	if stop == "kill -9" {
		// The grant of port A outlived the daemon; the restart keeps it
		// (state file).
		expectOpenWithin(t, c, srv, portA, 2*time.Second, "port A after the kill -9 restart, within its 5 minutes")
	}

	// A second restart reads nothing twice.
	d2.Stop()
	d3 := start()
	time.Sleep(time.Second)
	if n := d3.Count(map[string]string{"event": "accepted"}) + d3.Count(map[string]string{"event": "rejected"}); n != 0 {
		t.Errorf("the second restart handled %d knocks again:\n%s", n, d3.Tail(40))
	}
}

// TestResumeStraddlingKnock: a knock whose first four hits the daemon
// handled before it stopped and whose last four came while it was down
// opens after the restart: the restarted daemon reads the lines of the
// last sequence_timeout before its saved position again, only to rebuild
// the partial sequence.
func TestResumeStraddlingKnock(t *testing.T) {
	t.Parallel()
	for _, src := range []string{"kmsg", "journald"} {
		t.Run(src, func(t *testing.T) {
			t.Parallel()
			w := newWorld(t, opts{})
			conf := w.writeConfig(conf{source: src})
			start := func() *daemonProc { return w.startDaemon(conf, nil) }
			// How long until the daemon has handled a line the kernel
			// logged (journald hands them on in batches).
			settle := 300 * time.Millisecond
			if src == "journald" {
				in := startJournald(t)
				start = func() *daemonProc { return w.startDaemonWrapped(in, conf, nil) }
				settle = 1500 * time.Millisecond
			}
			c := w.net.Client
			srv := c.ServerIP4
			d := start()
			ports := w.sequence(c, w.clientKey, portB, 5, time.Now())
			w.knockdKnock(c, srv, ports[:4], false)
			time.Sleep(settle)
			d.Stop() // saves the position past the four hits
			w.knockdKnock(c, srv, ports[4:], false)
			time.Sleep(500 * time.Millisecond)
			expectClosed(t, c, srv, portB, "port B while the daemon is down")

			d2 := start()
			expectOpenWithin(t, c, srv, portB, 3*time.Second, "port B, knocked across the restart")
			d2.WaitEvent(0, 5*time.Second, map[string]string{"event": "accepted", "port": strconv.Itoa(int(portB))})
			if n := d.Count(map[string]string{"event": "rejected"}) + d2.Count(map[string]string{"event": "rejected"}); n != 0 {
				t.Errorf("%d rejections: a part of the knock was decided on its own", n)
			}
			if src == "kmsg" {
				ev := d2.WaitEvent(0, time.Second, map[string]string{"msg": "kernel log resumed after the last record handled"})
				if n, _ := strconv.Atoi(ev.Get("primed")); n < 4 {
					t.Errorf("resume primed %d records, want at least the four knocks handled before the stop", n)
				}
			}
		})
	}
}
