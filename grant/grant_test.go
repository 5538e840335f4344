package grant

import (
	"context"
	"errors"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/knockdaemon/knock/rules"
)

const (
	second = time.Second
	minute = time.Minute
)

func TestOpenAndExtend(t *testing.T) {
	type step struct {
		at      time.Duration
		minutes uint8
		want    Event
	}
	tests := []struct {
		name        string
		steps       []step
		wantExpires time.Duration // since t0; -1: unlimited
		wantTimeout []time.Duration
	}{
		{"new grant opens for its minutes",
			[]step{{0, 5, Opened}}, 5 * minute, []time.Duration{5 * minute}},
		{"longer knock extends to now plus minutes",
			[]step{{0, 5, Opened}, {1 * minute, 10, Extended}}, 11 * minute, []time.Duration{5 * minute, 10 * minute}},
		{"shorter knock keeps the later expiry",
			[]step{{0, 10, Opened}, {1 * minute, 2, Extended}}, 10 * minute, []time.Duration{10 * minute, 9 * minute}},
		{"timeout is the remaining time rounded up to a second",
			[]step{{0, 5, Opened}, {1500 * time.Millisecond, 1, Extended}}, 5 * minute, []time.Duration{5 * minute, 4*minute + 59*second}},
		{"unlimited knock makes a timed grant unlimited",
			[]step{{0, 5, Opened}, {1 * minute, 0, Extended}}, -1, []time.Duration{5 * minute, 0}},
		{"timed knock leaves an unlimited grant unlimited",
			[]step{{0, 0, Opened}, {1 * minute, 5, Extended}}, -1, []time.Duration{0, 0}},
		{"max minutes",
			[]step{{0, 254, Opened}}, 254 * minute, []time.Duration{254 * minute}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			var g Grant
			for _, s := range tc.steps {
				h.at(s.at)
				var ev Event
				ev, g = h.open(ssh, s.minutes)
				if ev != s.want {
					t.Fatalf("at %v Open(%d) = %s, want %s", s.at, s.minutes, ev, s.want)
				}
			}
			var timeouts []time.Duration
			for _, c := range h.backend.takeCalls() {
				if c.Op != "open" || c.Key != ssh {
					t.Fatalf("unexpected backend call %s", c)
				}
				timeouts = append(timeouts, c.Timeout)
			}
			if !slices.Equal(timeouts, tc.wantTimeout) {
				t.Fatalf("backend Open timeouts %v, want %v", timeouts, tc.wantTimeout)
			}
			if h.backend.count() != 1 {
				t.Fatalf("backend holds %d openings, want exactly 1", h.backend.count())
			}
			list := h.m.List()
			if len(list) != 1 || list[0].Grant != g {
				t.Fatalf("List = %+v, want the one grant %+v", list, g)
			}
			if g.Created != t0 || g.User != "alice" || g.State != StateOpen {
				t.Fatalf("grant %+v: want created at t0 by alice, open", g)
			}
			if tc.wantExpires < 0 {
				if !g.Unlimited() {
					t.Fatalf("expires %v, want unlimited", g.Expires)
				}
				if h.clock.Pending() != 0 {
					t.Fatalf("%d timers pending for an unlimited grant", h.clock.Pending())
				}
				h.at(1000 * time.Hour)
				if _, ok := h.backend.has(ssh); !ok || len(h.m.List()) != 1 {
					t.Fatal("unlimited grant closed by time")
				}
				return
			}
			if want := t0.Add(tc.wantExpires); !g.Expires.Equal(want) {
				t.Fatalf("expires %v, want %v", g.Expires, want)
			}
			if h.clock.Pending() != 1 {
				t.Fatalf("%d timers pending, want 1", h.clock.Pending())
			}
			h.at(tc.wantExpires)
			wantCalls(t, h.backend.takeCalls(), call{Op: "close", Key: ssh, At: tc.wantExpires})
			if len(h.m.List()) != 0 {
				t.Fatalf("grant still listed after expiry: %+v", h.m.List())
			}
		})
	}
}

