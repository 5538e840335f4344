package logparse

import (
	"bufio"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
)

// readCorpus loads every testdata/*.jsonl file: captured.jsonl (real lines
// from TestLiveCapture) and handwritten.jsonl (framings and ipfw lines
// that cannot be captured here, and negatives).
func readCorpus(t testing.TB) []corpusLine {
	t.Helper()
	files, err := filepath.Glob("testdata/*.jsonl")
	if err != nil || len(files) == 0 {
		t.Fatalf("no corpus under testdata: %v", err)
	}
	var all []corpusLine
	for _, f := range files {
		fh, err := os.Open(f)
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(fh)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for n := 1; sc.Scan(); n++ {
			var c corpusLine
			if err := json.Unmarshal(sc.Bytes(), &c); err != nil {
				t.Fatalf("%s:%d: %v", f, n, err)
			}
			all = append(all, c)
		}
		fh.Close()
		if err := sc.Err(); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
	}
	return all
}

func TestCorpus(t *testing.T) {
	corpus := readCorpus(t)
	hits := 0
	for _, c := range corpus {
		if c.Want.Result == "hit" {
			hits++
		}
		checkLine(t, c)
	}
	if hits < 40 {
		t.Errorf("corpus has %d hits, want at least 40", hits)
	}
}
