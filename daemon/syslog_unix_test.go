//go:build !windows && !plan9

package daemon

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/knockdaemon/knock/cipher"
	"github.com/knockdaemon/knock/internal/rsyslogtest"
)

// useSyslogAt points NewLogger's syslog output at path for the test.
func useSyslogAt(t *testing.T, path string) {
	old := syslogPaths
	syslogPaths = []string{path}
	t.Cleanup(func() { syslogPaths = old })
}

// syslogLogger returns NewLogger's syslog logger (format, level) writing
// to path, its stderr fallback and its closer, called at the end of the
// test.
func syslogLogger(t *testing.T, path, format string, level *slog.LevelVar) (*slog.Logger, *logBuf, io.Closer) {
	t.Helper()
	useSyslogAt(t, path)
	fallback := new(logBuf)
	log, closer, err := NewLogger(format, "syslog", level, fallback)
	if err != nil {
		t.Fatalf("NewLogger(%s, syslog) at %s: %v", format, path, err)
	}
	t.Cleanup(func() { closer.Close() })
	return log, fallback, closer
}

// dgramSink is a unix datagram socket standing in for /dev/log.
type dgramSink struct {
	path string
	conn *net.UnixConn
}

func listenDgram(t *testing.T, path string) *dgramSink {
	t.Helper()
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &dgramSink{path: path, conn: c}
}

// next returns the next datagram, failing the test after a second.
func (s *dgramSink) next(t *testing.T) string {
	t.Helper()
	buf := make([]byte, 64<<10)
	_ = s.conn.SetReadDeadline(time.Now().Add(time.Second))
	n, err := s.conn.Read(buf)
	if err != nil {
		t.Fatalf("no syslog datagram: %v", err)
	}
	return string(buf[:n])
}

// drain returns every datagram already queued.
func (s *dgramSink) drain() []string {
	var out []string
	buf := make([]byte, 64<<10)
	for {
		_ = s.conn.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
		n, err := s.conn.Read(buf)
		if err != nil {
			return out
		}
		out = append(out, string(buf[:n]))
	}
}

// record is "<PRI>Mmm dd hh:mm:ss knockdaemon[PID]: MESSAGE".
var record = regexp.MustCompile(`^<(\d+)>([A-Z][a-z]{2} [ 0-9]\d \d\d:\d\d:\d\d) knockdaemon\[(\d+)\]: (.*)$`)

func parseRecord(t *testing.T, d string) (pri int, msg string) {
	t.Helper()
	m := record.FindStringSubmatch(d)
	if m == nil {
		t.Fatalf("datagram %q is not <PRI>STAMP knockdaemon[PID]: MESSAGE", d)
	}
	if m[3] != strconv.Itoa(os.Getpid()) {
		t.Errorf("tag pid %s, want %d", m[3], os.Getpid())
	}
	pri, _ = strconv.Atoi(m[1])
	return pri, m[4]
}

func TestSyslogRecords(t *testing.T) {
	for _, format := range []string{"text", "json"} {
		t.Run(format, func(t *testing.T) {
			sink := listenDgram(t, filepath.Join(t.TempDir(), "log"))
			level := new(slog.LevelVar)
			level.Set(slog.LevelDebug)
			log, fallback, _ := syslogLogger(t, sink.path, format, level)
			cases := []struct {
				name string
				log  func()
				pri  int // facility daemon (3) * 8 + severity
				want string
			}{
				{"debug is severity debug", func() { log.Debug("candidate", "event", "x") }, 31, "candidate"},
				{"info is severity info", func() { log.Info("knock accepted", "event", "accepted", "port", 22) }, 30, "accepted"},
				{"warn is severity warning", func() { log.Warn("source locked out", "event", "lockout") }, 28, "lockout"},
				{"error is severity err", func() { log.Error("cannot write the state file", "err", "disk full") }, 27, "disk full"},
				{"attributes and groups of derived loggers", func() {
					log.With("src", "198.51.100.7").WithGroup("g").Info("opened", "port", 2222)
				}, 30, "198.51.100.7"},
				{"a newline in a value stays in one record", func() { log.Info("x", "err", "line one\nline two") }, 30, "line two"},
			}
			for _, tc := range cases {
				tc.log()
				d := sink.next(t)
				pri, msg := parseRecord(t, d)
				if pri != tc.pri {
					t.Errorf("%s: PRI %d, want %d: %q", tc.name, pri, tc.pri, d)
				}
				if !strings.Contains(msg, tc.want) {
					t.Errorf("%s: message %q lacks %q", tc.name, msg, tc.want)
				}
				if strings.HasSuffix(d, "\n") || strings.Contains(msg, "\n") {
					t.Errorf("%s: datagram %q has a raw newline", tc.name, d)
				}
				switch format {
				case "text":
					if strings.Contains(msg, "time=") {
						t.Errorf("%s: text record %q repeats the time syslog stamps", tc.name, msg)
					}
				case "json":
					var v map[string]any
					if err := json.Unmarshal([]byte(msg), &v); err != nil {
						t.Errorf("%s: JSON record %q: %v", tc.name, msg, err)
					}
				}
			}
			if left := sink.drain(); len(left) != 0 {
				t.Errorf("more datagrams than records: %q", left)
			}
			if fallback.String() != "" {
				t.Errorf("fallback used while syslog answered: %q", fallback.String())
			}
		})
	}
}

