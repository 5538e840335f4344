package state

import (
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

type rec struct {
	Key   string    `json:"key"`
	Block string    `json:"block"`
	Until time.Time `json:"until"`
}

func recN(i int) rec {
	return rec{Key: "alice", Block: strings.Repeat(string(rune('a'+i%26)), 16), Until: time.Date(2026, 11, 21, 7, i, 0, 0, time.UTC)}
}

func openJ(t *testing.T, path string) (*Journal[rec], []rec, JournalInfo) {
	t.Helper()
	j, recs, info, err := OpenJournal[rec](path)
	if err != nil {
		t.Fatalf("OpenJournal: %v", err)
	}
	t.Cleanup(func() { j.Close() })
	return j, recs, info
}

func appendAll(t *testing.T, j *Journal[rec], rs ...rec) {
	t.Helper()
	for _, r := range rs {
		if err := j.Append(r); err != nil {
			t.Fatalf("Append: %v", err)
		}
	}
}

func TestJournalRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "replay.journal")
	j, recs, info := openJ(t, path)
	if len(recs) != 0 || info != (JournalInfo{}) {
		t.Fatalf("new journal: %v, %+v", recs, info)
	}
	want := []rec{recN(0), recN(1), recN(2)}
	appendAll(t, j, want...)
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	if err := j.Append(recN(3)); err == nil {
		t.Fatal("Append after Close succeeded")
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("journal file: %v, %v; want mode 0600", fi, err)
	}
	_, got, info := openJ(t, path)
	if !reflect.DeepEqual(got, want) || info.Records != 3 || info.Torn || info.Damaged != 0 {
		t.Fatalf("reopened: %v %+v, want %v", got, info, want)
	}
	// One line per record: CRC, space, JSON.
	data, _ := os.ReadFile(path)
	lines := strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
	if len(lines) != 3 || len(lines[0]) < 10 || lines[0][8] != ' ' || lines[0][9] != '{' {
		t.Fatalf("file format:\n%s", data)
	}
}

// A crash in the middle of an append leaves a partial last line (or a
// whole line with a bad checksum): it is ignored, cut off at open, and
// the next record is read back whole.
func TestJournalTornTail(t *testing.T) {
	good := []rec{recN(0), recN(1)}
	full, err := appendRecord(nil, recN(2))
	if err != nil {
		t.Fatal(err)
	}
	flipped := slices.Clone(full)
	flipped[len(flipped)-5] ^= 0x01
	for name, tail := range map[string][]byte{
		"half a record":              full[:len(full)/2],
		"all but the newline":        full[:len(full)-1],
		"checksum mismatch":          flipped,
		"zeros (preallocated block)": make([]byte, 37),
		"only the checksum":          full[:8],
	} {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "j")
			j, _, _ := openJ(t, path)
			appendAll(t, j, good...)
			j.Close()
			f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
			if err != nil {
				t.Fatal(err)
			}
			f.Write(tail)
			f.Close()

			got, info, err := ReadJournal[rec](path)
			if err != nil || !reflect.DeepEqual(got, good) || !info.Torn || info.Damaged != 0 {
				t.Fatalf("ReadJournal = %v, %+v, %v; want the two good records and Torn", got, info, err)
			}
			j2, got, info := openJ(t, path)
			if !reflect.DeepEqual(got, good) || !info.Torn {
				t.Fatalf("OpenJournal = %v, %+v", got, info)
			}
			appendAll(t, j2, recN(3))
			j2.Close()
			got, info, err = ReadJournal[rec](path)
			if want := append(slices.Clone(good), recN(3)); err != nil || !reflect.DeepEqual(got, want) || info.Torn {
				t.Fatalf("after the next append: %v, %+v, %v; want %v", got, info, err, want)
			}
		})
	}
}

// A damaged record in the middle (not a crash: bit rot, an editor) is
// skipped and counted; the records around it survive.
func TestJournalDamagedMiddle(t *testing.T) {
	path := filepath.Join(t.TempDir(), "j")
	j, _, _ := openJ(t, path)
	appendAll(t, j, recN(0), recN(1), recN(2))
	j.Close()
	data, _ := os.ReadFile(path)
	i := strings.Index(string(data), "\n") + 12
	data[i] ^= 0x20
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	got, info, err := ReadJournal[rec](path)
	if err != nil || !reflect.DeepEqual(got, []rec{recN(0), recN(2)}) || info.Damaged != 1 || info.Torn {
		t.Fatalf("ReadJournal = %v, %+v, %v", got, info, err)
	}
}

func TestJournalMissingIsEmpty(t *testing.T) {
	got, info, err := ReadJournal[rec](filepath.Join(t.TempDir(), "nope"))
	if err != nil || got != nil || info != (JournalInfo{}) {
		t.Fatalf("missing journal: %v %+v %v", got, info, err)
	}
	if _, _, _, err := OpenJournal[rec](t.TempDir()); err == nil {
		t.Fatal("OpenJournal of a directory succeeded")
	}
	big := filepath.Join(t.TempDir(), "big")
	if err := os.WriteFile(big, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(big, MaxSize+1); err != nil {
		t.Fatal(err)
	}
	if _, _, err := ReadJournal[rec](big); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Fatalf("ReadJournal of an oversized file = %v, want a refusal", err)
	}
}

