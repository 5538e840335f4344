// Package clock abstracts time so that every timed stage of the daemon
// (sequence expiry, lockout, grant expiry, retries) can be tested with a
// fake clock that moves only when the test says so.
package clock

import (
	"sort"
	"sync"
	"time"
)

// Clock tells the time and runs functions later.
type Clock interface {
	Now() time.Time
	// AfterFunc calls f in its own goroutine once d has passed.
	AfterFunc(d time.Duration, f func()) Timer
}

// Timer is a pending AfterFunc.
type Timer interface {
	// Stop prevents the call; it reports whether the call was pending.
	Stop() bool
}

// Real is the wall clock.
type Real struct{}

func (Real) Now() time.Time { return time.Now() }

func (Real) AfterFunc(d time.Duration, f func()) Timer { return time.AfterFunc(d, f) }

// Fake is a manual clock for tests. Its zero value is not usable; use NewFake.
// Timers fire synchronously, in deadline order, inside Advance and Set.
type Fake struct {
	mu     sync.Mutex
	now    time.Time
	timers []*fakeTimer
	seq    int
}

type fakeTimer struct {
	c    *Fake
	when time.Time
	seq  int
	f    func()
	done bool
}

// NewFake returns a fake clock set to now.
func NewFake(now time.Time) *Fake { return &Fake{now: now} }

// Now returns the fake time.
func (c *Fake) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// AfterFunc schedules f at Now()+d.
func (c *Fake) AfterFunc(d time.Duration, f func()) Timer {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.seq++
	t := &fakeTimer{c: c, when: c.now.Add(d), seq: c.seq, f: f}
	c.timers = append(c.timers, t)
	return t
}

func (t *fakeTimer) Stop() bool {
	t.c.mu.Lock()
	defer t.c.mu.Unlock()
	if t.done {
		return false
	}
	t.done = true
	return true
}

// Advance moves the clock forward by d, running every timer that falls due
// on the way, each with the clock set to its deadline.
func (c *Fake) Advance(d time.Duration) { c.Set(c.Now().Add(d)) }

// Set moves the clock to t (never backwards), running due timers in order.
// Timers scheduled by those functions run too when they fall due by t.
func (c *Fake) Set(t time.Time) {
	for {
		c.mu.Lock()
		var next *fakeTimer
		live := c.timers[:0]
		for _, tm := range c.timers {
			if !tm.done {
				live = append(live, tm)
			}
		}
		c.timers = live
		sort.Slice(live, func(i, j int) bool {
			if !live[i].when.Equal(live[j].when) {
				return live[i].when.Before(live[j].when)
			}
			return live[i].seq < live[j].seq
		})
		if len(live) > 0 && !live[0].when.After(t) {
			next = live[0]
			next.done = true
			if next.when.After(c.now) {
				c.now = next.when
			}
		} else if t.After(c.now) {
			c.now = t
		}
		c.mu.Unlock()
		if next == nil {
			return
		}
		next.f()
	}
}

// Pending reports how many timers are scheduled and not yet run or stopped.
func (c *Fake) Pending() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, t := range c.timers {
		if !t.done {
			n++
		}
	}
	return n
}
