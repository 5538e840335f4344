// Package parsecmd is "knockdaemon parse": it reads a firewall log and
// prints the hits it finds and a summary, so an admin can check that the
// firewall logs what the daemon needs. Run is the testable core;
// Command wraps it for urfave/cli.
package parsecmd

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/bits"
	"os"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/urfave/cli/v2"

	"github.com/knockdaemon/knock/logparse"
)

// MaxLine is the longest line read; longer lines are skipped and counted.
const MaxLine = 1 << 20

// Options selects what Run prints.
type Options struct {
	Format   string // "text" (default) or "json"
	AllPorts bool   // print hits outside the knock range too
	Base     uint16 // first knock port; the range is Base..Base+255
	Prefix   string // only hits whose log prefix starts with this (spaces around it are ignored)
	Quiet    bool   // print no hits, only count them
	Reasons  int    // how many malformed-line reasons to keep (default 5)
}

// Summary counts what Run read.
type Summary struct {
	Lines      int      `json:"lines"`           // lines read
	TooLong    int      `json:"too_long"`        // lines over MaxLine, skipped
	Firewall   int      `json:"firewall_lines"`  // hits, malformed lines and ipfw limit notices
	Hits       int      `json:"hits"`            // every parsed hit
	Filtered   int      `json:"prefix_filtered"` // hits dropped by the prefix filter
	KnockHits  int      `json:"knock_port_hits"` // TCP/UDP hits on Base..Base+255 that pass the filter
	Printed    int      `json:"printed"`         // hits printed
	Malformed  int      `json:"malformed"`
	Limits     int      `json:"ipfw_limit_notices"`
	FirstWhy   []string `json:"first_malformed,omitempty"` // "line N: reason"
	FromKernel int      `json:"from_kernel"`               // hits whose framing says the kernel wrote them
	// Prefixes counts hits per log prefix, for the first MaxPrefixes
	// distinct prefixes; later ones count under OtherPrefixes.
	Prefixes      map[string]int `json:"prefixes,omitempty"`
	OtherPrefixes int            `json:"other_prefixes,omitempty"`
}

// MaxPrefixes bounds Summary.Prefixes: a log with a prefix per rule and
// per chain stays readable, and a hostile log cannot grow the map.
const MaxPrefixes = 32

// Run reads r line by line, prints hits to w as opts say, and returns the
// counts. It fails only when r or w fails; bad lines are counted.
//
// Like grep, it does not visit every line: it counts newlines and looks
// for the two markers every firewall line carries ("SRC=" for netfilter,
// "ipfw: " for ipfw) across a whole buffer with vectorised searches, and
// parses only the lines that hold one. logparse.Parse rejects the others
// for the same reason, so the counts are the same as parsing every line.
//
// Unlike grep, it uses every CPU: each worker takes the next chunk of
// whole lines from r itself (reading is serialised and counts the
// chunk's newlines, so every chunk knows its first line number), parses
// it, and hands the result over; output and counts are merged strictly in
// input order, so the result is the same as one pass over the input. No
// goroutine only reads or only merges: a lone worker never waits for
// another thread to be scheduled, which keeps a busy machine from
// stretching the wall time.
func Run(r io.Reader, w io.Writer, opts Options) (Summary, error) {
	switch opts.Format {
	case "", "text", "json":
	default:
		return Summary{}, fmt.Errorf("unknown format %q (want text or json)", opts.Format)
	}
	if opts.Reasons == 0 {
		opts.Reasons = 5
	}
	// logparse trims the prefix it reports; "knock: " means "knock:"
	opts.Prefix = strings.TrimSpace(opts.Prefix)

	workers := min(runtime.GOMAXPROCS(0), maxWorkers)
	p := &pipeline{
		opts:     opts,
		r:        r,
		bw:       bufio.NewWriterSize(w, 64<<10),
		pending:  map[int]*chunk{},
		inflight: make(chan struct{}, 4*workers),
	}
	var wg sync.WaitGroup
	for range workers - 1 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p.work()
		}()
	}
	p.work()
	wg.Wait()
	if p.rerr != nil {
		return p.s, p.rerr
	}
	if p.werr != nil {
		return p.s, p.werr
	}
	return p.s, p.bw.Flush()
}

