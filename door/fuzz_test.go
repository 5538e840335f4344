package door

import (
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/knockdaemon/knock/internal/clock"
	"github.com/knockdaemon/knock/logparse"
)

// FuzzParseSequence: never panics; what parses formats back to itself.
func FuzzParseSequence(f *testing.F) {
	for _, s := range []string{"7000,8000,9000", "2222:udp,3333:tcp,4444:udp", " 1 , 2:UDP ", "", "1,,2", "65535:udp", "0", "1:icmp"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		seq, err := ParseSequence(s)
		if err != nil {
			return
		}
		if len(seq) == 0 || len(seq) > MaxSteps {
			t.Fatalf("%q parsed to %d steps", s, len(seq))
		}
		back, err := ParseSequence(FormatSequence(seq))
		if err != nil || !slices.Equal(back, seq) {
			t.Fatalf("%q: round trip %v -> %q -> %v, %v", s, seq, FormatSequence(seq), back, err)
		}
	})
}

// FuzzMatcher feeds arbitrary hits: the matcher never panics, never tracks
// more sources than its bound, and fires only on a door's last knock.
func FuzzMatcher(f *testing.F) {
	f.Add([]byte{0, 1, 0x1b, 0x58, 2, 0, 1, 0x1f, 0x40, 2, 0, 1, 0x23, 0x28, 2})
	f.Fuzz(func(t *testing.T, data []byte) {
		clk := clock.NewFake(t0)
		doors := []*Door{
			mustDoor(t, Config{Name: "a", Sequence: "7000,8000,9000", SequenceTimeout: "5s", TCPFlags: "syn", Open: &OpenConfig{Ports: []string{"22"}}, CmdTimeout: "0s"}),
			mustDoor(t, Config{Name: "b", Sequence: "9000,8000,7000", SequenceTimeout: "3s", Close: &OpenConfig{Ports: []string{"22"}}}),
			mustDoor(t, Config{Name: "c", Sequence: "7000:udp,7000,7000:udp", SequenceTimeout: "2s", StartCommand: "/bin/true"}),
		}
		m, err := NewMatcher(doors, clk, Options{MaxSources: 4})
		if err != nil {
			t.Fatal(err)
		}
		defer m.Close()
		// 5 bytes a hit: source, proto|flags, port hi, port lo, advance.
		for ; len(data) >= 5; data = data[5:] {
			src := netip.AddrFrom4([4]byte{198, 18, 0, data[0] & 7})
			proto := TCP
			if data[1]&0x80 != 0 {
				proto = UDP
			}
			port := uint16(data[2])<<8 | uint16(data[3])
			clk.Advance(time.Duration(data[4]) * 50 * time.Millisecond)
			res, err := m.Add(Hit{Src: src, Proto: proto, SrcPort: uint16(data[0]), DstPort: port, Flags: logparse.Flags(data[1] & 0x3f)})
			if err != nil {
				t.Fatal(err)
			}
			if res.Outcome == Fired {
				last := res.Door.Sequence[len(res.Door.Sequence)-1]
				if last.Port != port || last.Proto != proto {
					t.Fatalf("door %s fired on %d/%v, not its last knock", res.Door.Name, port, proto)
				}
			}
			if st := m.Stats(); st.Sources > 4 {
				t.Fatalf("%d sources tracked, bound 4", st.Sources)
			}
		}
	})
}
