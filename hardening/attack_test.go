package hardening

import (
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/knockdaemon/knock/cipher"
)

// seqLinesKey is seqLines with another key.
func (e *env) seqLinesKey(k cipher.Key, src netip.Addr, req cipher.Request) []string {
	e.t.Helper()
	ports, err := cipher.Encode(k, req, time.Now(), 745)
	if err != nil {
		e.t.Fatal(err)
	}
	var out []string
	for _, p := range ports {
		e.sport++
		out = append(out, e.hitLine(src, e.sport, p))
	}
	return out
}

// resend gives captured knock lines a new source address and new source
// ports, as an attacker who replays the destination ports would send them.
func (e *env) resend(lines []string, from, to netip.Addr) []string {
	var out []string
	for _, l := range lines {
		l = strings.Replace(l, "SRC="+from.String()+" ", "SRC="+to.String()+" ", 1)
		i := strings.Index(l, " SPT=")
		j := strings.Index(l[i+1:], " ")
		e.sport++
		out = append(out, l[:i]+" SPT="+strconv.Itoa(int(e.sport))+l[i+1+j:])
	}
	return out
}

// TestReplayNeverOpens captures an accepted knock and sends it again: the
// identical lines from the same source, the same knocks from the same and
// from another source, after a clean restart and after kill -9. Only the
// first is ever opened.
func TestReplayNeverOpens(t *testing.T) {
	e := newEnv(t)
	conf := e.config(cfg{knock: "lockout_failures = 10\n"})
	p := e.start(conf, nil)

	x, y := addr("198.18.10.1"), addr("198.18.10.2")
	captured := e.seqLines(x, cipher.Request{Port: 22, Time: 5})
	mark := p.Mark()
	p.Feed(captured...)
	p.WaitEvent(mark, 10*time.Second, map[string]string{"event": "opened", "addr": x.String()})

	replayed := func(p *proc, what string, lines []string, src netip.Addr) {
		t.Helper()
		mark := p.Mark()
		p.Feed(lines...)
		// The eight knocks also form candidates with the source's earlier
		// hits (rejected as check); the one of the captured block must be
		// rejected as a replay.
		if _, ok := p.FindEvent(mark, 10*time.Second, map[string]string{"event": "rejected", "src": src.String(), "reason": "replay"}); !ok {
			t.Errorf("%s: no rejection as a replay; log:\n%s", what, p.Tail(20))
		}
		if evs := p.Events(mark, map[string]string{"event": "accepted"}); len(evs) > 0 {
			t.Errorf("%s: accepted: %v", what, evs)
		}
	}
	replayed(p, "identical lines", captured, x)
	replayed(p, "same knocks, same source", e.resend(captured, x, x), x)
	replayed(p, "same knocks, another source", e.resend(captured, x, y), y)

	p.Stop()
	p = e.start(conf, nil)
	replayed(p, "after a restart, same source", e.resend(captured, x, x), x)
	replayed(p, "after a restart, another source", e.resend(captured, x, addr("198.18.10.3")), addr("198.18.10.3"))

	p.Kill9()
	p = e.start(conf, nil)
	replayed(p, "after kill -9, another source", e.resend(captured, x, addr("198.18.10.4")), addr("198.18.10.4"))
	p.Stop()

	if n := e.fwCount("open"); n != 1 {
		t.Errorf("%d openings, want 1 (the original knock only): %q", n, e.fwLog())
	}
}

