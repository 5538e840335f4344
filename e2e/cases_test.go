package e2e

import (
	"encoding/base64"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/knockdaemon/knock/internal/netnstest"
)

// flow is what a user does and sees, the same through every source and
// backend: the port is closed; a knock opens it within a second for the
// knocker only; status shows the grant; --time 255 closes it again.
func flow(t *testing.T, w *world, d *daemonProc, conf string) {
	t.Helper()
	c := w.net.Client
	srv := c.ServerIP4
	src := c.IP4.String()

	expectClosed(t, c, srv, portA, "before knocking")

	m := d.Mark()
	w.knock(c, srv, portA, 10)
	took := expectOpenWithin(t, c, srv, portA, openWithin, "after knockclient knock --time 10")
	t.Logf("%s/%s: port open %v after knockclient returned", w.opts.backend, t.Name(), took.Round(time.Millisecond))
	d.WaitEvent(m, 5*time.Second, map[string]string{"event": "accepted", "src": src, "user": "alice", "port": "2222"})
	d.WaitEvent(m, 5*time.Second, map[string]string{"event": "opened", "addr": src, "port": "2222"})

	// The grant is for one port and one address.
	expectClosed(t, c, srv, portB, "a port that was not asked for")

	out, err := w.ctl(conf, "status")
	if err != nil {
		t.Errorf("knockdaemon status: %v\n%s", err, out)
	}
	if !strings.Contains(out, src) || !strings.Contains(out, "2222") {
		t.Errorf("knockdaemon status does not show the grant for %s port 2222:\n%s", src, out)
	}

	m = d.Mark()
	w.knock(c, srv, portA, 255)
	expectClosedWithin(t, c, srv, portA, 2*time.Second, "after knockclient knock --time 255")
	d.WaitEvent(m, 5*time.Second, map[string]string{"event": "closed", "addr": src, "port": "2222"})
	out, err = w.ctl(conf, "status")
	if err != nil {
		t.Errorf("knockdaemon status: %v\n%s", err, out)
	}
	if strings.Contains(out, src) {
		t.Errorf("knockdaemon status still shows %s after the close:\n%s", src, out)
	}
}

