// Package netnstest builds throw-away test hosts for real-kernel tests:
// network namespaces joined by veth pairs, with addresses from the
// benchmarking range 198.18.0.0/15 (RFC 2544) and fd00:6b6e::/32.
//
// Every namespace, link and process it creates is removed by t.Cleanup,
// also when the test fails. Names carry a random part, so tests in
// different packages can run at the same time. Under CI=true a test that
// cannot run (not root, no ip binary, no namespaces) fails instead of
// skipping: CI must never pass by skipping the real-kernel suite.
package netnstest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"
)

// InCI reports whether the tests run under CI (CI=true), where nothing that
// needs the real kernel may be skipped.
func InCI() bool { return os.Getenv("CI") == "true" }

// Unavailable skips the test with reason, or fails it under CI=true.
func Unavailable(t testing.TB, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if InCI() {
		t.Fatalf("cannot run under CI=true: %s", msg)
	}
	t.Skipf("skipping: %s (run as root; CI=true makes this a failure)", msg)
}

// Require checks that real-kernel tests can run here and that every
// binary in tools is on PATH.
func Require(t testing.TB, tools ...string) {
	t.Helper()
	if os.Geteuid() != 0 {
		Unavailable(t, "needs root for network namespaces")
	}
	for _, tool := range append([]string{"ip"}, tools...) {
		if _, err := exec.LookPath(tool); err != nil {
			Unavailable(t, "%s not installed", tool)
		}
	}
}

// RandHex returns n random bytes as hex, for unique names and prefixes.
func RandHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}

// Peer is one namespace on one end of a veth link to the server.
type Peer struct {
	NS        string
	IP4, IP6  netip.Addr // the peer's addresses
	Link      string     // the peer's interface name
	ServerIP4 netip.Addr // the server's addresses on this link
	ServerIP6 netip.Addr
	ServerIf  string // the server's interface name on this link
}

// Net is a server namespace and one or more client namespaces.
type Net struct {
	Server string // the server namespace
	// Client is the first client; more come from AddClient.
	Client *Peer
	id     string
	subnet byte
	mu     sync.Mutex
	peers  int
}

// New creates a server namespace and one client namespace linked to it.
// Loopback is up in both; IPv6 duplicate address detection is off, so
// addresses are usable at once.
func New(t testing.TB) *Net {
	t.Helper()
	Require(t)
	id := RandHex(3)
	n := &Net{Server: "kns" + id, id: id, subnet: byte(time.Now().UnixNano())}
	if err := addNS(n.Server); err != nil {
		Unavailable(t, "cannot create network namespace: %v", err)
	}
	t.Cleanup(func() { _ = run("ip", "netns", "del", n.Server) })
	n.Client = n.AddClient(t)
	return n
}

func addNS(name string) error {
	if err := run("ip", "netns", "add", name); err != nil {
		return err
	}
	if err := run("ip", "-n", name, "link", "set", "lo", "up"); err != nil {
		return err
	}
	return run("ip", "netns", "exec", name, "sysctl", "-q", "-w",
		"net.ipv6.conf.all.accept_dad=0", "net.ipv6.conf.default.accept_dad=0")
}

