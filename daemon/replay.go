package daemon

import (
	"sync"
	"time"
)

// replayCache remembers accepted (user, block) pairs until their horizon
// (docs/PROTOCOL.md section 4.4). It is bounded: when full, the entry that
// expires first is dropped, which only shortens the protection of the
// oldest acceptance; legitimate traffic never comes near the bound.
type replayCache struct {
	mu  sync.Mutex
	m   map[replayKey]time.Time
	max int
}

type replayKey struct {
	user  string
	block [8]byte
}

const defaultReplayMax = 1 << 16

func newReplayCache(max int) *replayCache {
	return &replayCache{m: make(map[replayKey]time.Time), max: max}
}

// Seen reports whether (user, block) was accepted and its horizon has not
// passed at now.
func (c *replayCache) Seen(user string, block [8]byte, now time.Time) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	until, ok := c.m[replayKey{user, block}]
	return ok && !now.After(until)
}

// Add remembers (user, block) until until, dropping expired entries first
// when the cache is full.
func (c *replayCache) Add(user string, block [8]byte, until, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.m) >= c.max {
		c.pruneLocked(now)
	}
	for len(c.m) >= c.max {
		var oldest replayKey
		var t time.Time
		first := true
		for k, u := range c.m {
			if first || u.Before(t) {
				oldest, t, first = k, u, false
			}
		}
		delete(c.m, oldest)
	}
	k := replayKey{user, block}
	if old, ok := c.m[k]; !ok || until.After(old) {
		c.m[k] = until
	}
}

// Prune drops entries whose horizon passed.
func (c *replayCache) Prune(now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.pruneLocked(now)
}

func (c *replayCache) pruneLocked(now time.Time) {
	for k, u := range c.m {
		if now.After(u) {
			delete(c.m, k)
		}
	}
}

// Len returns the number of entries.
func (c *replayCache) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.m)
}

// Entries returns the live entries for the state file.
func (c *replayCache) Entries(now time.Time) []ReplayEntry {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]ReplayEntry, 0, len(c.m))
	for k, u := range c.m {
		if now.After(u) {
			continue
		}
		out = append(out, ReplayEntry{User: k.user, Block: blockHex(k.block), Until: u})
	}
	return out
}
