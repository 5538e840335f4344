// Package replay remembers accepted knock blocks so that none is accepted
// twice within its horizon (docs/PROTOCOL.md §4, rule 4): a sniffed sequence
// re-sent from any source, before or after a restart, opens nothing.
//
// An entry is the pair (key name, 8-byte ciphertext block) with the time
// until which it must be refused: in timed mode until every window that could
// decrypt the block has passed, in static mode a configured horizon. The
// daemon computes that time; this package only keeps it.
//
// Times are compared on the wall clock (the horizon of a timed key is defined
// by unix time, and entries are persisted across restarts). An entry is seen
// up to and including its until instant (failing closed at the boundary),
// and is gone right after it.
//
// A Cache is safe for concurrent use. Expired entries are pruned by one
// timer, re-armed for the earliest expiry, in bounded batches, and a little
// on every call; Seen never depends on pruning to be correct. The cache has
// no size bound: an entry exists only for a block that decrypted under a
// configured key and passed policy, so only key holders can add entries.
package replay

import (
	"container/heap"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"sort"
	"sync"
	"time"

	"github.com/knockdaemon/knock/internal/clock"
)

// pruneBatch bounds the entries one timer run removes; pruneOnAccess is how
// many expired entries each call removes along the way.
const (
	pruneBatch    = 1024
	pruneOnAccess = 2
)

type key struct {
	name  string
	block [8]byte
}

type item struct {
	until int64 // unix nanoseconds
	k     key
}

// expiries is a min-heap of entries by until. An entry extended by a later
// Add leaves a stale item behind, skipped when it surfaces.
type expiries []item

func (h expiries) Len() int           { return len(h) }
func (h expiries) Less(i, j int) bool { return h[i].until < h[j].until }
func (h expiries) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *expiries) Push(x any)        { *h = append(*h, x.(item)) }
func (h *expiries) Pop() any {
	old := *h
	it := old[len(old)-1]
	old[len(old)-1] = item{}
	*h = old[:len(old)-1]
	return it
}

// Cache is the replay cache. Create it with New.
type Cache struct {
	clk clock.Clock

	mu      sync.Mutex
	m       map[key]int64
	heap    expiries
	timer   clock.Timer
	timerAt int64
	armed   bool
	gen     uint64
	closed  bool
}

// New returns an empty cache timed by clk (nil: the wall clock).
func New(clk clock.Clock) *Cache {
	if clk == nil {
		clk = clock.Real{}
	}
	return &Cache{clk: clk, m: make(map[key]int64)}
}

// unixNano is t on the wall clock in nanoseconds, saturated to the int64
// range (beyond year 2262 counts as forever; before 1678 as long past).
func unixNano(t time.Time) int64 {
	switch {
	case t.Year() >= 2262:
		return math.MaxInt64
	case t.Year() <= 1678:
		return math.MinInt64
	}
	return t.UnixNano()
}

// Seen reports whether (name, block) was accepted and now is not after its
// until time.
func (c *Cache) Seen(name string, block [8]byte, now time.Time) bool {
	n := unixNano(now)
	clk := unixNano(c.clk.Now())
	c.mu.Lock()
	defer c.mu.Unlock()
	c.pruneLocked(clk, pruneOnAccess)
	until, ok := c.m[key{name, block}]
	return ok && n <= until
}

// Add records (name, block) as accepted until the given time. An existing
// entry keeps the later of the two times. An until before the cache's clock
// records nothing.
func (c *Cache) Add(name string, block [8]byte, until time.Time) {
	u := unixNano(until)
	now := unixNano(c.clk.Now())
	c.mu.Lock()
	defer c.mu.Unlock()
	c.pruneLocked(now, pruneOnAccess)
	c.addLocked(key{name, block}, u, now)
}

// Claim is Seen and Add in one step: if (name, block) is not seen at now it
// is recorded until the given time and Claim returns true; otherwise it
// returns false and changes nothing. Use it when two goroutines might accept
// the same block at once.
func (c *Cache) Claim(name string, block [8]byte, until, now time.Time) bool {
	n := unixNano(now)
	clk := unixNano(c.clk.Now())
	c.mu.Lock()
	defer c.mu.Unlock()
	c.pruneLocked(clk, pruneOnAccess)
	k := key{name, block}
	if old, ok := c.m[k]; ok && n <= old {
		return false
	}
	c.addLocked(k, unixNano(until), n)
	return true
}