// Compact keeps what was appended after the mark; a compaction to the
// end empties the file.
func TestJournalCompact(t *testing.T) {
	path := filepath.Join(t.TempDir(), "j")
	j, _, _ := openJ(t, path)
	if err := j.Compact(j.Mark()); err != nil {
		t.Fatalf("Compact of an empty journal: %v", err)
	}
	appendAll(t, j, recN(0), recN(1))
	mark := j.Mark()
	appendAll(t, j, recN(2))
	if err := j.Compact(mark); err != nil {
		t.Fatal(err)
	}
	got, _, _ := ReadJournal[rec](path)
	if !reflect.DeepEqual(got, []rec{recN(2)}) {
		t.Fatalf("after Compact(mark): %v, want only the later record", got)
	}
	appendAll(t, j, recN(3)) // the new file is the one appended to
	got, _, _ = ReadJournal[rec](path)
	if !reflect.DeepEqual(got, []rec{recN(2), recN(3)}) {
		t.Fatalf("append after compaction: %v", got)
	}
	if err := j.Compact(j.Mark()); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Size() != 0 {
		t.Fatalf("after compacting everything: %v %v", fi, err)
	}
	if err := j.Compact(j.Mark() + 1); err == nil {
		t.Fatal("Compact beyond the end succeeded")
	}
	entries, _ := os.ReadDir(filepath.Dir(path))
	if len(entries) != 1 {
		t.Fatalf("files left beside the journal: %v", entries)
	}
}

// The daemon's sequence with a Writer: the change goes into the state
// (Update), then into the journal (Append); the Writer's write absorbs it
// and compacts. A crash at any step loses nothing: the state file, then
// the journal, loaded in that order, hold every record (duplicates are
// harmless).
func TestJournalWithWriterCrashBetweenSteps(t *testing.T) {
	type st struct {
		Replay []rec `json:"replay"`
	}
	load := func(t *testing.T, statePath, jPath string) map[rec]bool {
		t.Helper()
		var s st
		if err := Load(statePath, &s); err != nil && !strings.Contains(err.Error(), "not found") {
			t.Fatal(err)
		}
		recs, _, err := ReadJournal[rec](jPath)
		if err != nil {
			t.Fatal(err)
		}
		all := map[rec]bool{}
		for _, r := range append(s.Replay, recs...) {
			all[r] = true
		}
		return all
	}
	dir := t.TempDir()
	statePath, jPath := filepath.Join(dir, "state.json"), filepath.Join(dir, "replay.journal")
	j, _, _ := openJ(t, jPath)
	w := NewWriter(statePath, st{}, WriterOptions{Interval: time.Hour, Journal: j})
	defer w.Close()
	accept := func(r rec) {
		w.Update(func(s *st) { s.Replay = append(s.Replay, r) })
		if err := j.Append(r); err != nil {
			t.Fatal(err)
		}
	}
	accept(recN(0))
	accept(recN(1))
	// Crash now: the state file does not exist, the journal has both.
	if got := load(t, statePath, jPath); len(got) != 2 {
		t.Fatalf("crash before any state write: %v", got)
	}
	// Crash after the state write, before the compaction: simulated by
	// writing the state file the way the Writer does, without Compact.
	var snap st
	w.View(func(s *st) { snap = st{Replay: slices.Clone(s.Replay)} })
	if err := Save(statePath, snap); err != nil {
		t.Fatal(err)
	}
	if got := load(t, statePath, jPath); len(got) != 2 {
		t.Fatalf("crash between the state write and the compaction: %v", got)
	}
	// The Writer's own write compacts.
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(jPath); fi.Size() != 0 {
		t.Fatalf("journal not compacted after the write: %d bytes", fi.Size())
	}
	accept(recN(2))
	if got := load(t, statePath, jPath); len(got) != 3 {
		t.Fatalf("after another accept: %v", got)
	}
	// Concurrent accepts and flushes: nothing appended is ever lost.
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := range 25 {
				accept(rec{Key: "c", Block: strings.Repeat("0", 15) + string(rune('a'+i)), Until: time.Unix(int64(k), 0).UTC()})
			}
		}()
	}
	for range 10 {
		if err := w.Flush(); err != nil {
			t.Fatal(err)
		}
	}
	wg.Wait()
	if got := load(t, statePath, jPath); len(got) != 103 {
		t.Fatalf("after concurrent accepts and flushes: %d records on disk, want 103", len(got))
	}
}

// BenchmarkJournalAppend measures one durable Append against what the
// daemon did before, a Save of a state with 100 replay entries, in the
// same directory and run; x-save is the ratio (lower is better).
//
//	go test -run XXX -bench JournalAppend -benchtime 200x ./state
func BenchmarkJournalAppend(b *testing.B) {
	dir := b.TempDir()
	type st struct {
		Replay []rec `json:"replay"`
	}
	var s st
	for i := range 100 {
		s.Replay = append(s.Replay, recN(i))
	}
	var save time.Duration
	b.Run("save", func(b *testing.B) {
		path := filepath.Join(dir, "state.json")
		for b.Loop() {
			if err := Save(path, &s); err != nil {
				b.Fatal(err)
			}
		}
		save = b.Elapsed() / time.Duration(b.N)
	})
	b.Run("append", func(b *testing.B) {
		j, _, _, err := OpenJournal[rec](filepath.Join(dir, "replay.journal"))
		if err != nil {
			b.Fatal(err)
		}
		defer j.Close()
		for b.Loop() {
			if err := j.Append(recN(1)); err != nil {
				b.Fatal(err)
			}
		}
		if save > 0 {
			b.ReportMetric(float64(b.Elapsed())/float64(b.N)/float64(save), "x-save")
		}
	})
}