// TestDelegationRefusedByDefault: a request to open for another address is
// refused for a key without delegate_to, and for a key with delegate_to
// outside its networks; inside them it is granted, for that address.
func TestDelegationRefusedByDefault(t *testing.T) {
	e := newEnv(t)
	_, bob := e.newKey("bob")
	conf := e.config(cfg{users: fmt.Sprintf(`
[[user]]
name = "bob"
key_file = %q
ports = ["22"]
max_minutes = 60
delegate_to = ["198.51.100.0/24"]
`, e.dir+"/bob.key")})
	p := e.start(conf, nil)

	cases := []struct {
		name   string
		key    cipher.Key
		src    netip.Addr
		allow  netip.Addr
		reason string // "" = opened for allow
	}{
		{"alice for another address", e.key, addr("198.18.20.1"), addr("198.51.100.9"), "policy_delegation"},
		{"alice for a neighbour", e.key, addr("198.18.20.2"), addr("198.18.20.3"), "policy_delegation"},
		{"bob outside delegate_to", bob, addr("198.18.20.4"), addr("203.0.113.9"), "policy_delegation"},
		{"alice for herself, explicitly", e.key, addr("198.18.20.5"), addr("198.18.20.5"), ""},
		{"bob inside delegate_to", bob, addr("198.18.20.6"), addr("198.51.100.9"), ""},
	}
	for _, c := range cases {
		mark := p.Mark()
		p.Feed(e.seqLinesKey(c.key, c.src, cipher.Request{Allow: c.allow, Port: 22, Time: 5})...)
		if c.reason != "" {
			ev := p.WaitEvent(mark, 10*time.Second, map[string]string{"event": "rejected", "src": c.src.String()})
			if ev.Get("reason") != c.reason {
				t.Errorf("%s: rejected with %q, want %q", c.name, ev.Get("reason"), c.reason)
			}
			continue
		}
		p.WaitEvent(mark, 10*time.Second, map[string]string{"event": "opened", "addr": c.allow.String()})
	}
	p.Stop()
	want := []string{"open_198.18.20.5_tcp_22_5", "open_198.51.100.9_tcp_22_5"}
	var opens []string
	for _, l := range e.fwLog() {
		if strings.HasPrefix(l, "open_") {
			opens = append(opens, l)
		}
	}
	if strings.Join(opens, " ") != strings.Join(want, " ") {
		t.Errorf("openings %q, want %q", opens, want)
	}
}

// bruteCandidates is how many random candidates TestBruteForceAndFlood
// sends (HARDENING_CANDIDATES overrides it).
const bruteCandidates = 10_000_000

// TestBruteForceAndFlood sends random 8-knock candidates from (spoofed)
// sources by the hundred thousand through the stdin source at full speed:
// each source knocks 24 random ports, which makes candidates until the
// lockout (3, or 17 when a failure counts once per eight new hits; a probe
// source measures which).
// Halfway through, a legitimate knock is interleaved with the flood. The
// assertions: no random candidate is granted, every flood source is locked
// out, every candidate is decoded and rejected with a reason, the
// legitimate knock opens, and memory stays bounded.
func TestBruteForceAndFlood(t *testing.T) {
	e := newEnv(t)
	conf := e.config(cfg{logLevel: "warn"})
	// The stream comes from floodgen (built without the race detector)
	// straight into the daemon's standard input.
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer pw.Close()
	p := e.startWith(conf, nil, pr)
	pr.Close()

	want := bruteCandidates
	if s := os.Getenv("HARDENING_CANDIDATES"); s != "" {
		want, _ = strconv.Atoi(s)
	}
	// Each source knocks perSource random ports. How many candidates that
	// makes before the lockout depends on the assembler's rule (a failure
	// per candidate, or per eight new hits); a probe source measures it.
	const perSource = 24
	// (A source of its own; floodgen also writes the first hit of its
	// legitimate knock.)
	pg := exec.Command(bins.flood, "-prefix", e.prefix, "-sources", "1", "-hits", strconv.Itoa(perSource), "-first", "16000000",
		"-key", e.keyPath, "-legit", "198.18.30.2")
	pg.Stdout = pw
	var pgErr strings.Builder
	pg.Stderr = &pgErr
	if err := pg.Run(); err != nil {
		t.Fatalf("floodgen probe: %v: %s", err, pgErr.String())
	}
	pst := waitLines(t, conf, perSource+1, time.Minute).Counters
	perCand := int(pst.Candidates)
	if pst.Lockouts != 1 || perCand < 3 {
		t.Fatalf("a source knocking %d random ports made %d candidates and %d lockouts, want >= 3 and 1", perSource, perCand, pst.Lockouts)
	}
	// The flood's sources knock just enough for their candidates and the
	// lockout: perCand + 7 hits.
	sources := (want + perCand - 1) / perCand
	legit := addr("198.18.30.1")
	gen := exec.Command(bins.flood, "-prefix", e.prefix, "-sources", strconv.Itoa(sources), "-hits", strconv.Itoa(perCand+7), "-key", e.keyPath,
		"-legit", legit.String(), "-deadline", "3m")
	gen.Stdout = pw
	var genErr strings.Builder
	gen.Stderr = &genErr
	start := time.Now()
	if err := gen.Run(); err != nil {
		t.Fatalf("floodgen: %v: %s", err, genErr.String())
	}
	var lines int
	if _, err := fmt.Sscanf(genErr.String(), "lines %d sources %d", &lines, &sources); err != nil {
		t.Fatalf("floodgen said %q: %v", genErr.String(), err)
	}
	st := waitLines(t, conf, uint64(lines+perSource+1), 3*time.Minute)
	elapsed := time.Since(start)
	hwm := vmHWM(p.Pid())
	cpu := cpuTime(p.Pid())
	c := st.Counters
	var rejected uint64
	var reasons []string
	for r, n := range c.Rejected {
		rejected += n
		if n > 0 {
			reasons = append(reasons, fmt.Sprintf("%s=%d", r, n))
		}
	}
	t.Logf("brute force: %d lines from %d sources in %v (%.0f lines/s, %.0f candidates/s); decode attempts (candidates) %d, accepted %d, rejected %d (%s), lockouts %d, sources tracked %d, VmHWM %d KiB, daemon CPU %v",
		lines, sources, elapsed.Round(time.Millisecond), float64(lines)/elapsed.Seconds(), float64(c.Candidates)/elapsed.Seconds(),
		c.Candidates, c.Accepted, rejected, strings.Join(reasons, " "), c.Lockouts, c.Sources, hwm, cpu)

	if c.Accepted != 1 || c.Opened != 1 {
		t.Errorf("accepted %d opened %d, want 1 and 1 (the legitimate knock only)", c.Accepted, c.Opened)
	}
	if got := e.fwLog(); len(got) != 1 || !strings.HasPrefix(got[0], "open_"+legit.String()+"_tcp_22_") {
		t.Errorf("firewall record %q, want the legitimate open only", got)
	}
	if want := uint64(perCand*(sources+1) + 1); c.Candidates != want {
		t.Errorf("%d candidates decoded, want %d (%d a source, the probe's and the legitimate one)", c.Candidates, want, perCand)
	}
	// Rejections carry a reason; "lockout" counts hits dropped while
	// their source was locked out, not candidates.
	if decided := rejected - c.Rejected["lockout"]; decided != c.Candidates-c.Accepted {
		t.Errorf("%d rejections for %d candidates and %d accepted", decided, c.Candidates, c.Accepted)
	}
	if c.Lockouts != uint64(sources+1) {
		t.Errorf("%d lockouts, want one for each of the %d flood sources and the probe", c.Lockouts, sources)
	}
	// The assembler is bounded at 65536 sources (~6 MB); the rest is the
	// runtime and buffers.
	if hwm > 200*1024 {
		t.Errorf("peak memory %d KiB over 200 MiB under a flood of %d sources", hwm, sources)
	}
}

