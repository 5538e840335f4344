package daemon

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/knockdaemon/knock/cipher"
	"github.com/knockdaemon/knock/internal/clock"
	"github.com/knockdaemon/knock/replay"
	"github.com/knockdaemon/knock/rules"
	"github.com/knockdaemon/knock/state"
)

// copyState copies the state file and the journal of dir, as they are on
// disk now, to a new directory.
func copyState(t *testing.T, dir string) string {
	t.Helper()
	snap := t.TempDir()
	for _, name := range []string{"state.json", "state.json.journal"} {
		data, err := os.ReadFile(filepath.Join(dir, name))
		if os.IsNotExist(err) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(snap, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return snap
}

// The replay entry of an accepted knock is durable before the firewall
// changes, through one journal append instead of a write of the whole
// state file: a daemon that crashed the moment the rule went in (its
// disk copied in the backend's Open) refuses the same sequence after a
// restart. The state file absorbs the journal later (here: with the
// grant), and the journal is then emptied.
func TestReplayJournalBeforeTheRule(t *testing.T) {
	dir := t.TempDir()
	clk := clock.NewFake(t0)
	be := newFakeBackend()
	h := newHarness(t, dir, be, clk)
	if h.d.journal == nil {
		t.Fatalf("no journal opened:\n%s", h.log)
	}
	var snap string
	be.onOpen = func(rules.Opening) {
		if snap == "" {
			snap = copyState(t, dir)
		}
	}
	seq := h.sequence(h.keys[alice], "203.0.113.9", cipher.Request{Port: 22, Time: 1})
	for _, l := range seq {
		h.feed(l)
	}
	h.wantOpen("203.0.113.9 tcp/22")
	if snap == "" {
		t.Fatal("the backend was not called")
	}

	// At the moment of the open: the entry is in the journal, and the
	// whole state file was not rewritten for it.
	recs, _, err := state.ReadJournal[replay.Entry](filepath.Join(snap, "state.json.journal"))
	if err != nil || len(recs) != 1 || recs[0].Key != "alice" || len(recs[0].Block) != 16 || recs[0].Until.IsZero() {
		t.Fatalf("journal when the rule went in: %+v, %v; want the one replay entry", recs, err)
	}
	if st, err := LoadState(filepath.Join(snap, "state.json")); err != nil || len(st.Replay) != 0 {
		t.Fatalf("state file when the rule went in: %d replay entries, %v; want it not rewritten", len(st.Replay), err)
	}

	// After the open the grant was written with the whole state, which
	// absorbed the journal.
	if st, err := LoadState(filepath.Join(dir, "state.json")); err != nil || len(st.Replay) != 1 || len(st.Grants) != 1 {
		t.Fatalf("state file after the open: %+v, %v", st, err)
	}
	if fi, err := os.Stat(filepath.Join(dir, "state.json.journal")); err != nil || fi.Size() != 0 {
		t.Fatalf("journal after the state write: %v, %v; want empty", fi, err)
	}

	// Restart from the disk as it was when the rule went in.
	h.d.grants.Stop()
	clk.Advance(30 * time.Second)
	h2 := newHarness(t, snap, newFakeBackend(), clk)
	for _, l := range seq {
		h2.feed(l)
	}
	h2.wantOpen()
	if h2.log.count("event=rejected", "reason=replay", "src=203.0.113.9") != 1 {
		t.Errorf("no replay rejection after a crash at the open:\n%s", h2.log)
	}
}

// Without a usable journal (its file cannot be opened) the daemon writes
// the whole state file before the rule, as before.
func TestReplayWithoutJournalWritesStateFirst(t *testing.T) {
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "state.json.journal"), 0o700); err != nil {
		t.Fatal(err)
	}
	be := newFakeBackend()
	h := newHarness(t, dir, be, nil)
	if h.d.journal != nil || h.log.count("cannot open the replay journal") != 1 {
		t.Fatalf("journal opened on a directory:\n%s", h.log)
	}
	var replayOnDisk int
	be.onOpen = func(rules.Opening) {
		st, err := LoadState(filepath.Join(dir, "state.json"))
		if err == nil {
			replayOnDisk = len(st.Replay)
		}
	}
	h.knock(h.keys[alice], "203.0.113.9", cipher.Request{Port: 22, Time: 1})
	h.wantOpen("203.0.113.9 tcp/22")
	if replayOnDisk != 1 {
		t.Fatalf("state file held %d replay entries when the rule went in, want 1", replayOnDisk)
	}
}
