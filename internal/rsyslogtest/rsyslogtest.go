// Package rsyslogtest runs a private rsyslogd for tests that need a real
// syslog daemon writing a real log file (a kern.log, a syslog): in a
// directory of the test's own, with its own config, work directory, pid
// file and, when asked, its own unix socket in place of /dev/log, so it
// never touches the host's syslog set-up and tests can run side by side.
//
// Start needs the rsyslogd binary; without it the test skips (and fails
// under CI=true, see netnstest.Unavailable). rsyslogd runs with -n (in the
// foreground) and gets SIGKILL if the test process dies without cleaning
// up.
package rsyslogtest

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/knockdaemon/knock/internal/netnstest"
	"github.com/knockdaemon/knock/internal/testbin"
)

// Options say what the rsyslogd reads and writes.
type Options struct {
	// Socket: read datagrams from a unix socket of its own, Dir/log.sock
	// (imuxsock, the system socket off), which any local user may write
	// to, as anyone may write to /dev/log.
	Socket bool
	// Kmsg: read the kernel log (imkmsg). Every /dev/kmsg reader sees
	// every record, so this steals lines from neither the host's syslog
	// daemon nor another test's.
	Kmsg bool
	// Rules are the config's output rules, for example
	// kern.* action(type="omfile" file="..." template="RSYSLOG_TraditionalFileFormat").
	Rules string
	// WaitWritten, when set, is a file Start waits for until it has bytes:
	// proof that rsyslogd reads and writes (imkmsg copies the kernel's ring
	// buffer first). Without it Start waits for the pid file (and the
	// socket).
	WaitWritten string
}

// Server is a running private rsyslogd.
type Server struct {
	t testing.TB
	// Dir holds its config, work files, pid file and output.
	Dir string
	// Conf is its config file; Sock the socket it reads with
	// Options.Socket; PidFile what it writes its pid to.
	Conf, Sock, PidFile string
	o                   Options
	out                 string // its standard output and error
	cmd                 *exec.Cmd
	done                chan struct{}
}

// Start writes a config for o into dir (a t.TempDir when dir is empty),
// checks it with rsyslogd -N1, starts rsyslogd and waits until it is ready
// (see Options.WaitWritten), or fails the test. The test's cleanup stops
// it.
func Start(t testing.TB, dir string, o Options) *Server {
	t.Helper()
	netnstest.Require(t, "rsyslogd")
	if dir == "" {
		dir = t.TempDir()
	}
	s := &Server{t: t, Dir: dir, o: o,
		Conf:    filepath.Join(dir, "rsyslog.conf"),
		PidFile: filepath.Join(dir, "rsyslogd.pid"),
		out:     filepath.Join(dir, "rsyslogd.out"),
	}
	var b strings.Builder
	fmt.Fprintf(&b, "# private rsyslogd of test %s\nglobal(workDirectory=%q)\n", t.Name(), dir)
	if o.Socket {
		s.Sock = filepath.Join(dir, "log.sock")
		fmt.Fprintf(&b, "module(load=\"imuxsock\" SysSock.Use=\"off\")\ninput(type=\"imuxsock\" Socket=%q RateLimit.Interval=\"0\")\n", s.Sock)
	}
	if o.Kmsg {
		b.WriteString("module(load=\"imkmsg\")\n")
	}
	b.WriteString(strings.TrimSpace(o.Rules) + "\n")
	if err := os.WriteFile(s.Conf, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("rsyslogd", "-N1", "-f", s.Conf).CombinedOutput(); err != nil {
		t.Fatalf("rsyslogd -N1 rejects the test's config: %v\n%s\n%s", err, out, b.String())
	}
	s.Start()
	t.Cleanup(s.Stop)
	return s
}

// Start starts rsyslogd again after Stop (as a restart by the init system
// would) and waits until it is ready. It does nothing while it runs.
func (s *Server) Start() {
	s.t.Helper()
	if s.cmd != nil {
		return
	}
	os.Remove(s.PidFile)
	out, err := os.OpenFile(s.out, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		s.t.Fatal(err)
	}
	defer out.Close()
	cmd := exec.Command("rsyslogd", "-n", "-f", s.Conf, "-i", s.PidFile)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = testbin.DieWithParent()
	if err := cmd.Start(); err != nil {
		netnstest.Unavailable(s.t, "cannot start rsyslogd: %v", err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	s.cmd, s.done = cmd, done
	deadline := time.Now().Add(10 * time.Second)
	for i := 0; ; i++ {
		if s.ready() {
			if s.Sock != "" {
				// Anyone may write to /dev/log; so to this socket.
				if err := os.Chmod(s.Sock, 0o666); err != nil {
					s.t.Fatal(err)
				}
			}
			return
		}
		select {
		case <-done:
			s.cmd = nil
			s.t.Fatalf("rsyslogd exited at start:\n%s", s.Output())
		default:
		}
		if time.Now().After(deadline) || i > 1000 {
			s.t.Fatalf("rsyslogd was not ready within 10s (%s):\n%s", s.readyWhat(), s.Output())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (s *Server) ready() bool {
	if s.o.WaitWritten != "" {
		st, err := os.Stat(s.o.WaitWritten)
		if err != nil || st.Size() == 0 {
			return false
		}
	}
	if _, err := os.Stat(s.PidFile); err != nil {
		return false
	}
	if s.Sock != "" {
		if _, err := os.Stat(s.Sock); err != nil {
			return false
		}
	}
	return true
}

func (s *Server) readyWhat() string {
	if s.o.WaitWritten != "" {
		return "no bytes in " + s.o.WaitWritten
	}
	return "no pid file or socket"
}

// Output is what rsyslogd printed on its standard output and error.
func (s *Server) Output() string {
	b, _ := os.ReadFile(s.out)
	return string(b)
}

// Stop ends rsyslogd with SIGTERM (SIGKILL after 10 s) and removes its
// socket. It does nothing when it is not running.
func (s *Server) Stop() {
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(10 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.done
	}
	s.cmd = nil
	if s.Sock != "" {
		os.Remove(s.Sock)
	}
}

// HUP makes rsyslogd close and reopen its files, as logrotate's
// postrotate does.
func (s *Server) HUP() {
	s.t.Helper()
	if s.cmd == nil {
		s.t.Fatal("HUP: rsyslogd is not running")
	}
	if err := s.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		s.t.Fatalf("HUP rsyslogd: %v", err)
	}
}

// Sender writes syslog datagrams to a Server's socket. It is not safe for
// concurrent use.
type Sender struct {
	s    *Server
	conn net.Conn
}

// Sender returns a sender to s's socket (Options.Socket).
func (s *Server) Sender() *Sender { return &Sender{s: s} }

// Send writes one datagram (for example "<4>Nov 21 06:00:00 kernel: ..."),
// reconnecting, and retrying for up to about 10 s, while rsyslogd
// restarts.
func (w *Sender) Send(msg string) error {
	if w.s.Sock == "" {
		return fmt.Errorf("rsyslogtest: the server reads no socket (Options.Socket)")
	}
	for range 2000 {
		if w.conn == nil {
			c, err := net.Dial("unixgram", w.s.Sock)
			if err != nil {
				time.Sleep(5 * time.Millisecond)
				continue
			}
			w.conn = c
		}
		if _, err := w.conn.Write([]byte(msg)); err == nil {
			return nil
		}
		w.conn.Close()
		w.conn = nil
	}
	return fmt.Errorf("rsyslogd did not take %q", msg)
}

// Close closes the sender's connection.
func (w *Sender) Close() error {
	if w.conn == nil {
		return nil
	}
	err := w.conn.Close()
	w.conn = nil
	return err
}