const (
	// chunkSize is the read buffer of one worker. It holds a whole line of
	// MaxLine bytes, so a line that does not fit is too long.
	chunkSize = MaxLine
	// maxWorkers bounds the parsing goroutines: beyond a few, reading
	// (serialised) is the limit.
	maxWorkers = 8
)

// chunk is a run of whole lines and, once parsed, what came of them.
type chunk struct {
	seq   int
	data  []byte // whole lines, each ending in '\n'; valid until the next read
	first int    // line number of the line before data's first line
	// tooLong lines seen by the reader just before data.
	tooLong int
	// Results.
	s     Summary  // counts; Lines is the number of lines in data
	out   []byte   // printed hits
	order []string // the keys of s.Prefixes in the order first seen
}

// pipeline is one Run.
type pipeline struct {
	opts Options

	// The reader's state, under rmu.
	rmu      sync.Mutex
	r        io.Reader
	carry    []byte // the start of a line read with the previous chunk
	eof      bool
	skipping bool // inside a line of MaxLine bytes or more
	empty    int  // reads in a row that returned nothing
	lines    int  // lines handed out so far, too long ones included
	tooLong  int  // too-long lines not yet handed out with a chunk
	seq      int
	done     bool
	rerr     error

	// The merger's state, under mmu.
	mmu     sync.Mutex
	next    int
	pending map[int]*chunk
	s       Summary
	bw      *bufio.Writer
	werr    error

	// failed is set when writing fails: reading stops.
	failed atomic.Bool
	// inflight bounds the chunks handed out but not yet merged, so a
	// worker that is not scheduled for a while cannot make the others
	// pile up results.
	inflight chan struct{}
}

// work takes chunks, parses them and merges them until the input ends.
func (p *pipeline) work() {
	rn := &runner{opts: p.opts, json: p.opts.Format == "json",
		lo: int(p.opts.Base), hi: int(p.opts.Base) + 255}
	buf := make([]byte, chunkSize)
	for {
		p.inflight <- struct{}{}
		c := p.nextChunk(buf)
		if c == nil {
			<-p.inflight
			return
		}
		if len(c.data) > 0 {
			rn.s = Summary{Lines: c.first}
			rn.out, rn.order = nil, nil
			rn.region(c.data)
			rn.flushPrefix()
			c.s = rn.s
			c.s.Lines -= c.first
			c.out, c.order = rn.out, rn.order
		}
		c.data = nil
		p.deliver(c)
	}
}

// nextChunk reads the next run of whole lines into buf, or returns nil at
// the end of the input (or after a read or write error). Lines longer than
// MaxLine are skipped and counted here.
func (p *pipeline) nextChunk(buf []byte) *chunk {
	p.rmu.Lock()
	defer p.rmu.Unlock()
	if p.done {
		return nil
	}
	n := copy(buf, p.carry)
	p.carry = p.carry[:0]
	for {
		if p.failed.Load() {
			p.done = true // the write error is reported
			return nil
		}
		if !p.eof && n < len(buf) {
			k, err := p.r.Read(buf[n:])
			n += k
			switch {
			case err == io.EOF:
				p.eof = true
			case err != nil:
				p.rerr, p.done = err, true
				return nil
			case k == 0:
				if p.empty++; p.empty > 100 {
					p.rerr, p.done = io.ErrNoProgress, true
					return nil
				}
				continue
			}
			p.empty = 0
		}
		data := buf[:n]
		last := bytes.LastIndexByte(data, '\n')
		if last < 0 {
			switch {
			case n == len(buf): // no end in sight: a line too long
				if !p.skipping {
					p.lines++
					p.tooLong++
					p.skipping = true
				}
				n = 0
			case p.eof:
				p.done = true
				if n > 0 && !p.skipping {
					// The last line has no newline (n < len(buf)
					// here): give it one.
					buf[n] = '\n'
					return p.chunk(buf[:n+1], 1)
				}
				return p.chunk(nil, 0) // hands out a pending too-long count
			}
			continue
		}
		region := data[:last+1]
		if p.skipping { // drop the tail of the long line
			i := bytes.IndexByte(region, '\n')
			region = region[i+1:]
			p.skipping = false
		}
		p.carry = append(p.carry, data[last+1:]...)
		if p.eof && len(p.carry) == 0 {
			p.done = true
		}
		return p.chunk(region, bytes.Count(region, nl))
	}
}

