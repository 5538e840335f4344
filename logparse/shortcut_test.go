package logparse

import (
	"bufio"
	"bytes"
	"math/rand/v2"
	"os"
	"testing"

	"github.com/knockdaemon/knock/bench/mixlog"
)

// Parse takes two shortcuts that the tests here hold to the general way
// they skip, line by line, on the corpus, the public samples, the issue-8
// mix and random mutations of all of them: readCommon against readTokens,
// and parsing from the first kernel anchor against parsing from the last
// one (findAnchor).

// shortcutLines returns the lines to check: every corpus line, every
// public sample (when the file is there), 10,000 lines of bench/mixlog,
// and mutations of them that keep the kernel's shape in places and break
// it in others.
func shortcutLines(t *testing.T) [][]byte {
	// "IN=x OUT=y" where only findAnchor finds it: inside an ICMP
	// error's inner packet and inside OPT ( ), after the kernel's pair
	seeds := [][]byte{
		[]byte("Nov 21 05:20:44 gw kernel: icmp: IN=eth0 OUT= MAC= SRC=198.51.100.7 DST=203.0.113.5 LEN=88 TOS=0x00 PREC=0x00 TTL=64 ID=1 PROTO=ICMP TYPE=3 CODE=3 [SRC=203.0.113.5 DST=198.51.100.7 LEN=60 TTL=64 ID=2 IN=a OUT=b PROTO=UDP SPT=1 DPT=2 LEN=40 ] "),
		[]byte("Nov 21 05:20:44 gw kernel: opt: IN=eth0 OUT= MAC= SRC=198.51.100.7 DST=203.0.113.5 LEN=60 TTL=64 ID=1 PROTO=TCP SPT=1 DPT=800 WINDOW=1 RES=0x00 SYN URGP=0 OPT (IN=a OUT=b) "),
		[]byte("Nov 21 05:20:44 gw kernel: opt: IN=eth0 OUT= MAC= SRC=198.51.100.7 DST=203.0.113.5 LEN=60 TTL=64 ID=1 OPT (0 IN=a OUT=b) PROTO=TCP SPT=1 DPT=800 WINDOW=1 RES=0x00 SYN URGP=0 "),
	}
	for _, c := range readCorpus(t) {
		seeds = append(seeds, []byte(c.Line))
	}
	if data, err := os.ReadFile(publicSamples); err == nil {
		for _, l := range bytes.Split(data, []byte("\n")) {
			if len(l) > 0 && l[0] != '#' {
				seeds = append(seeds, l)
			}
		}
	}
	var buf bytes.Buffer
	w := bufio.NewWriter(&buf)
	g := mixlog.New(7, "knock: ")
	for i := range 10000 {
		g.Line(w, i)
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	seeds = append(seeds, bytes.Split(bytes.TrimSpace(buf.Bytes()), []byte("\n"))...)

	r := rand.New(rand.NewPCG(21, 22))
	lines := append([][]byte(nil), seeds...)
	for k, l := range seeds {
		n := 1
		if k < 2000 { // the corpus and public samples: the odd forms
			n = 30
		}
		for range n {
			lines = append(lines, mutate(r, l))
		}
	}
	return lines
}

var mutations = []string{" ", "  ", "IN=", "OUT=", " OUT=", "SRC=", "DST=", "=", "[", "]", "(", ")",
	"PROTO=TCP", "PROTO=UDP", "PROTO=ICMP", "SPT=1", "DPT=800", "DF", "SYN", "ACK", " ACK", "LEN=1", "TTL=1",
	"kernel:", "\\x20", "ipfw: ", "OPT (", "INCOMPLETE [", "FRAG:1", "ID:1a", "HOPLIMIT=1", "1.2.3.4", "::1",
	"2001:0db8:0000:0000:0000:0000:0000:0005", ":", ".", "0", "9", "\r", "\x00", "\xff", "MAC=", "IN=eth0 OUT= ",
	"TYPE=8", "CODE=0", "MARK=0x1", "UID=0", "PHYSIN=a", "MACPROTO=0800", "0x", "0x00", "SEQ=1 ", "URGP=0"}

func mutate(r *rand.Rand, l []byte) []byte {
	b := bytes.Clone(l)
	for range 1 + r.IntN(3) {
		p := r.IntN(len(b) + 1)
		switch r.IntN(6) {
		case 0: // delete a few bytes
			if p < len(b) {
				b = append(b[:p:p], b[min(len(b), p+1+r.IntN(8)):]...)
			}
		case 1: // insert a token
			b = append(b[:p:p], append([]byte(mutations[r.IntN(len(mutations))]), b[p:]...)...)
		case 2: // change a byte
			if p < len(b) {
				b[p] = byte(r.IntN(256))
			}
		case 3: // repeat a stretch
			if p < len(b) {
				e := min(len(b), p+1+r.IntN(30))
				b = append(b[:e:e], append(bytes.Clone(b[p:e]), b[e:]...)...)
			}
		case 4: // a space in, or one out
			if p < len(b) && b[p] == ' ' {
				b = append(b[:p:p], b[p+1:]...)
			} else if p < len(b) {
				b[p] = ' '
			}
		case 5: // cut the end
			b = b[:p]
		}
	}
	return b
}

// TestReadCommonMatchesTokens: wherever readCommon accepts the fields,
// reading them token by token gives no error and the same state.
func TestReadCommonMatchesTokens(t *testing.T) {
	common := 0
	for _, line := range shortcutLines(t) {
		a := findAnchor(line)
		if a < 0 {
			continue
		}
		s := line[a:]
		var h1, h2 Hit
		st1, st2 := fieldReader{h: &h1}, fieldReader{h: &h2}
		if !st1.readCommon(s) {
			continue
		}
		common++
		if err := st2.readTokens(s); err != nil {
			t.Fatalf("%q: readCommon accepts, readTokens: %v", s, err)
		}
		if !bytes.Equal(st1.in, st2.in) || !bytes.Equal(st1.out, st2.out) || st1.src != st2.src || st1.dst != st2.dst ||
			st1.seen != st2.seen || st1.sec != st2.sec || st1.frag != st2.frag || st1.udplite != st2.udplite ||
			st1.sawPorts != st2.sawPorts || st1.groupOUT != st2.groupOUT || h1 != h2 {
			t.Fatalf("%q:\nreadCommon %+v %+v\nreadTokens %+v %+v", s, st1, h1, st2, h2)
		}
	}
	if common < 1500 { // the mix alone has about 1,700 firewall lines
		t.Errorf("readCommon took only %d lines; the usual firewall line should take it", common)
	}
}

// parseLastAnchor is Parse without the first-anchor shortcut: the
// fields are read from the last anchor (findAnchor), else pvefw's.
func parseLastAnchor(line []byte, h *Hit) error {
	if n := len(line); n > 0 && line[n-1] == '\r' {
		line = line[:n-1]
	}
	if IndexSRC(line) < 0 {
		if IndexIPFW(line) < 0 {
			return ErrNotFirewall
		}
		return parseIPFW(line, h)
	}
	anchor := findAnchor(line)
	if anchor < 0 {
		anchor = pveAnchor(line)
	}
	if anchor < 0 {
		return ErrNotFirewall
	}
	var groupOUT bool
	return parseNetfilter(line, anchor, h, &groupOUT)
}

// TestFirstAnchorShortcut: Parse gives the same result and reason as
// parsing from the last anchor, also where a prefix or a mutation holds
// another "IN=x OUT=".
func TestFirstAnchorShortcut(t *testing.T) {
	moved := 0
	for _, line := range shortcutLines(t) {
		var h1, h2 Hit
		err1, err2 := Parse(line, &h1), parseLastAnchor(line, &h2)
		if (err1 == nil) != (err2 == nil) || (err1 != nil && err1.Error() != err2.Error()) {
			t.Fatalf("%q: Parse %v, from the last anchor %v", line, err1, err2)
		}
		if first := firstAnchor(line); first >= 0 && first != findAnchor(line) {
			moved++
		}
		if err1 != nil {
			continue
		}
		n1, o1 := h1.Time.Zone()
		n2, o2 := h2.Time.Zone()
		if !h1.Time.Equal(h2.Time) || n1 != n2 || o1 != o2 {
			t.Fatalf("%q: time %v, from the last anchor %v", line, h1.Time, h2.Time)
		}
		h1.Time = h2.Time
		if h1 != h2 {
			t.Fatalf("%q:\nParse %+v\nlast anchor %+v", line, h1, h2)
		}
	}
	if moved < 20 {
		t.Errorf("only %d lines with a first anchor before the last; the test needs such lines", moved)
	}
}
