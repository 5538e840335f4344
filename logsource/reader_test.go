package logsource

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"strings"
	"testing"
	"testing/iotest"
	"time"
)

// collect runs src until it returns and copies every line it emits.
func collect(t *testing.T, ctx context.Context, src Source) ([]string, error) {
	t.Helper()
	var got []string
	err := src.Run(ctx, func(l Line) { got = append(got, string(l.Text)) })
	return got, err
}

func TestReaderLines(t *testing.T) {
	long := strings.Repeat("x", 100)
	cases := []struct {
		name     string
		in       string
		max      int
		want     []string
		overlong uint64
	}{
		{"plain lines", "a\nbb\nccc\n", 0, []string{"a", "bb", "ccc"}, 0},
		{"last line without newline is delivered at EOF", "a\nb", 0, []string{"a", "b"}, 0},
		{"empty lines are lines", "\n\na\n", 0, []string{"", "", "a"}, 0},
		{"carriage return is kept for the parser", "a\r\nb\n", 0, []string{"a\r", "b"}, 0},
		{"empty input", "", 0, nil, 0},
		{"line of exactly the maximum is kept", long + "\nb\n", 100, []string{long, "b"}, 0},
		{"line over the maximum is skipped and counted", long + "x\nb\n", 100, []string{"b"}, 1},
		{"overlong last line without newline is skipped", "a\n" + long + "x", 100, []string{"a"}, 1},
		{"two overlong lines in a row", long + "x\n" + long + "y\nok\n", 100, []string{"ok"}, 2},
		{"binary and invalid UTF-8 pass through", "\x00\xff\xfe\n", 0, []string{"\x00\xff\xfe"}, 0},
	}
	for _, tc := range cases {
		for _, mode := range []string{"whole", "one byte per read", "half"} {
			t.Run(tc.name+"/"+mode, func(t *testing.T) {
				var r io.Reader = strings.NewReader(tc.in)
				switch mode {
				case "one byte per read":
					r = iotest.OneByteReader(r)
				case "half":
					r = iotest.HalfReader(r)
				}
				src := NewReaderOptions(r, "test", ReaderOptions{MaxLine: tc.max})
				got, err := collect(t, context.Background(), src)
				if err != nil {
					t.Fatalf("Run: %v", err)
				}
				if strings.Join(got, "|") != strings.Join(tc.want, "|") || len(got) != len(tc.want) {
					t.Fatalf("lines = %q, want %q", got, tc.want)
				}
				st := src.Stats()
				if st.Lines != uint64(len(tc.want)) || st.Overlong != tc.overlong {
					t.Fatalf("stats = %+v, want lines %d overlong %d", st, len(tc.want), tc.overlong)
				}
			})
		}
	}
}

func TestReaderOneMiBLineSkippedByDefault(t *testing.T) {
	in := "before\n" + strings.Repeat("y", DefaultMaxLine+1) + "\nafter\n" + strings.Repeat("z", DefaultMaxLine) + "\n"
	src := NewReader(strings.NewReader(in), "big")
	got, err := collect(t, context.Background(), src)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 || got[0] != "before" || got[1] != "after" || len(got[2]) != DefaultMaxLine {
		t.Fatalf("got %d lines, first %q", len(got), got[0])
	}
	if st := src.Stats(); st.Overlong != 1 {
		t.Fatalf("overlong = %d, want 1", st.Overlong)
	}
}

func TestReaderError(t *testing.T) {
	boom := errors.New("boom")
	src := NewReader(io.MultiReader(strings.NewReader("a\n"), iotest.ErrReader(boom)), "t")
	got, err := collect(t, context.Background(), src)
	if !errors.Is(err, boom) {
		t.Fatalf("err = %v, want boom", err)
	}
	if len(got) != 1 {
		t.Fatalf("lines before the error = %q", got)
	}
}

func TestReaderPipeEndsOnCancel(t *testing.T) {
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer pr.Close()
	defer pw.Close()
	ctx, cancel := context.WithCancel(context.Background())
	src := NewReader(pr, "pipe")
	got := make(chan string, 4)
	done := make(chan error, 1)
	go func() { done <- src.Run(ctx, func(l Line) { got <- string(l.Text) }) }()
	if _, err := pw.Write([]byte("one\n")); err != nil {
		t.Fatal(err)
	}
	select {
	case l := <-got:
		if l != "one" {
			t.Fatalf("line = %q", l)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no line from the pipe")
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run after cancel = %v, want nil", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after cancel while blocked in read")
	}
}

func TestLineBufOffsets(t *testing.T) {
	b := newLineBuf(0, 1000)
	feed := func(s string) {
		n := copy(b.space(), s)
		b.commit(n)
	}
	var ends []int64
	var lines []string
	drain := func() {
		for {
			l, e, ok := b.next()
			if !ok {
				return
			}
			lines = append(lines, string(l))
			ends = append(ends, e)
		}
	}
	feed("ab\nc")
	drain()
	if b.lineStart() != 1003 || b.offset() != 1004 || !b.pending() {
		t.Fatalf("after partial: start %d offset %d pending %v", b.lineStart(), b.offset(), b.pending())
	}
	feed("d\n\n")
	drain()
	want := []int64{1003, 1006, 1007}
	if !bytes.Equal([]byte(strings.Join(lines, ",")), []byte("ab,cd,")) {
		t.Fatalf("lines = %q", lines)
	}
	for i := range want {
		if ends[i] != want[i] {
			t.Fatalf("ends = %v, want %v", ends, want)
		}
	}
	if b.pending() || b.offset() != 1007 {
		t.Fatalf("pending %v offset %d", b.pending(), b.offset())
	}
}