// Cases 1, 2 and 3 with the iptables backend and /dev/kmsg: closed before,
// open after the knock (for the knocker only), shown by status, closed by
// --time 255, and closed when the daemon stops.
func TestKnockOpensAndCloses(t *testing.T) {
	w := newWorld(t, opts{})
	conf := w.writeConfig(conf{})
	if out, err := w.ctl(conf, "check"); err != nil {
		t.Fatalf("knockdaemon check on a good config: %v\n%s", err, out)
	}
	d := w.startDaemon(conf, nil)
	flow(t, w, d, conf)

	// Another host on another link cannot ride on the knocker's grant.
	c := w.net.Client
	other := w.net.AddClient(t)
	// (Another request than the first: an identical one within the same
	// 30 s window is the same block, refused as a replay.)
	w.knock(c, c.ServerIP4, portA, 9)
	expectOpenWithin(t, c, c.ServerIP4, portA, openWithin, "second knock")
	expectClosed(t, other, other.ServerIP4, portA, "from a host that did not knock")

	// A profile, as in examples/knockclient.toml: knockclient knock lab
	// --wait-open knocks, waits until the port answers and says so;
	// --close through the same profile closes it.
	w.writeProfile(fmt.Sprintf(`[profile.lab]
host = %q
port = %d
time = 7
key_file = %q
wait_open = true
wait_timeout = "3s"
`, c.ServerIP4, portB, w.clientKey))
	expectClosed(t, c, c.ServerIP4, portB, "port B before the profile's knock")
	if out, err := w.client(c, "knock", "lab"); err != nil {
		t.Errorf("knockclient knock lab (profile, --wait-open): %v\n%s", err, out)
	}
	if !canConnect(c, c.ServerIP4, portB, openProbe) {
		t.Errorf("port B closed after knockclient knock lab returned (it waited for it to open)")
	}
	if out, err := w.client(c, "knock", "lab", "--close", "--wait-open=false"); err != nil {
		t.Errorf("knockclient knock lab --close: %v\n%s", err, out)
	}
	expectClosedWithin(t, c, c.ServerIP4, portB, 2*time.Second, "after knockclient knock lab --close")

	// knockdaemon revoke closes a grant from the server side.
	m := d.Mark()
	w.knock(c, c.ServerIP4, portC, 8)
	expectOpenWithin(t, c, c.ServerIP4, portC, openWithin, "port C after its knock")
	if out, err := w.ctl(conf, "revoke", c.IP4.String(), strconv.Itoa(int(portC))); err != nil {
		t.Errorf("knockdaemon revoke %s %d: %v\n%s", c.IP4, portC, err, out)
	}
	expectClosedWithin(t, c, c.ServerIP4, portC, 2*time.Second, "after knockdaemon revoke")
	d.WaitEvent(m, 5*time.Second, map[string]string{"event": "closed", "reason": "revoke", "addr": c.IP4.String()})
	// Port A's grant is untouched by the revoke of port C.
	if !canConnect(c, c.ServerIP4, portA, openProbe) {
		t.Errorf("revoking port C closed port A too")
	}

	// close_on_exit: SIGTERM closes what is open.
	d.Stop()
	expectClosed(t, c, c.ServerIP4, portA, "after the daemon stopped (close_on_exit)")

	// knockdaemon teardown removes the chain and the jump it made, and
	// nothing of the admin's rules.
	chain := "KNOCK" + strings.ToUpper(w.id)
	for _, ipt := range []string{"iptables", "ip6tables"} {
		if out := netnstest.MustExec(t, w.net.Server, ipt, "-w", "-S"); !strings.Contains(out, chain) {
			t.Errorf("%s -S shows no chain %s while the daemon's setup should have made it:\n%s", ipt, chain, out)
		}
	}
	if out, err := w.ctl(conf, "teardown"); err != nil {
		t.Errorf("knockdaemon teardown: %v\n%s", err, out)
	}
	for _, ipt := range []string{"iptables", "ip6tables"} {
		out := netnstest.MustExec(t, w.net.Server, ipt, "-w", "-S")
		if strings.Contains(out, chain) {
			t.Errorf("after knockdaemon teardown, %s -S still shows %s:\n%s", ipt, chain, out)
		}
		if !strings.Contains(out, w.prefix) {
			t.Errorf("knockdaemon teardown removed the admin's LOG rule from %s:\n%s", ipt, out)
		}
	}
}

// knockdaemon run --dry-run decides everything, prints the firewall
// commands it would run and changes nothing.
func TestDryRun(t *testing.T) {
	t.Parallel()
	w := newWorld(t, opts{})
	conf := w.writeConfig(conf{})
	d := w.startDaemon(conf, nil, "--dry-run")
	c := w.net.Client
	m := d.Mark()
	w.knock(c, c.ServerIP4, portA, 5)
	d.WaitEvent(m, 5*time.Second, map[string]string{"event": "accepted", "src": c.IP4.String()})
	line := d.WaitLine(m, 5*time.Second, "iptables command opening port 2222", func(l string) bool {
		return strings.Contains(l, "iptables") && strings.Contains(l, c.IP4.String()) &&
			strings.Contains(l, "2222") && strings.Contains(l, "ACCEPT") && !strings.HasPrefix(l, "{")
	})
	t.Logf("dry run printed: %s", line)
	expectClosed(t, c, c.ServerIP4, portA, "after a knock to a dry-running daemon")
	chain := "KNOCK" + strings.ToUpper(w.id)
	if out := netnstest.MustExec(t, w.net.Server, "iptables", "-w", "-S"); strings.Contains(out, chain) {
		t.Errorf("a dry run created chain %s:\n%s", chain, out)
	}
}

// Case 4: a one-minute opening closes by itself, on time.
func TestShortOpeningExpires(t *testing.T) {
	t.Parallel()
	w := newWorld(t, opts{})
	conf := w.writeConfig(conf{})
	d := w.startDaemon(conf, nil)
	c := w.net.Client
	m := d.Mark()
	knocked := time.Now()
	w.knock(c, c.ServerIP4, portA, 1)
	expectOpenWithin(t, c, c.ServerIP4, portA, openWithin, "after knock --time 1")
	d.WaitEvent(m, 5*time.Second, map[string]string{"event": "opened", "addr": c.IP4.String()})

	sleepUntil(knocked.Add(55 * time.Second))
	if !canConnect(c, c.ServerIP4, portA, openProbe) {
		t.Errorf("port closed %v after a one-minute knock, want open until 60s", time.Since(knocked).Round(time.Second))
	}
	sleepUntil(knocked.Add(60 * time.Second))
	expectClosedWithin(t, c, c.ServerIP4, portA, 4*time.Second, "one minute after knock --time 1")
	t.Logf("closed %v after the knock", time.Since(knocked).Round(100*time.Millisecond))
	d.WaitEvent(m, 5*time.Second, map[string]string{"event": "closed", "addr": c.IP4.String(), "port": "2222"})
}

