package replay

import (
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/knockdaemon/knock/internal/clock"
)

var t0 = time.Unix(1_700_000_000, 0)

var (
	blockA = [8]byte{1, 2, 3, 4, 5, 6, 7, 8}
	blockB = [8]byte{0xde, 0xad, 0xbe, 0xef, 0, 0, 0, 1}
)

func newCache(t *testing.T) (*Cache, *clock.Fake) {
	t.Helper()
	clk := clock.NewFake(t0)
	c := New(clk)
	t.Cleanup(c.Close)
	return c, clk
}

func TestSeen(t *testing.T) {
	c, _ := newCache(t)
	c.Add("alice", blockA, t0.Add(90*time.Second))
	for _, tc := range []struct {
		name  string
		key   string
		block [8]byte
		at    time.Duration
		want  bool
	}{
		{"same key and block", "alice", blockA, 0, true},
		{"just before until", "alice", blockA, 90*time.Second - time.Nanosecond, true},
		{"at until (fails closed)", "alice", blockA, 90 * time.Second, true},
		{"just after until", "alice", blockA, 90*time.Second + time.Nanosecond, false},
		{"after until", "alice", blockA, time.Hour, false},
		{"other key", "bob", blockA, 0, false},
		{"other block", "alice", blockB, 0, false},
		{"key is case-sensitive", "Alice", blockA, 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := c.Seen(tc.key, tc.block, t0.Add(tc.at)); got != tc.want {
				t.Fatalf("Seen = %v, want %v", got, tc.want)
			}
		})
	}
	// Asking with a time far ahead of the clock must not prune an entry
	// the clock still holds live.
	if !c.Seen("alice", blockA, t0.Add(time.Second)) {
		t.Fatal("entry lost after a Seen with a later time")
	}
}

func TestExpiryByTimerIsExact(t *testing.T) {
	c, clk := newCache(t)
	c.Add("alice", blockA, t0.Add(90*time.Second))
	c.Add("alice", blockB, t0.Add(30*time.Second))
	if n := clk.Pending(); n != 1 {
		t.Fatalf("%d timers pending, want 1", n)
	}
	clk.Advance(30 * time.Second)
	if n := c.Len(); n != 2 || !c.Seen("alice", blockB, clk.Now()) {
		t.Fatalf("len %d at the first until, want 2 and the entry still seen", n)
	}
	clk.Advance(time.Nanosecond)
	if n := c.Len(); n != 1 {
		t.Fatalf("len %d just after the first until, want 1", n)
	}
	if !c.Seen("alice", blockA, clk.Now()) || c.Seen("alice", blockB, clk.Now()) {
		t.Fatal("wrong entry pruned")
	}
	clk.Advance(60 * time.Second)
	if n := c.Len(); n != 0 {
		t.Fatalf("len %d after every expiry, want 0", n)
	}
	if n := clk.Pending(); n != 0 {
		t.Fatalf("%d timers pending for an empty cache", n)
	}
}

func TestAddKeepsTheLaterUntil(t *testing.T) {
	c, clk := newCache(t)
	c.Add("alice", blockA, t0.Add(10*time.Second))
	c.Add("alice", blockA, t0.Add(20*time.Second))
	c.Add("alice", blockA, t0.Add(5*time.Second)) // does not shorten
	clk.Advance(15 * time.Second)                 // the stale 10s item surfaces
	if !c.Seen("alice", blockA, clk.Now()) {
		t.Fatal("extended entry expired at its first until")
	}
	if n := c.Len(); n != 1 {
		t.Fatalf("len %d, want 1", n)
	}
	clk.Advance(5*time.Second + time.Nanosecond)
	if c.Seen("alice", blockA, clk.Now()) || c.Len() != 0 {
		t.Fatal("extended entry outlived its later until")
	}
}

func TestAddInThePastRecordsNothing(t *testing.T) {
	c, clk := newCache(t)
	c.Add("alice", blockA, t0.Add(-time.Nanosecond))
	c.Add("alice", blockB, t0.Add(-time.Minute))
	if n := c.Len(); n != 0 {
		t.Fatalf("len %d after adding expired entries", n)
	}
	if n := clk.Pending(); n != 0 {
		t.Fatalf("%d timers pending", n)
	}
	c.Add("alice", blockA, t0) // until now: still seen at now
	if !c.Seen("alice", blockA, t0) {
		t.Fatal("an entry until now is not seen now")
	}
}

