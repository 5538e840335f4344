package mixlog

import (
	"bufio"
	"bytes"
	"strings"
	"testing"

	"github.com/knockdaemon/knock/logparse"
)

func mix(seed uint64, lines int) []byte {
	var b bytes.Buffer
	w := bufio.NewWriter(&b)
	g := New(seed, "knock: ")
	for i := range lines {
		g.Line(w, i)
	}
	w.Flush()
	return b.Bytes()
}

func TestDeterministic(t *testing.T) {
	a, b := mix(1, 5000), mix(1, 5000)
	if !bytes.Equal(a, b) {
		t.Fatal("the same seed gave different output")
	}
	if bytes.Equal(a, mix(2, 5000)) {
		t.Fatal("another seed gave the same output")
	}
}

// TestMixShape checks what the benchmarks claim about the mix: about 240
// bytes a line, a tenth knock-port hits that logparse accepts, other
// firewall lines on other ports, nothing malformed.
func TestMixShape(t *testing.T) {
	const n = 50000
	data := mix(1, n)
	lines := strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
	if len(lines) != n {
		t.Fatalf("%d lines, want %d", len(lines), n)
	}
	if avg := float64(len(data)) / n; avg < 225 || avg > 255 {
		t.Errorf("%.1f bytes a line, want about 240", avg)
	}
	var h logparse.Hit
	knock, other, v6 := 0, 0, 0
	for i, l := range lines {
		err := logparse.Parse([]byte(l), &h)
		switch {
		case err == logparse.ErrNotFirewall:
		case err != nil:
			t.Fatalf("line %d malformed: %v\n%s", i+1, err, l)
		case h.DstPort >= 745 && h.DstPort <= 1000 && h.Prefix == "knock:":
			knock++
			if h.Src.Is6() {
				v6++
			}
		default:
			other++
		}
	}
	if f := float64(knock) / n; f < 0.09 || f > 0.11 {
		t.Errorf("%.3f of the lines are knock hits, want about 0.1", f)
	}
	if other == 0 || v6 == 0 {
		t.Errorf("%d other firewall lines, %d IPv6 knock hits; want some of each", other, v6)
	}
}

// TestFlood checks both flood orders: every line a knock-port hit, n
// distinct sources, lines/n hits each; bursty keeps a source's hits
// within one group of 1000 sources.
func TestFlood(t *testing.T) {
	const lines, n = 20000, 2000
	for _, bursty := range []bool{false, true} {
		var b bytes.Buffer
		w := bufio.NewWriter(&b)
		g := New(3, "kb: ")
		for i := range lines {
			g.FloodHit(w, i, lines, n, bursty)
		}
		w.Flush()
		var h logparse.Hit
		count := map[string]int{}
		first, last := map[string]int{}, map[string]int{}
		for i, l := range strings.Split(strings.TrimSuffix(b.String(), "\n"), "\n") {
			if err := logparse.Parse([]byte(l), &h); err != nil || h.DstPort < 745 || h.DstPort > 1000 || h.Prefix != "kb:" {
				t.Fatalf("bursty=%v line %d: %v %+v", bursty, i+1, err, h)
			}
			s := h.Src.String()
			if _, ok := first[s]; !ok {
				first[s] = i
			}
			last[s] = i
			count[s]++
		}
		if len(count) != n {
			t.Errorf("bursty=%v: %d sources, want %d", bursty, len(count), n)
		}
		for s, k := range count {
			if k != lines/n {
				t.Fatalf("bursty=%v: %s has %d hits, want %d", bursty, s, k, lines/n)
			}
			if span := last[s] - first[s]; bursty && span >= lines/n*1000 {
				t.Fatalf("bursty: %s spans %d lines, more than its group", s, span)
			}
		}
	}
}
