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
	"path/filepath"
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

// Knock sequences and protected ports of the kernel door tests.
const (
	tcpKnocks, udpKnocks, cmdKnocks = "7000,8000,9000", "1111,3333,5555", "4000,6000,5000"
	sshPort, udpDoorPort, cmdPort   = 2222, 2223, 2224
)

// doorHost is a server namespace guarded by a firewall that logs (under a
// prefix of its own) and drops the knock ports and drops the protected
// ports, a backend inside it, and the door pipeline on the host:
// /dev/kmsg -> logparse -> Matcher -> Executor. knockd's own knock client
// knocks from the client namespace.
type doorHost struct {
	t      *testing.T
	n      *netnstest.Net
	id     string
	prefix string
	ctx    context.Context
	mgr    *grant.Manager
	cmds   *Commands

	mu    sync.Mutex
	fired []string // "door src" of every door that fired, in order
	errs  []error  // of the actions
}

// newDoorHost sets up the namespaces, the admin's firewall and the backend
// (iptables, ipset or nftables), the grant manager and the command runner.
func newDoorHost(t *testing.T, backendKind string) *doorHost {
	tools := []string{"iptables", "ip6tables", "knock"}
	switch backendKind {
	case "ipset":
		tools = append(tools, "ipset")
	case "nftables":
		tools = []string{"nft", "knock"}
	}
	netnstest.Require(t, tools...)
	h := &doorHost{t: t, n: netnstest.New(t), id: netnstest.RandHex(3)}
	netnstest.EnableNFLogAllNetns(t)
	h.prefix = "kd" + h.id + ":"
	ns := h.n.Server
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	h.ctx = ctx

	protected := fmt.Sprintf("%d,%d,%d", sshPort, udpDoorPort, cmdPort)
	runner := rules.NetnsRunner(&rules.ExecRunner{}, ns)
	var backend rules.Backend
	var err error
	if backendKind == "nftables" {
		// The admin's own table, as examples/nftables.conf has it; the
		// backend inserts its set lookups at the top of its input chain.
		table := "kd" + h.id
		set := func(ports string) string { return "{ " + strings.ReplaceAll(ports, ",", ", ") + " }" }
		ruleset := fmt.Sprintf(`table inet %s {
	chain input {
		type filter hook input priority 0; policy accept;
		ct state established,related accept
		tcp dport %s log prefix "%s " drop
		udp dport %s log prefix "%s " drop
		tcp dport %s drop
	}
}
`, table, set(tcpKnocks+","+cmdKnocks), h.prefix, set(udpKnocks), h.prefix, set(protected))
		path := filepath.Join(t.TempDir(), "nftables.conf")
		if err := os.WriteFile(path, []byte(ruleset), 0o644); err != nil {
			t.Fatal(err)
		}
		netnstest.MustExec(t, ns, "nft", "-f", path)
		backend, err = rules.NewNFTables(runner, "inet "+table, "input", "kd"+h.id)
	} else {
		for _, ipt := range []string{"iptables", "ip6tables"} {
			for _, rule := range [][]string{
				{"-A", "INPUT", "-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED", "-j", "ACCEPT"},
				{"-A", "INPUT", "-p", "tcp", "-m", "multiport", "--dports", tcpKnocks + "," + cmdKnocks, "-j", "LOG", "--log-prefix", h.prefix + " "},
				{"-A", "INPUT", "-p", "udp", "-m", "multiport", "--dports", udpKnocks, "-j", "LOG", "--log-prefix", h.prefix + " "},
				{"-A", "INPUT", "-p", "tcp", "-m", "multiport", "--dports", tcpKnocks + "," + cmdKnocks, "-j", "DROP"},
				{"-A", "INPUT", "-p", "udp", "-m", "multiport", "--dports", udpKnocks, "-j", "DROP"},
				{"-A", "INPUT", "-p", "tcp", "-m", "multiport", "--dports", protected, "-j", "DROP"},
			} {
				netnstest.MustExec(t, ns, append([]string{ipt, "-w"}, rule...)...)
			}
		}
		if backendKind == "ipset" {
			backend, err = rules.NewIPSet(runner, "kd"+h.id)
		} else {
			backend, err = rules.NewIPTables(runner, "KD"+strings.ToUpper(h.id))
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []int{sshPort, udpDoorPort, cmdPort} {
		netnstest.Listen(t, ns, "tcp", fmt.Sprintf(":%d", p))
	}
	if err := backend.Setup(ctx); err != nil {
		t.Fatalf("%s backend setup: %v", backendKind, err)
	}
	t.Cleanup(func() { _ = backend.Teardown(context.Background()) })
	if h.mgr, err = grant.New(grant.Config{Backend: backend}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.mgr.Stop)
	if h.cmds, err = NewCommands(CommandsConfig{Runner: &rules.ExecRunner{}}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.cmds.Stop)
	return h
}

// run starts the pipeline with doors and returns once the kmsg source
// follows the log.
func (h *doorHost) run(doors ...*Door) {
	t := h.t
	m, err := NewMatcher(doors, clock.Real{}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Close() })
	ex := &Executor{Grants: h.mgr, Commands: h.cmds}
	ctx, cancel := context.WithCancel(h.ctx)
	marker := []byte("kd" + h.id + "-ready")
	ready := make(chan struct{})
	var once sync.Once
	src := logsource.NewKmsg(logsource.KmsgOptions{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		var hit logparse.Hit
		err := src.Run(ctx, func(l logsource.Line) {
			if bytes.Contains(l.Text, marker) {
				once.Do(func() { close(ready) })
				return
			}
			if logparse.Parse(l.Text, &hit) != nil || !strings.HasPrefix(hit.Prefix, h.prefix) {
				return
			}
			var p Proto
			switch hit.Proto {
			case logparse.ProtoTCP:
				p = TCP
			case logparse.ProtoUDP:
				p = UDP
			default:
				return
			}
			res, err := m.Add(Hit{Src: hit.Src, Proto: p, SrcPort: hit.SrcPort, DstPort: hit.DstPort, Flags: hit.Flags, Time: l.Received})
			if err != nil || res.Outcome != Fired {
				return
			}
			err = ex.Fire(ctx, res.Door, res.Src)
			h.mu.Lock()
			h.fired = append(h.fired, res.Door.Name+" "+res.Src.String())
			if err != nil {
				h.errs = append(h.errs, err)
			}
			h.mu.Unlock()
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
}

func (h *doorHost) dial(addr netip.Addr, port int) error {
	return netnstest.Dial(h.n.Client.NS, "tcp", net.JoinHostPort(addr.String(), fmt.Sprint(port)), 500*time.Millisecond)
}

// waitFor polls (bounded) until dial's outcome is open. Its bound leaves
// room for a 4s cmd_timeout and a loaded machine.
func (h *doorHost) waitFor(what string, addr netip.Addr, port int, open bool) {
	h.t.Helper()
	deadline := time.Now().Add(8 * time.Second)
	for {
		err := h.dial(addr, port)
		if (err == nil) == open {
			return
		}
		if time.Now().After(deadline) {
			h.mu.Lock()
			defer h.mu.Unlock()
			h.t.Fatalf("%s: port %d for %s open=%v never happened (last dial: %v); fired %q, errors %v", what, port, addr, open, err, h.fired, h.errs)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// knock runs knockd's knock client in the client namespace.
func (h *doorHost) knock(args ...string) {
	h.t.Helper()
	out, err := netnstest.Exec(h.n.Client.NS, append([]string{"knock", "-v"}, args...)...)
	if err != nil {
		h.t.Fatalf("knock %v: %v\n%s", args, err, out)
	}
}

// grants waits (bounded) until the manager lists n grants: it publishes
// its list just after the firewall command returned, so the port can
// answer, or stop answering, a moment earlier.
func (h *doorHost) grants(n int) []grant.Info {
	for i := 0; ; i++ {
		g := h.mgr.List()
		if len(g) == n || i == 100 {
			return g
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// checkFired asserts that the doors fired in the order of want ("door
// src") and that no action failed.
func (h *doorHost) checkFired(want ...string) {
	h.t.Helper()
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.errs) > 0 {
		h.t.Errorf("door actions failed: %v", h.errs)
	}
	if strings.Join(h.fired, "|") != strings.Join(want, "|") {
		h.t.Errorf("fired %q, want %q", h.fired, want)
	}
}

// kernelSSHDoors are the open/close pair of the protected SSH port.
func kernelSSHDoors(t *testing.T) []*Door {
	return []*Door{
		mustDoor(t, Config{Name: "openSSH", Sequence: tcpKnocks, SequenceTimeout: "5s", TCPFlags: "syn,!ack",
			Open: &OpenConfig{Ports: []string{fmt.Sprint(sshPort)}}, CmdTimeout: "0s"}),
		mustDoor(t, Config{Name: "closeSSH", Sequence: "9000,8000,7000", SequenceTimeout: "5s", TCPFlags: "syn,!ack",
			Close: &OpenConfig{Ports: []string{fmt.Sprint(sshPort)}}}),
	}
}

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
	h := newDoorHost(t, "iptables")
	ns := h.n.Server
	srv4, srv6 := h.n.Client.ServerIP4, h.n.Client.ServerIP6
	cli4 := h.n.Client.IP4
	h.run(append(kernelSSHDoors(t),
		mustDoor(t, Config{Name: "udp", Sequence: "1111:udp,3333:udp,5555:udp", SequenceTimeout: "5s",
			Open: &OpenConfig{Ports: []string{fmt.Sprint(udpDoorPort)}}, CmdTimeout: "4s"}),
		mustDoor(t, Config{Name: "cmd", Sequence: cmdKnocks, SequenceTimeout: "5s", TCPFlags: "syn",
			StartCommand: fmt.Sprintf("%s netns exec %s %s -w -I INPUT -s %%IP%% -p tcp --dport %d -j ACCEPT", ipPath, ns, iptPath, cmdPort),
			StopCommand:  fmt.Sprintf("%s netns exec %s %s -w -D INPUT -s %%IP%% -p tcp --dport %d -j ACCEPT", ipPath, ns, iptPath, cmdPort),
			CmdTimeout:   "4s"}),
	)...)
	dial, waitFor, knock, grants, cmds := h.dial, h.waitFor, h.knock, h.grants, h.cmds

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
	h.checkFired("openSSH "+cli4.String(), "closeSSH "+cli4.String(), "udp "+cli4.String(), "openSSH "+h.n.Client.IP6.String(), "cmd "+cli4.String())
}

// TestKernelDoorBackends opens and closes a door through the nftables and
// the ipset backends, as TestKernelDoors does through iptables: knockd's
// knock client in the client namespace knocks the open door over IPv4 and
// then over IPv6 (each opening only its own address), and the close door
// closes each again.
func TestKernelDoorBackends(t *testing.T) {
	t.Parallel()
	for _, backend := range []string{"nftables", "ipset"} {
		t.Run(backend, func(t *testing.T) {
			t.Parallel()
			h := newDoorHost(t, backend)
			h.run(kernelSSHDoors(t)...)
			srv4, srv6 := h.n.Client.ServerIP4, h.n.Client.ServerIP6
			cli4, cli6 := h.n.Client.IP4, h.n.Client.IP6
			if h.dial(srv4, sshPort) == nil || h.dial(srv6, sshPort) == nil {
				t.Fatal("the protected port answers before any knock")
			}

			h.knock(srv4.String(), "7000", "8000", "9000")
			h.waitFor("after openSSH over IPv4", srv4, sshPort, true)
			if g := h.grants(1); len(g) != 1 || g[0].User != "door:openSSH" || g[0].Addr != cli4 || !g[0].Unlimited() {
				t.Fatalf("grants %+v", g)
			}
			if h.dial(srv6, sshPort) == nil {
				t.Fatal("an IPv4 knock opened the port for the IPv6 address too")
			}
			h.knock("-6", srv6.String(), "7000", "8000", "9000")
			h.waitFor("after openSSH over IPv6", srv6, sshPort, true)
			if g := h.grants(2); len(g) != 2 {
				t.Fatalf("grants after both knocks %+v", g)
			}

			h.knock(srv4.String(), "9000", "8000", "7000")
			h.waitFor("after closeSSH over IPv4", srv4, sshPort, false)
			if h.dial(srv6, sshPort) != nil {
				t.Fatal("closing the IPv4 opening closed the IPv6 one too")
			}
			h.knock("-6", srv6.String(), "9000", "8000", "7000")
			h.waitFor("after closeSSH over IPv6", srv6, sshPort, false)
			if g := h.grants(0); len(g) != 0 {
				t.Fatalf("grants after the close doors %+v", g)
			}
			h.checkFired("openSSH "+cli4.String(), "openSSH "+cli6.String(), "closeSSH "+cli4.String(), "closeSSH "+cli6.String())
		})
	}
}