func TestExpiryIsExactToTheSecond(t *testing.T) {
	h := newHarness(t)
	start := 400 * time.Millisecond // knocks do not arrive on whole seconds
	h.at(start)
	h.open(ssh, 1)
	exp := start + minute

	h.at(exp - second)
	if l := h.m.List(); len(l) != 1 || l[0].Remaining != second {
		t.Fatalf("one second before expiry List = %+v, want remaining 1s", l)
	}
	h.at(exp - 1)
	if _, ok := h.backend.has(ssh); !ok {
		t.Fatal("closed before its expiry")
	}
	if l := h.m.List(); len(l) != 1 || l[0].Remaining != second {
		t.Fatalf("1ns before expiry remaining = %v, want 1s (rounded up)", l[0].Remaining)
	}
	h.at(exp)
	if _, ok := h.backend.has(ssh); ok {
		t.Fatal("still open at its expiry")
	}
	wantCalls(t, h.backend.takeCalls(),
		call{Op: "open", Key: ssh, Timeout: minute, At: start},
		call{Op: "close", Key: ssh, At: exp})
	if ev := h.logs.events(); !slices.Equal(ev, []string{"closed/expired"}) {
		t.Fatalf("logged %v, want one closed/expired", ev)
	}
}

func TestCloseNow(t *testing.T) {
	h := newHarness(t)
	h.open(ssh, 5)
	h.open(https, 0)
	h.at(30 * second)
	ev, err := h.m.Close(context.Background(), ssh)
	if err != nil || ev != Closed {
		t.Fatalf("Close = %s, %v; want closed", ev, err)
	}
	ev, err = h.m.Close(context.Background(), https)
	if err != nil || ev != Closed {
		t.Fatalf("Close of the unlimited grant = %s, %v; want closed", ev, err)
	}
	if ev, err := h.m.Close(context.Background(), wg); ev != NotFound || err != nil {
		t.Fatalf("Close of an unknown key = %s, %v; want not_found", ev, err)
	}
	h.at(time.Hour)
	calls := h.backend.takeCalls()
	wantCalls(t, calls[2:],
		call{Op: "close", Key: ssh, At: 30 * second},
		call{Op: "close", Key: https, At: 30 * second})
	if len(h.m.List()) != 0 || h.backend.count() != 0 || h.clock.Pending() != 0 {
		t.Fatalf("after Close: list %v, %d openings, %d timers", h.m.List(), h.backend.count(), h.clock.Pending())
	}
}

func TestIPv4MappedAddressIsTheSameGrant(t *testing.T) {
	h := newHarness(t)
	h.open(Key{Addr: netip.MustParseAddr("::ffff:198.18.0.2"), Proto: "tcp", Port: 22}, 5)
	if ev, _ := h.open(ssh, 5); ev != Extended {
		t.Fatalf("Open of the unmapped address = %s, want extended", ev)
	}
	if h.backend.count() != 1 {
		t.Fatalf("%d openings, want 1", h.backend.count())
	}
	if _, ok := h.backend.has(ssh); !ok {
		t.Fatal("backend got the mapped address, want it unmapped")
	}
}

func TestOpenRefusesBadInput(t *testing.T) {
	tests := []struct {
		name    string
		k       Key
		minutes uint8
		want    string
	}{
		{"no address", Key{Proto: "tcp", Port: 22}, 5, "no address"},
		{"unspecified IPv4", key("0.0.0.0", "tcp", 22), 5, "unspecified"},
		{"unspecified IPv6", key("::", "tcp", 22), 5, "unspecified"},
		{"mapped unspecified", key("::ffff:0.0.0.0", "tcp", 22), 5, "unspecified"},
		{"multicast", key("224.0.0.1", "udp", 5353), 5, "multicast"},
		{"zone", key("fe80::1%eth0", "tcp", 22), 5, "zone"},
		{"protocol icmp", key("198.18.0.2", "icmp", 22), 5, "protocol"},
		{"empty protocol", key("198.18.0.2", "", 22), 5, "protocol"},
		{"port 0", key("198.18.0.2", "tcp", 0), 5, "port 0"},
		{"time 255 is a close, not an open", ssh, 255, "255 means close"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			ev, _, err := h.m.Open(context.Background(), tc.k, "alice", tc.minutes)
			if ev != OpenFailed || err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Open = %s, %v; want open_failed mentioning %q", ev, err, tc.want)
			}
			wantCalls(t, h.backend.takeCalls())
			if len(h.takeSnapshots()) != 0 {
				t.Fatal("refused Open persisted something")
			}
		})
	}
}

