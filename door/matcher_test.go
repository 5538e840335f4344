package door

import (
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/knockdaemon/knock/internal/clock"
	"github.com/knockdaemon/knock/logparse"
)

var t0 = time.Date(2026, 11, 21, 6, 0, 0, 0, time.UTC)

func mustDoor(t testing.TB, c Config) *Door {
	t.Helper()
	d, err := c.Compile()
	if err != nil {
		t.Fatalf("Compile(%+v): %v", c, err)
	}
	return d
}

func sshDoors(t testing.TB) []*Door {
	return []*Door{
		mustDoor(t, Config{Name: "openSSH", Sequence: "7000,8000,9000", SequenceTimeout: "5s", TCPFlags: "syn",
			Open: &OpenConfig{Ports: []string{"22"}}, CmdTimeout: "0s"}),
		mustDoor(t, Config{Name: "closeSSH", Sequence: "9000,8000,7000", SequenceTimeout: "5s", TCPFlags: "syn",
			Close: &OpenConfig{Ports: []string{"22"}}}),
		mustDoor(t, Config{Name: "udp", Sequence: "2222:udp,3333:tcp,4444:udp", SequenceTimeout: "15s", TCPFlags: "syn,ack",
			StartCommand: "/usr/bin/true %IP%"}),
	}
}

type knock struct {
	port  uint16
	proto Proto
	sport uint16
	flags logparse.Flags
	after time.Duration // clock advance before the knock
}

func syn(port, sport uint16) knock {
	return knock{port: port, proto: TCP, sport: sport, flags: logparse.SYN}
}

// run feeds the knocks from src and returns the names of the doors that
// fired, in order, and the last outcome.
func run(t *testing.T, m *Matcher, clk *clock.Fake, src netip.Addr, ks []knock) ([]string, Outcome) {
	t.Helper()
	var fired []string
	var last Outcome
	for i, k := range ks {
		clk.Advance(k.after)
		res, err := m.Add(Hit{Src: src, Proto: k.proto, SrcPort: k.sport, DstPort: k.port, Flags: k.flags})
		if err != nil {
			t.Fatalf("knock %d: %v", i, err)
		}
		last = res.Outcome
		if res.Outcome == Fired {
			fired = append(fired, res.Door.Name)
		}
	}
	return fired, last
}

