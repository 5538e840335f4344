package hardening

import (
	"bytes"
	"context"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/knockdaemon/knock/cipher"
	"github.com/knockdaemon/knock/config"
	"github.com/knockdaemon/knock/daemon"
	"github.com/knockdaemon/knock/internal/clock"
	"github.com/knockdaemon/knock/internal/testbin"
	"github.com/knockdaemon/knock/logsource"
	"github.com/knockdaemon/knock/rules"
)

// The in-process daemon: the real daemon package on a fake clock, so that
// "closes on time" and "retried until it succeeds" are checked to the
// second without waiting minutes. The firewall behind it is real where the
// test says so.

// lineSource hands the test's lines to the daemon, stamped with the fake
// clock, and lets the test wait until each was handled.
type lineSource struct{ ch chan srcLine }

type srcLine struct {
	text string
	at   time.Time
	done chan struct{}
}

func (s *lineSource) Run(ctx context.Context, emit func(logsource.Line)) error {
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case l := <-s.ch:
			emit(logsource.Line{Text: []byte(l.text), Received: l.at})
			close(l.done)
		}
	}
}

func (s *lineSource) String() string { return "test lines" }

// syncBuf is a log sink safe for concurrent use.
type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuf) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuf) events(want map[string]string) []testbin.Event {
	return testbin.MatchEvents(strings.Split(b.String(), "\n"), want)
}

func (b *syncBuf) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

type inproc struct {
	t   *testing.T
	e   *env
	d   *daemon.Daemon
	clk *clock.Fake
	src *lineSource
	log *syncBuf
}

// startInproc runs the daemon package with the config conf (a file the
// env wrote), the env's key, backend be and a fake clock.
func (e *env) startInproc(conf string, be rules.Backend) *inproc {
	t := e.t
	t.Helper()
	c, err := config.Load(conf)
	if err != nil {
		t.Fatal(err)
	}
	ip := &inproc{t: t, e: e, clk: clock.NewFake(time.Now().Truncate(time.Second)),
		src: &lineSource{ch: make(chan srcLine)}, log: &syncBuf{}}
	ip.d, err = daemon.New(daemon.Options{Config: c, Keys: []cipher.Key{e.key}, Source: ip.src, Backend: be,
		Clock: ip.clk, Logger: slog.New(slog.NewJSONHandler(ip.log, &slog.HandlerOptions{Level: slog.LevelDebug})),
		NoControl: true, RetryMin: time.Second, RetryMax: 8 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- ip.d.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-errc:
		case <-time.After(90 * time.Second):
			t.Errorf("in-process daemon did not stop")
		}
		if t.Failed() {
			t.Logf("daemon log:\n%s", ip.log)
		}
	})
	for i := 0; len(ip.log.events(map[string]string{"msg": "knockdaemon running"})) == 0; i++ {
		select {
		case err := <-errc:
			t.Fatalf("daemon stopped at start: %v\n%s", err, ip.log)
		case <-time.After(10 * time.Millisecond):
		}
		if i > 3000 {
			t.Fatalf("daemon did not start:\n%s", ip.log)
		}
	}
	return ip
}

// feed hands lines to the daemon at the fake clock's now and waits until
// each has been handled.
func (ip *inproc) feed(lines ...string) {
	for _, l := range lines {
		sl := srcLine{text: l, at: ip.clk.Now(), done: make(chan struct{})}
		ip.src.ch <- sl
		<-sl.done
	}
}

// knock feeds a knock for req from src, sealed at the fake clock's now.
func (ip *inproc) knock(src netip.Addr, req cipher.Request) {
	ports, err := cipher.Encode(ip.e.key, req, ip.clk.Now(), 745)
	if err != nil {
		ip.t.Fatal(err)
	}
	var lines []string
	for _, p := range ports {
		ip.e.sport++
		lines = append(lines, ip.e.hitLine(src, ip.e.sport, p))
	}
	ip.feed(lines...)
}

func (ip *inproc) count(want map[string]string) int { return len(ip.log.events(want)) }
