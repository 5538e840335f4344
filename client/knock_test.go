package client

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"
)

// arrival is one knock seen by a loopback listener.
type arrival struct {
	port    uint16
	srcPort uint16
	size    int
}

// loopbackSink listens on 127.0.0.1 on every distinct port of a sequence
// built from offsets on a random high base, and reports arrivals in the
// order the listener goroutines see them.
type loopbackSink struct {
	base  uint16
	ports [8]uint16
	ch    chan arrival
}

func newLoopbackSink(t *testing.T, udp bool, offsets [8]uint16) *loopbackSink {
	t.Helper()
	s := &loopbackSink{ch: make(chan arrival, 64)}
	for try := 0; try < 30; try++ {
		s.base = uint16(20000 + rand.IntN(40000))
		var closers []func()
		ok := true
		seen := map[uint16]bool{}
		for i, off := range offsets {
			p := s.base + off
			s.ports[i] = p
			if seen[p] {
				continue
			}
			seen[p] = true
			addr := fmt.Sprintf("127.0.0.1:%d", p)
			if udp {
				c, err := net.ListenPacket("udp4", addr)
				if err != nil {
					ok = false
					break
				}
				closers = append(closers, func() { c.Close() })
				go func() {
					buf := make([]byte, 64)
					for {
						n, from, err := c.ReadFrom(buf)
						if err != nil {
							return
						}
						s.ch <- arrival{port: p, srcPort: uint16(from.(*net.UDPAddr).Port), size: n}
					}
				}()
			} else {
				l, err := net.Listen("tcp4", addr)
				if err != nil {
					ok = false
					break
				}
				closers = append(closers, func() { l.Close() })
				go func() {
					for {
						c, err := l.Accept()
						if err != nil {
							return
						}
						s.ch <- arrival{port: p, srcPort: uint16(c.RemoteAddr().(*net.TCPAddr).Port)}
						c.Close()
					}
				}()
			}
		}
		if ok {
			t.Cleanup(func() {
				for _, c := range closers {
					c()
				}
			})
			return s
		}
		for _, c := range closers {
			c()
		}
	}
	t.Fatal("no free loopback ports after 30 tries")
	return nil
}

// collect waits for n arrivals (bounded in time) and then a little more
// to catch extra ones.
func (s *loopbackSink) collect(t *testing.T, n int) []arrival {
	t.Helper()
	var got []arrival
	deadline := time.After(5 * time.Second)
	for len(got) < n {
		select {
		case a := <-s.ch:
			got = append(got, a)
		case <-deadline:
			t.Fatalf("only %d of %d knocks arrived: %v", len(got), n, got)
		}
	}
	select {
	case a := <-s.ch:
		got = append(got, a)
	case <-time.After(200 * time.Millisecond):
	}
	return got
}

// TestSendLoopbackInOrder sends real knocks over loopback, TCP and UDP,
// and checks that exactly the eight ports arrive, in order, each from its
// own source port, including two equal consecutive ports.
func TestSendLoopbackInOrder(t *testing.T) {
	offsets := [8]uint16{5, 5, 0, 255, 17, 200, 17, 3}
	for _, udp := range []bool{false, true} {
		name := "tcp"
		if udp {
			name = "udp"
		}
		t.Run(name, func(t *testing.T) {
			s := newLoopbackSink(t, udp, offsets)
			var sent []uint16
			// A generous gap: arrival order is observed by goroutines,
			// which a loaded test machine may wake late.
			err := Send(context.Background(), netip.MustParseAddr("127.0.0.1"), s.ports, SendOptions{
				UDP: udp, Gap: 40 * time.Millisecond,
				OnKnock: func(i int, p uint16) { sent = append(sent, p) },
			})
			if err != nil {
				t.Fatalf("Send: %v", err)
			}
			got := s.collect(t, 8)
			if len(got) != 8 {
				t.Fatalf("%d knocks arrived, want 8: %v", len(got), got)
			}
			for i, a := range got {
				if a.port != s.ports[i] {
					t.Fatalf("knock %d arrived on port %d, want %d (all: %v)", i+1, a.port, s.ports[i], got)
				}
				if udp && a.size != 0 {
					t.Fatalf("UDP knock %d carried %d bytes, want an empty datagram", i+1, a.size)
				}
				if i > 0 && a.srcPort == got[i-1].srcPort {
					t.Fatalf("knocks %d and %d share source port %d", i, i+1, a.srcPort)
				}
			}
			if fmt.Sprint(sent) != fmt.Sprint(s.ports[:]) {
				t.Fatalf("OnKnock saw %v, want %v", sent, s.ports)
			}
		})
	}
}

// TestSendPacesRefusedKnocks: a refused TCP knock returns at once, but the
// gap is still waited out, so the sequence keeps its pacing.
func TestSendPacesRefusedKnocks(t *testing.T) {
	// Find a closed port: listen, note the port, close.
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := uint16(l.Addr().(*net.TCPAddr).Port)
	l.Close()
	gap := 30 * time.Millisecond
	start := time.Now()
	var times []time.Duration
	err = Send(context.Background(), netip.MustParseAddr("127.0.0.1"), [8]uint16{p, p, p, p, p, p, p, p},
		SendOptions{Gap: gap, OnKnock: func(int, uint16) { times = append(times, time.Since(start)) }})
	if err != nil {
		t.Fatalf("Send to a closed port: %v", err)
	}
	if el := time.Since(start); el < 8*gap {
		t.Fatalf("8 knocks took %v, want at least 8 gaps (%v)", el, 8*gap)
	}
	// Knock k starts no earlier than k gaps after the first.
	for k, at := range times {
		if at < time.Duration(k)*gap {
			t.Fatalf("knock %d sent at %v, before %d gaps of %v", k+1, at, k, gap)
		}
	}
}

func TestSendErrors(t *testing.T) {
	ports := [8]uint16{1000, 1001, 1002, 1003, 1004, 1005, 1006, 1007}
	tests := []struct {
		name string
		dst  netip.Addr
		opt  SendOptions
		want string
	}{
		{"gap too small", netip.MustParseAddr("127.0.0.1"), SendOptions{Gap: time.Microsecond}, "delay 1µs out of range"},
		{"gap too large", netip.MustParseAddr("127.0.0.1"), SendOptions{Gap: 2 * time.Second}, "out of range"},
		{"invalid destination", netip.Addr{}, SendOptions{}, "invalid knock destination"},
		{"unspecified destination", netip.IPv4Unspecified(), SendOptions{}, "invalid knock destination"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Send(context.Background(), tt.dst, ports, tt.opt)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Send error = %v, want %q", err, tt.want)
			}
		})
	}
	t.Run("canceled context", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		for _, udp := range []bool{false, true} {
			sent := 0
			err := Send(ctx, netip.MustParseAddr("127.0.0.1"), ports, SendOptions{UDP: udp, OnKnock: func(int, uint16) { sent++ }})
			if !errors.Is(err, context.Canceled) || sent != 0 {
				t.Fatalf("Send (udp=%v) with canceled ctx = %v after %d knocks", udp, err, sent)
			}
		}
	})
}
