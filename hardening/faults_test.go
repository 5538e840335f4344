package hardening

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/knockdaemon/knock/cipher"
	"github.com/knockdaemon/knock/internal/netnstest"
	"github.com/knockdaemon/knock/rules"
)

// faultRunner runs the backend's real commands (ip netns exec NS iptables
// ...) with legacy iptables and a private xtables lock file, and injects
// real faults: the firewall binary missing (exec of a path that does not
// exist) or a command that exits non-zero.
type faultRunner struct {
	lockfile string
	mu       sync.Mutex
	mode     string // "", "missing", "exit"
	injected int
}

func (f *faultRunner) set(mode string) {
	f.mu.Lock()
	f.mode = mode
	f.mu.Unlock()
}

func (f *faultRunner) Run(ctx context.Context, argv []string) ([]byte, error) {
	argv = slices.Clone(argv)
	// argv is ip netns exec NS TOOL ARGS...
	if len(argv) > 4 {
		switch argv[4] {
		case "iptables", "ip6tables":
			argv[4] += "-legacy"
		}
		f.mu.Lock()
		switch f.mode {
		case "missing":
			argv[4] = "/nonexistent/sbin/" + argv[4]
			f.injected++
		case "exit":
			argv = append(argv[:4:4], "sh", "-c", "echo 'iptables: injected failure' >&2; exit 4")
			f.injected++
		}
		f.mu.Unlock()
	}
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), "XTABLES_LOCKFILE="+f.lockfile)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		ce := &rules.CmdError{Argv: argv, ExitCode: -1, Stderr: strings.TrimSpace(stderr.String()), Err: err}
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			ce.ExitCode, ce.Err = ee.ExitCode(), nil
		}
		return stdout.Bytes(), ce
	}
	return stdout.Bytes(), nil
}

// kernelRules lists the ACCEPT rules for addr in chain (legacy iptables).
func kernelRules(t *testing.T, ns, chain string, a netip.Addr) []string {
	t.Helper()
	out := netnstest.MustExec(t, ns, "iptables-legacy", "-w", "-S", chain)
	var r []string
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, "-s "+a.String()+"/32") {
			r = append(r, l)
		}
	}
	return r
}

