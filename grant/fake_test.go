package grant

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/knockdaemon/knock/internal/clock"
	"github.com/knockdaemon/knock/rules"
)

var t0 = time.Date(2026, 11, 21, 6, 0, 0, 0, time.UTC)

// call is one backend call as the fake saw it.
type call struct {
	Op      string // "open", "close", "list"
	Key     Key
	Timeout time.Duration
	At      time.Duration // since t0
}

func (c call) String() string {
	return fmt.Sprintf("%s %s timeout=%v at=%v", c.Op, c.Key, c.Timeout, c.At)
}

// fakeBackend is a firewall in memory: it records every call, holds the
// openings, and fails on script.
type fakeBackend struct {
	clock clock.Clock

	mu        sync.Mutex
	calls     []call
	openings  map[Key]rules.Opening
	failOpen  map[Key]int // the next n Opens of key fail; -1: all
	halfOpen  bool        // a failing Open still applies the opening
	failClose map[Key]int // the next n Closes of key fail; -1: all
	listErr   error
	flaky     func(op string) bool // when set and true, the call fails
	gate      chan struct{}        // when set, Close waits for it (a hung firewall command)
	extra     []rules.Opening      // reported by List besides the openings
}

func newFakeBackend(c clock.Clock) *fakeBackend {
	return &fakeBackend{clock: c, openings: map[Key]rules.Opening{}, failOpen: map[Key]int{}, failClose: map[Key]int{}}
}

func (b *fakeBackend) Name() string                       { return "fake" }
func (b *fakeBackend) Check(ctx context.Context) error    { return nil }
func (b *fakeBackend) Setup(ctx context.Context) error    { return nil }
func (b *fakeBackend) Teardown(ctx context.Context) error { return nil }

func okey(o rules.Opening) Key { return Key{Addr: o.Addr, Proto: o.Proto, Port: o.Port} }

func (b *fakeBackend) record(op string, o rules.Opening) {
	b.calls = append(b.calls, call{Op: op, Key: okey(o), Timeout: o.Timeout, At: b.clock.Now().Sub(t0)})
}

func fail(m map[Key]int, k Key) bool {
	switch n := m[k]; {
	case n < 0:
		return true
	case n > 0:
		m[k] = n - 1
		return true
	}
	return false
}

func (b *fakeBackend) Open(ctx context.Context, o rules.Opening) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.record("open", o)
	if fail(b.failOpen, okey(o)) || (b.flaky != nil && b.flaky("open")) {
		if b.halfOpen {
			b.openings[okey(o)] = o
		}
		return errors.New("iptables: exit status 4: Resource temporarily unavailable")
	}
	b.openings[okey(o)] = o
	return nil
}

func (b *fakeBackend) Close(ctx context.Context, o rules.Opening) error {
	b.mu.Lock()
	gate := b.gate
	b.mu.Unlock()
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.record("close", o)
	if fail(b.failClose, okey(o)) || (b.flaky != nil && b.flaky("close")) {
		return errors.New("iptables: exit status 4: xtables lock busy")
	}
	delete(b.openings, okey(o))
	return nil
}

func (b *fakeBackend) List(ctx context.Context) ([]rules.Opening, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.calls = append(b.calls, call{Op: "list", At: b.clock.Now().Sub(t0)})
	if b.listErr != nil {
		return nil, b.listErr
	}
	out := slices.Clone(b.extra)
	for _, o := range b.openings {
		out = append(out, o)
	}
	return out, nil
}

func (b *fakeBackend) setFailClose(k Key, n int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.failClose[k] = n
}

func (b *fakeBackend) setFailOpen(k Key, n int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.failOpen[k] = n
}

// takeCalls returns the calls since the last takeCalls.
func (b *fakeBackend) takeCalls() []call {
	b.mu.Lock()
	defer b.mu.Unlock()
	c := b.calls
	b.calls = nil
	return c
}

func (b *fakeBackend) has(k Key) (rules.Opening, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	o, ok := b.openings[k]
	return o, ok
}

func (b *fakeBackend) setFlaky(f func(op string) bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.flaky = f
}

func (b *fakeBackend) keys() []Key {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []Key
	for k := range b.openings {
		out = append(out, k)
	}
	slices.SortFunc(out, compareKeys)
	return out
}

func (b *fakeBackend) count() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.openings)
}

// harness is a Manager on a fake clock and a fake backend, recording
// persisted snapshots and log records.
type harness struct {
	t       *testing.T
	clock   *clock.Fake
	backend *fakeBackend
	m       *Manager
	logs    *lockedBuffer

	mu         sync.Mutex
	snapshots  [][]Grant
	persistErr error
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// events returns the event= values logged, in order.
func (l *lockedBuffer) events() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, line := range strings.Split(strings.TrimSpace(l.b.String()), "\n") {
		var rec map[string]any
		if json.Unmarshal([]byte(line), &rec) != nil {
			continue
		}
		if ev, ok := rec["event"].(string); ok {
			if r, ok := rec["reason"].(string); ok {
				ev += "/" + r
			}
			out = append(out, ev)
		}
	}
	return out
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	h := &harness{t: t, clock: clock.NewFake(t0), logs: &lockedBuffer{}}
	h.backend = newFakeBackend(h.clock)
	m, err := New(Config{
		Backend: h.backend,
		Clock:   h.clock,
		Logger:  slog.New(slog.NewJSONHandler(h.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Persist: func(g []Grant) error {
			h.mu.Lock()
			defer h.mu.Unlock()
			h.snapshots = append(h.snapshots, g)
			return h.persistErr
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	h.m = m
	t.Cleanup(m.Stop)
	return h
}

func (h *harness) takeSnapshots() [][]Grant {
	h.mu.Lock()
	defer h.mu.Unlock()
	s := h.snapshots
	h.snapshots = nil
	return s
}

// at moves the fake clock to t0+d.
func (h *harness) at(d time.Duration) { h.clock.Set(t0.Add(d)) }

func (h *harness) open(k Key, minutes uint8) (Event, Grant) {
	h.t.Helper()
	ev, g, err := h.m.Open(context.Background(), k, "alice", minutes)
	if err != nil {
		h.t.Fatalf("Open(%s, %d): %v", k, minutes, err)
	}
	return ev, g
}

func key(addr string, proto string, port uint16) Key {
	return Key{Addr: netip.MustParseAddr(addr), Proto: proto, Port: port}
}

var (
	ssh   = key("198.18.0.2", "tcp", 22)
	wg    = key("fd00:6b6e::2", "udp", 51820)
	https = key("198.18.0.3", "tcp", 443)
)

func wantCalls(t *testing.T, got []call, want ...call) {
	t.Helper()
	if !slices.Equal(got, want) {
		t.Fatalf("backend calls:\n%s\nwant:\n%s", joinCalls(got), joinCalls(want))
	}
}

func joinCalls(cs []call) string {
	var b strings.Builder
	for _, c := range cs {
		b.WriteString("  " + c.String() + "\n")
	}
	if len(cs) == 0 {
		b.WriteString("  (none)\n")
	}
	return b.String()
}