func (c *Cache) addLocked(k key, until, now int64) {
	if until < now {
		return
	}
	if old, ok := c.m[k]; ok && old >= until {
		return
	}
	c.m[k] = until
	heap.Push(&c.heap, item{until, k})
	c.armLocked()
}

// Len returns the number of entries held, expired ones not yet pruned
// included.
func (c *Cache) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.m)
}

// Entry is the persisted form of one cache entry, for the daemon's state
// file (encoding/json: until is RFC 3339).
type Entry struct {
	Key   string    `json:"key"`
	Block string    `json:"block"` // 16 hexadecimal digits
	Until time.Time `json:"until"`
}

// Entries returns the entries still live on the cache's clock, ordered by
// until, then key, then block, with until in UTC.
func (c *Cache) Entries() []Entry {
	now := unixNano(c.clk.Now())
	c.mu.Lock()
	out := make([]Entry, 0, len(c.m))
	for k, u := range c.m {
		if now <= u {
			out = append(out, Entry{Key: k.name, Block: hex.EncodeToString(k.block[:]), Until: fromNano(u)})
		}
	}
	c.mu.Unlock()
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if !a.Until.Equal(b.Until) {
			return a.Until.Before(b.Until)
		}
		if a.Key != b.Key {
			return a.Key < b.Key
		}
		return a.Block < b.Block
	})
	return out
}

func fromNano(u int64) time.Time {
	if u == math.MaxInt64 {
		return time.Date(2262, 1, 1, 0, 0, 0, 0, time.UTC)
	}
	return time.Unix(0, u).UTC()
}

// Load adds persisted entries, skipping those already expired on the cache's
// clock. A malformed entry (a block that is not 16 hexadecimal digits, a zero
// until) is skipped and reported; every well-formed entry is loaded all the
// same, so that one bad line does not reopen the replay window for the rest.
func (c *Cache) Load(entries []Entry) error {
	now := unixNano(c.clk.Now())
	var errs []error
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, e := range entries {
		var block [8]byte
		if len(e.Block) != 2*len(block) {
			errs = append(errs, fmt.Errorf("replay: entry %d (key %q): block %q is not 16 hexadecimal digits", i, e.Key, e.Block))
			continue
		}
		if _, err := hex.Decode(block[:], []byte(e.Block)); err != nil {
			errs = append(errs, fmt.Errorf("replay: entry %d (key %q): block %q is not 16 hexadecimal digits", i, e.Key, e.Block))
			continue
		}
		if e.Until.IsZero() {
			errs = append(errs, fmt.Errorf("replay: entry %d (key %q): no until time", i, e.Key))
			continue
		}
		c.addLocked(key{e.Key, block}, unixNano(e.Until), now)
	}
	return errors.Join(errs...)
}

// Close stops the pruning timer. The cache still answers correctly
// afterwards; expired entries are then only pruned along the way.
func (c *Cache) Close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	if c.armed {
		c.timer.Stop()
		c.armed = false
	}
	c.gen++
}

// pruneLocked removes up to limit heap items that are due at now (the
// cache's clock, never a caller's time: pruning must not drop an entry the
// clock still holds live) or stale (left behind by an extension).
func (c *Cache) pruneLocked(now int64, limit int) {
	for ; len(c.heap) > 0 && limit > 0; limit-- {
		it := c.heap[0]
		if u, ok := c.m[it.k]; !ok || u != it.until {
			heap.Pop(&c.heap) // stale: the entry was extended
			continue
		}
		if it.until >= now {
			return // still seen at now
		}
		heap.Pop(&c.heap)
		delete(c.m, it.k)
	}
}

// armLocked keeps the one pruning timer set no later than the earliest
// expiry.
func (c *Cache) armLocked() {
	if c.closed || len(c.heap) == 0 {
		return
	}
	next := c.heap[0].until
	if next == math.MaxInt64 || (c.armed && c.timerAt <= next) {
		return // "forever" entries never expire; or armed early enough
	}
	if c.armed {
		c.timer.Stop()
	}
	c.gen++
	gen := c.gen
	d := time.Duration(0)
	if now := unixNano(c.clk.Now()); next >= now {
		d = time.Duration(next-now) + 1 // the first instant after until
	}
	c.timer = c.clk.AfterFunc(d, func() { c.fire(gen) })
	c.timerAt = next
	c.armed = true
}

func (c *Cache) fire(gen uint64) {
	now := unixNano(c.clk.Now())
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed || gen != c.gen {
		return
	}
	c.armed = false
	c.pruneLocked(now, pruneBatch)
	c.armLocked()
}