// A close that fails is retried at 1, 2, 4 ... 60 seconds until it
// succeeds; it stays visible and persisted as closing meanwhile.
func TestFailingCloseIsRetriedWithBackoff(t *testing.T) {
	h := newHarness(t)
	h.open(ssh, 1)
	h.backend.takeCalls()
	h.takeSnapshots()
	h.backend.setFailClose(ssh, 8)

	h.at(minute)
	l := h.m.List()
	if len(l) != 1 || l[0].State != StateClosing || l[0].Attempts != 1 || !l[0].NextRetry.Equal(t0.Add(minute+second)) ||
		!strings.Contains(l[0].LastError, "xtables lock busy") {
		t.Fatalf("after the first failed close List = %+v", l)
	}
	snaps := h.takeSnapshots()
	if len(snaps) != 1 || len(snaps[0]) != 1 || snaps[0][0].State != StateClosing {
		t.Fatalf("persisted %+v, want one snapshot with the grant closing", snaps)
	}

	h.at(time.Hour)
	var at []time.Duration
	for _, c := range h.backend.takeCalls() {
		if c.Op != "close" || c.Key != ssh {
			t.Fatalf("unexpected call %s", c)
		}
		at = append(at, c.At-minute)
	}
	want := []time.Duration{0, 1 * second, 3 * second, 7 * second, 15 * second, 31 * second, 63 * second, 123 * second, 183 * second}
	if !slices.Equal(at, want) {
		t.Fatalf("close attempts at expiry+%v, want +%v", at, want)
	}
	if len(h.m.List()) != 0 || h.backend.count() != 0 || h.clock.Pending() != 0 {
		t.Fatalf("after the successful retry: list %v, %d openings, %d timers", h.m.List(), h.backend.count(), h.clock.Pending())
	}
	if snaps := h.takeSnapshots(); len(snaps) != 1 || len(snaps[0]) != 0 {
		t.Fatalf("persisted %+v after the retry, want one empty snapshot", snaps)
	}
	ev := h.logs.events()
	if n := strings.Count(strings.Join(ev, " "), "close_failed"); n != 8 || ev[len(ev)-1] != "closed/retry" {
		t.Fatalf("logged %v, want 8 close_failed then closed/retry", ev)
	}
}

func TestCloseOfAPendingCloseTriesAtOnce(t *testing.T) {
	h := newHarness(t)
	h.open(ssh, 1)
	h.backend.setFailClose(ssh, 2)
	h.at(minute) // fails, retry due at 1m1s
	h.at(minute + 500*time.Millisecond)
	ev, err := h.m.Close(context.Background(), ssh) // fails again, retry due 2s later
	if ev != CloseFailed || err == nil || !strings.Contains(err.Error(), "retrying") {
		t.Fatalf("Close = %s, %v; want close_failed, retrying", ev, err)
	}
	h.at(minute + 2*second) // the old retry time: nothing happens
	h.at(minute + 2500*time.Millisecond)
	var at []time.Duration
	for _, c := range h.backend.takeCalls()[1:] {
		at = append(at, c.At)
	}
	want := []time.Duration{minute, minute + 500*time.Millisecond, minute + 2500*time.Millisecond}
	if !slices.Equal(at, want) {
		t.Fatalf("closes at %v, want %v", at, want)
	}
	if len(h.m.List()) != 0 {
		t.Fatalf("still listed: %+v", h.m.List())
	}
}

