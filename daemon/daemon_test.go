package daemon

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/knockdaemon/knock/cipher"
	"github.com/knockdaemon/knock/internal/clock"
)

const alice, bob = 0, 1

func TestAcceptOpens(t *testing.T) {
	h := newHarness(t, "", nil, nil)
	h.knock(h.keys[alice], "203.0.113.9", cipher.Request{Port: 22, Time: 10})
	h.wantOpen("203.0.113.9 tcp/22")
	if got := h.be.timeout("203.0.113.9 tcp/22"); got != 10*time.Minute {
		t.Errorf("timeout = %v, want 10m", got)
	}
	for _, ev := range []string{"event=accepted", "event=opened"} {
		if h.log.count(ev, "src=203.0.113.9", "user=alice", "port=22") != 1 {
			t.Errorf("no %s line with src, user and port:\n%s", ev, h.log)
		}
	}
	if st := h.d.Status(); st.Counters.Accepted != 1 || st.Counters.Candidates != 1 || st.Counters.Hits != 8 || len(st.Grants) != 1 {
		t.Errorf("status = %+v %+v", st.Counters, st.Grants)
	}
}

func TestSequenceAssembly(t *testing.T) {
	tests := []struct {
		name string
		run  func(h *harness)
		want []string
	}{
		{"interleaved sources", func(h *harness) {
			a := h.sequence(h.keys[alice], "203.0.113.9", cipher.Request{Port: 22, Time: 5})
			b := h.sequence(h.keys[alice], "203.0.113.10", cipher.Request{Port: 8001, Time: 5})
			for i := range a {
				h.feed(a[i])
				h.feed(b[i])
			}
		}, []string{"203.0.113.10 tcp/8001", "203.0.113.9 tcp/22"}},
		{"retransmitted syns", func(h *harness) {
			for _, l := range h.sequence(h.keys[alice], "203.0.113.9", cipher.Request{Port: 22, Time: 5}) {
				h.feed(l)
				h.feed(l)
				h.feed(l)
			}
		}, []string{"203.0.113.9 tcp/22"}},
		{"stray leading hits", func(h *harness) {
			h.feed(line("203.0.113.9", "TCP", 1, 800, "SYN"))
			h.feed(line("203.0.113.9", "TCP", 2, 900, "SYN"))
			h.knock(h.keys[alice], "203.0.113.9", cipher.Request{Port: 22, Time: 5})
		}, []string{"203.0.113.9 tcp/22"}},
		{"unrelated traffic between knocks", func(h *harness) {
			for _, l := range h.sequence(h.keys[alice], "203.0.113.9", cipher.Request{Port: 22, Time: 5}) {
				h.feed(l)
				h.feed(line("203.0.113.9", "TCP", 5555, 443, "SYN"))       // not a knock port
				h.feed(line("203.0.113.9", "TCP", 5556, 800, "ACK SYN"))   // SYN-ACK is no knock
				h.feed(line("203.0.113.9", "UDP", 5557, 800, ""))          // UDP off by default
				h.feed("Nov 21 06:00:00 host sshd[1]: Accepted publickey") // not firewall
			}
		}, []string{"203.0.113.9 tcp/22"}},
		{"wrong prefix is ignored", func(h *harness) {
			for _, l := range h.sequence(h.keys[alice], "203.0.113.9", cipher.Request{Port: 22, Time: 5}) {
				h.feed(replacePrefix(l, "other: "))
			}
		}, nil},
		{"sequence timeout splits a slow sequence", func(h *harness) {
			seq := h.sequence(h.keys[alice], "203.0.113.9", cipher.Request{Port: 22, Time: 5})
			for i, l := range seq {
				if i == 4 {
					h.clk.Advance(11 * time.Second)
				}
				h.feed(l)
			}
		}, nil},
		{"a second sequence after a timeout still works", func(h *harness) {
			seq := h.sequence(h.keys[alice], "203.0.113.9", cipher.Request{Port: 22, Time: 5})
			for _, l := range seq[:5] {
				h.feed(l)
			}
			h.clk.Advance(11 * time.Second)
			h.knock(h.keys[alice], "203.0.113.9", cipher.Request{Port: 22, Time: 5})
		}, []string{"203.0.113.9 tcp/22"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, "", nil, nil)
			tc.run(h)
			h.wantOpen(tc.want...)
		})
	}
}

func replacePrefix(l, prefix string) string {
	const p = "knock: "
	for i := 0; i+len(p) <= len(l); i++ {
		if l[i:i+len(p)] == p {
			return l[:i] + prefix + l[i+len(p):]
		}
	}
	return l
}