func sleepUntil(at time.Time) {
	if d := time.Until(at); d > 0 {
		time.Sleep(d)
	}
}

// Case 5: a wrong key, a wrong clock and a replayed sequence open nothing,
// and the daemon says why.
func TestRejections(t *testing.T) {
	w := newWorld(t, opts{})
	conf := w.writeConfig(conf{})
	d := w.startDaemon(conf, nil)
	a := w.net.Client
	// One source per case: a source's failed candidates add up to a
	// lockout, and its hits stay for the next candidate.
	eve := w.net.AddClient(t)     // replays what she sniffed
	mallory := w.net.AddClient(t) // has the wrong key
	skewed := w.net.AddClient(t)  // has the right key and a wrong clock

	t.Run("wrong key", func(t *testing.T) {
		m := d.Mark()
		w.knockWith(mallory, mallory.ServerIP4, w.otherKey(), portA, 5)
		expectRefused(t, d, m, mallory)
		expectClosed(t, mallory, mallory.ServerIP4, portA, "after a knock with the wrong key")
	})

	t.Run("wrong clock", func(t *testing.T) {
		// A sequence made ten minutes ago (a client clock ten minutes
		// behind), sent with knockd's knock client.
		ports := w.sequence(skewed, w.clientKey, portA, 5, time.Now().Add(-10*time.Minute))
		m := d.Mark()
		w.knockdKnock(skewed, skewed.ServerIP4, ports, false)
		expectRefused(t, d, m, skewed)
		expectClosed(t, skewed, skewed.ServerIP4, portA, "after a knock from a clock 10 minutes off")
	})

	t.Run("replay", func(t *testing.T) {
		tap := openTap(t)
		m := d.Mark()
		before := time.Now()
		w.knock(a, a.ServerIP4, portA, 5)
		expectOpenWithin(t, a, a.ServerIP4, portA, openWithin, "after the genuine knock")
		d.WaitEvent(m, 5*time.Second, map[string]string{"event": "accepted", "src": a.IP4.String()})

		// What an eavesdropper saw: the eight knock ports, in order.
		var sniffed []string
		for i := 0; i < 20 && len(sniffed) < 8; i++ {
			if sniffed = tap.knockPorts(w.prefix, a.IP4); len(sniffed) < 8 {
				time.Sleep(50 * time.Millisecond)
			}
		}
		if len(sniffed) != 8 {
			t.Fatalf("sniffed %d knock ports from the kernel log (%v), want 8", len(sniffed), sniffed)
		}
		// knockclient sequence computes the same ports, when it is
		// asked for the same 30 s window.
		if now := time.Now(); now.Unix()/30 == before.Unix()/30 {
			if got := w.sequence(a, w.clientKey, portA, 5, now); strings.Join(got, " ") != strings.Join(sniffed, " ") {
				t.Errorf("knockclient sequence = %v, but the knock sent %v", got, sniffed)
			}
		}

		m = d.Mark()
		w.knockdKnock(eve, eve.ServerIP4, sniffed, false)
		d.WaitEvent(m, 5*time.Second, map[string]string{"event": "rejected", "src": eve.IP4.String(), "reason": "replay"})
		expectClosed(t, eve, eve.ServerIP4, portA, "after replaying a sniffed sequence from another host")

		m = d.Mark()
		w.knockdKnock(a, a.ServerIP4, sniffed, false)
		d.WaitEvent(m, 5*time.Second, map[string]string{"event": "rejected", "src": a.IP4.String(), "reason": "replay"})
		d.NoEvent(m, map[string]string{"event": "accepted"})
	})

	// One failure per source is not a lockout.
	d.NoEvent(0, map[string]string{"event": "lockout"})

	// No secret in any log line.
	secret, err := os.ReadFile(w.key)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(secret)))
	if err != nil {
		t.Fatal(err)
	}
	log := d.Text()
	for _, s := range []string{strings.TrimSpace(string(secret)), base64.RawStdEncoding.EncodeToString(raw), strings.ToLower(hexOf(raw))} {
		if strings.Contains(log, s) {
			t.Errorf("the daemon's log contains the secret key")
		}
	}
}