func TestFailingOpen(t *testing.T) {
	t.Run("reported and nothing left, half-applied rule removed", func(t *testing.T) {
		h := newHarness(t)
		h.backend.halfOpen = true
		h.backend.setFailOpen(ssh, 1)
		ev, g, err := h.m.Open(context.Background(), ssh, "alice", 5)
		if ev != OpenFailed || err == nil || g != (Grant{}) || !strings.Contains(err.Error(), "198.18.0.2 tcp/22") {
			t.Fatalf("Open = %s, %+v, %v; want open_failed naming the opening", ev, g, err)
		}
		wantCalls(t, h.backend.takeCalls(),
			call{Op: "open", Key: ssh, Timeout: 5 * minute},
			call{Op: "close", Key: ssh})
		if len(h.m.List()) != 0 || h.backend.count() != 0 || h.clock.Pending() != 0 {
			t.Fatalf("left behind: list %v, %d openings, %d timers", h.m.List(), h.backend.count(), h.clock.Pending())
		}
		if s := h.takeSnapshots(); len(s) != 0 {
			t.Fatalf("persisted %v for a grant that never was", s)
		}
	})
	t.Run("cleanup close fails: kept as closing and retried", func(t *testing.T) {
		h := newHarness(t)
		h.backend.halfOpen = true
		h.backend.setFailOpen(ssh, 1)
		h.backend.setFailClose(ssh, 1)
		if ev, _, err := h.m.Open(context.Background(), ssh, "alice", 5); ev != OpenFailed || err == nil {
			t.Fatalf("Open = %s, %v", ev, err)
		}
		l := h.m.List()
		if len(l) != 1 || l[0].State != StateClosing {
			t.Fatalf("List = %+v, want the opening pending close", l)
		}
		if s := h.takeSnapshots(); len(s) != 1 || len(s[0]) != 1 || s[0][0].State != StateClosing {
			t.Fatalf("persisted %+v, want the pending close", s)
		}
		h.at(second)
		if len(h.m.List()) != 0 || h.backend.count() != 0 {
			t.Fatalf("after the retry: list %v, %d openings", h.m.List(), h.backend.count())
		}
	})
	t.Run("failed extend leaves the grant as it was", func(t *testing.T) {
		h := newHarness(t)
		_, before := h.open(ssh, 5)
		h.backend.setFailOpen(ssh, 1)
		h.at(minute)
		ev, g, err := h.m.Open(context.Background(), ssh, "bob", 30)
		if ev != OpenFailed || err == nil || g != before {
			t.Fatalf("Open = %s, %+v, %v; want open_failed and the grant unchanged %+v", ev, g, err, before)
		}
		if l := h.m.List(); len(l) != 1 || l[0].Grant != before {
			t.Fatalf("List = %+v, want %+v", l, before)
		}
		if _, ok := h.backend.has(ssh); !ok {
			t.Fatal("the existing opening was removed by a failed extend")
		}
		h.at(5 * minute)
		if h.backend.count() != 0 {
			t.Fatal("not closed at the original expiry")
		}
	})
}

// A knock for an opening whose close is pending opens a fresh grant, and
// the stale retry does not close it.
func TestReopenWhileCloseIsPending(t *testing.T) {
	h := newHarness(t)
	h.open(ssh, 1)
	h.backend.setFailClose(ssh, 1)
	h.at(minute) // close fails, retry due at 1m1s
	h.at(minute + 500*time.Millisecond)
	ev, g := h.open(ssh, 2)
	if ev != Opened || g.State != StateOpen || !g.Expires.Equal(t0.Add(3*minute+500*time.Millisecond)) || !g.Created.Equal(t0.Add(minute+500*time.Millisecond)) {
		t.Fatalf("re-open = %s, %+v; want a fresh grant until 3m0.5s", ev, g)
	}
	if s := h.takeSnapshots(); s[len(s)-1][0].State != StateOpen {
		t.Fatalf("last snapshot %+v, want the grant open", s[len(s)-1])
	}
	h.at(3 * minute)
	if _, ok := h.backend.has(ssh); !ok {
		t.Fatal("the superseded retry closed the re-opened grant")
	}
	h.at(3*minute + 500*time.Millisecond)
	calls := h.backend.takeCalls()
	wantCalls(t, calls[1:],
		call{Op: "close", Key: ssh, At: minute},
		call{Op: "open", Key: ssh, Timeout: 2 * minute, At: minute + 500*time.Millisecond},
		call{Op: "close", Key: ssh, At: 3*minute + 500*time.Millisecond})
	if len(h.m.List()) != 0 || h.backend.count() != 0 || h.clock.Pending() != 0 {
		t.Fatalf("left behind: list %v, %d openings, %d timers", h.m.List(), h.backend.count(), h.clock.Pending())
	}
}

