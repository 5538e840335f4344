package parsecmd

import (
	"bytes"
	"fmt"
	"io"
	"reflect"
	"runtime"
	"strings"
	"testing"

	"github.com/knockdaemon/knock/logparse"
)

// bigInput is several chunks of lines: hits under MaxPrefixes+8 prefixes
// that first appear in different chunks, malformed lines, ipfw notices,
// CRLF endings, noise, and one line too long in the middle.
func bigInput() string {
	var b strings.Builder
	for i := 0; b.Len() < 3*chunkSize; i++ {
		switch {
		case i == 9000:
			b.WriteString(strings.Repeat("x", MaxLine+10))
		case i%7 == 0:
			// a new prefix every 300 lines: they spread over chunks
			b.WriteString(strings.Replace(knockLine, "knock: ", fmt.Sprintf("p%02d: ", (i/300)%(MaxPrefixes+8)), 1))
		case i%11 == 0:
			b.WriteString(strings.Replace(knockLine, "DPT=800", fmt.Sprintf("DPT=%d", 700+i%400), 1))
		case i%13 == 0:
			b.WriteString(badLine)
		case i%17 == 0:
			b.WriteString(limitLine)
		case i%19 == 0:
			b.WriteString(v6Line + "\r")
		case i%5 == 0:
			b.WriteString(sshLine)
		default:
			b.WriteString(noise)
		}
		b.WriteByte('\n')
	}
	b.WriteString(knockLine) // no final newline
	return b.String()
}

// sequential is Run's result computed one line at a time, with the
// output it must print.
func sequential(data string, opts Options) (Summary, string) {
	var s Summary
	var out []byte
	var h logparse.Hit
	opts.Prefix = strings.TrimSpace(opts.Prefix)
	for i, line := range strings.Split(strings.TrimSuffix(data, "\n"), "\n") {
		s.Lines++
		if len(line) >= MaxLine {
			s.TooLong++
			continue
		}
		line = strings.TrimSuffix(line, "\r")
		err := logparse.Parse([]byte(line), &h)
		switch {
		case err == nil:
			s.Firewall++
			s.Hits++
			if h.FromKernel {
				s.FromKernel++
			}
			if _, ok := s.Prefixes[h.Prefix]; ok || len(s.Prefixes) < MaxPrefixes {
				if s.Prefixes == nil {
					s.Prefixes = map[string]int{}
				}
				s.Prefixes[h.Prefix]++
			} else {
				s.OtherPrefixes++
			}
			if !strings.HasPrefix(h.Prefix, opts.Prefix) {
				s.Filtered++
				continue
			}
			knock := (h.Proto == logparse.ProtoTCP || h.Proto == logparse.ProtoUDP) && !h.Fragment &&
				h.DstPort >= opts.Base && int(h.DstPort) <= int(opts.Base)+255
			if knock {
				s.KnockHits++
			}
			if opts.Quiet || (!knock && !opts.AllPorts) {
				continue
			}
			s.Printed++
			if opts.Format == "json" {
				out = appendJSON(out, i+1, &h)
			} else {
				out = appendText(out, i+1, &h)
			}
		case err == logparse.ErrNotFirewall:
		default:
			s.Firewall++
			if _, ok := err.(*logparse.LimitNotice); ok {
				s.Limits++
				continue
			}
			s.Malformed++
			if len(s.FirstWhy) < 5 {
				s.FirstWhy = append(s.FirstWhy, fmt.Sprintf("line %d: %v", i+1, err))
			}
		}
	}
	return s, string(out)
}

// TestRunParallelMatchesSequential checks that the chunked, parallel Run
// prints the same hits in the same order with the same line numbers, and
// counts the same (prefix tally included), as one pass line by line,
// whatever the read sizes and the number of CPUs.
func TestRunParallelMatchesSequential(t *testing.T) {
	data := bigInput()
	for _, opts := range []Options{
		{Base: 745},
		{Base: 745, AllPorts: true, Format: "json"},
		{Base: 745, Prefix: "p1", Quiet: true},
	} {
		want, wantOut := sequential(data, opts)
		if want.TooLong != 1 || want.OtherPrefixes == 0 || want.Malformed < 5 || want.Printed == 0 && !opts.Quiet {
			t.Fatalf("input does not cover the cases: %+v", want)
		}
		for _, procs := range []int{1, 3} {
			for _, rd := range []struct {
				name string
				r    func() io.Reader
			}{
				{"whole", func() io.Reader { return strings.NewReader(data) }},
				{"4093-byte reads", func() io.Reader { return &sizedReader{strings.NewReader(data), 4093} }},
			} {
				t.Run(fmt.Sprintf("%+v/procs=%d/%s", opts, procs, rd.name), func(t *testing.T) {
					defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(procs))
					var out bytes.Buffer
					got, err := Run(rd.r(), &out, opts)
					if err != nil {
						t.Fatal(err)
					}
					if !reflect.DeepEqual(got, want) {
						t.Errorf("summary\ngot  %+v\nwant %+v", got, want)
					}
					if out.String() != wantOut {
						t.Errorf("output differs: %d bytes, want %d", out.Len(), len(wantOut))
					}
				})
			}
		}
	}
}

type sizedReader struct {
	r io.Reader
	n int
}

func (s *sizedReader) Read(p []byte) (int, error) { return s.r.Read(p[:min(len(p), s.n)]) }

// failWriter fails after n bytes.
type failWriter struct{ n int }

func (f *failWriter) Write(p []byte) (int, error) {
	if f.n -= len(p); f.n < 0 {
		return 0, io.ErrShortWrite
	}
	return len(p), nil
}

// TestRunWriteErrorStops checks that a failing output (a closed pipe)
// ends Run with the error instead of reading on.
func TestRunWriteErrorStops(t *testing.T) {
	data := bigInput()
	r := strings.NewReader(data)
	_, err := Run(r, &failWriter{n: 1000}, Options{Base: 745, AllPorts: true})
	if err != io.ErrShortWrite {
		t.Fatalf("error %v, want %v", err, io.ErrShortWrite)
	}
}
