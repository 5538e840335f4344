package state

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/knockdaemon/knock/internal/clock"
)

var t0 = time.Date(2026, 11, 21, 6, 0, 0, 0, time.UTC)

type pos struct {
	Version int   `json:"version"`
	Offset  int64 `json:"offset"`
}

func loadPos(t *testing.T, path string) (pos, error) {
	t.Helper()
	var p pos
	err := Load(path, &p)
	return p, err
}

func TestWriterCoalescesUpdatesWithinTheInterval(t *testing.T) {
	c := clock.NewFake(t0)
	path := filepath.Join(t.TempDir(), "state.json")
	w := NewWriter(path, pos{Version: 1}, WriterOptions{Clock: c, Interval: time.Second})
	for i := 1; i <= 1000; i++ {
		w.Update(func(p *pos) { p.Offset = int64(i) })
	}
	if c.Pending() != 1 {
		t.Fatalf("%d timers pending after 1000 updates, want 1", c.Pending())
	}
	c.Advance(time.Second - time.Nanosecond)
	if _, err := loadPos(t, path); !errors.Is(err, ErrNotFound) {
		t.Fatalf("written before the interval passed (err = %v)", err)
	}
	c.Advance(time.Nanosecond)
	if p, err := loadPos(t, path); err != nil || p.Offset != 1000 {
		t.Fatalf("after the interval: %+v, %v; want offset 1000", p, err)
	}
	if c.Pending() != 0 {
		t.Fatalf("%d timers pending with nothing to write", c.Pending())
	}
	// A steady stream writes once per interval, not once per update.
	w.Update(func(p *pos) { p.Offset = 1001 })
	c.Advance(500 * time.Millisecond)
	w.Update(func(p *pos) { p.Offset = 1002 })
	c.Advance(499 * time.Millisecond)
	if p, _ := loadPos(t, path); p.Offset != 1000 {
		t.Fatalf("offset %d on disk 999ms after the first change, want 1000", p.Offset)
	}
	c.Advance(time.Millisecond)
	if p, _ := loadPos(t, path); p.Offset != 1002 {
		t.Fatalf("offset %d on disk 1s after the first change, want 1002", p.Offset)
	}
}

func TestWriterUpdateNowWritesBeforeReturning(t *testing.T) {
	c := clock.NewFake(t0)
	path := filepath.Join(t.TempDir(), "state.json")
	w := NewWriter(path, pos{Version: 1}, WriterOptions{Clock: c})
	w.Update(func(p *pos) { p.Offset = 5 })
	if err := w.UpdateNow(func(p *pos) { p.Version = 2 }); err != nil {
		t.Fatal(err)
	}
	if p, err := loadPos(t, path); err != nil || p != (pos{Version: 2, Offset: 5}) {
		t.Fatalf("on disk %+v, %v; want both changes", p, err)
	}
	if c.Pending() != 0 {
		t.Fatalf("delayed write still pending after everything was written")
	}
}

// The directory is missing (as if the state directory were unmounted):
// writes fail, the failures are reported with backoff, and the state is
// written as soon as the directory is back.
func TestWriterRetriesFailedWritesWithBackoff(t *testing.T) {
	c := clock.NewFake(t0)
	dir := filepath.Join(t.TempDir(), "lib")
	path := filepath.Join(dir, "state.json")
	var failedAt []time.Duration
	recovered := 0
	w := NewWriter(path, pos{Version: 1}, WriterOptions{
		Clock:     c,
		Interval:  time.Second,
		MaxRetry:  8 * time.Second,
		OnError:   func(err error) { failedAt = append(failedAt, c.Now().Sub(t0)) },
		OnRecover: func() { recovered++ },
	})
	w.Update(func(p *pos) { p.Offset = 1 })
	c.Advance(30 * time.Second)
	want := []time.Duration{1, 2, 4, 8, 16, 24}
	if len(failedAt) != len(want) {
		t.Fatalf("failures at %v, want at %v seconds", failedAt, want)
	}
	for i := range want {
		if failedAt[i] != want[i]*time.Second {
			t.Fatalf("failures at %v, want at %v seconds", failedAt, want)
		}
	}
	// A change during the outage does not hammer the disk: it waits for
	// the retry that is already scheduled (at 32s).
	w.Update(func(p *pos) { p.Offset = 2 })
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	c.Advance(time.Second) // 31s
	if _, err := loadPos(t, path); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("written before the scheduled retry: %v", err)
	}
	c.Advance(time.Second) // 32s
	if p, err := loadPos(t, path); err != nil || p.Offset != 2 {
		t.Fatalf("after the retry: %+v, %v; want offset 2", p, err)
	}
	if recovered != 1 || len(failedAt) != 6 {
		t.Fatalf("recovered %d times after %d failures, want 1 after 6", recovered, len(failedAt))
	}
	if c.Pending() != 0 {
		t.Fatalf("%d timers pending after recovery", c.Pending())
	}
}

