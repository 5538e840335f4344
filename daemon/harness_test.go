package daemon

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/knockdaemon/knock/cipher"
	"github.com/knockdaemon/knock/config"
	"github.com/knockdaemon/knock/internal/clock"
	"github.com/knockdaemon/knock/logsource"
	"github.com/knockdaemon/knock/rules"
)

// fakeBackend is an in-memory firewall that can be told to fail.
type fakeBackend struct {
	mu         sync.Mutex
	open       map[string]rules.Opening
	failOpen   int // fail this many Opens
	failClose  int // fail this many Closes
	opens      int
	closes     int
	closeCalls int
	// onOpen, when set, runs at the start of every Open (what is on disk
	// when the firewall changes).
	onOpen func(rules.Opening)
}

func newFakeBackend() *fakeBackend { return &fakeBackend{open: map[string]rules.Opening{}} }

func okey(o rules.Opening) string { return fmt.Sprintf("%s %s/%d", o.Addr.Unmap(), o.Proto, o.Port) }

func (b *fakeBackend) Name() string                   { return "fake" }
func (b *fakeBackend) Check(context.Context) error    { return nil }
func (b *fakeBackend) Setup(context.Context) error    { return nil }
func (b *fakeBackend) Teardown(context.Context) error { return nil }
func (b *fakeBackend) Open(_ context.Context, o rules.Opening) error {
	if b.onOpen != nil {
		b.onOpen(o)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.failOpen > 0 {
		b.failOpen--
		return errors.New("fake: open failed")
	}
	b.opens++
	b.open[okey(o)] = o
	return nil
}
func (b *fakeBackend) Close(_ context.Context, o rules.Opening) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.closeCalls++
	if b.failClose > 0 {
		b.failClose--
		return errors.New("fake: xtables lock busy")
	}
	b.closes++
	delete(b.open, okey(o))
	return nil
}
func (b *fakeBackend) List(context.Context) ([]rules.Opening, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []rules.Opening
	for _, o := range b.open {
		out = append(out, o)
	}
	return out, nil
}

