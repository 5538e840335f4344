package grant

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/knockdaemon/knock/internal/clock"
	"github.com/knockdaemon/knock/rules"
)

func TestOpenFor(t *testing.T) {
	t0 := time.Date(2026, 11, 21, 6, 0, 0, 0, time.UTC)
	clk := clock.NewFake(t0)
	fr := &rules.FakeRunner{}
	b, err := rules.NewExec(fr, "/bin/open %IP% %PORT%", "/bin/close %IP% %PORT%")
	if err != nil {
		t.Fatal(err)
	}
	m, err := New(Config{Backend: b, Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Stop()
	k := Key{Addr: netip.MustParseAddr("198.18.0.2"), Proto: "tcp", Port: 22}
	ev, g, err := m.OpenFor(context.Background(), k, "door:x", 10*time.Second)
	if err != nil || ev != Opened || !g.Expires.Equal(t0.Add(10*time.Second)) {
		t.Fatalf("OpenFor = %v %+v %v", ev, g, err)
	}
	clk.Advance(9 * time.Second)
	if len(m.List()) != 1 {
		t.Fatal("closed before its 10s")
	}
	clk.Advance(time.Second)
	if len(m.List()) != 0 {
		t.Fatalf("still open after 10s: %+v", m.List())
	}
	for _, d := range []time.Duration{-time.Second, 255 * time.Minute} {
		if ev, _, err := m.OpenFor(context.Background(), k, "x", d); ev != OpenFailed || err == nil {
			t.Errorf("OpenFor(%v) = %v, %v; want an error", d, ev, err)
		}
	}
}
