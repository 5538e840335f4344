package logparse

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"regexp"
	"sort"
	"strconv"
	"testing"

	"github.com/knockdaemon/knock/internal/netnstest"
)

// publicSamples is the team's collection of real lines from public
// sources. The lines themselves stay out of this repository; what each
// must yield is kept in testdata/public-expect.json, keyed by the SHA-256
// of the line (addresses and prefixes as digests too), and was reviewed
// line by line against the file's notes.
const publicSamples = "../../shared/logs/public-firewall-log-samples.txt"

var groupRE = regexp.MustCompile(`^# (G[0-9]+[a-z]?) `)

type publicLine struct {
	group, text string
	n           int
}

func readPublic(t *testing.T) []publicLine {
	t.Helper()
	data, err := os.ReadFile(publicSamples)
	if err != nil {
		netnstest.Unavailable(t, "public samples: %v", err)
	}
	var out []publicLine
	group := ""
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for n := 1; sc.Scan(); n++ {
		l := sc.Text()
		if m := groupRE.FindStringSubmatch(l); m != nil {
			group = m[1]
		}
		if l == "" || l[0] == '#' {
			continue
		}
		out = append(out, publicLine{group: group, text: l, n: n})
	}
	return out
}

func lineKey(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:8])
}

// Independent of the parser: the fields right after the kernel's
// "IN=... OUT=..." pair, found with regular expressions.
var (
	oracleAddr  = regexp.MustCompile(` SRC=([0-9a-fA-F:.]+) DST=([0-9a-fA-F:.]+) `)
	oraclePorts = regexp.MustCompile(`PROTO=(TCP|UDP) SPT=([0-9]+) DPT=([0-9]+) `)
	oracleIPFW  = regexp.MustCompile(`ipfw: ([0-9]+) .*? (TCP|UDP) ([0-9.]+):([0-9]+) ([0-9.]+):([0-9]+) (in|out) via `)
)