func TestMatcherSemantics(t *testing.T) {
	a := netip.MustParseAddr("198.18.0.2")
	ack := logparse.SYN | logparse.ACK
	tests := []struct {
		name  string
		knock []knock
		want  []string
	}{
		{"in order fires", []knock{syn(7000, 40001), syn(8000, 40002), syn(9000, 40003)}, []string{"openSSH"}},
		{"reverse order fires the close door", []knock{syn(9000, 1), syn(8000, 2), syn(7000, 3)}, []string{"closeSSH"}},
		{"open then close", []knock{syn(7000, 1), syn(8000, 2), syn(9000, 3), syn(9000, 4), syn(8000, 5), syn(7000, 6)}, []string{"openSSH", "closeSSH"}},
		{"retransmitted first SYN is not a second knock", []knock{syn(7000, 1), syn(7000, 1), syn(8000, 2), syn(8000, 2), syn(9000, 3)}, []string{"openSSH"}},
		{"retransmitted last SYN does not fire twice", []knock{syn(7000, 1), syn(8000, 2), syn(9000, 3), syn(9000, 3), syn(9000, 3)}, []string{"openSSH"}},
		{"a repeated knock from a new source port is a wrong knock", []knock{syn(7000, 1), syn(8000, 2), syn(8000, 3), syn(9000, 4)}, nil},
		{"wrong knock resets, restart from the first knock works", []knock{syn(7000, 1), syn(9000, 2), syn(7000, 3), syn(8000, 4), syn(9000, 5)}, []string{"openSSH"}},
		{"wrong knock that is the first knock restarts at once", []knock{syn(7000, 1), syn(8000, 2), syn(7000, 3), syn(8000, 4), syn(9000, 5)}, []string{"openSSH"}},
		{"a knock on a non-door port is not seen", []knock{syn(7000, 1), syn(7001, 2), syn(8000, 3), syn(9000, 4)}, []string{"openSSH"}},
		{"ACK without SYN is ignored, not a reset", []knock{syn(7000, 1), {port: 8000, proto: TCP, sport: 9, flags: logparse.ACK}, syn(8000, 2), syn(9000, 3)}, []string{"openSSH"}},
		{"sequence slower than the timeout fails", []knock{syn(7000, 1), syn(8000, 2), {port: 9000, proto: TCP, sport: 3, flags: logparse.SYN, after: 5 * time.Second}}, nil},
		{"timeout counts from the first knock", []knock{syn(7000, 1), {port: 8000, proto: TCP, sport: 2, flags: logparse.SYN, after: 3 * time.Second}, {port: 9000, proto: TCP, sport: 3, flags: logparse.SYN, after: 2 * time.Second}}, nil},
		{"just within the timeout fires", []knock{syn(7000, 1), {port: 8000, proto: TCP, sport: 2, flags: logparse.SYN, after: 3 * time.Second}, {port: 9000, proto: TCP, sport: 3, flags: logparse.SYN, after: 1999 * time.Millisecond}}, []string{"openSSH"}},
		{"after a timeout a fresh sequence fires", []knock{syn(7000, 1), {port: 7000, proto: TCP, sport: 2, flags: logparse.SYN, after: 6 * time.Second}, syn(8000, 3), syn(9000, 4)}, []string{"openSSH"}},
		{"mixed udp and tcp with syn,ack", []knock{{port: 2222, proto: UDP, sport: 1}, {port: 3333, proto: TCP, sport: 2, flags: ack}, {port: 4444, proto: UDP, sport: 3}}, []string{"udp"}},
		{"plain SYN fails a syn,ack door (ignored)", []knock{{port: 2222, proto: UDP, sport: 1}, syn(3333, 2), {port: 4444, proto: UDP, sport: 3}}, nil},
		{"tcp knock on a udp step is wrong", []knock{{port: 2222, proto: UDP, sport: 1}, {port: 3333, proto: TCP, sport: 2, flags: ack}, {port: 4444, proto: TCP, sport: 3, flags: ack}}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			clk := clock.NewFake(t0)
			m, err := NewMatcher(sshDoors(t), clk, Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close()
			got, _ := run(t, m, clk, a, tc.knock)
			if strings.Join(got, ",") != strings.Join(tc.want, ",") {
				t.Fatalf("fired %v, want %v", got, tc.want)
			}
		})
	}
}

func TestMatcherOutcomes(t *testing.T) {
	clk := clock.NewFake(t0)
	m, err := NewMatcher(sshDoors(t), clk, Options{})
	if err != nil {
		t.Fatal(err)
	}
	a := netip.MustParseAddr("2001:db8::7")
	steps := []struct {
		k    knock
		want Outcome
	}{
		{syn(22, 1), NotDoorPort},
		{knock{port: 7000, proto: UDP, sport: 1}, NotDoorPort},
		{syn(7000, 1), Progress},
		{syn(7000, 1), Retransmission},
		{syn(8000, 2), Progress},
		{knock{port: 9000, proto: TCP, sport: 3, flags: logparse.FIN}, NoProgress},
		{syn(9000, 3), Fired},
	}
	for i, s := range steps {
		res, err := m.Add(Hit{Src: a, Proto: s.k.proto, SrcPort: s.k.sport, DstPort: s.k.port, Flags: s.k.flags})
		if err != nil || res.Outcome != s.want {
			t.Fatalf("step %d (%+v): %v %v, want %v", i, s.k, res.Outcome, err, s.want)
		}
	}
	if _, err := m.Add(Hit{Proto: TCP, DstPort: 7000}); err != ErrInvalidSource {
		t.Errorf("no source: %v, want ErrInvalidSource", err)
	}
	if _, err := m.Add(Hit{Src: a, Proto: 0, DstPort: 7000}); err != ErrInvalidProto {
		t.Errorf("no proto: %v, want ErrInvalidProto", err)
	}
	st := m.Stats()
	if st.Fired != 1 || st.Retransmissions != 1 || st.Hits != 5 {
		t.Errorf("stats %+v", st)
	}
}