func (p *pipeline) chunk(data []byte, lines int) *chunk {
	c := &chunk{seq: p.seq, data: data, first: p.lines, tooLong: p.tooLong}
	p.seq++
	p.lines += lines
	p.tooLong = 0
	return c
}

// deliver merges c, and every chunk after it that was waiting for it, in
// input order.
func (p *pipeline) deliver(c *chunk) {
	p.mmu.Lock()
	defer p.mmu.Unlock()
	p.pending[c.seq] = c
	for {
		c, ok := p.pending[p.next]
		if !ok {
			return
		}
		delete(p.pending, p.next)
		p.next++
		p.add(c)
		<-p.inflight
	}
}

func (p *pipeline) add(c *chunk) {
	s, cs := &p.s, &c.s
	s.Lines += c.tooLong + cs.Lines
	s.TooLong += c.tooLong
	s.Firewall += cs.Firewall
	s.Hits += cs.Hits
	s.Filtered += cs.Filtered
	s.KnockHits += cs.KnockHits
	s.Printed += cs.Printed
	s.Malformed += cs.Malformed
	s.Limits += cs.Limits
	s.FromKernel += cs.FromKernel
	for _, why := range cs.FirstWhy {
		if len(s.FirstWhy) < p.opts.Reasons {
			s.FirstWhy = append(s.FirstWhy, why)
		}
	}
	// A chunk counts every prefix it saw, in the order first seen; the
	// first MaxPrefixes of the whole input are kept, as in one pass.
	for _, pfx := range c.order {
		k := cs.Prefixes[pfx]
		if _, ok := s.Prefixes[pfx]; ok || len(s.Prefixes) < MaxPrefixes {
			if s.Prefixes == nil {
				s.Prefixes = map[string]int{}
			}
			s.Prefixes[pfx] += k
		} else {
			s.OtherPrefixes += k
		}
	}
	if len(c.out) > 0 && p.werr == nil {
		if _, p.werr = p.bw.Write(c.out); p.werr != nil {
			p.failed.Store(true)
		}
	}
}

type runner struct {
	opts   Options
	json   bool
	lo, hi int
	s      Summary
	h      logparse.Hit
	out    []byte
	order  []string // prefixes of s.Prefixes in the order first seen
	// A run of hits with the same prefix is counted here and added to
	// s.Prefixes when the prefix changes (one map update per run, not
	// two per hit).
	runPrefix string
	runHits   int
}

// countPrefix counts one hit with log prefix p.
func (rn *runner) countPrefix(p string) {
	if rn.runHits > 0 && p == rn.runPrefix {
		rn.runHits++
		return
	}
	rn.flushPrefix()
	s := &rn.s
	// Every prefix of the chunk; merge keeps the first MaxPrefixes of
	// the input.
	if s.Prefixes == nil {
		s.Prefixes = map[string]int{}
	}
	if _, ok := s.Prefixes[p]; !ok {
		rn.order = append(rn.order, p)
		s.Prefixes[p] = 0
	}
	rn.runPrefix, rn.runHits = p, 1
}