func TestWriterUpdateNowReportsFailureAndKeepsTheChange(t *testing.T) {
	c := clock.NewFake(t0)
	dir := filepath.Join(t.TempDir(), "lib")
	path := filepath.Join(dir, "state.json")
	w := NewWriter(path, pos{Version: 1}, WriterOptions{Clock: c, Interval: time.Second})
	if err := w.UpdateNow(func(p *pos) { p.Offset = 3 }); err == nil {
		t.Fatal("UpdateNow into a missing directory succeeded")
	}
	var inMem pos
	w.View(func(p *pos) { inMem = *p })
	if inMem.Offset != 3 {
		t.Fatalf("change lost from memory after a failed write: %+v", inMem)
	}
	os.Mkdir(dir, 0o700)
	c.Advance(time.Second) // the background retry
	if p, err := loadPos(t, path); err != nil || p.Offset != 3 {
		t.Fatalf("after the retry: %+v, %v", p, err)
	}
}

func TestWriterCloseFlushesAndStopsTimers(t *testing.T) {
	c := clock.NewFake(t0)
	path := filepath.Join(t.TempDir(), "state.json")
	w := NewWriter(path, pos{Version: 1}, WriterOptions{Clock: c})
	w.Update(func(p *pos) { p.Offset = 9 })
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if p, err := loadPos(t, path); err != nil || p.Offset != 9 {
		t.Fatalf("after Close: %+v, %v", p, err)
	}
	w.Update(func(p *pos) { p.Offset = 10 })
	if c.Pending() != 0 {
		t.Fatal("Update after Close scheduled a write")
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	if p, _ := loadPos(t, path); p.Offset != 10 {
		t.Fatalf("Flush after Close wrote %+v", p)
	}
}

func TestWriterConcurrentUse(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.json")
	w := NewWriter(path, pos{Version: 1}, WriterOptions{Interval: time.Millisecond})
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 200 {
				if i%50 == 0 {
					if err := w.UpdateNow(func(p *pos) { p.Offset++ }); err != nil {
						t.Error(err)
					}
					continue
				}
				w.Update(func(p *pos) { p.Offset++ })
				if g == 0 {
					w.View(func(p *pos) { _ = p.Offset })
				}
			}
		}()
	}
	wg.Wait()
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if p, err := loadPos(t, path); err != nil || p.Offset != 800 {
		t.Fatalf("final state %+v, %v; want offset 800", p, err)
	}
}

// BenchmarkSave measures one durable write of a state with 1000 replay
// entries (two fsyncs and a rename).
func BenchmarkSave(b *testing.B) {
	s := sample()
	s.Replay = map[string]string{}
	for i := range 1000 {
		s.Replay[fmt.Sprintf("alice/%016x", i)] = "2026-11-21T06:00:00Z"
	}
	path := filepath.Join(b.TempDir(), "state.json")
	for b.Loop() {
		if err := Save(path, s); err != nil {
			b.Fatal(err)
		}
	}
}
