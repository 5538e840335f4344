package clock

import (
	"testing"
	"time"
)

func TestFakeRunsTimersInOrderAtTheirDeadline(t *testing.T) {
	start := time.Unix(1_700_000_000, 0)
	c := NewFake(start)
	var got []time.Duration
	record := func() { got = append(got, c.Now().Sub(start)) }
	c.AfterFunc(3*time.Second, record)
	c.AfterFunc(1*time.Second, func() {
		record()
		c.AfterFunc(time.Second, record) // due at 2s, inside the same Advance
	})
	stopped := c.AfterFunc(2500*time.Millisecond, record)
	if !stopped.Stop() {
		t.Fatal("Stop of a pending timer reported false")
	}
	c.Advance(2 * time.Second)
	if want := []time.Duration{time.Second, 2 * time.Second}; !equal(got, want) {
		t.Fatalf("after 2s ran at %v, want %v", got, want)
	}
	if c.Pending() != 1 {
		t.Fatalf("pending = %d, want 1", c.Pending())
	}
	c.Advance(5 * time.Second)
	if want := []time.Duration{time.Second, 2 * time.Second, 3 * time.Second}; !equal(got, want) {
		t.Fatalf("ran at %v, want %v", got, want)
	}
	if c.Now().Sub(start) != 7*time.Second {
		t.Fatalf("now = %v after advancing 7s", c.Now().Sub(start))
	}
}

func equal(a, b []time.Duration) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