func TestPolicyRefusals(t *testing.T) {
	other := cipher.Key{Name: "mallory", Secret: [32]byte{9}, Mode: cipher.Timed}
	tests := []struct {
		name   string
		key    int // -1: an unknown key
		src    string
		req    cipher.Request
		reason string
	}{
		{"port not allowed", alice, "203.0.113.9", cipher.Request{Port: 23, Time: 5}, "policy_port"},
		{"minutes over max", alice, "203.0.113.9", cipher.Request{Port: 22, Time: 61}, "policy_time"},
		{"unlimited not allowed", alice, "203.0.113.9", cipher.Request{Port: 22, Time: 0}, "policy_time"},
		{"delegation not allowed", alice, "203.0.113.9", cipher.Request{Allow: addr("198.51.100.7"), Port: 22, Time: 5}, "policy_delegation"},
		{"delegation outside network", bob, "203.0.113.9", cipher.Request{Allow: addr("192.0.2.7"), Port: 443, Time: 5}, "policy_delegation"},
		{"source outside networks", bob, "192.0.2.50", cipher.Request{Port: 443, Time: 5}, "policy_source"},
		{"unknown key", -1, "203.0.113.9", cipher.Request{Port: 22, Time: 5}, "check"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, "", nil, nil)
			k := other
			if tc.key >= 0 {
				k = h.keys[tc.key]
			}
			h.knock(k, tc.src, tc.req)
			h.wantOpen()
			if h.log.count("event=rejected", "reason="+tc.reason, "src="+tc.src) != 1 {
				t.Errorf("no rejected line with reason=%s:\n%s", tc.reason, h.log)
			}
			if got := h.d.Status().Counters.Rejected[tc.reason]; got != 1 {
				t.Errorf("rejected[%s] = %d", tc.reason, got)
			}
		})
	}
}

func TestGrantLifecycle(t *testing.T) {
	t.Run("delegated open for another address", func(t *testing.T) {
		h := newHarness(t, "", nil, nil)
		h.knock(h.keys[bob], "203.0.113.9", cipher.Request{Allow: addr("198.51.100.7"), Port: 443, Time: 5})
		h.wantOpen("198.51.100.7 tcp/443", "198.51.100.7 udp/443")
	})
	t.Run("extend keeps one opening and moves expiry", func(t *testing.T) {
		h := newHarness(t, "", nil, nil)
		h.knock(h.keys[alice], "203.0.113.9", cipher.Request{Port: 22, Time: 5})
		h.clk.Advance(2 * time.Minute)
		h.knock(h.keys[alice], "203.0.113.9", cipher.Request{Port: 22, Time: 30})
		h.wantOpen("203.0.113.9 tcp/22")
		if h.log.count("event=extended", "port=22") != 1 {
			t.Errorf("no extended event:\n%s", h.log)
		}
		h.clk.Advance(29 * time.Minute)
		h.wantOpen("203.0.113.9 tcp/22")
		h.clk.Advance(time.Minute)
		h.wantOpen()
	})
	t.Run("expiry is exact", func(t *testing.T) {
		h := newHarness(t, "", nil, nil)
		h.knock(h.keys[alice], "203.0.113.9", cipher.Request{Port: 22, Time: 3})
		h.clk.Advance(3*time.Minute - time.Second)
		h.wantOpen("203.0.113.9 tcp/22")
		h.clk.Advance(time.Second)
		h.wantOpen()
		if h.log.count("event=closed", "reason=expired") != 1 {
			t.Errorf("no closed/expired event:\n%s", h.log)
		}
	})
	t.Run("time 255 closes", func(t *testing.T) {
		h := newHarness(t, "", nil, nil)
		h.knock(h.keys[alice], "203.0.113.9", cipher.Request{Port: 22, Time: 30})
		h.clk.Advance(time.Minute)
		h.knock(h.keys[alice], "203.0.113.9", cipher.Request{Port: 22, Time: 255})
		h.wantOpen()
		if h.log.count("event=closed", "reason=request", "src=203.0.113.9") != 1 {
			t.Errorf("no closed/request event:\n%s", h.log)
		}
	})
	t.Run("unlimited when allowed", func(t *testing.T) {
		h := newHarness(t, "", nil, nil)
		h.knock(h.keys[bob], "203.0.113.9", cipher.Request{Port: 443, Time: 0})
		h.wantOpen("203.0.113.9 tcp/443", "203.0.113.9 udp/443")
		if got := h.be.timeout("203.0.113.9 tcp/443"); got != 0 {
			t.Errorf("timeout = %v, want none", got)
		}
		h.clk.Advance(1000 * time.Hour)
		h.wantOpen("203.0.113.9 tcp/443", "203.0.113.9 udp/443")
	})
	t.Run("failed open is reported and leaves nothing", func(t *testing.T) {
		h := newHarness(t, "", nil, nil)
		h.be.failOpen = 1
		h.knock(h.keys[alice], "203.0.113.9", cipher.Request{Port: 22, Time: 5})
		h.wantOpen()
		if h.log.count("event=open_failed", "port=22") != 1 {
			t.Errorf("no open_failed event:\n%s", h.log)
		}
	})
	t.Run("failing close is retried until it succeeds", func(t *testing.T) {
		h := newHarness(t, "", nil, nil)
		h.knock(h.keys[alice], "203.0.113.9", cipher.Request{Port: 22, Time: 1})
		h.be.failClose = 4
		h.clk.Advance(time.Minute)
		h.wantOpen("203.0.113.9 tcp/22")
		for i := 0; i < 20 && len(h.be.openings()) > 0; i++ {
			h.clk.Advance(time.Minute)
		}
		h.wantOpen()
		if n := h.log.count("event=close_failed"); n != 4 {
			t.Errorf("%d close_failed events, want 4:\n%s", n, h.log)
		}
	})
}

