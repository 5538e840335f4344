package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/knockdaemon/knock/internal/netnstest"
	"github.com/knockdaemon/knock/internal/testbin"
)

// Ports of the protected services in the server namespace. The user's
// policy allows all of them; each test closes them with its firewall.
const (
	portA uint16 = 2222
	portB uint16 = 2223
	portC uint16 = 2224
)

// Timeouts of the probes. A connection to a dropped port never gets an
// answer, so "closed" means "no answer within closedProbe".
const (
	openProbe   = 300 * time.Millisecond
	closedProbe = 700 * time.Millisecond
	// openWithin is how soon after the client returns the port must
	// answer (the issue says within a second).
	openWithin = time.Second
)

// opts says how a test host is set up.
type opts struct {
	backend string // iptables (default), nftables, ipset
	udp     bool   // log UDP knocks too, and accept them
}

// world is one test host: a server namespace guarded by a firewall with
// LOG rules under a prefix of its own, client namespaces, keys, and the
// daemon's config.
type world struct {
	t      *testing.T
	net    *netnstest.Net
	opts   opts
	id     string
	prefix string // the LOG prefix, with its trailing space
	dir    string // world-readable work directory
	// key is the daemon's copy of the secret (root, 0600); clientKey is
	// the client's (nobody, 0600), made by knockclient keygen.
	key, clientKey string
	// clientHome is nobody's HOME for profile files.
	clientHome string
	nobody     struct{ uid, gid int }
}

