package hardening

import (
	"bufio"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
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
	mark := p.mark()
	p.feed(captured...)
	p.mustWait(mark, 10*time.Second, map[string]string{"event": "opened", "addr": x.String()})

	replayed := func(p *proc, what string, lines []string, src netip.Addr) {
		t.Helper()
		mark := p.mark()
		p.feed(lines...)
		// The eight knocks also form candidates with the source's earlier
		// hits (rejected as check); the one of the captured block must be
		// rejected as a replay.
		if _, ok := p.wait(mark, 10*time.Second, map[string]string{"event": "rejected", "src": src.String(), "reason": "replay"}); !ok {
			t.Errorf("%s: no rejection as a replay; log:\n%s", what, p.tail(20))
		}
		if evs := p.events(mark, map[string]string{"event": "accepted"}); len(evs) > 0 {
			t.Errorf("%s: accepted: %v", what, evs)
		}
	}
	replayed(p, "identical lines", captured, x)
	replayed(p, "same knocks, same source", e.resend(captured, x, x), x)
	replayed(p, "same knocks, another source", e.resend(captured, x, y), y)

	p.stop()
	p = e.start(conf, nil)
	replayed(p, "after a restart, same source", e.resend(captured, x, x), x)
	replayed(p, "after a restart, another source", e.resend(captured, x, addr("198.18.10.3")), addr("198.18.10.3"))

	p.kill9()
	p = e.start(conf, nil)
	replayed(p, "after kill -9, another source", e.resend(captured, x, addr("198.18.10.4")), addr("198.18.10.4"))
	p.stop()

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
		mark := p.mark()
		p.feed(e.seqLinesKey(c.key, c.src, cipher.Request{Allow: c.allow, Port: 22, Time: 5})...)
		if c.reason != "" {
			ev := p.mustWait(mark, 10*time.Second, map[string]string{"event": "rejected", "src": c.src.String()})
			if ev.get("reason") != c.reason {
				t.Errorf("%s: rejected with %q, want %q", c.name, ev.get("reason"), c.reason)
			}
			continue
		}
		p.mustWait(mark, 10*time.Second, map[string]string{"event": "opened", "addr": c.allow.String()})
	}
	p.stop()
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

// TestBruteForceAndFlood sends random 8-knock candidates from millions of
// (spoofed) sources through the stdin source at full speed: each source
// knocks ten random ports, which makes three candidates and then a lockout.
// Halfway through, a legitimate knock is interleaved with the flood. The
// assertions: no random candidate is granted, every flood source is locked
// out, every candidate is decoded and rejected with a reason, the
// legitimate knock opens, and memory stays bounded.
func TestBruteForceAndFlood(t *testing.T) {
	e := newEnv(t)
	conf := e.config(cfg{logLevel: "warn"})
	p := e.start(conf, nil)

	want := bruteCandidates
	if s := os.Getenv("HARDENING_CANDIDATES"); s != "" {
		want, _ = strconv.Atoi(s)
	}
	const perSource = 10 // hits; candidates at hits 8, 9 and 10, then the lockout
	sources := (want + 2) / 3
	legit := addr("198.18.30.1")
	legitAt := sources / 2
	var legitLines []string

	rng := rand.New(rand.NewPCG(1, 2))
	w := bufio.NewWriterSize(p.stdin, 1<<20)
	start := time.Now()
	deadline := start.Add(3 * time.Minute)
	head := []byte(e.prefix + " IN=eth0 OUT= MAC=00:00:00:00:00:01:00:00:00:00:00:02:08:00 SRC=")
	var buf []byte
	var lines int
	sent := 0
	for s := 0; s < sources; s++ {
		if s == legitAt {
			legitLines = e.seqLines(legit, cipher.Request{Port: 22, Time: 1})
		}
		// Spread the legitimate knocks over the next 8 x 1000 sources.
		if legitLines != nil && s >= legitAt && (s-legitAt)%1000 == 0 && len(legitLines) > 0 {
			w.WriteString(legitLines[0] + "\n")
			legitLines = legitLines[1:]
			lines++
		}
		// Sources from 10.0.0.0/8 then 100.64.0.0/10: text only, no packet
		// is sent anywhere.
		ip := netip.AddrFrom4([4]byte{10 + byte(s>>24), byte(s >> 16), byte(s >> 8), byte(s)})
		for h := 0; h < perSource; h++ {
			buf = append(buf[:0], head...)
			buf = ip.AppendTo(buf)
			buf = append(buf, " DST=198.18.0.1 LEN=60 TOS=0x00 PREC=0x00 TTL=64 ID=1 DF PROTO=TCP SPT="...)
			buf = strconv.AppendInt(buf, int64(20000+h), 10)
			buf = append(buf, " DPT="...)
			buf = strconv.AppendInt(buf, int64(745+rng.IntN(256)), 10)
			buf = append(buf, " WINDOW=64240 RES=0x00 SYN URGP=0\n"...)
			if _, err := w.Write(buf); err != nil {
				t.Fatalf("write: %v", err)
			}
			lines++
		}
		sent += 3
		if s%4096 == 0 && time.Now().After(deadline) {
			t.Logf("stopping the flood at its time bound after %d sources", s)
			sources = s + 1
			break
		}
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	st := waitLines(t, conf, uint64(lines), 3*time.Minute)
	elapsed := time.Since(start)
	hwm := p.vmHWM()
	cpu := p.cpu()
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
	if c.Candidates != uint64(3*sources+1) {
		t.Errorf("%d candidates decoded, want %d (3 a source and the legitimate one)", c.Candidates, 3*sources+1)
	}
	if rejected != c.Candidates-c.Accepted {
		t.Errorf("%d rejections for %d candidates and %d accepted", rejected, c.Candidates, c.Accepted)
	}
	if c.Lockouts != uint64(sources) {
		t.Errorf("%d lockouts, want one for each of the %d flood sources", c.Lockouts, sources)
	}
	// The assembler is bounded at 65536 sources (~6 MB); the rest is the
	// runtime and buffers.
	if hwm > 200*1024 {
		t.Errorf("peak memory %d KiB over 200 MiB under a flood of %d sources", hwm, sources)
	}
	_ = sent
}