func TestLockout(t *testing.T) {
	h := newHarness(t, "", nil, nil)
	bad := cipher.Key{Name: "x", Secret: [32]byte{7}, Mode: cipher.Timed}
	// Three complete wrong sequences in a row: the third locks out.
	for i := 0; i < 3; i++ {
		h.knock(bad, "203.0.113.9", cipher.Request{Port: 22, Time: uint8(5 + i)})
	}
	if h.log.count("event=lockout", "src=203.0.113.9") != 1 {
		t.Fatalf("no lockout event:\n%s", h.log)
	}
	h.knock(h.keys[alice], "203.0.113.9", cipher.Request{Port: 22, Time: 5})
	h.wantOpen()
	// Other sources are not affected.
	h.knock(h.keys[alice], "203.0.113.10", cipher.Request{Port: 22, Time: 5})
	h.wantOpen("203.0.113.10 tcp/22")
	h.clk.Advance(61 * time.Second)
	h.knock(h.keys[alice], "203.0.113.9", cipher.Request{Port: 22, Time: 5})
	h.wantOpen("203.0.113.10 tcp/22", "203.0.113.9 tcp/22")
	// 17 candidates failed (the hits stay after a failure, so every hit
	// from the 8th on formed one), but a failure counts towards the lockout
	// only once per 8 new hits: the 8th, 16th and 24th hits, the last of
	// each wrong sequence, so the third sequence locked. Only the 8 right
	// knocks during the lockout were dropped.
	st := h.d.Status()
	failed := uint64(0)
	for r, n := range st.Counters.Rejected {
		if r != "lockout" {
			failed += n
		}
	}
	if st.Counters.Lockouts != 1 || failed != 17 || st.Counters.Rejected["lockout"] != 8 {
		t.Errorf("lockouts = %d, rejected = %v", st.Counters.Lockouts, st.Counters.Rejected)
	}
}

func TestReplay(t *testing.T) {
	t.Run("same source", func(t *testing.T) {
		h := newHarness(t, "", nil, nil)
		seq := h.sequence(h.keys[alice], "203.0.113.9", cipher.Request{Port: 22, Time: 5})
		for _, l := range seq {
			h.feed(l)
		}
		h.knock(h.keys[alice], "203.0.113.9", cipher.Request{Port: 22, Time: 255})
		h.wantOpen()
		for _, l := range seq {
			h.feed(l)
		}
		h.wantOpen()
		if h.log.count("event=rejected", "reason=replay") != 1 {
			t.Errorf("no replay rejection:\n%s", h.log)
		}
	})
	t.Run("across a restart through the state file", func(t *testing.T) {
		dir, be, clk, seq := acceptThenCrash(t)
		// Still within the window's skew: without the saved replay
		// cache the sequence would decrypt again.
		clk.Advance(30 * time.Second)
		h2 := newHarness(t, dir, be, clk)
		h2.wantOpen("203.0.113.9 tcp/22")
		h2.knock(h2.keys[alice], "203.0.113.9", cipher.Request{Port: 22, Time: 255})
		h2.wantOpen()
		for _, l := range seq {
			h2.feed(l)
		}
		h2.wantOpen()
		if h2.log.count("event=rejected", "reason=replay", "src=203.0.113.9") != 1 {
			t.Errorf("no replay rejection after restart:\n%s", h2.log)
		}
	})
}

