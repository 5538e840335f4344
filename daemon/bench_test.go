package daemon

import (
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/knockdaemon/knock/cipher"
	"github.com/knockdaemon/knock/logparse"
	"github.com/knockdaemon/knock/logsource"
)

// TestHotPathAllocs: a line that is not a knock costs no allocation, and
// neither does a knock hit that does not complete a candidate.
func TestHotPathAllocs(t *testing.T) {
	h := newHarness(t, "", nil, nil)
	now := h.clk.Now()
	cases := []struct {
		name string
		line string
	}{
		{"unrelated line", "Nov 21 06:00:00 host sshd[812]: Accepted publickey for root from 192.0.2.1 port 50122 ssh2"},
		{"firewall line off the knock ports", line("203.0.113.9", "TCP", 40000, 443, "SYN")},
		{"firewall line with another prefix", replacePrefix(line("203.0.113.9", "TCP", 40000, 800, "SYN"), "drop: ")},
		{"syn-ack on a knock port", line("203.0.113.9", "TCP", 40000, 800, "ACK SYN")},
		{"udp knock with udp off", line("203.0.113.9", "UDP", 40000, 800, "")},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			l := logsource.Line{Text: []byte(tc.line), Received: now}
			h.d.handleLine(l) // warm the reused strings
			if n := testing.AllocsPerRun(200, func() { h.d.handleLine(l) }); n != 0 {
				t.Errorf("%v allocations per line, want 0", n)
			}
		})
	}
	t.Run("knock hit from a known source", func(t *testing.T) {
		// Retransmissions and stored hits of one source: alternate two
		// destination ports so that each line is a new, stored knock
		// until the sequence timeout lets the source go. Only the first
		// seven can be stored before a candidate forms, so measure hits
		// whose sources each send fewer than eight.
		srcs := make([]logsource.Line, 0, 7*64)
		for s := 0; s < 64; s++ {
			for k := 0; k < 7; k++ {
				srcs = append(srcs, logsource.Line{Text: []byte(line(fmt.Sprintf("198.18.1.%d", s), "TCP", uint16(30000+k), uint16(800+k), "SYN")), Received: now})
			}
		}
		for _, l := range srcs[:7] { // warm the table for the first source
			h.d.handleLine(l)
		}
		h.clk.Advance(20 * time.Second) // and let it expire
		i := 0
		n := testing.AllocsPerRun(7*60, func() {
			h.d.handleLine(srcs[i%len(srcs)])
			i++
		})
		if n != 0 {
			t.Errorf("%v allocations per stored knock hit, want 0", n)
		}
	})
}

// mixLines is a realistic kernel/syslog mix: most lines unrelated, some
// other firewall logging, a tenth knock hits from many sources (random
// ports: a scan or a flood, never a valid sequence), and every 500th
// line part of a real knock.
func mixLines(tb testing.TB, h *harness, n int) [][]byte {
	rng := rand.New(rand.NewPCG(1, 2))
	var out [][]byte
	var real []string
	for len(out) < n {
		var l string
		switch r := rng.IntN(100); {
		case len(out)%500 == 0:
			if len(real) == 0 {
				real = h.sequence(h.keys[alice], "203.0.113.77", cipher.Request{Port: 22, Time: uint8(1 + len(out)/500%50)})
			}
			l, real = real[0], real[1:]
		case r < 10:
			src := fmt.Sprintf("10.%d.%d.%d", rng.IntN(4), rng.IntN(256), rng.IntN(256))
			l = line(src, "TCP", uint16(1024+rng.IntN(60000)), uint16(745+rng.IntN(256)), "SYN")
		case r < 20:
			src := fmt.Sprintf("192.0.2.%d", rng.IntN(256))
			l = replacePrefix(line(src, "TCP", uint16(1024+rng.IntN(60000)), 443, "SYN"), "fw-drop: ")
		case r < 60:
			l = fmt.Sprintf("Nov 21 06:00:%02d host CRON[%d]: (root) CMD (   cd / && run-parts --report /etc/cron.hourly)", rng.IntN(60), rng.IntN(99999))
		default:
			l = fmt.Sprintf("Nov 21 06:00:%02d host sshd[%d]: Connection closed by authenticating user root 198.51.100.%d port %d [preauth]", rng.IntN(60), rng.IntN(99999), rng.IntN(256), rng.IntN(65536))
		}
		out = append(out, []byte(l))
	}
	return out
}

