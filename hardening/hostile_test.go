package hardening

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/knockdaemon/knock/cipher"
)

// TestHostileLinesGrantNothing feeds the built daemon (stdin source, and a
// followed file; exec backend recording to a file) hostile log lines. Each kind comes as eight
// lines, one per knock of a VALID sequence for the victim address X: if the
// daemon took any kind for hits, those eight would form a candidate that
// decrypts and X would be let in. The assertions: the daemon survives,
// counts no hit at all from the hostile lines, grants nothing, and then
// still opens for a legitimate knock that follows.
func TestHostileLinesGrantNothing(t *testing.T) {
	for _, source := range []string{"stdin", "file"} {
		t.Run(source, func(t *testing.T) { testHostile(t, source) })
	}
}

func testHostile(t *testing.T, source string) {
	e := newEnv(t)
	c := cfg{}
	var logf *os.File
	if source == "file" {
		c.source, c.path = "file", filepath.Join(e.dir, "kern.log")
		var err error
		if logf, err = os.OpenFile(c.path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644); err != nil {
			t.Fatal(err)
		}
		defer logf.Close()
	}
	conf := e.config(c)
	p := e.start(conf, nil)
	feed := p.Feed
	if logf != nil {
		time.Sleep(300 * time.Millisecond) // the file source opens and seeks
		feed = func(lines ...string) {
			t.Helper()
			if _, err := logf.WriteString(strings.Join(lines, "\n") + "\n"); err != nil {
				t.Fatal(err)
			}
		}
	}

	victim := addr("198.18.77.7")
	other := addr("198.18.66.6")
	req := cipher.Request{Port: 22, Time: 1}
	ports := e.ports(req, time.Now())
	valid := func(i int) string { return e.hitLine(victim, uint16(40000+i), ports[i]) }

	kinds := map[string]func(i int) []string{
		// A line longer than the sources' 1 MiB limit whose tail is a
		// kernel line: a reader that cut it at the limit would hand the
		// tail on as a line of its own.
		"overlong-tail": func(i int) []string {
			var out []string
			for _, n := range []int{1<<20 - 200, 1<<20 - 1, 1 << 20, 1<<20 + 1, 2 << 20} {
				out = append(out, strings.Repeat("A", n)+valid(i))
			}
			return out
		},
		// 1 MB of junk in the prefix position.
		"megabyte-prefix": func(i int) []string {
			return []string{strings.Replace(valid(i), e.prefix, strings.Repeat("\xff", 1000000)+e.prefix, 1)}
		},
		// NUL and other binary bytes glued to the fields a C-string or a
		// lenient scanner would cut off.
		"binary": func(i int) []string {
			v := valid(i)
			return []string{
				strings.Replace(v, "SRC="+victim.String(), "SRC="+victim.String()+"\x00", 1),
				strings.Replace(v, " DPT=", " DPT=\x00", 1),
				strings.Replace(v, "PROTO=TCP", "PROTO=\x01TCP", 1),
				"\x00\x01\x02\x03" + strings.Repeat("\x00", 4096),
			}
		},
		// Invalid UTF-8 inside values.
		"invalid-utf8": func(i int) []string {
			v := valid(i)
			return []string{
				strings.Replace(v, "SRC="+victim.String(), "SRC="+victim.String()+"\xc3", 1),
				strings.Replace(v, " DPT="+strconv.Itoa(int(ports[i])), " DPT="+strconv.Itoa(int(ports[i]))+"\xff\xfe", 1),
				strings.Replace(v, "SYN", "SYN\xed\xa0\x80", 1),
			}
		},
		// Every truncation of the line before its SYN flag: a line cut
		// mid-field must not become a knock (tcp_flags = syn).
		"truncated": func(i int) []string {
			v := valid(i)
			end := strings.Index(v, " SYN")
			var out []string
			for n := 0; n <= end; n++ {
				out = append(out, v[:n])
			}
			return out
		},
		// Duplicated keys: whichever copy a parser kept, the eight lines
		// would knock the sequence for X or for the other address.
		"duplicate-keys": func(i int) []string {
			v := valid(i)
			return []string{
				strings.Replace(v, " SPT=", " SRC="+other.String()+" SPT=", 1),
				strings.Replace(v, " DST=", " SRC="+other.String()+" DST=", 1),
				strings.Replace(v, " WINDOW=", " DPT=1 WINDOW=", 1),
				strings.Replace(v, " SPT=", " DPT=1 SPT=", 1),
				strings.Replace(v, " LEN=", " PROTO=UDP LEN=", 1),
			}
		},
		// Fields inside the prefix: the real packet is from another
		// address to a port outside the knock range; only the prefix
		// text (which a LOG rule's --log-prefix, or a forged line, can
		// carry) names X and the knock port.
		"fields-in-prefix": func(i int) []string {
			fake := "SRC=" + victim.String() + " DST=198.18.0.1 PROTO=TCP SPT=1 DPT=" + strconv.Itoa(int(ports[i])) + " SYN"
			real := e.hitLine(other, uint16(41000+i), 22)
			return []string{
				strings.Replace(real, e.prefix+" ", e.prefix+" "+fake+" ", 1),
				strings.Replace(real, e.prefix+" ", e.prefix+" IN=eth0 "+fake+" ", 1),
			}
		},
	}
	feed("hardening: start")
	var total int
	for name, kind := range kinds {
		var lines []string
		for i := 0; i < 8; i++ {
			lines = append(lines, kind(i)...)
		}
		feed(lines...)
		total += len(lines)
		t.Logf("%s: %d lines", name, len(lines))
	}

	// Then a real knock: the daemon is alive and still lets it in. The
	// stdin source reads in order, so once it is accepted every hostile
	// line has been through the pipeline.
	legit := addr("198.18.55.5")
	mark := p.Mark()
	feed(e.seqLines(legit, req)...)
	p.WaitEvent(mark, 60*time.Second, map[string]string{"event": "opened", "addr": legit.String()})
	ctr := status(t, conf).Counters
	t.Logf("%d hostile lines, then one knock: lines read %d (the rest were over 1 MiB), firewall %d, malformed %d, hits %d, candidates %d, accepted %d",
		total, ctr.Lines, ctr.Firewall, ctr.Malformed, ctr.Hits, ctr.Candidates, ctr.Accepted)
	if ctr.Hits != 8 || ctr.Candidates != 1 || ctr.Accepted != 1 || ctr.Opened != 1 {
		t.Errorf("hostile lines became knocks: hits %d candidates %d accepted %d opened %d, want 8 1 1 1 (the legitimate knock only)",
			ctr.Hits, ctr.Candidates, ctr.Accepted, ctr.Opened)
	}
	if ctr.Malformed == 0 {
		t.Errorf("no hostile line was counted as malformed")
	}
	if got := e.fwLog(); len(got) != 1 || !strings.HasPrefix(got[0], "open_"+legit.String()+"_tcp_22_") {
		t.Errorf("firewall record %q, want only the legitimate open", got)
	}
	if n := p.Count(map[string]string{"event": "accepted"}); n != 1 {
		t.Errorf("%d accepted events, want 1", n)
	}
}