func TestMatcherSourcesAreSeparate(t *testing.T) {
	clk := clock.NewFake(t0)
	m, err := NewMatcher(sshDoors(t), clk, Options{})
	if err != nil {
		t.Fatal(err)
	}
	a := netip.MustParseAddr("198.18.0.2")
	mapped := netip.MustParseAddr("::ffff:198.18.0.2")
	b := netip.MustParseAddr("198.18.0.3")
	add := func(src netip.Addr, port, sport uint16) Outcome {
		t.Helper()
		res, err := m.Add(Hit{Src: src, Proto: TCP, SrcPort: sport, DstPort: port, Flags: logparse.SYN})
		if err != nil {
			t.Fatal(err)
		}
		if res.Outcome == Fired && res.Src != a && res.Src != b {
			t.Fatalf("fired for %v", res.Src)
		}
		return res.Outcome
	}
	add(a, 7000, 1)
	add(b, 7000, 1)
	add(b, 9000, 2) // b's wrong knock must not touch a
	add(mapped, 8000, 2)
	if got := add(a, 9000, 3); got != Fired {
		t.Fatalf("a (knocking as IPv4 and IPv4-mapped) got %v, want fired", got)
	}
	if got := m.Progress(b, "openSSH"); got != 0 {
		t.Errorf("b progress on openSSH %d, want 0 (reset by its wrong knock)", got)
	}
	if got := m.Progress(b, "closeSSH"); got != 1 {
		t.Errorf("b progress on closeSSH %d, want 1", got)
	}
}

func TestMatcherExpiresOnTimer(t *testing.T) {
	clk := clock.NewFake(t0)
	m, err := NewMatcher(sshDoors(t), clk, Options{})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 100 {
		src := netip.AddrFrom4([4]byte{198, 18, 1, byte(i)})
		if _, err := m.Add(Hit{Src: src, Proto: TCP, SrcPort: 1, DstPort: 7000, Flags: logparse.SYN}); err != nil {
			t.Fatal(err)
		}
	}
	if st := m.Stats(); st.Sources != 100 {
		t.Fatalf("sources %d, want 100", st.Sources)
	}
	clk.Advance(14 * time.Second) // the longest door timeout is 15s
	if st := m.Stats(); st.Sources != 100 {
		t.Fatalf("sources %d after 14s, want 100 (a 15s door may still be in progress)", st.Sources)
	}
	clk.Advance(time.Second)
	st := m.Stats()
	if st.Sources != 0 || st.Expired != 100 {
		t.Fatalf("after 15s: %+v, want no sources and 100 expired", st)
	}
	if clk.Pending() != 0 {
		t.Errorf("%d timers pending with no sources", clk.Pending())
	}
}

func TestMatcherBoundedUnderFlood(t *testing.T) {
	clk := clock.NewFake(t0)
	m, err := NewMatcher(sshDoors(t), clk, Options{MaxSources: 1000})
	if err != nil {
		t.Fatal(err)
	}
	legit := netip.MustParseAddr("198.18.0.2")
	if _, err := m.Add(Hit{Src: legit, Proto: TCP, SrcPort: 1, DstPort: 7000, Flags: logparse.SYN}); err != nil {
		t.Fatal(err)
	}
	for i := range 50000 {
		src := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
		if _, err := m.Add(Hit{Src: src, Proto: TCP, SrcPort: uint16(i), DstPort: 7000, Flags: logparse.SYN}); err != nil {
			t.Fatal(err)
		}
	}
	st := m.Stats()
	if st.Sources != 1000 || st.Evictions != 50001-1000 {
		t.Fatalf("stats %+v, want 1000 sources and %d evictions", st, 50001-1000)
	}
	if m.Progress(legit, "openSSH") != 0 {
		t.Errorf("the least recently heard source survived a flood larger than the table")
	}
	// The evicted source starts afresh and still gets in.
	got, _ := run(t, m, clk, legit, []knock{syn(7000, 2), syn(8000, 3), syn(9000, 4)})
	if len(got) != 1 {
		t.Fatalf("legit knocker after the flood: fired %v", got)
	}
}

func TestMatcherTimeNeverGoesBack(t *testing.T) {
	clk := clock.NewFake(t0)
	m, err := NewMatcher(sshDoors(t), clk, Options{})
	if err != nil {
		t.Fatal(err)
	}
	a := netip.MustParseAddr("198.18.0.2")
	for i, at := range []time.Time{t0.Add(10 * time.Second), t0, t0.Add(time.Second)} {
		port := []uint16{7000, 8000, 9000}[i]
		res, err := m.Add(Hit{Src: a, Proto: TCP, SrcPort: uint16(i + 1), DstPort: port, Flags: logparse.SYN, Time: at})
		if err != nil {
			t.Fatal(err)
		}
		if i == 2 && res.Outcome != Fired {
			t.Fatalf("a line stamped in the past is taken as the latest time: got %v, want fired", res.Outcome)
		}
	}
}

