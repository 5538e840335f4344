//go:build linux

package door

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/knockdaemon/knock/grant"
	"github.com/knockdaemon/knock/internal/clock"
	"github.com/knockdaemon/knock/internal/netnstest"
	"github.com/knockdaemon/knock/logparse"
	"github.com/knockdaemon/knock/logsource"
	"github.com/knockdaemon/knock/rules"
)

// TestKernelDoors runs the door pipeline against the real kernel: knockd's
// own knock client in a client namespace knocks; the server namespace's
// LOG rules write the knocks to the kernel log; they are read back from
// /dev/kmsg, parsed, matched, and the doors open and close ports through
// the iptables backend (inside the server namespace) and through start/stop
// commands. The daemon's wiring of the same stages is tested in e2e.
func TestKernelDoors(t *testing.T) {
	t.Parallel()
	netnstest.Require(t, "iptables", "ip6tables", "knock")
	ipPath, err := exec.LookPath("ip")
	if err != nil {
		netnstest.Unavailable(t, "no ip binary")
	}
	iptPath, err := exec.LookPath("iptables")
	if err != nil {
		netnstest.Unavailable(t, "no iptables binary")
	}
	n := netnstest.New(t)
	netnstest.EnableNFLogAllNetns(t)
	id := netnstest.RandHex(3)
	prefix := "kd" + id + ":"
	ns := n.Server
	srv4, srv6 := n.Client.ServerIP4, n.Client.ServerIP6
	cli4 := n.Client.IP4

	const tcpKnocks, udpKnocks, cmdKnocks = "7000,8000,9000", "1111,3333,5555", "4000,6000,5000"
	const sshPort, udpDoorPort, cmdPort = 2222, 2223, 2224
	for _, ipt := range []string{"iptables", "ip6tables"} {
		for _, rule := range [][]string{
			{"-A", "INPUT", "-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED", "-j", "ACCEPT"},
			{"-A", "INPUT", "-p", "tcp", "-m", "multiport", "--dports", tcpKnocks + "," + cmdKnocks, "-j", "LOG", "--log-prefix", prefix + " "},
			{"-A", "INPUT", "-p", "udp", "-m", "multiport", "--dports", udpKnocks, "-j", "LOG", "--log-prefix", prefix + " "},
			{"-A", "INPUT", "-p", "tcp", "-m", "multiport", "--dports", tcpKnocks + "," + cmdKnocks, "-j", "DROP"},
			{"-A", "INPUT", "-p", "udp", "-m", "multiport", "--dports", udpKnocks, "-j", "DROP"},
			{"-A", "INPUT", "-p", "tcp", "-m", "multiport", "--dports", fmt.Sprintf("%d,%d,%d", sshPort, udpDoorPort, cmdPort), "-j", "DROP"},
		} {
			netnstest.MustExec(t, ns, append([]string{ipt, "-w"}, rule...)...)
		}
	}
	for _, p := range []int{sshPort, udpDoorPort, cmdPort} {
		netnstest.Listen(t, ns, "tcp", fmt.Sprintf(":%d", p))
	}

	backend, err := rules.NewIPTables(rules.NetnsRunner(&rules.ExecRunner{}, ns), "KD"+strings.ToUpper(id))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := backend.Setup(ctx); err != nil {
		t.Fatalf("backend setup: %v", err)
	}
	t.Cleanup(func() { _ = backend.Teardown(context.Background()) })
	mgr, err := grant.New(grant.Config{Backend: backend})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(mgr.Stop)
	cmds, err := NewCommands(CommandsConfig{Runner: &rules.ExecRunner{}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cmds.Stop)
	ex := &Executor{Grants: mgr, Commands: cmds}

	doors := []*Door{
		mustDoor(t, Config{Name: "openSSH", Sequence: tcpKnocks, SequenceTimeout: "5s", TCPFlags: "syn,!ack",
			Open: &OpenConfig{Ports: []string{fmt.Sprint(sshPort)}}, CmdTimeout: "0s"}),
		mustDoor(t, Config{Name: "closeSSH", Sequence: "9000,8000,7000", SequenceTimeout: "5s", TCPFlags: "syn,!ack",
			Close: &OpenConfig{Ports: []string{fmt.Sprint(sshPort)}}}),
		mustDoor(t, Config{Name: "udp", Sequence: "1111:udp,3333:udp,5555:udp", SequenceTimeout: "5s",
			Open: &OpenConfig{Ports: []string{fmt.Sprint(udpDoorPort)}}, CmdTimeout: "4s"}),
		mustDoor(t, Config{Name: "cmd", Sequence: cmdKnocks, SequenceTimeout: "5s", TCPFlags: "syn",
			StartCommand: fmt.Sprintf("%s netns exec %s %s -w -I INPUT -s %%IP%% -p tcp --dport %d -j ACCEPT", ipPath, ns, iptPath, cmdPort),
			StopCommand:  fmt.Sprintf("%s netns exec %s %s -w -D INPUT -s %%IP%% -p tcp --dport %d -j ACCEPT", ipPath, ns, iptPath, cmdPort),
			CmdTimeout:   "4s"}),
	}
	m, err := NewMatcher(doors, clock.Real{}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()

	// The pipeline: /dev/kmsg -> logparse -> Matcher -> Executor.
	marker := []byte("kd" + id + "-ready")
	ready := make(chan struct{})
	var (
		mu    sync.Mutex
		fired []string
		errs  []error
	)
	var once sync.Once
	src := logsource.NewKmsg(logsource.KmsgOptions{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		var h logparse.Hit
		err := src.Run(ctx, func(l logsource.Line) {
			if bytes.Contains(l.Text, marker) {
				once.Do(func() { close(ready) })
				return
			}
			if logparse.Parse(l.Text, &h) != nil || !strings.HasPrefix(h.Prefix, prefix) {
				return
			}
			var p Proto
			switch h.Proto {
			case logparse.ProtoTCP:
				p = TCP
			case logparse.ProtoUDP:
				p = UDP
			default:
				return
			}
			res, err := m.Add(Hit{Src: h.Src, Proto: p, SrcPort: h.SrcPort, DstPort: h.DstPort, Flags: h.Flags, Time: l.Received})
			if err != nil || res.Outcome != Fired {
				return
			}
			err = ex.Fire(ctx, res.Door, res.Src)
			mu.Lock()
			fired = append(fired, res.Door.Name+" "+res.Src.String())
			if err != nil {
				errs = append(errs, err)
			}
			mu.Unlock()
		})
		if err != nil && ctx.Err() == nil {
			t.Errorf("kmsg source: %v", err)
		}
	}()
	t.Cleanup(func() { cancel(); wg.Wait() })
	// Wait until the source follows the log: write markers until one is read.
	for i := 0; ; i++ {
		if i == 50 {
			t.Fatal("the kmsg source never saw the marker")
		}
		_ = os.WriteFile("/dev/kmsg", append(marker, '\n'), 0)
		select {
		case <-ready:
		case <-time.After(100 * time.Millisecond):
			continue
		}
		break
	}

	dial := func(addr netip.Addr, port int) error {
		return netnstest.Dial(n.Client.NS, "tcp", net.JoinHostPort(addr.String(), fmt.Sprint(port)), 500*time.Millisecond)
	}
	// waitFor polls until dial's outcome is want (bounded).
	// waitFor's bound leaves room for a 4s cmd_timeout and a loaded machine.
	waitFor := func(what string, addr netip.Addr, port int, open bool) {
		t.Helper()
		deadline := time.Now().Add(8 * time.Second)
		for {
			err := dial(addr, port)
			if (err == nil) == open {
				return
			}
			if time.Now().After(deadline) {
				mu.Lock()
				defer mu.Unlock()
				t.Fatalf("%s: port %d for %s open=%v never happened (last dial: %v); fired %q, errors %v", what, port, addr, open, err, fired, errs)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	knock := func(args ...string) {
		t.Helper()
		out, err := netnstest.Exec(n.Client.NS, append([]string{"knock", "-v"}, args...)...)
		if err != nil {
			t.Fatalf("knock %v: %v\n%s", args, err, out)
		}
	}

	// grants waits (bounded) until the manager lists n grants: it publishes
	// its list just after the firewall command returned, so the port can
	// answer, or stop answering, a moment earlier.
	grants := func(n int) []grant.Info {
		for i := 0; ; i++ {
			g := mgr.List()
			if len(g) == n || i == 100 {
				return g
			}
			time.Sleep(20 * time.Millisecond)
		}
	}

	t.Run("tcp door opens, close door closes", func(t *testing.T) {
		if err := dial(srv4, sshPort); err == nil {
			t.Fatal("the protected port answers before any knock")
		}
		knock(srv4.String(), "7000", "8000", "9000")
		waitFor("after openSSH", srv4, sshPort, true)
		if g := grants(1); len(g) != 1 || g[0].User != "door:openSSH" || g[0].Addr != cli4 || !g[0].Unlimited() {
			t.Fatalf("grants %+v", g)
		}
		knock(srv4.String(), "9000", "8000", "7000")
		waitFor("after closeSSH", srv4, sshPort, false)
		if g := grants(0); len(g) != 0 {
			t.Fatalf("grants after close door %+v", g)
		}
	})
	t.Run("wrong order does not open", func(t *testing.T) {
		knock(srv4.String(), "7000", "9000", "8000")
		time.Sleep(300 * time.Millisecond)
		if err := dial(srv4, sshPort); err == nil {
			t.Fatal("a wrong sequence opened the port")
		}
	})
	t.Run("udp door", func(t *testing.T) {
		if err := dial(srv4, udpDoorPort); err == nil {
			t.Fatal("the udp door's port answers before any knock")
		}
		knock("-u", srv4.String(), "1111", "3333", "5555")
		waitFor("after the udp door", srv4, udpDoorPort, true)
		// cmd_timeout = 4s: the grant manager closes it on time.
		waitFor("after the udp door's cmd_timeout", srv4, udpDoorPort, false)
		if g := grants(0); len(g) != 0 {
			t.Fatalf("grants after the udp door's cmd_timeout: %+v", g)
		}
	})
	t.Run("IPv6 knock opens for the IPv6 address", func(t *testing.T) {
		if err := dial(srv6, sshPort); err == nil {
			t.Fatal("the protected port answers over IPv6 before any knock")
		}
		knock("-6", srv6.String(), "7000", "8000", "9000")
		waitFor("after an IPv6 openSSH", srv6, sshPort, true)
		if err := dial(srv4, sshPort); err == nil {
			t.Fatal("an IPv6 knock opened the port for the IPv4 address too")
		}
	})
	t.Run("command door runs start, then stop after cmd_timeout", func(t *testing.T) {
		if err := dial(srv4, cmdPort); err == nil {
			t.Fatal("the command door's port answers before any knock")
		}
		knock(srv4.String(), "4000", "6000", "5000")
		waitFor("after the start command", srv4, cmdPort, true)
		if p := cmds.List(); len(p) != 1 || p[0].Door != "cmd" || p[0].Addr != cli4 {
			t.Fatalf("pending stops %+v", p)
		}
		waitFor("after the stop command", srv4, cmdPort, false)
		if p := cmds.List(); len(p) != 0 {
			t.Fatalf("pending stops after the stop ran: %+v", p)
		}
	})
	mu.Lock()
	defer mu.Unlock()
	if len(errs) > 0 {
		t.Errorf("door actions failed: %v", errs)
	}
	want := []string{"openSSH " + cli4.String(), "closeSSH " + cli4.String(), "udp " + cli4.String(), "openSSH " + n.Client.IP6.String(), "cmd " + cli4.String()}
	if strings.Join(fired, "|") != strings.Join(want, "|") {
		t.Errorf("fired %q, want %q", fired, want)
	}
}