func TestClaim(t *testing.T) {
	c, clk := newCache(t)
	until := t0.Add(time.Minute)
	if !c.Claim("alice", blockA, until, clk.Now()) {
		t.Fatal("first claim refused")
	}
	if c.Claim("alice", blockA, until, clk.Now()) {
		t.Fatal("second claim granted: a replay")
	}
	if !c.Claim("bob", blockA, until, clk.Now()) {
		t.Fatal("same block under another key refused")
	}
	clk.Advance(time.Minute)
	if c.Claim("alice", blockA, t0.Add(2*time.Minute), clk.Now()) {
		t.Fatal("claim at the until instant granted")
	}
	clk.Advance(time.Nanosecond)
	if !c.Claim("alice", blockA, t0.Add(2*time.Minute), clk.Now()) {
		t.Fatal("claim after the horizon refused")
	}
}

func TestClaimRace(t *testing.T) {
	c := New(clock.Real{})
	defer c.Close()
	var wg sync.WaitGroup
	var mu sync.Mutex
	won := 0
	until := time.Now().Add(time.Minute)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if c.Claim("alice", blockA, until, time.Now()) {
				mu.Lock()
				won++
				mu.Unlock()
			}
			c.Seen("alice", blockA, time.Now())
			c.Add("bob", blockB, until)
			c.Entries()
		}()
	}
	wg.Wait()
	if won != 1 {
		t.Fatalf("%d goroutines claimed the same block, want 1", won)
	}
}

func TestRestart(t *testing.T) {
	c, clk := newCache(t)
	c.Add("alice", blockA, t0.Add(90*time.Second))
	c.Add("bob", blockB, t0.Add(24*time.Hour))
	c.Add("carol", blockA, t0.Add(10*time.Second))
	clk.Advance(5 * time.Second)

	data, err := json.Marshal(c.Entries())
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(data), `"until":"2023-11-14T22:14:50Z"`) || !strings.Contains(string(data), `"block":"0102030405060708"`) {
		t.Fatalf("persisted form is not RFC 3339 and hex: %s", data)
	}

	// The daemon is down for 30s; the new cache starts at 35s.
	var loaded []Entry
	if err := json.Unmarshal(data, &loaded); err != nil {
		t.Fatal(err)
	}
	clk2 := clock.NewFake(t0.Add(35 * time.Second))
	c2 := New(clk2)
	defer c2.Close()
	if err := c2.Load(loaded); err != nil {
		t.Fatalf("Load: %v", err)
	}
	now := clk2.Now()
	if !c2.Seen("alice", blockA, now) || !c2.Seen("bob", blockB, now) {
		t.Fatal("an entry was lost across the restart")
	}
	if c2.Seen("carol", blockA, now) || c2.Len() != 2 {
		t.Fatalf("an entry expired while down was loaded (len %d)", c2.Len())
	}
	clk2.Set(t0.Add(90 * time.Second))
	if !c2.Seen("alice", blockA, clk2.Now()) {
		t.Fatal("loaded entry expired early")
	}
	clk2.Set(t0.Add(90*time.Second + time.Nanosecond))
	if c2.Seen("alice", blockA, clk2.Now()) || c2.Len() != 1 {
		t.Fatal("loaded entry did not expire exactly at its until")
	}
}

func TestEntriesOrderAndFilter(t *testing.T) {
	c, clk := newCache(t)
	c.Add("bob", blockA, t0.Add(20*time.Second))
	c.Add("alice", blockB, t0.Add(20*time.Second))
	c.Add("alice", blockA, t0.Add(20*time.Second))
	c.Add("zed", blockA, t0.Add(10*time.Second))
	c.Add("old", blockA, t0.Add(5*time.Second))
	c.Close() // no more pruning: Entries itself must leave the expired out
	clk.Advance(5*time.Second + time.Nanosecond)
	var got []string
	for _, e := range c.Entries() {
		got = append(got, fmt.Sprintf("%s/%s/%s", e.Key, e.Block, e.Until.Sub(t0)))
	}
	want := []string{"zed/0102030405060708/10s", "alice/0102030405060708/20s", "alice/deadbeef00000001/20s", "bob/0102030405060708/20s"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("entries\n got %v\nwant %v", got, want)
	}
	for _, e := range c.Entries() {
		if e.Until.Location() != time.UTC {
			t.Fatalf("until %v not in UTC", e.Until)
		}
	}
}