// TestSyslogMissingSocket: no syslog daemon at start is no failure and no
// loss: records go to stderr with one notice, and to syslog once one
// answers (tried again after syslogRetry).
func TestSyslogMissingSocket(t *testing.T) {
	path := filepath.Join(t.TempDir(), "log")
	log, fallback, closer := syslogLogger(t, path, "text", new(slog.LevelVar))
	sw := closer.(*syslogWriter)
	clk := time.Now()
	sw.mu.Lock()
	sw.now = func() time.Time { return clk }
	sw.mu.Unlock()
	log.Info("first", "event", "started")
	log.Warn("second", "event", "lockout")
	out := fallback.String()
	if !strings.Contains(out, "knockdaemon: log output syslog: no syslog daemon answers") || !strings.Contains(out, path) ||
		!strings.Contains(out, "hint:") {
		t.Errorf("no clear notice naming %s and a hint: %q", path, out)
	}
	if strings.Count(out, "log output syslog:") != 1 || !strings.Contains(out, "msg=first") || !strings.Contains(out, "msg=second") {
		t.Errorf("fallback = %q, want one notice and both records", out)
	}

	// A syslog daemon starts: within syslogRetry records still go to
	// stderr; after it they go to syslog, with a notice on stderr.
	sink := listenDgram(t, path)
	log.Info("third")
	sw.mu.Lock()
	clk = clk.Add(syslogRetry)
	sw.mu.Unlock()
	log.Info("fourth")
	if _, msg := parseRecord(t, sink.next(t)); !strings.Contains(msg, "msg=fourth") {
		t.Errorf("first record after the retry = %q, want fourth", msg)
	}
	out = fallback.String()
	if !strings.Contains(out, "msg=third") || strings.Contains(out, "msg=fourth") || !strings.Contains(out, "syslog takes records again") {
		t.Errorf("fallback = %q, want third there, fourth not, and the notice that syslog is back", out)
	}
}

// TestSyslogReceiverRestarts: the syslog daemon restarts (its socket is
// made anew): the next record reconnects at once, nothing goes astray.
func TestSyslogReceiverRestarts(t *testing.T) {
	path := filepath.Join(t.TempDir(), "log")
	sink := listenDgram(t, path)
	log, fallback, _ := syslogLogger(t, path, "text", new(slog.LevelVar))
	log.Info("before")
	if _, msg := parseRecord(t, sink.next(t)); !strings.Contains(msg, "before") {
		t.Fatalf("record %q", msg)
	}
	sink.conn.Close()
	os.Remove(path)
	sink = listenDgram(t, path)
	log.Info("after")
	if _, msg := parseRecord(t, sink.next(t)); !strings.Contains(msg, "after") {
		t.Fatalf("record %q", msg)
	}
	if fallback.String() != "" {
		t.Errorf("fallback used across a restart: %q", fallback.String())
	}
}

// TestSyslogReceiverStalls: a syslog daemon that stops reading (stopped,
// hung) fills its queue; the daemon is not held up, and every record is
// either in syslog's queue or on stderr.
func TestSyslogReceiverStalls(t *testing.T) {
	path := filepath.Join(t.TempDir(), "log")
	sink := listenDgram(t, path)
	log, fallback, _ := syslogLogger(t, path, "text", new(slog.LevelVar))
	// More than net.unix.max_dgram_qlen (512 by default) can hold.
	const n = 2000
	for i := range n {
		log.Info("flood", "i", i)
	}
	got := sink.drain()
	fb := strings.Count(fallback.String(), "msg=flood")
	if len(got)+fb != n {
		t.Errorf("%d records in syslog + %d on stderr, want %d", len(got), fb, n)
	}
	if fb == 0 || !strings.Contains(fallback.String(), "log output syslog:") {
		t.Errorf("queue never full? %d in syslog, fallback %q", len(got), fallback.String()[:min(200, len(fallback.String()))])
	}
	t.Logf("stalled receiver: %d records queued in syslog, %d on stderr", len(got), fb)
}

// rsyslog is a real rsyslogd of the test's own listening on a private
// /dev/log-like socket and writing each record's PRI, facility,
// severity, tag and message to a file.
type rsyslog struct {
	sock, out string
}

func startRsyslog(t *testing.T) *rsyslog {
	t.Helper()
	dir := t.TempDir()
	r := &rsyslog{out: filepath.Join(dir, "out.log")}
	srv := rsyslogtest.Start(t, dir, rsyslogtest.Options{Socket: true, Rules: fmt.Sprintf(
		`template(name="fields" type="string" string="%%pri%%|%%syslogfacility-text%%|%%syslogseverity-text%%|%%syslogtag%%|%%msg%%\n")
*.* action(type="omfile" file=%q template="fields")`, r.out)})
	r.sock = srv.Sock
	return r
}