func TestCheckSet(t *testing.T) {
	d := func(name, seq, flags string) *Door {
		return mustDoor(t, Config{Name: name, Sequence: seq, TCPFlags: flags, StartCommand: "/bin/true"})
	}
	tests := []struct {
		name  string
		doors []*Door
		want  string
	}{
		{"distinct", []*Door{d("a", "1,2,3", ""), d("b", "3,2,1", "")}, ""},
		{"same name", []*Door{d("a", "1,2,3", ""), d("a", "3,2,1", "")}, "name used twice"},
		{"same sequence", []*Door{d("a", "1,2,3", ""), d("b", "1,2,3", "")}, "same sequence"},
		{"prefix", []*Door{d("a", "1,2,3", ""), d("b", "1,2", "")}, `door "a" can never open`},
		{"infix", []*Door{d("a", "5,1,2,6", ""), d("b", "1,2", "")}, `door "a" can never open`},
		{"udp differs", []*Door{d("a", "1,2,3", ""), d("b", "1,2:udp", "")}, ""},
		{"disjoint flags", []*Door{d("a", "1,2,3", "syn"), d("b", "1,2", "!syn")}, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := CheckSet(tc.doors)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("CheckSet: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("CheckSet: %v, want %q", err, tc.want)
			}
		})
	}
}

func TestMatcherOneTime(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "smtp_sequences")
	content := "# one-time sequences for SMTP\n 1000,2000,3000\n\n 4000,5000:udp,6000\n 7000,8000,9000\n"
	if err := os.WriteFile(path, []byte(content), 0o640); err != nil {
		t.Fatal(err)
	}
	door := mustDoor(t, Config{Name: "smtp", OneTimeSequences: path, TCPFlags: "fin,!ack",
		Open: &OpenConfig{Ports: []string{"25"}}, CmdTimeout: "5s"})
	clk := clock.NewFake(t0)
	m, err := NewMatcher([]*Door{door}, clk, Options{})
	if err != nil {
		t.Fatal(err)
	}
	a := netip.MustParseAddr("198.18.0.2")
	fin := func(port uint16, sport uint16, proto Proto) knock {
		return knock{port: port, proto: proto, sport: sport, flags: logparse.FIN}
	}
	got, _ := run(t, m, clk, a, []knock{fin(1000, 1, TCP), fin(2000, 2, TCP), fin(3000, 3, TCP)})
	if len(got) != 1 {
		t.Fatalf("first sequence: fired %v", got)
	}
	data, _ := os.ReadFile(path)
	want := "# one-time sequences for SMTP\n# 1000,2000,3000\n\n 4000,5000:udp,6000\n 7000,8000,9000\n"
	if string(data) != want {
		t.Fatalf("file after use:\n%s\nwant:\n%s", data, want)
	}
	if st, _ := os.Stat(path); st.Mode().Perm() != 0o640 {
		t.Errorf("mode %v, want 0640 kept", st.Mode().Perm())
	}
	if m.IsDoorPort(TCP, 1000) {
		t.Errorf("the used sequence's ports are still followed")
	}
	// Replaying the used sequence does nothing.
	got, _ = run(t, m, clk, a, []knock{fin(1000, 4, TCP), fin(2000, 5, TCP), fin(3000, 6, TCP)})
	if len(got) != 0 {
		t.Fatalf("replayed one-time sequence fired: %v", got)
	}
	// A restart reads the file and continues with the next sequence.
	m2, err := NewMatcher([]*Door{door}, clk, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if seq, _ := m2.Sequence("smtp"); FormatSequence(seq) != "4000,5000:udp,6000" {
		t.Fatalf("after restart current sequence %s", FormatSequence(seq))
	}
	// The next one fires, then the last; then the door is closed for good.
	got, _ = run(t, m, clk, a, []knock{fin(4000, 7, TCP), {port: 5000, proto: UDP, sport: 8}, fin(6000, 9, TCP)})
	if len(got) != 1 {
		t.Fatalf("second sequence: fired %v", got)
	}
	res, err := m.Add(Hit{Src: a, Proto: TCP, SrcPort: 10, DstPort: 7000, Flags: logparse.FIN})
	if err != nil {
		t.Fatal(err)
	}
	res, _ = m.Add(Hit{Src: a, Proto: TCP, SrcPort: 11, DstPort: 8000, Flags: logparse.FIN})
	res, _ = m.Add(Hit{Src: a, Proto: TCP, SrcPort: 12, DstPort: 9000, Flags: logparse.FIN})
	if res.Outcome != Fired || res.Remaining != 0 {
		t.Fatalf("last sequence: %+v", res)
	}
	if seq, _ := m.Sequence("smtp"); seq != nil {
		t.Fatalf("exhausted door still has sequence %v", seq)
	}
	if m.IsDoorPort(TCP, 7000) {
		t.Errorf("exhausted door still follows ports")
	}
	// The admin appends sequences; a reload opens the door again.
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString(" 1500,2500\n")
	f.Close()
	if err := m.ReloadOneTime(); err != nil {
		t.Fatal(err)
	}
	if seq, _ := m.Sequence("smtp"); FormatSequence(seq) != "1500,2500" || !m.IsDoorPort(TCP, 2500) {
		t.Fatalf("after reload: sequence %v", seq)
	}
	got, _ = run(t, m, clk, a, []knock{fin(1500, 20, TCP), fin(2500, 21, TCP)})
	if len(got) != 1 {
		t.Fatalf("appended sequence: fired %v", got)
	}
	// A malformed line is reported and the door keeps its state.
	os.WriteFile(path, []byte(" 1,x\n"), 0o640)
	if err := m.ReloadOneTime(); err == nil || !strings.Contains(err.Error(), ":1:") {
		t.Fatalf("reload of a malformed file: %v", err)
	}
}