// newWorld builds a test host. It needs root, the firewall tools and the
// binaries; under CI=true their absence fails the test.
func newWorld(t *testing.T, o opts) *world {
	t.Helper()
	if o.backend == "" {
		o.backend = "iptables"
	}
	tools := []string{"iptables", "ip6tables", "runuser", "knock"}
	switch o.backend {
	case "nftables":
		tools = append(tools, "nft")
	case "ipset":
		tools = append(tools, "ipset")
	}
	netnstest.Require(t, tools...)
	needBinaries(t)
	w := &world{t: t, opts: o, id: netnstest.RandHex(3)}
	w.prefix = "knk" + w.id + ": "
	w.net = netnstest.New(t)
	netnstest.EnableNFLogAllNetns(t)

	nob, err := user.Lookup("nobody")
	if err != nil {
		netnstest.Unavailable(t, "no user nobody: %v", err)
	}
	w.nobody.uid, _ = strconv.Atoi(nob.Uid)
	w.nobody.gid, _ = strconv.Atoi(nob.Gid)

	w.dir, err = os.MkdirTemp("", "knock-e2e-"+w.id+"-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(w.dir) })
	if err := os.Chmod(w.dir, 0o755); err != nil {
		t.Fatal(err)
	}
	w.clientHome = filepath.Join(w.dir, "home")
	if err := os.Mkdir(w.clientHome, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(w.clientHome, w.nobody.uid, w.nobody.gid); err != nil {
		t.Fatal(err)
	}

	w.firewall()
	for _, p := range []uint16{portA, portB, portC} {
		// One dual-stack listener per port answers IPv4 and IPv6.
		netnstest.Listen(t, w.net.Server, "tcp", fmt.Sprintf(":%d", p))
	}
	w.makeKeys()
	return w
}

// firewall installs the admin's rules in the server namespace: the very
// files of examples/, with the test's own LOG prefix and protected ports.
// Established traffic is accepted, knocks are logged and dropped, the
// protected ports dropped.
func (w *world) firewall() {
	t := w.t
	ns := w.net.Server
	protected := fmt.Sprintf("%d,%d,%d", portA, portB, portC)
	if w.opts.backend == "nftables" {
		text, err := os.ReadFile("../examples/nftables.conf")
		if err != nil {
			t.Fatal(err)
		}
		rules := string(text)
		for _, r := range [][2]string{
			{`"knock: "`, fmt.Sprintf("%q", w.prefix)},
			{"tcp dport { 22 } drop", fmt.Sprintf("tcp dport { %s } drop", protected)},
		} {
			if !strings.Contains(rules, r[0]) {
				t.Fatalf("examples/nftables.conf has no %s to adapt", r[0])
			}
			rules = strings.ReplaceAll(rules, r[0], r[1])
		}
		path := filepath.Join(w.dir, "nftables.conf")
		if err := os.WriteFile(path, []byte(rules), 0o644); err != nil {
			t.Fatal(err)
		}
		netnstest.MustExec(t, ns, "nft", "-f", path)
		return
	}
	udp := "0"
	if w.opts.udp {
		udp = "1"
	}
	netnstest.MustExec(t, ns, "env", "PREFIX="+w.prefix, "PROTECTED="+protected, "UDP="+udp,
		"sh", "../examples/iptables.sh")
}

// makeKeys has nobody make a key with knockclient keygen, as a user
// would, and gives the daemon a root-owned 0600 copy.
func (w *world) makeKeys() {
	t := w.t
	w.clientKey = filepath.Join(w.clientHome, "alice.key")
	if out, err := w.runAsNobody(context.Background(), "", bins.client, "keygen", w.clientKey); err != nil {
		t.Fatalf("knockclient keygen as nobody: %v\n%s", err, out)
	}
	st, err := os.Stat(w.clientKey)
	if err != nil {
		t.Fatalf("knockclient keygen made no key file: %v", err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("knockclient keygen made %s with mode %v, want 0600", w.clientKey, st.Mode().Perm())
	}
	secret, err := os.ReadFile(w.clientKey)
	if err != nil {
		t.Fatal(err)
	}
	w.key = filepath.Join(w.dir, "alice.key")
	if err := os.WriteFile(w.key, secret, 0o600); err != nil {
		t.Fatal(err)
	}
}

// otherKey writes a fresh random key that nobody can read, for the
// wrong-key case.
func (w *world) otherKey() string {
	var s [32]byte
	if _, err := rand.Read(s[:]); err != nil {
		w.t.Fatal(err)
	}
	path := filepath.Join(w.clientHome, "mallory.key")
	if err := os.WriteFile(path, []byte(base64.StdEncoding.EncodeToString(s[:])+"\n"), 0o600); err != nil {
		w.t.Fatal(err)
	}
	if err := os.Chown(path, w.nobody.uid, w.nobody.gid); err != nil {
		w.t.Fatal(err)
	}
	return path
}

// conf is what varies in the daemon's config between tests.
type conf struct {
	source     string // kmsg (default), file, stdin
	path       string // for file
	maxMinutes int
	// inServerNS: the daemon itself runs inside the server namespace,
	// so [backend] netns stays empty.
	inServerNS bool
}

// writeConfig writes the daemon's config in the schema of
// docs/ARCHITECTURE.md and returns its path.
func (w *world) writeConfig(c conf) string {
	if c.source == "" {
		c.source = "kmsg"
	}
	if c.maxMinutes == 0 {
		c.maxMinutes = 60
	}
	var b strings.Builder
	fmt.Fprintf(&b, `# knockdaemon config of e2e test %s
[daemon]
state_file = %q
control_socket = %q
close_on_exit = true
log_format = "json"
log_output = "stderr"
log_level = "debug"

[source]
type = %q
`, w.t.Name(), filepath.Join(w.dir, "state.json"), filepath.Join(w.dir, "control.sock"), c.source)
	if c.path != "" {
		fmt.Fprintf(&b, "path = %q\n", c.path)
	}
	fmt.Fprintf(&b, `prefix = %q

[knock]
base = 745
udp = %t
sequence_timeout = "10s"
max_skew = "60s"
lockout_failures = 3
lockout = "60s"

[backend]
type = %q
netns = %q
`, strings.TrimSpace(w.prefix), w.opts.udp, w.opts.backend, netnsOf(w, c))
	switch w.opts.backend {
	case "iptables":
		fmt.Fprintf(&b, "chain = %q\n", "KNOCK"+strings.ToUpper(w.id))
	case "ipset":
		fmt.Fprintf(&b, "chain = %q\nset = %q\n", "KNOCK"+strings.ToUpper(w.id), "knock"+w.id)
	case "nftables":
		fmt.Fprintf(&b, "table = \"inet filter\"\nnft_chain = \"input\"\nset = %q\n", "knock"+w.id)
	}
	fmt.Fprintf(&b, `
[[user]]
name = "alice"
key_file = %q
mode = "timed"
ports = ["%d-%d"]
protocol = "tcp"
max_minutes = %d
`, w.key, portA, portC, c.maxMinutes)
	path := filepath.Join(w.dir, "knockdaemon.toml")
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		w.t.Fatal(err)
	}
	return path
}

func netnsOf(w *world, c conf) string {
	if c.inServerNS {
		return ""
	}
	return w.net.Server
}

// writeProfile writes nobody's knockclient profile file
// ($XDG_CONFIG_HOME/knockclient/config.toml), owned by nobody.
func (w *world) writeProfile(text string) {
	w.t.Helper()
	dir := filepath.Join(w.clientHome, ".config", "knockclient")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		w.t.Fatal(err)
	}
	path := filepath.Join(dir, "config.toml")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		w.t.Fatal(err)
	}
	for _, p := range []string{filepath.Join(w.clientHome, ".config"), dir, path} {
		if err := os.Chown(p, w.nobody.uid, w.nobody.gid); err != nil {
			w.t.Fatal(err)
		}
	}
}