// waitLines waits until the output holds n lines.
func (r *rsyslog) waitLines(t *testing.T, n int) []string {
	t.Helper()
	for range 500 {
		b, _ := os.ReadFile(r.out)
		lines := strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
		if len(b) > 0 && len(lines) >= n {
			return lines
		}
		time.Sleep(10 * time.Millisecond)
	}
	b, _ := os.ReadFile(r.out)
	t.Fatalf("rsyslogd wrote %q, want %d lines", b, n)
	return nil
}

// countingHandler counts the records that reach it.
type countingHandler struct {
	slog.Handler
	mu *sync.Mutex
	n  *int
}

func (h countingHandler) Handle(ctx context.Context, r slog.Record) error {
	h.mu.Lock()
	*h.n++
	h.mu.Unlock()
	return h.Handler.Handle(ctx, r)
}
func (h countingHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return countingHandler{h.Handler.WithAttrs(as), h.mu, h.n}
}
func (h countingHandler) WithGroup(g string) slog.Handler {
	return countingHandler{h.Handler.WithGroup(g), h.mu, h.n}
}

// TestSyslogRealRsyslog: the daemon's decisions logged through a real
// rsyslogd: facility daemon, the severity of each event, tag
// knockdaemon[PID], one record per event, and no secret (key, raw
// candidate) in any record.
func TestSyslogRealRsyslog(t *testing.T) {
	rs := startRsyslog(t)
	level := new(slog.LevelVar)
	level.Set(slog.LevelDebug)
	base, fallback, _ := syslogLogger(t, rs.sock, "text", level)
	var mu sync.Mutex
	records := 0
	logger := slog.New(countingHandler{base.Handler(), &mu, &records})

	h := newHarnessLogger(t, "", nil, nil, "", logger)

	alice := h.keys[0]
	h.knock(alice, "198.51.100.7", cipher.Request{Port: 22, Time: 5})
	h.wantOpen("198.51.100.7 tcp/22")
	// Wrong keys from another source until it is locked out (3 failures).
	wrong := cipher.Key{Name: "mallory", Secret: [32]byte{9, 9, 9}, Mode: cipher.Timed}
	var rawCandidates []string
	for range 3 {
		ports := h.sequence(wrong, "203.0.113.9", cipher.Request{Port: 22, Time: 5})
		var block []byte
		for _, l := range ports {
			p, _ := strconv.Atoi(regexp.MustCompile(`DPT=(\d+)`).FindStringSubmatch(l)[1])
			block = append(block, byte(p-745))
		}
		rawCandidates = append(rawCandidates, hex.EncodeToString(block))
		for _, l := range ports {
			h.feed(l)
		}
	}

	mu.Lock()
	n := records
	mu.Unlock()
	lines := rs.waitLines(t, n)
	if len(lines) != n {
		t.Fatalf("rsyslogd wrote %d records for %d log records:\n%s", len(lines), n, strings.Join(lines, "\n"))
	}
	count := map[string]int{}
	for _, l := range lines {
		f := strings.SplitN(l, "|", 5)
		if len(f) != 5 {
			t.Fatalf("rsyslog line %q", l)
		}
		pri, fac, sev, tag, msg := f[0], f[1], f[2], f[3], f[4]
		if tag != fmt.Sprintf("knockdaemon[%d]:", os.Getpid()) {
			t.Errorf("tag %q, want knockdaemon[%d]:", tag, os.Getpid())
		}
		if fac != "daemon" {
			t.Errorf("facility %q, want daemon: %q", fac, l)
		}
		wantSev := map[string]string{"level=DEBUG": "debug", "level=INFO": "info", "level=WARN": "warning", "level=ERROR": "err"}
		for k, v := range wantSev {
			if strings.Contains(msg, k) && sev != v {
				t.Errorf("severity %q (PRI %s) for %q, want %s", sev, pri, msg, v)
			}
		}
		for _, e := range []string{"accepted", "opened", "rejected", "lockout"} {
			if strings.Contains(msg, "event="+e+" ") || strings.HasSuffix(msg, "event="+e) {
				count[e]++
			}
		}
		secrets := []string{base64.StdEncoding.EncodeToString(alice.Secret[:]), hex.EncodeToString(alice.Secret[:]),
			base64.StdEncoding.EncodeToString(wrong.Secret[:]), hex.EncodeToString(wrong.Secret[:])}
		for _, s := range append(secrets, rawCandidates...) {
			if strings.Contains(strings.ToLower(msg), s) {
				t.Errorf("secret or raw candidate %s in syslog record %q", s, msg)
			}
		}
	}
	if count["accepted"] != 1 || count["opened"] != 1 || count["lockout"] != 1 || count["rejected"] < 1 {
		t.Errorf("events %v, want one accepted, one opened, one lockout, rejections:\n%s", count, strings.Join(lines, "\n"))
	}
	if fallback.String() != "" {
		t.Errorf("fallback used with rsyslogd running: %q", fallback.String())
	}
	t.Logf("%d records through rsyslogd, events %v", n, count)
}