func TestMatcherOneTimeNotFiredWhenFileChanged(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "seqs")
	if err := os.WriteFile(path, []byte("1000,2000\n3000,4000\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	door := mustDoor(t, Config{Name: "ot", OneTimeSequences: path, StartCommand: "/bin/true"})
	clk := clock.NewFake(t0)
	m, err := NewMatcher([]*Door{door}, clk, Options{})
	if err != nil {
		t.Fatal(err)
	}
	// The admin revokes the current sequence while the daemon runs.
	if err := os.WriteFile(path, []byte("3000,4000\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	a := netip.MustParseAddr("198.18.0.2")
	m.Add(Hit{Src: a, Proto: TCP, SrcPort: 1, DstPort: 1000})
	res, err := m.Add(Hit{Src: a, Proto: TCP, SrcPort: 2, DstPort: 2000})
	if res.Outcome != NotFired || err == nil {
		t.Fatalf("revoked sequence: %v %v, want NotFired with an error", res.Outcome, err)
	}
	// Unwritable directory: the mark cannot be made durable, the door does not fire.
	if err := os.WriteFile(path, []byte("1000,2000\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if os.Geteuid() != 0 { // root writes anywhere
		if err := os.Chmod(dir, 0o500); err != nil {
			t.Fatal(err)
		}
		defer os.Chmod(dir, 0o700)
		m.Add(Hit{Src: a, Proto: TCP, SrcPort: 3, DstPort: 1000})
		res, err = m.Add(Hit{Src: a, Proto: TCP, SrcPort: 4, DstPort: 2000})
		if res.Outcome != NotFired || err == nil {
			t.Fatalf("read-only directory: %v %v, want NotFired", res.Outcome, err)
		}
	}
}

func TestOpenOneTimeErrors(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad")
	os.WriteFile(bad, []byte("1000,2000\n# fine\n1000,abc\n"), 0o600)
	_, err := OpenOneTime(bad)
	if err == nil || !strings.Contains(err.Error(), bad+":3:") {
		t.Fatalf("malformed line: %v, want an error naming line 3", err)
	}
	if _, err := OpenOneTime(filepath.Join(dir, "missing")); err == nil {
		t.Fatal("missing file: no error")
	}
	empty := filepath.Join(dir, "empty")
	os.WriteFile(empty, []byte("#1,2\n\n"), 0o600)
	o, err := OpenOneTime(empty)
	if err != nil || o.Current() != nil || o.Remaining() != 0 {
		t.Fatalf("all used: %v %v", o, err)
	}
}