// rejectReasons are the reason= values of docs/ARCHITECTURE.md.
const rejectReasons = "check|port0|nokey|policy_port|policy_time|policy_delegation|policy_source|replay|lockout"

// expectRefused asserts that the daemon rejected p's knock after mark with
// a documented reason and accepted nothing from p. A block made with the
// wrong key (or for the wrong window) usually fails the check byte; in
// about 2% of cases (5 windows x 1/256) garbage passes the check and is
// then refused by policy, which is as good: what matters is that nothing
// opens and the log says why.
func expectRefused(t *testing.T, d *daemonProc, mark int, p *netnstest.Peer) {
	t.Helper()
	e := d.WaitEvent(mark, 5*time.Second, map[string]string{"event": "rejected", "src": p.IP4.String(), "reason": rejectReasons})
	if r := e.Get("reason"); r == "replay" || r == "lockout" {
		t.Errorf("a first knock from %s was rejected with reason=%s, want check (or a policy reason)", p.IP4, r)
	}
	d.NoEvent(mark, map[string]string{"event": "accepted", "src": p.IP4.String()})
	d.NoEvent(mark, map[string]string{"event": "opened", "addr": p.IP4.String()})
}

func hexOf(b []byte) string {
	const digits = "0123456789abcdef"
	out := make([]byte, 0, 2*len(b))
	for _, c := range b {
		out = append(out, digits[c>>4], digits[c&15])
	}
	return string(out)
}

// Case 6: an IPv6 knocker through ip6tables LOG and the ip6tables backend.
func TestIPv6(t *testing.T) {
	t.Parallel()
	w := newWorld(t, opts{})
	d := w.startDaemon(w.writeConfig(conf{}), nil)
	c := w.net.Client
	expectClosed(t, c, c.ServerIP6, portA, "IPv6, before knocking")
	m := d.Mark()
	w.knock(c, c.ServerIP6, portA, 5)
	took := expectOpenWithin(t, c, c.ServerIP6, portA, openWithin, "IPv6, after the knock")
	t.Logf("IPv6 port open %v after knockclient returned", took.Round(time.Millisecond))
	d.WaitEvent(m, 5*time.Second, map[string]string{"event": "opened", "addr": c.IP6.String(), "port": "2222"})
	// The grant is for the IPv6 address that knocked, not its IPv4 twin.
	expectClosed(t, c, c.ServerIP4, portA, "over IPv4 after an IPv6 knock")
	w.knock(c, c.ServerIP6, portA, 255)
	expectClosedWithin(t, c, c.ServerIP6, portA, 2*time.Second, "IPv6, after --time 255")
}

// Case 6: UDP knocks (knockclient --udp, a UDP LOG rule, [knock] udp).
func TestUDPKnocks(t *testing.T) {
	t.Parallel()
	w := newWorld(t, opts{udp: true})
	d := w.startDaemon(w.writeConfig(conf{}), nil)
	c := w.net.Client
	expectClosed(t, c, c.ServerIP4, portA, "before knocking")
	m := d.Mark()
	w.knock(c, c.ServerIP4, portA, 5, "--udp")
	expectOpenWithin(t, c, c.ServerIP4, portA, openWithin, "after UDP knocks")
	d.WaitEvent(m, 5*time.Second, map[string]string{"event": "opened", "addr": c.IP4.String(), "port": "2222"})
}

// Case 8: the nftables backend, in the admin's own table and chain.
func TestNftablesBackend(t *testing.T) {
	t.Parallel()
	w := newWorld(t, opts{backend: "nftables"})
	conf := w.writeConfig(conf{})
	flow(t, w, w.startDaemon(conf, nil), conf)
}

// Case 8: the ipset backend (kernel timeouts) with its iptables rule.
func TestIpsetBackend(t *testing.T) {
	t.Parallel()
	w := newWorld(t, opts{backend: "ipset"})
	conf := w.writeConfig(conf{})
	flow(t, w, w.startDaemon(conf, nil), conf)
}

