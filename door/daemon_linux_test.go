//go:build linux

package door

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/knockdaemon/knock/internal/netnstest"
	"github.com/knockdaemon/knock/internal/testbin"
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
	const pkg = "github.com/knockdaemon/knock/knockdaemon"
	daemonBin.once.Do(func() {
		dir, err := os.MkdirTemp("", "knock-door-bin-")
		if err != nil {
			daemonBin.err = err
			return
		}
		daemonBin.dir = dir
		paths, err := testbin.Build(dir, false, pkg)
		daemonBin.path, daemonBin.err = paths[pkg], err
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

	// The backend's chain, in case the daemon died before its teardown
	// (registered first, so it runs after the daemon's stop).
	t.Cleanup(func() { _, _ = netnstest.Exec(ns, "iptables", "-w", "-F", "KDD"+strings.ToUpper(id)) })
	d := testbin.StartDaemon(t, testbin.DaemonOptions{Program: bin, Args: []string{"-c", conf, "run"}, CleanExit: true})
	// waitLog waits for a log line that holds every one of subs.
	waitLog := func(what string, subs ...string) {
		t.Helper()
		d.WaitLine(0, 20*time.Second, what, func(l string) bool {
			for _, s := range subs {
				if !strings.Contains(l, s) {
					return false
				}
			}
			return true
		})
	}

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

	d.Stop() // an exit status other than 0 fails the test
	if dial(udpPort) == nil {
		t.Fatal("close_on_exit left the UDP door's opening in place")
	}
	if c := d.Count(map[string]string{"level": "ERROR"}); c != 0 {
		t.Errorf("%d error lines in the daemon's log", c)
	}
}