// TestLockoutEngagesAndEnds: random knocks from an address (a guesser, or
// a forger spoofing a user's address) lock it out; while locked out, even
// the key holder's valid knock from that address is ignored (the known
// price of the lockout, docs/SECURITY.md); once the lockout ends the valid
// knock opens.
func TestLockoutEngagesAndEnds(t *testing.T) {
	e := newEnv(t)
	conf := e.config(cfg{knock: "lockout_failures = 3\nlockout = \"3s\"\n", user: "ports = [\"22-23\"]\nmax_minutes = 60\n"})
	p := e.start(conf, nil)
	v := addr("198.18.40.1")
	mark := p.Mark()
	locked := false
	for i := 0; i < 200 && !locked; i++ {
		e.sport++
		p.Feed(e.hitLine(v, e.sport, uint16(745+(i*97)%256)))
		if i%8 == 7 {
			_, locked = p.FindEvent(mark, 200*time.Millisecond, map[string]string{"event": "lockout", "src": v.String()})
		}
	}
	if !locked {
		t.Fatalf("200 random knocks from %v did not lock it out", v)
	}
	lockedAt := time.Now()
	p.Feed(e.seqLines(v, cipher.Request{Port: 22, Time: 1})...)
	time.Sleep(500 * time.Millisecond)
	if n := p.Count(map[string]string{"event": "accepted"}); n != 0 {
		t.Fatalf("a knock from %v was accepted while it was locked out", v)
	}
	time.Sleep(time.Until(lockedAt.Add(3500 * time.Millisecond)))
	mark = p.Mark()
	p.Feed(e.seqLines(v, cipher.Request{Port: 23, Time: 1})...)
	p.WaitEvent(mark, 10*time.Second, map[string]string{"event": "opened", "addr": v.String()})
	if e.fwCount("open") != 1 {
		t.Errorf("firewall record %q, want one opening after the lockout", e.fwLog())
	}
}