func TestPersistOnEveryChange(t *testing.T) {
	h := newHarness(t)
	open := func(exp time.Duration) Grant {
		g := Grant{Addr: ssh.Addr, Proto: "tcp", Port: 22, User: "alice", Created: t0, State: StateOpen}
		if exp > 0 {
			g.Expires = t0.Add(exp)
		}
		return g
	}
	closing := open(10 * minute)
	closing.State = StateClosing

	h.open(ssh, 5)
	h.at(5 * second)
	h.open(ssh, 10) // extended to 10m5s
	h.m.Close(context.Background(), ssh)
	got := h.takeSnapshots()
	ext := open(10*minute + 5*second)
	closing.Expires = ext.Expires
	want := [][]Grant{{open(5 * minute)}, {ext}, {closing}, {}}
	if len(got) != len(want) {
		t.Fatalf("persisted %d snapshots %+v, want %d", len(got), got, len(want))
	}
	for i := range want {
		if !slices.Equal(got[i], want[i]) {
			t.Fatalf("snapshot %d = %+v, want %+v", i, got[i], want[i])
		}
	}

	t.Run("snapshot is sorted and complete", func(t *testing.T) {
		h := newHarness(t)
		h.open(wg, 5)
		h.open(https, 5)
		h.open(ssh, 5)
		s := h.takeSnapshots()
		last := s[len(s)-1]
		var keys []Key
		for _, g := range last {
			keys = append(keys, g.Key())
		}
		if !slices.Equal(keys, []Key{ssh, https, wg}) {
			t.Fatalf("snapshot keys %v, want sorted ssh, https, wg", keys)
		}
	})
	t.Run("persist failure does not stop the manager", func(t *testing.T) {
		h := newHarness(t)
		h.persistErr = errors.New("write /var/lib/knockdaemon/state.json: no space left on device")
		if ev, _ := h.open(ssh, 1); ev != Opened {
			t.Fatalf("Open = %s with a failing persist, want opened", ev)
		}
		h.at(minute)
		if h.backend.count() != 0 || len(h.m.List()) != 0 {
			t.Fatal("grant not closed on time from memory")
		}
		if !strings.Contains(h.logs.b.String(), "no space left on device") {
			t.Fatalf("persist failure not logged: %s", h.logs.b.String())
		}
	})
}

