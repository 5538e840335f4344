package door

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/knockdaemon/knock/internal/clock"
	"github.com/knockdaemon/knock/logparse"
	"github.com/knockdaemon/knock/rules"
)

// logLine is a netfilter LOG line as dmesg shows it.
func logLine(src string, proto string, sport, dport int, flags string) string {
	if proto == "UDP" {
		return fmt.Sprintf("[  684.680748] knock:door IN=veth0 OUT= MAC=f6:9e:dd:ec:6e:c3:b2:78:42:cc:f3:ba:08:00 SRC=%s DST=198.18.71.1 LEN=44 TOS=0x00 PREC=0x00 TTL=64 ID=60818 DF PROTO=UDP SPT=%d DPT=%d LEN=24 ", src, sport, dport)
	}
	return fmt.Sprintf("[  684.679879] knock:door IN=veth0 OUT= MAC=f6:9e:dd:ec:6e:c3:b2:78:42:cc:f3:ba:08:00 SRC=%s DST=198.18.71.1 LEN=60 TOS=0x00 PREC=0x00 TTL=64 ID=26742 DF PROTO=TCP SPT=%d DPT=%d WINDOW=64240 RES=0x00 %s URGP=0 ", src, sport, dport, flags)
}

func TestServiceFromLogLines(t *testing.T) {
	clk := clock.NewFake(t0)
	m, fw := newGrants(t, clk)
	fr := &rules.FakeRunner{}
	var saved []Pending
	doors := []*Door{
		mustDoor(t, Config{Name: "openSSH", Sequence: "7000,8000,9000", TCPFlags: "syn,!ack", Open: &OpenConfig{Ports: []string{"22"}}, CmdTimeout: "60s"}),
		mustDoor(t, Config{Name: "udpcmd", Sequence: "1111:udp,2222:udp", StartCommand: "/usr/bin/logger door %IP%", StopCommand: "/usr/bin/logger bye %IP%", CmdTimeout: "5s"}),
	}
	s, err := NewService(ServiceConfig{Doors: doors, Grants: m, Runner: fr, Clock: clk,
		PersistPending: func(p []Pending) error { saved = p; return nil }})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	feed := func(line string) bool {
		t.Helper()
		var h logparse.Hit
		if err := logparse.Parse([]byte(line), &h); err != nil {
			t.Fatalf("Parse(%q): %v", line, err)
		}
		return s.HandleHit(ctx, &h, clk.Now())
	}
	if feed(logLine("198.18.0.2", "TCP", 40000, 801, "SYN")) {
		t.Fatal("a knock-range port was taken as a door port")
	}
	for i, dport := range []int{7000, 8000, 8000, 9000} { // with a retransmitted SYN
		sport := 40001 + i
		if i == 2 {
			sport = 40002
		}
		if !feed(logLine("198.18.0.2", "TCP", sport, dport, "SYN")) {
			t.Fatalf("door port %d not taken", dport)
		}
	}
	if got, _ := fw.List(ctx); len(got) != 1 || got[0].Port != 22 || got[0].Addr != netip.MustParseAddr("198.18.0.2") {
		t.Fatalf("firewall after openSSH: %+v", got)
	}
	feed(logLine("198.18.0.3", "UDP", 5000, 1111, ""))
	feed(logLine("198.18.0.3", "UDP", 5001, 2222, ""))
	if calls := fr.Calls(); len(calls) != 1 || calls[0] != "/usr/bin/logger door 198.18.0.3" {
		t.Fatalf("commands %q", calls)
	}
	if len(saved) != 1 || len(s.Pending()) != 1 {
		t.Fatalf("pending %+v", saved)
	}
	if st := s.Stats(); st.Fired != 2 || st.Retransmissions != 1 {
		t.Errorf("stats %+v", st)
	}
	s.Close(ctx, true)
	if calls := fr.Calls(); len(calls) != 2 || calls[1] != "/usr/bin/logger bye 198.18.0.3" {
		t.Fatalf("close_on_exit did not run the stop: %q", calls)
	}
	clk.Advance(time.Minute)
}

func TestServiceNoDoors(t *testing.T) {
	s, err := NewService(ServiceConfig{})
	if s != nil || err != nil {
		t.Fatalf("NewService without doors = %v, %v", s, err)
	}
	var h logparse.Hit
	if s.HandleHit(context.Background(), &h, t0) || s.Pending() != nil {
		t.Fatal("a nil service took a hit")
	}
	if err := s.Restore([]Pending{{Door: "x"}}); err == nil || !strings.Contains(err.Error(), "undo them by hand") {
		t.Fatalf("Restore of stops without doors: %v", err)
	}
	s.Close(context.Background(), true)
	d := mustDoor(t, Config{Name: "o", Sequence: "1,2", Open: &OpenConfig{Ports: []string{"22"}}, CmdTimeout: "1s"})
	if _, err := NewService(ServiceConfig{Doors: []*Door{d}}); err == nil {
		t.Fatal("an open door without grants: no error")
	}
	c := mustDoor(t, Config{Name: "c", Sequence: "1,2", StartCommand: "/bin/true"})
	if _, err := NewService(ServiceConfig{Doors: []*Door{c}}); err == nil {
		t.Fatal("a command door without a runner: no error")
	}
}