// TestFirewallFaultsOpenClose drives the daemon (fake clock) against real
// iptables in a namespace while the firewall fails: the binary is missing,
// a command exits non-zero, the xtables lock is held. Opens that fail are
// reported failed and leave nothing; a close that fails is retried with
// backoff until the firewall works again and then happens at the next
// retry; a held lock delays but does not lose an open or a close.
func TestFirewallFaultsOpenClose(t *testing.T) {
	netnstest.Require(t, "iptables-legacy", "flock")
	e := newEnv(t)
	n := netnstest.New(t)
	chain := "HK" + strings.ToUpper(e.id)
	fr := &faultRunner{lockfile: filepath.Join(e.dir, "xtables.lock")}
	be, err := rules.New(rules.Options{Type: "iptables", Netns: n.Server, Chain: chain, Runner: fr})
	if err != nil {
		t.Fatal(err)
	}
	conf := e.config(cfg{backend: "type = \"dry-run\"\n"}) // the backend is be
	ip := e.startInproc(conf, be)
	req := cipher.Request{Port: 22, Time: 1}

	// Opens while the firewall fails.
	for i, mode := range []string{"exit", "missing"} {
		src := netip.AddrFrom4([4]byte{198, 18, 50, byte(i + 1)})
		fr.set(mode)
		ip.clk.Advance(31 * time.Second) // a new window: a new block
		ip.knock(src, req)
		fr.set("")
		if ip.count(map[string]string{"event": "open_failed", "addr": src.String()}) == 0 {
			t.Errorf("%s: no open_failed event for %v", mode, src)
		}
		if ip.count(map[string]string{"event": "opened", "addr": src.String()}) != 0 {
			t.Errorf("%s: reported opened", mode)
		}
		if r := kernelRules(t, n.Server, chain, src); len(r) != 0 {
			t.Errorf("%s: failed open left rules %q", mode, r)
		}
	}
	// A failed open is undone by a close, retried like any other.
	ip.clk.Advance(8 * time.Second)
	if st := ip.d.Status(); st.Counters.OpenFailed != 2 || len(st.Grants) != 0 {
		t.Errorf("after two failed opens and a working firewall: open_failed %d, grants %+v; want 2 and none", st.Counters.OpenFailed, st.Grants)
	}

	// A working open, then its close fails: exit, missing, exit ... then
	// the firewall works again.
	good := addr("198.18.50.10")
	ip.clk.Advance(31 * time.Second)
	ip.knock(good, req)
	if r := kernelRules(t, n.Server, chain, good); len(r) != 1 {
		t.Fatalf("after a good knock: rules %q, want one", r)
	}
	expiry := ip.clk.Now().Add(time.Minute)
	ip.clk.Advance(30 * time.Second)
	fr.set("exit")
	ip.clk.Set(expiry.Add(time.Millisecond))
	for i, mode := range []string{"exit", "missing", "exit", "missing", "exit"} {
		fr.set(mode)
		ip.clk.Advance(8 * time.Second) // RetryMax: at least one retry each
		if r := kernelRules(t, n.Server, chain, good); len(r) != 1 {
			t.Fatalf("round %d (%s): the rule is gone while every close failed: %q", i, mode, r)
		}
	}
	failed := ip.count(map[string]string{"event": "close_failed", "addr": good.String()})
	if failed < 5 {
		t.Errorf("%d close_failed events for %v over 40 s of failures, want retries (>= 5)", failed, good)
	}
	st := ip.d.Status()
	if len(st.Grants) != 1 || st.Grants[0].State != "closing" || st.Grants[0].Attempts < 5 {
		t.Errorf("while closes fail, grants = %+v; want one closing grant with its attempts", st.Grants)
	}
	fr.set("")
	recovered := ip.clk.Now()
	ip.clk.Advance(8 * time.Second)
	if r := kernelRules(t, n.Server, chain, good); len(r) != 0 {
		t.Fatalf("8 s (RetryMax) after the firewall recovered the rule is still there: %q", r)
	}
	if ev := ip.log.events(map[string]string{"event": "closed", "addr": good.String()}); len(ev) != 1 {
		t.Errorf("closed events %v, want one", ev)
	}
	if st := ip.d.Status(); len(st.Grants) != 0 {
		t.Errorf("grants left after the close: %+v", st.Grants)
	}
	t.Logf("close of %v: expiry %s, firewall back at +%v, closed by +%v; %d close_failed events; %d faults injected",
		good, expiry.Format(time.TimeOnly), recovered.Sub(expiry).Round(time.Second), ip.clk.Now().Sub(expiry).Round(time.Second), failed, fr.injected)

	// A held xtables lock delays the open and the close; neither is lost.
	held := func(d time.Duration) {
		cmd := exec.Command("flock", fr.lockfile, "sleep", fmt.Sprint(d.Seconds()))
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
		for i := 0; i < 100; i++ { // until flock holds it
			if exec.Command("flock", "-n", fr.lockfile, "true").Run() != nil {
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
		t.Fatal("flock did not take the lock")
	}
	locked := addr("198.18.50.20")
	held(2 * time.Second)
	start := time.Now()
	ip.clk.Advance(31 * time.Second)
	ip.knock(locked, req)
	waited := time.Since(start)
	if r := kernelRules(t, n.Server, chain, locked); len(r) != 1 {
		t.Fatalf("open under a held lock: rules %q, want one", r)
	}
	if waited < time.Second {
		t.Errorf("open under a held lock took %v: the lock was not in the way", waited)
	}
	held(2 * time.Second)
	start = time.Now()
	ip.clk.Advance(61 * time.Second)
	if r := kernelRules(t, n.Server, chain, locked); len(r) != 0 {
		t.Fatalf("close under a held lock: rules %q left", r)
	}
	t.Logf("held xtables lock: open waited %v, close waited %v", waited.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
	if out := netnstest.MustExec(t, n.Server, "iptables-legacy", "-w", "-S", chain); strings.Count(out, "-A "+chain) != 0 {
		t.Errorf("openings left behind:\n%s", out)
	}
}

// TestExecFirewallFailsForAWhile runs the built daemon with an exec
// backend whose script exits non-zero while a flag file exists, in real
// time (one 1-minute grant): an open during the failure is reported
// open_failed and recorded nowhere; the close at expiry fails, is retried,
// and happens once the script works again.
func TestExecFirewallFailsForAWhile(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	// b asks for another port than a: the same request in the same 30 s
	// window is the same block, which the replay cache admits once even
	// when its open failed.
	conf := e.config(cfg{user: "ports = [\"22-23\"]\nmax_minutes = 60\n"})
	p := e.start(conf, nil)
	flag := func(op string, on bool) {
		f := filepath.Join(e.dir, "fail-"+op)
		if on {
			if err := os.WriteFile(f, nil, 0o644); err != nil {
				t.Fatal(err)
			}
		} else {
			os.Remove(f)
		}
	}

	a, b := addr("198.18.80.1"), addr("198.18.80.2")
	flag("open", true)
	flag("close", true) // the undo of the failed open fails too
	mark := p.Mark()
	p.Feed(e.seqLines(a, cipher.Request{Port: 22, Time: 1})...)
	p.WaitEvent(mark, 10*time.Second, map[string]string{"event": "open_failed", "addr": a.String()})
	flag("open", false)
	flag("close", false)
	p.Feed(e.seqLines(b, cipher.Request{Port: 23, Time: 1})...)
	ev := p.WaitEvent(mark, 10*time.Second, map[string]string{"event": "opened", "addr": b.String()})
	expires, err := time.Parse(time.RFC3339, ev.Get("expires"))
	if err != nil {
		t.Fatalf("opened event without an expiry: %v", ev)
	}
	if e.fwCount("open") != 1 {
		t.Fatalf("firewall record %q, want b's open only", e.fwLog())
	}

	// The close at expiry fails for about 5 s.
	time.Sleep(time.Until(expires.Add(-2 * time.Second)))
	flag("close", true)
	p.WaitEvent(mark, 10*time.Second, map[string]string{"event": "close_failed", "addr": b.String()})
	time.Sleep(4 * time.Second)
	flag("close", false)
	recovered := time.Now()
	p.WaitEvent(mark, 20*time.Second, map[string]string{"event": "closed", "addr": b.String()})
	closedAt := time.Now()
	failed := p.Count(map[string]string{"event": "close_failed", "addr": b.String()})
	t.Logf("close of %v: expiry %s, %d failed attempts, firewall back after %v, closed %v later",
		b, expires.Format(time.TimeOnly), failed, recovered.Sub(expires).Round(100*time.Millisecond), closedAt.Sub(recovered).Round(100*time.Millisecond))
	if failed < 2 {
		t.Errorf("%d close_failed events, want retries", failed)
	}
	// Backoff 1 s doubling: attempts at +0, +1, +3, +7 s after expiry.
	if closedAt.Sub(recovered) > 6*time.Second {
		t.Errorf("closed %v after the firewall recovered, want the next retry", closedAt.Sub(recovered))
	}
	if got := e.fwLog(); e.fwCount("close") < 1 || !strings.HasPrefix(got[len(got)-1], "close_"+b.String()) {
		t.Errorf("firewall record %q, want b closed last", got)
	}
	if st := status(t, conf); len(st.Grants) != 0 {
		t.Errorf("grants left: %+v", st.Grants)
	}
}
