package grant

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/knockdaemon/knock/internal/clock"
)

// The pipeline, the control socket and the timers use one Manager at once,
// while the firewall fails now and then. Afterwards no opening exists
// without a grant, and everything closes once the firewall works.
func TestConcurrentUseWithAFlakyFirewall(t *testing.T) {
	h := newHarness(t)
	var flakyMu sync.Mutex
	rng := rand.New(rand.NewPCG(1, 2))
	h.backend.setFlaky(func(op string) bool {
		flakyMu.Lock()
		defer flakyMu.Unlock()
		return rng.IntN(4) == 0
	})
	var keys []Key
	for i := 1; i <= 4; i++ {
		for _, p := range []uint16{22, 443} {
			keys = append(keys, key(fmt.Sprintf("198.18.0.%d", i), "tcp", p))
		}
	}
	ctx := context.Background()
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(g), 7))
			for range 300 {
				k := keys[r.IntN(len(keys))]
				switch r.IntN(10) {
				case 0, 1:
					h.m.Close(ctx, k)
				case 2:
					h.m.List()
				default:
					h.m.Open(ctx, k, "alice", uint8(r.IntN(4)))
				}
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for range 300 {
			h.clock.Advance(7 * time.Second)
		}
	}()
	wg.Wait()

	// Invariant: every opening in the firewall belongs to a grant.
	known := map[Key]State{}
	for _, i := range h.m.List() {
		known[i.Key()] = i.State
	}
	for _, k := range h.backend.keys() {
		if _, ok := known[k]; !ok {
			t.Fatalf("opening %s in the firewall without a grant", k)
		}
	}
	for k, st := range known {
		if _, ok := h.backend.has(k); st == StateOpen && !ok {
			t.Fatalf("grant %s open but not in the firewall", k)
		}
	}

	h.backend.setFlaky(nil)
	h.clock.Advance(5 * time.Minute) // timed grants expire, retries succeed
	for _, i := range h.m.List() {
		if !i.Unlimited() || i.State != StateOpen {
			t.Fatalf("after the firewall recovered, %+v is still there", i)
		}
	}
	if err := h.m.CloseAll(ctx); err != nil {
		t.Fatal(err)
	}
	if len(h.m.List()) != 0 || h.backend.count() != 0 {
		t.Fatalf("left behind: %v grants, %v openings", h.m.List(), h.backend.keys())
	}
}

// With the wall clock the timer callbacks run on their own goroutines.
func TestRetriesOnTheRealClock(t *testing.T) {
	b := newFakeBackend(clock.NewFake(t0))
	m, err := New(Config{Backend: b, RetryMin: time.Millisecond, RetryMax: 4 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Stop()
	ctx := context.Background()
	keys := []Key{ssh, https, wg}
	for _, k := range keys {
		if _, _, err := m.Open(ctx, k, "alice", 1); err != nil {
			t.Fatal(err)
		}
		b.setFailClose(k, 3)
	}
	var wgr sync.WaitGroup
	wgr.Add(2)
	go func() { defer wgr.Done(); m.CloseAll(ctx) }()
	go func() {
		defer wgr.Done()
		for range 100 {
			m.List()
		}
	}()
	wgr.Wait()
	deadline := time.Now().Add(10 * time.Second)
	for len(m.List()) > 0 || b.count() > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("closes not retried to success: %+v, %v", m.List(), b.keys())
		}
		time.Sleep(time.Millisecond)
	}
	closes := 0
	for _, c := range b.takeCalls() {
		if c.Op == "close" {
			closes++
		}
	}
	if closes != 12 {
		t.Fatalf("%d close calls, want 4 per key", closes)
	}
	if !slices.Equal(b.keys(), nil) {
		t.Fatal("openings left")
	}
}

// BenchmarkOpenExtendClose measures the Manager's own cost per operation
// (the fake backend and persist hook cost next to nothing).
func BenchmarkOpenExtendClose(b *testing.B) {
	c := clock.NewFake(t0)
	m, err := New(Config{Backend: newFakeBackend(c), Clock: c, Persist: func([]Grant) error { return nil }})
	if err != nil {
		b.Fatal(err)
	}
	defer m.Stop()
	ctx := context.Background()
	keys := make([]Key, 1024)
	for i := range keys {
		keys[i] = key(fmt.Sprintf("198.18.%d.%d", i/256, i%256), "tcp", 22)
	}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		k := keys[i%len(keys)]
		m.Open(ctx, k, "alice", 5)
		m.Open(ctx, k, "alice", 10)
		m.Close(ctx, k)
	}
}

// Status must answer while a firewall command hangs, and Stop must cancel
// a hung close the Manager runs on its own.
func TestListAndStopDoNotWaitForAHungFirewall(t *testing.T) {
	h := newHarness(t)
	h.open(ssh, 1)
	h.open(https, 5)
	gate := make(chan struct{})
	h.backend.mu.Lock()
	h.backend.gate = gate
	h.backend.mu.Unlock()

	expired := make(chan struct{})
	go func() { defer close(expired); h.clock.Set(t0.Add(time.Minute)) }() // the expiry close hangs
	// Wait until the close is under way: the grant is published as closing.
	deadline := time.Now().Add(10 * time.Second)
	for {
		l := h.m.List()
		if len(l) == 2 && l[0].Key() == ssh && l[0].State == StateClosing && l[1].State == StateOpen {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("List = %+v while the close hangs, want ssh closing and https open", l)
		}
		time.Sleep(time.Millisecond)
	}
	stopped := make(chan struct{})
	go func() { defer close(stopped); h.m.Stop() }()
	select {
	case <-stopped:
	case <-time.After(10 * time.Second):
		close(gate)
		t.Fatal("Stop waited for the hung firewall command")
	}
	<-expired
	if _, ok := h.backend.has(ssh); !ok {
		t.Fatal("the cancelled close removed the opening")
	}
	if l := h.m.List(); len(l) != 2 || l[0].State != StateClosing || l[0].Attempts != 1 {
		t.Fatalf("after Stop List = %+v, want ssh closing after 1 failed attempt", l)
	}
}
