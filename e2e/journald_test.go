package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/knockdaemon/knock/internal/netnstest"
)

// journaldNS is the mount namespace a real systemd-journald of the test
// runs in: a fresh tmpfs on /run (the host's /run/netns and
// /run/xtables.lock bound into it, so ip netns exec and iptables work
// there as on the host) and on /var/log/journal. journald writes nothing
// to the host; the namespace ends with it. Propagation is slave: the
// host's later namespaces appear, our mounts never reach the host. $1 is
// an empty directory of the test's.
const journaldNS = `set -e
old=$1/oldrun
mkdir "$old"
mount --rbind /run "$old"
mount -t tmpfs -o mode=0755,size=64m knocktest-run /run
mkdir /run/systemd /run/log /run/netns
if [ -d "$old/netns" ]; then mount --rbind "$old/netns" /run/netns; fi
if [ -f "$old/xtables.lock" ]; then : > /run/xtables.lock; mount --bind "$old/xtables.lock" /run/xtables.lock; fi
umount -l "$old"
if [ -d /var/log/journal ]; then mount -t tmpfs -o mode=0755,size=64m knocktest-journal /var/log/journal; fi
exec /lib/systemd/systemd-journald
`

// startJournald runs systemd-journald (reading the real /dev/kmsg) in a
// mount namespace of its own and returns the command prefix that runs a
// program in that namespace. journald is stopped at cleanup, after
// everything started later in the test.
func startJournald(t *testing.T, w *world) (in []string) {
	t.Helper()
	netnstest.Require(t, "unshare", "nsenter", "journalctl")
	if _, err := os.Stat("/lib/systemd/systemd-journald"); err != nil {
		netnstest.Unavailable(t, "no systemd-journald (Debian package systemd): %v", err)
	}
	dir := filepath.Join(w.dir, "journald")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	logPath := filepath.Join(dir, "journald.out")
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	cmd := exec.Command("unshare", "--mount", "--propagation", "slave", "/bin/sh", "-c", journaldNS, "sh", dir)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = dieWithTest()
	if err := cmd.Start(); err != nil {
		netnstest.Unavailable(t, "cannot start journald under unshare: %v", err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	output := func() string { b, _ := os.ReadFile(logPath); return string(b) }
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM) // sh and unshare exec'd: this is journald
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("systemd-journald output:\n%s", output())
		}
	})
	in = []string{"nsenter", "-t", strconv.Itoa(cmd.Process.Pid), "-m", "--"}
	socket := fmt.Sprintf("/proc/%d/root/run/systemd/journal/socket", cmd.Process.Pid)
	for deadline := time.Now().Add(10 * time.Second); ; {
		select {
		case <-done:
			t.Fatalf("systemd-journald exited at start:\n%s", output())
		default:
		}
		if _, err := os.Stat(socket); err == nil {
			argv := append(in[1:len(in):len(in)], "journalctl", "-k", "-n", "0", "-q", "--no-pager")
			if exec.Command(in[0], argv...).Run() == nil {
				return in
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("systemd-journald not answering within 10s:\n%s", output())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Case 7: the flow through a real systemd-journald, the daemon reading it
// with its journald source (journalctl -k -f): closed before the knock,
// open for the knocker after knockclient knocks, closed again by
// --time 255. The daemon runs in journald's mount namespace, where
// journalctl finds that journal.
func TestSourceJournald(t *testing.T) {
	t.Parallel()
	w := newWorld(t, opts{})
	in := startJournald(t, w)
	conf := w.writeConfig(conf{source: "journald"})
	d := w.startDaemonWrapped(in, conf, nil)
	flow(t, w, d, conf)
}
