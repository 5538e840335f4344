package logsource

import (
	"context"
	"errors"
	"io"
	"syscall"
	"testing"
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