func TestPublicSamples(t *testing.T) {
	lines := readPublic(t)
	expect := map[string]want{}
	data, err := os.ReadFile("testdata/public-expect.json")
	if err != nil && os.Getenv("KNOCK_PUBLIC_WRITE") != "1" {
		t.Fatal(err)
	}
	if err == nil {
		if err := json.Unmarshal(data, &expect); err != nil {
			t.Fatal(err)
		}
	}
	got := map[string]want{}
	perGroup := map[string]map[string]int{}
	var h Hit
	for _, pl := range lines {
		err := Parse([]byte(pl.text), &h)
		w := want{}
		switch e := err.(type) {
		case nil:
			w = wantOf(&h)
			w.FromKernel = false // the expectation file does not pin it
		case *MalformedError:
			w.Result = "malformed"
		case *LimitNotice:
			w.Result, w.Rule = "limit", e.Rule
		default:
			if err != ErrNotFirewall {
				t.Fatalf("line %d: unexpected error %T", pl.n, err)
			}
			w.Result = "not_firewall"
		}
		key := lineKey(pl.text)
		got[key] = redact(w)
		w = redact(w)
		if perGroup[pl.group] == nil {
			perGroup[pl.group] = map[string]int{}
		}
		perGroup[pl.group][w.Result]++

		// the oracle agrees on every hit
		if err == nil && h.Kind == Netfilter {
			a := findAnchor([]byte(pl.text))
			if a < 0 {
				a = pveAnchor([]byte(pl.text))
			}
			tail := pl.text[a:]
			if m := oracleAddr.FindStringSubmatch(tail); m == nil || !sameAddr(m[1], h.Src.String()) || !sameAddr(m[2], h.Dst.String()) {
				t.Errorf("line %d: addresses %v %v, oracle %q", pl.n, h.Src, h.Dst, m)
			}
			if m := oraclePorts.FindStringSubmatch(tail); m != nil {
				if m[1] != h.Proto.String() || m[2] != strconv.Itoa(int(h.SrcPort)) || m[3] != strconv.Itoa(int(h.DstPort)) {
					t.Errorf("line %d: %v %d>%d, oracle %q", pl.n, h.Proto, h.SrcPort, h.DstPort, m)
				}
			} else if h.SrcPort != 0 || h.DstPort != 0 {
				t.Errorf("line %d: ports %d>%d where the oracle sees none", pl.n, h.SrcPort, h.DstPort)
			}
		}
		if err == nil && h.Kind == IPFW {
			if m := oracleIPFW.FindStringSubmatch(pl.text); m != nil {
				if m[1] != strconv.Itoa(h.Rule) || m[2] != h.Proto.String() || m[3] != h.Src.String() ||
					m[4] != strconv.Itoa(int(h.SrcPort)) || m[5] != h.Dst.String() || m[6] != strconv.Itoa(int(h.DstPort)) {
					t.Errorf("line %d: ipfw %+v, oracle %q", pl.n, h, m)
				}
			}
		}
		if os.Getenv("KNOCK_PUBLIC_WRITE") != "1" {
			if e, ok := expect[key]; !ok {
				t.Errorf("line %d (%s): no expectation for %q", pl.n, pl.group, pl.text)
			} else if e != w {
				g, _ := json.Marshal(w)
				x, _ := json.Marshal(e)
				t.Errorf("line %d (%s) %q\n got %s (%v)\nwant %s", pl.n, pl.group, pl.text, g, err, x)
			}
		}
	}

	// What the file's notes say each group must yield.
	must := []struct {
		group, result string
		atLeast       int
	}{
		// every complete, unsanitised netfilter and ipfw line is a hit
		{"G1", "hit", 63}, {"G1b", "hit", 16}, {"G1c", "hit", 6}, {"G2", "hit", 16},
		{"G3", "hit", 8}, {"G5", "hit", 3}, {"G6", "hit", 15},
		// sanitised addresses ("77.XX.XX.XX", "xxx.xxx.xxx.xxx") and records
		// cut short or wrapped by their publisher cannot be trusted
		{"G1", "malformed", 3}, {"G1c", "malformed", 4}, {"G2", "malformed", 1}, {"G6", "malformed", 4},
		// pf is not parsed; forged, edited and grep-mangled lines are refused
		{"G7", "not_firewall", 12}, {"G8", "malformed", 3},
	}
	for _, m := range must {
		if n := perGroup[m.group][m.result]; n < m.atLeast {
			t.Errorf("group %s: %d lines %s, want at least %d (%v)", m.group, n, m.result, m.atLeast, perGroup[m.group])
		}
	}
	for _, g := range []string{"G7", "G8"} {
		if n := perGroup[g]["hit"]; n != 0 {
			t.Errorf("group %s: %d hits; its lines must never be acted on", g, n)
		}
	}
	t.Logf("per group: %v", perGroup)

	if os.Getenv("KNOCK_PUBLIC_WRITE") == "1" {
		keys := make([]string, 0, len(got))
		for k := range got {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		var b bytes.Buffer
		b.WriteString("{\n")
		for i, k := range keys {
			v, _ := json.Marshal(got[k])
			b.WriteString(strconv.Quote(k) + ": " + string(v))
			if i < len(keys)-1 {
				b.WriteByte(',')
			}
			b.WriteByte('\n')
		}
		b.WriteString("}\n")
		if err := os.WriteFile("testdata/public-expect.json", b.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// redact replaces the text that comes from the samples (addresses,
// prefixes) with a digest, so the expectation file holds no part of the
// lines; the regexp oracle checks the addresses themselves.
func redact(w want) want {
	for _, f := range []*string{&w.Src, &w.Dst, &w.Prefix} {
		if *f != "" {
			*f = "sha256:" + lineKey(*f)
		}
	}
	return w
}

// sameAddr compares the kernel's expanded IPv6 spelling with netip's.
func sameAddr(logged, parsed string) bool {
	a, ok := parseAddr([]byte(logged))
	return ok && a.String() == parsed
}
