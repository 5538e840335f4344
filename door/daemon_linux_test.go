//go:build linux

package door

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/knockdaemon/knock/internal/netnstest"
)

var daemonBin struct {
	once sync.Once
	dir  string // removed by TestMain
	path string
	err  error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if daemonBin.dir != "" {
		os.RemoveAll(daemonBin.dir)
	}
	os.Exit(code)
}

// buildDaemon builds knockdaemon once per test run.
func buildDaemon(t *testing.T) string {
	t.Helper()
	daemonBin.once.Do(func() {
		dir, err := os.MkdirTemp("", "knock-door-bin-")
		if err != nil {
			daemonBin.err = err
			return
		}
		daemonBin.dir = dir
		goBin, err := exec.LookPath("go")
		if err != nil {
			goBin = filepath.Join(runtime.GOROOT(), "bin", "go")
		}
		out := filepath.Join(dir, "knockdaemon")
		cmd := exec.Command(goBin, "build", "-o", out, "github.com/knockdaemon/knock/knockdaemon")
		if msg, err := cmd.CombinedOutput(); err != nil {
			daemonBin.err = fmt.Errorf("go build knockdaemon: %v\n%s", err, msg)
			return
		}
		daemonBin.path = out
	})
	if daemonBin.err != nil {
		t.Fatal(daemonBin.err)
	}
	return daemonBin.path
}

// knockdConf is a knockd.conf as a knockd user has it: an SSH door with a
// close door, a UDP door with start/stop commands and cmd_timeout, and a
// door whose commands are not the typical pair (kept as commands, found on
// PATH as knockd's shell would). PORT_* are replaced by the test.
const knockdConf = `# knockd.conf of the door end-to-end test
[openSSH]
	sequence    = 7000,9000,8000
	seq_timeout = 5
	tcpflags    = syn
	command     = /sbin/iptables -A INPUT -s %IP% -p tcp --dport PORT_SSH -j ACCEPT

[closeSSH]
	sequence    = 8000,9000,7000
	seq_timeout = 5
	tcpflags    = syn
	command     = /sbin/iptables -D INPUT -s %IP% -p tcp --dport PORT_SSH -j ACCEPT

[openUDP]
	sequence      = 5555:udp,1111:udp,3333:udp
	seq_timeout   = 5
	start_command = /sbin/iptables -A INPUT -s %IP% -p tcp --dport PORT_UDP -j ACCEPT
	cmd_timeout   = 120
	stop_command  = /sbin/iptables -D INPUT -s %IP% -p tcp --dport PORT_UDP -j ACCEPT

[cmdDoor]
	sequence      = 4000,6000,5000
	seq_timeout   = 5
	start_command = iptables -w -I INPUT -s %IP% -p tcp --dport PORT_CMD -m comment --comment knockd -j ACCEPT
	cmd_timeout   = 4
	stop_command  = iptables -w -D INPUT -s %IP% -p tcp --dport PORT_CMD -m comment --comment knockd -j ACCEPT
`

