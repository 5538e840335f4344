package logsource

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestReceivedComesFromTheClock: every source stamps a line with the
// injected clock at read time, never with the time written in the line.
func TestReceivedComesFromTheClock(t *testing.T) {
	at := time.Date(2031, 1, 2, 3, 4, 5, 0, time.UTC)
	now := func() time.Time { return at }
	const line = "Nov 21 05:20:44 gw kernel: [  488.204357] knock: IN=eth0 SRC=198.18.0.2 DPT=800 SYN"
	cases := []struct {
		name string
		run  func(t *testing.T, emit func(Line))
	}{
		{"reader", func(t *testing.T, emit func(Line)) {
			if err := NewReaderOptions(strings.NewReader(line+"\n"), "t", ReaderOptions{Now: now}).Run(context.Background(), emit); err != nil {
				t.Fatal(err)
			}
		}},
		{"file", func(t *testing.T, emit func(Line)) {
			path := filepath.Join(t.TempDir(), "kern.log")
			appendFile(t, path, "")
			src := NewFile(path, FileOptions{Now: now})
			if err := src.start(); err != nil {
				t.Fatal(err)
			}
			defer src.cur.close()
			appendFile(t, path, line+"\n")
			src.step(context.Background(), emit)
		}},
		{"kmsg", func(t *testing.T, emit func(Line)) {
			k := NewKmsg(KmsgOptions{Now: now})
			_ = k.readRecords(context.Background(), &fakeKmsg{steps: []any{"4,1,488204357,-;" + line + "\n"}}, emit)
		}},
		{"journald", func(t *testing.T, emit func(Line)) {
			fakeJournalctl(t, "echo '"+line+"'; exit 0\n")
			j := NewJournald(JournaldOptions{Now: now})
			j.sleep = func(context.Context, time.Duration) bool { return false }
			if err := j.Run(context.Background(), emit); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var got []time.Time
			tc.run(t, func(l Line) {
				if !strings.HasSuffix(string(l.Text), line) {
					t.Errorf("line = %q", l.Text)
				}
				got = append(got, l.Received)
			})
			if len(got) != 1 || !got[0].Equal(at) {
				t.Fatalf("received = %v, want one line at %v", got, at)
			}
		})
	}
}