// flushPrefix adds the current run of countPrefix to s.Prefixes.
func (rn *runner) flushPrefix() {
	if rn.runHits > 0 {
		rn.s.Prefixes[rn.runPrefix] += rn.runHits
		rn.runHits = 0
	}
}

// region handles complete lines, each ending in a newline.
func (rn *runner) region(b []byte) {
	counted := 0 // newlines before this offset are counted
	nextSRC := logparse.IndexSRC(b)
	nextFW := logparse.IndexIPFW(b)
	for nextSRC >= 0 || nextFW >= 0 {
		c := nextSRC
		if c < 0 || (nextFW >= 0 && nextFW < c) {
			c = nextFW
		}
		ls := lastNewline(b[counted:c]) + 1 + counted
		le := c + bytes.IndexByte(b[c:], '\n')
		rn.s.Lines += bytes.Count(b[counted:ls], nl) + 1
		counted = le + 1
		rn.line(b[ls:le], rn.s.Lines)
		if nextSRC >= 0 && nextSRC < counted {
			if nextSRC = logparse.IndexSRC(b[counted:]); nextSRC >= 0 {
				nextSRC += counted
			}
		}
		if nextFW >= 0 && nextFW < counted {
			if nextFW = logparse.IndexIPFW(b[counted:]); nextFW >= 0 {
				nextFW += counted
			}
		}
	}
	rn.s.Lines += bytes.Count(b[counted:], nl)
}

var nl = []byte{'\n'}

// lastNewline returns the index of the last '\n' in b, or -1. It reads
// eight bytes at a time from the end: bytes.LastIndexByte is a byte loop,
// and the start of a firewall line is a hundred bytes or more before the
// marker that found it.
func lastNewline(b []byte) int {
	const (
		lows   = 0x0101010101010101
		sevens = 0x7f7f7f7f7f7f7f7f
	)
	i := len(b)
	for ; i >= 8; i -= 8 {
		x := binary.LittleEndian.Uint64(b[i-8:]) ^ ('\n' * lows)
		// the high bit of exactly the zero bytes of x: no borrow runs
		// from one byte into the next, so the highest one is right
		if m := ^((x&sevens + sevens) | x | sevens); m != 0 {
			return i - 1 - bits.LeadingZeros64(m)>>3
		}
	}
	for i--; i >= 0; i-- {
		if b[i] == '\n' {
			return i
		}
	}
	return -1
}

// line handles one line that may be firewall output.
func (rn *runner) line(line []byte, n int) {
	if k := len(line); k > 0 && line[k-1] == '\r' {
		line = line[:k-1]
	}
	s, h := &rn.s, &rn.h
	err := logparse.Parse(line, h)
	switch {
	case err == nil:
		s.Firewall++
		s.Hits++
		if h.FromKernel {
			s.FromKernel++
		}
		rn.countPrefix(h.Prefix)
		if rn.opts.Prefix != "" && !strings.HasPrefix(h.Prefix, rn.opts.Prefix) {
			s.Filtered++
			return
		}
		knock := (h.Proto == logparse.ProtoTCP || h.Proto == logparse.ProtoUDP) &&
			!h.Fragment && int(h.DstPort) >= rn.lo && int(h.DstPort) <= rn.hi
		if knock {
			s.KnockHits++
		}
		if rn.opts.Quiet || (!knock && !rn.opts.AllPorts) {
			return
		}
		s.Printed++
		if rn.json {
			rn.out = appendJSON(rn.out, n, h)
		} else {
			rn.out = appendText(rn.out, n, h)
		}
	case err == logparse.ErrNotFirewall:
	default:
		s.Firewall++
		var ln *logparse.LimitNotice
		if errors.As(err, &ln) {
			s.Limits++
			return
		}
		s.Malformed++
		if len(s.FirstWhy) < rn.opts.Reasons {
			s.FirstWhy = append(s.FirstWhy, "line "+strconv.Itoa(n)+": "+err.Error())
		}
	}
}

