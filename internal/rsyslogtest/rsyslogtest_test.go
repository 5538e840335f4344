package rsyslogtest

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/knockdaemon/knock/internal/netnstest"
)

// waitFor waits (bounded) until file holds want.
func waitFor(t *testing.T, file, want string) {
	t.Helper()
	for range 500 {
		if b, err := os.ReadFile(file); err == nil && strings.Contains(string(b), want) {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	b, _ := os.ReadFile(file)
	t.Fatalf("%s does not hold %q within 5s:\n%s", file, want, b)
}

// A message sent to the private socket lands in the file of the rules,
// through a restart and a rename + HUP rotation; the socket is writable
// by anyone and gone after Stop.
func TestSocketServerWritesThroughRestartAndRotation(t *testing.T) {
	dir := t.TempDir()
	log := filepath.Join(dir, "kern.log")
	s := Start(t, dir, Options{Socket: true,
		Rules: fmt.Sprintf("*.* action(type=\"omfile\" file=%q template=\"RSYSLOG_TraditionalFileFormat\")", log)})
	st, err := os.Stat(s.Sock)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o666 {
		t.Errorf("socket mode %v, want 0666 (anyone may write to /dev/log)", st.Mode().Perm())
	}
	tag := "rstest" + netnstest.RandHex(3)
	w := s.Sender()
	defer w.Close()
	send := func(n int) string {
		msg := fmt.Sprintf("%s: message %d", tag, n)
		if err := w.Send("<4>Nov 21 06:00:00 " + msg); err != nil {
			t.Fatal(err)
		}
		return msg
	}
	waitFor(t, log, send(1))

	s.Stop()
	if _, err := os.Stat(s.Sock); err == nil {
		t.Error("the socket is still there after Stop")
	}
	s.Start()
	waitFor(t, log, send(2)) // the sender reconnects

	if err := os.Rename(log, log+".1"); err != nil {
		t.Fatal(err)
	}
	s.HUP()
	// rsyslogd reopens its files a moment after the signal; until then
	// it writes on into the renamed file. Send until a message lands in
	// a new file at the path.
	for n := 3; ; n++ {
		send(n)
		time.Sleep(20 * time.Millisecond)
		if b, err := os.ReadFile(log); err == nil && strings.Contains(string(b), tag) {
			break
		}
		if n > 250 {
			b, _ := os.ReadFile(log + ".1")
			t.Fatalf("after rename and HUP, rsyslogd made no new %s; the renamed file holds:\n%s", log, b)
		}
	}
}

// A server reading the kernel log returns from Start only once it has
// written the file it was told to wait for; it has no socket to send to.
func TestKmsgServerWaitsUntilItWrote(t *testing.T) {
	netnstest.Require(t, "rsyslogd")
	if _, err := os.Stat("/dev/kmsg"); err != nil {
		netnstest.Unavailable(t, "no /dev/kmsg: %v", err)
	}
	dir := t.TempDir()
	kern := filepath.Join(dir, "kern.log")
	s := Start(t, dir, Options{Kmsg: true, WaitWritten: kern,
		Rules: fmt.Sprintf("kern.* action(type=\"omfile\" file=%q template=\"RSYSLOG_TraditionalFileFormat\")", kern)})
	st, err := os.Stat(kern)
	if err != nil || st.Size() == 0 {
		t.Fatalf("Start returned before rsyslogd wrote %s: %v", kern, err)
	}
	if s.Sock != "" {
		t.Errorf("a kmsg-only server has a socket %q", s.Sock)
	}
	if err := s.Sender().Send("x"); err == nil {
		t.Error("Send to a server without a socket succeeded")
	}
}
