package door

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/knockdaemon/knock/grant"
	"github.com/knockdaemon/knock/internal/clock"
	"github.com/knockdaemon/knock/rules"
)

// memBackend is an in-memory firewall.
type memBackend struct {
	mu   sync.Mutex
	open map[string]rules.Opening
}

func (b *memBackend) Name() string                   { return "mem" }
func (b *memBackend) Check(context.Context) error    { return nil }
func (b *memBackend) Setup(context.Context) error    { return nil }
func (b *memBackend) Teardown(context.Context) error { return nil }
func (b *memBackend) List(context.Context) ([]rules.Opening, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []rules.Opening
	for _, o := range b.open {
		out = append(out, o)
	}
	return out, nil
}
func (b *memBackend) Open(_ context.Context, o rules.Opening) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.open == nil {
		b.open = map[string]rules.Opening{}
	}
	b.open[o.String()] = o
	return nil
}
func (b *memBackend) Close(_ context.Context, o rules.Opening) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.open, o.String())
	return nil
}

func newGrants(t *testing.T, clk clock.Clock) (*grant.Manager, *memBackend) {
	t.Helper()
	b := &memBackend{}
	m, err := grant.New(grant.Config{Backend: b, Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Stop)
	return m, b
}

func TestExecutorOpenClose(t *testing.T) {
	clk := clock.NewFake(t0)
	m, fw := newGrants(t, clk)
	var logs bytes.Buffer
	ex := &Executor{Grants: m, Logger: slog.New(slog.NewTextHandler(&logs, nil))}
	open := mustDoor(t, Config{Name: "openSSH", Sequence: "7000,8000,9000", Open: &OpenConfig{Ports: []string{"22", "2222"}, Proto: "tcp"}, CmdTimeout: "90s"})
	close := mustDoor(t, Config{Name: "closeSSH", Sequence: "9000,8000,7000", Close: &OpenConfig{Ports: []string{"22", "2222"}}})
	src := netip.MustParseAddr("::ffff:198.18.0.2")
	ctx := context.Background()

	if err := ex.Fire(ctx, open, src); err != nil {
		t.Fatal(err)
	}
	list := m.List()
	if len(list) != 2 || list[0].User != "door:openSSH" || list[0].Addr != netip.MustParseAddr("198.18.0.2") || list[0].Port != 22 || list[1].Port != 2222 {
		t.Fatalf("grants after open: %+v", list)
	}
	if got := list[0].Expires.Sub(t0); got != 90*time.Second {
		t.Errorf("expires after %v, want 90s", got)
	}
	// A re-knock extends, it does not stack.
	clk.Advance(30 * time.Second)
	if err := ex.Fire(ctx, open, src); err != nil {
		t.Fatal(err)
	}
	if list = m.List(); len(list) != 2 || list[0].Expires.Sub(t0) != 2*time.Minute {
		t.Fatalf("grants after re-knock: %+v", list)
	}
	if !strings.Contains(logs.String(), "event=extended") {
		t.Errorf("no extended event in %s", logs.String())
	}

	// An encrypted knock's opening is not closed by the plain close door.
	alice := netip.MustParseAddr("198.18.0.3")
	if _, _, err := m.Open(ctx, grant.Key{Addr: alice, Proto: "tcp", Port: 22}, "alice", 10); err != nil {
		t.Fatal(err)
	}
	if err := ex.Fire(ctx, close, alice); err != nil {
		t.Fatal(err)
	}
	if len(m.List()) != 3 || !strings.Contains(logs.String(), "reason=door_not_owner") {
		t.Fatalf("close door touched alice's opening: %+v\n%s", m.List(), logs.String())
	}
	if err := ex.Fire(ctx, close, src); err != nil {
		t.Fatal(err)
	}
	if list = m.List(); len(list) != 1 || list[0].User != "alice" {
		t.Fatalf("after close door: %+v", list)
	}
	if got, _ := fw.List(ctx); len(got) != 1 || got[0].Addr != alice {
		t.Fatalf("firewall after close door: %+v", got)
	}
}

// With the grant manager itself (OpenFor), a door's duration is exact.
func TestExecutorExactDuration(t *testing.T) {
	clk := clock.NewFake(t0)
	m, fw := newGrants(t, clk)
	var _ Grants = m // *grant.Manager is a Grants
	ex := &Executor{Grants: m}
	d := mustDoor(t, Config{Name: "o", Sequence: "1,2", Open: &OpenConfig{Ports: []string{"22"}, Proto: "both"}, CmdTimeout: "10s"})
	ctx := context.Background()
	if err := ex.Fire(ctx, d, netip.MustParseAddr("198.18.0.2")); err != nil {
		t.Fatal(err)
	}
	if got, _ := fw.List(ctx); len(got) != 2 {
		t.Fatalf("firewall: %+v, want tcp and udp 22", got)
	}
	clk.Advance(9 * time.Second)
	if got, _ := fw.List(ctx); len(got) != 2 {
		t.Fatalf("closed before its 10s: %+v", got)
	}
	clk.Advance(time.Second)
	if got, _ := fw.List(ctx); len(got) != 0 || len(m.List()) != 0 {
		t.Fatalf("still open after 10s: %+v", got)
	}
}

func TestExecutorOpenFailure(t *testing.T) {
	clk := clock.NewFake(t0)
	fr := &rules.FakeRunner{Default: func(argv []string) ([]byte, error) {
		return nil, &rules.CmdError{Argv: argv, ExitCode: 4, Stderr: "iptables: Resource temporarily unavailable."}
	}}
	b, _ := rules.NewIPTables(fr, "KNOCKTEST")
	m, _ := grant.New(grant.Config{Backend: b, Clock: clk})
	defer m.Stop()
	var logs bytes.Buffer
	ex := &Executor{Grants: m, Logger: slog.New(slog.NewTextHandler(&logs, nil))}
	d := mustDoor(t, Config{Name: "o", Sequence: "1,2", Open: &OpenConfig{Ports: []string{"22"}}, CmdTimeout: "10s"})
	if err := ex.Fire(context.Background(), d, netip.MustParseAddr("198.18.0.2")); err == nil {
		t.Fatal("no error from a failing backend")
	}
	if !strings.Contains(logs.String(), "event=open_failed") {
		t.Errorf("no open_failed event: %s", logs.String())
	}
	if err := (&Executor{}).Fire(context.Background(), d, netip.MustParseAddr("198.18.0.2")); err == nil {
		t.Error("no error without a grant manager")
	}
}

func TestExpand(t *testing.T) {
	tmpl := []string{"/sbin/iptables", "-A", "INPUT", "-s", "%IP%", "-m", "comment", "--comment", "knock-%IP%"}
	got, err := Expand(tmpl, netip.MustParseAddr("::ffff:198.18.0.9"))
	if err != nil || !slices.Equal(got, []string{"/sbin/iptables", "-A", "INPUT", "-s", "198.18.0.9", "-m", "comment", "--comment", "knock-198.18.0.9"}) {
		t.Fatalf("Expand = %q, %v", got, err)
	}
	for _, bad := range []netip.Addr{{}, netip.MustParseAddr("0.0.0.0"), netip.MustParseAddr("::"), netip.MustParseAddr("224.0.0.1"),
		netip.MustParseAddr("255.255.255.255"), netip.MustParseAddr("fe80::1%eth0")} {
		if _, err := Expand(tmpl, bad); err == nil {
			t.Errorf("Expand for %v: no error", bad)
		}
	}
}

type cmdHarness struct {
	clk     *clock.Fake
	fr      *rules.FakeRunner
	c       *Commands
	saved   []Pending
	persist int
}

func newCmdHarness(t *testing.T) *cmdHarness {
	h := &cmdHarness{clk: clock.NewFake(t0), fr: &rules.FakeRunner{}}
	c, err := NewCommands(CommandsConfig{Runner: h.fr, Clock: h.clk, Persist: func(p []Pending) error {
		h.saved = p
		h.persist++
		return nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	h.c = c
	t.Cleanup(c.Stop)
	return h
}

func cmdDoor(t *testing.T) *Door {
	s6 := "/usr/sbin/ip6tables -I INPUT -s %IP% -j ACCEPT"
	return mustDoor(t, Config{Name: "cmd", Sequence: "1,2,3",
		StartCommand: "/usr/sbin/iptables -I INPUT -s %IP% -j ACCEPT", StopCommand: "/usr/sbin/iptables -D INPUT -s %IP% -j ACCEPT",
		StartCommand6: &s6, CmdTimeout: "10s"})
}

func TestCommandsStartStop(t *testing.T) {
	h := newCmdHarness(t)
	d := cmdDoor(t)
	a := netip.MustParseAddr("198.18.0.2")
	ctx := context.Background()
	if err := h.c.Fire(ctx, d, a); err != nil {
		t.Fatal(err)
	}
	if got := h.fr.Calls(); len(got) != 1 || got[0] != "/usr/sbin/iptables -I INPUT -s 198.18.0.2 -j ACCEPT" {
		t.Fatalf("calls %q", got)
	}
	if len(h.saved) != 1 || !h.saved[0].Due.Equal(t0.Add(10*time.Second)) {
		t.Fatalf("persisted %+v", h.saved)
	}
	// A re-knock 4s later runs nothing and postpones the stop.
	h.clk.Advance(4 * time.Second)
	if err := h.c.Fire(ctx, d, a); err != nil {
		t.Fatal(err)
	}
	if len(h.fr.Calls()) != 1 || !h.saved[0].Due.Equal(t0.Add(14*time.Second)) {
		t.Fatalf("re-knock: calls %q, pending %+v", h.fr.Calls(), h.saved)
	}
	h.clk.Advance(9 * time.Second) // t0+13s: not yet
	if len(h.fr.Calls()) != 1 {
		t.Fatalf("stop ran early: %q", h.fr.Calls())
	}
	h.clk.Advance(time.Second)
	calls := h.fr.Calls()
	if len(calls) != 2 || calls[1] != "/usr/sbin/iptables -D INPUT -s 198.18.0.2 -j ACCEPT" {
		t.Fatalf("after the timeout: %q", calls)
	}
	if len(h.saved) != 0 || len(h.c.List()) != 0 {
		t.Fatalf("still pending: %+v", h.saved)
	}

	// IPv6: start_command_6 runs, and the stop falls back to the IPv4
	// template as knockd does.
	h.fr.Reset()
	b := netip.MustParseAddr("fd00:6b6e::2")
	if err := h.c.Fire(ctx, d, b); err != nil {
		t.Fatal(err)
	}
	h.clk.Advance(10 * time.Second)
	if got := h.fr.Calls(); len(got) != 2 || got[0] != "/usr/sbin/ip6tables -I INPUT -s fd00:6b6e::2 -j ACCEPT" || got[1] != "/usr/sbin/iptables -D INPUT -s fd00:6b6e::2 -j ACCEPT" {
		t.Fatalf("IPv6 calls %q", got)
	}
}

func TestCommandsStopRetriesThenGivesUp(t *testing.T) {
	h := newCmdHarness(t)
	d := cmdDoor(t)
	a := netip.MustParseAddr("198.18.0.2")
	stop := "/usr/sbin/iptables -D INPUT -s 198.18.0.2 -j ACCEPT"
	h.fr.Always(stop, "", errors.New("exit status 1"))
	if err := h.c.Fire(context.Background(), d, a); err != nil {
		t.Fatal(err)
	}
	h.clk.Advance(10 * time.Second) // attempt 1
	for _, step := range []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, time.Minute} {
		h.clk.Advance(step)
	}
	n := 0
	for _, c := range h.fr.Calls() {
		if c == stop {
			n++
		}
	}
	if n != 5 {
		t.Fatalf("stop ran %d times, want 5 (StopAttempts)", n)
	}
	if len(h.c.List()) != 0 || h.clk.Pending() != 0 {
		t.Fatalf("given-up stop still pending: %+v, %d timers", h.c.List(), h.clk.Pending())
	}
}

func TestCommandsRestore(t *testing.T) {
	h := newCmdHarness(t)
	d := cmdDoor(t)
	a := netip.MustParseAddr("198.18.0.2")
	ps := []Pending{
		{Door: "cmd", Addr: a, Due: t0.Add(5 * time.Second)},
		{Door: "cmd", Addr: netip.MustParseAddr("198.18.0.3"), Due: t0.Add(-time.Minute)}, // overdue
		{Door: "gone", Addr: a, Due: t0},
	}
	err := h.c.Restore([]*Door{d}, ps)
	if err == nil || !strings.Contains(err.Error(), `door "gone"`) {
		t.Fatalf("Restore: %v, want an error naming the unknown door", err)
	}
	h.clk.Advance(0)
	if got := h.fr.Calls(); len(got) != 1 || !strings.Contains(got[0], "198.18.0.3") {
		t.Fatalf("overdue stop: %q", got)
	}
	h.clk.Advance(5 * time.Second)
	if got := h.fr.Calls(); len(got) != 2 || !strings.Contains(got[1], "198.18.0.2") {
		t.Fatalf("due stop: %q", got)
	}
}

func TestCommandsRunAllOnExit(t *testing.T) {
	h := newCmdHarness(t)
	d := cmdDoor(t)
	ctx := context.Background()
	h.c.Fire(ctx, d, netip.MustParseAddr("198.18.0.2"))
	h.c.Fire(ctx, d, netip.MustParseAddr("198.18.0.3"))
	h.fr.Always("/usr/sbin/iptables -D INPUT -s 198.18.0.3 -j ACCEPT", "", errors.New("exit status 1"))
	if failed := h.c.RunAll(ctx); failed != 1 {
		t.Fatalf("RunAll failed %d, want 1", failed)
	}
	// The failed stop stays persisted for the next start.
	if len(h.saved) != 1 || h.saved[0].Addr != netip.MustParseAddr("198.18.0.3") {
		t.Fatalf("persisted after exit: %+v", h.saved)
	}
}

func TestCommandsStartOnlyAndEmptyIPv6(t *testing.T) {
	h := newCmdHarness(t)
	empty := ""
	d := mustDoor(t, Config{Name: "wake", Sequence: "1,2", StartCommand: "/usr/sbin/etherwake -i eth0 00:11:22:33:44:55", StartCommand6: &empty})
	ctx := context.Background()
	if err := h.c.Fire(ctx, d, netip.MustParseAddr("198.18.0.2")); err != nil {
		t.Fatal(err)
	}
	if err := h.c.Fire(ctx, d, netip.MustParseAddr("198.18.0.2")); err != nil {
		t.Fatal(err)
	}
	if err := h.c.Fire(ctx, d, netip.MustParseAddr("fd00::2")); err != nil {
		t.Fatal(err)
	}
	if got := h.fr.Calls(); len(got) != 2 || h.persist != 0 {
		t.Fatalf("calls %q (a start-only door runs on every knock; none for IPv6), persists %d", got, h.persist)
	}
}