// Case 10: kill -9 with grants open, then restart: the grant that expired
// while the daemon was dead closes at once, the live one on time.
func TestKill9Restart(t *testing.T) {
	t.Parallel()
	w := newWorld(t, opts{})
	conf := w.writeConfig(conf{})
	d := w.startDaemon(conf, nil)
	c := w.net.Client
	srv := c.ServerIP4

	knockA := time.Now()
	w.knock(c, srv, portA, 1)
	expectOpenWithin(t, c, srv, portA, openWithin, "port A after its knock")
	sleepUntil(knockA.Add(30 * time.Second))
	knockB := time.Now()
	w.knock(c, srv, portB, 1)
	expectOpenWithin(t, c, srv, portB, openWithin, "port B after its knock")
	// Let the state file catch up with the grant, as a crash a moment
	// later would.
	time.Sleep(500 * time.Millisecond)

	d.Kill9()
	// The firewall still holds both openings: nobody closed them.
	if !canConnect(c, srv, portA, openProbe) || !canConnect(c, srv, portB, openProbe) {
		t.Fatalf("an opening vanished with the daemon; the test needs a backend without kernel timeouts")
	}
	// Port A's minute passes while the daemon is dead.
	sleepUntil(knockA.Add(63 * time.Second))
	if !canConnect(c, srv, portA, openProbe) {
		t.Fatalf("port A closed without a daemon; cannot test the restart")
	}

	d2 := w.startDaemon(conf, nil)
	took := expectClosedWithin(t, c, srv, portA, 2*time.Second, "port A, expired while the daemon was down, after the restart")
	t.Logf("expired grant closed %v after the restart", took.Round(time.Millisecond))
	d2.WaitEvent(0, 5*time.Second, map[string]string{"event": "closed", "port": strconv.Itoa(int(portA))})
	if !canConnect(c, srv, portB, openProbe) {
		t.Errorf("port B closed at the restart, %v before its minute was over", time.Until(knockB.Add(time.Minute)).Round(time.Second))
	}
	sleepUntil(knockB.Add(56 * time.Second))
	if !canConnect(c, srv, portB, openProbe) {
		t.Errorf("port B closed %v after its one-minute knock, want open until 60s", time.Since(knockB).Round(time.Second))
	}
	sleepUntil(knockB.Add(60 * time.Second))
	expectClosedWithin(t, c, srv, portB, 4*time.Second, "port B, one minute after its knock, after the restart")
}

// The daemon needs no more than the systemd unit in examples/ grants:
// CAP_NET_ADMIN for the firewall and CAP_SYSLOG for /dev/kmsg, no
// CAP_NET_RAW. Here it runs inside the server namespace (so it needs no
// ip netns exec, which would take CAP_SYS_ADMIN) with only those two
// capabilities, and the whole flow works.
func TestMinimalPrivileges(t *testing.T) {
	t.Parallel()
	w := newWorld(t, opts{})
	netnstest.Require(t, "setpriv")
	conf := w.writeConfig(conf{inServerNS: true})
	caps := "-all,+net_admin,+syslog"
	d := w.startDaemonWrapped([]string{"ip", "netns", "exec", w.net.Server,
		"setpriv", "--bounding-set=" + caps, "--inh-caps=" + caps, "--ambient-caps=" + caps,
		"--no-new-privs", "--"}, conf, nil)

	// ip netns exec execs setpriv, which execs the daemon: same pid.
	status, err := os.ReadFile("/proc/" + strconv.Itoa(d.Pid()) + "/status")
	if err != nil {
		t.Fatal(err)
	}
	var eff uint64
	for _, line := range strings.Split(string(status), "\n") {
		if v, ok := strings.CutPrefix(line, "CapEff:"); ok {
			eff, err = strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			if err != nil {
				t.Fatal(err)
			}
		}
	}
	const capNetAdmin, capSyslog = 12, 34 // linux/capability.h
	if eff != 1<<capNetAdmin|1<<capSyslog {
		t.Fatalf("the daemon runs with capabilities %#x, want only CAP_NET_ADMIN and CAP_SYSLOG (%#x)", eff, uint64(1<<capNetAdmin|1<<capSyslog))
	}
	flow(t, w, d, conf)
}