func TestRestartReconciles(t *testing.T) {
	dir := t.TempDir()
	clk := clock.NewFake(t0)
	be := newFakeBackend()
	h := newHarness(t, dir, be, clk)
	h.knock(h.keys[alice], "203.0.113.1", cipher.Request{Port: 22, Time: 2})
	h.knock(h.keys[alice], "203.0.113.2", cipher.Request{Port: 22, Time: 30})
	h.wantOpen("203.0.113.1 tcp/22", "203.0.113.2 tcp/22")
	h.d.grants.Stop() // crash
	// While it was down: the first grant expired, and someone left an
	// opening in the daemon's chain that no grant explains.
	clk.Advance(5 * time.Minute)
	_ = be.Open(context.Background(), rulesOpening("192.0.2.66", "tcp", 22))
	h2 := newHarness(t, dir, be, clk)
	h2.wantOpen("203.0.113.2 tcp/22")
	if h2.log.count("event=closed", "reason=restore") != 1 || h2.log.count("event=closed", "reason=reconcile") != 1 {
		t.Errorf("restore/reconcile events missing:\n%s", h2.log)
	}
	clk.Advance(25*time.Minute - time.Second)
	h2.wantOpen("203.0.113.2 tcp/22")
	clk.Advance(time.Second)
	h2.wantOpen()
}

func TestFloodIsBounded(t *testing.T) {
	h := newHarness(t, "", nil, nil)
	max := h.cfg.Knock.MaxSources
	n := max + 5000
	for i := 0; i < n; i++ {
		src := fmt.Sprintf("10.%d.%d.%d", (i>>16)&255, (i>>8)&255, i&255)
		h.feed(line(src, "TCP", 1000, uint16(745+i%256), "SYN"))
	}
	st := h.d.Status()
	if st.Counters.Sources > max {
		t.Errorf("tracking %d sources, more than max_sources %d", st.Counters.Sources, max)
	}
	if st.Counters.Hits != uint64(n) {
		t.Errorf("hits = %d, want %d", st.Counters.Hits, n)
	}
	// A real knock during the flood still works.
	h.knock(h.keys[alice], "203.0.113.9", cipher.Request{Port: 22, Time: 5})
	h.wantOpen("203.0.113.9 tcp/22")
}

func TestReloadKeepsGrants(t *testing.T) {
	h := newHarness(t, "", nil, nil)
	h.knock(h.keys[alice], "203.0.113.9", cipher.Request{Port: 22, Time: 30})
	h.wantOpen("203.0.113.9 tcp/22")

	// The new config drops alice and adds carol.
	c := loadTestConfig(t, h.dir, `
[[user]]
name = "carol"
key_file = "/unused"
ports = ["2222"]
`)
	c.Users = c.Users[1:]
	carol := cipher.Key{Name: "carol", Secret: [32]byte{42}, Mode: cipher.Timed}
	if err := h.d.Reload(c, []cipher.Key{h.keys[bob], carol}); err != nil {
		t.Fatal(err)
	}
	h.wantOpen("203.0.113.9 tcp/22")
	h.knock(carol, "203.0.113.10", cipher.Request{Port: 2222, Time: 5})
	h.wantOpen("203.0.113.10 tcp/2222", "203.0.113.9 tcp/22")
	h.knock(h.keys[alice], "203.0.113.11", cipher.Request{Port: 22, Time: 5})
	h.wantOpen("203.0.113.10 tcp/2222", "203.0.113.9 tcp/22")
	// The old grant still closes on time.
	h.clk.Advance(30 * time.Minute)
	h.wantOpen()

	t.Run("mismatched keys are refused and the old settings stay", func(t *testing.T) {
		if err := h.d.Reload(c, h.keys[:1]); err == nil {
			t.Fatal("accepted")
		}
		h.knock(carol, "203.0.113.12", cipher.Request{Port: 2222, Time: 5})
		h.wantOpen("203.0.113.12 tcp/2222")
	})
}

func TestIPv6Knock(t *testing.T) {
	h := newHarness(t, "", nil, nil)
	// The kernel prints IPv6 addresses uncompressed.
	h.knock(h.keys[alice], "2001:0db8:0000:0000:0000:0000:0000:0042", cipher.Request{Port: 22, Time: 5})
	h.wantOpen("2001:db8::42 tcp/22")
	if h.log.count("event=opened", "addr=2001:db8::42") != 1 {
		t.Errorf("no opened event for the IPv6 source:\n%s", h.log)
	}
}

