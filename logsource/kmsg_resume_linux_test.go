package logsource

import (
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/knockdaemon/knock/internal/netnstest"
)

// kmsgSession runs a Kmsg until stop, keeping copies of the lines that
// contain mark.
type kmsgSession struct {
	k     *Kmsg
	mu    sync.Mutex
	lines []Line
	stop  func()
}

func startKmsg(t *testing.T, opts KmsgOptions, mark string) *kmsgSession {
	t.Helper()
	s := &kmsgSession{k: NewKmsg(opts)}
	r := runSource(t, s.k, func(l Line) {
		if strings.Contains(string(l.Text), mark) {
			l.Text = append([]byte(nil), l.Text...)
			s.mu.Lock()
			s.lines = append(s.lines, l)
			s.mu.Unlock()
		}
	}, 5*time.Second)
	s.stop = r.stop
	select {
	case <-s.k.Ready():
	case <-r.done:
		t.Fatalf("Run: %v", r.err)
	case <-time.After(5 * time.Second):
		t.Fatal("kmsg source not ready")
	}
	return s
}

// find returns the lines containing text.
func (s *kmsgSession) find(text string) []Line {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Line
	for _, l := range s.lines {
		if strings.Contains(string(l.Text), text) {
			out = append(out, l)
		}
	}
	return out
}

// wait polls (bounded) for a line containing text.
func (s *kmsgSession) wait(t *testing.T, text string) Line {
	t.Helper()
	for range 100 {
		if ls := s.find(text); len(ls) > 0 {
			return ls[0]
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("no kernel record with %q arrived", text)
	return Line{}
}

// TestKmsgRealResume: records written to the real kernel log while no
// source runs are delivered by the next source that resumes from the
// last record handled, dated when they were written; a resume from
// another boot or past MaxAge delivers nothing of the sort.
func TestKmsgRealResume(t *testing.T) {
	netnstest.Require(t)
	if _, err := os.Stat("/dev/kmsg"); err != nil {
		netnstest.Unavailable(t, "no /dev/kmsg: %v", err)
	}
	if readBootID(DefaultBootIDPath) == "" {
		netnstest.Unavailable(t, "no boot id at %s", DefaultBootIDPath)
	}
	mark := "knocktest-resume-" + netnstest.RandHex(6)
	first := startKmsg(t, KmsgOptions{}, mark)
	writeKmsg(t, "<4>"+mark+" handled\n")
	handled := first.wait(t, mark+" handled")
	first.stop()
	if handled.Pos.Boot == "" || handled.Pos.Stamp == 0 {
		t.Fatalf("delivered record has no position: %+v", handled.Pos)
	}

	// The daemon is down: these are written meanwhile.
	wrote := time.Now()
	writeKmsg(t, "<4>"+mark+" while-down\n")
	time.Sleep(300 * time.Millisecond)

	t.Run("same boot resumes after the saved record", func(t *testing.T) {
		start := time.Now()
		s := startKmsg(t, KmsgOptions{Resume: handled.Pos}, mark)
		s.stop() // Ready came after the resumed records: all are in
		if got := s.find(mark + " handled"); len(got) != 0 {
			t.Fatalf("the record handled before the restart was delivered again: %q", got[0].Text)
		}
		got := s.find(mark + " while-down")
		if len(got) != 1 {
			t.Fatalf("record written while down delivered %d times, want once", len(got))
		}
		r := got[0].Received
		// Dated when it was written, not when it was read, give or take
		// the drift of the kernel's clock since the saved record.
		if r.After(start) || r.Before(wrote.Add(-time.Second)) || r.After(wrote.Add(100*time.Millisecond)) {
			t.Fatalf("received %v; written at %v, resumed at %v", r.Format(time.StampMicro), wrote.Format(time.StampMicro), start.Format(time.StampMicro))
		}
		t.Logf("written %v, received %v (%v off)", wrote.Format(time.StampMicro), r.Format(time.StampMicro), r.Sub(wrote))
		if got[0].Pos.Seq <= handled.Pos.Seq || got[0].Pos.Boot != handled.Pos.Boot {
			t.Fatalf("position %+v does not follow %+v", got[0].Pos, handled.Pos)
		}
		if st := s.k.Stats(); st.Lost != 0 {
			t.Fatalf("stats = %+v: nothing was overwritten", st)
		}
	})
	t.Run("another boot starts at the newest record", func(t *testing.T) {
		other := handled.Pos
		other.Boot = "00000000-0000-0000-0000-000000000000"
		s := startKmsg(t, KmsgOptions{Resume: other}, mark)
		writeKmsg(t, "<4>"+mark+" after-start\n")
		s.wait(t, mark+" after-start")
		s.stop()
		if got := s.find(mark + " while-down"); len(got) != 0 {
			t.Fatalf("a record from before the start was delivered without a resume from this boot")
		}
	})
	t.Run("a source that delivered nothing resumes where it started", func(t *testing.T) {
		before := mark + " before-quiet"
		writeKmsg(t, "<4>"+before+"\n")
		quiet := startKmsg(t, KmsgOptions{}, "no line has this "+netnstest.RandHex(8))
		start := quiet.k.StartPosition()
		quiet.stop()
		if start.Boot != handled.Pos.Boot || start.Seq <= handled.Pos.Seq {
			t.Fatalf("start position %+v, want this boot after %+v", start, handled.Pos)
		}
		writeKmsg(t, "<4>"+mark+" after-quiet\n")
		s := startKmsg(t, KmsgOptions{Resume: start}, mark)
		s.stop()
		if got := s.find(before); len(got) != 0 {
			t.Fatalf("a record from before the quiet source started was delivered")
		}
		if got := s.find(mark + " after-quiet"); len(got) != 1 {
			t.Fatalf("record written after the quiet source started delivered %d times, want once", len(got))
		}
	})
	t.Run("records older than MaxAge are skipped", func(t *testing.T) {
		s := startKmsg(t, KmsgOptions{Resume: handled.Pos, MaxAge: 100 * time.Millisecond}, mark)
		s.stop()
		if got := s.find(mark + " while-down"); len(got) != 0 {
			t.Fatalf("a record older than MaxAge was delivered: %q", got[0].Text)
		}
	})
}