// AddClient creates another client namespace with its own veth link to the
// server and its own subnet.
func (n *Net) AddClient(t testing.TB) *Peer {
	t.Helper()
	n.mu.Lock()
	k := n.peers
	n.peers++
	n.mu.Unlock()
	ns := fmt.Sprintf("knc%s%d", n.id, k)
	if err := addNS(ns); err != nil {
		t.Fatalf("netnstest: %v", err)
	}
	t.Cleanup(func() { _ = run("ip", "netns", "del", ns) })
	p := &Peer{
		NS:        ns,
		Link:      fmt.Sprintf("kv%s%dc", n.id, k),
		ServerIf:  fmt.Sprintf("kv%s%ds", n.id, k),
		ServerIP4: netip.AddrFrom4([4]byte{198, 18 + byte(k&1), n.subnet, byte(4*(k/2) + 1)}),
		IP4:       netip.AddrFrom4([4]byte{198, 18 + byte(k&1), n.subnet, byte(4*(k/2) + 2)}),
		ServerIP6: netip.MustParseAddr(fmt.Sprintf("fd00:6b6e:%x:%x::1", n.subnet, k)),
		IP6:       netip.MustParseAddr(fmt.Sprintf("fd00:6b6e:%x:%x::2", n.subnet, k)),
	}
	steps := [][]string{
		{"ip", "link", "add", p.ServerIf, "netns", n.Server, "type", "veth", "peer", "name", p.Link, "netns", ns},
		{"ip", "-n", n.Server, "addr", "add", p.ServerIP4.String() + "/30", "dev", p.ServerIf},
		{"ip", "-n", ns, "addr", "add", p.IP4.String() + "/30", "dev", p.Link},
		{"ip", "-n", n.Server, "addr", "add", p.ServerIP6.String() + "/64", "dev", p.ServerIf, "nodad"},
		{"ip", "-n", ns, "addr", "add", p.IP6.String() + "/64", "dev", p.Link, "nodad"},
		{"ip", "-n", n.Server, "link", "set", p.ServerIf, "up"},
		{"ip", "-n", ns, "link", "set", p.Link, "up"},
	}
	for _, argv := range steps {
		if err := run(argv...); err != nil {
			t.Fatalf("netnstest: %v", err)
		}
	}
	// "ip link set up" returns before the veth pair has carrier; a packet
	// sent before then is dropped, and a test's first SYN would wait for
	// TCP's one-second retransmission. Wait until both ends are up.
	for _, end := range [][2]string{{n.Server, p.ServerIf}, {ns, p.Link}} {
		if err := waitOperUp(end[0], end[1], 5*time.Second); err != nil {
			t.Fatalf("netnstest: %v", err)
		}
	}
	return p
}

// waitOperUp polls the operational state of dev inside ns until it is UP.
func waitOperUp(ns, dev string, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		out, err := exec.Command("ip", "-n", ns, "-o", "link", "show", "dev", dev).CombinedOutput()
		if err == nil && strings.Contains(string(out), " state UP ") {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s in %s not up after %v: %s", dev, ns, limit, strings.TrimSpace(string(out)))
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Exec runs argv inside namespace ns and returns its combined output.
func Exec(ns string, argv ...string) (string, error) {
	full := append([]string{"ip", "netns", "exec", ns}, argv...)
	var out bytes.Buffer
	cmd := exec.Command(full[0], full[1:]...)
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if err != nil {
		err = fmt.Errorf("%s: %v: %s", strings.Join(full, " "), err, strings.TrimSpace(out.String()))
	}
	return out.String(), err
}

// MustExec is Exec that fails the test on error.
func MustExec(t testing.TB, ns string, argv ...string) string {
	t.Helper()
	out, err := Exec(ns, argv...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func run(argv ...string) error {
	out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %v: %s", strings.Join(argv, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// Listen opens a listener inside ns ("tcp"/"tcp6"/"udp" address as for
// net.Listen) that accepts and immediately closes TCP connections after
// writing "ok\n". It is closed at cleanup.
func Listen(t testing.TB, ns, network, addr string) net.Listener {
	t.Helper()
	var l net.Listener
	err := Do(ns, func() error {
		var err error
		l, err = net.Listen(network, addr)
		return err
	})
	if err != nil {
		t.Fatalf("netnstest: listen %s in %s: %v", addr, ns, err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			_, _ = c.Write([]byte("ok\n"))
			c.Close()
		}
	}()
	return l
}

// Dial makes one TCP connection attempt from inside ns and reports whether
// it was answered within timeout.
func Dial(ns, network, addr string, timeout time.Duration) error {
	var c net.Conn
	err := Do(ns, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		var d net.Dialer
		var err error
		c, err = d.DialContext(ctx, network, addr)
		return err
	})
	if err != nil {
		return err
	}
	return c.Close()
}

// EnableNFLogAllNetns makes kernel LOG lines from inside namespaces reach
// the host's kernel log, and restores the old value at cleanup.
func EnableNFLogAllNetns(t testing.TB) {
	t.Helper()
	const p = "/proc/sys/net/netfilter/nf_log_all_netns"
	old, err := os.ReadFile(p)
	if err != nil {
		// The file appears once nf_log_syslog is loaded.
		_ = run("modprobe", "nf_log_syslog")
		if old, err = os.ReadFile(p); err != nil {
			Unavailable(t, "no %s: %v", p, err)
		}
	}
	if err := os.WriteFile(p, []byte("1\n"), 0o644); err != nil {
		Unavailable(t, "cannot enable %s: %v", p, err)
	}
	// Leave it on when another test may still rely on it: restoring 0
	// under a concurrently running package would blind that package.
	_ = old
}
