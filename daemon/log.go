package daemon

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"
)

// NewLogger builds the daemon's logger: format "text" (key=value) or
// "json", output "stderr" (w) or "syslog" (the local syslog daemon,
// facility daemon, tag knockdaemon). level may be adjusted later (reload).
// The returned closer flushes and releases the output.
//
// Output to w is buffered and flushed within FlushDelay, so that a flood of
// rejections costs one write per batch instead of one per line.
func NewLogger(format, output string, level *slog.LevelVar, w io.Writer) (*slog.Logger, io.Closer, error) {
	var out io.Writer
	var closer io.Closer
	switch output {
	case "stderr", "":
		fw := newFlushWriter(w, FlushDelay)
		out, closer = fw, fw
	case "syslog":
		sw, err := openSyslog()
		if err != nil {
			return nil, nil, fmt.Errorf("log output syslog: %w", err)
		}
		out, closer = sw, sw
	default:
		return nil, nil, fmt.Errorf("log output %q: want stderr or syslog", output)
	}
	opts := &slog.HandlerOptions{Level: level}
	var h slog.Handler
	switch format {
	case "text", "":
		if output == "syslog" {
			// syslog stamps every line itself.
			opts.ReplaceAttr = dropTime
		}
		h = slog.NewTextHandler(out, opts)
	case "json":
		h = slog.NewJSONHandler(out, opts)
	default:
		closer.Close()
		return nil, nil, fmt.Errorf("log format %q: want text or json", format)
	}
	return slog.New(h), closer, nil
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
