package logsource

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestKmsgRecord(t *testing.T) {
	cases := []struct {
		name string
		rec  string
		line string
		seq  uint64
		ok   bool
	}{
		{"netfilter LOG record", "4,345,480219980,-;knock: IN=veth0 OUT= SRC=198.18.0.2 DPT=800 SYN \n",
			"4,345,480219980,-;knock: IN=veth0 OUT= SRC=198.18.0.2 DPT=800 SYN ", 345, true},
		{"continuation lines are dropped", "6,339,5140900,-;NET: Registered protocol family 10\n SUBSYSTEM=net\n DEVICE=+net:lo\n",
			"6,339,5140900,-;NET: Registered protocol family 10", 339, true},
		{"newer kernels add fields after the flags", "12,1024,99,-,caller=T1234;knocktest\n", "12,1024,99,-,caller=T1234;knocktest", 1024, true},
		{"continuation flag c", "4,7,1,c;part\n", "4,7,1,c;part", 7, true},
		{"escapes are left for the parser", "4,8,1,-;a\\x0ab\n", "4,8,1,-;a\\x0ab", 8, true},
		{"no header", "just text\n", "just text", 0, false},
		{"sequence not a number", "4,x,1,-;m\n", "4,x,1,-;m", 0, false},
		{"sequence overflow", "4,99999999999999999999999,1,-;m\n", "4,99999999999999999999999,1,-;m", 0, false},
		{"semicolon only inside the message", "4;a,b,c\n", "4;a,b,c", 0, false},
		{"empty", "", "", 0, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			line, seq, ok := kmsgRecord([]byte(tc.rec))
			if string(line) != tc.line || seq != tc.seq || ok != tc.ok {
				t.Fatalf("kmsgRecord = %q %d %v, want %q %d %v", line, seq, ok, tc.line, tc.seq, tc.ok)
			}
		})
	}
}

// fakeKmsg plays records and errors as read(2) on /dev/kmsg returns them.
type fakeKmsg struct{ steps []any }

func (f *fakeKmsg) Read(p []byte) (int, error) {
	if len(f.steps) == 0 {
		return 0, io.ErrClosedPipe
	}
	s := f.steps[0]
	f.steps = f.steps[1:]
	switch s := s.(type) {
	case error:
		return 0, s
	case string:
		return copy(p, s), nil
	}
	panic("bad step")
}

// TestKmsgReadLoopSurvivesEPIPE drives the read loop with an injected
// EPIPE (overflowing the real ring buffer would blind every other test
// reading the kernel log on this host).
func TestKmsgReadLoopSurvivesEPIPE(t *testing.T) {
	k := NewKmsg(KmsgOptions{})
	r := &fakeKmsg{steps: []any{
		"4,10,1,-;a\n",
		"4,11,2,-;b\n SUBSYSTEM=x\n",
		&pathErr{syscall.EPIPE},
		"4,15,3,-;c\n", // 12, 13, 14 were overwritten
		"4,16,4,-;d\n",
	}}
	var got []string
	err := k.readRecords(context.Background(), r, func(l Line) { got = append(got, string(l.Text)) })
	if !errors.Is(err, io.ErrClosedPipe) {
		t.Fatalf("err = %v, want the final read error", err)
	}
	want := []string{"4,10,1,-;a", "4,11,2,-;b", "4,15,3,-;c", "4,16,4,-;d"}
	if len(got) != len(want) {
		t.Fatalf("lines = %q, want %q", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("lines = %q, want %q", got, want)
		}
	}
	if st := k.Stats(); st.Lost != 3 || st.Lines != 4 {
		t.Fatalf("stats = %+v, want lost 3 lines 4", st)
	}
}

// pathErr wraps an errno the way os.File.Read does.
type pathErr struct{ err error }

func (e *pathErr) Error() string { return "read /dev/kmsg: " + e.err.Error() }
func (e *pathErr) Unwrap() error { return e.err }

func TestKmsgNewRunIsNotALoss(t *testing.T) {
	k := NewKmsg(KmsgOptions{})
	for _, recs := range [][]any{{"4,10,1,-;a\n"}, {"4,500,2,-;b\n"}} {
		err := k.readRecords(context.Background(), &fakeKmsg{steps: recs}, func(Line) {})
		if !errors.Is(err, io.ErrClosedPipe) {
			t.Fatal(err)
		}
	}
	if st := k.Stats(); st.Lost != 0 || st.Lines != 2 {
		t.Fatalf("stats = %+v: the records between two runs were counted as lost", st)
	}
}