// appendText writes "line N: SRC:SPT -> DST:DPT PROTO FLAGS in=IF out=IF prefix="..."".
func appendText(b []byte, n int, h *logparse.Hit) []byte {
	b = append(b, "line "...)
	b = strconv.AppendInt(b, int64(n), 10)
	b = append(b, ": "...)
	if h.Kind == logparse.IPFW {
		b = append(b, "ipfw "...)
		b = strconv.AppendInt(b, int64(h.Rule), 10)
		b = append(b, ' ')
		b = append(b, h.Action...)
		b = append(b, ' ')
	}
	b = appendHostPort(b, h, true)
	b = append(b, " -> "...)
	b = appendHostPort(b, h, false)
	b = append(b, ' ')
	b = append(b, h.Proto.String()...)
	if h.Flags != 0 {
		b = append(b, ' ')
		b = append(b, h.Flags.String()...)
	}
	if h.Proto == logparse.ProtoICMP || h.Proto == logparse.ProtoICMPv6 {
		b = append(b, " type="...)
		b = strconv.AppendUint(b, uint64(h.ICMPType), 10)
		b = append(b, " code="...)
		b = strconv.AppendUint(b, uint64(h.ICMPCode), 10)
	}
	if h.Fragment {
		b = append(b, " fragment"...)
	}
	if h.In != "" {
		b = append(b, " in="...)
		b = append(b, h.In...)
	}
	if h.Out != "" {
		b = append(b, " out="...)
		b = append(b, h.Out...)
	}
	b = append(b, " prefix="...)
	b = strconv.AppendQuote(b, h.Prefix)
	if !h.FromKernel {
		b = append(b, " (framing does not name the kernel)"...)
	}
	return append(b, '\n')
}

func appendHostPort(b []byte, h *logparse.Hit, src bool) []byte {
	a, p := h.Dst, h.DstPort
	if src {
		a, p = h.Src, h.SrcPort
	}
	ports := (h.Proto == logparse.ProtoTCP || h.Proto == logparse.ProtoUDP) && !h.Fragment && !h.Incomplete
	if a.Is6() && ports {
		b = append(b, '[')
		b = a.AppendTo(b)
		b = append(b, ']')
	} else {
		b = a.AppendTo(b)
	}
	if ports {
		b = append(b, ':')
		b = strconv.AppendUint(b, uint64(p), 10)
	}
	return b
}

// appendJSON writes one JSON object and a newline.
func appendJSON(b []byte, n int, h *logparse.Hit) []byte {
	b = append(b, `{"line":`...)
	b = strconv.AppendInt(b, int64(n), 10)
	b = append(b, `,"kind":"`...)
	b = append(b, h.Kind.String()...)
	b = append(b, `","src":"`...)
	b = h.Src.AppendTo(b)
	b = append(b, `","dst":"`...)
	b = h.Dst.AppendTo(b)
	b = append(b, `","proto":"`...)
	b = append(b, h.Proto.String()...)
	b = append(b, `","src_port":`...)
	b = strconv.AppendUint(b, uint64(h.SrcPort), 10)
	b = append(b, `,"dst_port":`...)
	b = strconv.AppendUint(b, uint64(h.DstPort), 10)
	b = append(b, `,"flags":`...)
	b = appendJSONString(b, h.Flags.String())
	b = append(b, `,"prefix":`...)
	b = appendJSONString(b, h.Prefix)
	b = append(b, `,"in":`...)
	b = appendJSONString(b, h.In)
	b = append(b, `,"out":`...)
	b = appendJSONString(b, h.Out)
	if h.Proto == logparse.ProtoICMP || h.Proto == logparse.ProtoICMPv6 {
		b = append(b, `,"icmp_type":`...)
		b = strconv.AppendUint(b, uint64(h.ICMPType), 10)
		b = append(b, `,"icmp_code":`...)
		b = strconv.AppendUint(b, uint64(h.ICMPCode), 10)
	}
	if h.Fragment {
		b = append(b, `,"fragment":true`...)
	}
	if h.Kind == logparse.IPFW {
		b = append(b, `,"rule":`...)
		b = strconv.AppendInt(b, int64(h.Rule), 10)
		b = append(b, `,"action":`...)
		b = appendJSONString(b, h.Action)
	}
	switch {
	case h.Time.IsZero():
	case h.Time.Year() == 0:
		// an RFC 3164 stamp has no year: give it as it was written
		b = append(b, `,"syslog_time":"`...)
		b = h.Time.AppendFormat(b, "Jan _2 15:04:05.999999")
		b = append(b, '"')
	default:
		b = append(b, `,"time":"`...)
		b = h.Time.AppendFormat(b, time.RFC3339Nano)
		b = append(b, '"')
	}
	if h.Uptime != 0 {
		b = append(b, `,"uptime_us":`...)
		b = strconv.AppendInt(b, h.Uptime.Microseconds(), 10)
	}
	b = append(b, `,"from_kernel":`...)
	b = strconv.AppendBool(b, h.FromKernel)
	return append(b, "}\n"...)
}