// runAsNobody runs argv as the user nobody, inside namespace ns when ns
// is not empty, with HOME set to the client's home.
func (w *world) runAsNobody(ctx context.Context, ns string, argv ...string) (string, error) {
	full := []string{"runuser", "-u", "nobody", "--", "env", "HOME=" + w.clientHome,
		"XDG_CONFIG_HOME=" + filepath.Join(w.clientHome, ".config")}
	full = append(full, argv...)
	if ns != "" {
		full = append([]string{"ip", "netns", "exec", ns}, full...)
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, full[0], full[1:]...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

// client runs knockclient as nobody in the peer's namespace.
func (w *world) client(p *netnstest.Peer, args ...string) (string, error) {
	return w.runAsNobody(context.Background(), p.NS, append([]string{bins.client}, args...)...)
}

// knock sends a knock for port with knockclient from peer p to the
// server's address dst and fails the test when the client fails.
func (w *world) knock(p *netnstest.Peer, dst netip.Addr, port uint16, minutes int, extra ...string) {
	w.t.Helper()
	w.knockWith(p, dst, w.clientKey, port, minutes, extra...)
}

// knockWith is knock with another key file.
func (w *world) knockWith(p *netnstest.Peer, dst netip.Addr, key string, port uint16, minutes int, extra ...string) {
	w.t.Helper()
	args := []string{"knock", dst.String(), "--key-file", key,
		"--port", strconv.Itoa(int(port)), "--time", strconv.Itoa(minutes)}
	args = append(args, extra...)
	if out, err := w.client(p, args...); err != nil {
		w.t.Fatalf("knockclient %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// sequence asks knockclient for the eight ports of a request at unix
// time at, without sending them.
func (w *world) sequence(p *netnstest.Peer, key string, port uint16, minutes int, at time.Time) []string {
	w.t.Helper()
	args := []string{"sequence", "--key-file", key, "--port", strconv.Itoa(int(port)),
		"--time", strconv.Itoa(minutes), "--at", strconv.FormatInt(at.Unix(), 10)}
	out, err := w.client(p, args...)
	if err != nil {
		w.t.Fatalf("knockclient %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	ports := strings.Fields(out)
	if len(ports) != 8 {
		w.t.Fatalf("knockclient sequence printed %q, want eight ports", out)
	}
	for _, s := range ports {
		n, err := strconv.Atoi(s)
		if err != nil || n < 745 || n > 1000 {
			w.t.Fatalf("knockclient sequence printed %q: %q is not a knock port", out, s)
		}
	}
	return ports
}

// knockdKnock sends ports with knockd's own knock client, as a replaying
// attacker or an old phone app would.
func (w *world) knockdKnock(p *netnstest.Peer, dst netip.Addr, ports []string, udp bool) {
	w.t.Helper()
	args := []string{"knock", "-d", "20"}
	if udp {
		args = append(args, "-u")
	}
	if dst.Is6() {
		args = append(args, "-6")
	}
	args = append(args, dst.String())
	args = append(args, ports...)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if out, err := w.runAsNobody(ctx, p.NS, args...); err != nil {
		w.t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

func hostPort(a netip.Addr, port uint16) string {
	return net.JoinHostPort(a.String(), strconv.Itoa(int(port)))
}

// canConnect makes one TCP connection attempt from p to dst:port.
func canConnect(p *netnstest.Peer, dst netip.Addr, port uint16, timeout time.Duration) bool {
	network := "tcp4"
	if dst.Is6() {
		network = "tcp6"
	}
	return netnstest.Dial(p.NS, network, hostPort(dst, port), timeout) == nil
}

// expectClosed asserts what a user sees at a hidden port: no answer.
func expectClosed(t *testing.T, p *netnstest.Peer, dst netip.Addr, port uint16, when string) {
	t.Helper()
	if canConnect(p, dst, port, closedProbe) {
		t.Errorf("%s: %s connected to %s, want no answer (port closed)", when, p.NS, hostPort(dst, port))
	}
}

// expectOpenWithin asserts that dst:port answers p within d and returns
// how long it took.
func expectOpenWithin(t *testing.T, p *netnstest.Peer, dst netip.Addr, port uint16, d time.Duration, when string) time.Duration {
	t.Helper()
	return expectWithin(t, p, dst, port, true, d, when)
}

// expectClosedWithin asserts that dst:port stops answering p within d.
func expectClosedWithin(t *testing.T, p *netnstest.Peer, dst netip.Addr, port uint16, d time.Duration, when string) time.Duration {
	t.Helper()
	return expectWithin(t, p, dst, port, false, d, when)
}

// expectWithin polls (bounded) until a connection from p to dst:port
// succeeds (open) or fails, fails the test if that does not happen within
// d, and returns how long it took. An open port is looked for every 25 ms,
// a closing one every 100 ms.
func expectWithin(t *testing.T, p *netnstest.Peer, dst netip.Addr, port uint16, open bool, d time.Duration, when string) time.Duration {
	t.Helper()
	poll := 100 * time.Millisecond
	if open {
		poll = 25 * time.Millisecond
	}
	start := time.Now()
	for i := 0; i < 200; i++ {
		if canConnect(p, dst, port, openProbe) == open {
			return time.Since(start)
		}
		if time.Since(start) > d {
			break
		}
		time.Sleep(poll)
	}
	if open {
		t.Errorf("%s: %s could not connect to %s within %v", when, p.NS, hostPort(dst, port), d)
	} else {
		t.Errorf("%s: %s still connects to %s after %v", when, p.NS, hostPort(dst, port), d)
	}
	return time.Since(start)
}

// daemonProc is a running knockdaemon with its log captured.
type daemonProc = testbin.Daemon

// startDaemon runs knockdaemon -c conf run extra... and waits until it
// follows its log (it logs event=started once the source is ready), so
// that the next knock cannot be missed. stdin, when not nil, is the
// daemon's standard input. Stopping it checks that it exits cleanly and
// without a data race.
func (w *world) startDaemon(conf string, stdin io.Reader, extra ...string) *daemonProc {
	w.t.Helper()
	return w.startDaemonWrapped(nil, conf, stdin, extra...)
}

// startDaemonWrapped is startDaemon with the daemon run through wrapper
// (for example ip netns exec NS setpriv ...).
func (w *world) startDaemonWrapped(wrapper []string, conf string, stdin io.Reader, extra ...string) *daemonProc {
	w.t.Helper()
	return testbin.StartDaemon(w.t, testbin.DaemonOptions{
		Program:      bins.daemon,
		Args:         append([]string{"-c", conf, "run"}, extra...),
		Wrapper:      wrapper,
		Stdin:        stdin,
		LogFile:      filepath.Join(w.dir, "daemon.log"),
		ReadyTimeout: 15 * time.Second,
		StopTimeout:  15 * time.Second,
		CleanExit:    true,
	})
}

// ctl runs a knockdaemon command (status, revoke, check, parse, ...)
// against the same config and returns its output.
func (w *world) ctl(conf string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bins.daemon, append([]string{"-c", conf}, args...)...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// kmsgTap reads the kernel log from the moment it was opened, as an
// eavesdropper with access to the log (or the wire) would.
type kmsgTap struct {
	f    *os.File
	msgs []string // every record's message since the tap was opened
}

func openTap(t *testing.T) *kmsgTap {
	t.Helper()
	fd, err := syscall.Open("/dev/kmsg", syscall.O_RDONLY|syscall.O_NONBLOCK|syscall.O_CLOEXEC, 0)
	if err != nil {
		netnstest.Unavailable(t, "cannot read /dev/kmsg: %v", err)
	}
	f := os.NewFile(uintptr(fd), "/dev/kmsg")
	if _, err := syscall.Seek(fd, 0, io.SeekEnd); err != nil {
		f.Close()
		t.Fatalf("seek /dev/kmsg: %v", err)
	}
	t.Cleanup(func() { f.Close() })
	return &kmsgTap{f: f}
}

// read takes in the records logged since the last read.
func (k *kmsgTap) read() {
	buf := make([]byte, 8192)
	for i := 0; i < 1_000_000; i++ {
		n, err := syscall.Read(int(k.f.Fd()), buf)
		if errors.Is(err, syscall.EPIPE) {
			continue // records were overwritten; read on
		}
		if err != nil || n <= 0 {
			return // EAGAIN: nothing more
		}
		rec := string(buf[:n])
		if semi := strings.IndexByte(rec, ';'); semi >= 0 {
			k.msgs = append(k.msgs, strings.TrimRight(rec[semi+1:], "\n"))
		}
	}
}

// knockPorts returns the destination ports of the hits logged under
// prefix from src since the tap was opened, in order, without
// retransmissions.
func (k *kmsgTap) knockPorts(prefix string, src netip.Addr) []string {
	k.read()
	var ports []string
	type key struct{ spt, dpt string }
	seen := map[key]bool{}
	for _, msg := range k.msgs {
		if !strings.HasPrefix(msg, prefix) {
			continue
		}
		// The kernel prints IPv6 addresses in full; compare the parsed
		// address instead of the text.
		f := fields(msg[len(prefix):])
		if a, err := netip.ParseAddr(f["SRC"]); err != nil || a != src {
			continue
		}
		kk := key{f["SPT"], f["DPT"]}
		if seen[kk] {
			continue
		}
		seen[kk] = true
		ports = append(ports, f["DPT"])
	}
	return ports
}

// fields splits a netfilter LOG line into its KEY=VALUE fields.
func fields(s string) map[string]string {
	m := map[string]string{}
	for _, tok := range strings.Fields(s) {
		if k, v, ok := strings.Cut(tok, "="); ok {
			m[k] = v
		}
	}
	return m
}