func TestKmsgHeader(t *testing.T) {
	cases := []struct {
		name    string
		rec     string
		seq, ts uint64
		ok      bool
	}{
		{"plain record", "4,345,480219980,-;knock: SRC=198.18.0.2\n", 345, 480219980, true},
		{"fields after the flags", "12,1024,99,-,caller=T1234;x\n", 1024, 99, true},
		{"time stamp is the last header field", "4,7,123;x\n", 7, 123, true},
		{"time stamp not a number", "4,7,1x,-;x\n", 0, 0, false},
		{"time stamp empty", "4,7,,-;x\n", 0, 0, false},
		{"time stamp overflows", "4,7,9223372036854775808,-;x\n", 0, 0, false},
		{"no time stamp", "4,7;x\n", 0, 0, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, seq, ts, ok := kmsgHeader([]byte(tc.rec))
			if seq != tc.seq || ts != tc.ts || ok != tc.ok {
				t.Fatalf("kmsgHeader = %d %d %v, want %d %d %v", seq, ts, ok, tc.seq, tc.ts, tc.ok)
			}
		})
	}
}

// resumeRun drives one Run of a resuming Kmsg without the device: the
// backlog (ended by EAGAIN), then live records (ended by the fake's
// ErrClosedPipe). mono and wall are read "together" at the start.
func resumeRun(t *testing.T, k *Kmsg, mono int64, wall time.Time, backlog, live []any) []Line {
	t.Helper()
	k.boot = "boot-a"
	var got []Line
	emit := func(l Line) {
		l.Text = append([]byte(nil), l.Text...)
		got = append(got, l)
	}
	k.startBacklog(mono, wall)
	err := k.readRecords(context.Background(), &fakeKmsg{steps: append(backlog, syscall.EAGAIN)}, emit)
	k.endBacklog()
	if err != nil {
		t.Fatalf("backlog: %v", err)
	}
	if err := k.readRecords(context.Background(), &fakeKmsg{steps: live}, emit); !errors.Is(err, io.ErrClosedPipe) {
		t.Fatalf("live: %v", err)
	}
	return got
}

func TestKmsgResume(t *testing.T) {
	// The wall clock at the restart is T; CLOCK_MONOTONIC is 1000s.
	T := time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)
	const mono = int64(1000e6)
	at := func(tsUs int64) time.Time { return T.Add(time.Duration(tsUs-mono) * time.Microsecond) }
	type want struct {
		text     string
		received time.Time
	}
	cases := []struct {
		name    string
		resume  Position
		backlog []any
		live    []any
		want    []want
		lost    uint64
	}{
		{
			name:   "records after the saved one are delivered with their arrival time",
			resume: Position{Boot: "boot-a", Seq: 11},
			backlog: []any{
				"4,10,990000000,-;old a\n",
				"4,11,995000000,-;old b\n",
				"4,12,998000000,-;new c\n",
				"4,13,999500000,-;new d\n",
			},
			live: []any{"4,14,1000100000,-;live e\n"},
			want: []want{{"4,12,998000000,-;new c", at(998000000)}, {"4,13,999500000,-;new d", at(999500000)}, {"4,14,1000100000,-;live e", T}},
		},
		{
			name:   "the saved record and its stamp date the records after it",
			resume: Position{Boot: "boot-a", Seq: 11, Stamp: T.Add(-3 * time.Second).UnixMicro()},
			backlog: []any{
				"4,11,995000000,-;old b\n", // saved 3s before T by the wall clock
				"4,12,996000000,-;new c\n", // so 2s before T, whatever CLOCK_MONOTONIC says
			},
			want: []want{{"4,12,996000000,-;new c", T.Add(-2 * time.Second)}},
		},
		{
			name:    "records overwritten since the saved one are counted lost",
			resume:  Position{Boot: "boot-a", Seq: 11},
			backlog: []any{"4,15,999000000,-;after gap\n"},
			live:    []any{"4,16,1000100000,-;live\n"},
			want:    []want{{"4,15,999000000,-;after gap", at(999000000)}, {"4,16,1000100000,-;live", T}},
			lost:    3,
		},
		{
			name:   "records older than the limit are skipped, never replayed",
			resume: Position{Boot: "boot-a", Seq: 11},
			backlog: []any{
				"4,12,900000000,-;100s old\n",
				"4,13,931000000,-;69s old\n",
			},
			want: []want{{"4,13,931000000,-;69s old", at(931000000)}},
		},
		{
			name:    "a record stamped after now is received now",
			resume:  Position{Boot: "boot-a", Seq: 11},
			backlog: []any{"4,12,1005000000,-;future\n"},
			want:    []want{{"4,12,1005000000,-;future", T}},
		},
		{
			name:    "a backlog record without a header is never replayed",
			resume:  Position{Boot: "boot-a", Seq: 11},
			backlog: []any{"garbage\n", "4,12,999000000,-;ok\n"},
			want:    []want{{"4,12,999000000,-;ok", at(999000000)}},
		},
		{
			name:    "an EPIPE during the backlog goes on with the oldest record left",
			resume:  Position{Boot: "boot-a", Seq: 11},
			backlog: []any{"4,12,999000000,-;a\n", &pathErr{syscall.EPIPE}, "4,20,999100000,-;b\n"},
			want:    []want{{"4,12,999000000,-;a", at(999000000)}, {"4,20,999100000,-;b", at(999100000)}},
			lost:    7,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			k := NewKmsg(KmsgOptions{Resume: tc.resume, Now: func() time.Time { return T }, MaxAge: 70 * time.Second})
			got := resumeRun(t, k, mono, T, tc.backlog, tc.live)
			if len(got) != len(tc.want) {
				t.Fatalf("got %d lines %v, want %v", len(got), got, tc.want)
			}
			for i, w := range tc.want {
				if string(got[i].Text) != w.text || !got[i].Received.Equal(w.received) {
					t.Errorf("line %d = %q at %v, want %q at %v", i, got[i].Text, got[i].Received, w.text, w.received)
				}
				_, seq, _ := kmsgRecord(got[i].Text)
				if p := got[i].Pos; p.Boot != "boot-a" || p.Seq != seq || p.Stamp != w.received.UnixMicro() {
					t.Errorf("line %d position = %+v", i, p)
				}
			}
			if st := k.Stats(); st.Lost != tc.lost || st.Lines != uint64(len(tc.want)) {
				t.Errorf("stats = %+v, want lost %d lines %d", st, tc.lost, len(tc.want))
			}
		})
	}
}