func TestLoadRejectsMalformedAndKeepsTheRest(t *testing.T) {
	until := t0.Add(time.Hour)
	for _, tc := range []struct {
		name string
		bad  Entry
		want string
	}{
		{"short block", Entry{Key: "alice", Block: "0102", Until: until}, `entry 1 (key "alice"): block "0102"`},
		{"long block", Entry{Key: "alice", Block: "010203040506070809", Until: until}, "not 16 hexadecimal digits"},
		{"not hex", Entry{Key: "alice", Block: "zz02030405060708", Until: until}, "not 16 hexadecimal digits"},
		{"no until", Entry{Key: "alice", Block: "0102030405060708"}, "no until time"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, clk := newCache(t)
			err := c.Load([]Entry{
				{Key: "bob", Block: "deadbeef00000001", Until: until},
				tc.bad,
				{Key: "carol", Block: "DEADBEEF00000001", Until: until}, // upper case is hex too
			})
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "replay: ") {
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
			if !c.Seen("bob", blockB, clk.Now()) || !c.Seen("carol", blockB, clk.Now()) || c.Len() != 2 {
				t.Fatal("good entries around a bad one were not loaded")
			}
		})
	}
	t.Run("far future", func(t *testing.T) {
		c, clk := newCache(t)
		if err := c.Load([]Entry{{Key: "a", Block: "0102030405060708", Until: time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC)}}); err != nil {
			t.Fatal(err)
		}
		if !c.Seen("a", blockA, clk.Now()) || clk.Pending() != 0 {
			t.Fatal("an entry for year 9999 is not seen, or a timer is set for it")
		}
		clk.Advance(100 * 365 * 24 * time.Hour)
		if !c.Seen("a", blockA, clk.Now()) {
			t.Fatal("an entry for year 9999 expired within a century")
		}
		if e := c.Entries(); len(e) != 1 || e[0].Until.Year() != 2262 {
			t.Fatalf("entries %+v", e)
		}
	})
}

func TestPruneInBatches(t *testing.T) {
	c, clk := newCache(t)
	const n = 3*pruneBatch + 7
	for i := range n {
		c.Add("alice", [8]byte{byte(i), byte(i >> 8), byte(i >> 16)}, t0.Add(time.Second))
	}
	c.Add("alice", blockB, t0.Add(time.Minute))
	clk.Advance(time.Second + time.Nanosecond)
	if got := c.Len(); got != 1 {
		t.Fatalf("len %d after the batch expiry, want 1", got)
	}
	if !c.Seen("alice", blockB, clk.Now()) {
		t.Fatal("the live entry was pruned")
	}
}

func TestPruneOnAccessWithoutTimer(t *testing.T) {
	c, clk := newCache(t)
	for i := range 10 {
		c.Add("alice", [8]byte{byte(i)}, t0.Add(time.Second))
	}
	c.Close()
	clk.Advance(time.Second + time.Nanosecond)
	for i := range 5 {
		c.Seen("x", blockA, clk.Now())
		if got, want := c.Len(), 10-pruneOnAccess*(i+1); got != want {
			t.Fatalf("len %d after %d accesses, want %d", got, i+1, want)
		}
	}
}

func BenchmarkSeen(b *testing.B) {
	c := New(clock.NewFake(t0))
	defer c.Close()
	for i := range 10_000 {
		c.Add("alice", [8]byte{byte(i), byte(i >> 8)}, t0.Add(time.Hour))
	}
	now := t0.Add(time.Minute)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		c.Seen("alice", [8]byte{byte(i), byte(i >> 8)}, now)
		i++
	}
}