func TestRestore(t *testing.T) {
	h := newHarness(t)
	h.at(10 * minute) // the daemon starts at t0+10m
	mk := func(k Key, exp time.Duration, st State) Grant {
		g := Grant{Addr: k.Addr, Proto: k.Proto, Port: k.Port, User: "alice", Created: t0, State: st}
		if exp >= 0 {
			g.Expires = t0.Add(exp)
		}
		return g
	}
	expired := key("198.18.0.10", "tcp", 22)
	pending := key("198.18.0.11", "tcp", 22)
	live := key("198.18.0.12", "tcp", 22)
	unlimited := key("198.18.0.13", "udp", 1194)
	orphan := key("198.18.0.14", "tcp", 22)
	stubborn := key("198.18.0.15", "tcp", 22)
	grants := []Grant{
		mk(expired, 9*minute, StateOpen),
		mk(pending, 20*minute, StateClosing),
		mk(live, 12*minute+300*time.Millisecond, StateOpen),
		mk(unlimited, -1, StateOpen),
		mk(live, 30*minute, StateOpen),                     // duplicate
		{Proto: "tcp", Port: 22, State: StateOpen},         // no address
		mk(key("198.18.0.16", "tcp", 23), 30*minute, "up"), // unknown state
	}
	// The firewall still has the expired grant's rule and two orphans.
	h.backend.openings[expired] = opening(expired)
	h.backend.openings[orphan] = opening(orphan)
	h.backend.openings[stubborn] = opening(stubborn)
	h.backend.setFailClose(stubborn, 1)

	err := h.m.Restore(context.Background(), grants)
	if err == nil || !strings.Contains(err.Error(), "skipped 3") || !strings.Contains(err.Error(), "duplicate") ||
		!strings.Contains(err.Error(), `unknown state "up"`) {
		t.Fatalf("Restore error = %v, want the 3 bad entries named", err)
	}
	at := 10 * minute
	wantCalls(t, h.backend.takeCalls(),
		call{Op: "close", Key: expired, At: at},
		call{Op: "close", Key: pending, At: at},
		call{Op: "open", Key: live, Timeout: 2*minute + second, At: at}, // 2m0.3s rounded up
		call{Op: "open", Key: unlimited, At: at},
		call{Op: "list", At: at},
		call{Op: "close", Key: orphan, At: at},
		call{Op: "close", Key: stubborn, At: at})
	var keys []Key
	for _, g := range h.m.List() {
		keys = append(keys, g.Key())
	}
	if !slices.Equal(keys, []Key{live, unlimited, stubborn}) {
		t.Fatalf("after Restore grants %v, want live, unlimited and the orphan whose close failed", keys)
	}
	snaps := h.takeSnapshots()
	if len(snaps) != 1 || len(snaps[0]) != 3 || snaps[0][2].State != StateClosing || snaps[0][2].User != "" {
		t.Fatalf("persisted %+v, want one snapshot of the 3 grants, the orphan closing", snaps)
	}

	h.at(12*minute + 300*time.Millisecond - 1)
	if _, ok := h.backend.has(live); !ok {
		t.Fatal("restored grant closed early")
	}
	h.at(12*minute + 300*time.Millisecond)
	wantCalls(t, h.backend.takeCalls(),
		call{Op: "close", Key: stubborn, At: 10*minute + second},
		call{Op: "close", Key: live, At: 12*minute + 300*time.Millisecond})
	if keys := h.backend.count(); keys != 1 {
		t.Fatalf("backend has %d openings, want only the unlimited one", keys)
	}
	ev := strings.Join(h.logs.events(), " ")
	for _, want := range []string{"closed/restore", "closed/reconcile", "close_failed", "closed/retry", "closed/expired"} {
		if !strings.Contains(ev, want) {
			t.Fatalf("logged %s, want %s among them", ev, want)
		}
	}
}

func opening(k Key) rules.Opening { return rules.Opening{Addr: k.Addr, Proto: k.Proto, Port: k.Port} }

func TestRestoreToleratesListErrorsAndReapplyFailures(t *testing.T) {
	h := newHarness(t)
	live := Grant{Addr: ssh.Addr, Proto: "tcp", Port: 22, User: "alice", Created: t0, Expires: t0.Add(5 * minute), State: StateOpen}
	h.backend.listErr = errors.New("exec backend: listing not supported")
	h.backend.setFailOpen(ssh, 1)
	if err := h.m.Restore(context.Background(), []Grant{live}); err != nil {
		t.Fatal(err)
	}
	if l := h.m.List(); len(l) != 1 || l[0].Grant != live {
		t.Fatalf("List = %+v, want the restored grant kept although re-applying it failed", l)
	}
	logs := h.logs.b.String()
	if !strings.Contains(logs, "listing not supported") || !strings.Contains(logs, `"event":"open_failed"`) {
		t.Fatalf("logs %s: want the List error and the open_failed", logs)
	}
	h.at(5 * minute)
	calls := h.backend.takeCalls()
	if last := calls[len(calls)-1]; last != (call{Op: "close", Key: ssh, At: 5 * minute}) {
		t.Fatalf("last call %s, want the close at 5m", last)
	}
}

