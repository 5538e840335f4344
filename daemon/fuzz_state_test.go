package daemon_test

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/knockdaemon/knock/daemon"
	"github.com/knockdaemon/knock/grant"
	"github.com/knockdaemon/knock/internal/clock"
	"github.com/knockdaemon/knock/rules"
)

// FuzzDaemonState feeds arbitrary bytes to the daemon's state-file loader
// (daemon.LoadState, the file a restart trusts; issue 9) and then hands
// what it accepted to a grant manager, as a restart does. It checks that
// nothing panics, that an accepted state saves and loads back unchanged,
// and that a restore never leaves an opening in the firewall that is not a
// live, unexpired grant.
func FuzzDaemonState(f *testing.F) {
	f.Add([]byte(`{"version":1,"grants":[],"replay":[],"position":{"Path":"","Inode":0,"Offset":0}}`))
	// One file for the whole run: the fuzz function runs sequentially in
	// each worker process.
	path := filepath.Join(f.TempDir(), "state.json")
	f.Fuzz(func(t *testing.T, data []byte) {
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		st, err := daemon.LoadState(path)
		if err != nil {
			return
		}
		if st.Version != daemon.StateVersion {
			t.Fatalf("accepted version %d", st.Version)
		}
		b, err := json.Marshal(st)
		if err != nil {
			t.Fatalf("an accepted state does not marshal: %v", err)
		}
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
		again, err := daemon.LoadState(path)
		if err != nil {
			t.Fatalf("a saved state does not load back: %v\n%s", err, b)
		}
		b2, _ := json.Marshal(again)
		if !bytes.Equal(b, b2) {
			t.Fatalf("state changed on a save and load:\n%s\n%s", b, b2)
		}

		now := time.Date(2026, 11, 21, 6, 0, 0, 0, time.UTC)
		be := &memBackend{open: map[rules.Opening]bool{}}
		m, err := grant.New(grant.Config{Backend: be, Clock: clock.NewFake(now)})
		if err != nil {
			t.Fatal(err)
		}
		defer m.Stop()
		_ = m.Restore(context.Background(), st.Grants)
		live := map[grant.Key]bool{}
		for _, g := range m.List() {
			if g.State == grant.StateOpen {
				if !g.Expires.IsZero() && !g.Expires.After(now) {
					t.Fatalf("restored grant %+v is open past its time", g.Grant)
				}
				live[g.Key()] = true
			}
		}
		for o := range be.snapshot() {
			if !live[grant.Key{Addr: o.Addr, Proto: o.Proto, Port: o.Port}] {
				t.Fatalf("opening %v left in the firewall without a live grant", o)
			}
		}
	})
}

// memBackend is an in-memory firewall.
type memBackend struct {
	mu   sync.Mutex
	open map[rules.Opening]bool // Timeout zeroed
}

func (b *memBackend) Name() string                   { return "mem" }
func (b *memBackend) Check(context.Context) error    { return nil }
func (b *memBackend) Setup(context.Context) error    { return nil }
func (b *memBackend) Teardown(context.Context) error { return nil }
func (b *memBackend) Open(_ context.Context, o rules.Opening) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	o.Timeout = 0
	b.open[o] = true
	return nil
}
func (b *memBackend) Close(_ context.Context, o rules.Opening) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	o.Timeout = 0
	delete(b.open, o)
	return nil
}
func (b *memBackend) List(context.Context) ([]rules.Opening, error) {
	var out []rules.Opening
	for o := range b.snapshot() {
		out = append(out, o)
	}
	return out, nil
}
func (b *memBackend) snapshot() map[rules.Opening]bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	m := make(map[rules.Opening]bool, len(b.open))
	for o := range b.open {
		m[o] = true
	}
	return m
}