// BenchmarkPipelineMix feeds the mix through the whole pipeline (fake
// backend, discarded logs) and, interleaved in the same run, through
// logparse.Parse alone: parse_ns/line is the baseline, x_parse the ratio.
func BenchmarkPipelineMix(b *testing.B) {
	h := newHarness(b, "", nil, nil)
	// Log as the daemon does (text, info level), to nowhere.
	h.d.log = slog.New(slog.NewTextHandler(io.Discard, nil))
	lines := mixLines(b, h, 100000)
	var hit logparse.Hit
	const chunk = 1000
	var tPipe, tBase time.Duration
	b.ReportAllocs()
	b.ResetTimer()
	for done := 0; done < b.N; {
		k := min(chunk, b.N-done)
		start := done % len(lines)
		if start+k > len(lines) {
			k = len(lines) - start
		}
		seg := lines[start : start+k]
		// Alternate which goes first, so that neither always finds the
		// chunk's lines warm in the cache.
		pipeFirst := (done/chunk)%2 == 0
		if !pipeFirst {
			tBase += timeParse(seg, &hit)
		}
		t0 := time.Now()
		for _, l := range seg {
			h.d.handleLine(logsource.Line{Text: l, Received: t0})
		}
		tPipe += time.Since(t0)
		if pipeFirst {
			tBase += timeParse(seg, &hit)
		}
		done += k
	}
	b.StopTimer()
	b.ReportMetric(float64(tPipe.Nanoseconds())/float64(b.N), "pipeline_ns/line")
	b.ReportMetric(float64(tBase.Nanoseconds())/float64(b.N), "parse_ns/line")
	b.ReportMetric(float64(tPipe)/float64(tBase), "x_parse")
	b.ReportMetric(float64(b.N)/tPipe.Seconds(), "lines/s")
}

// BenchmarkFlood feeds knock-port hits from 100,000 spoofed sources, ten
// each, through the pipeline (issue 8's flood) and reports hits/s.
// "interleaved": each source's hits are 100,000 lines apart, so with
// max_sources 65536 the LRU table drops every source before its next hit.
// "bursts": each source sends its ten at once, so every source forms
// three candidates, fails them and is locked out. x_parse is the ratio to
// parsing the same lines alone, timed interleaved in the same run.
func BenchmarkFlood(b *testing.B) {
	const sources, per = 100000, 10
	for _, mode := range []string{"interleaved", "bursts"} {
		b.Run(mode, func(b *testing.B) {
			h := newHarness(b, "", nil, nil)
			h.d.log = slog.New(slog.NewTextHandler(io.Discard, nil))
			rng := rand.New(rand.NewPCG(3, 4))
			lines := make([][]byte, 0, sources*per)
			add := func(s, k int) {
				src := fmt.Sprintf("10.%d.%d.%d", s>>16, (s>>8)&255, s&255)
				lines = append(lines, []byte(line(src, "TCP", uint16(20000+k), uint16(745+rng.IntN(256)), "SYN")))
			}
			if mode == "interleaved" {
				for k := 0; k < per; k++ {
					for s := 0; s < sources; s++ {
						add(s, k)
					}
				}
			} else {
				for s := 0; s < sources; s++ {
					for k := 0; k < per; k++ {
						add(s, k)
					}
				}
			}
			var hit logparse.Hit
			var tPipe, tBase time.Duration
			now := h.clk.Now()
			b.ReportAllocs()
			b.ResetTimer()
			for done := 0; done < b.N; {
				start := done % len(lines)
				seg := lines[start:min(start+1000, len(lines), start+b.N-done)]
				pipeFirst := (done/1000)%2 == 0
				if !pipeFirst {
					tBase += timeParse(seg, &hit)
				}
				t0 := time.Now()
				for _, l := range seg {
					h.d.handleLine(logsource.Line{Text: l, Received: now})
				}
				tPipe += time.Since(t0)
				if pipeFirst {
					tBase += timeParse(seg, &hit)
				}
				done += len(seg)
			}
			b.StopTimer()
			b.ReportMetric(float64(b.N)/tPipe.Seconds(), "hits/s")
			b.ReportMetric(float64(tPipe)/float64(tBase), "x_parse")
			if st := h.d.Status(); st.Counters.Accepted != 0 {
				b.Fatalf("the flood was granted something: %+v", st.Counters)
			}
		})
	}
}

// timeParse is the baseline: logparse.Parse alone over seg.
func timeParse(seg [][]byte, hit *logparse.Hit) time.Duration {
	t := time.Now()
	for _, l := range seg {
		_ = logparse.Parse(l, hit)
	}
	return time.Since(t)
}
