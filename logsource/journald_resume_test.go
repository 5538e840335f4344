package logsource

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// journalStamp formats t as short-iso-precise does.
func journalStamp(t time.Time) string {
	return t.UTC().Format("2006-01-02T15:04:05.000000") + "+0000"
}

type keptLines struct {
	mu    sync.Mutex
	lines []Line
}

func (k *keptLines) emit(l Line) {
	l.Text = append([]byte(nil), l.Text...)
	k.mu.Lock()
	k.lines = append(k.lines, l)
	k.mu.Unlock()
}

// TestJournaldResumeAcrossDaemonRestart: a source made with the position
// a previous daemon saved starts journalctl there, skips the lines of
// that stamp the previous daemon handled, dates the resumed entries by
// their stamps, and never goes back further than MaxAge.
func TestJournaldResumeAcrossDaemonRestart(t *testing.T) {
	now := time.Now()
	s := now.Add(-5 * time.Second).Truncate(time.Microsecond) // the saved stamp
	s1 := s.Add(time.Microsecond)
	// The fake shows what a real journalctl would from --since on: run 1
	// the entries a and b and dies, run 2 (a journalctl restart within
	// the same daemon run) a, b and two newer ones.
	script := `
n=$(cat "$STATE/n" 2>/dev/null || echo 0); n=$((n+1)); echo $n > "$STATE/n"
for a; do case $a in --since=*) SINCE=${a#--since=@}; echo "$a" >> "$STATE/since";; esac; done
sec=${SINCE%.*}; us=$(echo "${SINCE#*.}" | sed 's/^0*//'); since=$((sec*1000000 + ${us:-0}))
show() { if [ "$1" -ge "$since" ]; then echo "$2"; fi; }
show ` + strconv.FormatInt(s.UnixMicro(), 10) + ` "` + journalStamp(s) + ` vm kernel: a"
show ` + strconv.FormatInt(s.UnixMicro(), 10) + ` "` + journalStamp(s) + ` vm kernel: b"
if [ $n = 2 ]; then
  show ` + strconv.FormatInt(s1.UnixMicro(), 10) + ` "` + journalStamp(s1) + ` vm kernel: c"
  show ` + strconv.FormatInt(s1.UnixMicro(), 10) + ` "` + journalStamp(s1) + ` vm kernel: d"
fi
exit 1
`
	cases := []struct {
		name      string
		resume    Position
		maxAge    time.Duration
		want      []string
		wantSince func(since float64) bool
	}{
		{
			name:      "the handled line of the saved stamp is skipped",
			resume:    Position{Stamp: s.UnixMicro(), StampN: 1},
			want:      []string{"b", "c", "d"},
			wantSince: func(v float64) bool { return int64(v*1e6+0.5) == s.UnixMicro() },
		},
		{
			name:      "both lines of the saved stamp were handled: skipped in every run",
			resume:    Position{Stamp: s.UnixMicro(), StampN: 2},
			want:      []string{"c", "d"},
			wantSince: func(v float64) bool { return int64(v*1e6+0.5) == s.UnixMicro() },
		},
		{
			name:   "a saved stamp older than MaxAge starts MaxAge ago",
			resume: Position{Stamp: s.Add(-time.Hour).UnixMicro(), StampN: 1},
			maxAge: time.Minute,
			// None is skipped by count: none has the saved stamp.
			want: []string{"a", "b", "c", "d"},
			wantSince: func(v float64) bool {
				return v >= float64(now.Add(-time.Minute).Unix())-1 && v <= float64(time.Now().Add(-time.Minute).Unix())+1
			},
		},
		{
			name:   "a saved stamp in the future starts now",
			resume: Position{Stamp: now.Add(time.Hour).UnixMicro(), StampN: 9},
			want:   nil, // every entry is older than the start
			wantSince: func(v float64) bool {
				return v >= float64(now.Unix())-1 && v <= float64(time.Now().Unix())+1
			},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			state := fakeJournalctl(t, script)
			j := NewJournald(JournaldOptions{Resume: tc.resume, MaxAge: tc.maxAge})
			runs := 0
			j.sleep = func(context.Context, time.Duration) bool { runs++; return runs < 2 }
			out := &keptLines{}
			if err := j.Run(context.Background(), out.emit); err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, l := range out.lines {
				got = append(got, string(l.Text[len(l.Text)-1:]))
			}
			if !slices.Equal(got, tc.want) {
				t.Fatalf("delivered %q, want %q", got, tc.want)
			}
			b, err := os.ReadFile(filepath.Join(state, "since"))
			if err != nil {
				t.Fatal(err)
			}
			since := strings.Fields(string(b))
			v, err := strconv.ParseFloat(strings.TrimPrefix(since[0], "--since=@"), 64)
			if err != nil || !tc.wantSince(v) {
				t.Errorf("first run %s (saved %v)", since[0], time.UnixMicro(tc.resume.Stamp))
			}
			// Resumed entries are dated by their stamps, and carry their
			// position: the stamp and how many lines of it came so far.
			for _, l := range out.lines {
				at, _ := parseJournalStamp(l.Text)
				if !l.Received.Equal(time.UnixMicro(at)) {
					t.Errorf("%q received %v, want its stamp", l.Text, l.Received)
				}
				if l.Pos.Stamp != at || l.Pos.StampN < 1 {
					t.Errorf("%q position %+v", l.Text, l.Pos)
				}
			}
			if sp := j.StartPosition(); tc.want != nil && tc.want[0] == "b" && sp != tc.resume {
				t.Errorf("start position %+v, want the resume point %+v", sp, tc.resume)
			}
			if len(out.lines) == 0 {
				return
			}
			if last := out.lines[len(out.lines)-1]; last.Pos != (Position{Stamp: s1.UnixMicro(), StampN: 2}) {
				t.Errorf("last position %+v, want stamp %d, 2 lines", last.Pos, s1.UnixMicro())
			}
		})
	}
}