// TestKmsgResumeFollowsLastDelivered: a second Run resumes after the last
// record the first one delivered.
func TestKmsgResumeFollowsLastDelivered(t *testing.T) {
	T := time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)
	k := NewKmsg(KmsgOptions{Now: func() time.Time { return T }})
	k.boot = "boot-a"
	var got []string
	emit := func(l Line) { got = append(got, string(l.Text)) }
	if err := k.readRecords(context.Background(), &fakeKmsg{steps: []any{"4,5,999000000,-;a\n"}}, emit); !errors.Is(err, io.ErrClosedPipe) {
		t.Fatal(err)
	}
	if p := k.pos; p != (Position{Boot: "boot-a", Seq: 5, Stamp: T.UnixMicro()}) {
		t.Fatalf("position after a live record = %+v", p)
	}
	got = got[:0]
	resumeRun(t, k, 1000e6, T.Add(time.Second), []any{"4,5,999000000,-;a\n", "4,6,999900000,-;b\n"}, nil)
	if k.lastSeq != 6 || k.Stats().Lines != 2 {
		t.Fatalf("second run: last seq %d, stats %+v; want record 6 only", k.lastSeq, k.Stats())
	}
}

// TestKmsgResumePrime: with Prime, the records handled before the restart
// that arrived within Prime before the resume point come again first,
// their positions at or before it, then the new ones.
func TestKmsgResumePrime(t *testing.T) {
	T := time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)
	const mono = int64(1000e6)
	resume := Position{Boot: "boot-a", Seq: 11, Stamp: T.Add(-time.Second).UnixMicro()}
	backlog := []any{
		"4,9,990000000,-;10s before\n",
		"4,10,996000000,-;4s before\n",
		"4,11,999000000,-;the resume point\n",
		"4,12,999500000,-;new\n",
	}
	cases := []struct {
		name  string
		prime time.Duration
		want  []string
	}{
		{"no prime", 0, []string{"new"}},
		{"prime 5s", 5 * time.Second, []string{"4s before", "the resume point", "new"}},
		{"prime 20s, bounded by MaxAge 8s", 20 * time.Second, []string{"4s before", "the resume point", "new"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			k := NewKmsg(KmsgOptions{Resume: resume, Prime: tc.prime, MaxAge: 8 * time.Second, Now: func() time.Time { return T }})
			got := resumeRun(t, k, mono, T, backlog, nil)
			var texts []string
			for _, l := range got {
				texts = append(texts, string(l.Text[bytes.IndexByte(l.Text, ';')+1:]))
				_, seq, _ := kmsgRecord(l.Text)
				if (seq <= resume.Seq) != (l.Pos.Seq <= resume.Seq) || l.Pos.Seq != seq || l.Pos.Boot != "boot-a" {
					t.Errorf("%q position %+v", l.Text, l.Pos)
				}
			}
			if strings.Join(texts, "|") != strings.Join(tc.want, "|") {
				t.Fatalf("delivered %q, want %q", texts, tc.want)
			}
			if k.lastSeq != 12 || k.pos.Seq != 12 || k.Stats().Lost != 0 {
				t.Fatalf("after the resume: last seq %d, position %+v, stats %+v", k.lastSeq, k.pos, k.Stats())
			}
		})
	}
}
