// Package journaldtest runs a private systemd-journald for tests that
// need a real journal: journald reads the real /dev/kmsg (every reader
// sees every record, so it steals lines from nobody) and runs in a mount
// namespace of its own, with a fresh tmpfs on /run and on
// /var/log/journal, so it writes nothing to the host and creates nothing
// in the host's /run. Programs that must see that journal (journalctl,
// logger, the daemon under test) run inside the namespace through In or
// Command (nsenter).
//
// Start needs unshare, nsenter, journalctl and systemd-journald; without
// them the test skips (and fails under CI=true, see
// netnstest.Unavailable). journald gets SIGKILL if the test process dies
// without cleaning up.
package journaldtest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/knockdaemon/knock/internal/netnstest"
	"github.com/knockdaemon/knock/internal/testbin"
)

// Binary is the systemd-journald Start runs (Debian package systemd).
const Binary = "/lib/systemd/systemd-journald"

// nsScript makes the mount namespace journald runs in: a fresh tmpfs on
// /run (with the host's /run/netns and /run/xtables.lock bound into it,
// so ip netns exec and iptables still work there as on the host) and on
// /var/log/journal. Propagation is slave: namespaces created on the host
// later still appear in /run/netns, and no mount made here reaches the
// host. $1 is an empty directory of the test's.
const nsScript = `set -e
old=$1/oldrun
mkdir "$old"
mount --rbind /run "$old"
mount -t tmpfs -o mode=0755,size=64m knocktest-run /run
mkdir /run/systemd /run/log /run/netns
if [ -d "$old/netns" ]; then mount --rbind "$old/netns" /run/netns; fi
if [ -f "$old/xtables.lock" ]; then : > /run/xtables.lock; mount --bind "$old/xtables.lock" /run/xtables.lock; fi
umount -l "$old"
if [ -d /var/log/journal ]; then mount -t tmpfs -o mode=0755,size=64m knocktest-journal /var/log/journal; fi
exec ` + Binary + `
`

// Journald is a running private systemd-journald.
type Journald struct {
	// Pid is journald's: unshare and sh exec'd, and its mount namespace
	// is the one In enters.
	Pid  int
	done chan struct{}
}

// Start starts systemd-journald in a private mount namespace and waits
// (up to 10s) until its journal answers journalctl. It is stopped (and
// so its namespace ends) at cleanup: processes the test starts inside the
// namespace must be stopped by cleanups registered after this call.
func Start(t testing.TB) *Journald {
	t.Helper()
	netnstest.Require(t, "unshare", "nsenter", "journalctl")
	if _, err := os.Stat(Binary); err != nil {
		netnstest.Unavailable(t, "no %s (Debian package systemd): %v", Binary, err)
	}
	dir := t.TempDir()
	logPath := filepath.Join(dir, "journald.out")
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	cmd := exec.Command("unshare", "--mount", "--propagation", "slave", "/bin/sh", "-c", nsScript, "sh", dir)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = testbin.DieWithParent()
	if err := cmd.Start(); err != nil {
		netnstest.Unavailable(t, "cannot start journald under unshare: %v", err)
	}
	j := &Journald{Pid: cmd.Process.Pid, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(j.done) }()
	output := func() string { b, _ := os.ReadFile(logPath); return string(b) }
	t.Cleanup(func() {
		// The pid is journald's. When it is gone the mount namespace has
		// no process left and ends.
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-j.done:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			<-j.done
		}
		if t.Failed() {
			t.Logf("systemd-journald output:\n%s", output())
		}
	})
	socket := fmt.Sprintf("/proc/%d/root/run/systemd/journal/socket", j.Pid)
	deadline := time.Now().Add(10 * time.Second)
	for {
		select {
		case <-j.done:
			t.Fatalf("systemd-journald exited at start:\n%s", output())
		default:
		}
		// The journal answers once journald made its sockets and files.
		if _, err := os.Stat(socket); err == nil {
			if out, err := j.Exec("journalctl", "-k", "-n", "0", "-q", "--no-pager"); err == nil {
				return j
			} else if time.Now().After(deadline) {
				t.Fatalf("journalctl in journald's namespace: %v\n%s\njournald:\n%s", err, out, output())
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("systemd-journald made no socket within 10s:\n%s", output())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// In returns argv run inside journald's mount namespace: an nsenter
// command line, which execs argv (so a process started from it is argv's
// own).
func (j *Journald) In(argv ...string) []string {
	return append([]string{"nsenter", "-t", strconv.Itoa(j.Pid), "-m", "--"}, argv...)
}

// Command returns an exec.Cmd that runs argv inside journald's mount
// namespace.
func (j *Journald) Command(argv ...string) *exec.Cmd {
	full := j.In(argv...)
	return exec.Command(full[0], full[1:]...)
}

// Exec runs argv inside journald's mount namespace and returns its
// combined output.
func (j *Journald) Exec(argv ...string) (string, error) {
	out, err := j.Command(argv...).CombinedOutput()
	return string(out), err
}

// Count returns how many times s occurs in the messages of the whole
// journal (every transport).
func (j *Journald) Count(t testing.TB, s string) int {
	t.Helper()
	out, err := j.Exec("journalctl", "--no-pager", "-q", "-o", "cat")
	if err != nil {
		t.Fatalf("journalctl: %v\n%s", err, out)
	}
	return strings.Count(out, s)
}

// WaitCount waits (up to 10s) until the journal holds exactly n
// occurrences of s; more than n fails at once.
func (j *Journald) WaitCount(t testing.TB, s string, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		got := j.Count(t, s)
		if got == n {
			return
		}
		if got > n || time.Now().After(deadline) {
			t.Fatalf("journal holds %d entries with %q, want %d", got, s, n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