// TestJournaldResumeDatesOnlyOldEntries: an entry stamped after Run
// began is received when it was read, as without a resume.
func TestJournaldResumeDatesOnlyOldEntries(t *testing.T) {
	later := time.Now().Add(time.Hour)
	fakeJournalctl(t, `echo "`+journalStamp(later)+` vm kernel: new"; exit 1`)
	read := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	j := NewJournald(JournaldOptions{Now: func() time.Time { return read }, Resume: Position{Stamp: time.Now().Add(-time.Second).UnixMicro()}})
	j.sleep = func(context.Context, time.Duration) bool { return false }
	out := &keptLines{}
	if err := j.Run(context.Background(), out.emit); err != nil {
		t.Fatal(err)
	}
	if len(out.lines) != 1 || !out.lines[0].Received.Equal(read) {
		t.Fatalf("lines %+v, want one received at the read time", out.lines)
	}
}

// TestJournaldStartPosition: without a resume, a source starts at the
// time Run began, and says so: a daemon saving it resumes there.
func TestJournaldStartPosition(t *testing.T) {
	fakeJournalctl(t, `exit 1`)
	j := NewJournald(JournaldOptions{})
	j.sleep = func(context.Context, time.Duration) bool { return false }
	before := time.Now().UnixMicro()
	if err := j.Run(context.Background(), func(Line) {}); err != nil {
		t.Fatal(err)
	}
	if sp := j.StartPosition(); sp.Stamp < before || sp.Stamp > time.Now().UnixMicro() || sp.StampN != 0 || sp.Boot != "" {
		t.Fatalf("start position %+v, want the time Run began", sp)
	}
}

// TestJournaldResumePrime: with Prime, journalctl starts Prime before the
// saved stamp and the lines up to the resume point come again, with
// positions that place them at or before it.
func TestJournaldResumePrime(t *testing.T) {
	s := time.Now().Add(-5 * time.Second).Truncate(time.Microsecond)
	before, s1 := s.Add(-3*time.Second), s.Add(time.Microsecond)
	state := fakeJournalctl(t, `
for a; do case $a in --since=*) SINCE=${a#--since=@}; echo "$a" >> "$STATE/since";; esac; done
sec=${SINCE%.*}; us=$(echo "${SINCE#*.}" | sed 's/^0*//'); since=$((sec*1000000 + ${us:-0}))
show() { if [ "$1" -ge "$since" ]; then echo "$2"; fi; }
show `+strconv.FormatInt(before.UnixMicro(), 10)+` "`+journalStamp(before)+` vm kernel: x"
show `+strconv.FormatInt(s.UnixMicro(), 10)+` "`+journalStamp(s)+` vm kernel: a"
show `+strconv.FormatInt(s.UnixMicro(), 10)+` "`+journalStamp(s)+` vm kernel: b"
show `+strconv.FormatInt(s1.UnixMicro(), 10)+` "`+journalStamp(s1)+` vm kernel: c"
exit 1
`)
	resume := Position{Stamp: s.UnixMicro(), StampN: 1}
	j := NewJournald(JournaldOptions{Resume: resume, Prime: 5 * time.Second})
	j.sleep = func(context.Context, time.Duration) bool { return false }
	out := &keptLines{}
	if err := j.Run(context.Background(), out.emit); err != nil {
		t.Fatal(err)
	}
	want := []struct {
		text string
		pos  Position
	}{
		{"x", Position{Stamp: before.UnixMicro(), StampN: 1}},
		{"a", Position{Stamp: s.UnixMicro(), StampN: 1}},
		{"b", Position{Stamp: s.UnixMicro(), StampN: 2}},
		{"c", Position{Stamp: s1.UnixMicro(), StampN: 1}},
	}
	if len(out.lines) != len(want) {
		t.Fatalf("delivered %d lines, want %d", len(out.lines), len(want))
	}
	for i, w := range want {
		l := out.lines[i]
		if string(l.Text[len(l.Text)-1:]) != w.text || l.Pos != w.pos {
			t.Errorf("line %d = %q at %+v, want %q at %+v", i, l.Text, l.Pos, w.text, w.pos)
		}
	}
	b, err := os.ReadFile(filepath.Join(state, "since"))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := strings.TrimSpace(string(b)), "--since="+sinceArg(s.Add(-5*time.Second).UnixMicro()); got != want {
		t.Errorf("journalctl %s, want %s", got, want)
	}
	if sp := j.StartPosition(); sp != resume {
		t.Errorf("start position %+v, want the resume point %+v", sp, resume)
	}
}