// openings lists the open keys, sorted.
func (b *fakeBackend) openings() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []string
	for k := range b.open {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func (b *fakeBackend) timeout(k string) time.Duration {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.open[k].Timeout
}

// logBuf is a concurrency-safe log sink.
type logBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// count returns how many log lines contain every one of parts.
func (l *logBuf) count(parts ...string) int {
	n := 0
	for _, line := range strings.Split(l.String(), "\n") {
		ok := line != ""
		for _, p := range parts {
			ok = ok && strings.Contains(line, p)
		}
		if ok {
			n++
		}
	}
	return n
}

// nullSource never emits; tests feed lines with feed.
type nullSource struct{}

func (nullSource) Run(ctx context.Context, emit func(logsource.Line)) error {
	<-ctx.Done()
	return ctx.Err()
}
func (nullSource) String() string { return "test" }

var t0 = time.Date(2026, 11, 21, 6, 0, 0, 0, time.UTC)

type harness struct {
	t       testing.TB
	d       *Daemon
	clk     *clock.Fake
	be      *fakeBackend
	log     *logBuf
	cfg     *config.Config
	keys    []cipher.Key
	dir     string
	sport   uint16
	restore State
}

const baseConfig = `
[daemon]
state_file = "%s/state.json"
control_socket = "%s/control.sock"
[knock]
lockout_failures = 3
lockout = "60s"
[[user]]
name = "alice"
key_file = "/unused"
ports = ["22", "8000-8010"]
max_minutes = 60
[[user]]
name = "bob"
key_file = "/unused"
ports = ["443"]
protocol = "both"
allow_unlimited = true
delegate_to = ["198.51.100.0/24"]
sources = ["203.0.113.0/24"]
`

func testKeys() []cipher.Key {
	return []cipher.Key{
		{Name: "alice", Secret: [32]byte{1, 2, 3}, Mode: cipher.Timed},
		{Name: "bob", Secret: [32]byte{4, 5, 6}, Mode: cipher.Timed},
	}
}

func loadTestConfig(t testing.TB, dir, extra string) *config.Config {
	t.Helper()
	doc := fmt.Sprintf(baseConfig, dir, dir) + extra
	c, err := config.Parse(filepath.Join(dir, "knock.toml"), []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// newHarness builds a daemon whose state lives in dir (a fresh temp dir
// when empty) and restores its state as Run would, without running a
// source: lines are fed with feed.
func newHarness(t testing.TB, dir string, be *fakeBackend, clk *clock.Fake) *harness {
	t.Helper()
	return newHarnessExtra(t, dir, be, clk, "")
}

// newHarnessExtra is newHarness with extra TOML appended to the config.
func newHarnessExtra(t testing.TB, dir string, be *fakeBackend, clk *clock.Fake, extra string) *harness {
	t.Helper()
	return newHarnessLogger(t, dir, be, clk, extra, nil)
}

// newHarnessLogger is newHarnessExtra with the daemon's logger: nil logs
// text at debug level to h.log.
func newHarnessLogger(t testing.TB, dir string, be *fakeBackend, clk *clock.Fake, extra string, logger *slog.Logger) *harness {
	t.Helper()
	if dir == "" {
		dir = t.TempDir()
	}
	if be == nil {
		be = newFakeBackend()
	}
	if clk == nil {
		clk = clock.NewFake(t0)
	}
	h := &harness{t: t, clk: clk, be: be, log: &logBuf{}, dir: dir, sport: 40000, keys: testKeys()}
	h.cfg = loadTestConfig(t, dir, extra)
	if logger == nil {
		logger = slog.New(slog.NewTextHandler(h.log, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	d, err := New(Options{Config: h.cfg, Keys: h.keys, Source: nullSource{}, Backend: be, Clock: clk,
		Logger: logger, NoControl: true})
	if err != nil {
		t.Fatal(err)
	}
	h.d = d
	st, err := d.restoreState()
	if err != nil {
		t.Fatal(err)
	}
	if err := d.grants.Restore(context.Background(), st.Grants); err != nil {
		t.Fatal(err)
	}
	d.openJournal() // as Run does once the firewall is set up
	h.restore = st
	t.Cleanup(func() {
		d.grants.Stop()
		d.asm.Close()
		d.replay.Close()
		_ = d.sw.Close()
		if d.journal != nil {
			d.journal.Close()
		}
	})
	return h
}

// line is a kernel LOG line for one packet.
func line(src string, proto string, sport, dport uint16, flags string) string {
	if strings.Contains(src, ":") {
		return fmt.Sprintf("Nov 21 06:00:00 host kernel: [  488.204357] knock: IN=eth0 OUT= MAC=00:00:00:00:00:01:00:00:00:00:00:02:86:dd SRC=%s DST=2001:0db8:0000:0000:0000:0000:0000:0001 LEN=80 TC=0 HOPLIMIT=64 FLOWLBL=0 PROTO=%s SPT=%d DPT=%d WINDOW=64800 RES=0x00 %s URGP=0",
			src, proto, sport, dport, flags)
	}
	return fmt.Sprintf("Nov 21 06:00:00 host kernel: [  488.204357] knock: IN=eth0 OUT= MAC=00:00:00:00:00:01:00:00:00:00:00:02:08:00 SRC=%s DST=203.0.113.5 LEN=60 TOS=0x00 PREC=0x00 TTL=64 ID=1 DF PROTO=%s SPT=%d DPT=%d WINDOW=64240 RES=0x00 %s URGP=0",
		src, proto, sport, dport, flags)
}

func (h *harness) feed(text string) {
	h.d.handleLine(logsource.Line{Text: []byte(text), Received: h.clk.Now()})
}

// sequence returns the 8 knock lines for req sealed with key k now.
func (h *harness) sequence(k cipher.Key, src string, req cipher.Request) []string {
	h.t.Helper()
	ports, err := cipher.Encode(k, req, h.clk.Now(), 745)
	if err != nil {
		h.t.Fatal(err)
	}
	var out []string
	for _, p := range ports {
		h.sport++
		out = append(out, line(src, "TCP", h.sport, p, "SYN"))
	}
	return out
}

func (h *harness) knock(k cipher.Key, src string, req cipher.Request) {
	h.t.Helper()
	for _, l := range h.sequence(k, src, req) {
		h.feed(l)
	}
}

func (h *harness) wantOpen(want ...string) {
	h.t.Helper()
	got := h.be.openings()
	if strings.Join(got, ",") != strings.Join(want, ",") {
		h.t.Fatalf("firewall openings = %q, want %q\nlog:\n%s", got, want, h.log)
	}
}

func addr(s string) netip.Addr { return netip.MustParseAddr(s) }

func rulesOpening(a, proto string, port uint16) rules.Opening {
	return rules.Opening{Addr: addr(a), Proto: proto, Port: port}
}