// TestDaemonKnockdMigration is the knockd user's path end to end:
// `knockdaemon import-knockd` converts their knockd.conf, knockdaemon runs
// with the result (kmsg source, iptables backend inside the server
// namespace), and knockd's own knock client opens the doors from a client
// namespace — a TCP door, its close door and a UDP door. The protected
// ports do not answer before and answer after; close_on_exit closes what
// is left when the daemon stops.
func TestDaemonKnockdMigration(t *testing.T) {
	t.Parallel()
	netnstest.Require(t, "iptables", "ip6tables", "knock")
	bin := buildDaemon(t)
	n := netnstest.New(t)
	netnstest.EnableNFLogAllNetns(t)
	id := netnstest.RandHex(3)
	prefix := "kdd" + id + ":"
	ns := n.Server
	srv := n.Client.ServerIP4
	const sshPort, udpPort, cmdPort = 2232, 2233, 2234
	const tcpKnocks, udpKnocks = "7000,8000,9000,4000,5000,6000", "1111,3333,5555"
	for _, ipt := range []string{"iptables", "ip6tables"} {
		for _, rule := range [][]string{
			{"-A", "INPUT", "-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED", "-j", "ACCEPT"},
			{"-A", "INPUT", "-p", "tcp", "-m", "multiport", "--dports", tcpKnocks, "-j", "LOG", "--log-prefix", prefix + " "},
			{"-A", "INPUT", "-p", "udp", "-m", "multiport", "--dports", udpKnocks, "-j", "LOG", "--log-prefix", prefix + " "},
			{"-A", "INPUT", "-p", "tcp", "-m", "multiport", "--dports", tcpKnocks, "-j", "DROP"},
			{"-A", "INPUT", "-p", "udp", "-m", "multiport", "--dports", udpKnocks, "-j", "DROP"},
			{"-A", "INPUT", "-p", "tcp", "-m", "multiport", "--dports", fmt.Sprintf("%d,%d,%d", sshPort, udpPort, cmdPort), "-j", "DROP"},
		} {
			netnstest.MustExec(t, ns, append([]string{ipt, "-w"}, rule...)...)
		}
	}
	for _, p := range []int{sshPort, udpPort, cmdPort} {
		netnstest.Listen(t, ns, "tcp", fmt.Sprintf(":%d", p))
	}

	dir := t.TempDir()
	kconf := filepath.Join(dir, "knockd.conf")
	text := strings.NewReplacer("PORT_SSH", fmt.Sprint(sshPort), "PORT_UDP", fmt.Sprint(udpPort), "PORT_CMD", fmt.Sprint(cmdPort)).Replace(knockdConf)
	if err := os.WriteFile(kconf, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	imp := exec.Command(bin, "import-knockd", kconf)
	var impErr strings.Builder
	imp.Stderr = &impErr
	doors, err := imp.Output()
	if err != nil {
		t.Fatalf("knockdaemon import-knockd: %v\n%s", err, impErr.String())
	}
	for _, want := range []string{`open               = { ports = ["2232"], proto = "tcp" }`, `close              = { ports = ["2232"], proto = "tcp" }`,
		`open               = { ports = ["2233"], proto = "tcp" }`, `cmd_timeout        = "120s"`,
		`iptables -w -I INPUT -s %IP% -p tcp --dport 2234 -m comment --comment knockd -j ACCEPT"`} {
		if !strings.Contains(string(doors), want) {
			t.Fatalf("import-knockd output lacks %q:\n%s\nstderr:\n%s", want, doors, impErr.String())
		}
	}
	if !strings.Contains(string(doors), `start_command      = "/`) {
		t.Fatalf("import-knockd did not make the command path absolute:\n%s", doors)
	}
	conf := filepath.Join(dir, "knockdaemon.toml")
	header := fmt.Sprintf(`[daemon]
state_file = %q
control_socket = %q
close_on_exit = true
log_format = "json"
log_level = "debug"

[source]
type = "kmsg"
prefix = %q

[backend]
type = "iptables"
netns = %q
chain = %q

`, filepath.Join(dir, "state.json"), filepath.Join(dir, "control.sock"), prefix, ns, "KDD"+strings.ToUpper(id))
	if err := os.WriteFile(conf, append([]byte(header), doors...), 0o600); err != nil {
		t.Fatal(err)
	}

	// Start the daemon and wait for event=started.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "-c", conf, "run")
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = pw, pw
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pw.Close()
	var (
		mu     sync.Mutex
		lines  []string
		notify = make(chan struct{}, 1)
	)
	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			mu.Lock()
			lines = append(lines, sc.Text())
			mu.Unlock()
			select {
			case notify <- struct{}{}:
			default:
			}
		}
	}()
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	stopped := false
	stop := func() error {
		if stopped {
			return nil
		}
		stopped = true
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-exited:
			<-readDone
			return err
		case <-time.After(20 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
			return fmt.Errorf("knockdaemon did not stop within 20s of SIGTERM")
		}
	}
	t.Cleanup(func() {
		_ = stop()
		// The backend's chain, in case the daemon died before its teardown.
		_, _ = netnstest.Exec(ns, "iptables", "-w", "-F", "KDD"+strings.ToUpper(id))
		if t.Failed() {
			mu.Lock()
			t.Logf("knockdaemon log:\n%s", strings.Join(lines, "\n"))
			mu.Unlock()
		}
	})
	count := func(subs ...string) int {
		mu.Lock()
		defer mu.Unlock()
		c := 0
	next:
		for _, l := range lines {
			for _, s := range subs {
				if !strings.Contains(l, s) {
					continue next
				}
			}
			c++
		}
		return c
	}
	waitLog := func(what string, subs ...string) {
		t.Helper()
		deadline := time.After(20 * time.Second)
		for count(subs...) == 0 {
			select {
			case <-notify:
			case err := <-exited:
				exited <- err
				t.Fatalf("knockdaemon exited (%v) while waiting for %s", err, what)
			case <-deadline:
				t.Fatalf("no %s in the daemon's log within 20s", what)
			}
		}
	}
	waitLog("event=started", `"event":"started"`)

	dial := func(port int) error {
		return netnstest.Dial(n.Client.NS, "tcp4", net.JoinHostPort(srv.String(), fmt.Sprint(port)), 400*time.Millisecond)
	}
	waitPort := func(what string, port int, open bool) {
		t.Helper()
		deadline := time.Now().Add(8 * time.Second) // room for the 4s cmd_timeout on a loaded machine
		for {
			err := dial(port)
			if (err == nil) == open {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: port %d open=%v never happened (last dial: %v)", what, port, open, err)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	knock := func(args ...string) {
		t.Helper()
		argv := []string{"knock", "-v", "-d", "20"}
		if _, err := exec.LookPath("runuser"); err == nil {
			argv = append([]string{"runuser", "-u", "nobody", "--"}, argv...) // as a user knocks
		}
		if out, err := netnstest.Exec(n.Client.NS, append(argv, args...)...); err != nil {
			t.Fatalf("%v: %v\n%s", args, err, out)
		}
	}
	cli := n.Client.IP4.String()

	if dial(sshPort) == nil || dial(udpPort) == nil {
		t.Fatal("a protected port answers before any knock")
	}
	knock(srv.String(), "7000", "9000", "8000")
	waitPort("after the openSSH door", sshPort, true)
	waitLog("opened event", `"event":"opened"`, `"door":"openSSH"`, `"src":"`+cli+`"`)

	knock(srv.String(), "8000", "9000", "7000")
	waitPort("after the closeSSH door", sshPort, false)
	waitLog("closed event", `"event":"closed"`, `"door":"closeSSH"`)

	knock("-u", srv.String(), "5555", "1111", "3333")
	waitPort("after the UDP door", udpPort, true)
	waitLog("opened event of the UDP door", `"event":"opened"`, `"door":"openUDP"`)

	// The opening is a persisted grant of user door:openUDP.
	st, err := os.ReadFile(filepath.Join(dir, "state.json"))
	if err != nil || !strings.Contains(string(st), `"user": "door:openUDP"`) {
		t.Fatalf("state file (%v) has no grant of door:openUDP:\n%s", err, st)
	}

	// The command door: its commands run inside [backend] netns, like the
	// backend's own commands, and the stop runs cmd_timeout later.
	if dial(cmdPort) == nil {
		t.Fatal("the command door's port answers before any knock")
	}
	knock(srv.String(), "4000", "6000", "5000")
	waitPort("after the command door's start command", cmdPort, true)
	waitLog("command_started event", `"event":"command_started"`, `"door":"cmdDoor"`)
	waitPort("after the command door's stop command", cmdPort, false)
	waitLog("stop command event", `"event":"closed"`, `"door":"cmdDoor"`)

	// A sequence in the wrong order does nothing.
	knock(srv.String(), "7000", "8000", "9000")
	time.Sleep(300 * time.Millisecond)
	if dial(sshPort) == nil {
		t.Fatal("a wrong sequence opened the SSH port")
	}

	if err := stop(); err != nil {
		t.Fatalf("knockdaemon exit: %v", err)
	}
	if dial(udpPort) == nil {
		t.Fatal("close_on_exit left the UDP door's opening in place")
	}
	if c := count(`"level":"ERROR"`); c != 0 {
		t.Errorf("%d error lines in the daemon's log", c)
	}
}
