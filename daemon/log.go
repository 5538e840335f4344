package daemon

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"
)

// NewLogger builds the daemon's logger: format "text" (key=value) or
// "json", output "stderr" (w) or "syslog" (the local syslog daemon,
// facility daemon, tag knockdaemon[PID], the severity following the
// record's level, one datagram per record; see syslogWriter for what
// happens when syslog is missing or stops: records go to w, never lost
// silently, never a failure to start). level may be adjusted later
// (reload). The returned closer flushes and releases the output.
//
// Output to w is buffered and flushed within FlushDelay, so that a flood of
// rejections costs one write per batch instead of one per line.
func NewLogger(format, output string, level *slog.LevelVar, w io.Writer) (*slog.Logger, io.Closer, error) {
	if format != "text" && format != "" && format != "json" {
		return nil, nil, fmt.Errorf("log format %q: want text or json", format)
	}
	opts := &slog.HandlerOptions{Level: level}
	newHandler := func(out io.Writer) slog.Handler {
		if format == "json" {
			return slog.NewJSONHandler(out, opts)
		}
		return slog.NewTextHandler(out, opts)
	}
	switch output {
	case "stderr", "":
		fw := newFlushWriter(w, FlushDelay)
		return slog.New(newHandler(fw)), fw, nil
	case "syslog":
		sw, err := openSyslog(w)
		if err != nil {
			return nil, nil, fmt.Errorf("log output syslog: %w", err)
		}
		if format != "json" {
			// syslog stamps every record itself.
			opts.ReplaceAttr = dropTime
		}
		return slog.New(newSyslogHandler(newHandler, sw)), sw, nil
	default:
		return nil, nil, fmt.Errorf("log output %q: want stderr or syslog", output)
	}
}

// syslogSender takes one formatted record of a severity (RFC 5424
// section 6.2.1: 0 emergency .. 7 debug).
type syslogSender interface {
	send(severity int, msg []byte)
	Close() error
}

// syslogSeverity maps a slog level to a syslog severity.
func syslogSeverity(l slog.Level) int {
	switch {
	case l >= slog.LevelError:
		return 3 // err
	case l >= slog.LevelWarn:
		return 4 // warning
	case l >= slog.LevelInfo:
		return 6 // info
	default:
		return 7 // debug
	}
}

// syslogHandler formats each record with a text or JSON handler into a
// buffer and sends it as one syslog record with the severity of its
// level. Handlers made by WithAttrs and WithGroup share the buffer, its
// lock and the sender.
type syslogHandler struct {
	inner slog.Handler
	out   *syslogOut
}

type syslogOut struct {
	mu   sync.Mutex
	buf  bytes.Buffer
	send syslogSender
}

func newSyslogHandler(newHandler func(io.Writer) slog.Handler, send syslogSender) *syslogHandler {
	out := &syslogOut{send: send}
	return &syslogHandler{inner: newHandler(&out.buf), out: out}
}

func (h *syslogHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return h.inner.Enabled(ctx, l)
}

func (h *syslogHandler) Handle(ctx context.Context, r slog.Record) error {
	h.out.mu.Lock()
	defer h.out.mu.Unlock()
	h.out.buf.Reset()
	if err := h.inner.Handle(ctx, r); err != nil {
		return err
	}
	h.out.send.send(syslogSeverity(r.Level), h.out.buf.Bytes())
	return nil
}

func (h *syslogHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return &syslogHandler{inner: h.inner.WithAttrs(as), out: h.out}
}

func (h *syslogHandler) WithGroup(name string) slog.Handler {
	return &syslogHandler{inner: h.inner.WithGroup(name), out: h.out}
}

func dropTime(groups []string, a slog.Attr) slog.Attr {
	if len(groups) == 0 && a.Key == slog.TimeKey {
		return slog.Attr{}
	}
	return a
}

// FlushDelay is how long a log line may wait in the buffer.
const FlushDelay = 50 * time.Millisecond

// flushWriter buffers writes and flushes them FlushDelay after the first
// unflushed write, or when the buffer fills, or on Close.
type flushWriter struct {
	mu    sync.Mutex
	bw    *bufio.Writer
	delay time.Duration
	timer *time.Timer
	armed bool
}

func newFlushWriter(w io.Writer, delay time.Duration) *flushWriter {
	f := &flushWriter{bw: bufio.NewWriterSize(w, 64<<10), delay: delay}
	f.timer = time.AfterFunc(time.Hour, f.flush)
	f.timer.Stop()
	return f
}

func (f *flushWriter) Write(p []byte) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	n, err := f.bw.Write(p)
	if !f.armed {
		f.armed = true
		f.timer.Reset(f.delay)
	}
	return n, err
}

func (f *flushWriter) flush() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.armed = false
	_ = f.bw.Flush()
}

// Close flushes what is buffered.
func (f *flushWriter) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.timer.Stop()
	f.armed = false
	return f.bw.Flush()
}

var errNoSyslog = errors.New("syslog is not available on this platform")