func TestCloseAll(t *testing.T) {
	h := newHarness(t)
	h.open(ssh, 5)
	h.open(https, 0)
	h.open(wg, 10)
	h.backend.setFailClose(https, 1)
	h.takeSnapshots()
	h.at(second)
	err := h.m.CloseAll(context.Background())
	if err == nil || !strings.Contains(err.Error(), "1 of 3") || !strings.Contains(err.Error(), "198.18.0.3 tcp/443") {
		t.Fatalf("CloseAll = %v, want 1 of 3 failed naming https", err)
	}
	snaps := h.takeSnapshots()
	if len(snaps) != 2 || len(snaps[0]) != 3 || len(snaps[1]) != 1 {
		t.Fatalf("persisted %+v, want all closing, then the one left", snaps)
	}
	for _, g := range snaps[0] {
		if g.State != StateClosing {
			t.Fatalf("write-ahead snapshot has %+v not closing", g)
		}
	}
	if l := h.m.List(); len(l) != 1 || l[0].Key() != https || l[0].State != StateClosing {
		t.Fatalf("List = %+v, want https closing", l)
	}
	h.at(2 * second)
	if h.backend.count() != 0 || len(h.m.List()) != 0 {
		t.Fatal("the failed close was not retried")
	}
	if err := h.m.CloseAll(context.Background()); err != nil {
		t.Fatalf("CloseAll with nothing open = %v", err)
	}
}

func TestStop(t *testing.T) {
	h := newHarness(t)
	h.open(ssh, 1)
	h.open(https, 1)
	h.backend.setFailClose(https, -1)
	h.m.Close(context.Background(), https) // a retry is pending
	h.backend.takeCalls()
	h.m.Stop()
	h.m.Stop()
	h.at(time.Hour)
	wantCalls(t, h.backend.takeCalls())
	if _, ok := h.backend.has(ssh); !ok {
		t.Fatal("Stop closed an opening")
	}
	if _, _, err := h.m.Open(context.Background(), wg, "alice", 1); !errors.Is(err, ErrStopped) {
		t.Fatalf("Open after Stop = %v, want ErrStopped", err)
	}
	if _, err := h.m.Close(context.Background(), ssh); !errors.Is(err, ErrStopped) {
		t.Fatalf("Close after Stop = %v", err)
	}
	if err := h.m.CloseAll(context.Background()); !errors.Is(err, ErrStopped) {
		t.Fatalf("CloseAll after Stop = %v", err)
	}
	if err := h.m.Restore(context.Background(), nil); !errors.Is(err, ErrStopped) {
		t.Fatalf("Restore after Stop = %v", err)
	}
	if len(h.m.List()) != 2 {
		t.Fatalf("List after Stop = %+v, want both grants still known", h.m.List())
	}
}

func TestNewNeedsABackend(t *testing.T) {
	if _, err := New(Config{}); err == nil {
		t.Fatal("New without a backend succeeded")
	}
}

func TestBackoff(t *testing.T) {
	tests := []struct {
		name     string
		min, max time.Duration
		n        int
		want     time.Duration
	}{
		{"first retry after min", second, minute, 1, second},
		{"doubles", second, minute, 4, 8 * second},
		{"caps at max", second, minute, 7, minute},
		{"stays at max after days of failures", second, minute, 100000, minute},
		{"max not a power-of-two multiple", second, 50 * second, 7, 50 * second},
		{"huge max does not overflow", time.Hour, time.Duration(1<<63 - 1), 200, time.Duration(1<<63 - 1)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m, err := New(Config{Backend: newFakeBackend(nil), RetryMin: tc.min, RetryMax: tc.max})
			if err != nil {
				t.Fatal(err)
			}
			defer m.Stop()
			if got := m.backoff(tc.n); got != tc.want {
				t.Fatalf("backoff(%d) = %v, want %v", tc.n, got, tc.want)
			}
		})
	}
}