// appendJSONString quotes s as a JSON string (RFC 8259 section 7);
// invalid UTF-8 becomes U+FFFD.
func appendJSONString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				b = append(b, '\\', c)
			case c < 0x20 || c == 0x7f:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&15])
			default:
				b = append(b, c)
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, `\ufffd`...)
		} else {
			b = append(b, s[i:i+size]...)
		}
		i += size
	}
	return append(b, '"')
}

// WriteSummary prints s for a person.
func WriteSummary(w io.Writer, s Summary, opts Options) error {
	var b strings.Builder
	fmt.Fprintf(&b, "lines read:        %d\n", s.Lines)
	if s.TooLong > 0 {
		fmt.Fprintf(&b, "lines too long:    %d (over %d bytes, skipped)\n", s.TooLong, MaxLine)
	}
	fmt.Fprintf(&b, "firewall lines:    %d\n", s.Firewall)
	fmt.Fprintf(&b, "hits:              %d (%d with a kernel framing)\n", s.Hits, s.FromKernel)
	if opts.Prefix != "" {
		fmt.Fprintf(&b, "other prefixes:    %d (not starting with %q)\n", s.Filtered, opts.Prefix)
	}
	if len(s.Prefixes) > 0 {
		b.WriteString("hits per prefix:\n")
		names := make([]string, 0, len(s.Prefixes))
		for p := range s.Prefixes {
			names = append(names, p)
		}
		sort.Slice(names, func(i, j int) bool {
			if s.Prefixes[names[i]] != s.Prefixes[names[j]] {
				return s.Prefixes[names[i]] > s.Prefixes[names[j]]
			}
			return names[i] < names[j]
		})
		const show = 10
		rest := s.OtherPrefixes
		for i, p := range names {
			if i >= show {
				rest += s.Prefixes[p]
				continue
			}
			fmt.Fprintf(&b, "  %8d  %s\n", s.Prefixes[p], strconv.Quote(p))
		}
		if rest > 0 {
			fmt.Fprintf(&b, "  %8d  (other prefixes)\n", rest)
		}
	}
	fmt.Fprintf(&b, "knock-port hits:   %d (TCP/UDP to %d-%d)\n", s.KnockHits, opts.Base, int(opts.Base)+255)
	if s.Limits > 0 {
		fmt.Fprintf(&b, "ipfw limit notices: %d (a rule stopped logging; ipfw resetlog)\n", s.Limits)
	}
	fmt.Fprintf(&b, "malformed lines:   %d\n", s.Malformed)
	for _, r := range s.FirstWhy {
		fmt.Fprintf(&b, "  %s\n", r)
	}
	if s.Hits == 0 && s.Lines > 0 {
		b.WriteString("hint: no firewall hits found; is a LOG rule installed for the knock ports, and is this the file the kernel log goes to?\n")
	} else if s.KnockHits == 0 && s.Hits > 0 {
		b.WriteString("hint: hits found, but none on the knock ports (and prefix); check the LOG rule's ports and --log-prefix\n")
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// Exit statuses of "knockdaemon parse".
const (
	ExitOK    = 0
	ExitInput = 1 // the file cannot be opened or read
	ExitUsage = 2 // bad flags or arguments
)

// Command is "knockdaemon parse [FILE|-]".
func Command() *cli.Command {
	return &cli.Command{
		Name:      "parse",
		Usage:     "read a firewall log and show the hits the daemon would see",
		ArgsUsage: "[FILE|-]",
		Description: "Reads FILE (default or \"-\": standard input) line by line and prints each\n" +
			"firewall hit on the knock ports, then a summary: lines read, firewall lines,\n" +
			"knock-port hits, malformed lines and the first reasons. Lines over 1 MiB are\n" +
			"skipped and counted. Exit status: 0 done, 1 input cannot be read, 2 bad usage.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "format", Value: "text", Usage: "hit output: text or json (one object per line)"},
			&cli.BoolFlag{Name: "all-ports", Usage: "also print hits outside the knock range"},
			&cli.UintFlag{Name: "base", Value: 745, Usage: "first knock port (the range is base..base+255)"},
			&cli.StringFlag{Name: "prefix", Usage: "only hits whose log prefix starts with this"},
			&cli.BoolFlag{Name: "quiet", Aliases: []string{"q", "summary-only"}, Usage: "print only the summary"},
		},
		Action: func(c *cli.Context) error {
			// errors go to stderr as "knockdaemon parse: ..."
			name0 := strings.TrimSpace(c.App.Name + " parse")
			if c.NArg() > 1 {
				return cli.Exit(name0+": at most one FILE", ExitUsage)
			}
			base := c.Uint("base")
			if base > 65535-255 {
				return cli.Exit(fmt.Sprintf("%s: --base %d: the knock range must end at or below 65535 (base <= 65280)", name0, base), ExitUsage)
			}
			opts := Options{
				Format:   c.String("format"),
				AllPorts: c.Bool("all-ports"),
				Base:     uint16(base),
				Prefix:   c.String("prefix"),
				Quiet:    c.Bool("quiet"),
			}
			if opts.Format != "text" && opts.Format != "json" {
				return cli.Exit(fmt.Sprintf("%s: --format %q: want text or json", name0, opts.Format), ExitUsage)
			}
			var in io.Reader = os.Stdin
			if c.App.Reader != nil {
				in = c.App.Reader
			}
			name := "standard input"
			if p := c.Args().First(); p != "" && p != "-" {
				f, err := os.Open(p)
				if err != nil {
					msg := name0 + ": " + err.Error()
					if errors.Is(err, fs.ErrNotExist) {
						msg += "\nhint: the kernel log is often /var/log/kern.log or /var/log/messages; \"-\" reads standard input (journalctl -k -o short-iso | " + c.App.Name + " parse -)"
					}
					return cli.Exit(msg, ExitInput)
				}
				defer f.Close()
				if fi, err := f.Stat(); err == nil && fi.IsDir() {
					return cli.Exit(name0+": "+p+" is a directory", ExitInput)
				}
				in, name = f, p
			}
			out := c.App.Writer
			if out == nil {
				out = os.Stdout
			}
			s, err := Run(in, out, opts)
			if err != nil {
				return cli.Exit(fmt.Sprintf("%s: reading %s: %v", name0, name, err), ExitInput)
			}
			// With JSON on stdout the summary goes to stderr, so the output
			// stays one object per line.
			sw := out
			if opts.Format == "json" {
				sw = c.App.ErrWriter
				if sw == nil {
					sw = os.Stderr
				}
			}
			return WriteSummary(sw, s, opts)
		},
	}
}