func TestDoors(t *testing.T) {
	const doors = `
[[door]]
name     = "openSSH"
sequence = "7000,8000,9000"
tcp_flags = "syn,!ack"
open     = { ports = ["22"], proto = "tcp" }
cmd_timeout = "2m"
[[door]]
name     = "closeSSH"
sequence = "9000,8000,7000"
close    = { ports = ["22"] }
`
	h := newHarnessExtra(t, "", nil, nil, doors)
	for i, p := range []uint16{7000, 8000, 9000} {
		h.feed(line("198.51.100.20", "TCP", uint16(50000+i), p, "SYN"))
	}
	h.wantOpen("198.51.100.20 tcp/22")
	if h.log.count("event=accepted", "door=openSSH", "src=198.51.100.20") != 1 {
		t.Errorf("no accepted event for the door:\n%s", h.log)
	}
	// Encrypted knocks still work beside the doors.
	h.knock(h.keys[alice], "203.0.113.9", cipher.Request{Port: 22, Time: 5})
	h.wantOpen("198.51.100.20 tcp/22", "203.0.113.9 tcp/22")
	for i, p := range []uint16{9000, 8000, 7000} {
		h.feed(line("198.51.100.20", "TCP", uint16(51000+i), p, "SYN"))
	}
	h.wantOpen("203.0.113.9 tcp/22")

	// An open door closes on time, and its grant is persisted.
	for i, p := range []uint16{7000, 8000, 9000} {
		h.feed(line("198.51.100.21", "TCP", uint16(52000+i), p, "SYN"))
	}
	h.wantOpen("198.51.100.21 tcp/22", "203.0.113.9 tcp/22")
	st, err := LoadState(h.cfg.Daemon.StateFile)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, g := range st.Grants {
		found = found || (g.User == "door:openSSH" && g.Addr.String() == "198.51.100.21")
	}
	if !found {
		t.Errorf("door grant not in the state file: %+v", st.Grants)
	}
	if ds := h.d.Status().Doors; ds == nil || ds.Fired != 3 || ds.Hits != 9 {
		t.Errorf("door stats in status = %+v", ds)
	}
	h.clk.Advance(2 * time.Minute)
	h.wantOpen("203.0.113.9 tcp/22")
}

func TestFirewallNotices(t *testing.T) {
	h := newHarness(t, "", nil, nil)
	h.feed("Nov 21 06:00:00 fw kernel: ipfw: limit 100 reached on entry 500")
	if h.log.count("level=WARN", "logging limit") != 1 {
		t.Errorf("ipfw log limit notice not reported:\n%s", h.log)
	}
	h.feed(line("203.0.113.9", "TCP", 40000, 800, "SYN") + " SRC=198.51.100.1") // duplicated key: untrusted
	if st := h.d.Status(); st.Counters.Malformed != 1 || st.Counters.Hits != 0 {
		t.Errorf("counters = %+v", st.Counters)
	}
}

func TestRejectionLogsBounded(t *testing.T) {
	h := newHarness(t, "", nil, nil)
	bad := cipher.Key{Name: "x", Secret: [32]byte{7}, Mode: cipher.Timed}
	const sources = 300
	for i := 0; i < sources; i++ {
		h.knock(bad, fmt.Sprintf("10.0.%d.%d", i/256, i%256), cipher.Request{Port: 22, Time: 5})
	}
	logged := h.log.count("event=rejected")
	if logged != MaxRejectLogs {
		t.Errorf("%d rejection lines in one second, want the cap %d", logged, MaxRejectLogs)
	}
	h.d.reportSuppressed()
	if h.log.count("reason=flood", fmt.Sprintf("suppressed=%d", sources-MaxRejectLogs)) != 1 {
		t.Errorf("no summary of the suppressed lines:\n%s", h.log.String()[len(h.log.String())-500:])
	}
	failed := uint64(0)
	for _, n := range h.d.Status().Counters.Rejected {
		failed += n
	}
	if failed != sources {
		t.Errorf("counters say %d rejections, want %d", failed, sources)
	}
	// The next second logs again.
	h.clk.Advance(time.Second)
	h.knock(bad, "10.9.9.9", cipher.Request{Port: 22, Time: 5})
	if h.log.count("event=rejected", "src=10.9.9.9") != 1 {
		t.Error("rejections are not logged again in the next second")
	}
}
